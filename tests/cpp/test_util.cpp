// SPDX-License-Identifier: Apache-2.0
#include "test_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/fs.h"
#include "digest/digest.h"

namespace rolayer::test {

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/rolayer-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back(0);
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  try {
    fs::remove_all(path_);
  } catch (...) {
  }
}

size_t MemSource::read(uint8_t* buf, size_t cap) {
  size_t n = std::min<size_t>({cap, max_, data_.size() - pos_});
  std::memcpy(buf, data_.data() + pos_, n);
  pos_ += n;
  return n;
}

std::string read_all(ByteSource& src) {
  std::string out;
  std::vector<uint8_t> buf(1 << 16);
  for (;;) {
    size_t n = src.read(buf.data(), buf.size());
    if (n == 0) break;
    out.append(reinterpret_cast<char*>(buf.data()), n);
  }
  return out;
}

std::string make_tar(const std::vector<TarItem>& items) {
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_set_bytes_per_block(a, 512);
  std::vector<char> buf(1 << 24);
  size_t used = 0;
  if (archive_write_open_memory(a, buf.data(), buf.size(), &used) != ARCHIVE_OK)
    throw std::runtime_error(archive_error_string(a));
  for (const auto& it : items) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, it.name.c_str());
    archive_entry_set_mtime(e, 1700000000, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    switch (it.kind) {
      case TarItem::File:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, it.mode);
        archive_entry_set_size(e, static_cast<la_int64_t>(it.content.size()));
        break;
      case TarItem::Dir:
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_perm(e, 0755);
        break;
      case TarItem::Symlink:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_perm(e, 0777);
        archive_entry_set_symlink(e, it.content.c_str());
        break;
      case TarItem::Hardlink:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_hardlink(e, it.content.c_str());
        archive_entry_set_size(e, 0);
        break;
    }
    if (archive_write_header(a, e) != ARCHIVE_OK) throw std::runtime_error(archive_error_string(a));
    if (it.kind == TarItem::File && !it.content.empty())
      archive_write_data(a, it.content.data(), it.content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return std::string(buf.data(), used);
}

std::string empty_tar() { return std::string(1024, '\0'); }

std::string corpus_dir() {
  if (const char* env = getenv("ROLAYER_CORPUS")) return env;
  std::string d = std::string(ROLAYER_SOURCE_DIR) + "/../shared/corpus";
  struct stat st;
  return stat((d + "/MANIFEST.tsv").c_str(), &st) == 0 ? d : std::string();
}

namespace {
std::string read_whole(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Decompresses gzip/bzip2 (or passes a plain stream through) with libarchive's raw reader.
std::string decompress(const std::string& data) {
  struct archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_raw(a);
  std::string out;
  if (archive_read_open_memory(a, data.data(), data.size()) == ARCHIVE_OK) {
    struct archive_entry* e;
    if (archive_read_next_header(a, &e) == ARCHIVE_OK) {
      char buf[65536];
      la_ssize_t n;
      while ((n = archive_read_data(a, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    }
  }
  archive_read_free(a);
  return out;
}
}  // namespace

std::vector<CorpusFile> load_corpus() {
  std::vector<CorpusFile> out;
  std::string dir = corpus_dir();
  if (dir.empty()) return out;
  std::ifstream m(dir + "/MANIFEST.tsv");
  std::string line;
  std::getline(m, line);  // header
  while (std::getline(m, line)) {
    std::vector<std::string> col;
    std::stringstream ss(line);
    std::string c;
    while (std::getline(ss, c, '\t')) col.push_back(c);
    if (col.size() < 9) continue;
    CorpusFile f;
    f.file = col[0];
    f.expect = col[8];
    std::string raw = read_whole(dir + "/" + f.file);
    if (!col[6].empty()) {
      f.sha256 = col[6];
      f.data = decompress(raw);
    } else {
      f.sha256 = col[4];
      f.data = raw;
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::string sha256_hex(const std::string& data) {
  return std::string(sha256_of(data.data(), data.size()).hex());
}

std::string pseudo_random(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return s;
}

}  // namespace rolayer::test
