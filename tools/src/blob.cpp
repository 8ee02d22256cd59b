// SPDX-License-Identifier: Apache-2.0
#include "blob.h"

#include <archive.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace cli {

// --- decompression policy -----------------------------------------------------------------------

namespace {
using FilterFn = int (*)(struct archive*);
struct SafeFilter {
  const char* name;
  FilterFn fn;
  const char* magic;  // the stream's first bytes
  size_t magic_len;
};
const SafeFilter kSafeFilters[] = {
    {"gzip", archive_read_support_filter_gzip, "\x1f\x8b", 2},
    {"bzip2", archive_read_support_filter_bzip2, "BZh", 3},
    {"xz", archive_read_support_filter_xz, "\xfd" "7zXZ\x00", 6},
    {"lzma", archive_read_support_filter_lzma, nullptr, 0},
    {"zstd", archive_read_support_filter_zstd, "\x28\xb5\x2f\xfd", 4},
    {"lz4", archive_read_support_filter_lz4, "\x04\x22\x4d\x18", 4},
};

// Which of kSafeFilters libarchive decodes in-process (answers ARCHIVE_OK, not ARCHIVE_WARN):
// probed once on a throwaway handle.
const std::vector<bool>& in_process_filters() {
  static const std::vector<bool> ok = [] {
    std::vector<bool> out;
    for (const auto& f : kSafeFilters) {
      struct archive* probe = archive_read_new();
      out.push_back(probe && f.fn(probe) == ARCHIVE_OK);
      if (probe) archive_read_free(probe);
    }
    return out;
  }();
  return ok;
}
}  // namespace

void add_safe_filters(struct archive* a) {
  const auto& ok = in_process_filters();
  for (size_t i = 0; i < ok.size(); i++)
    if (ok[i]) kSafeFilters[i].fn(a);
}

std::string unsupported_compression(const unsigned char* h, size_t n) {
  auto starts = [&](const char* magic, size_t len) { return n >= len && std::memcmp(h, magic, len) == 0; };
  if (starts("\x89LZO\x00\r\n\x1a\n", 9)) return "lzop";
  if (starts("LRZI", 4)) return "lrzip";
  if (starts("GRZipII", 7)) return "grzip";
  if (starts("LZIP", 4)) return "lzip";
  if (starts("\x1f\x9d", 2)) return "compress (.Z)";
  if (starts("begin ", 6) || starts("begin-base64 ", 13)) return "uuencode";
  // A decoder this libarchive has only as an external program.
  const auto& ok = in_process_filters();
  for (size_t i = 0; i < ok.size(); i++)
    if (!ok[i] && kSafeFilters[i].magic && starts(kSafeFilters[i].magic, kSafeFilters[i].magic_len))
      return std::string(kSafeFilters[i].name) + " (this libarchive has no in-process decoder for it)";
  return {};
}

std::string unsupported_compression_message(const std::string& name, const std::string& kind) {
  return name + ": " + kind +
         " compression is not supported: only gzip, zstd, xz, lzma, bzip2 and lz4 are decoded (in-process; no "
         "external program is ever run on input data)";
}

uint64_t parse_size_limit(const std::string& what, const std::string& value) {
  std::string v = value;
  uint64_t mult = 1;
  if (!v.empty()) {
    switch (v.back()) {
      case 'k': case 'K': mult = 1ull << 10; break;
      case 'm': case 'M': mult = 1ull << 20; break;
      case 'g': case 'G': mult = 1ull << 30; break;
      case 't': case 'T': mult = 1ull << 40; break;
      default: break;
    }
    if (mult != 1) v.pop_back();
  }
  if (v.empty() || v.size() > 15 || v.find_first_not_of("0123456789") != std::string::npos)
    usage_error(what + " needs a whole number (with an optional K, M, G or T suffix; 0 = no limit), not \"" + value + "\"");
  return std::stoull(v) * mult;
}

DecompressionLimits& decompression_limits() {
  static DecompressionLimits limits = [] {
    DecompressionLimits l;
    l.max_ratio = DecompressionLimits::kDefaultRatio;
    if (const char* e = std::getenv("ROLAYER_MAX_UNCOMPRESSED"); e && *e) l.max_bytes = parse_size_limit("ROLAYER_MAX_UNCOMPRESSED", e);
    if (const char* e = std::getenv("ROLAYER_MAX_RATIO"); e && *e) l.max_ratio = parse_size_limit("ROLAYER_MAX_RATIO", e);
    return l;
  }();
  return limits;
}

void check_decompression(const std::string& name, uint64_t uncompressed, uint64_t compressed) {
  const auto& l = decompression_limits();
  if (l.max_bytes && uncompressed > l.max_bytes)
    throw CliError(kBadInput, name + ": decompresses to more than " + human_bytes(static_cast<int64_t>(l.max_bytes)) +
                                  ": refused (the limit is set by --max-uncompressed or ROLAYER_MAX_UNCOMPRESSED)");
  if (l.max_ratio && uncompressed > DecompressionLimits::kRatioFloor && uncompressed / std::max<uint64_t>(compressed, 1) > l.max_ratio)
    throw CliError(kBadInput, name + ": decompresses to more than " + std::to_string(l.max_ratio) +
                                  " times its compressed size (" + human_bytes(static_cast<int64_t>(uncompressed)) +
                                  " from " + human_bytes(static_cast<int64_t>(compressed)) +
                                  "): refused as a decompression bomb (the limit is set by --max-ratio or "
                                  "ROLAYER_MAX_RATIO; 0 turns it off)");
}

// --- FdSource ---------------------------------------------------------------------------------

FdSource::~FdSource() {
  if (owned_ && fd_ >= 0) ::close(fd_);
}

size_t FdSource::read(void* buf, size_t cap) {
  for (;;) {
    check_interrupted();
    ssize_t n = ::read(fd_, buf, cap);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    sys_fail("read " + name_);
  }
}

std::unique_ptr<FdSource> FdSource::open_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) throw CliError(kNotFound, path + ": no such file");
    sys_fail("open " + path);
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return std::make_unique<FdSource>(fd, true, path);
}

// --- Hasher -----------------------------------------------------------------------------------

Hasher::Hasher(const std::string& algorithm) : alg_(algorithm), ctx_(EVP_MD_CTX_new()) {
  const EVP_MD* md = algorithm == "sha256" ? EVP_sha256() : algorithm == "sha512" ? EVP_sha512() : nullptr;
  if (!md) throw CliError(kBadInput, "unsupported digest algorithm \"" + algorithm + "\"");
  if (!ctx_ || EVP_DigestInit_ex(ctx_, md, nullptr) != 1) throw CliError(kFailure, "cannot initialise " + algorithm);
}

Hasher::~Hasher() { EVP_MD_CTX_free(ctx_); }

void Hasher::update(const void* data, size_t len) {
  if (len) EVP_DigestUpdate(ctx_, data, len);
}

std::string Hasher::finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_, md, &n);
  static const char* hex = "0123456789abcdef";
  std::string out = alg_ + ":";
  for (unsigned i = 0; i < n; i++) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::string Hasher::digest_of(const std::string& data, const std::string& algorithm) {
  Hasher h(algorithm);
  h.update(data.data(), data.size());
  return h.finish();
}

// --- LayerReader ------------------------------------------------------------------------------

namespace {
// The callback's non-zero return values (rolayer_error_user_code tells them apart).
constexpr int kCbFailed = 1;
}  // namespace

LayerReader::LayerReader(ByteSource& src, std::string input_name, Progress* progress, const BlobExpectation* expect)
    : src_(src), name_(std::move(input_name)), progress_(progress), expect_(expect), buf_(1 << 20) {
  std::string alg = "sha256";
  if (expect_ && !expect_->digest.empty()) alg = expect_->digest.substr(0, expect_->digest.find(':'));
  hash_ = std::make_unique<Hasher>(alg);
}

LayerReader::~LayerReader() {
  if (a_) archive_read_free(a_);
}

int LayerReader::fail(int code, const std::string& msg) {
  if (fail_code_ == 0) {
    fail_code_ = code;
    fail_msg_ = msg;
  }
  return kCbFailed;
}

void LayerReader::pull_bytes(size_t n, const void* data) {
  if (hash_) hash_->update(data, n);
  compressed_ += n;
  if (progress_) progress_->add(n);
  if (expect_ && expect_->size >= 0 && compressed_ > static_cast<uint64_t>(expect_->size))
    throw CliError(kVerify, expect_->name + ": larger than the " + std::to_string(expect_->size) +
                                " bytes its descriptor gives");
}

long LayerReader::raw_read(struct archive* a, void* self_v, const void** out) {
  auto* self = static_cast<LayerReader*>(self_v);
  *out = self->buf_.data();
  if (self->src_eof_) return 0;
  try {
    size_t n = self->src_.read(self->buf_.data(), self->buf_.size());
    if (n == 0) {
      self->src_eof_ = true;
      return 0;
    }
    if (self->head_n_ < sizeof self->head_) {
      size_t k = std::min(sizeof self->head_ - self->head_n_, n);
      std::memcpy(self->head_ + self->head_n_, self->buf_.data(), k);
      self->head_n_ += k;
    }
    self->pull_bytes(n, self->buf_.data());
    return static_cast<long>(n);
  } catch (const CliError& e) {
    self->fail(e.code(), e.what());
    archive_set_error(a, EIO, "%s", e.what());
    return -1;
  }
}

void LayerReader::open() {
  opened_ = true;
  a_ = archive_read_new();
  if (!a_) throw CliError(kFailure, "out of memory");
  add_safe_filters(a_);
  archive_read_support_format_raw(a_);
  if (archive_read_open(a_, this, nullptr, raw_read, nullptr) != ARCHIVE_OK) {
    if (fail_code_) throw CliError(fail_code_, fail_msg_);
    throw CliError(kBadInput, name_ + ": " + (archive_error_string(a_) ? archive_error_string(a_) : "cannot read"));
  }
  struct archive_entry* entry = nullptr;
  int r = archive_read_next_header(a_, &entry);
  if (r == ARCHIVE_EOF) {
    eof_ = true;  // empty input: the library decides what an empty tar is
  } else if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
    if (fail_code_) throw CliError(fail_code_, fail_msg_);
    throw CliError(kBadInput, name_ + ": " + (archive_error_string(a_) ? archive_error_string(a_) : "cannot read"));
  }
  filter_code_ = archive_filter_code(a_, 0);
  if (filter_code_ == ARCHIVE_FILTER_NONE) {
    std::string kind = unsupported_compression(head_, head_n_);
    if (!kind.empty()) throw CliError(kBadInput, unsupported_compression_message(name_, kind));
    // Uncompressed: the library's DiffID is this blob's digest, and the caller checks it.
    if (expect_ && expect_->diff_id_verifies && expect_->digest.rfind("sha256:", 0) == 0) {
      unhashed_ = true;
      hash_.reset();
    }
  }
}

std::string LayerReader::compression() const {
  switch (filter_code_) {
    case ARCHIVE_FILTER_NONE: return "none";
    case ARCHIVE_FILTER_GZIP: return "gzip";
    case ARCHIVE_FILTER_BZIP2: return "bzip2";
    case ARCHIVE_FILTER_XZ: return "xz";
    case ARCHIVE_FILTER_LZMA: return "lzma";
    case ARCHIVE_FILTER_ZSTD: return "zstd";
    case ARCHIVE_FILTER_LZ4: return "lz4";
    default: return filter_code_ < 0 ? "unknown" : (a_ ? archive_filter_name(a_, 0) : "unknown");
  }
}

// Drains what the decompressor left (trailing bytes belong to the blob and its digest) and
// checks the blob against its expectation: "" when it matches or nothing is expected.
std::string LayerReader::drain_and_check() {
  if (!drained_) {
    while (!src_eof_) {
      size_t n = src_.read(buf_.data(), buf_.size());
      if (n == 0) {
        src_eof_ = true;
        break;
      }
      pull_bytes(n, buf_.data());
    }
    drained_ = true;
    if (hash_) digest_ = hash_->finish();
  }
  if (!expect_) return {};
  if (expect_->size >= 0 && compressed_ != static_cast<uint64_t>(expect_->size))
    return expect_->name + ": size mismatch: the descriptor gives " + std::to_string(expect_->size) +
           " bytes, the blob has " + std::to_string(compressed_);
  if (!expect_->digest.empty() && !unhashed_ && digest_ != expect_->digest)
    return expect_->name + ": digest mismatch: the descriptor gives " + expect_->digest + ", the blob's content is " +
           digest_;
  return {};
}

int LayerReader::finish() {
  std::string m = drain_and_check();
  return m.empty() ? 0 : fail(kVerify, m);
}

std::optional<CliError> LayerReader::blob_mismatch() {
  if (!expect_ || (expect_->digest.empty() && expect_->size < 0)) return std::nullopt;
  if (fail_code_ == kVerify) return error();
  try {
    std::string m = drain_and_check();
    if (!m.empty()) return CliError(kVerify, m);
  } catch (const CliError& e) {
    if (e.code() == kVerify) return e;  // larger than the descriptor says
  }
  return std::nullopt;
}

int LayerReader::read_cb(void* buf, size_t cap, size_t* n_read, void* user_data) {
  auto* self = static_cast<LayerReader*>(user_data);
  *n_read = 0;
  try {
    return self->read(buf, cap, n_read);
  } catch (const CliError& e) {
    return self->fail(e.code(), e.what());
  } catch (const std::exception& e) {
    return self->fail(kFailure, e.what());
  } catch (...) {
    return self->fail(kFailure, "internal error");
  }
}

int LayerReader::read(void* buf, size_t cap, size_t* n_read) {
  if (fail_code_) return kCbFailed;
  if (interrupted()) {
    CliError e = interrupted_error();
    return fail(e.code(), e.what());
  }
  if (!opened_) open();
  if (eof_) return 0;
  la_ssize_t n = archive_read_data(a_, buf, cap);
  if (n > 0) {
    *n_read = static_cast<size_t>(n);
    uncompressed_ += static_cast<uint64_t>(n);
    check_decompression(name_, uncompressed_, compressed_);
    return 0;
  }
  if (n == 0) {
    eof_ = true;
    return finish();
  }
  if (fail_code_) return kCbFailed;
  const char* m = archive_error_string(a_);
  std::string msg = name_ + ": cannot decompress (" + compression() + "): " + (m ? m : "unknown error");
  // A blob that does not match its descriptor is the root cause: report that first.
  if (auto mismatch = blob_mismatch()) return fail(mismatch->code(), mismatch->what());
  return fail(kBadInput, msg);
}

Layer register_layer(rolayer_store* store, const std::string& parent, LayerReader& reader,
                     const rolayer_register_options* opts, const std::string& context) {
  rolayer_layer* l = nullptr;
  Err err;
  int rc = rolayer_register_ext(&l, store, parent.empty() ? nullptr : parent.c_str(), LayerReader::read_cb, &reader,
                                opts, err.out());
  if (rc == ROLAYER_OK) return Layer(l);
  if (rc == ROLAYER_EUSER && reader.failed()) throw reader.error();
  if (interrupted()) throw interrupted_error();
  // The library refused the stream (e.g. a malformed tar): when the blob does not match its
  // descriptor either, that is the root cause to report.
  if (auto mismatch = reader.blob_mismatch()) throw *mismatch;
  lib_fail(rc, err, context);
}

}  // namespace cli
