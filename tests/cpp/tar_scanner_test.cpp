// SPDX-License-Identifier: Apache-2.0
// Tests of the raw tar stream scanner (lib/tar/scanner.h): the public corpus, libarchive as
// an oracle for well-formed files, and hand-made streams.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tar/scanner.h"

// Hand-made headers are described with designated initializers that name only the fields
// they need; GCC's -Wextra would flag every one of them.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace fs = std::filesystem;
using rolayer::Code;
using rolayer::Error;
using namespace rolayer::tar;

namespace {

// ---------------------------------------------------------------------------------------
// Helpers

std::string corpus_dir() {
  if (const char* env = std::getenv("ROLAYER_CORPUS"); env && *env) return env;
#ifdef ROLAYER_SOURCE_DIR
  return std::string(ROLAYER_SOURCE_DIR) + "/../shared/corpus";
#else
  return (fs::path(__FILE__).parent_path() / "../../../shared/corpus").string();
#endif
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Decompresses gzip/bzip2 (or returns the input) with libarchive's raw reader.
std::string maybe_decompress(const std::string& data) {
  const bool gz = data.size() > 2 && uint8_t(data[0]) == 0x1f && uint8_t(data[1]) == 0x8b;
  const bool bz = data.compare(0, 3, "BZh") == 0;
  if (!gz && !bz) return data;
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_raw(a);
  std::string out;
  if (archive_read_open_memory(a, data.data(), data.size()) == ARCHIVE_OK) {
    archive_entry* e = nullptr;
    if (archive_read_next_header(a, &e) == ARCHIVE_OK) {
      char buf[65536];
      la_ssize_t n;
      while ((n = archive_read_data(a, buf, sizeof buf)) > 0) out.append(buf, size_t(n));
    }
  }
  archive_read_free(a);
  return out;
}

// Records the scanner's output and checks the callback protocol as it goes.
struct Recorder : ScanHandler {
  std::string rebuilt;  // raw + payload, in order
  std::vector<Entry> entries;
  std::vector<std::string> payloads;  // per entry (only for has_payload entries)
  std::vector<uint64_t> raw_before;   // raw bytes seen before each on_entry (in total)
  uint64_t raw_total = 0, payload_total = 0;
  bool in_payload = false;
  uint64_t payload_expected = 0, payload_seen = 0;
  std::vector<std::string> protocol_errors;
  bool keep_payloads = true;

  void on_raw(const uint8_t* d, size_t n) override {
    if (in_payload && payload_seen != payload_expected)
      protocol_errors.push_back("raw bytes in the middle of an entry's payload");
    rebuilt.append(reinterpret_cast<const char*>(d), n);
    raw_total += n;
  }
  void on_entry(const Entry& e) override {
    if (in_payload) protocol_errors.push_back("on_entry before on_entry_end");
    entries.push_back(e);
    raw_before.push_back(raw_total);
    payloads.emplace_back();
    if (e.has_payload()) {
      in_payload = true;
      payload_expected = e.payload_size;
      payload_seen = 0;
    }
    if (e.name.find('\0') != std::string::npos) protocol_errors.push_back("NUL in name");
  }
  void on_payload(const uint8_t* d, size_t n) override {
    if (!in_payload) protocol_errors.push_back("payload outside an entry");
    payload_seen += n;
    if (payload_seen > payload_expected) protocol_errors.push_back("too much payload");
    rebuilt.append(reinterpret_cast<const char*>(d), n);
    if (keep_payloads && !payloads.empty()) payloads.back().append(reinterpret_cast<const char*>(d), n);
    payload_total += n;
  }
  void on_entry_end() override {
    if (!in_payload) protocol_errors.push_back("on_entry_end without a payload entry");
    if (payload_seen != payload_expected) protocol_errors.push_back("on_entry_end too early");
    in_payload = false;
  }
};

struct ScanResult {
  bool ok = false;
  Code code = Code::Ok;
  std::string message;
  Recorder rec;
  bool end_of_archive = false;
  uint64_t entries = 0, offset = 0;
};

// chunk == 0: the whole input at once.
ScanResult scan(const std::string& data, size_t chunk = 0, Limits limits = {},
                bool keep_payloads = true) {
  ScanResult r;
  r.rec.keep_payloads = keep_payloads;
  try {
    Scanner s(r.rec, limits);
    const auto* p = reinterpret_cast<const uint8_t*>(data.data());
    if (chunk == 0) {
      s.feed(p, data.size());
    } else {
      for (size_t i = 0; i < data.size(); i += chunk) s.feed(p + i, std::min(chunk, data.size() - i));
    }
    s.finish();
    r.ok = true;
    r.end_of_archive = s.end_of_archive();
    r.entries = s.entries();
    r.offset = s.offset();
  } catch (const Error& e) {
    r.code = e.code();
    r.message = e.what();
  }
  return r;
}

bool same_entry(const Entry& a, const Entry& b) {
  return a.name == b.name && a.linkname == b.linkname && a.kind == b.kind &&
         a.typeflag == b.typeflag && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid &&
         a.uname == b.uname && a.gname == b.gname && a.mtime_sec == b.mtime_sec &&
         a.mtime_nsec == b.mtime_nsec && a.devmajor == b.devmajor && a.devminor == b.devminor &&
         a.xattrs == b.xattrs && a.data_size == b.data_size && a.payload_size == b.payload_size &&
         a.real_size == b.real_size && a.sparse.size() == b.sparse.size() &&
         std::equal(a.sparse.begin(), a.sparse.end(), b.sparse.begin(),
                    [](const SparseFragment& x, const SparseFragment& y) {
                      return x.offset == y.offset && x.length == y.length;
                    });
}

void expect_same(const ScanResult& a, const ScanResult& b, const std::string& what) {
  ASSERT_EQ(a.ok, b.ok) << what << ": " << a.message << " / " << b.message;
  EXPECT_EQ(a.code, b.code) << what;
  EXPECT_EQ(a.message, b.message) << what;
  ASSERT_EQ(a.rec.entries.size(), b.rec.entries.size()) << what;
  for (size_t i = 0; i < a.rec.entries.size(); ++i)
    EXPECT_TRUE(same_entry(a.rec.entries[i], b.rec.entries[i])) << what << ": entry " << i;
  EXPECT_EQ(a.rec.raw_before, b.rec.raw_before) << what;
  if (a.ok) {
    EXPECT_EQ(a.rec.rebuilt, b.rec.rebuilt) << what;
    EXPECT_EQ(a.end_of_archive, b.end_of_archive) << what;
  }
}

// The logical content of a sparse entry (holes as zeros), from its fragments and payload.
std::string logical_content(const Entry& e, const std::string& payload) {
  std::string out(e.real_size, '\0');
  size_t pos = 0;
  for (const auto& f : e.sparse) {
    out.replace(f.offset, f.length, payload.substr(pos, f.length));
    pos += f.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// A tiny tar writer for hand-made streams.

struct Hdr {
  std::string name;
  char type = '0';
  uint64_t size = 0;
  std::string linkname;
  bool gnu = false;        // GNU magic instead of ustar
  bool base256 = false;    // size in base-256
  std::string prefix;      // ustar prefix
  int64_t mtime = 0;
  bool bad_checksum = false;
  // Old GNU sparse: map entries in the header, is-extended flag, real size.
  std::vector<std::pair<uint64_t, uint64_t>> sparse;
  bool extended = false;
  uint64_t realsize = 0;
};

void put_octal(std::string& b, size_t pos, size_t len, uint64_t v) {
  std::string s(len - 1, '0');
  for (size_t i = len - 1; i-- > 0;) {
    s[i] = char('0' + (v & 7));
    v >>= 3;
  }
  b.replace(pos, len - 1, s);
  b[pos + len - 1] = '\0';
}

void put_str(std::string& b, size_t pos, size_t len, const std::string& s) {
  b.replace(pos, std::min(len, s.size()), s.substr(0, len));
}

std::string header(const Hdr& h) {
  std::string b(512, '\0');
  put_str(b, 0, 100, h.name);
  put_octal(b, 100, 8, 0644);
  put_octal(b, 108, 8, 1000);
  put_octal(b, 116, 8, 1000);
  if (h.base256) {
    b[124] = char(0x80);
    for (int i = 0; i < 8; ++i) b[124 + 11 - i] = char((h.size >> (8 * i)) & 0xff);
  } else {
    put_octal(b, 124, 12, h.size);
  }
  put_octal(b, 136, 12, uint64_t(h.mtime));
  b[156] = h.type;
  put_str(b, 157, 100, h.linkname);
  if (h.gnu) {
    b.replace(257, 8, std::string("ustar  \0", 8));
  } else {
    b.replace(257, 8, std::string("ustar\0" "00", 8));
  }
  put_str(b, 265, 32, "user");
  put_str(b, 297, 32, "group");
  if (!h.gnu) put_str(b, 345, 155, h.prefix);
  if (h.gnu && h.type == 'S') {
    for (size_t i = 0; i < h.sparse.size() && i < 4; ++i) {
      put_octal(b, 386 + i * 24, 12, h.sparse[i].first);
      put_octal(b, 386 + i * 24 + 12, 12, h.sparse[i].second);
    }
    b[482] = h.extended ? 1 : 0;
    put_octal(b, 483, 12, h.realsize);
  }
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : uint8_t(b[i]);
  if (h.bad_checksum) sum += 1;
  put_octal(b, 148, 7, sum);
  b[155] = ' ';
  return b;
}

std::string padded(const std::string& data) {
  return data + std::string((512 - data.size() % 512) % 512, '\0');
}

std::string entry(const Hdr& h, const std::string& data) {
  Hdr hh = h;
  if (hh.size == 0) hh.size = data.size();
  return header(hh) + padded(data);
}

std::string pax_record(const std::string& k, const std::string& v) {
  std::string body = " " + k + "=" + v + "\n";
  size_t n = body.size() + 1;
  while (std::to_string(n).size() + body.size() != n) ++n;
  return std::to_string(n) + body;
}

std::string pax(const std::vector<std::pair<std::string, std::string>>& recs, char type = 'x') {
  std::string d;
  for (const auto& [k, v] : recs) d += pax_record(k, v);
  Hdr h;
  h.name = "PaxHeaders/x";
  h.type = type;
  return entry(h, d);
}

std::string eoa() { return std::string(1024, '\0'); }

// An archive that exercises most features, for chunking and truncation tests.
std::string feature_archive() {
  std::string t;
  t += entry({.name = "dir/", .type = '5'}, "");
  t += entry({.name = "dir/file.txt"}, "hello, world\n");
  t += pax({{"path", "dir/long/" + std::string(150, 'p')}, {"mtime", "1500000000.25"},
            {"SCHILY.xattr.user.k", "v"}});
  t += entry({.name = "ignored"}, std::string(700, 'x'));
  Hdr l;
  l.name = "././@LongLink";
  l.type = 'L';
  l.gnu = true;
  t += entry(l, std::string(120, 'n') + '\0');
  t += entry({.name = "short", .gnu = true}, "abc");
  t += entry({.name = "dir/sym", .type = '2', .linkname = "file.txt"}, "");
  t += entry({.name = "dir/hard", .type = '1', .linkname = "dir/file.txt"}, "");
  // Old GNU sparse: two fragments, no extension block.
  Hdr s;
  s.name = "sparse-old";
  s.type = 'S';
  s.gnu = true;
  s.sparse = {{0, 10}, {100, 5}};
  s.realsize = 200;
  s.size = 15;
  t += header(s) + padded(std::string(15, 's'));
  // PAX sparse 1.0.
  std::string map = "2\n0\n10\n100\n5\n";
  std::string area = padded(map) + std::string(15, 'q');
  t += pax({{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", "sparse10"},
            {"GNU.sparse.realsize", "200"}, {"size", std::to_string(area.size())}});
  t += entry({.name = "GNUSparseFile.0/sparse10"}, area);
  t += entry({.name = "empty"}, "");
  t += eoa();
  return t;
}

// ---------------------------------------------------------------------------------------
// The corpus.

struct CorpusFile {
  std::string file, expect, description;
  uint64_t tar_size = 0;
};

std::vector<CorpusFile> load_manifest(const std::string& dir) {
  std::vector<CorpusFile> out;
  std::ifstream in(dir + "/MANIFEST.tsv");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> col;
    std::stringstream ss(line);
    std::string c;
    while (std::getline(ss, c, '\t')) col.push_back(c);
    if (col.size() < 10) continue;
    CorpusFile f;
    f.file = col[0];
    f.tar_size = col[7].empty() ? std::stoull(col[5]) : std::stoull(col[7]);
    f.expect = col[8];
    f.description = col[9];
    out.push_back(f);
  }
  return out;
}

class Corpus : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = corpus_dir();
    if (!fs::exists(dir_ + "/MANIFEST.tsv"))
      GTEST_SKIP() << "tar corpus not found at " << dir_ << " (set ROLAYER_CORPUS)";
    files_ = load_manifest(dir_);
    ASSERT_GT(files_.size(), 100u);
  }
  std::string load(const CorpusFile& f) {
    std::string d = maybe_decompress(read_file(dir_ + "/" + f.file));
    EXPECT_EQ(d.size(), f.tar_size) << f.file;
    return d;
  }
  std::string dir_;
  std::vector<CorpusFile> files_;
};

TEST_F(Corpus, EveryFileBehavesAsExpectedWithAnyChunking) {
  int well = 0, failed = 0, rd_accepted = 0, rd_refused = 0;
  for (const auto& f : files_) {
    SCOPED_TRACE(f.file + " [" + f.expect + "] " + f.description);
    const std::string data = load(f);
    const ScanResult whole = scan(data, 0);
    EXPECT_TRUE(whole.rec.protocol_errors.empty()) << whole.rec.protocol_errors.front();
    if (f.expect == "well-formed") {
      ++well;
      EXPECT_TRUE(whole.ok) << whole.message;
    } else if (f.expect == "expected-fail") {
      ++failed;
      EXPECT_FALSE(whole.ok);
      EXPECT_EQ(whole.code, Code::Archive) << whole.message;
    } else {
      ASSERT_EQ(f.expect, "reader-dependent");
      (whole.ok ? rd_accepted : rd_refused)++;
      if (!whole.ok) { EXPECT_EQ(whole.code, Code::Archive) << whole.message; }
    }
    if (whole.ok) {
      EXPECT_TRUE(whole.rec.rebuilt == data) << "raw + payload does not rebuild the input";
      EXPECT_EQ(whole.offset, data.size());
      EXPECT_EQ(whole.entries, whole.rec.entries.size());
    }
    std::vector<size_t> chunks = {7, 512, 4096 + 3};
    if (data.size() <= (2u << 20)) chunks.push_back(1);
    for (size_t c : chunks) {
      const ScanResult r = scan(data, c, {}, /*keep_payloads=*/false);
      expect_same(whole, r, "chunk " + std::to_string(c));
    }
  }
  EXPECT_EQ(well, 82);
  EXPECT_EQ(failed, 13);
  std::printf("[ corpus  ] reader-dependent: %d accepted, %d refused\n", rd_accepted, rd_refused);
}

// What each reader-dependent file does here (documented choices; see scanner.cpp).
TEST_F(Corpus, ReaderDependentChoices) {
  const std::map<std::string, bool> accepted = {
      {"go-archive-tar/hdr-only.tar", true},                      // sizes of header-only types ignored
      {"go-archive-tar/pax-bad-mtime-file.tar", false},           // invalid mtime (as Go)
      {"go-archive-tar/pax-multi-hdrs.tar", true},                // last 'x' wins
      {"go-archive-tar/pax-nul-path.tar", false},                 // NUL in a pax path
      {"go-archive-tar/pax-path-hdr.tar", false},                 // dangling pax header at EOF
      {"tar-split-asm/1c51fc286aa95d9413226599576bafa38490b1e292375c90de095855b64caea6", true},
      {"tar-split-asm/notenoughnils.tar.gz", true},
      {"libarchive/test_pax_filename_encoding.tar", true},
      {"libarchive/test_read_format_gtar_redundant_L.tar", true},  // last 'L' wins
      {"libarchive/test_read_format_gtar_sparse_1_17_posix10_modified.tar", false},
      {"libarchive/test_read_format_gtar_sparse_skip_entry.tar", true},
      {"libarchive/test_read_format_tar_empty_filename.tar", true},  // the path checks refuse it
      {"libarchive/test_read_format_tar_pax_large_attr.tar", false},  // > max_extension_size
      {"libarchive/test_read_format_tar_pax_timestamps.tar", false},  // invalid mtime
      {"libarchive/test_read_pax_empty_val_no_nl.tar", false},        // record without newline
  };
  int seen = 0;
  for (const auto& f : files_) {
    if (f.expect != "reader-dependent") continue;
    ++seen;
    SCOPED_TRACE(f.file);
    auto it = accepted.find(f.file);
    ASSERT_NE(it, accepted.end()) << "no documented choice for this file";
    const ScanResult r = scan(load(f));
    EXPECT_EQ(r.ok, it->second) << r.message;
  }
  EXPECT_EQ(seen, 15);
}

struct OracleEntry {
  std::string name, hardlink, symlink;
  unsigned filetype = 0;
  int64_t size = 0;
};

// libarchive's reading; nullopt when libarchive does not read the whole file.
std::optional<std::vector<OracleEntry>> libarchive_read(const std::string& data) {
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  std::vector<OracleEntry> out;
  bool ok = archive_read_open_memory(a, data.data(), data.size()) == ARCHIVE_OK;
  while (ok) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      ok = false;
      break;
    }
    OracleEntry o;
    if (const char* p = archive_entry_pathname(e)) o.name = p;
    if (const char* p = archive_entry_hardlink(e)) o.hardlink = p;
    if (const char* p = archive_entry_symlink(e)) o.symlink = p;
    o.filetype = archive_entry_filetype(e);
    o.size = archive_entry_size(e);
    out.push_back(o);
    if (archive_read_data_skip(a) != ARCHIVE_OK) ok = false;
  }
  archive_read_free(a);
  if (!ok) return std::nullopt;
  return out;
}

// Documented differences from libarchive 3.6 (names, types, sizes, link names).
const std::map<std::string, std::string> kOracleExceptions = {
    {"go-archive-tar/invalid-go17.tar",
     "libarchive ignores the prefix that the pre-Go 1.8 Writer put in the GNU atime/ctime area; "
     "we read it back as Go does (aaa.../foo)"},
    {"go-archive-tar/nil-uid.tar",
     "libarchive takes the GNU realsize field (offset 483) of a regular file as its size (2176); "
     "it holds a star atime here. Go and GNU tar read the size field (14), as we do"},
    {"libarchive/test_read_format_tar_timestamp_overflow.tar",
     "size field '\\0\\0\\0\\0\\0\\0\\0' '0016': Go trims the leading NULs (14 bytes, "
     "which are zeros here), libarchive and GNU tar stop at the first NUL (0). We read it as Go"},
};

TEST_F(Corpus, AgreesWithLibarchive) {
  int compared = 0, skipped = 0;
  for (const auto& f : files_) {
    if (f.expect != "well-formed") continue;
    SCOPED_TRACE(f.file);
    const std::string data = load(f);
    const ScanResult mine = scan(data);
    ASSERT_TRUE(mine.ok) << mine.message;
    auto theirs = libarchive_read(data);
    if (!theirs) {
      ++skipped;
      std::printf("[ oracle  ] libarchive does not read %s; not compared\n", f.file.c_str());
      continue;
    }
    if (kOracleExceptions.count(f.file)) {
      ++skipped;
      continue;
    }
    ++compared;
    // libarchive folds 'A' (Solaris ACL) and 'V' (volume label) headers into the next entry
    // or skips them; we report them as entries of kind Other.
    std::vector<const Entry*> ours;
    for (const auto& e : mine.rec.entries)
      if (!(e.kind == EntryKind::Other && (e.typeflag == 'A' || e.typeflag == 'V'))) ours.push_back(&e);
    ASSERT_EQ(ours.size(), theirs->size());
    for (size_t i = 0; i < ours.size(); ++i) {
      const Entry& e = *ours[i];
      const OracleEntry& o = (*theirs)[i];
      SCOPED_TRACE("entry " + std::to_string(i) + " " + e.name);
      EXPECT_EQ(e.name, o.name);
      switch (e.kind) {
        case EntryKind::Regular:
          EXPECT_EQ(o.filetype, unsigned(AE_IFREG));
          EXPECT_EQ(uint64_t(o.size), e.payload_size);
          break;
        case EntryKind::Sparse:
          EXPECT_EQ(o.filetype, unsigned(AE_IFREG));
          EXPECT_EQ(uint64_t(o.size), e.real_size);
          break;
        case EntryKind::Hardlink:
          EXPECT_EQ(o.hardlink, e.linkname);
          EXPECT_EQ(o.size, 0);
          break;
        case EntryKind::Symlink:
          EXPECT_EQ(o.filetype, unsigned(AE_IFLNK));
          EXPECT_EQ(o.symlink, e.linkname);
          break;
        case EntryKind::Directory:
          EXPECT_EQ(o.filetype, unsigned(AE_IFDIR));
          break;
        case EntryKind::CharDev:
          EXPECT_EQ(o.filetype, unsigned(AE_IFCHR));
          break;
        case EntryKind::BlockDev:
          EXPECT_EQ(o.filetype, unsigned(AE_IFBLK));
          break;
        case EntryKind::Fifo:
          EXPECT_EQ(o.filetype, unsigned(AE_IFIFO));
          break;
        case EntryKind::Other:
          // 'D' (GNU dumpdir) is a directory for libarchive; its listing is raw data here.
          if (e.typeflag == 'D') { EXPECT_EQ(o.filetype, unsigned(AE_IFDIR)); }
          EXPECT_EQ(uint64_t(o.size), e.data_size);
          break;
      }
    }
  }
  std::printf("[ oracle  ] %d well-formed files compared with libarchive, %d not compared\n",
              compared, skipped);
  EXPECT_GT(compared, 70);
}

TEST_F(Corpus, SpecificReadings) {
  auto get = [&](const std::string& file) {
    for (const auto& f : files_)
      if (f.file == file) return scan(load(f));
    ADD_FAILURE() << "missing " << file;
    return ScanResult{};
  };
  {
    auto r = get("go-archive-tar/gnu-long-nul.tar");
    ASSERT_TRUE(r.ok);
    ASSERT_EQ(r.rec.entries.size(), 1u);
    EXPECT_EQ(r.rec.entries[0].name, "0123456789");
  }
  {
    auto r = get("go-archive-tar/gnu-multi-hdrs.tar");
    ASSERT_TRUE(r.ok);
    ASSERT_EQ(r.rec.entries.size(), 1u);
    EXPECT_EQ(r.rec.entries[0].name, "GNU2/GNU2/long-path-name");
    EXPECT_EQ(r.rec.entries[0].linkname, "GNU4/GNU4/long-linkpath-name");
  }
  {
    auto r = get("go-archive-tar/hdr-only.tar");
    ASSERT_TRUE(r.ok);
    ASSERT_EQ(r.rec.entries.size(), 16u);
    for (const auto& e : r.rec.entries) {
      EXPECT_FALSE(e.has_payload() && e.kind != EntryKind::Regular);
      if (e.kind != EntryKind::Regular) { EXPECT_EQ(e.data_size, 0u) << e.name; }
    }
  }
  {
    auto r = get("libarchive/test_compat_tar_hardlink_1.tar");
    ASSERT_TRUE(r.ok);
    ASSERT_EQ(r.rec.entries.size(), 2u);
    EXPECT_EQ(r.rec.entries[1].kind, EntryKind::Hardlink);
    EXPECT_EQ(r.rec.entries[1].data_size, 0u);
  }
  {
    auto r = get("libarchive/test_compat_tar_directory_1.tar");
    ASSERT_TRUE(r.ok);
    ASSERT_EQ(r.rec.entries.size(), 2u);
    EXPECT_EQ(r.rec.entries[0].kind, EntryKind::Directory);
    EXPECT_EQ(r.rec.entries[1].name, "directory2/");
  }
  {
    auto r = get("go-archive-tar/pax-global-records.tar");
    ASSERT_TRUE(r.ok);
    ASSERT_EQ(r.rec.entries.size(), 4u);
    const char* names[] = {"file1", "file2", "file3", "file4"};
    // The global mtime stays until a global record with the same keyword clears it (the
    // second 'g' header clears only 'path'); 'path' is never applied globally.
    const int64_t mtimes[] = {1500000000, 1500000000, 1500000000, 1400000000};
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(r.rec.entries[i].name, names[i]);
      EXPECT_EQ(r.rec.entries[i].mtime_sec, mtimes[i]) << names[i];
    }
  }
  {
    auto r = get("go-archive-tar/sparse-formats.tar");
    ASSERT_TRUE(r.ok);
    ASSERT_EQ(r.rec.entries.size(), 5u);
    std::string first;
    for (int i = 0; i < 4; ++i) {
      const Entry& e = r.rec.entries[i];
      EXPECT_EQ(e.kind, EntryKind::Sparse) << e.name;
      EXPECT_EQ(e.real_size, 200u);
      std::string content = logical_content(e, r.rec.payloads[i]);
      if (i == 0) first = content;
      EXPECT_EQ(content, first) << e.name;
    }
    EXPECT_EQ(r.rec.entries[0].name, "sparse-gnu");
    EXPECT_EQ(r.rec.entries[1].name, "sparse-posix-0.0");
    EXPECT_EQ(r.rec.entries[2].name, "sparse-posix-0.1");
    EXPECT_EQ(r.rec.entries[3].name, "sparse-posix-1.0");
    EXPECT_EQ(r.rec.entries[4].name, "end");
    EXPECT_EQ(r.rec.payloads[4], "end\n");
  }
  {
    auto r = get("go-archive-tar/gnu-sparse-big.tar");
    ASSERT_TRUE(r.ok);
    ASSERT_EQ(r.rec.entries.size(), 1u);
    EXPECT_EQ(r.rec.entries[0].real_size, 60000000000u);
    EXPECT_GT(r.rec.entries[0].sparse.size(), 4u);  // uses extension blocks
  }
  {
    auto r = get("go-archive-tar/pax-sparse-big.tar");
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.rec.entries.at(0).real_size, 60000000000u);
  }
  {
    auto r = get("go-archive-tar/xattrs.tar");
    ASSERT_TRUE(r.ok);
    ASSERT_EQ(r.rec.entries.size(), 2u);
    const auto& x = r.rec.entries[0].xattrs;
    ASSERT_EQ(x.size(), 3u);
    EXPECT_EQ(x[0].first, "user.key");
    EXPECT_EQ(x[0].second, "value");
    EXPECT_EQ(x[1].first, "user.key2");
    EXPECT_EQ(x[1].second, "value2");
    EXPECT_EQ(x[2].first, "security.selinux");
    EXPECT_EQ(r.rec.entries[0].mtime_sec, 1386065770);
    EXPECT_EQ(r.rec.entries[0].mtime_nsec, 448252320u);
    const auto& x2 = r.rec.entries[1].xattrs;
    ASSERT_EQ(x2.size(), 1u);
    EXPECT_EQ(x2[0].first, "security.selinux");
    EXPECT_EQ(x2[0].second, std::string("unconfined_u:object_r:default_t:s0\0", 35));
  }
  {
    auto r = get("libarchive/test_read_format_tar_concatenated.tar");
    ASSERT_TRUE(r.ok);
    EXPECT_TRUE(r.end_of_archive);
    EXPECT_EQ(r.rec.entries.size(), 1u);  // the second archive is trailing raw bytes
  }
  {
    auto r = get("libarchive/test_read_format_tar_pax_negative_time.tar");
    ASSERT_TRUE(r.ok);
    EXPECT_LT(r.rec.entries.at(0).mtime_sec, 0);
  }
  {
    auto r = get("go-archive-tar/nil-uid.tar");
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.rec.entries.at(0).uid, 0);
    EXPECT_FALSE(r.end_of_archive);
  }
  {
    auto r = get("libarchive/test_read_format_tar_pax_sun_holesdata.tar");
    ASSERT_TRUE(r.ok);
    // Solaris stores the holes: the whole data area is the payload.
    EXPECT_EQ(r.rec.entries.at(0).kind, EntryKind::Regular);
    EXPECT_EQ(r.rec.entries.at(0).payload_size, 1536u);
  }
}

// ---------------------------------------------------------------------------------------
// Hand-made streams.

TEST(Scanner, FeatureArchiveAndChunkingInvariance) {
  const std::string t = feature_archive();
  const ScanResult whole = scan(t);
  ASSERT_TRUE(whole.ok) << whole.message;
  EXPECT_TRUE(whole.rec.protocol_errors.empty());
  EXPECT_EQ(whole.rec.rebuilt, t);
  EXPECT_TRUE(whole.end_of_archive);
  const auto& es = whole.rec.entries;
  ASSERT_EQ(es.size(), 9u);
  EXPECT_EQ(es[0].kind, EntryKind::Directory);
  EXPECT_EQ(es[1].name, "dir/file.txt");
  EXPECT_EQ(whole.rec.payloads[1], "hello, world\n");
  EXPECT_EQ(es[2].name, "dir/long/" + std::string(150, 'p'));
  EXPECT_EQ(es[2].mtime_sec, 1500000000);
  EXPECT_EQ(es[2].mtime_nsec, 250000000u);
  ASSERT_EQ(es[2].xattrs.size(), 1u);
  EXPECT_EQ(es[2].payload_size, 700u);
  EXPECT_EQ(es[3].name, std::string(120, 'n'));
  EXPECT_EQ(es[4].kind, EntryKind::Symlink);
  EXPECT_EQ(es[5].kind, EntryKind::Hardlink);
  EXPECT_EQ(es[6].kind, EntryKind::Sparse);
  EXPECT_EQ(es[6].real_size, 200u);
  EXPECT_EQ(es[6].payload_size, 15u);
  EXPECT_EQ(es[7].name, "sparse10");
  EXPECT_EQ(es[7].kind, EntryKind::Sparse);
  ASSERT_EQ(es[7].sparse.size(), 2u);
  EXPECT_EQ(es[7].sparse[1].offset, 100u);
  EXPECT_EQ(whole.rec.payloads[7], std::string(15, 'q'));  // the map is raw
  EXPECT_EQ(es[8].name, "empty");
  for (size_t c : {size_t(1), size_t(2), size_t(7), size_t(511), size_t(512), size_t(513), size_t(1000)})
    expect_same(whole, scan(t, c), "chunk " + std::to_string(c));
  // Random chunk sizes.
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {
    Recorder rec;
    Scanner s(rec);
    size_t i = 0;
    while (i < t.size()) {
      size_t n = std::min<size_t>(t.size() - i, rng() % 1500);
      s.feed(reinterpret_cast<const uint8_t*>(t.data()) + i, n);
      i += n;
    }
    s.finish();
    EXPECT_EQ(rec.rebuilt, t);
    ASSERT_EQ(rec.entries.size(), es.size());
    for (size_t k = 0; k < es.size(); ++k) EXPECT_TRUE(same_entry(rec.entries[k], es[k]));
  }
}

TEST(Scanner, TruncationAtEveryOffset) {
  const std::string t = feature_archive();
  // Offsets at which the stream may legitimately end (header boundaries before the end
  // marker, anywhere after it, or inside the final padding of an entry).
  int accepted = 0, refused = 0;
  for (size_t n = 0; n <= t.size(); ++n) {
    const std::string prefix = t.substr(0, n);
    ScanResult r = scan(prefix);
    if (r.ok) {
      ++accepted;
      EXPECT_EQ(r.rec.rebuilt, prefix) << n;
    } else {
      ++refused;
      EXPECT_EQ(r.code, Code::Archive) << n;
      EXPECT_NE(r.message.find("offset"), std::string::npos) << r.message;
    }
    // 13-byte chunking gives the same verdict.
    ScanResult r2 = scan(prefix, 13);
    EXPECT_EQ(r.ok, r2.ok) << n;
    EXPECT_EQ(r.message, r2.message) << n;
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(refused, 0);
  // The end of the entries, exactly (no end-of-archive blocks): valid.
  EXPECT_TRUE(scan(t.substr(0, t.size() - 1024)).ok);
  // Inside a header: refused.
  EXPECT_FALSE(scan(t.substr(0, 100)).ok);
}

TEST(Scanner, EndInsidePaddingIsAccepted) {
  std::string t = entry({.name = "f"}, "12345");
  ScanResult r = scan(t.substr(0, 512 + 5 + 10));
  EXPECT_TRUE(r.ok) << r.message;
  r = scan(t.substr(0, 512 + 4));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Archive);
}

TEST(Scanner, EmptyInputIsAnEmptyArchive) {
  ScanResult r = scan("");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.entries, 0u);
  EXPECT_FALSE(r.end_of_archive);
}

TEST(Scanner, BadChecksum) {
  std::string t = header({.name = "f", .bad_checksum = true}) + eoa();
  ScanResult r = scan(t);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_NE(r.message.find("checksum"), std::string::npos);
  EXPECT_NE(r.message.find("offset 0"), std::string::npos) << r.message;
  // Second header bad: offset 1024.
  t = entry({.name = "a"}, "x") + header({.name = "f", .bad_checksum = true});
  r = scan(t);
  ASSERT_FALSE(r.ok);
  EXPECT_NE(r.message.find("offset 1024"), std::string::npos) << r.message;
}

TEST(Scanner, SignedChecksumAccepted) {
  // A name with high-bit bytes, checksum computed with signed chars (old Sun/BSD tars).
  std::string b = header({.name = "\xe4\xf6\xfc"});
  int sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : int(int8_t(b[i]));
  put_octal(b, 148, 7, uint64_t(sum));
  ScanResult r = scan(b + eoa());
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Scanner, NumericFields) {
  // All-space and all-NUL uid fields read as 0; base-256 sizes > 8 GiB are fine until EOF.
  std::string b = header({.name = "f"});
  std::memset(&b[108], ' ', 8);
  std::memset(&b[116], 0, 8);
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : uint8_t(b[i]);
  put_octal(b, 148, 7, sum);
  ScanResult r = scan(b);
  ASSERT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.rec.entries[0].uid, 0);
  EXPECT_EQ(r.rec.entries[0].gid, 0);

  Hdr big{.name = "big", .size = 16ull << 30, .base256 = true};
  r = scan(header(big) + std::string(4096, 'x'));
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_EQ(r.rec.entries.at(0).payload_size, 16ull << 30);
  EXPECT_NE(r.message.find("missing"), std::string::npos) << r.message;

  // Negative base-256 size.
  std::string neg = header({.name = "neg"});
  std::memset(&neg[124], 0xff, 12);
  sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : uint8_t(neg[i]);
  put_octal(neg, 148, 7, sum);
  r = scan(neg + eoa());
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_NE(r.message.find("size"), std::string::npos) << r.message;

  // Garbage in an octal field.
  std::string bad = header({.name = "bad"});
  bad[110] = '9';
  sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : uint8_t(bad[i]);
  put_octal(bad, 148, 7, sum);
  r = scan(bad + eoa());
  ASSERT_FALSE(r.ok);
  EXPECT_NE(r.message.find("uid"), std::string::npos) << r.message;
}

TEST(Scanner, UstarPrefix) {
  ScanResult r = scan(entry({.name = "file", .prefix = "some/dir"}, "x") + eoa());
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.rec.entries[0].name, "some/dir/file");
}

TEST(Scanner, HugePaxRecords) {
  // Declared size above the limit: refused before reading it.
  Hdr h{.name = "PaxHeaders/x", .type = 'x', .size = (1u << 20) + 1};
  ScanResult r = scan(header(h));
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_NE(r.message.find("pax header too large"), std::string::npos) << r.message;
  // Same with a 4 GiB 'g' header, and a GNU long name.
  r = scan(header({.name = "g", .type = 'g', .size = 4ull << 30}));
  EXPECT_NE(r.message.find("pax header too large"), std::string::npos) << r.message;
  r = scan(header({.name = "././@LongLink", .type = 'L', .size = 2u << 20, .gnu = true}));
  EXPECT_FALSE(r.ok);
  // A smaller limit applies.
  Limits lim;
  lim.max_extension_size = 100;
  r = scan(pax({{"path", std::string(200, 'a')}}) + entry({.name = "f"}, "") + eoa(), 0, lim);
  EXPECT_FALSE(r.ok);
  // A record whose length runs past the data.
  std::string d = "999999999999999999999 path=x\n";
  r = scan(entry({.name = "x", .type = 'x'}, d) + entry({.name = "f"}, "") + eoa());
  ASSERT_FALSE(r.ok);
  EXPECT_NE(r.message.find("pax record length"), std::string::npos) << r.message;
  // Malformed records.
  for (std::string bad : {"5 a=b", "11 path=x\n", "7 path\n", "x path=a\n", "6 =ab\n", "3 \n", " 6 a=b\n"}) {
    r = scan(entry({.name = "x", .type = 'x'}, bad) + entry({.name = "f"}, "") + eoa());
    EXPECT_FALSE(r.ok) << bad;
    EXPECT_EQ(r.code, Code::Archive) << bad;
  }
  // NUL in a path or in an xattr key; NUL in an xattr value is fine.
  r = scan(pax({{"path", std::string("a\0b", 3)}}) + entry({.name = "f"}, "") + eoa());
  EXPECT_FALSE(r.ok);
  r = scan(pax({{std::string("SCHILY.xattr.us\0er", 18), "v"}}) + entry({.name = "f"}, "") + eoa());
  EXPECT_FALSE(r.ok);
  r = scan(pax({{"SCHILY.xattr.user.k", std::string("v\0w", 3)}}) + entry({.name = "f"}, "") + eoa());
  ASSERT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.rec.entries[0].xattrs.at(0).second, std::string("v\0w", 3));
}

TEST(Scanner, PaxOverridesAndEmptyValues) {
  ScanResult r = scan(pax({{"path", "p"}, {"uid", "123456789"}, {"uname", "u"}, {"size", "3"},
                           {"mtime", "-1.5"}, {"linkpath", "l"}}) +
                      header({.name = "f", .size = 999}) + padded("abc") + eoa());
  ASSERT_TRUE(r.ok) << r.message;
  const Entry& e = r.rec.entries[0];
  EXPECT_EQ(e.name, "p");
  EXPECT_EQ(e.uid, 123456789);
  EXPECT_EQ(e.uname, "u");
  EXPECT_EQ(e.payload_size, 3u);
  EXPECT_EQ(e.mtime_sec, -2);
  EXPECT_EQ(e.mtime_nsec, 500000000u);
  EXPECT_EQ(e.linkname, "l");
  // An empty value keeps the header's field.
  r = scan(pax({{"path", ""}, {"mtime", ""}}) + entry({.name = "hdrname", .mtime = 77}, "") + eoa());
  ASSERT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.rec.entries[0].name, "hdrname");
  EXPECT_EQ(r.rec.entries[0].mtime_sec, 77);
  // Invalid values.
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"size", "-1"}, {"size", "12a"}, {"uid", "x"}, {"mtime", "1.2a"}, {"mtime", "a"},
           {"size", "99999999999999999999999"}}) {
    r = scan(pax({{k, v}}) + entry({.name = "f"}, "") + eoa());
    EXPECT_FALSE(r.ok) << k << "=" << v;
  }
}

TEST(Scanner, LastExtensionHeaderWins) {
  Hdr l{.name = "././@LongLink", .type = 'L', .gnu = true};
  Hdr k{.name = "././@LongLink", .type = 'K', .gnu = true};
  std::string t = entry(l, "first") + entry(l, "second") + entry(k, "t1") + entry(k, "t2") +
                  pax({{"path", "x1"}, {"uname", "a"}}) + pax({{"gname", "b"}}) +
                  entry({.name = "n", .type = '2', .gnu = true}, "") + eoa();
  ScanResult r = scan(t);
  ASSERT_TRUE(r.ok) << r.message;
  const Entry& e = r.rec.entries.at(0);
  EXPECT_EQ(e.name, "second");
  EXPECT_EQ(e.linkname, "t2");
  EXPECT_EQ(e.uname, "user");  // the first 'x' header is replaced entirely
  EXPECT_EQ(e.gname, "b");
}

TEST(Scanner, GlobalRecords) {
  std::string t = pax({{"mtime", "100"}, {"uname", "g"}, {"path", "never"}, {"SCHILY.xattr.user.a", "1"}}, 'g') +
                  entry({.name = "a"}, "") + pax({{"mtime", "200"}}) + entry({.name = "b"}, "") +
                  pax({{"mtime", ""}}, 'g') + entry({.name = "c", .mtime = 5}, "") + eoa();
  ScanResult r = scan(t);
  ASSERT_TRUE(r.ok) << r.message;
  ASSERT_EQ(r.rec.entries.size(), 3u);
  EXPECT_EQ(r.rec.entries[0].name, "a");  // 'path' is not applied globally
  EXPECT_EQ(r.rec.entries[0].mtime_sec, 100);
  EXPECT_EQ(r.rec.entries[0].uname, "g");
  EXPECT_EQ(r.rec.entries[0].xattrs.size(), 1u);
  EXPECT_EQ(r.rec.entries[1].mtime_sec, 200);
  EXPECT_EQ(r.rec.entries[2].mtime_sec, 5);  // cleared
  EXPECT_EQ(r.rec.entries[2].uname, "g");
  // An empty 'x' value deletes the global value for that entry only.
  r = scan(pax({{"mtime", "100"}, {"SCHILY.xattr.user.a", "1"}}, 'g') +
           pax({{"mtime", ""}, {"SCHILY.xattr.user.a", ""}}) + entry({.name = "d", .mtime = 9}, "") +
           entry({.name = "e", .mtime = 9}, "") + eoa());
  ASSERT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.rec.entries[0].mtime_sec, 9);
  EXPECT_TRUE(r.rec.entries[0].xattrs.empty());
  EXPECT_EQ(r.rec.entries[1].mtime_sec, 100);
  EXPECT_EQ(r.rec.entries[1].xattrs.size(), 1u);
  // Repeated xattr records: the last value wins, one attribute.
  r = scan(pax({{"SCHILY.xattr.user.a", "1"}, {"SCHILY.xattr.user.b", "2"}, {"SCHILY.xattr.user.a", "3"}}) +
           entry({.name = "f"}, "") + eoa());
  ASSERT_TRUE(r.ok) << r.message;
  ASSERT_EQ(r.rec.entries[0].xattrs.size(), 2u);
  EXPECT_EQ(r.rec.entries[0].xattrs[0].first, "user.a");
  EXPECT_EQ(r.rec.entries[0].xattrs[0].second, "3");
  // A 'g' between an 'x' and its entry, or an 'x' with no entry: refused.
  EXPECT_FALSE(scan(pax({{"path", "a"}}) + pax({{"mtime", "1"}}, 'g') + entry({.name = "f"}, "") + eoa()).ok);
  EXPECT_FALSE(scan(pax({{"path", "a"}}) + eoa()).ok);
  EXPECT_FALSE(scan(pax({{"path", "a"}})).ok);
  // Global records are copied into every entry: their total size is bounded.
  r = scan(pax({{"SCHILY.xattr.user.big", std::string(10000, 'v')}}, 'g') + entry({.name = "f"}, "") + eoa());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("global records too large"), std::string::npos) << r.message;
  // A lone 'g' is an empty archive.
  EXPECT_TRUE(scan(pax({{"comment", "x"}}, 'g') + eoa()).ok);
}

TEST(Scanner, HeaderOnlyTypesWithSizes) {
  // Size ignored when a header (or the end) follows.
  std::string t = header({.name = "d/", .type = '5', .size = 5}) +
                  header({.name = "h", .type = '1', .size = 100, .linkname = "x"}) +
                  entry({.name = "f"}, "data") + header({.name = "s", .type = '2', .size = 7, .linkname = "f"});
  ScanResult r = scan(t);
  ASSERT_TRUE(r.ok) << r.message;
  ASSERT_EQ(r.rec.entries.size(), 4u);
  for (const auto& e : r.rec.entries)
    if (!e.has_payload()) { EXPECT_EQ(e.data_size, 0u); }
  EXPECT_EQ(r.rec.rebuilt, t);
  // A hard link with a body (a pax hard link): the size is obeyed, the body is raw.
  t = header({.name = "h", .type = '1', .size = 600, .linkname = "x"}) + padded(std::string(600, 'B')) +
      entry({.name = "after"}, "z") + eoa();
  r = scan(t);
  ASSERT_TRUE(r.ok) << r.message;
  ASSERT_EQ(r.rec.entries.size(), 2u);
  EXPECT_EQ(r.rec.entries[0].data_size, 600u);
  EXPECT_EQ(r.rec.entries[0].payload_size, 0u);
  EXPECT_EQ(r.rec.entries[1].name, "after");
  EXPECT_EQ(r.rec.rebuilt, t);
  for (size_t c : {size_t(1), size_t(100), size_t(512)}) expect_same(r, scan(t, c), "chunk");
  // ... but its body must be there.
  EXPECT_FALSE(scan(t.substr(0, 700)).ok);
  // Old-style directory: regular typeflag with a trailing slash.
  r = scan(header({.name = "olddir/", .type = '\0', .size = 3}) + eoa());
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.rec.entries[0].kind, EntryKind::Directory);
  // Other kinds keep their data as raw.
  t = entry({.name = "dump/", .type = 'D', .gnu = true}, std::string("Yfoo\0\0", 6)) +
      entry({.name = "x", .type = 'Q'}, "unknown type data") + eoa();
  r = scan(t);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.rec.entries[0].kind, EntryKind::Other);
  EXPECT_EQ(r.rec.entries[0].data_size, 6u);
  EXPECT_EQ(r.rec.payload_total, 0u);
  EXPECT_EQ(r.rec.rebuilt, t);
}

TEST(Scanner, EndOfArchive) {
  const std::string f = entry({.name = "f"}, "abc");
  // One zero block then garbage: the garbage is trailing raw bytes.
  std::string t = f + std::string(512, '\0') + "garbage that is not a tar header" + std::string(100, 'x');
  ScanResult r = scan(t);
  ASSERT_TRUE(r.ok) << r.message;
  EXPECT_TRUE(r.end_of_archive);
  EXPECT_EQ(r.rec.entries.size(), 1u);
  EXPECT_EQ(r.rec.rebuilt, t);
  EXPECT_EQ(r.rec.raw_total, t.size() - 3);
  // Extra zeros, not a multiple of 512.
  t = f + eoa() + std::string(777, '\0');
  r = scan(t);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.rec.rebuilt, t);
  // A second archive after the first is not parsed.
  t = f + eoa() + entry({.name = "second"}, "x") + eoa();
  r = scan(t);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.rec.entries.size(), 1u);
  // A partial block after the last entry is a truncated header.
  r = scan(f + std::string(100, '\0'));
  EXPECT_FALSE(r.ok);
}

// Writes an old GNU sparse entry whose map needs extension blocks.
std::string old_sparse(const std::vector<std::pair<uint64_t, uint64_t>>& map, uint64_t realsize,
                       const std::string& name = "s") {
  uint64_t stored = 0;
  for (auto& [o, l] : map) stored += l;
  Hdr h{.name = name, .type = 'S', .size = stored, .gnu = true};
  h.realsize = realsize;
  for (size_t i = 0; i < std::min<size_t>(4, map.size()); ++i) h.sparse.push_back(map[i]);
  h.extended = map.size() > 4;
  std::string t = header(h);
  for (size_t i = 4; i < map.size(); i += 21) {
    std::string b(512, '\0');
    for (size_t j = 0; j < 21 && i + j < map.size(); ++j) {
      put_octal(b, j * 24, 12, map[i + j].first);
      put_octal(b, j * 24 + 12, 12, map[i + j].second);
    }
    b[504] = (i + 21 < map.size()) ? 1 : 0;
    t += b;
  }
  std::string data;
  for (size_t i = 0; i < map.size(); ++i) data += std::string(map[i].second, char('a' + i % 26));
  return t + padded(data);
}

TEST(Scanner, SparseFormats) {
  // Old GNU with 50 fragments (two extension blocks).
  std::vector<std::pair<uint64_t, uint64_t>> map;
  for (uint64_t i = 0; i < 50; ++i) map.push_back({i * 1000, 10 + i});
  std::string t = old_sparse(map, 50000) + eoa();
  ScanResult r = scan(t);
  ASSERT_TRUE(r.ok) << r.message;
  ASSERT_EQ(r.rec.entries.size(), 1u);
  EXPECT_EQ(r.rec.entries[0].sparse.size(), 50u);
  EXPECT_EQ(r.rec.entries[0].real_size, 50000u);
  EXPECT_EQ(r.rec.entries[0].sparse[49].offset, 49000u);
  expect_same(r, scan(t, 1), "chunk 1");
  // Fragment limit.
  Limits lim;
  lim.max_sparse_fragments = 10;
  r = scan(t, 0, lim);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("too many sparse fragments"), std::string::npos);
  // Insane maps: overlapping, out of order, beyond the real size, wrong stored size.
  EXPECT_FALSE(scan(old_sparse({{0, 10}, {5, 10}}, 100) + eoa()).ok);
  EXPECT_FALSE(scan(old_sparse({{50, 10}, {0, 10}}, 100) + eoa()).ok);
  EXPECT_FALSE(scan(old_sparse({{0, 10}, {95, 10}}, 100) + eoa()).ok);
  {
    Hdr h{.name = "s", .type = 'S', .size = 30, .gnu = true};
    h.sparse = {{0, 10}};
    h.realsize = 100;
    EXPECT_FALSE(scan(header(h) + padded(std::string(30, 'x')) + eoa()).ok);
  }
  // Huge offsets that overflow.
  EXPECT_FALSE(scan(old_sparse({{0x7fffffffffffffffull - 5, 10}}, 100) + eoa()).ok);

  // PAX 0.0 and 0.1.
  std::string d = std::string(10, 'A') + std::string(5, 'B');
  t = pax({{"GNU.sparse.numblocks", "2"}, {"GNU.sparse.offset", "0"}, {"GNU.sparse.numbytes", "10"},
           {"GNU.sparse.offset", "100"}, {"GNU.sparse.numbytes", "5"}, {"GNU.sparse.size", "200"},
           {"GNU.sparse.name", "real00"}}) +
      entry({.name = "fake"}, d) +
      pax({{"GNU.sparse.major", "0"}, {"GNU.sparse.minor", "1"}, {"GNU.sparse.numblocks", "2"},
           {"GNU.sparse.map", "0,10,100,5"}, {"GNU.sparse.size", "200"}, {"GNU.sparse.name", "real01"}}) +
      entry({.name = "fake"}, d) + eoa();
  r = scan(t);
  ASSERT_TRUE(r.ok) << r.message;
  ASSERT_EQ(r.rec.entries.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(r.rec.entries[i].kind, EntryKind::Sparse);
    EXPECT_EQ(r.rec.entries[i].real_size, 200u);
    EXPECT_EQ(r.rec.payloads[i], d);
    EXPECT_EQ(logical_content(r.rec.entries[i], r.rec.payloads[i]).substr(100, 5), "BBBBB");
  }
  EXPECT_EQ(r.rec.entries[0].name, "real00");
  EXPECT_EQ(r.rec.entries[1].name, "real01");
  // Misordered 0.0 records, wrong numblocks, bad numbers, sparse records on a symlink.
  EXPECT_FALSE(scan(pax({{"GNU.sparse.numblocks", "1"}, {"GNU.sparse.numbytes", "10"}, {"GNU.sparse.offset", "0"}}) +
                    entry({.name = "f"}, std::string(10, 'x')) + eoa()).ok);
  EXPECT_FALSE(scan(pax({{"GNU.sparse.numblocks", "3"}, {"GNU.sparse.map", "0,10"}, {"GNU.sparse.size", "20"}}) +
                    entry({.name = "f"}, std::string(10, 'x')) + eoa()).ok);
  EXPECT_FALSE(scan(pax({{"GNU.sparse.numblocks", "1"}, {"GNU.sparse.map", "0,1x"}, {"GNU.sparse.size", "20"}}) +
                    entry({.name = "f"}, std::string(10, 'x')) + eoa()).ok);
  EXPECT_FALSE(scan(pax({{"GNU.sparse.numblocks", "1"}, {"GNU.sparse.map", "0,10"}}) +
                    header({.name = "l", .type = '2', .linkname = "x"}) + eoa()).ok);
  EXPECT_FALSE(scan(pax({{"GNU.sparse.major", "2"}, {"GNU.sparse.minor", "0"}}) + entry({.name = "f"}, "") + eoa()).ok);

  // PAX 1.0 with extra bytes after the fragments (raw), and a map spanning two blocks.
  std::string map10 = "3\n";
  for (int i = 0; i < 3; ++i) map10 += std::to_string(i * 100) + "\n" + "4\n";
  std::string area = padded(map10) + "aaaabbbbcccc" + "XY";
  t = pax({{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.realsize", "300"},
           {"GNU.sparse.name", "s10"}}) +
      entry({.name = "fake", .size = area.size()}, area) + eoa();
  r = scan(t);
  ASSERT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.rec.entries[0].payload_size, 12u);
  EXPECT_EQ(r.rec.payloads[0], "aaaabbbbcccc");
  EXPECT_EQ(r.rec.rebuilt, t);
  expect_same(r, scan(t, 1), "chunk 1");
  std::string longmap = "100\n";
  for (int i = 0; i < 100; ++i) longmap += std::to_string(i * 1000) + "\n1\n";
  area = padded(longmap) + std::string(100, 'z');
  t = pax({{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.realsize", "100000"}}) +
      entry({.name = "fake", .size = area.size()}, area) + eoa();
  r = scan(t);
  ASSERT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.rec.entries[0].sparse.size(), 100u);
  expect_same(r, scan(t, 3), "chunk 3");
  // Bad 1.0 maps: junk, a map longer than the data, a count beyond the limit.
  for (std::string bad : {std::string("1\n0\nx\n"), std::string("#c\n1\n0\n1\n"), std::string("\n"),
                          std::string("99999999999999999999999\n")}) {
    area = padded(bad) + "z";
    r = scan(pax({{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.realsize", "10"}}) +
             entry({.name = "f", .size = area.size()}, area) + eoa());
    EXPECT_FALSE(r.ok) << bad;
    EXPECT_EQ(r.code, Code::Archive);
  }
  std::string unterminated = "2\n0\n1\n5";  // runs to the end of the data area
  r = scan(pax({{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.realsize", "10"}}) +
           entry({.name = "f"}, unterminated) + eoa());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("runs past"), std::string::npos) << r.message;
}

// Every well-formed file cut short at block boundaries (and one byte either side) and at
// random offsets: accepted with the invariant, or refused with Code::Archive.
TEST_F(Corpus, TruncatedFiles) {
  std::mt19937 rng(99);
  int files = 0;
  for (const auto& f : files_) {
    if (f.expect != "well-formed" || f.tar_size > 24 * 1024) continue;
    ++files;
    const std::string data = load(f);
    std::set<size_t> cuts;
    for (size_t b = 0; b <= data.size(); b += 512)
      for (size_t d : {b - 1, b, b + 1})
        if (d < data.size()) cuts.insert(d);
    for (int i = 0; i < 40 && !data.empty(); ++i) cuts.insert(rng() % data.size());
    for (size_t n : cuts) {
      const std::string prefix = data.substr(0, n);
      ScanResult r = scan(prefix, 0, {}, false);
      if (r.ok) {
        EXPECT_TRUE(r.rec.rebuilt == prefix) << f.file << " cut at " << n;
      } else {
        EXPECT_EQ(r.code, Code::Archive) << f.file << " cut at " << n << ": " << r.message;
      }
    }
  }
  EXPECT_GT(files, 50);
}

// Random corruptions of real archives never crash, hang or break the invariant.
TEST_F(Corpus, MutationFuzz) {
  std::mt19937 rng(1234);
  int accepted = 0, refused = 0;
  for (const auto& f : files_) {
    std::string data = load(f);
    if (data.size() > (1u << 20)) continue;
    for (int round = 0; round < 12; ++round) {
      std::string m = data;
      int edits = 1 + int(rng() % 4);
      for (int k = 0; k < edits; ++k) {
        size_t pos = m.empty() ? 0 : rng() % m.size();
        switch (rng() % 5) {
          case 0:
            if (!m.empty()) m[pos] = char(rng());
            break;
          case 1:  // keep the checksum plausible: edit inside a header and fix it up
            if (pos / 512 * 512 + 512 <= m.size()) {
              size_t base = pos / 512 * 512;
              m[pos] = char("0123456789 \0\x80\xff/xgLKS"[rng() % 18]);
              unsigned sum = 0;
              for (size_t i = 0; i < 512; ++i)
                sum += (i >= 148 && i < 156) ? ' ' : uint8_t(m[base + i]);
              std::string tmp(m.substr(base, 512));
              put_octal(tmp, 148, 7, sum);
              tmp[155] = ' ';
              m.replace(base, 512, tmp);
            }
            break;
          case 2:
            m.resize(pos);
            break;
          case 3:
            m.insert(pos, std::string(1 + rng() % 600, char(rng())));
            break;
          default:
            if (!m.empty()) m.erase(pos, 1 + rng() % 600);
        }
      }
      ScanResult r = scan(m, 0, {}, false);
      if (r.ok) {
        ++accepted;
        EXPECT_TRUE(r.rec.rebuilt == m) << f.file << " round " << round;
        EXPECT_TRUE(r.rec.protocol_errors.empty()) << f.file;
      } else {
        ++refused;
        EXPECT_EQ(r.code, Code::Archive) << r.message;
      }
      ScanResult r7 = scan(m, 7, {}, false);
      EXPECT_EQ(r.ok, r7.ok) << f.file << " round " << round;
      EXPECT_EQ(r.message, r7.message) << f.file << " round " << round;
    }
  }
  std::printf("[ fuzz    ] %d mutated streams accepted, %d refused\n", accepted, refused);
}

}  // namespace

namespace {

TEST(Scanner, NamesAndLinkTargetsAreCappedAtMaxNameBytes) {
  static_assert(kMaxNameBytes == 65536);
  const std::string at(kMaxNameBytes, 'a'), over(kMaxNameBytes + 1, 'a');
  ScanResult r = scan(pax({{"path", at}}) + entry({.name = "x"}, "") + eoa());
  EXPECT_TRUE(r.ok) << r.message;
  r = scan(pax({{"path", over}}) + entry({.name = "x"}, "") + eoa());
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_NE(r.message.find("tar entry name is longer than 65536 bytes"), std::string::npos) << r.message;
  r = scan(pax({{"linkpath", over}}) + entry({.name = "l", .type = '2'}, "") + eoa());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("link target is longer than 65536 bytes"), std::string::npos) << r.message;
  // GNU long name: the data holds the name and its NUL. One byte more is refused at the header.
  r = scan(entry({.name = "././@LongLink", .type = 'L', .gnu = true}, at + '\0') + entry({.name = "x"}, "") + eoa());
  EXPECT_TRUE(r.ok) << r.message;
  r = scan(entry({.name = "././@LongLink", .type = 'L', .gnu = true}, over + '\0').substr(0, 512));
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("GNU long name too long (65538 bytes, limit 65536)"), std::string::npos) << r.message;
  // The limit is a Limits field like the others.
  Limits lim;
  lim.max_name_size = 10;
  r = scan(entry({.name = "0123456789a"}, "") + eoa(), 0, lim);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("longer than 10 bytes"), std::string::npos) << r.message;
  EXPECT_TRUE(scan(entry({.name = "0123456789"}, "") + eoa(), 0, lim).ok);
}

}  // namespace
