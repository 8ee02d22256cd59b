// SPDX-License-Identifier: Apache-2.0
// Staged registers of layers that do not declare their parent directories (issue 18: the tar
// streams of bazel rules_oci, ko and hand-made layers): the dir driver applies them while
// staged, with the undeclared directories as placeholders, and the commit gives those the
// metadata of the parent chain. The result must be what one register after the other gives,
// byte for byte: the layer's tree (modes, owners, times, extended attributes, overlay markers),
// its meta files, DiffID, ChainID, sizes and export; a failure or a crash during the commit's
// fix-up leaves nothing and the store consistent.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "reliability_util.h"
#include "tar_builder.h"

using namespace rolayer;
using namespace rolayer::test;
using namespace rolayer::reltest;
namespace stdfs = std::filesystem;

namespace {

// Entry times of the tests: far in the past, so that a directory the apply made (whose times
// are the apply's) is told apart from one with an entry's or a lower layer's times.
constexpr int64_t kOld = 1500000000;

using M = TarMeta;
using Tar = TarBuilder;

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string raw_xattrs(const std::string& p) {
  std::vector<char> names(65536);
  ssize_t n = ::llistxattr(p.c_str(), names.data(), names.size());
  if (n <= 0) return "";
  std::vector<std::string> ks;
  for (size_t i = 0; i < static_cast<size_t>(n); i += std::strlen(names.data() + i) + 1) ks.emplace_back(names.data() + i);
  std::sort(ks.begin(), ks.end());
  std::string out;
  for (auto& k : ks) {
    std::string v(65536, '\0');
    ssize_t m = ::lgetxattr(p.c_str(), k.c_str(), v.data(), v.size());
    v.resize(m < 0 ? 0 : static_cast<size_t>(m));
    out += " " + k + "=[" + v + "]";
  }
  return out;
}

// Every object of a layer's directory (diff/ and meta/; meta/parent names the store's own
// cache id and is left out): type, mode, owner, times (when an entry or a lower layer gave
// them; "new" for the apply's own), extended attributes as stored, content, hard-link peer.
std::map<std::string, std::string> layer_tree(const std::string& root, int64_t t0) {
  std::map<std::string, std::string> out;
  std::map<ino_t, std::string> inodes;
  std::vector<std::string> paths{""};
  for (auto it = stdfs::recursive_directory_iterator(root); it != stdfs::recursive_directory_iterator(); ++it)
    paths.push_back(it->path().lexically_relative(root).string());
  std::sort(paths.begin(), paths.end());
  for (auto& rel : paths) {
    if (rel == "meta/parent") continue;
    const std::string p = rel.empty() ? root : root + "/" + rel;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) {
      out[rel] = "<lstat failed>";
      continue;
    }
    std::string d = std::string(1, S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' : S_ISLNK(st.st_mode) ? 'l' : 'o') +
                    " mode " + std::to_string(st.st_mode & 07777) + " owner " + std::to_string(st.st_uid) + ":" +
                    std::to_string(st.st_gid) + " mtime " +
                    (st.st_mtim.tv_sec >= t0 ? std::string("new")
                                             : std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec)) +
                    raw_xattrs(p);
    if (S_ISREG(st.st_mode)) {
      d += " data [" + slurp(p) + "]";
      if (st.st_nlink > 1) d += " peer " + inodes.emplace(st.st_ino, rel).first->second;
    } else if (S_ISLNK(st.st_mode)) {
      d += " -> " + stdfs::read_symlink(p).string();
    }
    out[rel] = d;
  }
  return out;
}

std::string tree_diff(const std::map<std::string, std::string>& want, const std::map<std::string, std::string>& got) {
  std::string s;
  for (auto& [k, v] : want) {
    auto it = got.find(k);
    if (it == got.end()) s += "missing " + k + ": " + v + "\n";
    else if (it->second != v) s += "differs " + k + ":\n  register " + v + "\n  staged   " + it->second + "\n";
  }
  for (auto& [k, v] : got)
    if (!want.count(k)) s += "extra " + k + ": " + v + "\n";
  return s;
}

std::unique_ptr<Store> open_dir_store(const std::string& root) {
  StoreOptions o;
  o.driver_name = "dir";
  return Store::open(root, std::move(o));
}

// Registers `lower` one after the other in two stores; then, in the first, `top` one after the
// other too, and in the second stages every layer of `top` at once (threads) and commits them
// in order. Returns the differences (empty: none), checking that no top layer was deferred.
std::string compare_serial_and_staged(const std::string& base, const std::vector<std::string>& lower,
                                      const std::vector<std::string>& top) {
  const int64_t t0 = static_cast<int64_t>(::time(nullptr));
  std::string problems;
  auto a = open_dir_store(base + "/serial");
  auto b = open_dir_store(base + "/staged");
  std::string pa, pb;
  std::vector<std::unique_ptr<LayerRef>> keep;
  for (const auto& t : lower) {
    MemSource s1(t), s2(t);
    keep.push_back(a->register_layer(pa, s1));
    pa = keep.back()->node().chain_id.str();
    keep.push_back(b->register_layer(pb, s2));
    pb = keep.back()->node().chain_id.str();
  }
  std::vector<std::unique_ptr<LayerRef>> ra, rb;
  for (const auto& t : top) {
    MemSource s(t, 4096 + 17);
    ra.push_back(a->register_layer(pa, s));
    pa = ra.back()->node().chain_id.str();
  }
  std::vector<std::unique_ptr<StagedLayer>> staged(top.size());
  std::vector<std::string> errors(top.size());
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < top.size(); i++)
      threads.emplace_back([&, i] {
        try {
          MemSource s(top[i], 4096 + 17);
          staged[i] = b->stage(s);
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    for (auto& t : threads) t.join();
  }
  for (size_t i = 0; i < top.size(); i++) {
    if (!staged[i]) return "layer " + std::to_string(i) + ": stage failed: " + errors[i];
    if (staged[i]->deferred()) problems += "layer " + std::to_string(i) + " is deferred\n";
  }
  for (size_t i = 0; i < top.size(); i++) {
    rb.push_back(b->commit_staged(*staged[i], pb));
    pb = rb.back()->node().chain_id.str();
  }
  for (size_t i = 0; i < top.size(); i++) {
    const LayerNode& x = ra[i]->node();
    const LayerNode& y = rb[i]->node();
    const std::string L = "layer " + std::to_string(i) + ": ";
    if (x.chain_id != y.chain_id) problems += L + "ChainID " + x.chain_id.str() + " / " + y.chain_id.str() + "\n";
    if (x.diff_id != y.diff_id) problems += L + "DiffID differs\n";
    if (x.diff_size != y.diff_size || x.stream_size != y.stream_size || x.depth != y.depth)
      problems += L + "sizes or depth differ\n";
    for (auto* r : {ra[i].get(), rb[i].get()}) {
      auto src = Store::tar_stream(*r);
      if (read_all(*src) != top[i]) problems += L + "export differs from the input\n";
    }
    std::string d = tree_diff(layer_tree(base + "/serial/dir/" + x.cache_id, t0),
                              layer_tree(base + "/staged/dir/" + y.cache_id, t0));
    if (!d.empty()) problems += L + "trees differ:\n" + d;
  }
  staged.clear();
  for (const char* d : {"/staged/tmp", "/staged/pending"})
    if (!dir_entries(base + d).empty()) problems += std::string(d) + " is not empty\n";
  return problems;
}

M dm(unsigned mode, int64_t uid = 0, int64_t gid = 0, int64_t mtime = kOld + 1000, long nsec = 0,
     std::vector<std::pair<std::string, std::string>> xattrs = {}) {
  return M{mode, uid, gid, mtime, nsec, std::move(xattrs)};
}

// The lower layers: directories with unusual modes, owners, times and attributes, an opaque
// directory, a whiteout, a non-directory where the top layers put a directory.
std::vector<std::string> lower_layers(bool root) {
  std::vector<std::pair<std::string, std::string>> xa{{"user.origin", "lower"}, {"user.both", "lower"}};
  if (root) xa.emplace_back("trusted.lower", "t");
  Tar l1;
  l1.dir("usr", dm(0711, 3, 4, kOld + 11, 123456789, xa))
      .dir("usr/lib", dm(0750, 5, 6, kOld + 12, 5))
      .dir("srv", dm(02775, 0, 50, kOld + 13, 0, {{"user.sg", "1"}}))
      .dir("ro", dm(0500, 7, 8, kOld + 14))
      .dir("w", dm(0755, 0, 0, kOld + 15))
      .file("w/old", "old\n")
      .dir("o", dm(0755, 0, 0, kOld + 16))
      .dir("o/sub", dm(0700, 9, 9, kOld + 17))
      .dir("d", dm(01777, 2, 2, kOld + 18, 42, xa))
      .file("nd", "a file\n")
      .dir("a", dm(0755, 1, 1, kOld + 19))
      .dir("a/b", dm(0705, 1, 2, kOld + 20))
      .dir("a/b/c", dm(0770, 2, 1, kOld + 21, 0, {{"user.deep", "c"}}));
  Tar l2;  // w whited out; o opaque (o/sub no longer visible), with its own metadata
  l2.file(".wh.w", "").dir("o", dm(0751, 11, 12, kOld + 30)).file("o/.wh..wh..opq", "").file("o/new", "new\n");
  return {l1.finish(), l2.finish()};
}

// Top layers without (most) directory entries.
std::vector<std::string> top_layers() {
  Tar t1;  // one level, two levels, set-gid parent, read-only parent, whited-out and opaque parents
  t1.file("usr/f", "f\n")
      .file("usr/lib/libx.so", "x\n")
      .file("usr/lib/new/deeper/file", "n\n")
      .file("srv/www/index.html", "<html>\n")
      .file("ro/r", "r\n", M{0444})
      .file("w/again", "w\n")
      .file("o/sub/s", "s\n")
      .file("o/x", "x\n")
      .file("a/b/c/d/e/f/g", "g\n")
      .file("nd/child", "below a lower file\n")
      .file("fresh/p/q", "no lower directory\n");
  Tar t2;  // its own whiteouts and opaque markers inside undeclared directories, declared late
  t2.file("usr/lib/.wh.libx.so", "")
      .file("srv/.wh..wh..opq", "")
      .file("srv/kept", "k\n")
      .file("d/inner/file", "i\n")
      .dir("d", dm(0755, 21, 22, kOld + 40, 0, {{"user.both", "entry"}, {"user.entry", "e"}}))
      .file("a/b/c/later", "l\n")
      .file(".wh.a", "");  // the layer's cuts grow after a/b/c was made
  Tar t3;  // directories only the staged layers below (committed just before) provide
  t3.file("srv/www/css/site.css", "css\n").file("usr/lib/new/deeper/more", "m\n").file("fresh/p/r", "r\n");
  return {t1.finish(), t2.finish(), t3.finish()};
}

}  // namespace

TEST(StageImplicitDirs, ParallelStagesEqualSerialRegisters) {
  TempDir dir;
  EXPECT_EQ(compare_serial_and_staged(dir.path(), lower_layers(::geteuid() == 0), top_layers()), "");
}

TEST(StageImplicitDirs, BaseLayerWithoutDirectoryEntries) {
  TempDir dir;
  EXPECT_EQ(compare_serial_and_staged(dir.path(), {}, top_layers()), "");
}

TEST(StageImplicitDirs, HardLinkIntoTheParentStaysDeferred) {
  // The parent's data is needed: applied again at commit, with the same result.
  TempDir dir;
  auto s = open_dir_store(dir.path() + "/store");
  Tar b;
  b.file("usr/bin/tool", "tool\n");
  MemSource src(b.finish());
  auto base = s->register_layer("", src);
  Tar t;
  t.file("usr/share/doc", "d\n").hardlink("usr/bin/tool2", "usr/bin/tool");
  MemSource ts(t.finish());
  auto st = s->stage(ts);
  EXPECT_TRUE(st->deferred());
  auto top = s->commit_staged(*st, base->node().chain_id.str());
  EXPECT_EQ(top->node().depth, 2);
}

// As an unprivileged user (a throwaway uid, no groups): the store keeps real modes in the
// override_stat attribute, which the placeholders must get as a register gives it. Run in a
// re-executed child (the overlay form is decided once per process, by its user).
TEST(StageImplicitDirs, UnprivilegedStore) {
  TempDir dir;
  if (::geteuid() != 0) {  // unprivileged already
    EXPECT_EQ(compare_serial_and_staged(dir.path(), lower_layers(false), top_layers()), "");
    return;
  }
  const uid_t uid = static_cast<uid_t>(62000 + ::getpid() % 3000);
  ASSERT_EQ(::chown(dir.path().c_str(), uid, uid), 0);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0700), 0);
  Child ch = spawn_job("unprivileged-compare", {{"ROLAYER_REL_ROOT", dir.path()}, {"ROLAYER_REL_UID", std::to_string(uid)}},
                       false);
  Outcome o = finish(ch);
  std::system(("chmod -R u+rwx '" + dir.path() + "' 2>/dev/null").c_str());
  ASSERT_TRUE(o.exited && o.status == 0) << join(o.lines, "\n");
  ASSERT_FALSE(o.lines.empty());
  if (o.lines[0].rfind("skip", 0) == 0) GTEST_SKIP() << o.lines[0];
  EXPECT_EQ(o.lines[0], "ran");
  std::vector<std::string> rest(o.lines.begin() + 1, o.lines.end());
  EXPECT_EQ(join(rest, "\n"), "");
}

// ---- faults during the commit's fix-up ----------------------------------------------------

namespace {

// stage-commit: stages the tar on stdin, commits it on ROLAYER_REL_PARENT (the fault point
// may fail it: "err …"), then commits the same staged layer again; retains it. "ok <chain>".
int job_stage_commit() {
  try {
    auto s = child_open();
    fs::FdSource in(fs::Fd(::dup(0)));
    auto st = s->stage(in);
    if (st->deferred()) child_result("deferred");
    std::unique_ptr<LayerRef> r;
    try {
      r = s->commit_staged(*st, child_env("ROLAYER_REL_PARENT"));
    } catch (const Error& e) {
      report_error(e);
      r = s->commit_staged(*st, child_env("ROLAYER_REL_PARENT"));
    }
    s->retain(r->node().chain_id.str());
    child_result("ok " + r->node().chain_id.str());
  } catch (const Error& e) {
    report_error(e);
  }
  return 0;
}

// unprivileged-compare: as uid ROLAYER_REL_UID (no groups), compare_serial_and_staged in
// ROLAYER_REL_ROOT. "ran", then the differences, one line each.
int job_unprivileged_compare() {
  const uid_t uid = static_cast<uid_t>(env_long("ROLAYER_REL_UID", 0));
  if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0 ||
      ::geteuid() == 0) {
    child_result(std::string("skip: cannot switch to an unprivileged uid: ") + std::strerror(errno));
    return 0;
  }
  std::string d;
  try {
    d = compare_serial_and_staged(child_env("ROLAYER_REL_ROOT"), lower_layers(false), top_layers());
  } catch (const std::exception& e) {
    d = std::string("exception: ") + e.what();
  }
  child_result("ran");
  std::stringstream ss(d);
  std::string line;
  while (std::getline(ss, line)) child_result(line);
  return 0;
}

[[maybe_unused]] const bool kJobs = [] {
  install_child_jobs();
  jobs()["stage-commit"] = &job_stage_commit;
  jobs()["unprivileged-compare"] = &job_unprivileged_compare;
  return true;
}();

}  // namespace

TEST(StageImplicitDirs, FaultsDuringTheFixUp) {
  if (!fault_hooks_built()) GTEST_SKIP() << "built without -DROLAYER_FAULT_HOOKS=ON: no fault points";
  Scratch scratch;
  StoreModel model;
  model.root = scratch.path() + "/store";
  model.driver = "dir";
  auto lower = lower_layers(::geteuid() == 0);
  std::string parent;
  {
    auto s = model.open();
    for (const auto& t : lower) parent = model.add(*s, t, parent);
  }
  const std::string tar = top_layers()[0];
  const std::string chain = chain_of(parent, tar);
  IgnoreSigpipe ig;
  // Killed in the middle of the fix-up (after its first directory): nothing of the layer stays.
  for (long nth : {1L, 3L}) {
    Child ch = spawn_job("stage-commit",
                         {{"ROLAYER_REL_ROOT", model.root},
                          {"ROLAYER_REL_DRIVER", "dir"},
                          {"ROLAYER_REL_PARENT", parent},
                          {"ROLAYER_FAULT_KILL", "stage.fixup:" + std::to_string(nth)}},
                         true);
    feed(ch.in, tar.data(), tar.size());
    Outcome o = finish(ch);
    EXPECT_FALSE(o.exited) << "the fault point was not reached: " << join(o.lines, " | ");
    CheckResult r = check_store(model.root, "dir", model.tars, {});
    EXPECT_TRUE(r.problems.empty()) << join(r.problems, "\n");
    EXPECT_FALSE(r.present.count(chain));
  }
  // An I/O error there: a clean error, the staged layer committed again on the same parent
  // gives the layer a register gives.
  {
    Child ch = spawn_job("stage-commit",
                         {{"ROLAYER_REL_ROOT", model.root},
                          {"ROLAYER_REL_DRIVER", "dir"},
                          {"ROLAYER_REL_PARENT", parent},
                          {"ROLAYER_FAULT_ERRNO", "stage.fixup:2=5"}},
                         true);
    feed(ch.in, tar.data(), tar.size());
    Outcome o = finish(ch);
    ASSERT_TRUE(o.exited && o.status == 0);
    const std::string lines = join(o.lines, " | ");
    EXPECT_EQ(lines.find("deferred"), std::string::npos) << lines;
    EXPECT_NE(lines.find("err " + std::to_string(static_cast<int>(Code::Io)) + " 5 "), std::string::npos) << lines;
    EXPECT_NE(lines.find("ok " + chain), std::string::npos) << lines;
    model.tars[chain] = tar;
    model.parent[chain] = parent;
    CheckResult r = check_store(model.root, "dir", model.tars, {});
    EXPECT_TRUE(r.problems.empty()) << join(r.problems, "\n");
  }
  // The committed layer's tree is a register's.
  const std::string ref = scratch.path() + "/ref";
  std::string ref_cache, got_cache;
  {
    auto s = open_dir_store(ref);
    std::string p;
    std::vector<std::unique_ptr<LayerRef>> keep;
    for (const auto& t : lower) {
      MemSource src(t);
      keep.push_back(s->register_layer(p, src));
      p = keep.back()->node().chain_id.str();
    }
    MemSource src(tar);
    auto top = s->register_layer(p, src);
    ASSERT_EQ(top->node().chain_id.str(), chain);
    ref_cache = top->node().cache_id;
    s->retain(chain);
  }
  {
    auto s = model.open();
    got_cache = s->get(chain)->node().cache_id;
  }
  EXPECT_EQ(tree_diff(layer_tree(ref + "/dir/" + ref_cache, kOld + 100000),
                      layer_tree(model.root + "/dir/" + got_cache, kOld + 100000)),
            "");
}
