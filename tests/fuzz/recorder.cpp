// SPDX-License-Identifier: Apache-2.0
// Fuzz target "recorder": the stream recorder of every register, on arbitrary bytes.
//
// The input is scanned twice, as one chunk and in a pseudo-random chunking derived from the
// input, each time through what the store's register tee does (lib/store/store.cpp): the tar
// scanner, the per-layer safety checks, and the fidelity record writer. Checked:
//  - the scanner's callback protocol (payload only inside a payload entry, exactly
//    payload_size bytes of it, then on_entry_end; entry fields consistent);
//  - the concat invariant: raw + payload bytes in call order are the input (a prefix of it
//    when the stream is refused);
//  - the chunking does not matter: same entries, same outcome, same error code and message;
//  - a refusal is a rolayer::Error with Code::Archive or Code::Unsafe, nothing else;
//  - on success the record reads back (record::Reader) and, with the captured payloads,
//    rebuilds the input byte for byte; its summary matches; a sparse entry reads back as
//    sparse (with fragments), a regular one as not sparse.
//
// The tee here includes the two fixes proposed for lib/store/store.cpp (docs/security.md,
// Findings): a cleaned name over 64 KiB is Code::Archive, and a sparse entry without fragments
// is recorded with one empty fragment at its end.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/io.h"
#include "fuzz_util.h"
#include "record/format.h"
#include "record/record.h"
#include "record/xxh3.h"
#include "tar/path.h"
#include "tar/scanner.h"

using namespace rolayer;
using rolayer::fuzz::Rng;

namespace {

struct StringSink : ByteSink {
  std::string data;
  void write(const uint8_t* p, size_t n) override { data.append(reinterpret_cast<const char*>(p), n); }
};

struct StringSource : ByteSource {
  const std::string& data;
  size_t pos = 0;
  explicit StringSource(const std::string& d) : data(d) {}
  size_t read(uint8_t* buf, size_t cap) override {
    size_t n = std::min(cap, data.size() - pos);
    std::memcpy(buf, data.data() + pos, n);
    pos += n;
    return n;
  }
};

std::string describe(const tar::Entry& e) {
  std::string s;
  auto add = [&](const std::string& v) {
    s += std::to_string(v.size());
    s += ':';
    s += v;
  };
  add(e.name);
  add(e.linkname);
  add(std::to_string(static_cast<int>(e.kind)) + "/" + std::to_string(static_cast<int>(e.typeflag)));
  add(std::to_string(e.mode) + "/" + std::to_string(e.uid) + "/" + std::to_string(e.gid));
  add(e.uname);
  add(e.gname);
  add(std::to_string(e.mtime_sec) + "." + std::to_string(e.mtime_nsec));
  add(std::to_string(e.devmajor) + "," + std::to_string(e.devminor));
  for (const auto& [k, v] : e.xattrs) {
    add(k);
    add(v);
  }
  add(std::to_string(e.data_size) + "/" + std::to_string(e.payload_size) + "/" + std::to_string(e.real_size));
  for (const auto& f : e.sparse) add(std::to_string(f.offset) + "+" + std::to_string(f.length));
  return s;
}

// What the register tee does, plus protocol checks and captures.
class Tee : public tar::ScanHandler {
 public:
  explicit Tee(record::Writer& w) : writer_(w) {}

  std::string concat;                 // raw and payload bytes in call order
  std::vector<std::string> entries;   // describe() of each entry
  struct File {
    std::string path;
    std::string payload;
    std::vector<tar::SparseFragment> frags;
    bool sparse = false;
  };
  std::vector<File> files;

  void on_raw(const uint8_t* d, size_t n) override {
    FUZZ_CHECK(!in_payload_ || left_ == 0, "raw bytes inside a payload");
    concat.append(reinterpret_cast<const char*>(d), n);
    writer_.add_raw(d, n);
  }

  void on_entry(const tar::Entry& e) override {
    FUZZ_CHECK(!in_payload_, "on_entry before the previous entry's on_entry_end");
    FUZZ_CHECK(e.name.find('\0') == std::string::npos, "NUL byte in an entry name");
    FUZZ_CHECK(e.linkname.find('\0') == std::string::npos, "NUL byte in a link name");
    FUZZ_CHECK(e.mode <= 07777, "mode beyond 07777");
    entries.push_back(describe(e));
    if (e.kind == tar::EntryKind::Regular) {
      FUZZ_CHECK(e.payload_size == e.data_size && e.real_size == e.payload_size, "regular sizes disagree");
      FUZZ_CHECK(e.sparse.empty(), "regular entry with sparse fragments");
    } else if (e.kind == tar::EntryKind::Sparse) {
      uint64_t sum = 0, end = 0;
      for (const auto& f : e.sparse) {
        FUZZ_CHECK(f.offset >= end, "sparse fragments overlap");
        FUZZ_CHECK(f.length <= e.real_size && f.offset <= e.real_size - f.length, "fragment beyond real size");
        end = f.offset + f.length;
        sum += f.length;
      }
      FUZZ_CHECK(sum == e.payload_size, "sparse fragments do not add up to payload_size");
      FUZZ_CHECK(e.payload_size <= e.data_size, "sparse payload larger than its data area");
    } else {
      FUZZ_CHECK(e.payload_size == 0 && e.real_size == 0, "non-file entry with payload");
    }
    // As the store's tee: Code::Unsafe for an escape, refused root file.
    std::string path = safety_.check(e);
    if (path.size() > record::format::kMaxPath)
      throw Error(Code::Archive, "tar entry name is longer than 65536 bytes");
    if (!e.has_payload()) return;
    if (path.empty()) throw Error(Code::Archive, "a regular-file entry names the layer's root directory");
    in_payload_ = true;
    left_ = e.payload_size;
    const bool sparse = e.kind == tar::EntryKind::Sparse;
    files.push_back(File{path, std::string(), e.sparse, sparse});
    if (sparse && files.back().frags.empty()) files.back().frags.push_back({e.real_size, 0});
    xxh_.reset();
  }

  void on_payload(const uint8_t* d, size_t n) override {
    FUZZ_CHECK(in_payload_, "payload outside a payload entry");
    FUZZ_CHECK(n <= left_, "more payload than payload_size");
    left_ -= n;
    concat.append(reinterpret_cast<const char*>(d), n);
    files.back().payload.append(reinterpret_cast<const char*>(d), n);
    xxh_.update(d, n);
  }

  void on_entry_end() override {
    FUZZ_CHECK(in_payload_, "on_entry_end without a payload entry");
    FUZZ_CHECK(left_ == 0, "on_entry_end before payload_size bytes");
    in_payload_ = false;
    record::Item it;
    it.type = record::Item::Type::File;
    it.path = files.back().path;
    it.size = files.back().payload.size();
    it.xxh3 = xxh_.digest();
    it.fragments = files.back().frags;
    writer_.add_file(it);
  }

  bool in_payload() const { return in_payload_; }

 private:
  record::Writer& writer_;
  tar::SafetyChecker safety_;
  record::Xxh3 xxh_;
  bool in_payload_ = false;
  uint64_t left_ = 0;
};

struct Outcome {
  bool ok = false;
  Code code = Code::Ok;
  std::string message;
  std::vector<std::string> entries;
};

Outcome run(const uint8_t* data, size_t size, Rng* rng) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  StringSink rec;
  record::Writer writer(rec);
  Tee tee(writer);
  Outcome out;
  try {
    tar::Scanner scanner(tee);
    size_t pos = 0;
    while (pos < size) {
      size_t n = rng ? std::min(rng->chunk(), size - pos) : size - pos;
      scanner.feed(data + pos, n);
      pos += n;
      FUZZ_CHECK(scanner.offset() == pos, "Scanner::offset() is not the bytes fed");
    }
    scanner.finish();
    FUZZ_CHECK(!tee.in_payload(), "finish() succeeded inside a payload");
    out.ok = true;
  } catch (const Error& e) {
    out.code = e.code();
    out.message = e.what();
    FUZZ_CHECK(e.code() == Code::Archive || e.code() == Code::Unsafe,
               "refusal with an unexpected code " + std::to_string(static_cast<int>(e.code())) + ": " + e.what());
    FUZZ_CHECK(!out.message.empty(), "empty error message");
  }
  out.entries = tee.entries;

  if (!out.ok) {
    FUZZ_CHECK(input.compare(0, tee.concat.size(), tee.concat) == 0 && tee.concat.size() <= size,
               "refused stream: raw + payload bytes are not a prefix of the input");
    return out;
  }
  FUZZ_CHECK(tee.concat == input, "concat invariant: raw + payload bytes differ from the input");

  // The record reads back and rebuilds the stream.
  writer.finish();
  const record::Summary& ws = writer.summary();
  FUZZ_CHECK(ws.stream_size == size, "record summary: stream size");
  FUZZ_CHECK(ws.files == tee.files.size(), "record summary: file count");
  StringSource src(rec.data);
  record::Reader reader(src);
  record::Item item;
  std::string rebuilt;
  size_t fi = 0;
  try {
    while (reader.next(item)) {
      if (item.type == record::Item::Type::Raw) {
        FUZZ_CHECK(!item.raw.empty() && item.raw.size() <= (1u << 20), "raw piece size");
        rebuilt += item.raw;
        continue;
      }
      FUZZ_CHECK(fi < tee.files.size(), "record has more files than the stream");
      const auto& f = tee.files[fi++];
      FUZZ_CHECK(item.path == f.path, "record file path differs");
      FUZZ_CHECK(item.size == f.payload.size(), "record file size differs");
      FUZZ_CHECK(item.xxh3 == record::Xxh3::hash(f.payload.data(), f.payload.size()), "record xxh3 differs");
      FUZZ_CHECK(item.fragments.size() == f.frags.size(), "record fragments differ");
      FUZZ_CHECK(item.fragments.empty() == !f.sparse, "a sparse entry does not read back as sparse (or the reverse)");
      for (size_t i = 0; i < f.frags.size(); ++i)
        FUZZ_CHECK(item.fragments[i].offset == f.frags[i].offset && item.fragments[i].length == f.frags[i].length,
                   "record fragment differs");
      rebuilt += f.payload;
    }
  } catch (const Error& e) {
    fuzz::fail(__FILE__, __LINE__, std::string("a record just written does not read back: ") + e.what());
  }
  FUZZ_CHECK(fi == tee.files.size(), "record has fewer files than the stream");
  FUZZ_CHECK(rebuilt == input, "record + payloads do not rebuild the input");
  FUZZ_CHECK(reader.summary().stream_size == size, "read-back summary: stream size");
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Outcome whole = run(data, size, nullptr);
  Rng rng(fuzz::seed_of(data, size));
  Outcome split = run(data, size, &rng);
  FUZZ_CHECK(whole.ok == split.ok, "the chunking changes whether the stream is accepted: " + whole.message + " | " +
                                       split.message);
  FUZZ_CHECK(whole.code == split.code, "the chunking changes the error code");
  FUZZ_CHECK(whole.message == split.message,
             "the chunking changes the error message: \"" + whole.message + "\" vs \"" + split.message + "\"");
  FUZZ_CHECK(whole.entries == split.entries, "the chunking changes the entries reported");
  return 0;
}
