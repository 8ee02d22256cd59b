// SPDX-License-Identifier: Apache-2.0
// Verifications in parallel (rolayer verify -j N, issue 18): with at least as many verify
// streams open as CPUs, each hashes on its own thread (no hashing worker) and a verification
// takes short reads rather than copying large payload blocks through a buffer of its own
// (lib/store/stream.cpp). The stream is still every byte of the layer, and damage is found
// and reported exactly as one stream on its own reports it. (Named *Concurren*: .ci/run runs
// these under ThreadSanitizer too.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "core/cpus.h"
#include "core/error.h"
#include "store/store.h"
#include "test_util.h"

using namespace rolayer;
using namespace rolayer::test;

namespace {

Read read_to_end(ByteSource& s, size_t cap) {
  Read r;
  // As rolayer_layer_verify's: page-aligned (and, for the odd sizes, not).
  const size_t size = (cap + 4096 + 4095) / 4096 * 4096;  // (aligned_alloc: a multiple of the alignment)
  std::unique_ptr<uint8_t, decltype(&std::free)> buf(static_cast<uint8_t*>(std::aligned_alloc(4096, size)), &std::free);
  if (!buf) throw std::bad_alloc();
  uint8_t* b = buf.get() + (cap % 2 ? 16 : 0);
  try {
    for (size_t n; (n = s.read(b, cap)) > 0;) {
      if (n > cap) throw Error(Code::Io, "read more than asked for");
      r.data.append(reinterpret_cast<char*>(b), n);
    }
    r.ok = true;
  } catch (const Error& e) {
    r.code = e.code();
    r.message = e.what();
    r.path = e.path();
  }
  return r;
}

// n verify streams of ref, all open before any is read (so each one hashes inline), read to
// their ends on n threads at once.
std::vector<Read> verify_at_once(const LayerRef& ref, int n, size_t cap) {
  std::vector<std::unique_ptr<ByteSource>> streams;
  for (int i = 0; i < n; ++i) streams.push_back(Store::verify_stream(ref));
  std::vector<Read> out(n);
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) ts.emplace_back([&, i] { out[i] = read_to_end(*streams[i], cap); });
  for (auto& t : ts) t.join();
  return out;
}

class VerifyConcurrency : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions o;
    o.driver_name = "dir";
    store_ = Store::open(d_.path(), std::move(o));
    // Past the hasher's inline limit (4 MiB), so one stream alone hashes on a worker: a big
    // payload of 1 MiB blocks, payloads near 1 MiB that often do not fit in what is left of
    // a read, and small ones.
    std::vector<TarItem> items = {{TarItem::Dir, "data", "", 0755}};
    items.push_back({TarItem::File, "data/a.txt", "first\n", 0644});
    items.push_back({TarItem::File, "data/big.bin", pseudo_random(6 * kMiB + 333, 1), 0644});
    for (int i = 0; i < 4; ++i)
      items.push_back({TarItem::File, "data/mid" + std::to_string(i), pseudo_random(kMiB - 1000 * i, 10 + i), 0644});
    for (int i = 0; i < 40; ++i)
      items.push_back({TarItem::File, "data/s" + std::to_string(i), pseudo_random(100 + 997 * i, 100 + i), 0644});
    tar_ = make_tar(items);
    MemSource src(tar_);
    ref_ = store_->register_layer("", src);
  }
  // Flips one byte of a stored payload (flipping it again puts it back).
  void flip(const std::string& rel, off_t at) {
    std::string file = d_.path() + "/dir/" + ref_->node().cache_id + "/diff/" + rel;
    int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << file;
    char c;
    ASSERT_EQ(::pread(fd, &c, 1, at), 1);
    c ^= 0x40;
    ASSERT_EQ(::pwrite(fd, &c, 1, at), 1);
    ::close(fd);
  }
  static constexpr size_t kMiB = 1 << 20;
  TempDir d_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<LayerRef> ref_;
  std::string tar_;
};

TEST_F(VerifyConcurrency, EveryStreamIsTheWholeLayerWhateverTheReadSize) {
  const int n = std::max(2, usable_cpus());
  for (size_t cap : {kMiB, kMiB + 1, size_t{65536}, 3 * kMiB, size_t{4097}}) {
    auto one = Store::verify_stream(*ref_);  // alone (on a single CPU: inline too)
    Read r1 = read_to_end(*one, cap);
    one.reset();
    EXPECT_TRUE(r1.ok) << cap << ": " << r1.message;
    EXPECT_TRUE(r1.data == tar_) << cap;
    auto rs = verify_at_once(*ref_, n, cap);
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(rs[i].ok) << cap << " stream " << i << ": " << rs[i].message;
      EXPECT_EQ(rs[i].data.size(), tar_.size()) << cap << " stream " << i;
      EXPECT_TRUE(rs[i].data == tar_) << cap << " stream " << i;
    }
  }
}

TEST_F(VerifyConcurrency, DamageIsReportedAsByOneStreamAlone) {
  const int n = std::max(2, usable_cpus());
  struct Case {
    std::string rel;
    off_t at;
  };
  for (const Case& c : {Case{"data/big.bin", static_cast<off_t>(4 * kMiB + 5)}, Case{"data/mid2", 77},
                        Case{"data/s31", 3}, Case{"data/big.bin", static_cast<off_t>(6 * kMiB + 300)}}) {
    flip(c.rel, c.at);
    auto one = Store::verify_stream(*ref_);
    Read r1 = read_to_end(*one, kMiB);
    one.reset();
    EXPECT_FALSE(r1.ok) << c.rel;
    EXPECT_EQ(r1.code, Code::Corrupt) << c.rel << ": " << r1.message;
    EXPECT_EQ(r1.path, c.rel);
    EXPECT_NE(r1.message.find("file integrity checksum failed for \"" + c.rel + "\""), std::string::npos) << r1.message;
    for (size_t cap : {kMiB, size_t{65536}}) {
      auto rs = verify_at_once(*ref_, n, cap);
      for (int i = 0; i < n; ++i) {
        EXPECT_FALSE(rs[i].ok) << c.rel << " stream " << i;
        EXPECT_EQ(rs[i].code, r1.code) << c.rel << " stream " << i;
        EXPECT_EQ(rs[i].message, r1.message) << c.rel << " stream " << i;
        EXPECT_EQ(rs[i].path, r1.path) << c.rel << " stream " << i;
      }
    }
    flip(c.rel, c.at);  // restored: every stream verifies again
    for (const Read& r : verify_at_once(*ref_, n, kMiB)) EXPECT_TRUE(r.ok) << c.rel << ": " << r.message;
  }
}

}  // namespace
