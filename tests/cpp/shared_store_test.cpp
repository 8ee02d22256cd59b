// SPDX-License-Identifier: Apache-2.0
// Issue 14 and issue 12 (items 3, 4, crash leftovers): one store used by several opens and
// several processes at once; holds, dead processes, gc, read-only stores, and the store's own
// files (links, FIFOs, permissions).
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "digest/digest.h"
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

int err_errno(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.sys_errno();
  }
  return 0;
}

std::set<std::string> names(const std::string& dir) {
  std::set<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (struct dirent* de = readdir(d))
      if (de->d_name[0] != '.') out.insert(de->d_name);
    closedir(d);
  }
  return out;
}

std::string slurp(const std::string& path) {
  std::string out;
  fs::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

// A layer of `files` files with `size` bytes each, distinct by seed.
std::string layer_tar(int seed, int files = 3, size_t size = 1000) {
  std::vector<TarItem> items;
  std::mt19937 rng(static_cast<unsigned>(seed));
  for (int i = 0; i < files; i++) {
    std::string data(size, '\0');
    for (auto& c : data) c = static_cast<char>('a' + rng() % 26);
    items.push_back({TarItem::File, "s" + std::to_string(seed) + "/f" + std::to_string(i), data});
  }
  return make_tar(items);
}

class SharedStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::string root() const { return dir_.path() + "/store"; }
  std::unique_ptr<Store> open(bool read_only = false, int busy_ms = 5000) {
    StoreOptions o;
    o.driver_name = GetParam();
    o.read_only = read_only;
    o.busy_timeout_ms = busy_ms;
    return Store::open(root(), std::move(o));
  }
  std::unique_ptr<LayerRef> reg(Store& s, const std::string& tar, const std::string& parent = "") {
    MemSource src(tar, 7777);
    return s.register_layer(parent, src);
  }
  static std::string export_of(const LayerRef& r) {
    auto src = Store::tar_stream(r);
    return read_all(*src);
  }
  // What the driver holds, against the rows: no orphaned data, nothing left in tmp/pending.
  void expect_clean_disk(Store& s) {
    std::set<std::string> ids = names(root() + "/" + GetParam());
    EXPECT_EQ(ids.size(), s.list().size()) << "driver data and layers disagree";
    EXPECT_TRUE(names(root() + "/tmp").empty()) << "temporary files left behind";
    EXPECT_TRUE(names(root() + "/pending").empty()) << "intent marks left behind";
  }
  TempDir dir_;
};

// Runs fn in a child process; returns its exit status (fn's return value; 99 on exception).
int in_child(const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 99;
    try {
      rc = fn();
    } catch (...) {
    }
    ::_exit(rc);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// ---- several opens in one process ------------------------------------------------------------

// The Docker engine's TestStoreRestore shape: open A, register, open B on the same root while A
// is open, read the layers through B; and what B registers, A sees at once.
TEST_P(SharedStoreTest, StoreRestoreWhileTheFirstIsOpen) {
  auto a = open();
  std::string t1 = layer_tar(1), t2 = layer_tar(2);
  auto l1 = reg(*a, t1);
  auto l2 = reg(*a, t2, l1->node().chain_id.str());
  a->retain(l2->node().chain_id.str());
  auto b = open(false, 100);
  EXPECT_EQ(b->list().size(), 2u);
  auto b2 = b->get(l2->node().chain_id.str());
  EXPECT_EQ(b2->node().parent->chain_id, l1->node().chain_id);
  EXPECT_EQ(export_of(*b2), t2);
  EXPECT_EQ(b->retained(l2->node().chain_id.str()), 1);
  // No stale view either way.
  auto b3 = reg(*b, layer_tar(3));
  EXPECT_EQ(a->list().size(), 3u);
  auto a3 = a->get(b3->node().chain_id.str());
  EXPECT_EQ(export_of(*a3), layer_tar(3));
  EXPECT_EQ(b->release(*b3).size(), 0u) << "A still holds the layer";
  EXPECT_EQ(a->list().size(), 3u);
  EXPECT_EQ(a->release(*a3).size(), 1u) << "the last holder let go: the release asked by B completes";
  EXPECT_EQ(b->list().size(), 2u);
}

// A release through one open while another holds a stream: the layer stays until the stream
// ends, and the removal report names it then.
TEST_P(SharedStoreTest, ReleaseWaitsForAStreamOfAnotherOpen) {
  auto a = open();
  auto b = open();
  std::string t = layer_tar(4, 4, 300000);
  auto la = reg(*a, t);
  auto lb = b->get(la->node().chain_id.str());
  auto stream = Store::tar_stream(*lb);
  Store::close_ref(*lb);  // only the stream holds it in B now
  EXPECT_TRUE(a->release(*la).empty());
  EXPECT_EQ(read_all(*stream), t) << "the export must not see its layer deleted";
  stream.reset();  // the last hold anywhere: the layer goes
  EXPECT_TRUE(a->list().empty());
  expect_clean_disk(*a);
}

// Two opens register the same ChainID at once: one layer, no duplicate driver data.
TEST_P(SharedStoreTest, TwoOpensRegisteringTheSameLayerConverge) {
  auto a = open();
  auto b = open();
  std::string t = layer_tar(5, 5, 20000);
  std::unique_ptr<LayerRef> ra, rb;
  std::thread th([&] { ra = reg(*a, t); });
  rb = reg(*b, t);
  th.join();
  ASSERT_TRUE(ra && rb);
  EXPECT_EQ(ra->node().chain_id, rb->node().chain_id);
  EXPECT_EQ(ra->node().cache_id, rb->node().cache_id);
  EXPECT_EQ(names(root() + "/" + GetParam()).size(), 1u);
  EXPECT_TRUE(a->release(*ra).empty());
  EXPECT_EQ(b->release(*rb).size(), 1u);
  expect_clean_disk(*a);
}

// Threads on several opens of one root at once (run under TSan in CI: "*Concurren*"): every
// open registers, opens, exports, releases and retains the same few layers; no export fails,
// and afterwards exactly the retained layers remain.
TEST_P(SharedStoreTest, ConcurrencyAcrossOpensInOneProcess) {
  constexpr int kOpens = 3, kThreadsPerOpen = 2, kOps = 40;
  std::vector<std::string> tars;
  for (int i = 0; i < 3; i++) tars.push_back(layer_tar(200 + i, 2, 2000));
  std::vector<std::unique_ptr<Store>> opens;
  for (int i = 0; i < kOpens; i++) opens.push_back(open(false, 30000));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kOpens * kThreadsPerOpen; t++) {
    threads.emplace_back([&, t] {
      Store& s = *opens[t % kOpens];
      std::mt19937 rng(static_cast<unsigned>(t + 1));
      for (int op = 0; op < kOps; op++) {
        int i = static_cast<int>(rng() % tars.size());
        try {
          auto r = reg(s, tars[i]);
          if (export_of(*r) != tars[i]) failures++;
          if (rng() % 3 == 0) s.retain(r->node().chain_id.str());
          if (rng() % 2) s.release(*r);
        } catch (const Error& e) {
          if (e.code() != Code::NotFound && e.code() != Code::NotRetained) failures++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  opens.clear();
  auto s = open();
  s->gc();
  for (const auto& c : s->list()) EXPECT_GT(s->retained(c), 0) << c;
  expect_clean_disk(*s);
}

// ---- dead processes --------------------------------------------------------------------------

// kill -9 between the commit and the retain: the layer only the dead process held is removed by
// the next open, and nothing of it stays on disk.
TEST_P(SharedStoreTest, ALayerOnlyADeadProcessHeldIsCollectedAtOpen) {
  std::string t = layer_tar(6);
  int st = in_child([&] {
    auto s = open();
    auto r = reg(*s, t);
    ::kill(::getpid(), SIGKILL);
    return 0;
  });
  ASSERT_EQ(st, 128 + SIGKILL);
  auto s = open();
  EXPECT_TRUE(s->list().empty()) << "the unretained layer of a killed process stayed";
  expect_clean_disk(*s);
}

// The same while another open is up the whole time (no open alone): the release of the last
// other holder, and `gc`, collect it; a retained layer of the dead process stays.
TEST_P(SharedStoreTest, DeadHoldsAreCollectedWhileOthersRun) {
  auto keep = open();
  std::string t = layer_tar(7), kept = layer_tar(8);
  std::string chain;
  int st = in_child([&] {
    auto s = open();
    auto r = reg(*s, t);
    auto k = reg(*s, kept);
    s->retain(k->node().chain_id.str());
    ::kill(::getpid(), SIGKILL);
    return 0;
  });
  ASSERT_EQ(st, 128 + SIGKILL);
  auto l = keep->list();
  ASSERT_EQ(l.size(), 2u);
  // `rm` of a layer only a dead process held: open it and release it.
  std::string victim;
  for (const auto& c : l)
    if (keep->retained(c) == 0) victim = c;
  ASSERT_FALSE(victim.empty());
  auto r = keep->get(victim);
  EXPECT_EQ(keep->release(*r).size(), 1u) << "a dead process's hold kept the layer";
  EXPECT_EQ(keep->list().size(), 1u);
  EXPECT_TRUE(keep->gc().empty()) << "gc removed a retained layer";
  EXPECT_EQ(keep->list().size(), 1u);
  expect_clean_disk(*keep);
}

TEST_P(SharedStoreTest, GcRemovesWhatNothingKeepsAndSparesLiveHolds) {
  auto a = open();
  auto b = open();
  auto base = reg(*a, layer_tar(9));
  auto top = reg(*a, layer_tar(10), base->node().chain_id.str());
  auto loose = reg(*a, layer_tar(11));
  auto held = reg(*b, layer_tar(12));
  Store::close_ref(*base);
  Store::close_ref(*top);
  Store::close_ref(*loose);  // no reference left: as after a crash before the retain
  a->retain(top->node().chain_id.str());
  auto removed = a->gc();
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].chain_id, loose->node().chain_id.str());
  EXPECT_EQ(a->list().size(), 3u) << "gc removed a retained chain or a layer another open holds";
  EXPECT_EQ(export_of(*held), layer_tar(12));
}

// ---- several processes at once ---------------------------------------------------------------

// Two long exports in two processes and a register in a third overlap: each exporter reads its
// first block, then waits until the register (started after both) has committed.
TEST_P(SharedStoreTest, LongExportsAndARegisterInThreeProcessesOverlap) {
  std::string big = layer_tar(13, 8, 400000);
  {
    auto s = open();
    auto r = reg(*s, big);
    s->retain(r->node().chain_id.str());
  }
  std::string chain = chain_id(Digest(), sha256_of(big.data(), big.size())).str();
  int started[2], go[2];
  ASSERT_EQ(::pipe(started), 0);
  ASSERT_EQ(::pipe(go), 0);
  std::vector<pid_t> kids;
  for (int e = 0; e < 2; e++) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int rc = 1;
      try {
        auto s = open();
        auto r = s->get(chain);
        auto src = Store::tar_stream(*r);
        std::string out(65536, '\0');
        size_t n = src->read(reinterpret_cast<uint8_t*>(out.data()), out.size());
        out.resize(n);
        char c = 's';
        if (::write(started[1], &c, 1) != 1) ::_exit(3);
        if (::read(go[0], &c, 1) != 1) ::_exit(4);  // the register committed meanwhile
        out += read_all(*src);
        rc = out == big ? 0 : 2;
      } catch (...) {
      }
      ::_exit(rc);
    }
    kids.push_back(pid);
  }
  pid_t reg_pid = ::fork();
  if (reg_pid == 0) {
    int rc = 1;
    try {
      char c;
      for (int i = 0; i < 2; i++)
        if (::read(started[0], &c, 1) != 1) ::_exit(5);
      auto s = open(false, 2000);
      auto r = reg(*s, layer_tar(14));
      s->retain(r->node().chain_id.str());
      c = 'g';
      for (int i = 0; i < 2; i++)
        if (::write(go[1], &c, 1) != 1) ::_exit(6);
      rc = 0;
    } catch (...) {
    }
    ::_exit(rc);
  }
  kids.push_back(reg_pid);
  for (pid_t k : kids) {
    int status = 0;
    ::waitpid(k, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "process " << k << " status " << status;
  }
  auto s = open();
  EXPECT_EQ(s->list().size(), 2u);
}

// N processes, random operations on a small shared set of layers, random SIGKILLs. Afterwards
// every retained layer verifies byte for byte, nothing unreferenced is left, no orphaned data,
// and no export failed because another process deleted its layer.
TEST_P(SharedStoreTest, StressManyProcessesWithKills) {
  constexpr int kProcs = 4, kOps = 120, kRounds = 3;
  std::vector<std::string> tars;
  for (int i = 0; i < 6; i++) tars.push_back(layer_tar(100 + i, 3, 3000 + 500 * i));
  // Layers 0..2 are bases; 3..5 sit on 0, 1, 2.
  auto parent_of = [](int i) { return i < 3 ? -1 : i - 3; };
  std::vector<std::string> chains(6);
  for (int i = 0; i < 6; i++) {
    Digest p = parent_of(i) < 0 ? Digest() : Digest::parse(chains[parent_of(i)]);
    chains[i] = chain_id(p, sha256_of(tars[i].data(), tars[i].size())).str();
  }
  std::string report = dir_.path() + "/report";
  std::mt19937 master(20261206);
  for (int round = 0; round < kRounds; round++) {
    std::vector<pid_t> kids;
    // One victim works until the parent kills it (so the kill lands in the middle of its
    // work); the others may kill themselves between two operations, holding what they hold.
    const int victim = static_cast<int>(master() % kProcs);
    int victim_started[2];
    ASSERT_EQ(::pipe(victim_started), 0);
    for (int p = 0; p < kProcs; p++) {
      unsigned seed = master();
      const int self_kill_at = master() % 3 == 0 ? static_cast<int>(master() % kOps) : -1;
      pid_t pid = ::fork();
      if (pid == 0) {
        std::mt19937 rng(seed);
        int failures = 0;
        std::string log;
        try {
          auto s = open(false, 30000);
          std::map<int, std::unique_ptr<LayerRef>> held;
          const int ops = p == victim ? 1000000 : kOps;
          for (int op = 0; op < ops; op++) {
            if (p == victim && op == 5) {
              char c = 'v';
              (void)!::write(victim_started[1], &c, 1);
            }
            if (op == self_kill_at && p != victim) ::kill(::getpid(), SIGKILL);
            int i = static_cast<int>(rng() % 6);
            int what = static_cast<int>(rng() % 6);
            try {
              switch (what) {
                case 0: {  // register (the parent first, when missing)
                  std::string parent;
                  if (parent_of(i) >= 0) {
                    parent = chains[parent_of(i)];
                    auto pr = reg(*s, tars[parent_of(i)]);
                    held[100 + op] = std::move(pr);
                  }
                  held[op] = reg(*s, tars[i], parent);
                  break;
                }
                case 1:  // open
                  held[op] = s->get(chains[i]);
                  break;
                case 2: {  // export of a held layer: must never fail
                  for (auto& kv : held) {
                    if (!kv.second) continue;
                    const auto& r = *kv.second;
                    int idx = static_cast<int>(std::find(chains.begin(), chains.end(), r.node().chain_id.str()) -
                                               chains.begin());
                    std::string got;
                    try {
                      got = export_of(r);
                    } catch (const Error& e) {
                      failures++;
                      log += std::string("export failed: ") + e.what() + "\n";
                      break;
                    }
                    if (got != tars[idx]) {
                      failures++;
                      log += "export differs\n";
                    }
                    break;
                  }
                  break;
                }
                case 3:  // release
                  if (!held.empty()) {
                    auto it = held.begin();
                    std::advance(it, rng() % held.size());
                    s->release(*it->second);
                    held.erase(it);
                  }
                  break;
                case 4:
                  s->retain(chains[i]);
                  break;
                case 5:
                  s->unretain(chains[i]);
                  break;
              }
            } catch (const Error& e) {
              // Expected answers to a racing world: not there, not retained.
              if (e.code() != Code::NotFound && e.code() != Code::NotRetained) {
                failures++;
                log += std::string("op ") + std::to_string(what) + ": " + e.what() + "\n";
              }
            }
          }
        } catch (const std::exception& e) {
          failures++;
          log += std::string("fatal: ") + e.what() + "\n";
        }
        if (failures) {
          fs::Fd fd(::open(report.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
          if (fd) (void)!::write(fd.get(), log.data(), log.size());
        }
        ::_exit(failures ? 1 : 0);
      }
      kids.push_back(pid);
    }
    // Kill the victim at a random moment once it works (sleeping for a random while is only
    // the choice of the moment: the checks below do not depend on timing).
    char c;
    ASSERT_EQ(::read(victim_started[0], &c, 1), 1) << "the victim did not start: " << slurp(report);
    std::this_thread::sleep_for(std::chrono::milliseconds(10 + master() % 150));
    ::kill(kids[victim], SIGKILL);
    ::close(victim_started[0]);
    ::close(victim_started[1]);
    for (int p = 0; p < kProcs; p++) {
      int status = 0;
      ::waitpid(kids[p], &status, 0);
      if (p == victim) {
        EXPECT_TRUE(WIFSIGNALED(status)) << "the victim ended before it was killed";
      }
      if (WIFSIGNALED(status)) continue;
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(report);
    }
  }
  EXPECT_EQ(slurp(report), "");
  // Afterwards: every layer with a reference verifies; nothing without one remains.
  auto s = open();
  s->gc();
  std::set<std::string> expect;
  for (int i = 0; i < 6; i++) {
    int64_t n = 0;
    if (code_of([&] { n = s->retained(chains[i]); }) != Code::Ok || n == 0) continue;
    expect.insert(chains[i]);
    if (parent_of(i) >= 0) expect.insert(chains[parent_of(i)]);
  }
  auto l = s->list();
  EXPECT_EQ(std::set<std::string>(l.begin(), l.end()), expect);
  for (const auto& c : l) {
    int idx = static_cast<int>(std::find(chains.begin(), chains.end(), c) - chains.begin());
    auto r = s->get(c);
    EXPECT_EQ(export_of(*r), tars[idx]);
  }
  expect_clean_disk(*s);
  // And once every reference is dropped, nothing at all.
  for (const auto& c : l)
    while (code_of([&] { s->unretain(c); }) == Code::Ok) {
    }
  s->gc();
  EXPECT_TRUE(s->list().empty());
  expect_clean_disk(*s);
}

// ---- read-only -------------------------------------------------------------------------------

TEST_P(SharedStoreTest, ReadOnlyOptionReadsAndRefusesWrites) {
  std::string t = layer_tar(20);
  std::string chain;
  {
    auto s = open();
    auto r = reg(*s, t);
    s->retain(r->node().chain_id.str());
    chain = r->node().chain_id.str();
  }
  auto ro = open(true);
  EXPECT_TRUE(ro->read_only());
  EXPECT_EQ(ro->list().size(), 1u);
  auto r = ro->get(chain);
  EXPECT_EQ(export_of(*r), t);
  EXPECT_EQ(ro->retained(chain), 1);
  EXPECT_EQ(err_errno([&] { reg(*ro, layer_tar(21)); }), EROFS);
  EXPECT_EQ(code_of([&] { reg(*ro, layer_tar(21)); }), Code::Io);
  EXPECT_EQ(err_errno([&] { ro->retain(chain); }), EROFS);
  EXPECT_EQ(err_errno([&] { ro->unretain(chain); }), EROFS);
  EXPECT_EQ(err_errno([&] { ro->gc(); }), EROFS);
  EXPECT_TRUE(ro->release(*r).empty());
  EXPECT_EQ(ro->list().size(), 1u);
  // Opening a root that has no store read-only creates nothing.
  StoreOptions o;
  o.read_only = true;
  EXPECT_EQ(code_of([&] { Store::open(dir_.path() + "/nothing", std::move(o)); }), Code::NotFound);
  EXPECT_FALSE(fs::exists(dir_.path() + "/nothing/metadata.db"));
  // Nor in an existing empty folder.
  fs::mkdirs(dir_.path() + "/empty", 0700);
  StoreOptions o2;
  o2.read_only = true;
  EXPECT_EQ(code_of([&] { Store::open(dir_.path() + "/empty", std::move(o2)); }), Code::NotFound);
  EXPECT_TRUE(names(dir_.path() + "/empty").empty()) << "a read-only open created files";
}

// A store on a read-only bind mount: list, export and verify work; writes fail with EROFS.
TEST_P(SharedStoreTest, ReadOnlyBindMount) {
  std::string t = layer_tar(22);
  std::string chain;
  {
    auto s = open();
    auto r = reg(*s, t);
    s->retain(r->node().chain_id.str());
    chain = r->node().chain_id.str();
  }
  std::string mnt = dir_.path() + "/ro";
  ::mkdir(mnt.c_str(), 0700);
  std::string report = dir_.path() + "/ro-report";
  int st = in_child([&]() -> int {
    if (::unshare(CLONE_NEWNS) != 0) return 77;
    if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 77;
    if (::mount(root().c_str(), mnt.c_str(), nullptr, MS_BIND, nullptr) != 0) return 77;
    if (::mount(nullptr, mnt.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) return 77;
    StoreOptions o;
    o.driver_name = GetParam();
    auto s = Store::open(mnt, std::move(o));
    if (!s->read_only()) return 10;
    if (s->list().size() != 1) return 11;
    auto r = s->get(chain);
    if (export_of(*r) != t) return 12;
    if (err_errno([&] { reg(*s, layer_tar(23)); }) != EROFS) return 13;
    if (err_errno([&] { s->unretain(chain); }) != EROFS) return 14;
    return 0;
  });
  if (st == 77) GTEST_SKIP() << "cannot make a private mount namespace or a read-only bind mount here (needs root)";
  EXPECT_EQ(st, 0) << "10: not read-only, 11: list, 12: export, 13/14: write not refused with EROFS, 99: exception";
}

// ---- the store's own files (issue 12, item 3) --------------------------------------------------

struct Plant {
  const char* entry;
  enum Kind { LinkToDir, DanglingLink, LinkToFile, Fifo } kind;
};

// Each of the store's own entries replaced by a symbolic link (or a FIFO): the open is refused
// with Corrupt naming the path, and nothing outside the store is unlinked or created.
TEST_P(SharedStoreTest, PlantedLinksAreRefusedAndNothingOutsideChanges) {
  const Plant plants[] = {
      {"pending", Plant::LinkToDir},   {"tmp", Plant::LinkToDir},         {"lock", Plant::DanglingLink},
      {"lock", Plant::LinkToFile},     {"metadata.db", Plant::LinkToFile}, {"metadata.db-wal", Plant::DanglingLink},
      {"dir", Plant::LinkToDir},       {"exact", Plant::LinkToDir},       {"tmp", Plant::Fifo},
      {"pending", Plant::Fifo},        {"metadata.db-shm", Plant::Fifo},
  };
  int k = 0;
  for (const auto& p : plants) {
    std::string base = dir_.path() + "/case" + std::to_string(k++);
    std::string store = base + "/store", outside = base + "/outside";
    fs::mkdirs(outside, 0700);
    {
      StoreOptions o;
      o.driver_name = GetParam();
      auto s = Store::open(store, std::move(o));
      MemSource src(layer_tar(30));
      auto r = s->register_layer("", src);
      s->retain(r->node().chain_id.str());
    }
    // The victim directory holds files an open must never touch.
    for (const char* f : {"canary", "0123abcd"}) {
      fs::Fd fd(::open((outside + "/" + f).c_str(), O_WRONLY | O_CREAT, 0600));
      ASSERT_TRUE(fd);
      ASSERT_EQ(::write(fd.get(), "x", 1), 1);
    }
    std::string entry = store + "/" + p.entry;
    fs::remove_all(entry);
    int rc = 0;
    switch (p.kind) {
      case Plant::LinkToDir: rc = ::symlink(outside.c_str(), entry.c_str()); break;
      case Plant::DanglingLink: rc = ::symlink((outside + "/created").c_str(), entry.c_str()); break;
      case Plant::LinkToFile: rc = ::symlink((outside + "/canary").c_str(), entry.c_str()); break;
      case Plant::Fifo: rc = ::mkfifo(entry.c_str(), 0600); break;
    }
    ASSERT_EQ(rc, 0) << entry;
    std::string what = std::string(p.entry) + " kind " + std::to_string(p.kind);
    for (bool ro : {false, true}) {
      StoreOptions o;
      o.driver_name = GetParam();
      o.read_only = ro;
      o.busy_timeout_ms = 200;
      std::string msg, path;
      Code c = Code::Ok;
      try {
        Store::open(store, std::move(o));
      } catch (const Error& e) {
        c = e.code();
        msg = e.what();
      }
      // The other driver's folder is not looked into by this driver: a link there is refused
      // all the same (it is the store's own name).
      EXPECT_EQ(c, Code::Corrupt) << what << (ro ? " (read-only)" : "") << ": " << msg;
      EXPECT_NE(msg.find(entry), std::string::npos) << what << ": the message must name the path: " << msg;
    }
    EXPECT_EQ(names(outside), (std::set<std::string>{"canary", "0123abcd"})) << what << ": something outside changed";
    EXPECT_EQ(slurp(outside + "/canary"), "x") << what;
    struct stat st;
    ASSERT_EQ(::stat((outside + "/canary").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << what << ": the mode of a file outside changed";
  }
}

// A layer's own folder in the driver replaced by a link to a directory outside: export and
// verify refuse it (never read through the link), and removing the layer unlinks only the link.
TEST_P(SharedStoreTest, PlantedLayerFolderLinkIsNotFollowed) {
  std::string outside = dir_.path() + "/outside";
  fs::mkdirs(outside, 0700);
  std::string t = layer_tar(31);
  std::string chain, cache;
  {
    auto s = open();
    auto r = reg(*s, t);
    s->retain(r->node().chain_id.str());
    chain = r->node().chain_id.str();
    cache = r->node().cache_id;
  }
  std::string layer_dir = root() + "/" + GetParam() + "/" + cache;
  // The outside directory looks like the layer (a copy), so that only the link gives it away.
  ASSERT_EQ(std::system(("cp -a '" + layer_dir + "/.' '" + outside + "/'").c_str()), 0);
  fs::remove_all(layer_dir);
  ASSERT_EQ(::symlink(outside.c_str(), layer_dir.c_str()), 0);
  auto before = names(outside);
  auto s = open();
  auto r = s->get(chain);
  std::string got;
  Code c = code_of([&] { got = export_of(*r); });
  EXPECT_TRUE(c == Code::Corrupt || c == Code::NotFound) << "export through a planted link: code " << static_cast<int>(c);
  Store::close_ref(*r);
  s->unretain(chain);
  EXPECT_TRUE(s->list().empty());
  struct stat st;
  EXPECT_NE(::lstat(layer_dir.c_str(), &st), 0) << "the planted link stayed";
  EXPECT_EQ(names(outside), before) << "removing the layer went through the link";
}

// Rows changed into a loop (A's parent B, B's parent A): the store neither recurses forever nor
// serves them; other layers still work.
TEST_P(SharedStoreTest, ParentRowsInALoopAreNotServed) {
  std::string a, b;
  {
    auto s = open();
    auto ra = reg(*s, layer_tar(50));
    auto rb = reg(*s, layer_tar(51), ra->node().chain_id.str());
    s->retain(rb->node().chain_id.str());
    a = ra->node().chain_id.str();
    b = rb->node().chain_id.str();
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((root() + "/metadata.db").c_str(), &db), SQLITE_OK);
    std::string sql = "PRAGMA foreign_keys=OFF; UPDATE layers SET parent = '" + b + "' WHERE chain_id = '" + a + "';";
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  auto s = open();
  EXPECT_EQ(code_of([&] { s->get(b); }), Code::NotFound);
  EXPECT_EQ(code_of([&] { s->get(a); }), Code::NotFound);
  EXPECT_TRUE(s->list().empty());
  auto c = reg(*s, layer_tar(52));
  EXPECT_EQ(export_of(*c), layer_tar(52));
}

// ---- permissions (issue 12, item 4) ------------------------------------------------------------

TEST_P(SharedStoreTest, AnExistingOpenRootIsMadePrivate) {
  ASSERT_EQ(::mkdir(root().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(root().c_str(), 0755), 0);
  ::umask(022);
  auto s = open();
  auto r = reg(*s, layer_tar(40));
  s->retain(r->node().chain_id.str());
  struct stat st;
  ASSERT_EQ(::stat(root().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const char* f : {"metadata.db", "metadata.db-wal", "metadata.db-shm", "lock"}) {
    if (::lstat((root() + "/" + f).c_str(), &st) != 0) continue;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  for (const char* d : {"tmp", "pending"}) {
    ASSERT_EQ(::lstat((root() + "/" + d).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u) << d;
  }
}

// A throwaway user: cannot take the lock, read the database or open the store; a root that
// belongs to that user and lets others in is refused (not tightened) by another user.
TEST_P(SharedStoreTest, AnotherUserCannotUseOrLockTheStore) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (to create a throwaway user with useradd)";
  std::string user = "rolayer_t" + std::to_string(::getpid() % 100000);
  std::string cmd = "useradd --no-create-home --shell /usr/sbin/nologin " + user + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "useradd " << user << " failed: cannot make a throwaway user";
  struct Del {
    std::string u;
    ~Del() { (void)!std::system(("userdel " + u + " >/dev/null 2>&1").c_str()); }
  } del{user};
  struct passwd* pw = ::getpwnam(user.c_str());
  ASSERT_NE(pw, nullptr);
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  {
    auto s = open();
    auto r = reg(*s, layer_tar(41));
    s->retain(r->node().chain_id.str());
  }
  // Let the user reach the directories above the store (the test's temporary folder).
  for (std::string p = dir_.path(); p.size() > 1; p = p.substr(0, p.rfind('/'))) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && (st.st_mode & 01) == 0) ::chmod(p.c_str(), st.st_mode | 01);
    if (p.rfind('/') == 0) break;
  }
  int st = in_child([&]() -> int {
    if (::setgid(gid) != 0 || ::setuid(uid) != 0) return 77;
    if (::open((root() + "/lock").c_str(), O_RDONLY) >= 0) return 10;
    if (::open((root() + "/metadata.db").c_str(), O_RDONLY) >= 0) return 11;
    StoreOptions o;
    o.driver_name = GetParam();
    o.busy_timeout_ms = 100;
    if (code_of([&] { Store::open(root(), std::move(o)); }) == Code::Ok) return 12;
    return 0;
  });
  ASSERT_NE(st, 77) << "could not switch to the throwaway user";
  EXPECT_EQ(st, 0) << "10: the lock file could be opened, 11: the database could be read, 12: the store opened";
  // A root owned by the other user, open to others: refused by root (not its owner).
  std::string theirs = dir_.path() + "/theirs";
  ASSERT_EQ(::mkdir(theirs.c_str(), 0755), 0);
  ASSERT_EQ(::chown(theirs.c_str(), uid, gid), 0);
  ASSERT_EQ(::chmod(theirs.c_str(), 0755), 0);
  StoreOptions o;
  o.driver_name = GetParam();
  std::string msg;
  try {
    Store::open(theirs, std::move(o));
  } catch (const Error& e) {
    msg = e.what();
    EXPECT_EQ(e.sys_errno(), EACCES);
  }
  EXPECT_NE(msg.find("other users can reach it"), std::string::npos) << msg;
  EXPECT_TRUE(names(theirs).empty()) << "a refused root was written to";
}

INSTANTIATE_TEST_SUITE_P(Drivers, SharedStoreTest, ::testing::Values("dir", "exact"),
                         [](const auto& info) { return info.param; });

}  // namespace
