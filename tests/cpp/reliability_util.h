/* SPDX-License-Identifier: Apache-2.0 */
// Shared by crash_test.cpp, fault_test.cpp and tamper_test.cpp (docs/reliability.md):
// - child processes that run one store operation in a fresh process (this test binary,
//   re-executed, so that ROLAYER_FAULT_KILL / ROLAYER_FAULT_ERRNO are read at its start),
// - random layers,
// - check_store: the consistency check after a crash or a fault.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "digest/digest.h"
#include "store/store.h"
#include "test_util.h"

extern char** environ;

namespace rolayer::reltest {

// ---- knobs ---------------------------------------------------------------------------------

inline long env_long(const char* name, long def) {
  const char* v = std::getenv(name);
  if (!v || !*v) return def;
  return std::strtol(v, nullptr, 0);
}

inline bool fault_hooks_built() {
#ifdef ROLAYER_FAULT_HOOKS
  return true;
#else
  return false;
#endif
}

// ---- scratch directories -------------------------------------------------------------------

// A temporary directory, on /dev/shm when it is usable (syncfs and fsync cost nothing there, and
// a SIGKILL loses nothing that a disk would keep), else $TMPDIR or /tmp. ROLAYER_RELIABILITY_TMP
// overrides. Mode 0711 so that a child that dropped its privileges can reach a store inside.
class Scratch {
 public:
  Scratch() {
    std::string base;
    if (const char* v = std::getenv("ROLAYER_RELIABILITY_TMP"); v && *v) {
      base = v;
    } else if (::access("/dev/shm", W_OK | X_OK) == 0) {
      base = "/dev/shm";
    } else {
      const char* t = std::getenv("TMPDIR");
      base = t && *t ? t : "/tmp";
    }
    std::string tmpl = base + "/rolayer-rel-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back(0);
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
    path_ = buf.data();
    ::chmod(path_.c_str(), 0711);
  }
  ~Scratch() {
    try {
      if (!std::getenv("ROLAYER_RELIABILITY_KEEP")) fs::remove_all(path_);
    } catch (...) {
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---- small file helpers ----------------------------------------------------------------------

inline std::vector<std::string> dir_entries(const std::string& dir, bool* missing = nullptr) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (missing) *missing = d == nullptr;
  if (!d) return out;
  while (struct dirent* de = ::readdir(d))
    if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, "..")) out.emplace_back(de->d_name);
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

inline std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (const auto& x : v) {
    if (!s.empty()) s += sep;
    s += x;
  }
  return s;
}

inline std::string short_id(const std::string& chain) {
  auto c = chain.find(':');
  return chain.substr(c == std::string::npos ? 0 : c + 1, 12);
}

inline std::string chain_of(const std::string& parent, const std::string& tar) {
  Digest diff = sha256_of(tar.data(), tar.size());
  return chain_id(parent.empty() ? Digest() : Digest::parse(parent), diff).str();
}

// ---- random layers -------------------------------------------------------------------------

// A random layer over a small name space (so that layers overwrite, white out and hard-link
// each other's paths): directories d0..d3; files f*, symlinks l*, hard links h* (to a file of
// the same tar); whiteouts and opaque markers when not a base layer; sometimes the same file
// path twice (the dir driver then relocates the first payload). `big` allows one payload
// above 1 MiB (the streamed, checked-at-the-end export path).
inline std::string random_layer(std::mt19937_64& rng, bool base, bool big = false) {
  using test::TarItem;
  auto pick = [&](uint64_t n) { return static_cast<uint64_t>(rng() % n); };
  std::vector<TarItem> items;
  std::set<std::string> used;
  for (int d = 0; d < 4; d++) items.push_back({TarItem::Dir, "d" + std::to_string(d), ""});
  // A marker so that no two random layers are the same (the register would then converge).
  items.push_back({TarItem::File, "id-" + std::to_string(rng()), std::to_string(rng())});
  std::vector<std::string> files;
  int nfiles = 2 + static_cast<int>(pick(10));
  bool have_big = false;
  for (int i = 0; i < nfiles; i++) {
    std::string name = "d" + std::to_string(pick(4)) + "/f" + std::to_string(pick(12));
    size_t size;
    uint64_t r = pick(100);
    if (r < 10) size = 0;
    else if (r < 70) size = pick(4096);
    else if (r < 95) size = 4096 + pick(60000);
    else size = 64 * 1024 + pick(200000);
    if (big && !have_big && pick(3) == 0) {
      size = (1 << 20) + 1 + pick(300000);
      have_big = true;
    }
    std::string content(size, '\0');
    uint64_t kind = pick(3);
    for (size_t k = 0; k < size; k++)
      content[k] = kind == 0 ? static_cast<char>(rng()) : kind == 1 ? static_cast<char>('a' + k % 26) : 'z';
    items.push_back({TarItem::File, name, std::move(content), pick(4) == 0 ? 0755 : 0644});
    used.insert(name);
    files.push_back(name);
  }
  if (pick(3) == 0) {  // the same path again: the earlier payload is kept elsewhere
    std::string name = files[pick(files.size())];
    items.push_back({TarItem::File, name, "again-" + std::to_string(rng())});
  }
  if (pick(2) == 0)
    items.push_back({TarItem::Symlink, "d" + std::to_string(pick(4)) + "/l" + std::to_string(pick(4)),
                     "f" + std::to_string(pick(12))});
  if (pick(2) == 0) {
    // A hard link to a file of this tar that is not rewritten later.
    std::string target = files[pick(files.size())];
    bool rewritten = false;
    int seen = 0;
    for (const auto& it : items)
      if (it.kind == TarItem::File && it.name == target && ++seen > 1) rewritten = true;
    if (!rewritten) {
      std::string name = "d" + std::to_string(pick(4)) + "/h" + std::to_string(pick(4));
      if (!used.count(name)) {
        items.push_back({TarItem::Hardlink, name, target});
        used.insert(name);
      }
    }
  }
  if (!base) {
    if (pick(2) == 0) {
      for (int tries = 0; tries < 8; tries++) {
        std::string d = "d" + std::to_string(pick(4)), f = "f" + std::to_string(pick(12));
        if (used.count(d + "/" + f)) continue;
        items.push_back({TarItem::File, d + "/.wh." + f, ""});
        break;
      }
    }
    if (pick(5) == 0) items.push_back({TarItem::File, "d" + std::to_string(pick(4)) + "/.wh..wh..opq", ""});
  }
  return test::make_tar(items);
}

// ---- exports -------------------------------------------------------------------------------

struct ExportResult {
  bool ok = false;
  std::string data;  // what was read before the end or the error
  Code code = Code::Ok;
  int sys_errno = 0;
  std::string message, path, diff_id;
};

inline ExportResult export_layer(const LayerRef& ref) {
  ExportResult r;
  try {
    auto src = Store::tar_stream(ref);
    std::vector<uint8_t> buf(1 << 16);
    for (;;) {
      size_t n = src->read(buf.data(), buf.size());
      if (n == 0) break;
      r.data.append(reinterpret_cast<char*>(buf.data()), n);
    }
    r.ok = true;
  } catch (const Error& e) {
    r.code = e.code();
    r.sys_errno = e.sys_errno();
    r.message = e.what();
    r.path = e.path();
    r.diff_id = e.diff_id();
  } catch (const std::exception& e) {
    r.code = Code::User;  // not a rolayer::Error: reported as a problem by the callers
    r.message = std::string("non-rolayer exception: ") + e.what();
  }
  return r;
}

inline std::string describe(const ExportResult& r) {
  if (r.ok) return "ok (" + std::to_string(r.data.size()) + " bytes)";
  return "code " + std::to_string(static_cast<int>(r.code)) + " errno " + std::to_string(r.sys_errno) + ": " +
         r.message + (r.path.empty() ? "" : " [path " + r.path + "]");
}

// ---- the consistency check -------------------------------------------------------------------

struct CheckResult {
  std::vector<std::string> problems;
  std::set<std::string> present;             // chain IDs listed after the reopen
  std::map<std::string, std::string> cache;  // chain ID -> driver id
};

inline std::string sqlite_problem(sqlite3* db, const char* sql, bool expect_ok_row) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK) return std::string(sql) + ": " + sqlite3_errmsg(db);
  std::string out;
  int rc;
  int rows = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    rows++;
    const unsigned char* t = sqlite3_column_text(st, 0);
    std::string v = t ? reinterpret_cast<const char*>(t) : "NULL";
    if (expect_ok_row && v == "ok") continue;
    if (!out.empty()) out += "; ";
    out += v;
  }
  if (rc != SQLITE_DONE) out += std::string(" (") + sqlite3_errmsg(db) + ")";
  sqlite3_finalize(st);
  if (expect_ok_row && rows == 0) out = "no result";
  return out.empty() ? out : std::string(sql) + " -> " + out;
}

// Reopens the store at root and checks what a crash or a fault may leave:
// - every layer of `must` is listed, nothing outside must ∪ may is listed;
// - every listed layer whose tar is known exports verified, byte for byte;
// - <root>/<driver>/ holds exactly the listed layers' driver ids; <root>/tmp and
//   <root>/pending are empty after the open;
// - the database passes integrity_check and foreign_key_check, every row is a listed layer,
//   every parent exists, no record chunk lacks its layer, every recorded layer has its record.
// Listed layers without a persistent reference get one (so that the next trial finds them).
inline CheckResult check_store(const std::string& root, const std::string& driver,
                               const std::map<std::string, std::string>& must,
                               const std::map<std::string, std::string>& may = {}) {
  CheckResult res;
  auto& P = res.problems;
  {
    std::unique_ptr<Store> s;
    try {
      StoreOptions o;
      o.driver_name = driver;
      o.busy_timeout_ms = 20000;
      s = Store::open(root, std::move(o));
    } catch (const Error& e) {
      P.push_back(std::string("reopen failed: ") + e.what());
      return res;
    }
    std::vector<std::string> listed;
    try {
      listed = s->list();
    } catch (const Error& e) {
      P.push_back(std::string("list failed: ") + e.what());
      return res;
    }
    res.present.insert(listed.begin(), listed.end());
    for (const auto& [c, tar] : must)
      if (!res.present.count(c)) P.push_back("committed layer " + short_id(c) + " is missing after the reopen");
    for (const auto& c : listed) {
      const std::string* tar = nullptr;
      if (auto it = must.find(c); it != must.end()) tar = &it->second;
      else if (auto jt = may.find(c); jt != may.end()) tar = &jt->second;
      if (!tar) P.push_back("unexpected layer " + c + " is listed (half of an interrupted operation?)");
      try {
        auto ref = s->get(c);
        res.cache[c] = ref->node().cache_id;
        if (s->retained(c) == 0) s->retain(c);
        if (tar) {
          ExportResult r = export_layer(*ref);
          if (!r.ok) P.push_back("layer " + short_id(c) + " does not export: " + describe(r));
          else if (r.data != *tar)
            P.push_back("layer " + short_id(c) + " exports " + std::to_string(r.data.size()) +
                        " bytes that verified but differ from the registered " + std::to_string(tar->size()));
        }
      } catch (const Error& e) {
        P.push_back("layer " + short_id(c) + ": " + e.what());
      }
    }
    // Driver data: exactly the listed layers' ids.
    bool missing = false;
    auto ids = dir_entries(root + "/" + driver, &missing);
    if (missing) P.push_back("no driver directory " + root + "/" + driver);
    std::set<std::string> want;
    for (const auto& [c, id] : res.cache) want.insert(id);
    // The dir driver's own files (issue 15): its layout version, always there after an open,
    // and the empty lower directory it makes for mounts of a single layer.
    if (driver == "dir" && !missing && std::find(ids.begin(), ids.end(), ".format") == ids.end())
      P.push_back("no layout version file " + root + "/dir/.format");
    for (const auto& id : ids)
      if (!want.count(id) && !(driver == "dir" && (id == ".format" || id == ".empty")))
        P.push_back("orphaned driver data " + root + "/" + driver + "/" + id);
    for (const auto& id : want)
      if (std::find(ids.begin(), ids.end(), id) == ids.end())
        P.push_back("driver data of a listed layer is missing: " + root + "/" + driver + "/" + id);
    auto tmp = dir_entries(root + "/tmp");
    if (!tmp.empty()) P.push_back("<root>/tmp not empty after open: " + join(tmp));
    auto pend = dir_entries(root + "/pending");
    if (!pend.empty()) P.push_back("<root>/pending not empty after open: " + join(pend));
  }
  // The database itself, with the store closed.
  sqlite3* db = nullptr;
  if (sqlite3_open_v2((root + "/metadata.db").c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    P.push_back("cannot open metadata.db: " + std::string(db ? sqlite3_errmsg(db) : "?"));
    sqlite3_close(db);
    return res;
  }
  for (auto [sql, ok_row] : std::vector<std::pair<const char*, bool>>{
           {"PRAGMA integrity_check", true},
           {"PRAGMA foreign_key_check", false},
           {"SELECT 'record chunk without layer: ' || chain_id FROM records WHERE chain_id NOT IN "
            "(SELECT chain_id FROM layers)", false},
           {"SELECT 'parent row missing for ' || chain_id FROM layers WHERE parent IS NOT NULL AND parent NOT IN "
            "(SELECT chain_id FROM layers)", false},
           {"SELECT 'record missing for ' || chain_id FROM layers WHERE has_record = 1 AND NOT EXISTS "
            "(SELECT 1 FROM records r WHERE r.chain_id = layers.chain_id AND r.seq = 0)", false},
       }) {
    std::string p = sqlite_problem(db, sql, ok_row);
    if (!p.empty()) P.push_back(p);
  }
  {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT chain_id FROM layers", -1, &st, nullptr);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
      std::string c = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      if (!res.present.count(c)) P.push_back("database row " + c + " is not a listed layer");
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return res;
}

// ---- child processes -----------------------------------------------------------------------

// A job runs in a re-executed child: it reads its parameters from ROLAYER_REL_* variables,
// writes result lines to the descriptor ROLAYER_REL_RESULT_FD and returns its exit status.
using Job = int (*)();

inline std::map<std::string, Job>& jobs() {
  static std::map<std::string, Job> m;
  return m;
}

inline void child_result(const std::string& line) {
  int fd = static_cast<int>(env_long("ROLAYER_REL_RESULT_FD", -1));
  if (fd < 0) return;
  // Plain write(2): fs::write_full holds the fs.write fault point, which the job may be counting.
  std::string l = line + "\n";
  const char* p = l.data();
  size_t left = l.size();
  while (left) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

inline std::string child_env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

inline std::unique_ptr<Store> child_open() {
  StoreOptions o;
  o.driver_name = child_env("ROLAYER_REL_DRIVER");
  o.busy_timeout_ms = 20000;
  return Store::open(child_env("ROLAYER_REL_ROOT"), std::move(o));
}

inline void report_error(const Error& e) {
  std::string m = e.what();
  for (auto& ch : m)
    if (ch == '\n') ch = ' ';
  child_result("err " + std::to_string(static_cast<int>(e.code())) + " " + std::to_string(e.sys_errno()) + " " + m);
}

// register: the tar on stdin (streamed: the parent may kill the child after any byte) on
// ROLAYER_REL_PARENT; retains it. "ok <chain>".
inline int job_register() {
  try {
    auto s = child_open();
    fs::FdSource in(fs::Fd(::dup(0)));
    auto r = s->register_layer(child_env("ROLAYER_REL_PARENT"), in);
    s->retain(r->node().chain_id.str());
    child_result("ok " + r->node().chain_id.str());
  } catch (const Error& e) {
    report_error(e);
  }
  return 0;
}

// register-twice: the tar on stdin, on ROLAYER_REL_PARENT, then again on top of itself; both
// retained. "ok <chain1>" after the first, "ok <chain2>" after the second.
inline int job_register_twice() {
  try {
    auto s = child_open();
    fs::FdSource in(fs::Fd(::dup(0)));
    std::string tar = test::read_all(in);
    test::MemSource a(tar);
    auto r1 = s->register_layer(child_env("ROLAYER_REL_PARENT"), a);
    s->retain(r1->node().chain_id.str());
    child_result("ok " + r1->node().chain_id.str());
    test::MemSource b(tar);
    auto r2 = s->register_layer(r1->node().chain_id.str(), b);
    s->retain(r2->node().chain_id.str());
    child_result("ok " + r2->node().chain_id.str());
  } catch (const Error& e) {
    report_error(e);
  }
  return 0;
}

// unretain: drops the persistent reference on ROLAYER_REL_CHAIN (which may cascade).
// "ok <number of removed layers>".
inline int job_unretain() {
  try {
    auto s = child_open();
    auto removed = s->unretain(child_env("ROLAYER_REL_CHAIN"));
    child_result("ok " + std::to_string(removed.size()));
  } catch (const Error& e) {
    report_error(e);
  }
  return 0;
}

// open: opens the store (cleaning up after an earlier crash) and closes it. "ok".
inline int job_open() {
  try {
    auto s = child_open();
    child_result("ok");
  } catch (const Error& e) {
    report_error(e);
  }
  return 0;
}

class ChildEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* job = std::getenv("ROLAYER_REL_JOB");
    if (!job) return;
    auto it = jobs().find(job);
    int rc = 98;
    try {
      rc = it == jobs().end() ? 99 : it->second();
    } catch (...) {
      rc = 97;
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
};

// Installs the child dispatch once per process (every including file calls it at static
// initialisation).
inline bool install_child_jobs() {
  static bool once = [] {
    jobs()["register"] = &job_register;
    jobs()["register-twice"] = &job_register_twice;
    jobs()["unretain"] = &job_unretain;
    jobs()["open"] = &job_open;
    ::testing::AddGlobalTestEnvironment(new ChildEnvironment);
    return true;
  }();
  return once;
}

struct Child {
  pid_t pid = -1;
  int in = -1;   // the child's stdin (write end), or -1
  int res = -1;  // the child's result lines (read end)
};

// Starts this test binary again as a child running `job`, with `env` added to (and every
// ROLAYER_FAULT_* / ROLAYER_REL_* variable of this process removed from) the environment.
inline Child spawn_job(const std::string& job, const std::vector<std::pair<std::string, std::string>>& env,
                       bool with_stdin) {
  const ::testing::TestInfo* ti = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string filter = "--gtest_filter=";
  filter += ti ? std::string(ti->test_suite_name()) + "." + ti->name() : std::string("*");
  int inp[2] = {-1, -1}, resp[2];
  if (with_stdin && ::pipe2(inp, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  if (::pipe2(resp, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  std::vector<std::string> envs;
  for (char** e = environ; *e; e++) {
    std::string v = *e;
    if (v.rfind("ROLAYER_FAULT_", 0) == 0 || v.rfind("ROLAYER_REL_", 0) == 0) continue;
    envs.push_back(v);
  }
  envs.push_back("ROLAYER_REL_JOB=" + job);
  envs.push_back("ROLAYER_REL_RESULT_FD=3");
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& v : envs) envp.push_back(v.data());
  envp.push_back(nullptr);
  std::string arg0 = "rolayer_cpp_tests";
  char* argv[] = {arg0.data(), filter.data(), nullptr};
  bool quiet = !std::getenv("ROLAYER_RELIABILITY_VERBOSE");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDWR);
    ::dup2(with_stdin ? inp[0] : devnull, 0);
    ::dup2(devnull, 1);
    if (quiet) ::dup2(devnull, 2);
    ::dup2(resp[1], 3);
    ::execve("/proc/self/exe", argv, envp.data());
    ::_exit(127);
  }
  Child c;
  c.pid = pid;
  if (with_stdin) {
    ::close(inp[0]);
    c.in = inp[1];
  }
  ::close(resp[1]);
  c.res = resp[0];
  return c;
}

// Writes data to the child's stdin; false when the child went away (or a timeout passed).
inline bool feed(int fd, const char* data, size_t len, int timeout_ms = 60000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (len) {
    struct pollfd p = {fd, POLLOUT, 0};
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) return false;
    int r = ::poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    if (p.revents & (POLLERR | POLLHUP)) return false;
    ssize_t n = ::write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return false;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// Waits until the child has read everything written to its stdin (or has exited).
inline void wait_drained(const Child& c, int timeout_ms = 30000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int n = 0;
    if (::ioctl(c.in, FIONREAD, &n) != 0 || n == 0) return;
    int st;
    if (::waitpid(c.pid, &st, WNOHANG | WNOWAIT) != 0) return;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

struct Outcome {
  bool killed = false;     // ended by SIGKILL
  bool exited = false;     // exited normally
  int status = 0;          // exit status or signal
  std::vector<std::string> lines;  // result lines
  bool timed_out = false;
  std::string describe() const {
    std::string s = killed ? "killed" : exited ? "exit " + std::to_string(status) : "signal " + std::to_string(status);
    if (timed_out) s += " (timed out)";
    for (const auto& l : lines) s += " | " + l.substr(0, 200);
    return s;
  }
};

// Closes stdin (if still open), waits for the child (SIGKILL after timeout_ms), collects results.
inline Outcome finish(Child& c, int timeout_ms = 120000) {
  Outcome o;
  if (c.in >= 0) {
    ::close(c.in);
    c.in = -1;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int st = 0;
  for (;;) {
    pid_t r = ::waitpid(c.pid, &st, WNOHANG);
    if (r == c.pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(c.pid, SIGKILL);
      o.timed_out = true;
      ::waitpid(c.pid, &st, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (WIFSIGNALED(st)) {
    o.status = WTERMSIG(st);
    o.killed = o.status == SIGKILL;
  } else if (WIFEXITED(st)) {
    o.exited = true;
    o.status = WEXITSTATUS(st);
  }
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(c.res, buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
  ::close(c.res);
  c.res = -1;
  std::stringstream ss(all);
  std::string line;
  while (std::getline(ss, line)) o.lines.push_back(line);
  return o;
}

// SIGPIPE ignored while a parent feeds children that may die.
class IgnoreSigpipe {
 public:
  IgnoreSigpipe() { old_ = ::signal(SIGPIPE, SIG_IGN); }
  ~IgnoreSigpipe() { ::signal(SIGPIPE, old_); }

 private:
  sighandler_t old_;
};

// ---- a store used by a series of trials ---------------------------------------------------

// Opens/creates a store in-process, registers tars and retains them (the parent's own setup).
struct StoreModel {
  std::string root, driver;
  std::map<std::string, std::string> tars;    // committed chain -> tar
  std::map<std::string, std::string> parent;  // chain -> parent chain ("" for a base)

  std::unique_ptr<Store> open() const {
    StoreOptions o;
    o.driver_name = driver;
    return Store::open(root, std::move(o));
  }
  // Registers in this process; retain=false leaves the layer without a persistent reference
  // (alive only through its children, for cascades).
  std::string add(Store& s, const std::string& tar, const std::string& par, bool retain = true) {
    test::MemSource src(tar, 70000);
    auto r = s.register_layer(par, src);
    std::string c = r->node().chain_id.str();
    if (retain) s.retain(c);
    tars[c] = tar;
    parent[c] = par;
    return c;
  }
  std::vector<std::string> children_of(const std::string& c) const {
    std::vector<std::string> out;
    for (const auto& [k, p] : parent)
      if (p == c && tars.count(k)) out.push_back(k);
    return out;
  }
  void forget(const std::string& c) {
    tars.erase(c);
    parent.erase(c);
  }
};

}  // namespace rolayer::reltest
