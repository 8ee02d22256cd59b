// SPDX-License-Identifier: Apache-2.0
// Fuzz target "record_reader": the stored fidelity-record decoder (record::Reader) on
// arbitrary bytes, read through a source that returns pseudo-random short reads.
//
// An input that starts with the record's magic is read as it is (the header, framing and
// zstd layers). Any other input is taken as a record *body* (the items, uncompressed) and
// wrapped in a valid header and a checksummed zstd frame first, so that mutations reach the
// item decoder instead of dying at the frame checksum.
//
// Checked: every refusal is rolayer::Error with Code::Corrupt (Code::NoMem only if the
// machine is out of memory), never a crash, a hang or unbounded memory; once next() has thrown
// it throws the same error again; every item it returns obeys docs/record-format.md (Raw
// pieces of 1 byte to 1 MiB; File paths clean and at most 64 KiB; at most 2^20 fragments,
// ordered, not overlapping, adding up to the size); and when the record is accepted, its
// summary is what the items add up to. A record that decodes to more than 256 MiB of items is
// not read to the end (the reader streams; reading further only costs time).
#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/io.h"
#include "fuzz_util.h"
#include "record/format.h"
#include "record/record.h"

#include <zstd.h>

using namespace rolayer;

namespace {

std::string wrap_body(const uint8_t* body, size_t n) {
  std::string out(reinterpret_cast<const char*>(record::format::kMagic), sizeof record::format::kMagic);
  out.push_back(static_cast<char>(record::format::kVersion));
  out.push_back('\0');
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
  std::string z(ZSTD_compressBound(n), '\0');
  size_t r = ZSTD_compress2(c, z.data(), z.size(), body, n);
  ZSTD_freeCCtx(c);
  FUZZ_CHECK(!ZSTD_isError(r), "zstd compression of the body failed");
  z.resize(r);
  return out + z;
}

struct ChoppySource : ByteSource {
  const uint8_t* data;
  size_t size, pos = 0;
  fuzz::Rng rng;
  ChoppySource(const uint8_t* d, size_t n) : data(d), size(n), rng(fuzz::seed_of(d, n)) {}
  size_t read(uint8_t* buf, size_t cap) override {
    size_t n = std::min<size_t>({cap, size - pos, rng.chunk()});
    std::memcpy(buf, data + pos, n);
    pos += n;
    return n;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string wrapped;
  if (size < 3 || std::memcmp(data, record::format::kMagic, 3) != 0) {
    wrapped = wrap_body(data, size);
    data = reinterpret_cast<const uint8_t*>(wrapped.data());
    size = wrapped.size();
  }
  ChoppySource src(data, size);
  record::Reader reader(src);
  record::Item item;
  record::Summary seen;
  uint64_t budget = uint64_t{256} << 20;
  try {
    while (reader.next(item)) {
      if (item.type == record::Item::Type::Raw) {
        FUZZ_CHECK(!item.raw.empty(), "empty raw piece");
        FUZZ_CHECK(item.raw.size() <= record::format::kMaxRawPiece, "raw piece larger than 1 MiB");
        FUZZ_CHECK(item.path.empty() && item.fragments.empty(), "raw item with file fields");
        seen.raw_bytes += item.raw.size();
        budget -= std::min<uint64_t>(budget, item.raw.size());
      } else {
        FUZZ_CHECK(item.raw.empty(), "file item with raw bytes");
        FUZZ_CHECK(record::format::path_problem(item.path) == nullptr, "file item with an unclean path");
        FUZZ_CHECK(item.fragments.size() <= record::format::kMaxFragments, "too many fragments");
        uint64_t end = 0, sum = 0;
        for (const auto& f : item.fragments) {
          FUZZ_CHECK(f.offset >= end, "fragments overlap or are out of order");
          FUZZ_CHECK(f.length <= UINT64_MAX - f.offset, "fragment beyond 2^64");
          end = f.offset + f.length;
          sum += f.length;
        }
        FUZZ_CHECK(item.fragments.empty() || sum == item.size, "fragments do not add up to the size");
        seen.payload_bytes += item.size;
        seen.files++;
        budget -= std::min<uint64_t>(budget, 64 + item.path.size() + 16 * item.fragments.size());
      }
      if (budget == 0) return 0;
    }
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == Code::Corrupt || e.code() == Code::NoMem,
               std::string("refusal with an unexpected code: ") + e.what());
    FUZZ_CHECK(std::string(e.what()).find("fidelity record") != std::string::npos, "message does not say what");
    // The same error again.
    try {
      reader.next(item);
      fuzz::fail(__FILE__, __LINE__, "next() succeeded after it had thrown");
    } catch (const Error& again) {
      FUZZ_CHECK(again.code() == e.code() && std::string(again.what()) == e.what(), "a different error the second time");
    }
    return 0;
  }
  const record::Summary& s = reader.summary();
  FUZZ_CHECK(s.raw_bytes == seen.raw_bytes, "summary raw bytes");
  FUZZ_CHECK(s.payload_bytes == seen.payload_bytes, "summary payload bytes");
  FUZZ_CHECK(s.files == seen.files, "summary files");
  FUZZ_CHECK(s.stream_size == seen.raw_bytes + seen.payload_bytes, "summary stream size");
  // Done means done.
  FUZZ_CHECK(!reader.next(item), "next() returned an item after the end");
  return 0;
}
