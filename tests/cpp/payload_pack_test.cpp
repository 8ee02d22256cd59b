// SPDX-License-Identifier: Apache-2.0
// The dir driver's payload pack (lib/drivers/dir/dir_pack.h; StoreOptions::payload_pack_max):
// round trips with the pack on, the setting kept across opens, layers from before the setting,
// every kind of damage to the pack with its status code, verification of the tree with an intact
// pack, faults and crashes while the pack is written, staged registers against serial ones.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <random>
#include <thread>

#include "core/error.h"
#include "reliability_util.h"
#include "store/store.h"
#include "test_util.h"

using namespace rolayer;
using namespace rolayer::test;
using namespace rolayer::reltest;

namespace {

[[maybe_unused]] const bool kJobs = install_child_jobs();

// A child's "err <code> <errno> <message>" line.
struct ChildError {
  bool is_err = false;
  int code = 0, err = 0;
};
ChildError parse_err(const std::vector<std::string>& lines) {
  ChildError e;
  for (const auto& l : lines) {
    if (l.rfind("err ", 0) != 0) continue;
    std::istringstream ss(l.substr(4));
    ss >> e.code >> e.err;
    e.is_err = true;
  }
  return e;
}

struct Outcome2 {
  Code code = Code::Ok;
  std::string message, path;
  std::string data;
};

Outcome2 read_stream(const std::function<std::unique_ptr<ByteSource>()>& open) {
  Outcome2 o;
  try {
    auto s = open();
    o.data = read_all(*s);
  } catch (const Error& e) {
    o.code = e.code();
    o.message = e.what();
    o.path = e.path();
  }
  return o;
}

Outcome2 do_export(const LayerRef& r) { return read_stream([&] { return Store::tar_stream(r); }); }
Outcome2 do_verify(const LayerRef& r) { return read_stream([&] { return Store::verify_stream(r); }); }

std::string slurp(const std::string& path) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

void spit(const std::string& path, const std::string& data) {
  ::chmod(path.c_str(), 0600);
  int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ::close(fd);
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

void put_u64(std::string& s, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) s[at + i] = static_cast<char>(v >> (8 * i));
}
uint64_t get_u64(const std::string& s, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[at + i])) << (8 * i);
  return v;
}

// A layer like bench/gen's node_modules part, scaled down: many small files in nested folders,
// a few larger ones, empty files, a rewritten path, a hard link and a symlink.
std::string gen_layer(uint64_t seed, int files = 400) {
  std::mt19937_64 rng(seed);
  std::vector<TarItem> items;
  items.push_back({TarItem::Dir, "app", "", 0755});
  items.push_back({TarItem::Dir, "app/node_modules", "", 0755});
  for (int p = 0; p < files / 20; ++p) items.push_back({TarItem::Dir, "app/node_modules/p" + std::to_string(p), "", 0755});
  for (int i = 0; i < files; ++i) {
    std::string name = "app/node_modules/p" + std::to_string(i % (files / 20)) + "/f" + std::to_string(i) + ".js";
    size_t size = rng() % 10 == 0 ? 0 : rng() % 20 == 0 ? 40000 + rng() % 100000 : 1 + rng() % 6000;
    std::string c(size, '\0');
    for (size_t k = 0; k < size; ++k) c[k] = static_cast<char>(k % 7 == 0 ? rng() : 'a' + (k + i) % 26);
    items.push_back({TarItem::File, name, std::move(c)});
  }
  items.push_back({TarItem::File, "app/big.bin", std::string(3 << 20, 'B')});
  items.push_back({TarItem::File, "app/node_modules/p0/f0.js", "rewritten later in the stream"});
  items.push_back({TarItem::Hardlink, "app/link.js", "app/node_modules/p1/f1.js"});
  items.push_back({TarItem::Symlink, "app/sym", "node_modules"});
  return make_tar(items);
}

class PackTest : public ::testing::Test {
 protected:
  std::string root() const { return dir_.path() + "/store"; }
  std::unique_ptr<Store> open_store(int64_t pack = 0) {
    StoreOptions o;
    o.driver_name = "dir";
    o.payload_pack_max = pack;
    return Store::open(root(), std::move(o));
  }
  std::unique_ptr<LayerRef> add(Store& s, const std::string& tar, const std::string& parent = "") {
    MemSource src(tar, 65536 + 13);
    return s.register_layer(parent, src);
  }
  std::string meta(const LayerRef& r) const { return root() + "/dir/" + r.node().cache_id + "/meta"; }
  std::string diff(const LayerRef& r) const { return root() + "/dir/" + r.node().cache_id + "/diff"; }
  TempDir dir_;
};

TEST_F(PackTest, RoundTripByteExact) {
  auto s = open_store(32 * 1024);
  EXPECT_EQ(s->payload_pack_max(), 32 * 1024);
  const std::string tar = gen_layer(1);
  auto r = add(*s, tar);
  ASSERT_TRUE(exists(meta(*r) + "/pack"));
  ASSERT_TRUE(exists(meta(*r) + "/pack-index"));
  std::string idx = slurp(meta(*r) + "/pack-index");
  ASSERT_GE(idx.size(), 40u);
  const uint64_t count = get_u64(idx, 24), size = get_u64(idx, 32);
  EXPECT_EQ(idx.size(), 40 + 24 * count);
  EXPECT_GT(count, 300u);
  EXPECT_EQ(slurp(meta(*r) + "/pack").size(), size);
  // Only payloads of 1 to 32 KiB: every record's size in range, offsets back to back.
  uint64_t end = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t off = get_u64(idx, 40 + 24 * i + 8), n = get_u64(idx, 40 + 24 * i + 16);
    EXPECT_EQ(off, end);
    EXPECT_GE(n, 1u);
    EXPECT_LE(n, 32u * 1024);
    end = off + n;
  }
  EXPECT_EQ(end, size);
  Outcome2 e = do_export(*r);
  ASSERT_EQ(e.code, Code::Ok) << e.message;
  EXPECT_TRUE(e.data == tar);
  Outcome2 v = do_verify(*r);
  ASSERT_EQ(v.code, Code::Ok) << v.message;
  EXPECT_TRUE(v.data == tar);
  // A child on top, and the flattened chain.
  const std::string tar2 = gen_layer(2, 100);
  auto r2 = add(*s, tar2, r->node().chain_id.str());
  Outcome2 e2 = do_export(*r2);
  ASSERT_EQ(e2.code, Code::Ok) << e2.message;
  EXPECT_TRUE(e2.data == tar2);
  // The release removes the pack with the layer.
  const std::string m = meta(*r2);
  s->release(*r2);
  EXPECT_FALSE(exists(m + "/pack"));
  EXPECT_FALSE(exists(m));
}

// More records than one 64 KiB read of the index holds (2,730), and a pack longer than the
// reader's 1 MiB window: the reader's buffers refill at record and window boundaries.
TEST_F(PackTest, ManyTinyPayloadsRoundTrip) {
  std::vector<TarItem> items;
  items.push_back({TarItem::Dir, "t", "", 0755});
  for (int i = 0; i < 6000; ++i) items.push_back({TarItem::File, "t/" + std::to_string(i), std::string(1 + i % 700, char('a' + i % 26))});
  const std::string tar = make_tar(items);
  auto s = open_store(1024);
  auto r = add(*s, tar);
  std::string idx = slurp(meta(*r) + "/pack-index");
  EXPECT_EQ(get_u64(idx, 24), 6000u);
  EXPECT_GT(get_u64(idx, 32), uint64_t(1) << 20);
  Outcome2 e = do_export(*r);
  ASSERT_EQ(e.code, Code::Ok) << e.message;
  EXPECT_TRUE(e.data == tar);
  Outcome2 v = do_verify(*r);
  ASSERT_EQ(v.code, Code::Ok) << v.message;
}

TEST_F(PackTest, CorpusRoundTrips) {
  auto corpus = load_corpus();
  if (corpus.empty()) GTEST_SKIP() << "the corpus (" << corpus_dir() << ") is not there";
  auto s = open_store(int64_t(16) << 20);
  int done = 0;
  for (const auto& f : corpus) {
    if (f.expect != "well-formed") continue;
    std::unique_ptr<LayerRef> r;
    try {
      r = add(*s, f.data);
    } catch (const Error& e) {
      continue;  // refused at register as before (not the pack's concern)
    }
    Outcome2 e = do_export(*r);
    ASSERT_EQ(e.code, Code::Ok) << f.file << ": " << e.message;
    EXPECT_EQ(sha256_hex(e.data), f.sha256) << f.file;
    Outcome2 v = do_verify(*r);
    ASSERT_EQ(v.code, Code::Ok) << f.file << ": " << v.message;
    ++done;
  }
  EXPECT_GT(done, 0);
}

TEST_F(PackTest, SettingKeptAcrossOpensAndTurnedOff) {
  const std::string t1 = gen_layer(3, 100), t2 = gen_layer(4, 100), t3 = gen_layer(5, 100);
  std::string c0, c1, c2;
  {
    auto s = open_store();  // a store from before the setting
    EXPECT_EQ(s->payload_pack_max(), 0);
    auto r = add(*s, t1);
    EXPECT_FALSE(exists(meta(*r) + "/pack"));
    c0 = r->node().chain_id.str();
    s->retain(c0);
  }
  {
    auto s = open_store(4096);
    EXPECT_EQ(s->payload_pack_max(), 4096);
  }
  {
    auto s = open_store();  // 0: the store's setting
    EXPECT_EQ(s->payload_pack_max(), 4096);
    auto r = add(*s, t2);
    EXPECT_TRUE(exists(meta(*r) + "/pack"));
    c1 = r->node().chain_id.str();
    s->retain(c1);
    // The layer from before keeps no pack and exports as before.
    auto old = s->get(c0);
    EXPECT_FALSE(exists(meta(*old) + "/pack"));
    Outcome2 e = do_export(*old);
    ASSERT_EQ(e.code, Code::Ok) << e.message;
    EXPECT_TRUE(e.data == t1);
  }
  {
    // Another opener (a second handle at once) sees the setting too.
    auto a = open_store();
    auto b = open_store();
    EXPECT_EQ(b->payload_pack_max(), 4096);
  }
  {
    auto s = open_store(-1);
    EXPECT_EQ(s->payload_pack_max(), 0);
    auto r = add(*s, t3);
    EXPECT_FALSE(exists(meta(*r) + "/pack"));
    c2 = r->node().chain_id.str();
    s->retain(c2);
  }
  {
    auto s = open_store();
    EXPECT_EQ(s->payload_pack_max(), 0);
    // A packed layer exported by a store with the setting off.
    auto r = s->get(c1);
    Outcome2 e = do_export(*r);
    ASSERT_EQ(e.code, Code::Ok) << e.message;
    EXPECT_TRUE(e.data == t2);
  }
  {
    StoreOptions o;
    o.driver_name = "dir";
    o.payload_pack_max = (int64_t(16) << 20) + 1;
    try {
      Store::open(root(), std::move(o));
      ADD_FAILURE() << "a threshold above 16 MiB was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Code::Inval);
    }
  }
  {
    StoreOptions o;
    o.driver_name = "dir";
    o.read_only = true;
    o.payload_pack_max = 8192;
    try {
      Store::open(root(), std::move(o));
      ADD_FAILURE() << "a read-only open changed the setting";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Code::Io);
      EXPECT_EQ(e.sys_errno(), EROFS);
    }
  }
}

TEST_F(PackTest, StagedRegistersWriteTheSamePackAsSerialOnes) {
  // Layer 3 does not declare its folders (applied while staged, its folders fixed up at commit);
  // the last one needs its parent's data (a hard link to a file of layer 3): applied again at
  // commit.
  std::vector<std::string> tars = {gen_layer(10, 200), gen_layer(11, 200), gen_layer(12, 200),
                                   make_tar({{TarItem::File, "app/node_modules/p1/new.js", "needs the parent's folders"},
                                             {TarItem::File, "app/node_modules/p2/big.js", std::string(70000, 'q')}}),
                                   make_tar({{TarItem::File, "app/node_modules/p3/own.js", "a payload of its own"},
                                             {TarItem::Hardlink, "app/node_modules/p3/linked.js", "app/node_modules/p1/new.js"}})};
  std::vector<std::string> serial_packs, serial_idx;
  TempDir other;
  {
    StoreOptions o;
    o.driver_name = "dir";
    o.payload_pack_max = 32 * 1024;
    auto s = Store::open(other.path() + "/serial", std::move(o));
    std::string parent;
    for (auto& t : tars) {
      MemSource src(t, 4096 + 17);
      auto r = s->register_layer(parent, src);
      parent = r->node().chain_id.str();
      s->retain(parent);
      std::string m = other.path() + "/serial/dir/" + r->node().cache_id + "/meta";
      serial_packs.push_back(slurp(m + "/pack"));
      serial_idx.push_back(slurp(m + "/pack-index"));
    }
  }
  auto s = open_store(32 * 1024);
  std::vector<std::unique_ptr<StagedLayer>> staged(tars.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < tars.size(); ++i)
    threads.emplace_back([&, i] {
      MemSource src(tars[i], 70000);
      staged[i] = s->stage(src);
    });
  for (auto& t : threads) t.join();
  EXPECT_FALSE(staged[0]->deferred());
  EXPECT_FALSE(staged[3]->deferred());
  EXPECT_TRUE(staged[4]->deferred());
  std::string parent;
  for (size_t i = 0; i < tars.size(); ++i) {
    auto r = s->commit_staged(*staged[i], parent);
    parent = r->node().chain_id.str();
    EXPECT_FALSE(serial_packs[i].empty());
    EXPECT_TRUE(slurp(meta(*r) + "/pack") == serial_packs[i]) << "layer " << i;
    EXPECT_TRUE(slurp(meta(*r) + "/pack-index") == serial_idx[i]) << "layer " << i;
    Outcome2 e = do_export(*r);
    ASSERT_EQ(e.code, Code::Ok) << e.message;
    EXPECT_TRUE(e.data == tars[i]);
  }
}

// ---- damage -------------------------------------------------------------------------------

class PackDamage : public PackTest {
 protected:
  void SetUp() override {
    s_ = open_store(32 * 1024);
    tar_ = gen_layer(20, 200);
    r_ = add(*s_, tar_);
    pack_ = meta(*r_) + "/pack";
    index_ = meta(*r_) + "/pack-index";
    ASSERT_TRUE(exists(pack_));
  }
  // Export and verification both fail with code, the message naming the layer's pack (or the
  // file when the check is the record's), and nothing crashes or hangs.
  void expect_both(Code code, const std::string& mention) {
    for (bool verify : {false, true}) {
      Outcome2 o = verify ? do_verify(*r_) : do_export(*r_);
      EXPECT_EQ(o.code, code) << (verify ? "verify: " : "export: ") << o.message;
      EXPECT_NE(o.message.find(mention), std::string::npos) << (verify ? "verify: " : "export: ") << o.message;
    }
  }
  std::unique_ptr<Store> s_;
  std::string tar_, pack_, index_;
  std::unique_ptr<LayerRef> r_;
};

TEST_F(PackDamage, PackIsASymlink) {
  ASSERT_EQ(::unlink(pack_.c_str()), 0);
  ASSERT_EQ(::symlink("/etc/passwd", pack_.c_str()), 0);
  expect_both(Code::Corrupt, "symbolic link");
}

TEST_F(PackDamage, IndexIsAFifo) {
  ASSERT_EQ(::unlink(index_.c_str()), 0);
  ASSERT_EQ(::mkfifo(index_.c_str(), 0600), 0);
  expect_both(Code::Corrupt, "not a regular file");
}

TEST_F(PackDamage, PackTruncated) {
  std::string p = slurp(pack_);
  spit(pack_, p.substr(0, p.size() / 2));
  expect_both(Code::Corrupt, "the payload pack of layer " + r_->node().cache_id);
}

TEST_F(PackDamage, PackMissing) {
  ASSERT_EQ(::unlink(pack_.c_str()), 0);
  expect_both(Code::Corrupt, "missing (its index is there)");
}

TEST_F(PackDamage, IndexMissing) {
  ASSERT_EQ(::unlink(index_.c_str()), 0);
  expect_both(Code::Corrupt, "missing (the pack is there)");
}

TEST_F(PackDamage, IndexWrongSize) {
  std::string i = slurp(index_);
  spit(index_, i.substr(0, i.size() - 5));
  expect_both(Code::Corrupt, "does not match its");
}

TEST_F(PackDamage, IndexBadMagic) {
  std::string i = slurp(index_);
  i[0] = 'X';
  spit(index_, i);
  expect_both(Code::Corrupt, "bad magic");
}

TEST_F(PackDamage, OffsetOutOfBounds) {
  std::string i = slurp(index_);
  const uint64_t count = get_u64(i, 24);
  put_u64(i, 40 + 24 * (count - 1) + 8, uint64_t(1) << 40);
  spit(index_, i);
  expect_both(Code::Corrupt, "outside the pack");
}

TEST_F(PackDamage, RangesOverlap) {
  std::string i = slurp(index_);
  put_u64(i, 40 + 24 * 3 + 8, get_u64(i, 40 + 24 * 2 + 8));
  spit(index_, i);
  expect_both(Code::Corrupt, "overlaps");
}

TEST_F(PackDamage, OrdinalsOutOfOrder) {
  std::string i = slurp(index_);
  put_u64(i, 40 + 24 * 3, get_u64(i, 40 + 24 * 2));
  spit(index_, i);
  expect_both(Code::Corrupt, "out of order");
}

TEST_F(PackDamage, IndexNamesAPayloadTheStreamDoesNotHave) {
  std::string i = slurp(index_);
  const uint64_t count = get_u64(i, 24);
  put_u64(i, 40 + 24 * (count - 1), 1000000);
  spit(index_, i);
  expect_both(Code::Corrupt, "the stream has only");
}

TEST_F(PackDamage, PackBytesChanged) {
  std::string p = slurp(pack_);
  p[p.size() / 2] ^= 0x20;
  spit(pack_, p);
  // Export: the record's XXH3 of the packed payload; verification: the pack against the tree.
  Outcome2 e = do_export(*r_);
  EXPECT_EQ(e.code, Code::Corrupt) << e.message;
  EXPECT_NE(e.message.find("differs from what was registered"), std::string::npos) << e.message;
  Outcome2 v = do_verify(*r_);
  EXPECT_EQ(v.code, Code::Corrupt) << v.message;
  EXPECT_NE(v.message.find("the payload pack of layer " + r_->node().cache_id + " does not match"), std::string::npos)
      << v.message;
}

TEST_F(PackDamage, TreeFileChangedWithAnIntactPack) {
  const std::string f = diff(*r_) + "/app/node_modules/p3/f3.js";
  std::string c = slurp(f);
  ASSERT_FALSE(c.empty());
  c[0] ^= 0x01;
  spit(f, c);
  // Export reads the pack: still the registered bytes.
  Outcome2 e = do_export(*r_);
  ASSERT_EQ(e.code, Code::Ok) << e.message;
  EXPECT_TRUE(e.data == tar_);
  // Verification reads the tree, as mounts do: the changed file is found and named.
  Outcome2 v = do_verify(*r_);
  EXPECT_EQ(v.code, Code::Corrupt) << v.message;
  EXPECT_EQ(v.path, "app/node_modules/p3/f3.js") << v.message;
  EXPECT_NE(v.message.find("file integrity checksum failed"), std::string::npos) << v.message;
}

// Exports read runs of packed payloads with one preadv each, straight into the caller's
// buffer, and check each payload there before any of it is output (PayloadSession::read_batch).

// Reads a stream in `cap`-byte reads until the end or an error: what came out before it.
Outcome2 read_in_pieces(ByteSource& s, size_t cap) {
  Outcome2 o;
  std::string buf(cap, '\0');
  try {
    for (;;) {
      size_t n = s.read(reinterpret_cast<uint8_t*>(buf.data()), cap);
      if (n == 0) break;
      o.data.append(buf.data(), n);
    }
  } catch (const Error& e) {
    o.code = e.code();
    o.message = e.what();
    o.path = e.path();
  }
  return o;
}

TEST_F(PackDamage, ChangedPayloadInTheMiddleOfARunIsNamedAndNotOutput) {
  // A packed payload with packed payloads before and after it in the pack.
  std::string p = slurp(pack_);
  std::string path, content;
  for (int i = 100; i < 200 && path.empty(); ++i) {
    std::string cand = "app/node_modules/p" + std::to_string(i % 10) + "/f" + std::to_string(i) + ".js";
    std::string c = slurp(diff(*r_) + "/" + cand);
    if (c.size() < 64 || c.size() > 32 * 1024) continue;
    size_t at = p.find(c);
    if (at == std::string::npos || at == 0 || at + c.size() >= p.size() || p.rfind(c) != at) continue;
    path = cand;
    content = c;
  }
  ASSERT_FALSE(path.empty());
  const size_t at = p.find(content);
  p[at + content.size() / 2] ^= 0x40;
  spit(pack_, p);
  const size_t in_tar = tar_.find(content);
  ASSERT_NE(in_tar, std::string::npos);
  for (size_t cap : {size_t(1) << 20, size_t(65536 + 7)}) {
    auto s = Store::tar_stream(*r_);
    Outcome2 o = read_in_pieces(*s, cap);
    EXPECT_EQ(o.code, Code::Corrupt) << o.message;
    EXPECT_EQ(o.path, path) << o.message;
    EXPECT_NE(o.message.find("differs from what was registered"), std::string::npos) << o.message;
    // Nothing of the changed payload (nor anything after it) came out.
    EXPECT_LE(o.data.size(), in_tar);
    EXPECT_TRUE(tar_.compare(0, o.data.size(), o.data) == 0);
  }
}

TEST_F(PackDamage, PackShrinkingDuringTheExportIsReported) {
  auto s = Store::tar_stream(*r_);
  uint8_t first[512];
  ASSERT_GT(s->read(first, sizeof first), 0u);  // the export has opened the pack
  std::string p = slurp(pack_);
  spit(pack_, p.substr(0, p.size() / 4));  // the same file, shorter
  Outcome2 o = read_in_pieces(*s, size_t(1) << 20);
  EXPECT_EQ(o.code, Code::Corrupt) << o.message;
  EXPECT_NE(o.message.find("the payload pack of layer " + r_->node().cache_id + " is damaged"), std::string::npos)
      << o.message;
  EXPECT_NE(o.message.find("became shorter than its index says"), std::string::npos) << o.message;
}

TEST_F(PackTest, EarlierDamageIsReportedBeforeALaterFailure) {
  // b's packed bytes are changed, and the tree file of the next payload (not packed: larger than
  // the threshold) is gone: b's error comes first in the stream, and is the one reported.
  std::string a(3000, 'a'), b(5000, 'b'), c(70000, 'c');
  for (size_t k = 0; k < b.size(); k += 7) b[k] = static_cast<char>('0' + k % 10);
  std::string tar = make_tar({{TarItem::File, "a", a}, {TarItem::File, "b", b}, {TarItem::File, "c", c}});
  auto s = open_store(32 * 1024);
  auto r = add(*s, tar);
  std::string p = slurp(meta(*r) + "/pack");
  ASSERT_EQ(p, a + b);
  p[3000 + 100] ^= 0x01;
  spit(meta(*r) + "/pack", p);
  ASSERT_EQ(::unlink((diff(*r) + "/c").c_str()), 0);
  Outcome2 o = do_export(*r);
  EXPECT_EQ(o.code, Code::Corrupt) << o.message;
  EXPECT_EQ(o.path, "b") << o.message;
  EXPECT_NE(o.message.find("differs from what was registered"), std::string::npos) << o.message;
  // With b intact, c's absence is what the export meets.
  p[3000 + 100] ^= 0x01;
  spit(meta(*r) + "/pack", p);
  o = do_export(*r);
  EXPECT_EQ(o.code, Code::Corrupt) << o.message;
  EXPECT_EQ(o.path, "c") << o.message;
}

// ---- faults and crashes while the pack is written ------------------------------------------

class PackCrash : public ::testing::Test {
 protected:
  void SetUp() override {
    model_.root = scratch_.path() + "/store";
    model_.driver = "dir";
    StoreOptions o;
    o.driver_name = "dir";
    o.payload_pack_max = 16 << 20;  // every random payload is packed
    auto s = Store::open(model_.root, std::move(o));
    model_.add(*s, random_layer(rng_, true, true), "");
  }
  Outcome run(const std::string& tar, const std::string& var, const std::string& value) {
    IgnoreSigpipe ig;
    Child ch = spawn_job("register",
                         {{"ROLAYER_REL_ROOT", model_.root}, {"ROLAYER_REL_DRIVER", "dir"}, {"ROLAYER_REL_PARENT", ""},
                          {var, value}},
                         true);
    feed(ch.in, tar.data(), tar.size());
    return finish(ch);
  }
  Scratch scratch_;
  StoreModel model_;
  std::mt19937_64 rng_{99};
};

TEST_F(PackCrash, ErrnoAndKillWhileThePackIsWritten) {
  if (!fault_hooks_built()) GTEST_SKIP() << "built without -DROLAYER_FAULT_HOOKS=ON: no fault points";
  for (const char* point : {"dir.pack.write", "dir.pack.index"}) {
    for (bool kill : {false, true}) {
      std::string tar = random_layer(rng_, true, true);
      std::string c = chain_of("", tar);
      Outcome o = kill ? run(tar, "ROLAYER_FAULT_KILL", std::string(point) + ":1")
                       : run(tar, "ROLAYER_FAULT_ERRNO", std::string(point) + ":1=28");
      const std::string what = std::string(kill ? "kill at " : "ENOSPC at ") + point + ": " + o.describe();
      if (kill) {
        EXPECT_TRUE(o.killed) << what;
      } else {
        ASSERT_TRUE(o.exited) << what;
        ChildError e = parse_err(o.lines);
        EXPECT_TRUE(e.is_err) << what;
        EXPECT_EQ(e.code, static_cast<int>(Code::Io)) << what;
        EXPECT_EQ(e.err, 28) << what;
      }
      // Nothing of the layer is left (its half-written pack included), every other layer exports.
      CheckResult r = check_store(model_.root, "dir", model_.tars, {});
      EXPECT_TRUE(r.problems.empty()) << what << "\n  " << join(r.problems, "\n  ");
      EXPECT_FALSE(r.present.count(c)) << what;
      // And the same layer registers whole afterwards, pack included.
      auto s = model_.open();
      std::string added = model_.add(*s, tar, "");
      auto ref = s->get(added);
      struct stat st;
      EXPECT_EQ(::lstat((model_.root + "/dir/" + ref->node().cache_id + "/meta/pack").c_str(), &st), 0) << what;
      ExportResult x = export_layer(*ref);
      EXPECT_TRUE(x.ok && x.data == tar) << what << ": " << describe(x);
    }
  }
}

}  // namespace
