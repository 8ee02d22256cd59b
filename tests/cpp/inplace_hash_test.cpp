// SPDX-License-Identifier: Apache-2.0
// Export hashes the stream in place (issue 18): the Assembler reads payloads straight into the
// caller's buffer in pieces of 128 KiB, checks each piece's XXH3 and hashes it into the
// output's SHA-256 right after its read; other bytes (headers, small payloads, what comes out
// of its own buffer) are hashed from the caller's buffer before read() returns. Where the
// caller's buffer sits 1 to 63 bytes past the file offset modulo a page (glibc's malloc of a
// large buffer), payloads go through a page-aligned buffer of the Assembler's own.
//
// - The stream is byte-exact and verifies against its DiffID for every caller buffer size and
//   alignment (a byte hashed twice, or not at all, would fail the DiffID check at EOF).
// - A damaged payload fails with Code::Corrupt naming it, on every path (direct, through the
//   aligned buffer, whole small payloads, 1 MiB blocks read in pieces), and no byte of the
//   damaged block goes out.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "store/store.h"
#include "test_util.h"

using namespace rolayer;
using namespace rolayer::test;

namespace {

constexpr size_t kKiB = 1024, kMiB = 1 << 20, kChunk = 128 * kKiB;

std::unique_ptr<Store> open_dir_store(const std::string& root) {
  StoreOptions o;
  o.driver_name = "dir";
  return Store::open(root, std::move(o));
}

// A buffer of cap bytes that starts `skew` bytes into a page.
struct SkewedBuffer {
  SkewedBuffer(size_t cap, size_t skew) : base(static_cast<uint8_t*>(std::aligned_alloc(4096, (cap + 8192 + 4095) / 4096 * 4096))) {
    if (!base) throw std::bad_alloc();
    p = base + skew;
  }
  ~SkewedBuffer() { std::free(base); }
  uint8_t* base;
  uint8_t* p;
};

struct Out {
  bool ok = false;
  std::string data;
  Code code = Code::Ok;
  std::string message, path;
};

Out export_with(const LayerRef& ref, size_t cap, size_t skew) {
  Out o;
  SkewedBuffer buf(cap, skew);
  try {
    auto s = Store::tar_stream(ref);
    for (size_t n; (n = s->read(buf.p, cap)) > 0;) o.data.append(reinterpret_cast<char*>(buf.p), n);
    o.ok = true;
  } catch (const Error& e) {
    o.code = e.code();
    o.message = e.what();
    o.path = e.path();
  }
  return o;
}

// Payload sizes around every boundary of the read path: the tar block, a page, the hashing
// piece, the 1 MiB limit of whole payloads and the 1 MiB blocks of larger ones.
const std::vector<size_t>& sizes() {
  static const std::vector<size_t> v = {0,          1,          511,         512,         4095,       4096,
                                        4097,       kChunk - 1, kChunk,      kChunk + 1,  kMiB - 1,   kMiB,
                                        kMiB + 1,   2 * kMiB,   2 * kMiB + kChunk + 3,    3 * kMiB + 100};
  return v;
}

std::vector<TarItem> items() {
  std::vector<TarItem> it = {{TarItem::Dir, "d", "", 0755}};
  uint64_t seed = 10;
  for (size_t n : sizes()) it.push_back({TarItem::File, "d/f" + std::to_string(n), pseudo_random(n, seed++), 0644});
  return it;
}

class InPlaceHash : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = open_dir_store(dir_.path());
    tar_ = make_tar(items());
    MemSource src(tar_);
    ref_ = store_->register_layer("", src);
  }
  std::string payload_file(size_t size) const {
    return dir_.path() + "/dir/" + ref_->node().cache_id + "/diff/d/f" + std::to_string(size);
  }
  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::string tar_;
  std::unique_ptr<LayerRef> ref_;
};

TEST_F(InPlaceHash, EveryBufferSizeAndAlignmentGivesTheVerifiedStream) {
  for (size_t skew : {size_t{0}, size_t{1}, size_t{16}, size_t{63}, size_t{64}, size_t{2048}, size_t{4080}}) {
    for (size_t cap : {size_t{4096}, kChunk - 1, kChunk, kChunk + 1, kMiB, kMiB + 1, size_t{1000003}, 4 * kMiB,
                       16 * kMiB}) {
      if (cap == 4096 && skew != 16) continue;  // (small reads are slow: one alignment is enough)
      Out o = export_with(*ref_, cap, skew);
      ASSERT_TRUE(o.ok) << "skew " << skew << " cap " << cap << ": " << o.message;
      ASSERT_EQ(o.data.size(), tar_.size()) << "skew " << skew << " cap " << cap;
      ASSERT_TRUE(o.data == tar_) << "skew " << skew << " cap " << cap;
    }
  }
}

TEST_F(InPlaceHash, DamageOnEveryReadPathFailsBeforeTheDamagedBytesGoOut) {
  struct Case {
    size_t file, at;
  };
  const std::vector<Case> cases = {
      {4096, 0},           {4096, 4095},              // a whole small payload
      {kChunk + 1, kChunk},                           // a whole payload of more than one piece
      {kMiB, kMiB - 1},                               // the largest whole payload
      {kMiB + 1, kMiB},                               // the last (1-byte) block of a blocked payload
      {2 * kMiB + kChunk + 3, kChunk - 1},            // the end of a block's first piece
      {2 * kMiB + kChunk + 3, kChunk},                // the start of its second piece
      {2 * kMiB + kChunk + 3, 2 * kMiB + kChunk + 2}, // the last byte of the last block
      {3 * kMiB + 100, 2 * kMiB + 5 * kChunk + 7},    // inside a middle piece of a later block
  };
  for (const Case& c : cases) {
    const std::string content = pseudo_random(c.file, 10 + (std::find(sizes().begin(), sizes().end(), c.file) - sizes().begin()));
    const size_t start = tar_.find(content.substr(0, std::min<size_t>(content.size(), 256)));
    ASSERT_NE(start, std::string::npos);
    const bool blocked = c.file > kMiB;
    // The first byte of what is checked as one unit: the whole payload, or its 1 MiB block.
    const size_t unit_start = start + (blocked ? (c.at / kMiB) * kMiB : 0);
    int fd = ::open(payload_file(c.file).c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    char b;
    ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(c.at)), 1);
    const char flipped = static_cast<char>(b ^ 0x01);
    ASSERT_EQ(::pwrite(fd, &flipped, 1, static_cast<off_t>(c.at)), 1);
    for (size_t skew : {size_t{0}, size_t{16}, size_t{2048}}) {
      for (size_t cap : {kChunk, kMiB, 16 * kMiB}) {
        Out o = export_with(*ref_, cap, skew);
        EXPECT_FALSE(o.ok) << "file " << c.file << " at " << c.at << " skew " << skew << " cap " << cap;
        EXPECT_EQ(o.code, Code::Corrupt) << o.message;
        EXPECT_EQ(o.path, "d/f" + std::to_string(c.file)) << o.message;
        EXPECT_LE(o.data.size(), unit_start) << "file " << c.file << " at " << c.at << " skew " << skew << " cap " << cap;
        EXPECT_TRUE(o.data == tar_.substr(0, o.data.size()));
      }
    }
    ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(c.at)), 1);
    ::close(fd);
    Out o = export_with(*ref_, kMiB, 16);
    ASSERT_TRUE(o.ok) << o.message;
    ASSERT_TRUE(o.data == tar_);
  }
}

TEST_F(InPlaceHash, ShorterOrLongerPayloadFailsOnEveryAlignment) {
  const std::string f = payload_file(kChunk + 1);
  for (off_t len : {off_t{kChunk}, off_t{kChunk + 2}}) {
    ASSERT_EQ(::truncate(f.c_str(), len), 0);
    for (size_t skew : {size_t{0}, size_t{16}}) {
      Out o = export_with(*ref_, kMiB, skew);
      EXPECT_FALSE(o.ok);
      EXPECT_EQ(o.code, Code::Corrupt) << o.message;
      EXPECT_NE(o.message.find(len < off_t{kChunk + 1} ? "shorter" : "longer"), std::string::npos) << o.message;
    }
  }
}

}  // namespace
