// SPDX-License-Identifier: Apache-2.0
// I/O faults (docs/reliability.md): ENOSPC, EIO and EACCES during register, release, open and
// export — injected at the store's fault points and at the file helpers' (lib/core/fs.cpp:
// fs.write, fs.read, fs.fsync, fs.mkdir, fs.rename, fs.remove) with ROLAYER_FAULT_ERRNO, and
// real where this machine allows it: a store another user cannot write (a child that drops to
// uid 65534), a read-only bind mount and a full tmpfs (in a private mount namespace). Each must
// give a clean error (Code::Io carrying the errno) and leave the store consistent: on reopen no
// half layer, nothing orphaned, every earlier layer exports verified (reltest::check_store).
#include <gtest/gtest.h>
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>

#include <functional>
#include <random>

#include "reliability_util.h"

using namespace rolayer;
using namespace rolayer::reltest;

namespace {

[[maybe_unused]] const bool kJobs = [] {
  install_child_jobs();
  // export: reads ROLAYER_REL_CHAIN's verified stream to the end. "ok <bytes>".
  jobs()["export"] = [] {
    try {
      auto s = child_open();
      auto r = s->get(child_env("ROLAYER_REL_CHAIN"));
      ExportResult e = export_layer(*r);
      if (e.ok) child_result("ok " + std::to_string(e.data.size()));
      else child_result("err " + std::to_string(static_cast<int>(e.code)) + " " + std::to_string(e.sys_errno) + " " +
                        e.message);
    } catch (const Error& e) {
      report_error(e);
    }
    return 0;
  };
  return true;
}();

constexpr int kNobody = 65534;

// "err <code> <errno> <message>" from a child.
struct ChildError {
  bool is_err = false;
  int code = 0, err = 0;
  std::string message;
};
ChildError parse_err(const std::vector<std::string>& lines) {
  ChildError e;
  for (const auto& l : lines) {
    if (l.rfind("err ", 0) != 0) continue;
    std::istringstream ss(l.substr(4));
    ss >> e.code >> e.err;
    std::getline(ss, e.message);
    e.is_err = true;
  }
  return e;
}

// Runs fn in a forked child (not re-executed: for privilege and mount-namespace changes) and
// returns the lines it produced; a child that dies gives a line saying so.
std::vector<std::string> in_fork(const std::function<std::vector<std::string>()>& fn) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return {"pipe failed"};
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    std::string out;
    try {
      for (const auto& l : fn()) out += l + "\n";
    } catch (const std::exception& e) {
      out += std::string("child exception: ") + e.what() + "\n";
    }
    const char* d = out.data();
    size_t left = out.size();
    while (left) {
      ssize_t n = ::write(p[1], d, left);
      if (n <= 0) break;
      d += n;
      left -= static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(p[1]);
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  std::vector<std::string> lines;
  std::stringstream ss(all);
  std::string line;
  while (std::getline(ss, line)) lines.push_back(line);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) lines.push_back("child died: status " + std::to_string(st));
  return lines;
}

std::string err_line(const Error& e) {
  std::string m = e.what();
  for (auto& c : m)
    if (c == '\n') c = ' ';
  return "err " + std::to_string(static_cast<int>(e.code())) + " " + std::to_string(e.sys_errno()) + " " + m;
}

bool drop_to_nobody() {
  return ::setgroups(0, nullptr) == 0 && ::setresgid(kNobody, kNobody, kNobody) == 0 &&
         ::setresuid(kNobody, kNobody, kNobody) == 0;
}

class FaultTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_.root = scratch_.path() + "/store";
    model_.driver = GetParam();
    auto s = model_.open();
    std::string a = model_.add(*s, random_layer(rng_, true, true), "");
    model_.add(*s, random_layer(rng_, false), a);
  }
  void TearDown() override {
    if (trials_)
      std::printf("[ faults   ] %s: %ld trials, %ld errors (%ld clean: right code and errno, store consistent), "
                  "%ld ran to the end, %ld consistent\n",
                  GetParam().c_str(), trials_, errors_, clean_, completions_, consistent_);
  }

  std::string some_layer() {
    auto it = model_.tars.begin();
    std::advance(it, static_cast<long>(rng_() % model_.tars.size()));
    return it->first;
  }

  // After a trial: the error (if any) is clean — one of `codes` with one of `errnos` — and the
  // store is consistent; `may` are layers the trial may have left (or not).
  // Returns true when the operation ran to the end (the fault was not reached).
  bool judge(const std::string& what, const std::vector<std::string>& lines, bool child_ok,
             const std::set<int>& codes, const std::set<int>& errnos, const std::map<std::string, std::string>& may,
             const std::set<std::string>& gone = {}) {
    trials_++;
    std::vector<std::string> problems;
    if (!child_ok) problems.push_back("the child did not end normally");
    ChildError e = parse_err(lines);
    bool completed = false;
    for (const auto& l : lines)
      if (l.rfind("ok", 0) == 0) completed = true;
    if (e.is_err) {
      errors_++;
      if (!codes.count(e.code)) problems.push_back("unexpected error code " + std::to_string(e.code));
      if (!errnos.count(e.err)) problems.push_back("unexpected errno " + std::to_string(e.err) + " (" + std::strerror(e.err) + ")");
      if (e.message.size() < 5) problems.push_back("no message");
    } else if (completed) {
      completions_++;
    } else {
      problems.push_back("neither a result nor an error");
    }
    std::map<std::string, std::string> must = model_.tars;
    for (const auto& c : gone) must.erase(c);
    for (const auto& [c, t] : may) must.erase(c);
    CheckResult r = check_store(model_.root, model_.driver, must, may);
    problems.insert(problems.end(), r.problems.begin(), r.problems.end());
    for (const auto& [c, t] : may)
      if (r.present.count(c)) model_.tars[c] = t;
    for (auto it = model_.tars.begin(); it != model_.tars.end();)
      it = r.present.count(it->first) ? std::next(it) : model_.tars.erase(it);
    if (r.problems.empty()) consistent_++;
    if (std::getenv("ROLAYER_RELIABILITY_LOG"))
      std::printf("[ faults   ] %s: %s -> %s%s\n", GetParam().c_str(), what.c_str(), join(lines, " | ").c_str(),
                  problems.empty() ? "" : " (PROBLEMS)");
    EXPECT_TRUE(problems.empty()) << GetParam() << ": " << what << " -> " << join(lines, " | ") << "\n  "
                                  << join(problems, "\n  ");
    if (e.is_err && problems.empty()) clean_++;
    return completed && !e.is_err;
  }

  // A register in a re-executed child with ROLAYER_FAULT_ERRNO=point:nth=err.
  bool errno_register(const std::string& point, long nth, int err) {
    IgnoreSigpipe ig;
    std::string par = rng_() % 3 ? some_layer() : "";
    std::string tar = random_layer(rng_, par.empty(), rng_() % 4 == 0);
    std::string c = chain_of(par, tar);
    Child ch = spawn_job("register",
                         {{"ROLAYER_REL_ROOT", model_.root},
                          {"ROLAYER_REL_DRIVER", model_.driver},
                          {"ROLAYER_REL_PARENT", par},
                          {"ROLAYER_FAULT_ERRNO", point + ":" + std::to_string(nth) + "=" + std::to_string(err)}},
                         true);
    feed(ch.in, tar.data(), tar.size());
    Outcome o = finish(ch);
    return judge("register with " + point + ":" + std::to_string(nth) + "=" + std::strerror(err), o.lines,
          o.exited && o.status == 0, {static_cast<int>(Code::Io)}, {err}, {{c, tar}});
  }

  // An unretain of a new cascade of two (the lower one unretained) with the fault.
  bool errno_release(const std::string& point, long nth, int err) {
    std::map<std::string, std::string> may;
    std::string top;
    {
      auto s = model_.open();
      std::string t1 = random_layer(rng_, false), t2 = random_layer(rng_, false);
      std::string c1 = model_.add(*s, t1, some_layer(), false);
      top = model_.add(*s, t2, c1, true);
      may[c1] = t1;
      may[top] = t2;
    }
    Child ch = spawn_job("unretain",
                         {{"ROLAYER_REL_ROOT", model_.root},
                          {"ROLAYER_REL_DRIVER", model_.driver},
                          {"ROLAYER_REL_CHAIN", top},
                          {"ROLAYER_FAULT_ERRNO", point + ":" + std::to_string(nth) + "=" + std::to_string(err)}},
                         false);
    Outcome o = finish(ch);
    return judge("release with " + point + ":" + std::to_string(nth) + "=" + std::strerror(err), o.lines,
          o.exited && o.status == 0, {static_cast<int>(Code::Io)}, {err}, may);
  }

  bool errno_export(const std::string& point, long nth, int err) {
    Child ch = spawn_job("export",
                         {{"ROLAYER_REL_ROOT", model_.root},
                          {"ROLAYER_REL_DRIVER", model_.driver},
                          {"ROLAYER_REL_CHAIN", some_layer()},
                          {"ROLAYER_FAULT_ERRNO", point + ":" + std::to_string(nth) + "=" + std::to_string(err)}},
                         false);
    Outcome o = finish(ch);
    return judge("export with " + point + ":" + std::to_string(nth) + "=" + std::strerror(err), o.lines,
          o.exited && o.status == 0, {static_cast<int>(Code::Io)}, {err}, {});
  }

  Scratch scratch_;
  StoreModel model_;
  std::mt19937_64 rng_{static_cast<uint64_t>(env_long("ROLAYER_FAULT_SEED", 7))};
  long trials_ = 0, errors_ = 0, clean_ = 0, completions_ = 0, consistent_ = 0;
};

// ---- injected errnos ------------------------------------------------------------------------

TEST_P(FaultTest, ErrnoAtRegisterPoints) {
  if (!fault_hooks_built()) GTEST_SKIP() << "built without -DROLAYER_FAULT_HOOKS=ON: no fault points";
  for (const char* p : {"register.created", "register.applied", "register.recorded", "register.before_commit"})
    for (int err : {ENOSPC, EIO, EACCES}) errno_register(p, 1, err);
}

// An exception after the commit (injected here; in the code only std::bad_alloc can be thrown
// there) must not take the committed layer's data away: the layer is listed after a reopen.
TEST_P(FaultTest, ErrorAfterTheCommitKeepsTheLayerWhole) {
  if (!fault_hooks_built()) GTEST_SKIP() << "built without -DROLAYER_FAULT_HOOKS=ON: no fault points";
  for (int err : {ENOSPC, EIO}) errno_register("register.committed", 1, err);
}

TEST_P(FaultTest, ErrnoAtReleasePoints) {
  if (!fault_hooks_built()) GTEST_SKIP() << "built without -DROLAYER_FAULT_HOOKS=ON: no fault points";
  for (const char* p : {"release.marked", "release.before_commit", "release.row_deleted", "release.removing_data",
                        "release.data_removed"})
    for (long nth : {1L, 2L})
      for (int err : {ENOSPC, EIO}) errno_release(p, nth, err);
}

TEST_P(FaultTest, ErrnoAtFileSystemPoints) {
  if (!fault_hooks_built()) GTEST_SKIP() << "built without -DROLAYER_FAULT_HOOKS=ON: no fault points";
  // Every hit N = 1, 2, ... of each point, until the operation no longer reaches the N-th (at
  // most ROLAYER_FAULT_DEPTH).
  long deep = env_long("ROLAYER_FAULT_DEPTH", 6);
  for (const char* p : {"fs.write", "fs.read", "fs.fsync", "fs.mkdir", "fs.rename", "fs.remove"}) {
    for (long nth = 1; nth <= deep; nth++)
      if (errno_register(p, nth, nth % 2 ? ENOSPC : EIO)) break;
    for (long nth = 1; nth <= deep; nth++)
      if (errno_release(p, nth, nth % 2 ? EIO : ENOSPC)) break;
    for (long nth = 1; nth <= deep; nth++)
      if (errno_export(p, nth, EIO)) break;
  }
}

// ---- real conditions ------------------------------------------------------------------------

// Makes the store's own top-level entries (not the layers' contents) owned by uid, except those
// named in `keep_root`, which stay root's with mode 0755 (0644 for files).
void chown_store(const std::string& root, const std::string& driver, uid_t uid, const std::set<std::string>& keep_root) {
  for (const std::string& name : std::vector<std::string>{"", "/lock", "/metadata.db", "/metadata.db-wal", "/metadata.db-shm", "/tmp",
                                 "/pending", std::string("/") + driver}) {
    std::string p = root + name;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    bool keep = keep_root.count(name.empty() ? "" : name.substr(1));
    ::lchown(p.c_str(), keep ? 0 : uid, keep ? 0 : uid);
    if (keep) ::chmod(p.c_str(), S_ISDIR(st.st_mode) ? 0755 : 0644);
  }
}

TEST_P(FaultTest, StoreThatAnotherUserCannotWrite) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (to prepare the store and drop to uid 65534)";
  struct Variant {
    const char* what;
    std::set<std::string> root_owned;  // top-level entries left to root
    bool release;                      // nobody unretains instead of registering
  };
  const Variant variants[] = {
      {"the whole store is root's", {"", "lock", "metadata.db", "tmp", "pending", GetParam()}, false},
      {"the driver directory is root's", {GetParam()}, false},
      {"metadata.db is root's (a base layer)", {"metadata.db"}, false},
      {"<root>/pending is root's", {"pending"}, false},
      {"<root>/tmp is root's and not empty", {"tmp"}, false},
      {"the layers' data is root's (nobody releases)", {}, true},
  };
  for (const auto& v : variants) {
    // tmp with a leftover file, so that open has something to remove.
    fs::mkdirs(model_.root + "/tmp/leftover");
    chown_store(model_.root, model_.driver, kNobody, v.root_owned);
    // The dir driver reads the parent's (root-only) metadata first: a base layer reaches the
    // database.
    std::string par = v.root_owned.count("metadata.db") ? "" : some_layer();
    std::string tar = random_layer(rng_, par.empty());
    std::string c = chain_of(par, tar);
    std::map<std::string, std::string> may{{c, tar}};
    std::string top;
    if (v.release) {
      auto s = model_.open();
      std::string t1 = random_layer(rng_, false);
      top = model_.add(*s, t1, par, true);
      may = {{top, t1}};
      chown_store(model_.root, model_.driver, kNobody, v.root_owned);
    }
    std::string root = model_.root, driver = model_.driver;
    auto lines = in_fork([&]() -> std::vector<std::string> {
      if (!drop_to_nobody()) return {"cannot drop privileges"};
      std::unique_ptr<Store> s;
      try {
        StoreOptions o;
        o.driver_name = driver;
        o.busy_timeout_ms = 20000;
        s = Store::open(root, std::move(o));
      } catch (const Error& e) {
        return {"open: " + err_line(e)};
      }
      try {
        if (v.release) return {"ok removed " + std::to_string(s->unretain(top).size())};
        test::MemSource src(tar);
        auto r = s->register_layer(par, src);
        s->retain(r->node().chain_id.str());
        return {"ok " + r->node().chain_id.str()};
      } catch (const Error& e) {
        return {(v.release ? "release: " : "register: ") + err_line(e)};
      }
    });
    // Strip the "open: " / "register: " prefixes for the judge; keep them in the message.
    std::vector<std::string> judged;
    for (const auto& l : lines) {
      auto colon = l.find(": err ");
      judged.push_back(colon != std::string::npos && l.rfind("ok", 0) != 0 ? l.substr(colon + 2) : l);
    }
    chown_store(model_.root, model_.driver, 0, {});
    judge(std::string("uid 65534, ") + v.what + ": " + join(lines), judged, true, {static_cast<int>(Code::Io)},
          {EACCES, EPERM}, may);
    if (!v.release) {
      EXPECT_TRUE(parse_err(judged).is_err) << v.what << ": nobody could write a root-owned store";
    }
  }
}

// Runs fn in a forked child inside a private mount namespace; "skip ..." when this machine
// does not allow one.
std::vector<std::string> in_mount_namespace(const std::function<std::vector<std::string>()>& fn) {
  return in_fork([&]() -> std::vector<std::string> {
    if (::unshare(CLONE_NEWNS) != 0) return {std::string("skip unshare(CLONE_NEWNS): ") + std::strerror(errno)};
    if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      return {std::string("skip making / private: ") + std::strerror(errno)};
    return fn();
  });
}

TEST_P(FaultTest, ReadOnlyMount) {
  std::string root = model_.root, driver = model_.driver;
  std::string par = some_layer();
  std::string tar = random_layer(rng_, false);
  auto lines = in_mount_namespace([&]() -> std::vector<std::string> {
    if (::mount(root.c_str(), root.c_str(), nullptr, MS_BIND, nullptr) != 0 ||
        ::mount(nullptr, root.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0)
      return {std::string("skip read-only bind mount: ") + std::strerror(errno)};
    try {
      StoreOptions o;
      o.driver_name = driver;
      auto s = Store::open(root, std::move(o));
      test::MemSource src(tar);
      auto r = s->register_layer(par, src);
      return {"ok " + r->node().chain_id.str()};
    } catch (const Error& e) {
      return {err_line(e)};
    }
  });
  if (!lines.empty() && lines[0].rfind("skip", 0) == 0) GTEST_SKIP() << lines[0];
  judge("register on a read-only bind mount", lines, true, {static_cast<int>(Code::Io)}, {EROFS},
        {{chain_of(par, tar), tar}});
  EXPECT_TRUE(parse_err(lines).is_err) << "a register on a read-only store succeeded";
}

// A small tmpfs filled to different levels: each register (and release) either succeeds or
// fails with Code::Io / ENOSPC, and after the space comes back the store is consistent.
TEST_P(FaultTest, FullFileSystem) {
  std::string mnt = scratch_.path() + "/tmpfs";
  fs::mkdirs(mnt);
  std::string driver = model_.driver;
  uint64_t seed = rng_();
  long levels = env_long("ROLAYER_ENOSPC_LEVELS", 24);
  auto lines = in_mount_namespace([&]() -> std::vector<std::string> {
    if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=8m,mode=0700") != 0)
      return {std::string("skip mount tmpfs: ") + std::strerror(errno)};
    std::vector<std::string> out;
    std::mt19937_64 rng(seed);
    StoreModel m;
    std::string base;  // never released
    m.root = mnt + "/store";
    m.driver = driver;
    {
      auto s = m.open();
      base = m.add(*s, random_layer(rng, true), "");
    }
    std::string filler = mnt + "/filler";
    for (long level = 0; level < levels; level++) {
      // Keep the store small (space is free between trials): at most 3 layers (big ones fill 8 MiB).
      auto leaf = [&](const std::string& keep) {
        for (auto it = m.tars.rbegin(); it != m.tars.rend(); ++it) {
          bool has_child = false;
          for (const auto& [k, t] : m.tars)
            if (m.parent.count(k) && m.parent[k] == it->first) has_child = true;
          if (!has_child && it->first != keep) return it->first;
        }
        return std::string();
      };
      try {
        while (m.tars.size() > 3) {
          std::string victim = leaf(base);
          if (victim.empty()) break;
          auto s = m.open();
          s->unretain(victim);
          m.tars.erase(victim);
        }
      } catch (const Error& e) {
        out.push_back(std::string("problem trimming the store: ") + e.what());
        break;
      }
      auto pit = m.tars.begin();
      std::advance(pit, static_cast<long>(rng() % m.tars.size()));
      std::string par = pit->first;
      bool release = level % 3 == 2 && !leaf(par).empty();
      std::string tar = random_layer(rng, false, level % 2 == 0);
      // Leave `room` bytes free: from nothing to about twice what the layer needs.
      long room = static_cast<long>(rng() % (tar.size() * 2 + 65536));
      if (level == 0) room = 0;
      std::string c = chain_of(par, tar);
      std::map<std::string, std::string> may{{c, tar}};
      std::string victim;
      if (release) victim = leaf(par);
      m.parent[c] = par;
      {
        fs::Fd f(::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600));
        std::string block(4096, 'x');
        while (::write(f.get(), block.data(), block.size()) > 0) {
        }
        struct stat st;
        ::fstat(f.get(), &st);
        ::ftruncate(f.get(), std::max<off_t>(0, st.st_size - room));
      }
      std::string res;
      try {
        StoreOptions o;
        o.driver_name = driver;
        auto s = Store::open(m.root, std::move(o));
        if (!victim.empty()) {
          res = "ok removed " + std::to_string(s->unretain(victim).size());
          may = {{victim, m.tars[victim]}};
        } else {
          test::MemSource src(tar);
          auto r = s->register_layer(par, src);
          s->retain(r->node().chain_id.str());
          res = "ok " + r->node().chain_id.str();
        }
      } catch (const Error& e) {
        res = err_line(e);
        if (!victim.empty()) may = {{victim, m.tars[victim]}};
      }
      ::unlink(filler.c_str());
      std::map<std::string, std::string> must = m.tars;
      for (const auto& [k, t] : may) must.erase(k);
      CheckResult r = check_store(m.root, driver, must, may);
      for (const auto& [k, t] : may)
        if (r.present.count(k)) m.tars[k] = t;
      for (auto it = m.tars.begin(); it != m.tars.end();) it = r.present.count(it->first) ? std::next(it) : m.tars.erase(it);
      std::string what = (victim.empty() ? "register" : "release") + std::string(" with ") + std::to_string(room) +
                         " bytes free";
      out.push_back("trial " + what + " => " + res);
      for (const auto& p : r.problems) out.push_back("problem " + what + ": " + p);
    }
    return out;
  });
  if (!lines.empty() && lines[0].rfind("skip", 0) == 0) GTEST_SKIP() << lines[0];
  long n = 0, enospc = 0, ok = 0;
  std::set<std::string> troubled;
  for (const auto& l : lines)
    if (l.rfind("problem ", 0) == 0) troubled.insert(l.substr(8, l.find(": ") - 8));
  for (const auto& l : lines) {
    if (std::getenv("ROLAYER_RELIABILITY_LOG")) std::printf("[ faults   ] %s: %s\n", GetParam().c_str(), l.c_str());
    if (l.rfind("trial ", 0) == 0) {
      n++;
      auto arrow = l.find(" => ");
      std::string res = l.substr(arrow + 4);
      if (res.rfind("ok", 0) == 0) {
        ok++;
        continue;
      }
      ChildError e = parse_err({res});
      bool clean = e.is_err && e.code == static_cast<int>(Code::Io) && e.err == ENOSPC;
      if (clean) enospc++;
      EXPECT_TRUE(clean) << GetParam() << ": not a clean ENOSPC error: " << l;
    } else {
      ADD_FAILURE() << GetParam() << ": " << l;
    }
  }
  trials_ += n;
  errors_ += n - ok;
  clean_ += enospc;
  completions_ += ok;
  consistent_ += n - static_cast<long>(troubled.size());
  EXPECT_GT(enospc, 0) << "the tmpfs never filled up";
  std::printf("[ faults   ] %s: full tmpfs: %ld trials, %ld ENOSPC, %ld ok\n", GetParam().c_str(), n, enospc, ok);
}

INSTANTIATE_TEST_SUITE_P(Drivers, FaultTest, ::testing::Values("dir", "exact"),
                         [](const auto& info) { return info.param; });

}  // namespace
