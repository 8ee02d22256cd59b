// SPDX-License-Identifier: Apache-2.0
// Staged registers (Store::stage / commit_staged / discard_staged; rolayer/stage.h): layers
// applied before their parent is known, committed in chain order, on every built-in driver.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <functional>
#include <thread>

#include "core/error.h"
#include "store/store.h"
#include "test_util.h"

using namespace rolayer;
using namespace rolayer::test;

namespace {

Code code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return Code::Ok;
}

// Names in dir, except the driver's own dot files (.format, .empty).
std::vector<std::string> names(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (struct dirent* de = readdir(d))
    if (de->d_name[0] != '.') out.emplace_back(de->d_name);
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// A chain whose layers need their parent in every way the dir driver knows.
std::vector<std::string> chain_tars() {
  return {
      make_tar({{TarItem::Dir, "etc", "", 0750},
                {TarItem::File, "etc/one", "one\n"},
                {TarItem::Dir, "usr", "", 0711},
                {TarItem::Dir, "usr/bin", "", 0755},
                {TarItem::File, "usr/bin/tool", std::string(300000, 't')}}),
      // a hard link inside the layer, a whiteout
      make_tar({{TarItem::Dir, "etc", "", 0755}, {TarItem::File, "etc/two", "two\n"},
                {TarItem::Hardlink, "etc/two-again", "etc/two"},
                {TarItem::File, "etc/.wh.one", ""}}),
      // a hard link into the parent's file: needs the parent
      make_tar({{TarItem::Dir, "usr", "", 0711}, {TarItem::Dir, "usr/bin", "", 0755},
                {TarItem::Hardlink, "usr/bin/tool2", "usr/bin/tool"}}),
      // a parent directory that only a lower layer declares
      make_tar({{TarItem::File, "usr/share/doc/readme", "read me\n"}}),
      make_tar({{TarItem::Dir, "var", "", 0755}, {TarItem::File, "var/log", "log\n"}}),
  };
}

class StageTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::string root(const std::string& name = "store") const { return dir_.path() + "/" + name; }
  std::unique_ptr<Store> open_store(const std::string& name = "store") {
    StoreOptions o;
    o.driver_name = GetParam();
    return Store::open(root(name), std::move(o));
  }
  std::unique_ptr<StagedLayer> stage(Store& s, const std::string& tar) {
    MemSource src(tar, 4096 + 17);
    return s.stage(src);
  }
  // Nothing but the committed layers' data: no temporary file, no intent mark.
  void expect_clean(size_t layers) {
    EXPECT_EQ(names(root() + "/tmp"), std::vector<std::string>{});
    EXPECT_EQ(names(root() + "/pending"), std::vector<std::string>{});
    EXPECT_EQ(names(root() + "/" + GetParam()).size(), layers);
  }
  TempDir dir_;
};

TEST_P(StageTest, ParallelStagesCommitToTheSerialChain) {
  auto tars = chain_tars();
  // The reference: one register after the other.
  std::vector<std::string> want;
  auto serial = open_store("serial");
  std::vector<std::unique_ptr<LayerRef>> serial_refs;
  {
    auto& s = serial;
    std::string parent;
    auto& refs = serial_refs;
    for (const auto& t : tars) {
      MemSource src(t);
      refs.push_back(s->register_layer(parent, src));
      parent = refs.back()->node().chain_id.str();
      want.push_back(parent);
    }
  }
  auto s = open_store();
  std::vector<std::unique_ptr<StagedLayer>> staged(tars.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < tars.size(); i++)
    threads.emplace_back([&, i] { staged[i] = stage(*s, tars[i]); });
  for (auto& t : threads) t.join();
  const bool dir = GetParam() == "dir";
  for (size_t i = 0; i < tars.size(); i++) {
    ASSERT_TRUE(staged[i]);
    EXPECT_EQ(staged[i]->diff_id().str(), "sha256:" + sha256_hex(tars[i]));
    EXPECT_EQ(staged[i]->stream_size(), static_cast<int64_t>(tars[i].size()));
    // Applied while staged on the dir driver, except the layer that needs its parent's data
    // (the hard link); undeclared parent directories (layer 3) are fixed up at commit.
    EXPECT_EQ(staged[i]->deferred(), !dir || i == 2) << "layer " << i;
  }
  std::string parent;
  std::vector<std::unique_ptr<LayerRef>> refs;
  for (size_t i = 0; i < tars.size(); i++) {
    refs.push_back(s->commit_staged(*staged[i], parent));
    parent = refs.back()->node().chain_id.str();
    EXPECT_EQ(parent, want[i]) << "layer " << i;
    EXPECT_EQ(refs.back()->node().depth, static_cast<int>(i) + 1);
  }
  for (size_t i = 0; i < tars.size(); i++) {
    auto src = Store::tar_stream(*refs[i]);
    EXPECT_EQ(read_all(*src), tars[i]) << "layer " << i;
  }
  staged.clear();  // freeing committed layers removes nothing
  expect_clean(tars.size());
  for (size_t i = 0; i < tars.size(); i++) {
    auto src = Store::tar_stream(*refs[i]);
    EXPECT_EQ(read_all(*src), tars[i]) << "layer " << i;
  }
  if (dir) {
    // The layer's own tree: the hard link into the parent was copied up and linked.
    auto top = refs[2]->node().cache_id;
    struct stat a, b;
    ASSERT_EQ(::stat((root() + "/dir/" + top + "/diff/usr/bin/tool").c_str(), &a), 0);
    ASSERT_EQ(::stat((root() + "/dir/" + top + "/diff/usr/bin/tool2").c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    // The undeclared parent directories are what a register on the parent makes of them.
    for (const char* d : {"usr", "usr/share", "usr/share/doc"}) {
      ASSERT_EQ(::stat((root() + "/dir/" + refs[3]->node().cache_id + "/diff/" + d).c_str(), &a), 0);
      ASSERT_EQ(::stat((root("serial") + "/dir/" + serial_refs[3]->node().cache_id + "/diff/" + d).c_str(), &b), 0);
      EXPECT_EQ(a.st_mode, b.st_mode) << d;
      EXPECT_EQ(a.st_uid, b.st_uid) << d;
      if (std::string(d) == "usr") {
        EXPECT_EQ(a.st_mtim.tv_sec, b.st_mtim.tv_sec) << d;  // the lower layer's
      }
    }
  }
}

TEST_P(StageTest, CommitRefusals) {
  auto tars = chain_tars();
  auto s = open_store();
  auto other = open_store("other");
  auto base = stage(*s, tars[0]);
  auto child = stage(*s, tars[1]);
  // An unknown parent, a malformed one, another store: refused, the staged layer unchanged.
  EXPECT_EQ(code_of([&] { s->commit_staged(*child, "sha256:" + std::string(64, 'a')); }), Code::NotFound);
  EXPECT_EQ(code_of([&] { s->commit_staged(*child, "nonsense"); }), Code::Inval);
  EXPECT_EQ(code_of([&] { other->commit_staged(*base, ""); }), Code::Inval);
  auto b = s->commit_staged(*base, "");
  EXPECT_EQ(code_of([&] { s->commit_staged(*base, ""); }), Code::Inval);  // committed already
  auto c = s->commit_staged(*child, b->node().chain_id.str());
  EXPECT_EQ(c->node().parent->chain_id, b->node().chain_id);
  // Discarded: refused.
  auto gone = stage(*s, tars[4]);
  Store::discard_staged(*gone);
  Store::discard_staged(*gone);  // idempotent
  EXPECT_EQ(code_of([&] { s->commit_staged(*gone, ""); }), Code::Inval);
  // A hard link to a file that is in no layer: found out at commit (the parent is known then).
  auto bad = stage(*s, make_tar({{TarItem::Hardlink, "x", "usr/bin/nowhere"}}));
  EXPECT_EQ(code_of([&] { s->commit_staged(*bad, c->node().chain_id.str()); }), Code::Archive);
  bad.reset();
  // … but a link to the parent's file commits on that parent.
  auto link = stage(*s, make_tar({{TarItem::Hardlink, "etc/one-link", "etc/one"}}));
  auto l = s->commit_staged(*link, b->node().chain_id.str());
  link.reset();
  auto src = Store::tar_stream(*l);
  EXPECT_EQ(read_all(*src), make_tar({{TarItem::Hardlink, "etc/one-link", "etc/one"}}));
  gone.reset();
  expect_clean(3);
  // A read-only store stages nothing.
  {
    StoreOptions o;
    o.driver_name = GetParam();
    o.read_only = true;
    auto ro = Store::open(root(), std::move(o));
    MemSource in(tars[4]);
    EXPECT_EQ(code_of([&] { ro->stage(in); }), Code::Io);
  }
}

TEST_P(StageTest, FreeLeavesNothing) {
  auto tars = chain_tars();
  auto s = open_store();
  {
    auto a = stage(*s, tars[0]);
    auto b = stage(*s, tars[2]);
    EXPECT_FALSE(names(root() + "/tmp").empty());
  }
  expect_clean(0);
  // A stage that fails half way (an entry that escapes the layer) leaves nothing either.
  std::string bad = make_tar({{TarItem::File, "a", std::string(100000, 'a')}, {TarItem::File, "../escape", "x"}});
  MemSource in(bad);
  EXPECT_EQ(code_of([&] { s->stage(in); }), Code::Unsafe);
  expect_clean(0);
  EXPECT_TRUE(s->list().empty());
}

TEST_P(StageTest, SameLayerTwiceConverges) {
  auto tars = chain_tars();
  auto s = open_store();
  auto a = stage(*s, tars[0]);
  auto b = stage(*s, tars[0]);
  auto ra = s->commit_staged(*a, "");
  auto rb = s->commit_staged(*b, "");
  EXPECT_EQ(ra->node().chain_id, rb->node().chain_id);
  EXPECT_EQ(ra->node().cache_id, rb->node().cache_id);
  a.reset();
  b.reset();
  expect_clean(1);
  // Committed after the store was closed: refused; freed: nothing is touched.
  auto late = stage(*s, tars[4]);
  s.reset();
  late.reset();
  auto again = open_store();  // the next open collects the closed session's staged data
  expect_clean(1);
}

TEST_P(StageTest, CrashBetweenStageAndCommitIsCollected) {
  auto tars = chain_tars();
  {
    auto s = open_store();
    MemSource src(tars[0]);
    s->register_layer("", src);
  }
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child stages two layers and dies without committing or freeing them.
    try {
      auto s = open_store();
      auto a = stage(*s, tars[1]);
      auto b = stage(*s, tars[4]);
      const size_t marks = GetParam() == "dir" ? 2 : 0;  // exact: the streams are kept in tmp only
      if (names(root() + "/tmp").size() != 2 || names(root() + "/pending").size() != marks) ::_exit(3);
      ::_exit(0);
    } catch (...) {
      ::_exit(2);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  // The next open finds the session dead and removes its staged data.
  auto s = open_store();
  expect_clean(1);
  EXPECT_EQ(s->list().size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Drivers, StageTest, ::testing::Values("dir", "exact"));

}  // namespace
