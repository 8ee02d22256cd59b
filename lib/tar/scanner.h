/* SPDX-License-Identifier: Apache-2.0 */
// The raw tar stream scanner: one push parser that every register runs, whatever the driver.
//
// It splits the input into *raw* bytes (everything that is not file content: header blocks,
// PAX/GNU extension records and their data, padding, sparse maps, end-of-archive blocks,
// trailing bytes, and the data of entries whose content is not a regular file's) and
// *payload* bytes (regular-file and sparse-file content), and parses each entry's header.
//
// Invariant: concatenating every on_raw and on_payload byte, in call order, gives back the
// input exactly. Byte-exact export is built on that.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rolayer::tar {

enum class EntryKind {
  Regular,    // '0', '\0', '7' (and anything treated as a regular file)
  Sparse,     // GNU old 'S', PAX GNU.sparse 0.0/0.1/1.0 (SUN.holesdata stores its holes:
              // read as Regular, see scanner.cpp)
  Hardlink,   // '1'
  Symlink,    // '2'
  CharDev,    // '3'
  BlockDev,   // '4'
  Directory,  // '5' (and old-style '0'/'\0' with a trailing slash)
  Fifo,       // '6'
  Other,      // anything else that is an entry (e.g. GNU 'D' dumpdir, 'V' label, 'A', 'I', unknown)
};

struct SparseFragment {
  uint64_t offset = 0;  // offset in the logical (extracted) file
  uint64_t length = 0;  // bytes of data stored in the archive for it
};

struct Entry {
  std::string name;      // raw name bytes after PAX 'path' / GNU 'L' / ustar prefix; NUL-free
  std::string linkname;  // raw link target after PAX 'linkpath' / GNU 'K'
  EntryKind kind = EntryKind::Other;
  char typeflag = 0;     // the header's typeflag byte
  uint32_t mode = 0;     // permission and special bits (07777 mask)
  int64_t uid = 0, gid = 0;
  std::string uname, gname;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint32_t devmajor = 0, devminor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;  // SCHILY.xattr.<key> = value (raw)
  // Bytes of the data area after the header, as the stream declares it (before padding).
  // 0 for header-only kinds whose size field is ignored (see scanner.cpp).
  uint64_t data_size = 0;
  // Bytes of file content that go through on_payload (Regular: data_size; Sparse: the sum of
  // the fragment lengths; every other kind: 0, its data goes to on_raw).
  uint64_t payload_size = 0;
  // Logical file size (Sparse: the real size; Regular: payload_size; others: 0).
  uint64_t real_size = 0;
  std::vector<SparseFragment> sparse;  // Sparse only, in stream order
  // Regular or Sparse: content is payload that a driver stores as a file.
  bool has_payload() const { return kind == EntryKind::Regular || kind == EntryKind::Sparse; }
};

// Receives the scanner's output, in stream order.
class ScanHandler {
 public:
  virtual ~ScanHandler() = default;
  virtual void on_raw(const uint8_t* data, size_t len) = 0;
  // A complete entry header (with its extension records applied). Raw bytes of its headers
  // have already been passed to on_raw. For has_payload() entries, exactly payload_size bytes
  // of on_payload follow (possibly 0, possibly in many calls), then on_entry_end().
  virtual void on_entry(const Entry& e) = 0;
  virtual void on_payload(const uint8_t* data, size_t len) = 0;
  virtual void on_entry_end() = 0;
};

// The one limit on the fragments of a sparse file, shared by every reader and writer of the
// project: the scanner refuses an entry with more (Code::Archive "too many sparse fragments"),
// and every writer of sparse files (the dir driver's diff, the export) describes a file with at
// most this many fragments, merging neighbouring fragments across the smallest holes when the
// file on disk has more, so that a sparse file never turns into its logical size of zeros.
inline constexpr uint64_t kMaxSparseFragments = uint64_t(1) << 18;

// Largest device numbers a Linux host can hold (12-bit major, 20-bit minor): a character or
// block device entry beyond them is refused (Code::Archive) by the scanner, on every driver.
inline constexpr int64_t kMaxDevMajor = (int64_t(1) << 12) - 1;
inline constexpr int64_t kMaxDevMinor = (int64_t(1) << 20) - 1;

// Longest entry name and link target accepted (bytes, after pax 'path'/'linkpath', GNU
// 'L'/'K' and GNU.sparse.name are applied): Linux paths are at most 4096 bytes, and the
// fidelity record keeps paths of at most 64 KiB. A GNU 'L'/'K' header declaring more is
// refused at its header, before its data is read.
inline constexpr uint64_t kMaxNameBytes = 64 * 1024;

struct Limits {
  uint64_t max_extension_size = 1 << 20;  // PAX 'x'/'g' and GNU 'L'/'K' data, each
  uint64_t max_sparse_fragments = kMaxSparseFragments;
  uint64_t max_name_size = kMaxNameBytes;  // Entry::name and Entry::linkname
};

// Push parser. Errors are thrown as rolayer::Error (Code::Archive for a malformed stream).
class Scanner {
 public:
  explicit Scanner(ScanHandler& handler, Limits limits = {});
  ~Scanner();
  Scanner(const Scanner&) = delete;
  Scanner& operator=(const Scanner&) = delete;

  // Feed the next bytes of the stream (any chunking).
  void feed(const uint8_t* data, size_t len);
  // End of input: throws Code::Archive if the stream ended inside a header or an entry's data.
  void finish();

  // Totals so far.
  uint64_t offset() const;        // bytes fed
  uint64_t entries() const;       // entries reported
  bool end_of_archive() const;    // the end-of-archive marker was seen

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace rolayer::tar
