// SPDX-License-Identifier: Apache-2.0
// The dir driver's early write-back (dir_apply.cpp, Applier::start_writeback): a failing
// sync_file_range is handled, not ignored. Injected through the fault point "dir.writeback"
// (ROLAYER_FAULT_ERRNO, in a child process): EIO fails the register with an I/O error naming the
// file and leaves nothing behind; EINTR is retried; a file system without the call (EINVAL)
// registers the layer without early write-back; a kill there leaves what a crashed register
// leaves. The same for a staged register (stage, then commit).
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "reliability_util.h"
#include "store/store.h"
#include "test_util.h"

using namespace rolayer;
using namespace rolayer::test;
using namespace rolayer::reltest;

namespace {

// stage-then-commit: the tar on stdin staged (no parent), then committed on ROLAYER_REL_PARENT;
// retained. "ok <chain>".
int job_stage_then_commit() {
  try {
    auto s = child_open();
    fs::FdSource in(fs::Fd(::dup(0)));
    auto st = s->stage(in);
    auto r = s->commit_staged(*st, child_env("ROLAYER_REL_PARENT"));
    s->retain(r->node().chain_id.str());
    child_result("ok " + r->node().chain_id.str());
  } catch (const Error& e) {
    report_error(e);
  }
  return 0;
}

[[maybe_unused]] const bool kJobs = [] {
  install_child_jobs();
  jobs()["stage-then-commit"] = &job_stage_then_commit;
  return true;
}();

// A layer whose files all reach the early write-back (each file of at least 1 MiB gets it,
// whatever smaller files do), with a marker so that no two are the same.
std::string big_files_layer(std::mt19937_64& rng) {
  std::vector<TarItem> items;
  items.push_back({TarItem::Dir, "d", ""});
  items.push_back({TarItem::File, "d/id-" + std::to_string(rng()), std::to_string(rng())});
  for (int i = 0; i < 3; i++) {
    std::string c((size_t(1) << 20) + 4096 * i + 17, '\0');
    for (auto& ch : c) ch = static_cast<char>(rng());
    items.push_back({TarItem::File, "d/big" + std::to_string(i), c});
  }
  return make_tar(items);
}

struct Line {
  bool ok = false, err = false;
  int code = 0, sys_errno = 0;
  std::string rest;  // the chain (ok) or the message (err)
};
Line last_line(const Outcome& o) {
  Line l;
  for (const auto& s : o.lines) {
    std::istringstream ss(s);
    std::string kind;
    ss >> kind;
    if (kind == "ok") {
      l = Line{};
      l.ok = true;
      ss >> l.rest;
    } else if (kind == "err") {
      l = Line{};
      l.err = true;
      ss >> l.code >> l.sys_errno;
      std::getline(ss, l.rest);
    }
  }
  return l;
}

class WritebackFault : public ::testing::TestWithParam<bool> {  // param: staged
 protected:
  void SetUp() override {
    if (!fault_hooks_built()) GTEST_SKIP() << "built without -DROLAYER_FAULT_HOOKS=ON: no fault points";
    model_.root = scratch_.path() + "/store";
    model_.driver = "dir";
    auto s = model_.open();
    model_.add(*s, big_files_layer(rng_), "");
  }
  Outcome run(const std::string& tar, const std::string& var, const std::string& value) {
    IgnoreSigpipe ig;
    Child ch = spawn_job(GetParam() ? "stage-then-commit" : "register",
                         {{"ROLAYER_REL_ROOT", model_.root}, {"ROLAYER_REL_DRIVER", "dir"}, {"ROLAYER_REL_PARENT", ""},
                          {var, value}},
                         true);
    feed(ch.in, tar.data(), tar.size());
    return finish(ch);
  }
  // The store holds exactly the model's layers, each exporting its tar, nothing left over.
  void expect_clean(const std::string& what) {
    CheckResult r = check_store(model_.root, "dir", model_.tars, {});
    EXPECT_TRUE(r.problems.empty()) << what << "\n  " << join(r.problems, "\n  ");
  }
  Scratch scratch_;
  StoreModel model_;
  std::mt19937_64 rng_{1818};
};

TEST_P(WritebackFault, IoErrorFailsTheLayerAndLeavesNothing) {
  for (int nth : {1, 3}) {  // the first file's, the last file's
    std::string tar = big_files_layer(rng_);
    Outcome o = run(tar, "ROLAYER_FAULT_ERRNO", "dir.writeback:" + std::to_string(nth) + "=5");
    const std::string what = "EIO at write-back " + std::to_string(nth) + ": " + o.describe();
    ASSERT_TRUE(o.exited) << what;
    Line l = last_line(o);
    ASSERT_TRUE(l.err) << what;  // ignoring the failure would have registered the layer
    EXPECT_EQ(l.code, static_cast<int>(Code::Io)) << what;
    EXPECT_EQ(l.sys_errno, 5) << what;
    EXPECT_NE(l.rest.find("cannot start the write-back of"), std::string::npos) << what;
    EXPECT_NE(l.rest.find("d/big"), std::string::npos) << what;  // the file is named
    expect_clean(what);
    EXPECT_FALSE(check_store(model_.root, "dir", model_.tars, {}).present.count(chain_of("", tar))) << what;
  }
}

TEST_P(WritebackFault, InterruptedCallIsRetried) {
  std::string tar = big_files_layer(rng_);
  Outcome o = run(tar, "ROLAYER_FAULT_ERRNO", "dir.writeback:2=4");
  Line l = last_line(o);
  ASSERT_TRUE(l.ok) << o.describe();
  EXPECT_EQ(l.rest, chain_of("", tar));
  model_.tars[l.rest] = tar;
  expect_clean("EINTR: " + o.describe());
}

TEST_P(WritebackFault, UnsupportedFileSystemRegistersWithoutIt) {
  for (int e : {EINVAL, ENOSYS, EOPNOTSUPP}) {
    std::string tar = big_files_layer(rng_);
    Outcome o = run(tar, "ROLAYER_FAULT_ERRNO", "dir.writeback:1=" + std::to_string(e));
    Line l = last_line(o);
    ASSERT_TRUE(l.ok) << "errno " << e << ": " << o.describe();
    EXPECT_EQ(l.rest, chain_of("", tar));
    model_.tars[l.rest] = tar;
  }
  expect_clean("unsupported");
}

TEST_P(WritebackFault, KillAtWritebackLeavesWhatACrashLeaves) {
  std::string tar = big_files_layer(rng_);
  Outcome o = run(tar, "ROLAYER_FAULT_KILL", "dir.writeback:2");
  EXPECT_TRUE(o.killed) << o.describe();
  expect_clean("kill: " + o.describe());
  // And the same layer registers whole afterwards.
  auto s = model_.open();
  model_.add(*s, tar, "");
  s.reset();
  expect_clean("after the kill, registered again");
}

INSTANTIATE_TEST_SUITE_P(RegisterOrStage, WritebackFault, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "stage" : "register"; });

}  // namespace
