/* SPDX-License-Identifier: Apache-2.0 */
// Shared helpers for the C++ tests: temporary directories, tar building, the shared corpus.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/io.h"

namespace rolayer::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class MemSource : public ByteSource {
 public:
  explicit MemSource(std::string data, size_t max_chunk = SIZE_MAX) : data_(std::move(data)), max_(max_chunk) {}
  size_t read(uint8_t* buf, size_t cap) override;

 private:
  std::string data_;
  size_t max_, pos_ = 0;
};

std::string read_all(ByteSource& src);

struct TarItem {
  enum Kind { File, Dir, Symlink, Hardlink } kind = File;
  std::string name;
  std::string content;  // File: data; Symlink/Hardlink: target
  int mode = 0644;
};
// A PAX (restricted) tar of the items, written by libarchive.
std::string make_tar(const std::vector<TarItem>& items);
// 1024 zero bytes: the empty layer.
std::string empty_tar();

struct CorpusFile {
  std::string file;     // path inside the corpus
  std::string expect;   // well-formed | expected-fail | reader-dependent
  std::string sha256;   // of the tar stream (decompressed where the file is compressed)
  std::string data;     // the tar stream
};
// The corpus directory, or "" when absent.
std::string corpus_dir();
std::vector<CorpusFile> load_corpus();

std::string sha256_hex(const std::string& data);

// n bytes of a xorshift sequence from seed (incompressible test payloads, the same every run).
std::string pseudo_random(size_t n, uint64_t seed);

// What reading a stream to its end gave: all its bytes (ok), or the error's code, message and
// path after the bytes read before it.
struct Read {
  bool ok = false;
  std::string data;
  Code code = Code::Ok;
  std::string message, path;
};

}  // namespace rolayer::test
