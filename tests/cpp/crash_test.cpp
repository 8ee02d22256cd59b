// SPDX-License-Identifier: Apache-2.0
// Crash safety (docs/reliability.md): a child process registers or releases a layer and is
// killed with SIGKILL — at each fault point of the store (ROLAYER_FAULT_KILL, builds with
// -DROLAYER_FAULT_HOOKS=ON), after N bytes of its input, or after a random delay — and the
// parent reopens the store and checks it (reltest::check_store): no half layer is listed,
// nothing is orphaned on disk or in the database, every earlier layer still exports verified,
// byte for byte. On both built-in drivers.
//
// ctest runs a short, fixed set of trials. The long campaign is tests/campaigns/crash.sh:
// ROLAYER_CRASH_TRIALS (random trials per driver, default 24), ROLAYER_CRASH_SEED.
#include <gtest/gtest.h>

#include <random>

#include "reliability_util.h"

using namespace rolayer;
using namespace rolayer::reltest;

namespace {

[[maybe_unused]] const bool kJobs = install_child_jobs();

struct Kill {
  std::string point;  // ROLAYER_FAULT_KILL point ("" = none)
  long nth = 1;
  long bytes = -1;     // >= 0: SIGKILL once the child has read this many input bytes
  long delay_us = -1;  // >= 0: SIGKILL this long after the whole input was written
  std::string describe() const {
    if (!point.empty()) return "kill at " + point + ":" + std::to_string(nth);
    if (bytes >= 0) return "kill after " + std::to_string(bytes) + " input bytes";
    if (delay_us >= 0) return "kill " + std::to_string(delay_us) + " us after the input";
    return "no kill";
  }
};

struct Tally {
  long trials = 0, survivors = 0, killed = 0, completed = 0;
  std::map<std::string, long> by_kind;  // trials per kind
  std::map<std::string, long> failed_by_kind;
  void add(const std::string& kind, bool ok, bool was_killed) {
    trials++;
    by_kind[kind]++;
    if (ok) survivors++;
    else failed_by_kind[kind]++;
    if (was_killed) killed++;
    else completed++;
  }
  std::string summary() const {
    std::string s = std::to_string(trials) + " trials, " + std::to_string(survivors) + " consistent (" +
                    std::to_string(killed) + " killed, " + std::to_string(completed) + " ran to the end)";
    for (const auto& [k, n] : by_kind) {
      s += "\n    " + k + ": " + std::to_string(n);
      if (auto it = failed_by_kind.find(k); it != failed_by_kind.end()) s += " (" + std::to_string(it->second) + " FAILED)";
    }
    return s;
  }
};

class CrashTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_.root = scratch_.path() + "/store";
    model_.driver = GetParam();
    auto s = model_.open();
    std::mt19937_64 r(42);
    std::string a = model_.add(*s, random_layer(r, true, true), "");
    model_.add(*s, random_layer(r, false), a);
  }

  std::vector<std::pair<std::string, std::string>> base_env() const {
    return {{"ROLAYER_REL_ROOT", model_.root}, {"ROLAYER_REL_DRIVER", model_.driver}};
  }

  // Runs a child job that may register tar on par (job "register" streams its input;
  // "register-twice" registers it on par and then on top of itself), killed as k says.
  Outcome run_child(const std::string& job, const std::string& par, const std::string& tar, const Kill& k,
                    std::vector<std::pair<std::string, std::string>> extra = {}) {
    IgnoreSigpipe ig;
    auto env = base_env();
    env.emplace_back("ROLAYER_REL_PARENT", par);
    if (!k.point.empty()) env.emplace_back("ROLAYER_FAULT_KILL", k.point + ":" + std::to_string(k.nth));
    for (auto& e : extra) env.push_back(e);
    Child c = spawn_job(job, env, true);
    if (k.bytes >= 0) {
      size_t n = std::min<size_t>(static_cast<size_t>(k.bytes), tar.size());
      feed(c.in, tar.data(), n);
      wait_drained(c);
      if (rng_() % 2) std::this_thread::sleep_for(std::chrono::microseconds(rng_() % 2000));
      ::kill(c.pid, SIGKILL);
    } else {
      feed(c.in, tar.data(), tar.size());
      ::close(c.in);
      c.in = -1;
      if (k.delay_us >= 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(k.delay_us));
        ::kill(c.pid, SIGKILL);
      }
    }
    return finish(c);
  }

  static std::set<std::string> reported_ok(const Outcome& o) {
    std::set<std::string> s;
    for (const auto& l : o.lines)
      if (l.rfind("ok sha256:", 0) == 0) s.insert(l.substr(3));
    return s;
  }

  // Checks the store after a trial; present/absent: what the trial's kind guarantees.
  bool check(const std::string& kind, const std::string& what, const Outcome& o,
             const std::map<std::string, std::string>& may, const std::set<std::string>& must_present,
             const std::set<std::string>& must_absent) {
    std::vector<std::string> problems;
    if (!o.killed && !(o.exited && o.status == 0)) problems.push_back("the child ended unexpectedly");
    if (o.exited)
      for (const auto& l : o.lines)
        if (l.rfind("err", 0) == 0) problems.push_back("the child failed: " + l);
    std::map<std::string, std::string> must = model_.tars;
    std::map<std::string, std::string> maybe;
    for (const auto& [c, t] : may) {
      if (must_present.count(c)) must[c] = t;
      else if (!must_absent.count(c)) maybe[c] = t;
    }
    // A layer that is expected gone is neither must nor may: listing it is a problem.
    for (const auto& c : must_absent) must.erase(c);
    CheckResult r = check_store(model_.root, model_.driver, must, maybe);
    problems.insert(problems.end(), r.problems.begin(), r.problems.end());
    // Keep the model in step with the store.
    for (const auto& [c, t] : may)
      if (r.present.count(c)) model_.tars[c] = t;
    for (auto it = model_.tars.begin(); it != model_.tars.end();) {
      if (!r.present.count(it->first)) it = model_.tars.erase(it);
      else ++it;
    }
    bool ok = problems.empty();
    tally_.add(kind, ok, o.killed);
    EXPECT_TRUE(ok) << GetParam() << ": " << what << " [" << o.describe() << "]\n  " << join(problems, "\n  ");
    return ok;
  }

  // One register trial: a new random layer on par, killed as k says. Before the commit the
  // layer must be absent; killed at register.committed (after the commit, before the job's
  // retain) it must be absent too: only the killed process held it, and the next open collects
  // what only a dead process held (issue 12, "crash leftovers are removable").
  void register_trial(const std::string& kind, const std::string& par, const Kill& k, bool big = false,
                      std::string tar = "") {
    if (tar.empty()) tar = random_layer(rng_, par.empty(), big);
    std::string c = chain_of(par, tar);
    Outcome o = run_child("register", par, tar, k);
    std::set<std::string> present = reported_ok(o), absent;
    if (o.killed && !present.count(c)) {
      if (!k.point.empty() || k.bytes >= 0) absent.insert(c);  // killed before the commit or the retain
    }
    if (o.exited && !present.count(c)) absent.insert(c);
    check(kind, k.describe() + " registering " + short_id(c) + " on " + (par.empty() ? "nothing" : short_id(par)), o,
          {{c, tar}}, present, absent);
    model_.parent[c] = par;
  }

  // Register twice (the second on the first): kill points with N = 2 land in the second.
  void register_twice_trial(const std::string& kind, const std::string& par, const Kill& k) {
    std::string tar = random_layer(rng_, par.empty());
    std::string c1 = chain_of(par, tar), c2 = chain_of(c1, tar);
    Outcome o = run_child("register-twice", par, tar, k);
    std::set<std::string> present = reported_ok(o), absent;
    if (o.killed) {
      // Hits of the point: 1 = the first register, 2 = the second.
      // The first is retained once the second register runs; a layer committed and not
      // retained yet when the job dies is collected (only the dead process held it).
      bool first_done = k.nth >= 2;
      if (first_done) present.insert(c1);
      else absent.insert(c1);
      if (!present.count(c2)) absent.insert(c2);
    }
    check(kind, k.describe() + " registering twice on " + (par.empty() ? "nothing" : short_id(par)), o,
          {{c1, tar}, {c2, tar}}, present, absent);
    model_.parent[c1] = par;
    model_.parent[c2] = c1;
  }

  // A cascade: `depth` new layers on `on` ("" = base), only the top one retained; a child
  // unretains the top (removing the whole cascade, child first), killed as k says.
  void release_trial(const std::string& kind, const std::string& on, int depth, const Kill& k) {
    std::vector<std::string> chain;
    {
      auto s = model_.open();
      std::string par = on;
      for (int i = 0; i < depth; i++) {
        std::string tar = random_layer(rng_, par.empty());
        par = model_.add(*s, tar, par, i == depth - 1);
        chain.push_back(par);
      }
    }
    release_chain(kind + " (new cascade)", chain, k);
  }

  // A layer of the store without children (retained): its release removes it alone.
  std::string some_leaf() {
    std::vector<std::string> leaves;
    for (const auto& [c, t] : model_.tars) {
      bool has_child = false;
      for (const auto& [k, p] : model_.parent)
        if (p == c && model_.tars.count(k)) has_child = true;
      if (!has_child) leaves.push_back(c);
    }
    return leaves.empty() ? std::string() : leaves[rng_() % leaves.size()];
  }

  // A child unretains chain.back() (bottom first; only the top holds a persistent reference),
  // which removes the whole chain, top first; killed as k says.
  void release_chain(const std::string& kind, const std::vector<std::string>& chain, const Kill& k) {
    int depth = static_cast<int>(chain.size());
    std::map<std::string, std::string> may;
    for (const auto& c : chain) {
      may[c] = model_.tars.at(c);
      model_.tars.erase(c);  // no longer "must": the release may take them
    }
    IgnoreSigpipe ig;
    auto env = base_env();
    env.emplace_back("ROLAYER_REL_CHAIN", chain.back());
    if (!k.point.empty()) env.emplace_back("ROLAYER_FAULT_KILL", k.point + ":" + std::to_string(k.nth));
    Child ch = spawn_job("unretain", env, false);
    if (k.delay_us >= 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(k.delay_us));
      ::kill(ch.pid, SIGKILL);
    }
    Outcome o = finish(ch);
    // How many layers (from the top) are gone when the child dies at point:nth.
    std::set<std::string> present, absent;
    if (o.killed && k.point.rfind("release.", 0) == 0) {
      long gone = depth;
      if (k.point == "release.marked" || k.point == "release.before_commit") gone = std::min<long>(k.nth - 1, depth);
      else if (k.point == "release.row_deleted") gone = std::min<long>(k.nth, depth);
      for (int i = 0; i < depth; i++) (depth - i <= gone ? absent : present).insert(chain[i]);
    } else if (o.exited) {
      absent.insert(chain.begin(), chain.end());
    }
    check(kind, k.describe() + " releasing " + std::to_string(depth) + " layer(s) from " + short_id(chain.back()), o,
          may, present, absent);
  }

  std::string random_parent(bool allow_base = true) {
    if (model_.tars.empty() || (allow_base && rng_() % 4 == 0)) return "";
    auto it = model_.tars.begin();
    std::advance(it, static_cast<long>(rng_() % model_.tars.size()));
    return it->first;
  }

  void TearDown() override {
    if (tally_.trials) std::printf("[ crash    ] %s: %s\n", GetParam().c_str(), tally_.summary().c_str());
  }

  Scratch scratch_;
  StoreModel model_;
  std::mt19937_64 rng_{static_cast<uint64_t>(env_long("ROLAYER_CRASH_SEED", 1))};
  Tally tally_;
};

const char* const kRegisterPoints[] = {"register.created", "register.applied", "register.recorded",
                                       "register.before_commit", "register.committed"};
const char* const kReleasePoints[] = {"release.marked", "release.before_commit", "release.row_deleted",
                                      "release.removing_data", "release.data_removed"};
const char* const kFsPoints[] = {"fs.write", "fs.fsync", "fs.mkdir", "fs.rename", "fs.read", "fs.remove"};

TEST_P(CrashTest, KilledAtEachFaultPoint) {
  if (!fault_hooks_built()) GTEST_SKIP() << "built without -DROLAYER_FAULT_HOOKS=ON: no fault points";
  for (const char* p : kRegisterPoints) {
    // "register.recorded" is not reached with the exact driver (no fidelity record): the child
    // then runs to the end and the layer must be there.
    register_trial("register point", random_parent(), Kill{p, 1});
    register_trial("register point (big layer)", random_parent(false), Kill{p, 1}, true);
    register_twice_trial("register point, 2nd hit", random_parent(), Kill{p, 2});
  }
  for (const char* p : kReleasePoints)
    for (int nth = 1; nth <= 3; nth++) release_trial("release point", random_parent(), 2, Kill{p, nth});
  for (const char* p : kFsPoints)
    for (long nth : {1L, 2L, 3L, 5L}) {
      register_trial("fs point in register", random_parent(), Kill{p, nth});
      release_trial("fs point in release", random_parent(), 1, Kill{p, nth});
    }
}

// The first crash leaves debris; a second child is killed while open cleans it up; a third
// open (the check) must still find a consistent store.
TEST_P(CrashTest, KilledWhileCleaningUpAfterACrash) {
  if (!fault_hooks_built()) GTEST_SKIP() << "built without -DROLAYER_FAULT_HOOKS=ON: no fault points";
  for (const char* first : {"register.applied", "register.recorded", "register.before_commit"})
    for (const char* second : {"fs.remove", "fs.mkdir", "fs.fsync"})
      for (long nth : {1L, 2L, 4L}) {
        std::string par = random_parent();
        std::string tar = random_layer(rng_, par.empty());
        std::string c = chain_of(par, tar);
        Outcome o1 = run_child("register", par, tar, Kill{first, 1});
        IgnoreSigpipe ig;
        auto env = base_env();
        env.emplace_back("ROLAYER_FAULT_KILL", std::string(second) + ":" + std::to_string(nth));
        Child ch = spawn_job("open", env, false);
        Outcome o2 = finish(ch);
        Outcome both = o1;
        both.lines.push_back("then open: " + o2.describe());
        bool present_ok = first == std::string("register.recorded") && GetParam() == "exact";  // not reached
        check("crash, then crash during the cleanup",
              std::string("kill at ") + first + ", then at " + second + ":" + std::to_string(nth) + " in open", both,
              {{c, tar}}, present_ok ? std::set<std::string>{c} : std::set<std::string>{},
              present_ok ? std::set<std::string>{} : std::set<std::string>{c});
      }
}

// Kills by byte count: the parent feeds the tar through a pipe and kills the child once it has
// read N bytes (it cannot have committed: the input has not ended), for many N.
TEST_P(CrashTest, KilledAfterNInputBytes) {
  for (int t = 0; t < 2; t++) {
    std::string par = t == 0 ? "" : random_parent(false);
    std::string tar = random_layer(rng_, par.empty(), true);
    long size = static_cast<long>(tar.size());
    std::set<long> ns = {0, 1, 100, 511, 512, 513, 1023, 1024, 1536, 4096, 65536, 65537, size / 4, size / 2,
                         size * 3 / 4, size - 1024, size - 513, size - 1, size};
    for (int i = 0; i < 6; i++) ns.insert(static_cast<long>(rng_() % static_cast<uint64_t>(size + 1)));
    for (long n : ns) register_trial("byte count", par, Kill{"", 1, n}, true, tar);
  }
  // And a few that run to the end.
  for (int i = 0; i < 3; i++) register_trial("no kill", random_parent(), Kill{});
}

// Kills at a random moment after the whole input was written: anywhere in register, commit
// included, or in the store's open.
TEST_P(CrashTest, KilledAtRandomMoments) {
  auto t0 = std::chrono::steady_clock::now();
  register_trial("no kill", random_parent(), Kill{});
  long full = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  for (int i = 0; i < 12; i++) {
    Kill k;
    k.delay_us = static_cast<long>(rng_() % static_cast<uint64_t>(full + 1));
    if (i % 3 == 2) release_trial("random moment in release", random_parent(), 2, k);
    else register_trial("random moment in register", random_parent(), k);
  }
}

// The long campaign: random operations, random kill points (with random N), byte counts and
// moments, on one store that lives through all of them.
TEST_P(CrashTest, RandomCampaign) {
  long trials = env_long("ROLAYER_CRASH_TRIALS", 24);
  bool hooks = fault_hooks_built();
  auto t0 = std::chrono::steady_clock::now();
  register_trial("no kill", random_parent(), Kill{});
  long full = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  for (long i = 0; i < trials; i++) {
    // 60 %: register a new layer (sometimes above 1 MiB); 40 %: release a new cascade of 1-3.
    bool reg = model_.tars.size() <= 24 && rng_() % 100 < 60;
    std::string par = random_parent();
    Kill k;
    uint64_t how = rng_() % 3;
    if (how == 0 && hooks) {
      uint64_t which = rng_() % 3;
      if (which == 0) k.point = kFsPoints[rng_() % 6];
      else k.point = reg ? kRegisterPoints[rng_() % 5] : kReleasePoints[rng_() % 5];
      k.nth = 1 + static_cast<long>(rng_() % 4);
    } else if (how == 1 && reg) {
      k.bytes = static_cast<long>(rng_() % 200000);  // random layers are 2 KiB - 1.5 MiB
    } else {
      k.delay_us = static_cast<long>(rng_() % static_cast<uint64_t>(2 * full + 1));
    }
    std::string leaf = model_.tars.size() > 24 ? some_leaf() : std::string();
    if (!leaf.empty()) release_chain("campaign: release", {leaf}, k);  // (keeps the store small)
    else if (!reg) release_trial("campaign: release", par, 1 + static_cast<int>(rng_() % 3), k);
    else if (k.point.rfind("register.", 0) == 0 && k.nth > 1) register_twice_trial("campaign: register twice", par, k);
    else register_trial("campaign: register", par, k, rng_() % 10 == 0);
  }
  std::printf("[ crash    ] %s campaign: %zu layers at the end\n", GetParam().c_str(), model_.tars.size());
}

// The harness itself: check_store reports each kind of damage it is meant to find, and a child
// dies where ROLAYER_FAULT_KILL says.
TEST(ReliabilityHarness, CheckStoreAndChildrenWork) {
  Scratch scratch;
  StoreModel m;
  m.root = scratch.path() + "/store";
  m.driver = "dir";
  std::mt19937_64 rng(9);
  std::string a, b;
  {
    auto s = m.open();
    a = m.add(*s, random_layer(rng, true), "");
    b = m.add(*s, random_layer(rng, false), a);
  }
  EXPECT_TRUE(check_store(m.root, m.driver, m.tars).problems.empty());
  auto has = [](const CheckResult& r, const std::string& what) {
    for (const auto& p : r.problems)
      if (p.find(what) != std::string::npos) return true;
    return false;
  };
  auto must = m.tars;
  must["sha256:" + std::string(64, 'a')] = "x";
  EXPECT_TRUE(has(check_store(m.root, m.driver, must), "is missing after the reopen"));
  must = m.tars;
  must.erase(b);
  EXPECT_TRUE(has(check_store(m.root, m.driver, must), "unexpected layer"));
  must = m.tars;
  must[b] = "other bytes";
  EXPECT_TRUE(has(check_store(m.root, m.driver, must), "differ from the registered"));
  {
    sqlite3* db;
    ASSERT_EQ(sqlite3_open((m.root + "/metadata.db").c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "INSERT INTO records (chain_id, seq, data) VALUES ('sha256:x', 0, x'00')", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  EXPECT_TRUE(has(check_store(m.root, m.driver, m.tars), "record chunk without layer"));
  {
    sqlite3* db;
    ASSERT_EQ(sqlite3_open((m.root + "/metadata.db").c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "DELETE FROM records WHERE chain_id = 'sha256:x'", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  std::string id;
  {
    auto s = m.open();
    id = s->get(b)->node().cache_id;
  }
  fs::remove_all(m.root + "/dir/" + id);
  auto r = check_store(m.root, m.driver, m.tars);
  EXPECT_TRUE(has(r, "does not export"));
  EXPECT_TRUE(has(r, "driver data of a listed layer is missing"));

  Child c = spawn_job("open", {{"ROLAYER_REL_ROOT", m.root}, {"ROLAYER_REL_DRIVER", m.driver}}, false);
  Outcome o = finish(c);
  EXPECT_TRUE(o.exited && o.status == 0 && o.lines == std::vector<std::string>{"ok"}) << o.describe();
  if (fault_hooks_built()) {
    c = spawn_job("open", {{"ROLAYER_REL_ROOT", m.root}, {"ROLAYER_REL_DRIVER", m.driver},
                           {"ROLAYER_FAULT_KILL", "fs.mkdir:1"}}, false);
    o = finish(c);
    EXPECT_TRUE(o.killed) << o.describe();
  }
}

INSTANTIATE_TEST_SUITE_P(Drivers, CrashTest, ::testing::Values("dir", "exact"),
                         [](const auto& info) { return info.param; });

}  // namespace
