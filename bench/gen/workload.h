/* SPDX-License-Identifier: Apache-2.0 */
// Deterministic benchmark workloads: layer tars written the way image builders write them.
//
// BuildKit and the Docker engine write layers with Go's archive/tar, asking for the PAX format
// (moby's archive package sets hdr.Format = FormatPAX and truncates times to seconds). Go then
// writes a plain USTAR-magic header ("ustar\0" "00", octal fields NUL-terminated, checksum
// "%06o\0 ") for an entry that fits, and a PAX 'x' header named "<dir>/PaxHeaders.0/<base>"
// with sorted "len key=value\n" records before an entry that does not (a name over 100 bytes
// or not ASCII, a link target likewise, SCHILY.xattr.* extended attributes). Directories end
// in '/', hard links follow their target in walk order, uname/gname are empty, the archive
// ends with two zero blocks and no record padding. This file reproduces that byte layout.
//
// Everything is derived from a seed with integer-only arithmetic (xoshiro256**), so the same
// seed gives the same bytes on every machine. Header-only; used by the generator program
// (gen_main.cpp) and the micro-benchmarks (micro.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rolayer_bench {

// ---- PRNG -----------------------------------------------------------------------------------

inline uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& w : s_) w = splitmix64(seed);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n) (n > 0); the tiny modulo bias is irrelevant here.
  uint64_t below(uint64_t n) { return next() % n; }
  uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }  // [lo, hi]
  bool chance(unsigned percent) { return below(100) < percent; }
  // Log-uniform size in [2^lo, 2^hi): an exponent, then a uniform value within its octave.
  uint64_t log_size(unsigned lo, unsigned hi) {
    unsigned e = lo + static_cast<unsigned>(below(hi - lo));
    uint64_t base = uint64_t(1) << e;
    return base + below(base);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

inline uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t x = a ^ (b * 0x9e3779b97f4a7c15ull);
  return splitmix64(x);
}

// ---- file content ---------------------------------------------------------------------------

enum class Content : uint8_t { Binary, Text };

// Fills buf with the bytes at [offset, offset+len) of a file's deterministic content. Binary
// content is xoshiro output (incompressible, like stripped code and compressed assets); text
// is lines of words (compressible, like sources and docs). Content depends only on (seed,
// kind), and is produced in 64 KiB blocks so any offset can be generated independently.
class ContentGen {
 public:
  static constexpr size_t kBlock = 64 * 1024;

  void block(uint64_t seed, Content kind, uint64_t block_index, uint8_t* out, size_t len) {
    Rng r(mix(seed, block_index));
    if (kind == Content::Binary) {
      size_t i = 0;
      for (; i + 8 <= len; i += 8) {
        uint64_t v = r.next();
        std::memcpy(out + i, &v, 8);
      }
      if (i < len) {
        uint64_t v = r.next();
        std::memcpy(out + i, &v, len - i);
      }
      return;
    }
    // Text: runs copied from a fixed 256 KiB corpus of word lines at random offsets (memcpy
    // speed, compressible like real sources and docs).
    const std::string& corpus = text_corpus();
    size_t i = 0;
    while (i < len) {
      uint64_t v = r.next();
      size_t off = static_cast<size_t>(v % (corpus.size() - 4096));
      size_t n = std::min<size_t>(len - i, 64 + ((v >> 32) & 1023));
      std::memcpy(out + i, corpus.data() + off, n);
      i += n;
    }
  }

 private:
  static const std::string& text_corpus() {
    static const std::string corpus = [] {
      static const char* const kWords[64] = {
          "the",     "layer",  "return",  "value",  "static",  "const", "import", "module",
          "error",   "buffer", "size",    "if",     "else",    "for",   "while",  "struct",
          "class",   "public", "void",    "int",    "string",  "list",  "map",    "data",
          "file",    "path",   "read",    "write",  "open",    "close", "self",   "def",
          "None",    "True",   "False",   "assert", "test",    "config", "option", "default",
          "license", "GNU",    "General", "Public", "version", "copy",  "of",     "and",
          "to",      "in",     "is",      "that",   "this",    "with",  "from",   "by",
          "package", "func",   "err",     "nil",    "=",       "{",     "}",      "();"};
      std::string c;
      Rng r(0x7e57c0de);
      size_t col = 0;
      while (c.size() < (256u << 10)) {
        uint64_t v = r.next();
        c += kWords[v & 63];
        col += 8;
        if (col > 72 || (((v >> 6) & 7) == 7 && col > 40)) {
          c += '\n';
          col = 0;
        } else {
          c += ' ';
        }
      }
      return c;
    }();
    return corpus;
  }
};

// ---- entries --------------------------------------------------------------------------------

struct Entry {
  std::string path;       // no leading '/', directories without trailing '/'
  char type = '0';        // '0' file, '5' dir, '2' symlink, '1' hard link
  uint32_t mode = 0644;
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;
  uint64_t size = 0;
  Content content = Content::Binary;
  uint64_t seed = 0;
  std::string link;       // symlink target, or (after finalize) the hard link's target path
  int link_group = -1;    // >= 0: files sharing content as hard links (first in walk order keeps it)
  std::vector<std::pair<std::string, std::string>> xattrs;
};

// ---- the Go archive/tar byte layout ----------------------------------------------------------

class TarWriter {
 public:
  using Sink = std::function<void(const uint8_t*, size_t)>;
  explicit TarWriter(Sink sink) : sink_(std::move(sink)) { buf_.reserve(kBuf); }
  ~TarWriter() { flush(); }

  void add(const Entry& e) {
    std::string name = e.path;
    if (e.type == '5') name += '/';
    std::map<std::string, std::string> pax;
    if (name.size() > 100 || !ascii(name)) pax["path"] = name;
    if ((e.type == '1' || e.type == '2') && (e.link.size() > 100 || !ascii(e.link))) pax["linkpath"] = e.link;
    for (const auto& [k, v] : e.xattrs) pax["SCHILY.xattr." + k] = v;
    if (!pax.empty()) write_pax(name, pax);
    uint8_t h[512];
    std::memset(h, 0, sizeof h);
    put_str(h + 0, 100, to_ascii(name));
    put_oct(h + 100, 8, e.mode);
    put_oct(h + 108, 8, e.uid);
    put_oct(h + 116, 8, e.gid);
    uint64_t size = e.type == '0' ? e.size : 0;
    put_oct(h + 124, 12, size);
    put_oct(h + 136, 12, static_cast<uint64_t>(e.mtime));
    h[156] = static_cast<uint8_t>(e.type);
    if (e.type == '1' || e.type == '2') put_str(h + 157, 100, to_ascii(e.link));
    std::memcpy(h + 257, "ustar\0" "00", 8);
    put_oct(h + 329, 8, 0);  // devmajor
    put_oct(h + 337, 8, 0);  // devminor
    checksum(h);
    emit(h, 512);
    if (size == 0) return;
    payload(e.seed, e.content, size);
  }

  void finish() {
    uint8_t z[1024] = {};
    emit(z, sizeof z);
    flush();
  }

  uint64_t bytes() const { return total_; }

 private:
  static constexpr size_t kBuf = 1 << 20;

  static bool ascii(std::string_view s) {
    for (unsigned char c : s)
      if (c >= 0x80) return false;
    return true;
  }
  static std::string to_ascii(std::string_view s) {
    std::string o;
    for (unsigned char c : s)
      if (c < 0x80) o += static_cast<char>(c);
    return o;
  }
  // Go's formatter.formatString: copy, NUL-terminate when shorter; a truncated name whose
  // last kept byte is '/' loses its trailing slashes.
  static void put_str(uint8_t* b, size_t n, const std::string& s) {
    std::memcpy(b, s.data(), std::min(n, s.size()));
    if (s.size() < n) b[s.size()] = 0;
    if (s.size() > n && b[n - 1] == '/') {
      size_t k = n - 1;
      while (k > 0 && b[k - 1] == '/') k--;
      b[k] = 0;
    }
  }
  // Go's formatOctal: zero-padded octal in n-1 digits, then NUL.
  static void put_oct(uint8_t* b, size_t n, uint64_t v) {
    char tmp[32];
    int len = std::snprintf(tmp, sizeof tmp, "%0*llo", static_cast<int>(n - 1),
                            static_cast<unsigned long long>(v));
    std::memcpy(b, tmp, static_cast<size_t>(len));
    b[n - 1] = 0;
  }
  static void checksum(uint8_t* h) {
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    char tmp[16];
    std::snprintf(tmp, sizeof tmp, "%06o", sum);
    std::memcpy(h + 148, tmp, 6);
    h[154] = 0;
    h[155] = ' ';
  }

  void write_pax(const std::string& real_name, const std::map<std::string, std::string>& recs) {
    std::string data;
    for (const auto& [k, v] : recs) {
      size_t size = k.size() + v.size() + 3;
      size += std::to_string(size).size();
      std::string rec = std::to_string(size) + " " + k + "=" + v + "\n";
      if (rec.size() != size) rec = std::to_string(rec.size()) + " " + k + "=" + v + "\n";
      data += rec;
    }
    // path.Join(dir, "PaxHeaders.0", file) of the real name.
    std::string_view rn = real_name;
    size_t slash = rn.rfind('/');
    std::string dir = slash == std::string::npos ? "" : std::string(rn.substr(0, slash));
    std::string file = slash == std::string::npos ? std::string(rn) : std::string(rn.substr(slash + 1));
    std::string name = dir.empty() ? "PaxHeaders.0" : dir + "/PaxHeaders.0";
    if (!file.empty()) name += "/" + file;
    name = to_ascii(name);
    if (name.size() > 100) name.resize(100);
    while (!name.empty() && name.back() == '/') name.pop_back();
    uint8_t h[512];
    std::memset(h, 0, sizeof h);
    put_str(h, 100, name);
    put_oct(h + 100, 8, 0);
    put_oct(h + 108, 8, 0);
    put_oct(h + 116, 8, 0);
    put_oct(h + 124, 12, data.size());
    put_oct(h + 136, 12, 0);
    h[156] = 'x';
    std::memcpy(h + 257, "ustar\0" "00", 8);
    checksum(h);
    emit(h, 512);
    emit(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    pad(data.size());
  }

  void payload(uint64_t seed, Content kind, uint64_t size) {
    uint64_t off = 0;
    for (uint64_t blk = 0; off < size; blk++) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(ContentGen::kBlock, size - off));
      if (buf_.size() + n > kBuf) flush();
      size_t at = buf_.size();
      buf_.resize(at + n);
      gen_.block(seed, kind, blk, buf_.data() + at, n);
      total_ += n;
      off += n;
    }
    pad(size);
  }

  void pad(uint64_t size) {
    static const uint8_t z[512] = {};
    if (size % 512) emit(z, 512 - size % 512);
  }

  void emit(const uint8_t* p, size_t n) {
    if (buf_.size() + n > kBuf) flush();
    if (n >= kBuf) {
      sink_(p, n);
    } else {
      buf_.insert(buf_.end(), p, p + n);
    }
    total_ += n;
  }
  void flush() {
    if (!buf_.empty()) sink_(buf_.data(), buf_.size());
    buf_.clear();
  }

  Sink sink_;
  std::vector<uint8_t> buf_;
  ContentGen gen_;
  uint64_t total_ = 0;
};

// ---- profiles -------------------------------------------------------------------------------

// Builds the entry list of a profile: "small" (~5 MB, ~500 files, an Alpine-like root
// filesystem), "medium" (~200 MB, a Debian-like tree of shared libraries, Python modules and
// docs), "large" (~1 GiB, an application tree of ~70,000 small files plus a few big blobs),
// "bigfiles" (~1 GiB in three big files), "tiny-N" (one file of N bytes: the 10,000-layer store),
// "tiny" (>= 200,000 entries of files of 0-512 bytes). Returns an empty list for an unknown
// profile. The list is in walk order (directories before their contents, names sorted
// bytewise per directory), as a builder walking the tree writes it.
class Builder {
 public:
  Builder(uint64_t seed) : rng_(seed), seed_(seed) {}

  std::vector<Entry> build(const std::string& profile) {
    if (profile == "small") small();
    else if (profile == "medium") medium();
    else if (profile == "large") large();
    else if (profile == "bigfiles") bigfiles();
    else if (profile == "tiny") tiny();
    else return {};
    return finalize();
  }

 private:
  // Names from syllables: deterministic, pronounceable, varied lengths.
  std::string word(unsigned min_syl = 1, unsigned max_syl = 3) {
    static const char* const kSyl[32] = {"ba", "co", "de", "fi", "gu", "ha", "jo", "ki",
                                          "lu", "ma", "ne", "po", "qu", "ra", "si", "tu",
                                          "vo", "wa", "xe", "yo", "ze", "lib", "net", "sys",
                                          "core", "util", "io", "gtk", "py", "ssl", "x", "z"};
    unsigned n = static_cast<unsigned>(rng_.range(min_syl, max_syl));
    std::string w;
    for (unsigned i = 0; i < n; i++) w += kSyl[rng_.below(32)];
    return w;
  }
  int64_t mtime() { return 1700000000 + static_cast<int64_t>(rng_.below(30000000)); }

  Entry& file(const std::string& path, uint64_t size, Content c, uint32_t mode = 0644) {
    Entry e;
    e.path = path;
    e.type = '0';
    e.size = size;
    e.content = c;
    e.mode = mode;
    e.mtime = mtime();
    e.seed = mix(seed_, ++counter_);
    return put(std::move(e));
  }
  Entry& symlink(const std::string& path, const std::string& target) {
    Entry e;
    e.path = path;
    e.type = '2';
    e.mode = 0777;
    e.link = target;
    e.mtime = mtime();
    return put(std::move(e));
  }
  Entry& dir(const std::string& path, uint32_t mode = 0755) {
    Entry e;
    e.path = path;
    e.type = '5';
    e.mode = mode;
    e.mtime = mtime();
    return put(std::move(e));
  }
  Entry& put(Entry e) {
    auto [it, fresh] = by_path_.emplace(e.path, entries_.size());
    if (!fresh) {  // a name drawn twice: keep the first, make this one unique
      e.path += "." + std::to_string(counter_++);
      by_path_.emplace(e.path, entries_.size());
    }
    entries_.push_back(std::move(e));
    return entries_.back();
  }
  // Hard links: `n` extra names for the content of `target` (the first in walk order keeps
  // the content; the others become type '1').
  void hardlinks(size_t target_index, const std::vector<std::string>& names) {
    int g = groups_++;
    entries_[target_index].link_group = g;
    Entry proto = entries_[target_index];
    for (const auto& n : names) {
      Entry e = proto;
      e.path = n;
      put(std::move(e));
    }
  }
  static const std::vector<uint8_t>& cap_net_raw() {
    // VFS_CAP_REVISION_2, permitted = CAP_NET_RAW (13), effective bit set.
    static const std::vector<uint8_t> v = {0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00,
                                           0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    return v;
  }
  void add_cap(Entry& e) {
    const auto& v = cap_net_raw();
    e.xattrs.emplace_back("security.capability", std::string(v.begin(), v.end()));
  }

  void rootfs_skeleton() {
    for (const char* d : {"bin", "dev", "etc", "home", "lib", "media", "mnt", "opt", "proc", "root",
                          "run", "sbin", "srv", "sys", "usr", "usr/bin", "usr/lib", "usr/local",
                          "usr/sbin", "usr/share", "var", "var/cache", "var/lib", "var/log"})
      dir(d, std::string(d) == "root" ? 0700 : 0755);
    dir("tmp", 01777);
    dir("var/tmp", 01777);
  }

  void small() {
    rootfs_skeleton();
    size_t bb = entries_.size();
    file("bin/busybox", 820 * 1024, Content::Binary, 0755);
    file("lib/ld-musl-x86_64.so.1", 640 * 1024, Content::Binary, 0755);
    symlink("lib/libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1");
    for (int i = 0; i < 6; i++) {
      std::string n = "lib" + word(1, 2);
      file("usr/lib/" + n + ".so.3", rng_.log_size(16, 19), Content::Binary, 0755);
      symlink("usr/lib/" + n + ".so", n + ".so.3");
    }
    for (int i = 0; i < 120; i++) {
      const char* dirs[] = {"bin/", "sbin/", "usr/bin/", "usr/sbin/"};
      symlink(dirs[rng_.below(4)] + word(1, 3), "/bin/busybox");
    }
    // su and ping are busybox itself under other names in a real image: hard links here.
    hardlinks(bb, {"bin/su", "sbin/init"});
    add_cap(file("bin/ping", 60 * 1024, Content::Binary, 04755));
    for (int i = 0; i < 150; i++)
      file("etc/ssl/certs/" + word(2, 4) + "_Root_CA.pem", rng_.range(1200, 2400), Content::Text);
    for (int i = 0; i < 60; i++)
      file("etc/" + word(1, 2) + (rng_.chance(50) ? ".conf" : ""), rng_.log_size(6, 12), Content::Text);
    for (int i = 0; i < 40; i++)
      file("usr/share/terminfo/" + std::string(1, "abcdelmnprstvx"[rng_.below(14)]) + "/" + word(1, 3),
           rng_.log_size(9, 12), Content::Binary);
    for (int i = 0; i < 160; i++)
      file("usr/share/apk/keys/" + word(1, 2) + "/" + word(2, 3) + ".rsa.pub", rng_.log_size(8, 11),
           Content::Text);
    for (int i = 0; i < 60; i++)
      file("usr/bin/" + word(1, 3), rng_.log_size(12, 16), Content::Binary, 0755);
    for (int i = 0; i < 20; i++) file("lib/apk/db/" + word(1, 2), rng_.log_size(8, 15), Content::Text);
    file("etc/shadow", 400, Content::Text, 0640).gid = 42;
    file("etc/motd", 0, Content::Text);
    dir("home/user", 0755).uid = 1000;
    file("home/user/.profile", 800, Content::Text).uid = 1000;
  }

  void medium() {
    rootfs_skeleton();
    const std::string py = "usr/lib/python3.12/";
    // Python standard library: packages of modules, each with its __pycache__.
    for (int p = 0; p < 260; p++) {
      std::string pkg = py + word(1, 3);
      if (rng_.chance(30)) pkg += "/" + word(1, 3);
      file(pkg + "/__init__.py", rng_.chance(40) ? 0 : rng_.log_size(6, 12), Content::Text);
      int mods = static_cast<int>(rng_.range(2, 14));
      for (int m = 0; m < mods; m++) {
        std::string mod = word(1, 3);
        uint64_t sz = rng_.log_size(9, 17);
        file(pkg + "/" + mod + ".py", sz, Content::Text);
        file(pkg + "/__pycache__/" + mod + ".cpython-312.pyc", sz / 2 + 200, Content::Binary);
      }
    }
    // Shared libraries with their versioned symlinks.
    const std::string lib = "usr/lib/x86_64-linux-gnu/";
    for (int i = 0; i < 150; i++) {
      std::string n = "lib" + word(1, 3);
      std::string real = n + ".so." + std::to_string(rng_.range(0, 9)) + "." + std::to_string(rng_.range(0, 30)) + ".0";
      file(lib + real, rng_.log_size(14, 21), Content::Binary, 0644);
      symlink(lib + n + ".so." + std::to_string(rng_.range(0, 9)), real);
    }
    for (int i = 0; i < 120; i++) file("usr/bin/" + word(1, 3), rng_.log_size(13, 19), Content::Binary, 0755);
    auto& ping = file("usr/bin/ping", 90 * 1024, Content::Binary, 0755);
    add_cap(ping);
    file("usr/bin/passwd", 60 * 1024, Content::Binary, 04755);
    // Documentation: one directory per package, man pages, locales, some non-ASCII names.
    for (int i = 0; i < 900; i++) {
      std::string d = "usr/share/doc/" + word(1, 3) + "-" + word(1, 2);
      file(d + "/copyright", rng_.log_size(9, 14), Content::Text);
      if (rng_.chance(60)) file(d + "/changelog.Debian.gz", rng_.log_size(9, 13), Content::Binary);
      if (rng_.chance(10)) file(d + "/README.médiathèque-notes.txt", rng_.log_size(9, 12), Content::Text);
    }
    for (int i = 0; i < 1500; i++)
      file("usr/share/man/man" + std::to_string(rng_.range(1, 8)) + "/" + word(1, 3) + "." +
               std::to_string(rng_.range(1, 8)) + ".gz",
           rng_.log_size(10, 14), Content::Binary);
    for (const char* lang : {"de", "fr", "ja", "pt_BR", "zh_CN", "ru", "es", "it"})
      for (int i = 0; i < 40; i++)
        file(std::string("usr/share/locale/") + lang + "/LC_MESSAGES/" + word(1, 3) + ".mo",
             rng_.log_size(10, 16), Content::Binary);
    file("usr/share/doc/fonts-dejavu/Überblick – 日本語.txt", 3000, Content::Text);
    // A deep include tree: long paths (PAX 'path' records).
    for (int i = 0; i < 300; i++) {
      std::string p = "usr/include/x86_64-linux-gnu/" + word(2, 3) + "/" + word(3, 4) + "/internal/" + word(3, 5) + "/" +
                      word(4, 6) + "_" + word(4, 6) + "_" + word(3, 5) + ".h";
      file(p, rng_.log_size(9, 15), Content::Text);
    }
  }

  void large() {
    rootfs_skeleton();
    // A node_modules tree: many small files, nested packages, long paths.
    const std::string app = "app/";
    uint64_t files = 0;
    while (files < 70000) {
      std::string pkg = app + "node_modules/" + (rng_.chance(25) ? "@" + word(1, 3) + "/" : "") + word(1, 3) +
                        (rng_.chance(40) ? "-" + word(2, 4) : "");
      if (rng_.chance(25)) pkg += "/node_modules/" + word(2, 4) + "-" + word(2, 4);
      if (rng_.chance(10)) pkg += "/node_modules/" + word(2, 4) + "-" + word(2, 5);
      file(pkg + "/package.json", rng_.log_size(9, 12), Content::Text);
      file(pkg + "/LICENSE", rng_.range(1000, 1200), Content::Text);
      int n = static_cast<int>(rng_.range(4, 60));
      for (int i = 0; i < n; i++) {
        std::string sub = rng_.chance(50) ? "lib/" : (rng_.chance(50) ? "dist/" + word(1, 2) + "/" : "src/");
        std::string ext = rng_.chance(70) ? ".js" : (rng_.chance(50) ? ".d.ts" : ".map");
        std::string base = word(1, 4) + (rng_.chance(30) ? "." + word(2, 4) + ".production.min" : "");
        file(pkg + "/" + sub + base + ext, rng_.log_size(7, 15), ext == ".map" ? Content::Binary : Content::Text);
      }
      files += 2 + n;
    }
    // A few big blobs: models, databases, a bundled runtime.
    file("app/models/weights-0.bin", 256ull << 20, Content::Binary);
    file("app/models/weights-1.bin", 160ull << 20, Content::Binary);
    file("app/data/index.db", 96ull << 20, Content::Binary);
    file("usr/local/bin/node", 64ull << 20, Content::Binary, 0755);
    symlink("usr/local/bin/nodejs", "node");
  }

  // "bigfiles" (~1.0 GiB): three big incompressible files (384, 352 and 320 MiB: model weights,
  // a database, a bundle) and a handful of small ones; the payload-bound shape of issue 18,
  // where export is the SHA-256 of the payloads plus little else.
  void bigfiles() {
    rootfs_skeleton();
    file("etc/os-release", 400, Content::Text);
    file("etc/hostname", 12, Content::Text);
    file("usr/local/bin/serve", 900 * 1024, Content::Binary, 0755);
    file("opt/app/config.json", 2048, Content::Text);
    file("opt/app/README.md", 6000, Content::Text);
    file("opt/app/models/weights-0.bin", 384ull << 20, Content::Binary);
    file("opt/app/models/weights-1.bin", 352ull << 20, Content::Binary);
    file("opt/app/data/store.db", 320ull << 20, Content::Binary);
    symlink("opt/app/current", "models/weights-0.bin");
  }

  // "tiny": >= 200,000 entries of files of 0-512 bytes (a vendored source tree, a package
  // cache, locale and type-declaration files: what makes a layer expensive per entry rather
  // than per byte), in about 47,000 directories 3-8 levels deep, with relative symlinks to
  // siblings (~2 %) and empty marker files (~15 %). Seed 1: 196 MiB of tar, 241,346 entries,
  // 189,552 files with 13 MiB of payload; 93 % of the tar is headers and padding.
  void tiny() {
    rootfs_skeleton();
    static const char* const kTops[] = {"usr/lib/python3/dist-packages/", "usr/share/locale/",
                                        "opt/app/vendor/", "usr/share/zoneinfo/", "srv/site/node_modules/"};
    static const char* const kExts[] = {".py", ".txt", ".json", ".js", ".h", ".mo", ".cfg", ".d.ts", "", ".rb"};
    size_t made = 0;
    while (made < 200000) {
      std::string pkg = std::string(kTops[rng_.below(5)]) + word(1, 3) + (rng_.chance(30) ? "-" + word(1, 2) : "");
      int subdirs = static_cast<int>(rng_.range(1, 6));
      for (int s = 0; s < subdirs; s++) {
        std::string d = pkg;
        for (int depth = static_cast<int>(rng_.range(0, 3)); depth > 0; depth--) d += "/" + word(1, 2);
        if (rng_.chance(20)) made++, dir(d, rng_.chance(10) ? 0700 : 0755);
        int n = static_cast<int>(rng_.range(2, 12));
        std::string prev;
        for (int i = 0; i < n; i++) {
          std::string name = d + "/" + word(1, 3) + kExts[rng_.below(10)];
          if (!prev.empty() && rng_.chance(3)) {
            symlink(name, std::string(dirfs_base(prev)));
          } else {
            uint64_t size = rng_.chance(15) ? 0 : rng_.log_size(0, 9);  // [1, 512)
            Entry& f = file(name, size, rng_.chance(25) ? Content::Binary : Content::Text,
                            rng_.chance(5) ? 0755 : 0644);
            prev = f.path;
          }
          made++;
        }
      }
    }
  }
  static std::string_view dirfs_base(const std::string& p) {
    size_t s = p.rfind('/');
    return s == std::string::npos ? std::string_view(p) : std::string_view(p).substr(s + 1);
  }

  // Adds the missing parent directories, sorts in walk order and turns hard-link groups into
  // one content entry plus '1' entries naming it.
  std::vector<Entry> finalize() {
    std::vector<Entry> all = std::move(entries_);
    // A random name may equal a directory that other paths need: rename such non-directories.
    std::map<std::string, bool> parents;
    for (const auto& e : all)
      for (size_t s = e.path.find('/'); s != std::string::npos; s = e.path.find('/', s + 1))
        parents[e.path.substr(0, s)] = true;
    for (auto& e : all)
      if (e.type != '5' && parents.count(e.path)) e.path += ".f";
    std::map<std::string, bool> have;
    for (const auto& e : all) have[e.path] = true;
    std::vector<Entry> extra;
    for (const auto& e : all) {
      std::string p = e.path;
      for (size_t s = p.rfind('/'); s != std::string::npos && s > 0; s = p.rfind('/', s - 1)) {
        std::string d = p.substr(0, s);
        if (have.emplace(d, true).second) {
          Entry de;
          de.path = d;
          de.type = '5';
          de.mode = 0755;
          de.mtime = 1700000000;
          extra.push_back(std::move(de));
        }
        if (s == 0) break;
      }
    }
    for (auto& e : extra) all.push_back(std::move(e));
    auto key = [](const std::string& p) {
      std::string k = p;
      for (auto& c : k)
        if (c == '/') c = '\x01';
      return k;
    };
    std::vector<std::pair<std::string, size_t>> order;
    order.reserve(all.size());
    for (size_t i = 0; i < all.size(); i++) order.emplace_back(key(all[i].path), i);
    std::sort(order.begin(), order.end());
    std::vector<Entry> out;
    out.reserve(all.size());
    std::map<int, std::string> group_first;
    for (auto& [k, i] : order) {
      Entry e = std::move(all[i]);
      if (e.link_group >= 0) {
        auto it = group_first.find(e.link_group);
        if (it == group_first.end()) {
          group_first[e.link_group] = e.path;
        } else {
          e.type = '1';
          e.link = it->second;
          e.size = 0;
        }
      }
      out.push_back(std::move(e));
    }
    return out;
  }

  Rng rng_;
  uint64_t seed_;
  uint64_t counter_ = 0;
  int groups_ = 0;
  std::vector<Entry> entries_;
  std::map<std::string, size_t> by_path_;
};

// Writes the profile's tar through sink; returns the number of bytes, 0 for an unknown profile.
inline uint64_t write_profile(const std::string& profile, uint64_t seed, TarWriter::Sink sink) {
  auto entries = Builder(seed).build(profile);
  if (entries.empty()) return 0;
  TarWriter w(std::move(sink));
  for (const auto& e : entries) w.add(e);
  w.finish();
  return w.bytes();
}

}  // namespace rolayer_bench
