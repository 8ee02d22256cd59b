/* SPDX-License-Identifier: Apache-2.0 */
// The "dir" driver's payload pack (opt-in, Driver::set_payload_pack): a copy of the payloads of
// a layer's small regular files, concatenated in stream order, so that an export reads them with
// a few large reads of one file instead of one open, read and close per file.
//
// Files, in the layer's meta/ (written during apply from the bytes the apply already holds,
// made durable by the apply's syncfs before the commit marker, removed with the layer):
//   meta/pack         the payloads, back to back, in stream order
//   meta/pack-index   a 40-byte header: the magic "rolayer-dir-pack-1" NUL-padded to 24 bytes,
//                     the record count and the pack's size (u64 little-endian each); then one
//                     24-byte record per packed payload: its ordinal (1-based number of the
//                     payload entry in the stream: regular and sparse entries, each counted
//                     once), its offset in meta/pack and its size (u64 little-endian each).
//                     Ordinals strictly increase, offsets do not go back (no overlap), every
//                     range lies inside the pack, and the file is exactly as long as its count says.
// A layer without small payloads (or applied with the pack off) has neither file. The tree in
// diff/ stays complete: mounts and verification use it; the pack only serves exports.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "drivers/dir/dir_fs.h"
#include "drivers/driver.h"
#include "drivers/dir/dir_internal.h"

namespace rolayer::dirdrv {

inline constexpr const char* kPackFile = "pack";
inline constexpr const char* kPackIndexFile = "pack-index";
inline constexpr std::string_view kPackMagic = "rolayer-dir-pack-1";
inline constexpr size_t kPackHeaderSize = 40;
inline constexpr size_t kPackRecordSize = 24;
// The largest threshold a store may set (a packed payload is read whole by the export).
inline constexpr uint64_t kMaxPackThreshold = kMaxPayloadPackBytes;

// Writes meta/pack and meta/pack-index during an apply. Files are created at the first packed
// payload; finish() completes the index (the apply's syncfs makes both durable).
class PackWriter {
 public:
  PackWriter(const LayerPaths& layer, int meta_fd, uint64_t max_size)
      : layer_(layer), meta_fd_(meta_fd), max_(max_size) {}
  // A payload entry of the stream begins (ordinal: its 1-based number among payload entries).
  // Regular files of 1 to max_size bytes are packed; their bytes come through add().
  void begin(uint64_t ordinal, bool regular, uint64_t size);
  void add(const uint8_t* data, size_t len);
  // The entry ended: all its bytes must have come.
  void end();
  void finish();

 private:
  void open_files();
  void flush_data();
  void flush_index();
  const LayerPaths& layer_;
  int meta_fd_;
  uint64_t max_;
  dirfs::Fd data_fd_, index_fd_;
  std::vector<uint8_t> data_buf_, index_buf_;
  uint64_t data_size_ = 0;   // bytes of the pack so far (written or buffered)
  uint64_t index_off_ = kPackHeaderSize;
  uint64_t count_ = 0;
  uint64_t last_ordinal_ = 0;
  bool in_entry_ = false;
  uint64_t entry_left_ = 0;
};

// Reads a layer's pack during one export, in stream order. open() returns null when the layer
// has no pack. Every damage (a link, FIFO or other non-regular file in place of a pack file, a
// size that does not match the index, a bad magic, ordinals out of order, ranges that overlap or
// leave the pack, a pack without its index or the reverse, a pack that shrinks while it is read)
// is Error(Code::Corrupt) naming the layer and the file. A packed payload's bytes are checked by
// the caller (the record's XXH3 sums), as a tree file's are.
class PackReader {
 public:
  static std::shared_ptr<PackReader> open(const LayerPaths& layer, int meta_fd);
  // The pack range of payload `ordinal` (increasing from call to call), or false when that
  // payload is not packed.
  bool lookup(uint64_t ordinal, uint64_t* offset, uint64_t* size);
  // Reads n bytes at offset of the pack (inside a range lookup() returned) into buf.
  void read(uint64_t offset, uint8_t* buf, size_t n);
  // Reads the total bytes at offset of the pack (consecutive ranges lookup() returned) straight
  // into the cnt buffers of iov, in order (their lengths add up to total; iov is consumed): one
  // preadv, no window and no copy of ours. A pack that ends early: Code::Corrupt.
  void read_into(uint64_t offset, struct iovec* iov, size_t cnt, size_t total);
  // The stream ended after payload `last_ordinal`: the index must name no later payload.
  void finish(uint64_t last_ordinal);
  const std::string& layer_id() const { return layer_.id; }

 private:
  PackReader(const LayerPaths& layer, dirfs::Fd data, dirfs::Fd index, uint64_t count, uint64_t pack_size);
  [[noreturn]] void damaged(const std::string& file, const std::string& why) const;
  bool load_next();  // decodes the next index record into next_; false at the end
  struct Rec {
    uint64_t ordinal = 0, offset = 0, size = 0;
  };
  LayerPaths layer_;
  dirfs::Fd data_, index_;
  uint64_t count_, pack_size_;
  uint64_t loaded_ = 0;   // records decoded so far
  uint64_t prev_end_ = 0, prev_ordinal_ = 0;
  bool have_next_ = false;
  Rec next_;
  std::vector<uint8_t> ibuf_;
  size_t ipos_ = 0, ilen_ = 0;
  uint64_t ifile_off_ = kPackHeaderSize;
  // The read-ahead window of the pack.
  struct FreeDeleter {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, FreeDeleter> win_;
  uint64_t win_off_ = 0;
  size_t win_len_ = 0;
  bool noatime_ = true;
};

}  // namespace rolayer::dirdrv
