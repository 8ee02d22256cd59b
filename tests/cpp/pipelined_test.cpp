// SPDX-License-Identifier: Apache-2.0
// PipelinedHasher (SHA-256 on a worker thread) and the store paths that use it: register and
// verified export of layers long enough to start the worker. The *Concurren* tests run under
// ThreadSanitizer in .ci/run.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <thread>

#include "core/cpus.h"
#include "core/error.h"
#include "drivers/dir/dir_driver.h"
#include "digest/pipelined.h"
#include "record/xxh3.h"
#include "store/store.h"
#include "test_util.h"

using namespace rolayer;
using namespace rolayer::test;

namespace {

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

Digest reference(const std::string& data) {
  Hasher h;
  h.update(data.data(), data.size());
  return h.finish();
}

// Feeds data in pieces of the given sizes (cycled).
Digest pipelined(const std::string& data, PipelinedHasher::Options o, std::vector<size_t> pieces,
                 bool* threaded = nullptr) {
  PipelinedHasher h(o);
  size_t off = 0, i = 0;
  while (off < data.size()) {
    size_t n = std::min(pieces[i++ % pieces.size()], data.size() - off);
    h.update(data.data() + off, n);
    off += n;
  }
  if (threaded) *threaded = h.threaded();
  return h.finish();
}

PipelinedHasher::Options small_ring() {
  PipelinedHasher::Options o;
  o.inline_limit = 1000;
  o.block_size = 4096;
  o.blocks = 3;
  return o;
}

}  // namespace

TEST(PipelinedHasher, MatchesTheInlineHasher) {
  std::string data = random_bytes(300000, 1);
  for (size_t len : {size_t{0}, size_t{1}, size_t{999}, size_t{1000}, size_t{1001}, size_t{4096}, size_t{12288},
                     size_t{12289}, data.size()}) {
    std::string d = data.substr(0, len);
    for (auto pieces : std::vector<std::vector<size_t>>{{1}, {7, 4096, 1}, {4095}, {4096}, {4097}, {100000}}) {
      if (pieces[0] == 1 && len > 20000) continue;
      bool threaded = false;
      EXPECT_EQ(pipelined(d, small_ring(), pieces, &threaded), reference(d)) << "length " << len;
      EXPECT_EQ(threaded, len > 1000 && usable_cpus() != 1) << "length " << len;
    }
  }
}

TEST(PipelinedHasher, TinyStreamsStayInline) {
  std::string data = random_bytes(1 << 20, 2);
  bool threaded = true;
  EXPECT_EQ(pipelined(data, PipelinedHasher::Options{}, {65536}, &threaded), reference(data));
  EXPECT_FALSE(threaded);
}

TEST(PipelinedHasher, DestroyedMidStreamStopsTheWorker) {
  std::string data = random_bytes(1 << 20, 3);
  for (int i = 0; i < 200; i++) {
    PipelinedHasher h(small_ring());
    h.update(data.data(), 1000 + static_cast<size_t>(i) * 4099);
    // No finish(): the destructor must stop and join the worker, with blocks still queued.
  }
}

TEST(PipelinedHasher, FinishTwiceOrUpdateAfterFinishFails) {
  PipelinedHasher h(small_ring());
  h.update("abc", 3);
  EXPECT_EQ(h.finish(), sha256_of("abc", 3));
  EXPECT_THROW(h.update("d", 1), Error);
  EXPECT_THROW(h.finish(), Error);
}

TEST(PipelinedHasherConcurrency, ManyHashersAtOnceAndOwnersMovingBetweenThreads) {
  std::string data = random_bytes(2 << 20, 4);
  const Digest want = reference(data);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < 5; r++) {
        auto h = std::make_unique<PipelinedHasher>(small_ring());
        size_t half = data.size() / 2 + static_cast<size_t>(t * 131 + r);
        for (size_t off = 0; off < half; off += 5000) h->update(data.data() + off, std::min<size_t>(5000, half - off));
        // The rest and finish() from another thread (a stream moving between threads).
        Digest got;
        std::thread other([&] {
          for (size_t off = half; off < data.size(); off += 7000)
            h->update(data.data() + off, std::min<size_t>(7000, data.size() - off));
          got = h->finish();
        });
        other.join();
        if (got != want) bad++;
        // And one abandoned half-way.
        PipelinedHasher dropped(small_ring());
        dropped.update(data.data(), half);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Xxh3Kernels, SelectedKernelMatchesTheBaseline) {
  std::string data = random_bytes(3 << 20, 5);
  const auto& sel = record::detail::xxh3_ops();
  const auto* base = record::detail::xxh3_ops_baseline();
  for (size_t len : {size_t{0}, size_t{1}, size_t{16}, size_t{17}, size_t{128}, size_t{129}, size_t{240},
                     size_t{241}, size_t{1024}, size_t{4096}, size_t{100003}, data.size()}) {
    EXPECT_EQ(sel.hash(data.data(), len), base->hash(data.data(), len)) << len;
    record::Xxh3 x;
    for (size_t off = 0; off < len; off += 777) x.update(data.data() + off, std::min<size_t>(777, len - off));
    EXPECT_EQ(x.digest(), base->hash(data.data(), len)) << len;
  }
}

// ---- the store: layers long enough to hash on the worker ----------------------------------

namespace {

class PipelinedStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<Store> open(const std::string& root) {
    StoreOptions o;
    o.driver_name = GetParam();
    return Store::open(root, std::move(o));
  }
  // About 6 MiB in files of many sizes (whole payloads, streamed ones, empty ones).
  static std::string big_tar() {
    std::vector<TarItem> items{{TarItem::Dir, "d", ""}};
    size_t sizes[] = {0, 1, 511, 512, 513, 4096, 65537, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20, 100};
    int i = 0;
    for (size_t n : sizes) items.push_back({TarItem::File, "d/f" + std::to_string(i++), random_bytes(n, 10 + i)});
    return make_tar(items);
  }
};

}  // namespace

TEST_P(PipelinedStoreTest, LongLayerRoundTripsInSmallAndLargeReads) {
  TempDir dir;
  auto s = open(dir.path());
  std::string tar = big_tar();
  ASSERT_GT(tar.size(), size_t{5} << 20);  // past the 4 MiB hashed inline
  MemSource src(tar, 100000);
  auto l = s->register_layer("", src);
  EXPECT_EQ(l->node().diff_id.str(), "sha256:" + sha256_hex(tar));
  for (size_t buf : {size_t{1}, size_t{511}, size_t{4096}, size_t{65536}, size_t{1} << 20, size_t{5} << 20}) {
    if (buf == 1) continue;  // too slow byte by byte; 511 covers unaligned reads
    auto st = Store::tar_stream(*l);
    std::string out;
    std::vector<uint8_t> b(buf);
    for (;;) {
      size_t n = st->read(b.data(), b.size());
      if (n == 0) break;
      out.append(reinterpret_cast<char*>(b.data()), n);
    }
    EXPECT_TRUE(out == tar) << "reads of " << buf;
  }
  // A stream closed half-way (its worker is busy) is fine.
  for (int i = 0; i < 5; i++) {
    auto st = Store::tar_stream(*l);
    std::vector<uint8_t> b(1 << 20);
    for (int k = 0; k < 6; k++) st->read(b.data(), b.size());
  }
}

TEST_P(PipelinedStoreTest, WrongDiffIdIsStillADigestErrorAtTheEnd) {
  TempDir dir;
  std::string tar = big_tar();
  std::string chain;
  {
    auto s = open(dir.path());
    MemSource src(tar);
    auto l = s->register_layer("", src);
    chain = l->node().chain_id.str();
  }
  // Point the row at another DiffID (a valid digest), as a damaged database would.
  std::string other = "sha256:" + std::string(64, 'e');
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir.path() + "/metadata.db").c_str(), &db), SQLITE_OK);
    std::string sql = "UPDATE layers SET diff_id = '" + other + "' WHERE chain_id = '" + chain + "'";
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
  }
  auto s = open(dir.path());
  auto l = s->get(chain);
  auto st = Store::tar_stream(*l);
  std::vector<uint8_t> b(1 << 20);
  size_t total = 0;
  try {
    for (;;) {
      size_t n = st->read(b.data(), b.size());
      if (n == 0) break;
      total += n;
    }
    FAIL() << "a stream with the wrong DiffID verified";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::Digest);
    EXPECT_NE(std::string(e.what()).find("could not verify layer data for: " + other +
                                         ". This may be because internal files in the layer store were modified"),
              std::string::npos)
        << e.what();
    EXPECT_EQ(e.diff_id(), other);
  }
  EXPECT_EQ(total, tar.size());  // every byte went out before the final check failed
  EXPECT_THROW(st->read(b.data(), b.size()), Error);  // sticky
}

TEST_P(PipelinedStoreTest, ConcurrentLongRegistersAndExports) {
  TempDir dir;
  auto s = open(dir.path());
  std::string tar = big_tar();
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 3; t++) {
    threads.emplace_back([&, t] {
      try {
        MemSource src(tar, 70000 + t);
        auto l = s->register_layer("", src);
        auto st = Store::tar_stream(*l);
        if (read_all(*st) != tar) bad++;
      } catch (const std::exception& e) {
        bad++;
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Drivers, PipelinedStoreTest, ::testing::Values("exact", "dir"),
                         [](const auto& info) { return info.param; });

// The dir driver, but its payload files do not tell their size (as a caller's C driver's do
// not): the export then proves each payload's end with its reads.
class SizeHidingDriver : public Driver {
 public:
  std::string name() const override { return inner_->name(); }
  DriverCaps caps() const override { return inner_->caps(); }
  std::vector<std::string> init(const std::string& root) override { return inner_->init(root); }
  void create(const std::string& id, const std::string& parent) override { inner_->create(id, parent); }
  void remove(const std::string& id) override { inner_->remove(id); }
  int64_t apply_diff(const std::string& id, const std::string& parent, ByteSource& tar) override {
    return inner_->apply_diff(id, parent, tar);
  }
  std::unique_ptr<ByteSource> diff(const std::string& id, const std::string& ancestor) override {
    return inner_->diff(id, ancestor);
  }
  std::unique_ptr<PayloadSession> payloads(const std::string& id) override {
    return std::make_unique<Session>(inner_->payloads(id));
  }
  std::vector<std::pair<std::string, std::string>> metadata(const std::string& id) override {
    return inner_->metadata(id);
  }

 private:
  struct File : PayloadFile {
    explicit File(std::unique_ptr<PayloadFile> f) : f_(std::move(f)) {}
    size_t pread(uint64_t off, uint8_t* buf, size_t cap) override { return f_->pread(off, buf, cap); }
    std::unique_ptr<PayloadFile> f_;
  };
  struct Session : PayloadSession {
    explicit Session(std::unique_ptr<PayloadSession> s) : s_(std::move(s)) {}
    std::unique_ptr<PayloadFile> open(const std::string& path) override {
      auto f = s_->open(path);
      return std::make_unique<File>(std::move(f));
    }
    std::unique_ptr<PayloadSession> s_;
  };
  std::unique_ptr<Driver> inner_ = make_dir_driver();
};

// The dir driver's payloads: one byte more or less on disk, for a payload read whole (checked
// before it goes out) and for one streamed through; with the size the driver knows from its
// fstat, and with the end proven by the last read (a driver that does not tell the size).
TEST(PipelinedDirTamper, LongerOrShorterPayloadIsCorrupt) {
  for (bool hide_size : {false, true})
  for (const char* name : {"d/f1", "d/f4", "d/f10"}) {  // 1 byte, 4 KiB, 3 MiB
    for (bool longer : {true, false}) {
      SCOPED_TRACE(hide_size ? "size hidden" : "size known");
      TempDir dir;
      StoreOptions o;
      o.driver_name = "dir";
      if (hide_size) o.driver = std::make_unique<SizeHidingDriver>();
      auto s = Store::open(dir.path(), std::move(o));
      std::vector<TarItem> items{{TarItem::Dir, "d", ""}};
      size_t sizes[] = {0, 1, 511, 512, 4096, 65537, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20, 3 << 20};
      int i = 0;
      for (size_t n : sizes) items.push_back({TarItem::File, "d/f" + std::to_string(i++), random_bytes(n, 40 + i)});
      std::string tar = make_tar(items);
      MemSource src(tar);
      auto l = s->register_layer("", src);
      std::string file = dir.path() + "/dir/" + l->node().cache_id + "/diff/" + name;
      struct stat st;
      ASSERT_EQ(::stat(file.c_str(), &st), 0) << file;
      if (longer) {
        std::ofstream(file, std::ios::app | std::ios::binary).put('x');
      } else {
        ASSERT_EQ(::truncate(file.c_str(), st.st_size - 1), 0);
      }
      auto stream = Store::tar_stream(*l);
      std::vector<uint8_t> b(1 << 20);
      try {
        while (stream->read(b.data(), b.size()) > 0) {
        }
        ADD_FAILURE() << name << (longer ? " longer" : " shorter") << ": the export verified";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::Corrupt) << e.what();
        std::string want = std::string("the file is ") + (longer ? "longer" : "shorter") + " than recorded";
        EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << name << ": " << e.what();
        EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      }
    }
  }
}

// A payload of at most 1 MiB whose content changed (same size) fails before any of its bytes
// go out, also when it is read straight into the caller's buffer.
TEST(PipelinedDirTamper, ChangedSmallPayloadNeverGoesOut) {
  for (size_t bufsize : {size_t{1} << 20, size_t{8192}, size_t{3000}}) {
    TempDir dir;
    StoreOptions o;
    o.driver_name = "dir";
    auto s = Store::open(dir.path(), std::move(o));
    std::string before = random_bytes(70000, 7), victim = random_bytes(4096, 8);
    std::string tar = make_tar({{TarItem::File, "a", before}, {TarItem::File, "b", victim}, {TarItem::File, "c", "z"}});
    MemSource src(tar);
    auto l = s->register_layer("", src);
    std::string file = dir.path() + "/dir/" + l->node().cache_id + "/diff/b";
    {
      std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(4000);
      f.put(static_cast<char>(victim[4000] ^ 1));
    }
    const size_t victim_at = tar.find(victim);
    ASSERT_NE(victim_at, std::string::npos);
    auto stream = Store::tar_stream(*l);
    std::vector<uint8_t> b(bufsize);
    std::string out;
    try {
      for (;;) {
        size_t n = stream->read(b.data(), b.size());
        if (n == 0) break;
        out.append(reinterpret_cast<char*>(b.data()), n);
      }
      ADD_FAILURE() << "the export verified";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Code::Corrupt) << e.what();
      EXPECT_NE(std::string(e.what()).find("its content differs"), std::string::npos) << e.what();
    }
    EXPECT_LE(out.size(), victim_at) << "bytes of the failed payload went out (reads of " << bufsize << ")";
    EXPECT_EQ(out, tar.substr(0, out.size()));
  }
}
