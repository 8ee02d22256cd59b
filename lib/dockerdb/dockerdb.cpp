// SPDX-License-Identifier: Apache-2.0
// dockerdb: a Docker data root's graphdriver layers, read offline. See dockerdb.h and
// docs/tar-split-format.md.
#include "dockerdb/dockerdb.h"

#include <archive.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "digest/digest.h"
#include "tar/path.h"

namespace rolayer::dockerdb {

using fs::Fd;
using json = nlohmann::json;

namespace {

constexpr int kMaxChain = 125;  // the engine's maximum depth
constexpr size_t kWholeFile = 1 << 20;  // files up to this size are checked before they go out

// --- CRC-64/ISO (Go's hash/crc64 with crc64.ISO) -------------------------------------------

struct Crc64Tables {
  uint64_t t[8][256];
  Crc64Tables() {
    constexpr uint64_t kPoly = 0xD800000000000000ULL;  // ISO, reflected
    for (int i = 0; i < 256; i++) {
      uint64_t c = static_cast<uint64_t>(i);
      for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
      t[0][i] = c;
    }
    for (int i = 0; i < 256; i++)
      for (int k = 1; k < 8; k++) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
};
const Crc64Tables& crc_tables() {
  static const Crc64Tables tables;
  return tables;
}

// --- small helpers ---------------------------------------------------------------------------

bool is_hex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) i++;
  return s.substr(i);
}

// Opens a directory below dirfd without following a symlink. ENOENT: returns an invalid Fd.
Fd open_dir(int dirfd, const std::string& name, const std::string& what) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) return Fd(fd);
  int e = errno;
  if (e == ENOENT) return Fd();
  if (e == ELOOP || e == ENOTDIR)
    throw Error(Code::Corrupt, what + " is not a directory (a symlink or another file type is not followed)");
  throw_errno("open " + what, e);
}

// Reads a small regular file below dirfd (no symlink followed). Returns false when it is absent.
bool read_small(int dirfd, const std::string& name, size_t max, const std::string& what, std::string* out) {
  Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    int e = errno;
    if (e == ENOENT) return false;
    if (e == ELOOP) throw Error(Code::Corrupt, what + " is a symlink (not followed)");
    throw_errno("open " + what, e);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("stat " + what);
  if (!S_ISREG(st.st_mode)) throw Error(Code::Corrupt, what + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max)
    throw Error(Code::Corrupt, what + " is too large (" + std::to_string(st.st_size) + " bytes; the limit is " +
                                   std::to_string(max) + ")");
  std::string data(static_cast<size_t>(st.st_size) + 1, '\0');
  size_t n = fs::read_full(fd.get(), reinterpret_cast<uint8_t*>(data.data()), data.size());
  if (n > static_cast<size_t>(st.st_size)) throw Error(Code::Corrupt, what + " grew while it was read");
  data.resize(n);
  *out = std::move(data);
  return true;
}

std::vector<std::string> list_dir(int dirfd, const std::string& what) {
  int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) throw_errno("list " + what);
  DIR* d = ::fdopendir(dup);
  if (!d) {
    int e = errno;
    ::close(dup);
    throw_errno("list " + what, e);
  }
  ::rewinddir(d);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* ent = ::readdir(d)) {
    std::string n = ent->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// A driver's directory name: what the engine writes (hex ids, maybe with "-init").
bool safe_name(const std::string& s) {
  if (s.empty() || s.size() > 255 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '.';
  });
}

int8_t b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return static_cast<int8_t>(c - 'A');
  if (c >= 'a' && c <= 'z') return static_cast<int8_t>(c - 'a' + 26);
  if (c >= '0' && c <= '9') return static_cast<int8_t>(c - '0' + 52);
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with padding (what Go's encoding/json writes for []byte). False if malformed.
bool base64_decode(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 != 0) return false;
  out->reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      unsigned char c = static_cast<unsigned char>(in[i + k]);
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        pad++;
        continue;
      }
      if (pad) return false;  // data after '='
      v[k] = b64_value(c);
      if (v[k] < 0) return false;
    }
    uint32_t n = (static_cast<uint32_t>(v[0]) << 18) | (static_cast<uint32_t>(v[1]) << 12) |
                 (static_cast<uint32_t>(v[2]) << 6) | static_cast<uint32_t>(v[3]);
    out->push_back(static_cast<char>(n >> 16));
    if (pad < 2) out->push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1) out->push_back(static_cast<char>(n & 0xff));
  }
  return true;
}

std::string hex_of(std::string_view s) {
  std::string h;
  h.reserve(s.size() * 2);
  static const char* d = "0123456789abcdef";
  for (unsigned char c : s) {
    h.push_back(d[c >> 4]);
    h.push_back(d[c & 15]);
  }
  return h;
}

// Gzipped JSON lines (tar-split.json.gz), decompressed with libarchive, one line at a time,
// each at most kMaxTarSplitLine bytes.
class GzLines {
 public:
  GzLines(Fd fd, std::string what) : fd_(std::move(fd)), what_(std::move(what)) {
    a_.reset(archive_read_new());
    if (!a_) throw Error(Code::NoMem, "out of memory");
    archive_read_support_filter_gzip(a());
    archive_read_support_format_raw(a());
    if (archive_read_open_fd(a(), fd_.get(), 64 * 1024) != ARCHIVE_OK) fail("cannot read");
    struct archive_entry* e;
    int r = archive_read_next_header(a(), &e);
    if (r == ARCHIVE_EOF) throw Error(Code::Corrupt, what_ + " is empty");
    if (r != ARCHIVE_OK) fail("cannot read");
    if (archive_filter_count(a()) < 2 || archive_filter_code(a(), 0) != ARCHIVE_FILTER_GZIP)
      throw Error(Code::Corrupt, what_ + " is not gzip-compressed");
  }
  GzLines(const GzLines&) = delete;
  GzLines& operator=(const GzLines&) = delete;

  // The next non-empty line (without its '\n'); false at the end.
  bool next(std::string& line) {
    line.clear();
    for (;;) {
      if (pos_ == buf_.size()) {
        if (eof_) {
          if (line.empty()) return false;
          number_++;
          return true;
        }
        buf_.resize(64 * 1024);
        la_ssize_t n = archive_read_data(a(), buf_.data(), buf_.size());
        if (n < 0) fail("cannot decompress");
        buf_.resize(static_cast<size_t>(n));
        pos_ = 0;
        if (n == 0) eof_ = true;
        continue;
      }
      const char* start = buf_.data() + pos_;
      const char* nl = static_cast<const char*>(std::memchr(start, '\n', buf_.size() - pos_));
      size_t take = nl ? static_cast<size_t>(nl - start) : buf_.size() - pos_;
      if (line.size() + take > kMaxTarSplitLine)
        throw Error(Code::Corrupt, what_ + ": line " + std::to_string(number_ + 1) + " is longer than " +
                                       std::to_string(kMaxTarSplitLine) + " bytes");
      line.append(start, take);
      pos_ += take;
      if (nl) {
        pos_++;
        number_++;
        if (line.empty()) continue;
        return true;
      }
    }
  }
  uint64_t line_number() const { return number_; }
  const std::string& what() const { return what_; }

 private:
  [[noreturn]] void fail(const std::string& doing) {
    const char* m = archive_error_string(a());
    int e = archive_errno(a());
    std::string msg = what_ + ": " + doing + ": " + (m ? m : "unknown error");
    // A read error of the file itself is I/O; everything else is a damaged record.
    if (e == EIO) throw Error(Code::Io, msg).with_errno(e);
    throw Error(Code::Corrupt, msg);
  }

  struct archive* a() const { return a_.get(); }
  struct ArchiveFree {
    void operator()(struct archive* p) const { archive_read_free(p); }
  };

  Fd fd_;
  std::string what_;
  std::unique_ptr<struct archive, ArchiveFree> a_;  // freed also when the constructor throws
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
  uint64_t number_ = 0;
};

// One entry of tar-split's record.
struct Entry {
  int type = 0;       // 1 file, 2 segment
  std::string name;   // file: the entry's name (from name, or name_raw)
  int64_t size = 0;   // file: payload size
  std::string payload;  // segment: raw bytes; file: the 8-byte CRC-64 (big-endian) or empty
};

Entry parse_entry(const std::string& line, const std::string& where) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::exception& e) {
    throw Error(Code::Corrupt, where + ": not JSON: " + e.what());
  }
  if (!j.is_object()) throw Error(Code::Corrupt, where + ": not a JSON object");
  Entry e;
  auto t = j.find("type");
  if (t == j.end() || !t->is_number_integer()) throw Error(Code::Corrupt, where + ": no integer \"type\"");
  e.type = t->get<int>();
  if (e.type != 1 && e.type != 2)
    throw Error(Code::Corrupt, where + ": unknown entry type " + std::to_string(e.type) + " (1 = file, 2 = segment)");
  auto p = j.find("payload");
  if (p != j.end() && !p->is_null()) {
    if (!p->is_string()) throw Error(Code::Corrupt, where + ": \"payload\" is not a base64 string");
    if (!base64_decode(p->get_ref<const std::string&>(), &e.payload))
      throw Error(Code::Corrupt, where + ": \"payload\" is not valid base64");
  }
  if (e.type == 1) {
    auto raw = j.find("name_raw");
    auto n = j.find("name");
    if (raw != j.end() && raw->is_string() && !raw->get_ref<const std::string&>().empty()) {
      if (!base64_decode(raw->get_ref<const std::string&>(), &e.name))
        throw Error(Code::Corrupt, where + ": \"name_raw\" is not valid base64");
    } else if (n != j.end() && n->is_string()) {
      e.name = n->get<std::string>();
    }
    auto s = j.find("size");
    if (s != j.end() && !s->is_null()) {
      if (!s->is_number_integer() || s->get<int64_t>() < 0)
        throw Error(Code::Corrupt, where + ": \"size\" is not a non-negative integer");
      e.size = s->get<int64_t>();
    }
    if (e.size > 0 && e.payload.size() != 8)
      throw Error(Code::Corrupt, where + ": file entry \"" + e.name + "\" has no 8-byte CRC-64 payload");
    if (e.size > 0 && e.name.empty()) throw Error(Code::Corrupt, where + ": file entry without a name");
  }
  return e;
}

// The reassembled, verified stream of one layer.
class LayerStream : public ByteSource {
 public:
  LayerStream(std::shared_ptr<const DataRoot> root, LayerInfo info, Fd files, std::unique_ptr<GzLines> lines)
      : root_(std::move(root)), info_(std::move(info)), files_(std::move(files)), lines_(std::move(lines)) {}

  size_t read(uint8_t* buf, size_t cap) override {
    if (cap == 0) return 0;
    for (;;) {
      if (seg_pos_ < seg_.size()) {
        size_t n = std::min(cap, seg_.size() - seg_pos_);
        std::memcpy(buf, seg_.data() + seg_pos_, n);
        seg_pos_ += n;
        sha_.update(buf, n);
        return n;
      }
      if (file_) return read_file(buf, cap);
      if (done_) return 0;
      Entry e;
      try {
        if (!lines_->next(line_)) {
          finish();
          return 0;
        }
        e = parse_entry(line_, lines_->what() + " line " + std::to_string(lines_->line_number()));
      } catch (Error& err) {
        if (err.code() != Code::Corrupt && err.code() != Code::Io) throw;
        throw Error(err.code(), "layer " + info_.chain_id + ": " + err.what())
            .with_errno(err.sys_errno())
            .with_diff_id(info_.diff_id);
      }
      line_.clear();
      if (e.type == 2) {
        seg_ = std::move(e.payload);
        seg_pos_ = 0;
        if (seg_.size() >= 512) {
          header_.assign(seg_, seg_.size() - 512, 512);
          sparse_hint_ = seg_.find("GNU.sparse.") != std::string::npos;
        }
        continue;
      }
      if (e.size == 0) continue;  // no payload (directories, links, empty files)
      check_not_sparse(e);
      open_file(e);
      if (size_ <= static_cast<int64_t>(kWholeFile)) load_whole();
    }
  }

 private:
  [[noreturn]] void damaged(const std::string& path, const std::string& what) {
    throw Error(Code::Corrupt, "layer " + info_.chain_id + ": " + path + ": " + what)
        .with_path(path)
        .with_diff_id(info_.diff_id);
  }

  // A sparse entry (GNU 'S', or PAX GNU.sparse.*) is recorded with its expanded size while the
  // archive held only its data: tar-split cannot give the archive back (the engine would read
  // the whole expanded file, possibly many GiB of holes, and then fail the DiffID). Said at once.
  void check_not_sparse(const Entry& e) {
    if (header_.size() != 512) return;
    bool sparse = header_[156] == 'S' || sparse_hint_;
    if (!sparse) return;
    const auto* f = reinterpret_cast<const unsigned char*>(header_.data()) + 124;
    uint64_t declared = 0;
    if (f[0] & 0x80) {
      for (int i = 1; i < 12; i++) declared = (declared << 8) | f[i];
    } else {
      for (int i = 0; i < 12 && f[i]; i++)
        if (f[i] >= '0' && f[i] <= '7') declared = declared * 8 + (f[i] - '0');
    }
    if (declared == static_cast<uint64_t>(e.size)) return;
    throw Error(Code::Unsupported, "layer " + info_.chain_id + ": " + e.name +
                                       ": a sparse file, which tar-split cannot reassemble (the tar header holds " +
                                       std::to_string(declared) + " data bytes, the record " + std::to_string(e.size) +
                                       "): the engine cannot export this layer either")
        .with_path(e.name)
        .with_diff_id(info_.diff_id);
  }

  void open_file(const Entry& e) {
    std::string cleaned;
    try {
      cleaned = tar::clean_path(e.name);
    } catch (const Error&) {
      throw Error(Code::Unsafe, "layer " + info_.chain_id + ": " + e.name + ": the record's path leaves the layer")
          .with_path(e.name)
          .with_diff_id(info_.diff_id);
    }
    if (cleaned.empty()) damaged(e.name, "a file entry names the layer's root");
    // Walk the components below the layer's directory, never following a symlink.
    Fd dir;
    int at = files_.get();
    size_t start = 0;
    for (;;) {
      size_t slash = cleaned.find('/', start);
      if (slash == std::string::npos) break;
      std::string comp = cleaned.substr(start, slash - start);
      Fd next(::openat(at, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!next) {
        int err = errno;
        if (err == ENOENT) damaged(e.name, "missing file (directory " + cleaned.substr(0, slash) + " is missing)");
        if (err == ELOOP || err == ENOTDIR)
          damaged(e.name, "missing file (" + cleaned.substr(0, slash) + " is not a directory; symlinks are not followed)");
        throw_errno("layer " + info_.chain_id + ": open " + e.name, err);
      }
      dir = std::move(next);
      at = dir.get();
      start = slash + 1;
    }
    std::string base = cleaned.substr(start);
    constexpr int kFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
    Fd fd;
    if (noatime_) {
      fd = Fd(::openat(at, base.c_str(), kFlags | O_NOATIME));
      if (!fd && errno == EPERM) noatime_ = false;
    }
    if (!fd) fd = Fd(::openat(at, base.c_str(), kFlags));
    if (!fd) {
      int err = errno;
      if (err == ENOENT) damaged(e.name, "missing file");
      if (err == ELOOP) damaged(e.name, "not a regular file (a symlink)");
      throw_errno("layer " + info_.chain_id + ": open " + e.name, err);
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) throw_errno("layer " + info_.chain_id + ": stat " + e.name);
    if (!S_ISREG(st.st_mode)) damaged(e.name, "not a regular file");
    if (st.st_size != e.size)
      damaged(e.name, "size differs: the record has " + std::to_string(e.size) + " bytes, the file " +
                          std::to_string(st.st_size));
    // Blocking reads from here (the file is regular).
    int fl = ::fcntl(fd.get(), F_GETFL);
    if (fl >= 0) ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
    file_ = std::move(fd);
    name_ = e.name;
    remaining_ = static_cast<uint64_t>(e.size);
    size_ = e.size;
    crc_ = 0;
    expect_crc_ = e.payload;
  }

  // A file up to kWholeFile bytes is read and checked whole before any of its bytes go out: it
  // is then served like a segment.
  void load_whole() {
    std::string data(static_cast<size_t>(size_), '\0');
    size_t got = 0;
    while (file_) {
      size_t n = read_file(reinterpret_cast<uint8_t*>(data.data()) + got, data.size() - got, false);
      got += n;
    }
    seg_ = std::move(data);
    seg_pos_ = 0;
  }

  size_t read_file(uint8_t* buf, size_t cap, bool hash = true) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(cap, remaining_));
    ssize_t n;
    do n = ::read(file_.get(), buf, want);
    while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno("layer " + info_.chain_id + ": read " + name_);
    if (n == 0)
      damaged(name_, "size differs: the record has " + std::to_string(size_) + " bytes, the file ended after " +
                         std::to_string(size_ - static_cast<int64_t>(remaining_)));
    size_t got = static_cast<size_t>(n);
    crc_ = crc64_iso(crc_, buf, got);
    remaining_ -= got;
    if (remaining_ == 0) {
      // The end: no byte more on disk, and the checksum of what was read.
      uint8_t probe;
      ssize_t m;
      do m = ::read(file_.get(), &probe, 1);
      while (m < 0 && errno == EINTR);
      if (m > 0) damaged(name_, "size differs: the file is longer than the record's " + std::to_string(size_) + " bytes");
      std::string got_crc(8, '\0');
      for (int i = 0; i < 8; i++) got_crc[static_cast<size_t>(i)] = static_cast<char>(crc_ >> (56 - 8 * i));
      if (got_crc != expect_crc_)
        damaged(name_, "content differs: CRC-64 " + hex_of(got_crc) + ", the record says " + hex_of(expect_crc_));
      file_.reset();
    }
    if (hash) sha_.update(buf, got);
    return got;
  }

  void finish() {
    done_ = true;
    std::string got = sha_.finish().str();
    if (got != info_.diff_id)
      throw Error(Code::Digest, "layer " + info_.chain_id + ": could not verify layer data for: " + info_.diff_id +
                                    " (the reassembled stream is " + got + ")")
          .with_diff_id(info_.diff_id);
  }

  std::shared_ptr<const DataRoot> root_;
  LayerInfo info_;
  Fd files_;
  std::unique_ptr<GzLines> lines_;
  Hasher sha_;
  std::string line_, seg_;
  size_t seg_pos_ = 0;
  Fd file_;
  std::string name_, expect_crc_;
  uint64_t remaining_ = 0, crc_ = 0;
  int64_t size_ = 0;
  bool done_ = false, noatime_ = true;
  std::string header_;        // the last 512 bytes of the latest segment: the next entry's header
  bool sparse_hint_ = false;  // that segment holds PAX GNU.sparse.* records
};

LayerInfo read_layer(int layerdb, const std::string& hex, const std::string& where) {
  std::string chain = "sha256:" + hex;
  Fd d = open_dir(layerdb, hex, where + "/" + hex);
  if (!d) throw Error(Code::NotFound, "no layer " + chain + " in " + where);
  LayerInfo li;
  li.chain_id = chain;
  auto rel = [&](const char* f) { return where + "/" + hex + "/" + f; };
  std::string s;
  if (!read_small(d.get(), "diff", kMaxMetaFile, rel("diff"), &s))
    throw Error(Code::Corrupt, "layer " + chain + ": " + rel("diff") + " is missing");
  s = trim(s);
  if (!Digest::valid(s) || s.rfind("sha256:", 0) != 0)
    throw Error(Code::Corrupt, "layer " + chain + ": " + rel("diff") + " does not hold a sha256 digest");
  li.diff_id = s;
  if (read_small(d.get(), "parent", kMaxMetaFile, rel("parent"), &s)) {
    s = trim(s);
    if (!Digest::valid(s) || s.rfind("sha256:", 0) != 0)
      throw Error(Code::Corrupt, "layer " + chain + ": " + rel("parent") + " does not hold a sha256 digest");
    li.parent = s;
  }
  if (!read_small(d.get(), "cache-id", kMaxMetaFile, rel("cache-id"), &s))
    throw Error(Code::Corrupt, "layer " + chain + ": " + rel("cache-id") + " is missing");
  s = trim(s);
  if (!safe_name(s)) throw Error(Code::Corrupt, "layer " + chain + ": " + rel("cache-id") + " is not a plain directory name");
  li.cache_id = s;
  if (read_small(d.get(), "size", kMaxMetaFile, rel("size"), &s)) {
    s = trim(s);
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || errno != 0 || *end != '\0' || v < 0)
      throw Error(Code::Corrupt, "layer " + chain + ": " + rel("size") + " is not a size");
    li.size = v;
  }
  if (read_small(d.get(), "descriptor.json", kMaxMetaFile, rel("descriptor.json"), &s)) {
    try {
      json j = json::parse(s);
      li.descriptor_media_type = j.value("mediaType", std::string());
      li.descriptor_digest = j.value("digest", std::string());
      li.descriptor_size = j.value("size", int64_t{-1});
    } catch (const json::exception& e) {
      throw Error(Code::Corrupt, "layer " + chain + ": " + rel("descriptor.json") + ": " + e.what());
    }
    if (!li.descriptor_digest.empty() && !Digest::valid(li.descriptor_digest))
      throw Error(Code::Corrupt, "layer " + chain + ": " + rel("descriptor.json") + ": malformed digest");
  }
  return li;
}

}  // namespace

uint64_t crc64_iso(uint64_t crc, const uint8_t* p, size_t n) {
  const auto& T = crc_tables().t;
  crc = ~crc;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    crc ^= v;
    crc = T[7][crc & 0xff] ^ T[6][(crc >> 8) & 0xff] ^ T[5][(crc >> 16) & 0xff] ^ T[4][(crc >> 24) & 0xff] ^
          T[3][(crc >> 32) & 0xff] ^ T[2][(crc >> 40) & 0xff] ^ T[1][(crc >> 48) & 0xff] ^ T[0][crc >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) crc = T[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::shared_ptr<DataRoot> DataRoot::open(const std::string& path, const std::string& driver) {
  std::shared_ptr<DataRoot> r(new DataRoot());
  r->path_ = path;
  r->root_ = Fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!r->root_) {
    int e = errno;
    if (e == ENOENT) throw Error(Code::NotFound, "no Docker data root at " + path);
    throw_errno("open the Docker data root " + path, e);
  }
  Fd image = open_dir(r->root_.get(), "image", path + "/image");
  if (!image) throw Error(Code::NotFound, path + " is not a Docker data root: " + path + "/image is missing");
  static const std::set<std::string> kSupported = {"overlay2", "vfs"};
  std::string chosen = driver;
  if (chosen.empty()) {
    std::vector<std::string> have, other;
    for (const auto& n : list_dir(image.get(), path + "/image")) {
      Fd d = open_dir(image.get(), n, path + "/image/" + n);
      if (!d) continue;
      struct stat st;
      if (::fstatat(d.get(), "layerdb", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) continue;
      (kSupported.count(n) ? have : other).push_back(n);
    }
    if (have.empty() && !other.empty())
      throw Error(Code::Unsupported, "unsupported driver: " + other[0] + " (in " + path +
                                         "/image; librolayer reads the overlay2 and vfs drivers)");
    if (have.empty()) throw Error(Code::NotFound, "no layer database under " + path + "/image");
    if (have.size() > 1) {
      std::string names;
      for (const auto& h : have) names += (names.empty() ? "" : ", ") + h;
      throw Error(Code::Inval, path + " holds layers of several drivers (" + names + "): name one");
    }
    chosen = have[0];
  } else if (!kSupported.count(chosen)) {
    throw Error(Code::Unsupported, "unsupported driver: " + chosen + " (librolayer reads the overlay2 and vfs drivers)");
  }
  r->driver_ = chosen;
  r->imagedir_ = open_dir(image.get(), chosen, path + "/image/" + chosen);
  if (!r->imagedir_) throw Error(Code::NotFound, "no layer database for driver " + chosen + " in " + path + "/image");
  Fd layerdb = open_dir(r->imagedir_.get(), "layerdb", path + "/image/" + chosen + "/layerdb");
  if (!layerdb) throw Error(Code::NotFound, "no layer database: " + path + "/image/" + chosen + "/layerdb is missing");
  r->layerdb_ = open_dir(layerdb.get(), "sha256", path + "/image/" + chosen + "/layerdb/sha256");
  if (!r->layerdb_) throw Error(Code::NotFound, "no layers: " + path + "/image/" + chosen + "/layerdb/sha256 is missing");
  return r;
}

std::string DataRoot::meta_rel(const std::string& hex, const std::string& file) const {
  return "image/" + driver_ + "/layerdb/sha256/" + hex + (file.empty() ? "" : "/" + file);
}

LayerInfo DataRoot::layer(const std::string& chain_id) const {
  std::string hex = chain_id.rfind("sha256:", 0) == 0 ? chain_id.substr(7) : chain_id;
  if (hex.size() != 64 || !is_hex(hex)) throw Error(Code::Inval, "not a ChainID: " + chain_id);
  return read_layer(layerdb_.get(), hex, path_ + "/image/" + driver_ + "/layerdb/sha256");
}

std::vector<LayerInfo> DataRoot::layers(std::vector<std::string>* skipped) const {
  std::vector<LayerInfo> all;
  for (const auto& n : list_dir(layerdb_.get(), path_ + "/" + meta_rel("", ""))) {
    if (n.size() != 64 || !is_hex(n)) continue;
    try {
      all.push_back(layer(n));
    } catch (const Error& e) {
      if (!skipped) throw;
      skipped->push_back("sha256:" + n + ": " + e.what());
    }
  }
  // Depths (bounded: a parent cycle in a hostile layerdb stops at the engine's maximum).
  std::map<std::string, const LayerInfo*> by_id;
  for (const auto& l : all) by_id[l.chain_id] = &l;
  std::map<std::string, int> depth;
  for (const auto& l : all) {
    int d = 1;
    const LayerInfo* p = &l;
    while (!p->parent.empty() && d <= kMaxChain) {
      auto it = by_id.find(p->parent);
      if (it == by_id.end()) break;
      p = it->second;
      d++;
    }
    depth[l.chain_id] = d;
  }
  std::stable_sort(all.begin(), all.end(), [&](const LayerInfo& a, const LayerInfo& b) {
    int da = depth[a.chain_id], db = depth[b.chain_id];
    return da != db ? da < db : a.chain_id < b.chain_id;
  });
  return all;
}

Fd DataRoot::open_layer_files(const LayerInfo& li) const {
  std::string rel;
  Fd d;
  if (driver_ == "overlay2") {
    rel = "overlay2/" + li.cache_id + "/diff";
    Fd drv = open_dir(root_.get(), "overlay2", path_ + "/overlay2");
    Fd c = drv ? open_dir(drv.get(), li.cache_id, path_ + "/overlay2/" + li.cache_id) : Fd();
    d = c ? open_dir(c.get(), "diff", path_ + "/" + rel) : Fd();
  } else {
    rel = "vfs/dir/" + li.cache_id;
    Fd drv = open_dir(root_.get(), "vfs", path_ + "/vfs");
    Fd dir = drv ? open_dir(drv.get(), "dir", path_ + "/vfs/dir") : Fd();
    d = dir ? open_dir(dir.get(), li.cache_id, path_ + "/" + rel) : Fd();
  }
  if (!d)
    throw Error(Code::Corrupt, "layer " + li.chain_id + ": the driver's directory " + path_ + "/" + rel + " is missing")
        .with_diff_id(li.diff_id);
  return d;
}

fs::Fd DataRoot::open_layer_meta_dir(const std::string& hex) const {
  Fd d = open_dir(layerdb_.get(), hex, path_ + "/" + meta_rel(hex, ""));
  if (!d) throw Error(Code::NotFound, "no layer sha256:" + hex + " in " + path_ + "/" + meta_rel("", ""));
  return d;
}

std::unique_ptr<ByteSource> DataRoot::open_stream(const std::string& chain_id) const {
  LayerInfo li = layer(chain_id);
  std::string hex = li.chain_id.substr(7);
  // The ChainID is the layer's identity: parent + diff must give it.
  Digest want = rolayer::chain_id(li.parent.empty() ? Digest() : Digest::parse(li.parent), Digest::parse(li.diff_id));
  if (want.str() != li.chain_id)
    throw Error(Code::Corrupt, "layer " + li.chain_id + ": " + path_ + "/" + meta_rel(hex, "diff") +
                                   " (or parent) was changed: parent and DiffID " + li.diff_id + " give ChainID " +
                                   want.str())
        .with_diff_id(li.diff_id);
  Fd files = open_layer_files(li);
  Fd meta = open_layer_meta_dir(hex);
  std::string ts = path_ + "/" + meta_rel(hex, "tar-split.json.gz");
  Fd tsfd(::openat(meta.get(), "tar-split.json.gz", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!tsfd) {
    int e = errno;
    if (e == ENOENT) throw Error(Code::Corrupt, "layer " + li.chain_id + ": " + ts + " is missing").with_diff_id(li.diff_id);
    if (e == ELOOP) throw Error(Code::Corrupt, "layer " + li.chain_id + ": " + ts + " is a symlink (not followed)");
    throw_errno("open " + ts, e);
  }
  struct stat st;
  if (::fstat(tsfd.get(), &st) != 0) throw_errno("stat " + ts);
  if (!S_ISREG(st.st_mode)) throw Error(Code::Corrupt, "layer " + li.chain_id + ": " + ts + " is not a regular file");
  int fl = ::fcntl(tsfd.get(), F_GETFL);
  if (fl >= 0) ::fcntl(tsfd.get(), F_SETFL, fl & ~O_NONBLOCK);
  std::unique_ptr<GzLines> lines;
  try {
    lines = std::make_unique<GzLines>(std::move(tsfd), ts);
  } catch (Error& e) {
    if (e.code() == Code::Corrupt) e.with_diff_id(li.diff_id);
    throw Error(e.code(), "layer " + li.chain_id + ": " + e.what()).with_diff_id(li.diff_id);
  }
  return std::make_unique<LayerStream>(shared_from_this(), std::move(li), std::move(files), std::move(lines));
}

int64_t DataRoot::verify(const std::string& chain_id, void (*progress)(uint64_t, void*), void* ud) const {
  auto s = open_stream(chain_id);
  std::vector<uint8_t> buf(1 << 20);
  int64_t total = 0;
  for (;;) {
    size_t n = s->read(buf.data(), buf.size());
    if (n == 0) break;
    total += static_cast<int64_t>(n);
    if (progress) progress(n, ud);
  }
  return total;
}

std::vector<std::string> DataRoot::image_ids() const {
  std::vector<std::string> ids;
  Fd db = open_dir(imagedir_.get(), "imagedb", path_ + "/image/" + driver_ + "/imagedb");
  if (!db) return ids;
  Fd content = open_dir(db.get(), "content", path_ + "/image/" + driver_ + "/imagedb/content");
  if (!content) return ids;
  Fd sha = open_dir(content.get(), "sha256", path_ + "/image/" + driver_ + "/imagedb/content/sha256");
  if (!sha) return ids;
  for (const auto& n : list_dir(sha.get(), "imagedb"))
    if (n.size() == 64 && is_hex(n)) ids.push_back(n);
  return ids;
}

std::vector<std::string> DataRoot::chain_of_image(const std::string& hex) const {
  std::string rel = path_ + "/image/" + driver_ + "/imagedb/content/sha256/" + hex;
  Fd db = open_dir(imagedir_.get(), "imagedb", "imagedb");
  Fd content = db ? open_dir(db.get(), "content", "imagedb/content") : Fd();
  Fd sha = content ? open_dir(content.get(), "sha256", "imagedb/content/sha256") : Fd();
  std::string cfg;
  if (!sha || !read_small(sha.get(), hex, kMaxConfigFile, rel, &cfg))
    throw Error(Code::NotFound, "no image sha256:" + hex + " (" + rel + ")");
  if (sha256_of(cfg.data(), cfg.size()).str() != "sha256:" + hex)
    throw Error(Code::Corrupt, rel + ": the image config does not match its ID");
  std::vector<std::string> chain;
  try {
    json j = json::parse(cfg);
    const json& ids = j.at("rootfs").at("diff_ids");
    if (!ids.is_array()) throw Error(Code::Corrupt, rel + ": rootfs.diff_ids is not an array");
    if (ids.size() > static_cast<size_t>(kMaxChain)) throw Error(Code::Corrupt, rel + ": more than 125 layers");
    Digest parent;
    for (const auto& d : ids) {
      Digest diff = Digest::parse(d.get<std::string>());
      parent = rolayer::chain_id(parent, diff);
      chain.push_back(parent.str());
    }
  } catch (const json::exception& e) {
    throw Error(Code::Corrupt, rel + ": " + e.what());
  } catch (const Error& e) {
    if (e.code() != Code::Inval) throw;
    throw Error(Code::Corrupt, rel + ": " + e.what());
  }
  if (chain.empty()) throw Error(Code::NotFound, "image sha256:" + hex + " has no layers");
  for (const auto& c : chain) layer(c);  // each must be in the layerdb (NotFound otherwise)
  return chain;
}

std::vector<std::string> DataRoot::resolve(const std::string& ref) const {
  if (ref.empty()) throw Error(Code::Inval, "an empty image reference");
  bool digest_form = ref.rfind("sha256:", 0) == 0;
  std::string hex = digest_form ? ref.substr(7) : ref;
  auto layer_chain = [&](const std::string& h) {
    std::vector<std::string> chain;
    LayerInfo li = layer(h);
    chain.push_back(li.chain_id);
    while (!li.parent.empty()) {
      if (static_cast<int>(chain.size()) >= kMaxChain)
        throw Error(Code::Corrupt, "layer " + chain.front() + ": its parent chain is longer than 125 layers (a cycle?)");
      li = layer(li.parent);
      chain.push_back(li.chain_id);
    }
    std::reverse(chain.begin(), chain.end());
    return chain;
  };
  if (is_hex(hex) && hex.size() <= 64) {
    std::vector<std::string> layers_m, images_m;
    for (const auto& n : list_dir(layerdb_.get(), "layerdb"))
      if (n.size() == 64 && is_hex(n) && n.compare(0, hex.size(), hex) == 0) layers_m.push_back(n);
    for (const auto& n : image_ids())
      if (n.compare(0, hex.size(), hex) == 0) images_m.push_back(n);
    if (layers_m.size() + images_m.size() == 1)
      return layers_m.empty() ? chain_of_image(images_m[0]) : layer_chain(layers_m[0]);
    if (layers_m.size() + images_m.size() > 1) {
      if (hex.size() == 64 && !layers_m.empty()) return layer_chain(hex);
      throw Error(Code::Inval, "ambiguous ID prefix " + ref + " (" + std::to_string(layers_m.size()) + " layers, " +
                                   std::to_string(images_m.size()) + " images)");
    }
    if (digest_form) throw Error(Code::NotFound, "no layer or image " + ref + " in " + path_);
  }
  // A name from repositories.json.
  std::string repos;
  std::string rel = path_ + "/image/" + driver_ + "/repositories.json";
  if (!read_small(imagedir_.get(), "repositories.json", kMaxConfigFile, rel, &repos))
    throw Error(Code::NotFound, "no image " + ref + " (" + rel + " is missing)");
  std::vector<std::string> candidates;
  auto add = [&](std::string r) {
    candidates.push_back(r);
    size_t slash = r.rfind('/');
    std::string last = slash == std::string::npos ? r : r.substr(slash + 1);
    if (last.find(':') == std::string::npos && r.find('@') == std::string::npos) candidates.push_back(r + ":latest");
  };
  add(ref);
  for (const char* prefix : {"docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"})
    if (ref.rfind(prefix, 0) == 0) add(ref.substr(std::strlen(prefix)));
  std::vector<std::string> more;
  for (const auto& c : candidates) {
    more.push_back(c);
    if (c.find('/') == std::string::npos) more.push_back("docker.io/library/" + c);
  }
  try {
    json j = json::parse(repos);
    const json& all = j.at("Repositories");
    for (const auto& want : more)
      for (auto repo = all.begin(); repo != all.end(); ++repo) {
        if (!repo.value().is_object()) continue;
        auto it = repo.value().find(want);
        if (it == repo.value().end() || !it->is_string()) continue;
        std::string id = it->get<std::string>();
        if (id.rfind("sha256:", 0) != 0 || id.size() != 71 || !is_hex(id.substr(7)))
          throw Error(Code::Corrupt, rel + ": " + want + " names a malformed image ID");
        return chain_of_image(id.substr(7));
      }
  } catch (const json::exception& e) {
    throw Error(Code::Corrupt, rel + ": " + e.what());
  }
  throw Error(Code::NotFound, "no layer, image ID or image name " + ref + " in " + path_);
}

}  // namespace rolayer::dockerdb
