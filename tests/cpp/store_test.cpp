// SPDX-License-Identifier: Apache-2.0
// The layer store's semantics, after moby's layer tests (layer/layer_test.go), on every
// built-in driver.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <fstream>

#include "core/error.h"
#include "core/fs.h"
#include "store/store.h"
#include "test_util.h"

using namespace rolayer;
using namespace rolayer::test;

namespace {

const char* kEmptyDiff = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
const char* kEmptyOnEmpty = "sha256:170b376f64fb30995c140276be3d71dfb256b308d86183ca3b22aa93a79ad548";

int count_entries(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  int n = 0;
  while (struct dirent* de = readdir(d))
    if (de->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

Code code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return Code::Ok;
}

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<Store> open_store() {
    StoreOptions o;
    o.driver_name = GetParam();
    return Store::open(dir_.path() + "/store", std::move(o));
  }
  std::unique_ptr<LayerRef> reg(Store& s, const std::string& tar, const std::string& parent = "") {
    MemSource src(tar, 4096 + 17);  // odd chunking on purpose
    return s.register_layer(parent, src);
  }
  std::string export_stream(const LayerRef& r) {
    auto src = Store::tar_stream(r);
    return read_all(*src);
  }
  int driver_dirs() { return count_entries(dir_.path() + "/store/" + GetParam()); }
  TempDir dir_;
};

TEST_P(StoreTest, EmptyLayerIdsMatchTheReferenceVectors) {
  auto s = open_store();
  auto l = reg(*s, empty_tar());
  EXPECT_EQ(l->node().diff_id.str(), kEmptyDiff);
  EXPECT_EQ(l->node().chain_id.str(), kEmptyDiff);
  auto l2 = reg(*s, empty_tar(), kEmptyDiff);
  EXPECT_EQ(l2->node().chain_id.str(), kEmptyOnEmpty);
  EXPECT_EQ(l2->node().diff_id.str(), kEmptyDiff);
  EXPECT_EQ(l2->node().depth, 2);
  EXPECT_EQ(export_stream(*l2), empty_tar());
  EXPECT_EQ(Store::size(*l2), 0);
}

TEST_P(StoreTest, DiffIdCoversTrailingBytesAfterTheEndOfArchive) {
  auto s = open_store();
  std::string tar = make_tar({{TarItem::File, "a", "hello"}});
  std::string with_tail = tar + std::string(1536, '\0') + "tail";
  auto l = reg(*s, with_tail);
  EXPECT_EQ(l->node().diff_id.str(), "sha256:" + sha256_hex(with_tail));
  EXPECT_EQ(export_stream(*l), with_tail);
}

TEST_P(StoreTest, SizesCountRegularFilePayloads) {
  auto s = open_store();
  auto l1 = reg(*s, make_tar({{TarItem::Dir, "d", ""}, {TarItem::File, "d/a", std::string(1000, 'a')},
                              {TarItem::Symlink, "d/l", "a"}}));
  auto l2 = reg(*s, make_tar({{TarItem::File, "b", std::string(234, 'b')}}), l1->node().chain_id.str());
  EXPECT_EQ(l1->node().diff_size, 1000);
  EXPECT_EQ(Store::size(*l1), 1000);
  EXPECT_EQ(l2->node().diff_size, 234);
  EXPECT_EQ(Store::size(*l2), 1234);
}

TEST_P(StoreTest, ReleaseCascadesChildFirst) {
  auto s = open_store();
  auto l1 = reg(*s, make_tar({{TarItem::File, "1", "one"}}));
  auto l2 = reg(*s, make_tar({{TarItem::File, "2", "two"}}), l1->node().chain_id.str());
  auto l3a = reg(*s, make_tar({{TarItem::File, "3", "three-a"}}), l2->node().chain_id.str());
  auto l3b = reg(*s, make_tar({{TarItem::File, "3", "three-b"}}), l2->node().chain_id.str());
  std::string c1 = l1->node().chain_id.str(), c2 = l2->node().chain_id.str();
  std::string c3a = l3a->node().chain_id.str(), c3b = l3b->node().chain_id.str();
  EXPECT_EQ(driver_dirs(), 4);

  EXPECT_TRUE(s->release(*l1).empty());
  EXPECT_TRUE(s->release(*l2).empty());
  auto r = s->release(*l3a);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].chain_id, c3a);
  EXPECT_EQ(driver_dirs(), 3);

  r = s->release(*l3b);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].chain_id, c3b);
  EXPECT_EQ(r[1].chain_id, c2);
  EXPECT_EQ(r[2].chain_id, c1);
  EXPECT_EQ(r[0].diff_size, 7);
  EXPECT_EQ(r[0].size, 13);
  EXPECT_EQ(driver_dirs(), 0);
  EXPECT_TRUE(s->list().empty());
  EXPECT_EQ(code_of([&] { s->get(c1); }), Code::NotFound);
}

TEST_P(StoreTest, DoubleReleaseIsNotRetained) {
  auto s = open_store();
  auto l = reg(*s, empty_tar());
  auto keep = s->get(kEmptyDiff);
  s->release(*l);
  EXPECT_EQ(code_of([&] { s->release(*l); }), Code::NotRetained);
  EXPECT_EQ(s->list().size(), 1u);
  s->release(*keep);
  EXPECT_TRUE(s->list().empty());
}

TEST_P(StoreTest, RegisteringTheSameTarTwiceGivesOneLayer) {
  auto s = open_store();
  std::string tar = make_tar({{TarItem::File, "a", "same"}});
  auto a = reg(*s, tar);
  auto b = reg(*s, tar);
  EXPECT_EQ(a->node().chain_id, b->node().chain_id);
  EXPECT_EQ(&a->node(), &b->node());
  EXPECT_EQ(driver_dirs(), 1);  // nothing of the duplicate stays
  EXPECT_EQ(count_entries(dir_.path() + "/store/tmp"), 0);
  EXPECT_TRUE(s->release(*a).empty());
  EXPECT_EQ(export_stream(*b), tar);
  EXPECT_EQ(s->release(*b).size(), 1u);
}

TEST_P(StoreTest, StoreRestoresAfterReopen) {
  std::string c1, c2, d2;
  std::string t1 = make_tar({{TarItem::File, "x", "xx"}}), t2 = make_tar({{TarItem::File, "y", "yyy"}});
  {
    auto s = open_store();
    auto l1 = reg(*s, t1);
    auto l2 = reg(*s, t2, l1->node().chain_id.str());
    c1 = l1->node().chain_id.str();
    c2 = l2->node().chain_id.str();
    d2 = l2->node().diff_id.str();
    s->retain(c2);  // a persistent reference keeps the chain across the close
  }
  auto s = open_store();
  auto names = s->list();
  std::sort(names.begin(), names.end());
  std::vector<std::string> want{c1, c2};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(names, want);
  auto l2 = s->get(c2);
  EXPECT_EQ(l2->node().diff_id.str(), d2);
  ASSERT_TRUE(l2->node().parent);
  EXPECT_EQ(l2->node().parent->chain_id.str(), c1);
  EXPECT_EQ(l2->node().depth, 2);
  EXPECT_EQ(Store::size(*l2), 5);
  EXPECT_EQ(export_stream(*l2), t2);
  EXPECT_EQ(s->retained(c2), 1);
  s->release(*l2);
  EXPECT_EQ(s->list().size(), 2u);  // still retained persistently
  auto removed = s->unretain(c2);
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_EQ(code_of([&] { s->unretain(c2); }), Code::NotFound);
}

TEST_P(StoreTest, FreshlyOpenedStoreHasNoHandles) {
  {
    auto s = open_store();
    { auto gone = reg(*s, empty_tar()); s->release(*gone); }  // released: the layer goes away
    EXPECT_TRUE(s->list().empty());
    reg(*s, make_tar({{TarItem::File, "dropped", "d"}}));  // dropped without a release: it stays
    EXPECT_EQ(s->list().size(), 1u);
    s->release(*s->get(s->list()[0]));
    auto keep = reg(*s, make_tar({{TarItem::File, "k", "k"}}));
    s.reset();  // closing the store keeps what is committed
  }
  auto s = open_store();
  ASSERT_EQ(s->list().size(), 1u);
  auto l = s->get(s->list()[0]);
  EXPECT_EQ(s->release(*l).size(), 1u);
}

TEST_P(StoreTest, UnknownParentAndMalformedIds) {
  auto s = open_store();
  EXPECT_EQ(code_of([&] { reg(*s, empty_tar(), kEmptyOnEmpty); }), Code::NotFound);
  EXPECT_EQ(code_of([&] { reg(*s, empty_tar(), "sha256:abc"); }), Code::Inval);
  EXPECT_EQ(code_of([&] { s->get("nope"); }), Code::Inval);
  EXPECT_EQ(code_of([&] { s->get(kEmptyDiff); }), Code::NotFound);
  EXPECT_EQ(driver_dirs(), 0);
}

TEST_P(StoreTest, DepthIsCappedAt125) {
  auto s = open_store();
  std::vector<std::unique_ptr<LayerRef>> chain;
  chain.push_back(reg(*s, empty_tar()));
  for (int i = 1; i < kMaxDepth; i++) chain.push_back(reg(*s, empty_tar(), chain.back()->node().chain_id.str()));
  EXPECT_EQ(chain.back()->node().depth, 125);
  EXPECT_EQ(code_of([&] { reg(*s, empty_tar(), chain.back()->node().chain_id.str()); }), Code::MaxDepth);
  EXPECT_EQ(driver_dirs(), 125);
  // Releasing the top releases the whole chain.
  for (size_t i = 0; i + 1 < chain.size(); i++) s->release(*chain[i]);
  EXPECT_EQ(s->release(*chain.back()).size(), 125u);
}

TEST_P(StoreTest, MalformedArchiveLeavesNothingBehind) {
  auto s = open_store();
  std::string tar = make_tar({{TarItem::File, "a", std::string(3000, 'z')}});
  std::string truncated = tar.substr(0, 512 + 1000);
  EXPECT_EQ(code_of([&] { reg(*s, truncated); }), Code::Archive);
  std::string bad = tar;
  bad[148] ^= 0x11;  // header checksum
  EXPECT_EQ(code_of([&] { reg(*s, bad); }), Code::Archive);
  EXPECT_EQ(driver_dirs(), 0);
  EXPECT_EQ(count_entries(dir_.path() + "/store/tmp"), 0);
  EXPECT_TRUE(s->list().empty());
}

TEST_P(StoreTest, EscapingArchiveIsUnsafe) {
  auto s = open_store();
  EXPECT_EQ(code_of([&] { reg(*s, make_tar({{TarItem::File, "../evil", "x"}})); }), Code::Unsafe);
  EXPECT_EQ(code_of([&] {
              reg(*s, make_tar({{TarItem::Symlink, "l", "/etc"}, {TarItem::File, "l/passwd", "x"}}));
            }),
            Code::Unsafe);
  EXPECT_EQ(driver_dirs(), 0);
  EXPECT_FALSE(fs::exists(dir_.path() + "/evil"));
}

TEST_P(StoreTest, ReaderFailureIsUserError) {
  auto s = open_store();
  struct Failing : ByteSource {
    int n = 0;
    size_t read(uint8_t* buf, size_t cap) override {
      if (n++ == 1) throw Error(Code::User, "reader broke").with_user_code(42);
      std::memset(buf, 0, std::min<size_t>(cap, 512));
      return std::min<size_t>(cap, 512);
    }
  } src;
  try {
    s->register_layer("", src);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::User);
    EXPECT_EQ(e.user_code(), 42);
  }
  EXPECT_EQ(driver_dirs(), 0);
}

TEST_P(StoreTest, TarStreamFromParentAndNonAncestor) {
  auto s = open_store();
  auto l1 = reg(*s, make_tar({{TarItem::File, "a", "A"}}));
  auto t2 = make_tar({{TarItem::File, "b", "B"}});
  auto l2 = reg(*s, t2, l1->node().chain_id.str());
  auto other = reg(*s, make_tar({{TarItem::File, "c", "C"}}));
  EXPECT_EQ(code_of([&] { Store::tar_stream_from(*l2, other->node().chain_id.str()); }), Code::NotAncestor);
  EXPECT_EQ(code_of([&] { Store::tar_stream_from(*l2, l2->node().chain_id.str()); }), Code::NotAncestor);
  auto d = Store::tar_stream_from(*l2, l1->node().chain_id.str());
  std::string got = read_all(*d);
  if (GetParam() == "exact") EXPECT_EQ(got, t2);
  else EXPECT_NE(got.find("b"), std::string::npos);
}

TEST_P(StoreTest, DescriptorIsKept) {
  auto s = open_store();
  Descriptor d{"application/vnd.oci.image.layer.v1.tar+gzip",
               "sha256:0000000000000000000000000000000000000000000000000000000000000001", 123};
  MemSource src(empty_tar());
  auto l = s->register_layer("", src, d);
  EXPECT_EQ(l->node().descriptor.media_type, d.media_type);
  EXPECT_EQ(l->node().descriptor.size, 123);
  s->retain(l->node().chain_id.str());
  s->release(*l);
  s.reset();
  s = open_store();
  auto l2 = s->get(kEmptyDiff);
  EXPECT_EQ(l2->node().descriptor.digest, d.digest);
  Descriptor bad{"x", "md5:abc", 1};
  MemSource src2(empty_tar());
  EXPECT_EQ(code_of([&] { s->register_layer("", src2, bad); }), Code::Inval);
}

TEST_P(StoreTest, OrphansOfACrashAreRemovedOnOpen) {
  {
    auto s = open_store();
    auto keep = reg(*s, make_tar({{TarItem::File, "a", "A"}}));
    s->retain(keep->node().chain_id.str());
  }
  // What a crash between driver create and the commit leaves: the intent mark (written before
  // the driver's create) and driver data with no row. Data without a mark is never removed.
  fs::mkdirs(dir_.path() + "/store/" + GetParam() + "/deadbeefdeadbeefdeadbeefdeadbeef");
  fs::write_file_atomic(dir_.path() + "/store/pending/deadbeefdeadbeefdeadbeefdeadbeef", "");
  fs::mkdirs(dir_.path() + "/store/" + GetParam() + "/0123456789abcdef0123456789abcdef");
  fs::mkdirs(dir_.path() + "/store/tmp/junk");
  auto s = open_store();
  EXPECT_EQ(driver_dirs(), 2);  // the kept layer and the unmarked directory
  EXPECT_FALSE(fs::exists(dir_.path() + "/store/" + GetParam() + "/deadbeefdeadbeefdeadbeefdeadbeef"));
  EXPECT_EQ(count_entries(dir_.path() + "/store/tmp"), 0);
  EXPECT_EQ(count_entries(dir_.path() + "/store/pending"), 0);
}

TEST_P(StoreTest, ReopeningWithAnotherDriverIsRefused) {
  { auto s = open_store(); }
  StoreOptions o;
  o.driver_name = GetParam() == "dir" ? "exact" : "dir";
  EXPECT_EQ(code_of([&] { Store::open(dir_.path() + "/store", std::move(o)); }), Code::Inval);
}

// Issue 14: a second open of the same root (in this process too, as the Docker engine's
// TestStoreRestore does) shares the store instead of waiting for the first to close.
TEST_P(StoreTest, SecondOpenSharesTheStore) {
  auto s = open_store();
  auto l = reg(*s, empty_tar());
  StoreOptions o;
  o.driver_name = GetParam();
  o.busy_timeout_ms = 50;
  std::unique_ptr<Store> b;
  ASSERT_EQ(code_of([&] { b = Store::open(dir_.path() + "/store", std::move(o)); }), Code::Ok);
  EXPECT_EQ(b->list().size(), 1u);
  auto lb = b->get(kEmptyDiff);
  EXPECT_EQ(export_stream(*lb), empty_tar());
}

TEST_P(StoreTest, ClosingAHandleDeletesNothing) {
  auto s = open_store();
  auto l = reg(*s, empty_tar());
  Store::close_ref(*l);
  EXPECT_EQ(s->list().size(), 1u);  // as after a restart: no handle, still registered
  auto again = s->get(kEmptyDiff);
  auto look = s->get(kEmptyDiff);
  Store::close_ref(*look);          // a reader looks and closes: nothing happens
  EXPECT_EQ(s->list().size(), 1u);
  EXPECT_EQ(s->release(*again).size(), 1u);
}

// The cascade reaches a parent held only by a stream: the parent goes when the stream does.
TEST_P(StoreTest, CascadeResumesWhenAStreamOnTheParentCloses) {
  auto s = open_store();
  auto p = reg(*s, make_tar({{TarItem::File, "p", "parent"}}));
  auto c = reg(*s, make_tar({{TarItem::File, "c", "child"}}), p->node().chain_id.str());
  auto stream = Store::tar_stream(*p);
  EXPECT_TRUE(s->release(*p).empty());
  EXPECT_EQ(s->release(*c).size(), 1u);  // the child goes; the parent waits for the stream
  EXPECT_EQ(s->list().size(), 1u);
  read_all(*stream);
  stream.reset();
  EXPECT_TRUE(s->list().empty());
}

TEST_P(StoreTest, StreamKeepsTheLayerAlive) {
  auto s = open_store();
  std::string tar = make_tar({{TarItem::File, "a", std::string(5000, 'q')}});
  auto l = reg(*s, tar);
  auto stream = Store::tar_stream(*l);
  EXPECT_TRUE(s->release(*l).empty());
  EXPECT_EQ(read_all(*stream), tar);
  stream.reset();
  EXPECT_TRUE(s->list().empty());
}

// A long-lived process that looks at many layers keeps only the layers it still uses: closed
// handles free their layer's node (and the parents only they used), while a held layer keeps
// itself and its chain, and one live node serves every reference to a ChainID.
TEST_P(StoreTest, ClosedHandlesLeaveNothingLoaded) {
  auto s = open_store();
  std::vector<std::string> ids;
  std::string parent;
  for (int i = 0; i < 40; i++) {  // 4 chains of 10
    if (i % 10 == 0) parent.clear();
    auto l = reg(*s, make_tar({{TarItem::File, "f" + std::to_string(i), std::to_string(i)}}), parent);
    parent = l->node().chain_id.str();
    ids.push_back(parent);
    Store::close_ref(*l);
  }
  EXPECT_EQ(s->loaded_layers(), 0u);
  for (int round = 0; round < 3; round++)
    for (const auto& id : ids) Store::close_ref(*s->get(id));
  EXPECT_EQ(s->loaded_layers(), 0u) << "closed handles keep their layers in memory";

  auto top = s->get(ids[9]);  // a chain of 10: the top holds its nine parents' nodes
  EXPECT_EQ(s->loaded_layers(), 10u);
  auto mid = s->get(ids[4]);
  EXPECT_EQ(&mid->node(), top->node().parent->parent->parent->parent->parent.get())
      << "a second node for a loaded ChainID";
  auto stream = Store::tar_stream(*mid);
  top.reset();  // a dropped handle is closed (LayerRef's destructor)
  EXPECT_EQ(s->loaded_layers(), 5u);
  mid.reset();
  EXPECT_EQ(s->loaded_layers(), 5u) << "the stream holds its layer";
  read_all(*stream);
  stream.reset();
  EXPECT_EQ(s->loaded_layers(), 0u);
  EXPECT_EQ(s->list().size(), ids.size()) << "dropping handles deleted layers";
}

INSTANTIATE_TEST_SUITE_P(Drivers, StoreTest, ::testing::Values("exact", "dir"),
                         [](const auto& info) { return info.param; });

// ---- tamper: exports fail loudly --------------------------------------------------------

TEST(ExactDriverTamper, ChangedByteIsDigestError) {
  TempDir dir;
  StoreOptions o;
  o.driver_name = "exact";
  auto s = Store::open(dir.path(), std::move(o));
  std::string tar = make_tar({{TarItem::File, "a", "payload"}});
  MemSource src(tar);
  auto l = s->register_layer("", src);
  std::string file = dir.path() + "/exact/" + l->node().cache_id + "/layer.tar";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(512);
    f.put('P');
  }
  auto stream = Store::tar_stream(*l);
  try {
    read_all(*stream);
    FAIL() << "tampered stream verified";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::Digest);
    EXPECT_NE(std::string(e.what()).find("could not verify layer data for: " + l->node().diff_id.str() +
                                         ". This may be because internal files in the layer store were modified"),
              std::string::npos);
    EXPECT_EQ(e.diff_id(), l->node().diff_id.str());
  }
  // The error is sticky.
  EXPECT_THROW(read_all(*stream), Error);
}

TEST(ExactDriverTamper, SwappedStreamsAreCaught) {
  TempDir dir;
  StoreOptions o;
  o.driver_name = "exact";
  auto s = Store::open(dir.path(), std::move(o));
  MemSource a(make_tar({{TarItem::File, "a", "AAAA"}})), b(make_tar({{TarItem::File, "b", "BBBB"}}));
  auto la = s->register_layer("", a);
  auto lb = s->register_layer("", b);
  std::string fa = dir.path() + "/exact/" + la->node().cache_id + "/layer.tar";
  std::string fb = dir.path() + "/exact/" + lb->node().cache_id + "/layer.tar";
  ASSERT_EQ(rename(fa.c_str(), (fa + ".x").c_str()), 0);
  ASSERT_EQ(rename(fb.c_str(), fa.c_str()), 0);
  ASSERT_EQ(rename((fa + ".x").c_str(), fb.c_str()), 0);
  auto sa = Store::tar_stream(*la);
  EXPECT_THROW(read_all(*sa), Error);
  unlink(fb.c_str());
  auto sb = Store::tar_stream(*lb);
  try {
    read_all(*sb);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::Corrupt);
  }
}

// ---- error order: the store's scanner before the dir driver's ------------------------------
//
// The dir driver gets the store's parsed and checked entries (lib/tar/scanned.h) instead of
// scanning the stream again. The error a register reports must stay the one of two scanners
// run one after the other per read(): the store's verdict on the bytes of a read() first, then
// the driver's. "a/.wh.b/c" is an entry only the dir driver refuses (Code::Archive, "below a
// whiteout name").

struct RegisterOutcome {
  Code code = Code::Ok;
  std::string message;
};

RegisterOutcome register_chunked(const std::string& tar, size_t chunk, bool staged) {
  TempDir dir;
  StoreOptions o;
  o.driver_name = "dir";
  auto s = Store::open(dir.path() + "/store", std::move(o));
  RegisterOutcome out;
  try {
    MemSource src(tar, chunk);
    if (staged)
      s->stage(src);
    else
      s->register_layer("", src);
  } catch (const Error& e) {
    out.code = e.code();
    out.message = e.what();
  }
  EXPECT_EQ(count_entries(dir.path() + "/store/dir"), 0) << "a failed register left storage";
  EXPECT_TRUE(s->list().empty());
  return out;
}

// Offset of the header block of the entry named `name` (a plain ustar name) in tar.
size_t header_of(const std::string& tar, const std::string& name) {
  for (size_t off = 0; off + 512 <= tar.size(); off += 512)
    if (tar.compare(off, name.size() + 1, name + '\0') == 0) return off;
  ADD_FAILURE() << "no header for " << name;
  return 0;
}

class RegisterErrorOrderTest : public ::testing::TestWithParam<bool> {};

// Both errors in the bytes of one read(): the store's (a bad header checksum after the entry
// the driver refuses) is reported, as when the store scanned the whole read() first.
TEST_P(RegisterErrorOrderTest, StoreErrorLaterInTheSameReadComesFirst) {
  std::string tar = make_tar({{TarItem::File, "a/.wh.b/c", "x"}, {TarItem::File, "z", "y"}});
  tar[header_of(tar, "z") + 148] ^= 0x11;  // header checksum
  auto r = register_chunked(tar, 1 << 20, GetParam());
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_NE(r.message.find("checksum"), std::string::npos) << r.message;
  EXPECT_EQ(r.message.find("whiteout"), std::string::npos) << r.message;
}

TEST_P(RegisterErrorOrderTest, StoreUnsafeLaterInTheSameReadComesFirst) {
  std::string tar = make_tar({{TarItem::File, "a/.wh.b/c", "x"}, {TarItem::File, "../evil", "y"}});
  auto r = register_chunked(tar, 1 << 20, GetParam());
  EXPECT_EQ(r.code, Code::Unsafe) << r.message;
}

// The store's error in a later read(): the driver already refused an earlier one's bytes.
TEST_P(RegisterErrorOrderTest, DriverErrorInAnEarlierReadComesFirst) {
  std::string tar = make_tar({{TarItem::File, "a/.wh.b/c", "x"},
                              {TarItem::File, "pad", std::string(20000, 'p')},
                              {TarItem::File, "z", "y"}});
  const size_t z = header_of(tar, "z");
  ASSERT_GT(z, 4096u * 2);
  tar[z + 148] ^= 0x11;
  auto r = register_chunked(tar, 4096, GetParam());
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_NE(r.message.find("whiteout"), std::string::npos) << r.message;
}

// A stream cut short in the read() where the driver refuses an entry: the store sees the end
// only on the next read(), which the driver no longer makes, so the driver's error is reported.
TEST_P(RegisterErrorOrderTest, DriverErrorBeforeTheEndOfATruncatedStream) {
  std::string tar = make_tar({{TarItem::File, "a/.wh.b/c", "x"}, {TarItem::File, "z", std::string(3000, 'z')}});
  tar.resize(header_of(tar, "z") + 512 + 1000);
  auto r = register_chunked(tar, 1 << 20, GetParam());
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_NE(r.message.find("whiteout"), std::string::npos) << r.message;
  // The truncation alone is the store's error.
  std::string cut = make_tar({{TarItem::File, "z", std::string(3000, 'z')}});
  cut.resize(512 + 1000);
  r = register_chunked(cut, 1 << 20, GetParam());
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_NE(r.message.find("input ends"), std::string::npos) << r.message;
}

// A header-only entry last in a stream without an end-of-archive marker is reported by the
// scanner's finish (end of input): the driver's verdict on it still comes out.
TEST_P(RegisterErrorOrderTest, DriverErrorOnTheLastEntryReportedAtTheEnd) {
  std::string tar = make_tar({{TarItem::File, "ok", "1"}, {TarItem::Dir, "a/.wh.b/d", ""}});
  tar.resize(header_of(tar, "a/.wh.b/d/") + 512);  // no end-of-archive blocks
  auto r = register_chunked(tar, 1 << 20, GetParam());
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_NE(r.message.find("whiteout"), std::string::npos) << r.message;
}

// An entry with a long name is not queued: it makes the tee hand the driver what it queued
// (here the entry the driver refuses) in the middle of a read(). The driver's error is still
// held: a later bad checksum in the same read() is the store's error.
TEST_P(RegisterErrorOrderTest, LongNameInTheMiddleOfAReadKeepsTheOrder) {
  const std::string long_name = std::string(300, 'l') + "/" + std::string(300, 'm');
  std::string tar = make_tar({{TarItem::File, "a/.wh.b/c", "x"}, {TarItem::File, long_name, "y"},
                              {TarItem::File, "z", "y"}});
  std::string bad = tar;
  bad[header_of(bad, "z") + 148] ^= 0x11;
  auto r = register_chunked(bad, 1 << 20, GetParam());
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_NE(r.message.find("checksum"), std::string::npos) << r.message;
  r = register_chunked(tar, 1 << 20, GetParam());
  EXPECT_EQ(r.code, Code::Archive);
  EXPECT_NE(r.message.find("whiteout"), std::string::npos) << r.message;
}

INSTANTIATE_TEST_SUITE_P(RegisterOrStage, RegisterErrorOrderTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "stage" : "register"; });

}  // namespace
