// SPDX-License-Identifier: Apache-2.0
// Google Benchmark micro-benchmarks of librolayer's hot paths, on the internal C++ core:
//   hashing    rolayer::Hasher (SHA-256 over OpenSSL EVP, the DiffID of every register and export)
//   recording  rolayer::tar::Scanner + rolayer::record::Writer (what register runs besides the driver)
//   assembling rolayer::record::Reader (what export runs besides the driver's payload reads)
// Inputs are the deterministic workloads of bench/gen/workload.h, built in memory.
//
//   rolayer-bench-micro [--benchmark_filter=...] [--benchmark_format=json]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "digest/digest.h"
#include "digest/pipelined.h"
#include "gen/workload.h"
#include "record/record.h"
#include "record/xxh3.h"
#include "tar/path.h"
#include "tar/scanner.h"

namespace {

using rolayer_bench::Builder;
using rolayer_bench::Content;
using rolayer_bench::Entry;
using rolayer_bench::TarWriter;

class StringSink : public rolayer::ByteSink {
 public:
  void write(const uint8_t* data, size_t len) override { out.append(reinterpret_cast<const char*>(data), len); }
  std::string out;
};

class StringSource : public rolayer::ByteSource {
 public:
  explicit StringSource(const std::string& s) : s_(s) {}
  size_t read(uint8_t* buf, size_t cap) override {
    size_t n = std::min(cap, s_.size() - pos_);
    std::memcpy(buf, s_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  const std::string& s_;
  size_t pos_ = 0;
};

std::string make_tar(const std::vector<Entry>& entries) {
  std::string out;
  TarWriter w([&](const uint8_t* p, size_t n) { out.append(reinterpret_cast<const char*>(p), n); });
  for (const auto& e : entries) w.add(e);
  w.finish();
  return out;
}

// "small": the ~6 MB Alpine-like profile (headers and payloads mixed).
const std::string& small_tar() {
  static const std::string t = make_tar(Builder(1).build("small"));
  return t;
}

// "headers": 20,000 files of 0-2 KiB in a node_modules-like tree (header-bound, like the
// many-small-files part of the large profile).
const std::string& headers_tar() {
  static const std::string t = [] {
    rolayer_bench::Rng r(7);
    std::vector<Entry> es;
    for (int i = 0; i < 20000; i++) {
      Entry e;
      e.path = "app/node_modules/pkg" + std::to_string(i / 25) + "/lib/module-" + std::to_string(i) + ".js";
      e.size = r.below(2048);
      e.content = Content::Text;
      e.seed = static_cast<uint64_t>(i);
      e.mtime = 1700000000;
      es.push_back(std::move(e));
    }
    return make_tar(es);
  }();
  return t;
}

// "blob": one 64 MiB file (payload-bound).
const std::string& blob_tar() {
  static const std::string t = [] {
    Entry e;
    e.path = "app/models/blob.bin";
    e.size = 64ull << 20;
    e.seed = 3;
    e.mtime = 1700000000;
    return make_tar({e});
  }();
  return t;
}

// 3: the tar named by $ROLAYER_MICRO_TAR (e.g. a generated large layer), when set.
const std::string& file_tar() {
  static const std::string t = [] {
    std::string out;
    const char* path = std::getenv("ROLAYER_MICRO_TAR");
    if (!path) return out;
    std::FILE* f = std::fopen(path, "rb");
    if (!f) return out;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    std::fclose(f);
    return out;
  }();
  return t;
}

const std::string& tar_by_index(int64_t i) {
  switch (i) {
    case 0: return small_tar();
    case 1: return headers_tar();
    case 2: return blob_tar();
    default: return file_tar();
  }
}
const char* tar_name(int64_t i) { return i == 0 ? "small" : i == 1 ? "headers" : i == 2 ? "blob" : "$ROLAYER_MICRO_TAR"; }

// The inputs to run: 0-2, and 3 when $ROLAYER_MICRO_TAR is set.
void inputs(benchmark::internal::Benchmark* b) {
  for (int i = 0; i < 3; i++) b->Arg(i);
  if (std::getenv("ROLAYER_MICRO_TAR")) b->Arg(3);
}

// ---- hashing ------------------------------------------------------------------------------

// SHA-256 of 64 MiB in chunks of state.range(0) bytes, through hasher type H.
template <typename H>
void hash_chunks(benchmark::State& state) {
  const size_t chunk = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> buf(64 << 20);
  rolayer_bench::ContentGen g;
  for (size_t off = 0; off < buf.size(); off += g.kBlock) g.block(1, Content::Binary, off / g.kBlock, buf.data() + off, g.kBlock);
  for (auto _ : state) {
    H h;
    for (size_t off = 0; off < buf.size(); off += chunk) h.update(buf.data() + off, std::min(chunk, buf.size() - off));
    benchmark::DoNotOptimize(h.finish());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(buf.size()));
}

void BM_Hasher(benchmark::State& state) { hash_chunks<rolayer::Hasher>(state); }
BENCHMARK(BM_Hasher)->Arg(512)->Arg(8 << 10)->Arg(64 << 10)->Arg(1 << 20)->Unit(benchmark::kMillisecond);

// The pipelined hasher as export and register use it: the caller's thread only copies into
// the ring; SHA-256 runs on the worker. Judge by wall time (real), not CPU time of this thread.
void BM_PipelinedHasher(benchmark::State& state) { hash_chunks<rolayer::PipelinedHasher>(state); }
BENCHMARK(BM_PipelinedHasher)->Arg(64 << 10)->Arg(1 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Xxh3(benchmark::State& state) {
  std::vector<uint8_t> buf(64 << 20, 0x5a);
  for (auto _ : state) {
    rolayer::record::Xxh3 x;
    for (size_t off = 0; off < buf.size(); off += 1 << 20) x.update(buf.data() + off, 1 << 20);
    benchmark::DoNotOptimize(x.digest());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(buf.size()));
}
BENCHMARK(BM_Xxh3)->Unit(benchmark::kMillisecond);

// ---- recording ----------------------------------------------------------------------------

// What register's tee does besides SHA-256: scan, check path safety, XXH3 each payload, and
// (when rec is set) write the fidelity record.
class RecordingHandler : public rolayer::tar::ScanHandler {
 public:
  explicit RecordingHandler(rolayer::record::Writer* rec) : rec_(rec) {}
  void on_raw(const uint8_t* data, size_t len) override {
    if (rec_) rec_->add_raw(data, len);
  }
  void on_entry(const rolayer::tar::Entry& e) override {
    std::string path = safety_.check(e);
    if (!e.has_payload() || !rec_) return;
    file_.type = rolayer::record::Item::Type::File;
    file_.path = std::move(path);
    file_.size = e.payload_size;
    file_.fragments.clear();
    if (e.kind == rolayer::tar::EntryKind::Sparse) file_.fragments = e.sparse;
    xxh_.reset();
  }
  void on_payload(const uint8_t* data, size_t len) override {
    if (rec_) xxh_.update(data, len);
  }
  void on_entry_end() override {
    if (!rec_ || file_.type != rolayer::record::Item::Type::File) return;
    file_.xxh3 = xxh_.digest();
    rec_->add_file(file_);
    file_.type = rolayer::record::Item::Type::Raw;
  }

 private:
  rolayer::record::Writer* rec_;
  rolayer::tar::SafetyChecker safety_;
  rolayer::record::Xxh3 xxh_;
  rolayer::record::Item file_;
};

void feed_all(rolayer::tar::Scanner& sc, const std::string& tar, size_t chunk) {
  const auto* p = reinterpret_cast<const uint8_t*>(tar.data());
  for (size_t off = 0; off < tar.size(); off += chunk) sc.feed(p + off, std::min(chunk, tar.size() - off));
  sc.finish();
}

// Scanner alone (no-op handler): the parse cost.
void BM_Scan(benchmark::State& state) {
  const std::string& tar = tar_by_index(state.range(0));
  state.SetLabel(tar_name(state.range(0)));
  struct Nop : rolayer::tar::ScanHandler {
    void on_raw(const uint8_t*, size_t) override {}
    void on_entry(const rolayer::tar::Entry&) override {}
    void on_payload(const uint8_t*, size_t) override {}
    void on_entry_end() override {}
  } nop;
  for (auto _ : state) {
    rolayer::tar::Scanner sc(nop);
    feed_all(sc, tar, 1 << 20);
    benchmark::DoNotOptimize(sc.entries());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(tar.size()));
}
BENCHMARK(BM_Scan)->Apply(inputs)->Unit(benchmark::kMillisecond);

// Scanner + path safety + XXH3 + record::Writer (zstd): the whole recording side of register.
void BM_Record(benchmark::State& state) {
  const std::string& tar = tar_by_index(state.range(0));
  size_t record_size = 0;
  for (auto _ : state) {
    StringSink sink;
    sink.out.reserve(1 << 20);
    rolayer::record::Writer w(sink);
    RecordingHandler h(&w);
    rolayer::tar::Scanner sc(h);
    feed_all(sc, tar, 1 << 20);
    w.finish();
    record_size = sink.out.size();
    benchmark::DoNotOptimize(record_size);
  }
  state.SetLabel(std::string(tar_name(state.range(0))) + " record=" + std::to_string(record_size) + "B");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(tar.size()));
}
BENCHMARK(BM_Record)->Apply(inputs)->Unit(benchmark::kMillisecond);

// ---- assembling ---------------------------------------------------------------------------

std::string record_of(const std::string& tar) {
  StringSink sink;
  rolayer::record::Writer w(sink);
  RecordingHandler h(&w);
  rolayer::tar::Scanner sc(h);
  feed_all(sc, tar, 1 << 20);
  w.finish();
  return sink.out;
}

// record::Reader over the whole record: decompress and decode every item (raw bytes copied
// out as export does; payloads are the driver's and not read here). Bytes are the stream's.
void BM_Assemble(benchmark::State& state) {
  const std::string& tar = tar_by_index(state.range(0));
  const std::string rec = record_of(tar);
  std::vector<uint8_t> out(1 << 20);
  uint64_t items = 0;
  for (auto _ : state) {
    StringSource src(rec);
    rolayer::record::Reader r(src);
    rolayer::record::Item it;
    items = 0;
    while (r.next(it)) {
      if (it.type == rolayer::record::Item::Type::Raw)
        std::memcpy(out.data(), it.raw.data(), std::min(it.raw.size(), out.size()));
      items++;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(std::string(tar_name(state.range(0))) + " items=" + std::to_string(items));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(items));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(tar.size()));
}
BENCHMARK(BM_Assemble)->Apply(inputs)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
