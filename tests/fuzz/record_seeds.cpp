// SPDX-License-Identifier: Apache-2.0
// fuzz_record_seeds OUTDIR TAR...: writes the fidelity record of each tar (what a register on
// the "dir" driver stores) to OUTDIR/<basename>.rec, and its decompressed body (the items) to
// OUTDIR/<basename>.body; tars the store refuses are skipped. Seeds of the record_reader
// corpus (tests/fuzz/seed.sh).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <zstd.h>

#include "core/error.h"
#include "record/record.h"
#include "record/xxh3.h"
#include "tar/path.h"
#include "tar/scanner.h"

using namespace rolayer;

namespace {

struct Sink : ByteSink {
  std::string data;
  void write(const uint8_t* p, size_t n) override { data.append(reinterpret_cast<const char*>(p), n); }
};

struct Tee : tar::ScanHandler {
  record::Writer& w;
  tar::SafetyChecker safety;
  record::Xxh3 xxh;
  record::Item file;
  explicit Tee(record::Writer& wr) : w(wr) {}
  void on_raw(const uint8_t* d, size_t n) override { w.add_raw(d, n); }
  void on_entry(const tar::Entry& e) override {
    std::string path = safety.check(e);
    if (!e.has_payload()) return;
    if (path.empty()) throw Error(Code::Archive, "file at the root");
    file = record::Item();
    file.type = record::Item::Type::File;
    file.path = path;
    file.size = e.payload_size;
    if (e.kind == tar::EntryKind::Sparse) file.fragments = e.sparse;
    xxh.reset();
  }
  void on_payload(const uint8_t* d, size_t n) override { xxh.update(d, n); }
  void on_entry_end() override {
    file.xxh3 = xxh.digest();
    w.add_file(file);
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OUTDIR TAR...\n", argv[0]);
    return 2;
  }
  int written = 0;
  for (int i = 2; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Sink sink;
    try {
      record::Writer w(sink);
      Tee tee(w);
      tar::Scanner s(tee);
      s.feed(data.data(), data.size());
      s.finish();
      w.finish();
    } catch (const Error& e) {
      std::fprintf(stderr, "skip %s: %s\n", argv[i], e.what());
      continue;
    }
    std::string out = std::string(argv[1]) + "/" + std::filesystem::path(argv[i]).filename().string() + ".rec";
    std::ofstream(out, std::ios::binary) << sink.data;
    // The body: the zstd frame after the 8-byte header, decompressed.
    ZSTD_DCtx* d = ZSTD_createDCtx();
    std::string body;
    std::vector<char> buf(ZSTD_DStreamOutSize());
    ZSTD_inBuffer zin{sink.data.data() + 8, sink.data.size() - 8, 0};
    while (zin.pos < zin.size) {
      ZSTD_outBuffer o{buf.data(), buf.size(), 0};
      size_t r = ZSTD_decompressStream(d, &o, &zin);
      if (ZSTD_isError(r)) break;
      body.append(buf.data(), o.pos);
      if (r == 0) break;
    }
    ZSTD_freeDCtx(d);
    std::ofstream(std::string(argv[1]) + "/" + std::filesystem::path(argv[i]).filename().string() + ".body",
                  std::ios::binary) << body;
    ++written;
  }
  std::fprintf(stderr, "%d records written\n", written);
  return 0;
}
