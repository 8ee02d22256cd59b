/* SPDX-License-Identifier: Apache-2.0 */
// Input plumbing: byte sources, digests, and the decompressing layer reader that feeds a
// (possibly compressed) tar into rolayer_register through a rolayer_read_fn callback while
// hashing and counting the compressed bytes as libarchive pulls them: one pass does it all.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "progress.h"

struct archive;
struct evp_md_ctx_st;

namespace cli {

// Decompression: only libarchive's in-process decoders (gzip, bzip2, xz, lzma, zstd, lz4) are
// enabled, each only where libarchive answers ARCHIVE_OK (ARCHIVE_WARN means it would run an
// external program: such a filter is left out). No external program ever runs on input data.
void add_safe_filters(struct archive* a);

// "lzop", "lrzip", ... when the first bytes are a compression the tool does not decode (the
// formats libarchive handles only through an external program), else "".
std::string unsupported_compression(const unsigned char* head, size_t n);
std::string unsupported_compression_message(const std::string& name, const std::string& kind);

// Limits on decompression (hostile input: a small blob that expands without end). 0: no limit.
struct DecompressionLimits {
  uint64_t max_bytes = 0;   // uncompressed bytes per stream
  uint64_t max_ratio = 0;   // uncompressed / compressed, checked once past kRatioFloor bytes
  static constexpr uint64_t kRatioFloor = 16u << 20;
  static constexpr uint64_t kDefaultRatio = 4096;
};
// "0", "512", "64M", "2G", "1T" -> bytes (or a plain number); a usage error otherwise.
uint64_t parse_size_limit(const std::string& what, const std::string& value);
// The limits in force: ROLAYER_MAX_UNCOMPRESSED / ROLAYER_MAX_RATIO (read at the first use),
// overridden by --max-uncompressed / --max-ratio. Defaults: no size limit, ratio 4096.
DecompressionLimits& decompression_limits();
// Throws CliError(kBadInput) when UNCOMPRESSED (from COMPRESSED input bytes) breaks a limit.
void check_decompression(const std::string& name, uint64_t uncompressed, uint64_t compressed);

// A sequential byte source. read() returns 0 at the end; it throws CliError on failure.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual size_t read(void* buf, size_t cap) = 0;
};

// A file descriptor (owned or not).
class FdSource : public ByteSource {
 public:
  FdSource(int fd, bool owned, std::string name) : fd_(fd), owned_(owned), name_(std::move(name)) {}
  ~FdSource() override;
  size_t read(void* buf, size_t cap) override;
  static std::unique_ptr<FdSource> open_file(const std::string& path);
  int fd() const { return fd_; }

 private:
  int fd_;
  bool owned_;
  std::string name_;
};

// A streaming digest ("sha256" or "sha512") over OpenSSL's EVP interface.
class Hasher {
 public:
  explicit Hasher(const std::string& algorithm = "sha256");
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void update(const void* data, size_t len);
  std::string finish();  // "<algorithm>:<hex>"
  static std::string digest_of(const std::string& data, const std::string& algorithm = "sha256");

 private:
  std::string alg_;
  evp_md_ctx_st* ctx_;
};

// What a blob must be: its descriptor digest ("sha256:<hex>") and size (-1: unchecked).
struct BlobExpectation {
  std::string name;    // how errors name the blob (e.g. "blob sha256:abcd…" or a file name)
  std::string digest;  // empty: not checked
  int64_t size = -1;   // -1: not checked
  // The caller compares the DiffID the library computes with `digest` (sha256) once the layer is
  // in (import: uncompressed layers of image archives, whose digest is their DiffID): when the
  // blob turns out uncompressed, LayerReader does not hash it a second time (unhashed()).
  bool diff_id_verifies = false;
};

// Reads src through libarchive's raw format with every decompression filter (plain, gzip,
// zstd, xz, … detected from the bytes) and serves the uncompressed tar through read_cb, the
// rolayer_read_fn given to rolayer_register_ext. The compressed bytes are hashed and counted in
// the same pass; at the end of the uncompressed stream the rest of src is drained (so trailing
// bytes count) and checked against the expectation: a mismatch makes read_cb fail, which makes
// the registration fail and leave nothing behind.
class LayerReader {
 public:
  LayerReader(ByteSource& src, std::string input_name, Progress* progress, const BlobExpectation* expect = nullptr);
  ~LayerReader();
  LayerReader(const LayerReader&) = delete;
  LayerReader& operator=(const LayerReader&) = delete;

  static int read_cb(void* buf, size_t cap, size_t* n_read, void* user_data);

  // After a failed registration that reported ROLAYER_EUSER: our own error (exit code and
  // message). failed() is false when the failure came from the library itself.
  bool failed() const { return fail_code_ != 0; }
  CliError error() const { return CliError(fail_code_, fail_msg_); }

  // After a failure: reads the rest of the blob and, when it does not match its expectation,
  // returns that error (the root cause). Never throws.
  std::optional<CliError> blob_mismatch();

  const std::string& compressed_digest() const { return digest_; }  // valid after the end
  // The blob is uncompressed and expect->diff_id_verifies: it was not hashed here (digest not
  // checked, compressed_digest() empty); the caller checks the library's DiffID against it.
  bool unhashed() const { return unhashed_; }
  uint64_t compressed_size() const { return compressed_; }
  std::string compression() const;  // "none", "gzip", "zstd", "xz", …

 private:
  int read(void* buf, size_t cap, size_t* n_read);
  static long raw_read(struct archive* a, void* self, const void** out);
  void open();
  int finish();
  std::string drain_and_check();
  int fail(int code, const std::string& msg);
  void pull_bytes(size_t n, const void* data);

  ByteSource& src_;
  std::string name_;
  Progress* progress_;
  const BlobExpectation* expect_;
  struct archive* a_ = nullptr;
  bool opened_ = false, eof_ = false, src_eof_ = false;
  bool unhashed_ = false, drained_ = false;
  std::vector<unsigned char> buf_;
  std::unique_ptr<Hasher> hash_;
  uint64_t compressed_ = 0;
  uint64_t uncompressed_ = 0;
  unsigned char head_[16] = {};
  size_t head_n_ = 0;
  std::string digest_;
  int filter_code_ = -1;
  int fail_code_ = 0;
  std::string fail_msg_;
};

// Registers a layer from reader with options; on success returns the new handle. Failures throw
// CliError: the reader's own error when the callback aborted, else the library's.
Layer register_layer(rolayer_store* store, const std::string& parent, LayerReader& reader,
                     const rolayer_register_options* opts, const std::string& context);

}  // namespace cli
