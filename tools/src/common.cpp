// SPDX-License-Identifier: Apache-2.0
#include "common.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/cpus.h"

namespace cli {

std::atomic<int> g_interrupted{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free atomic");

namespace {
extern "C" void on_signal(int sig) { g_interrupted.store(sig, std::memory_order_relaxed); }
}  // namespace

void install_signal_handlers() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  // No SA_RESTART: a blocked read or write returns and we stop cleanly. SA_RESETHAND: the first
  // signal asks for a clean stop; a second one (while a long library call finishes) kills at once.
  sa.sa_flags = SA_RESETHAND;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    // A signal the caller ignores (nohup, a background job of a script) stays ignored.
    struct sigaction old;
    if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    sigaction(sig, &sa, nullptr);
  }
}

void ignore_sigpipe() {
  // A closed pipe is reported as a write error (EPIPE), not a silent death.
  std::signal(SIGPIPE, SIG_IGN);
}

CliError interrupted_error() {
  int sig = g_interrupted.load() ? g_interrupted.load() : SIGINT;
  return CliError(kInterrupted + sig, std::string("interrupted (") + (sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "SIGINT") + ")");
}

void check_interrupted() {
  if (interrupted()) throw interrupted_error();
}

[[noreturn]] void usage_error(const std::string& msg) { throw CliError(kUsage, msg); }

[[noreturn]] void sys_fail(const std::string& what) {
  int e = errno;
  if (e == EINTR && interrupted()) throw interrupted_error();
  throw CliError(kFailure, what + ": " + std::strerror(e));
}

int exit_code_for(int rc) {
  switch (rc) {
    case ROLAYER_OK: return kOk;
    case ROLAYER_ENOTFOUND: return kNotFound;
    case ROLAYER_EDIGEST:
    case ROLAYER_ECORRUPT: return kVerify;
    case ROLAYER_EBUSY: return kBusy;
    case ROLAYER_EARCHIVE:
    case ROLAYER_EUNSAFE: return kBadInput;
    case ROLAYER_EINVAL:
    case ROLAYER_ENOTANCESTOR: return kUsage;
    default: return kFailure;
  }
}

std::string Err::message(int rc) const {
  if (e_) {
    const char* m = rolayer_error_message(e_);
    if (m && *m) return m;
  }
  return rolayer_strerror(rc);
}

[[noreturn]] void lib_fail(int rc, const Err& err, const std::string& context) {
  std::string msg = err.message(rc);
  if (const char* p = err.path(); p && *p && msg.find(p) == std::string::npos)
    msg += " (path: " + std::string(p) + ")";
  throw CliError(exit_code_for(rc), context.empty() ? msg : context + ": " + msg);
}

// --- store ------------------------------------------------------------------------------------

namespace {
std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}
std::string home_dir() {
  std::string h = env("HOME");
  if (!h.empty()) return h;
  if (struct passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) return pw->pw_dir;
  throw CliError(kFailure, "cannot find a home directory for the default store: set ROLAYER_ROOT or use --store DIR");
}
}  // namespace

std::string default_store_root(const Globals& g) {
  if (!g.store.empty()) return g.store;
  if (std::string r = env("ROLAYER_ROOT"); !r.empty()) return r;
  // XDG Base Directory spec: a relative $XDG_DATA_HOME is invalid and ignored.
  if (std::string x = env("XDG_DATA_HOME"); !x.empty() && x[0] == '/') return x + "/rolayer";
  return home_dir() + "/.local/share/rolayer";
}

StorePtr open_store(const Globals& g) {
  std::string root = default_store_root(g);
  std::string driver = g.driver.empty() ? env("ROLAYER_DRIVER") : g.driver;
  // First use creates the store: its parents too (e.g. ~/.local/share on a fresh account).
  mkdirs(dirname_of(root), 0755);
  rolayer_store_options opts = ROLAYER_STORE_OPTIONS_INIT;
  opts.driver = driver.empty() ? nullptr : driver.c_str();
  opts.busy_timeout_ms = g.busy_timeout_ms;
  opts.payload_pack_max = g.pack_small;
  rolayer_store* s = nullptr;
  Err err;
  int rc = rolayer_store_open_ext(&s, root.c_str(), &opts, err.out());
  if (rc == ROLAYER_EBUSY) {
    char waited[64];
    if (g.busy_timeout_ms < 0)
      std::snprintf(waited, sizeof waited, "did not wait");
    else
      std::snprintf(waited, sizeof waited, "waited %g s", (g.busy_timeout_ms == 0 ? 5000 : g.busy_timeout_ms) / 1000.0);
    throw CliError(kBusy, "cannot open the store at " + root + ": " + err.message(rc) + " (" + std::string(waited) +
                              "; use --wait SECONDS to wait longer)");
  }
  if (rc != ROLAYER_OK) {
    std::string msg = err.message(rc);
    if (rc == ROLAYER_EINVAL && msg.find("driver") != std::string::npos)
      msg += " (choose it with --driver NAME or ROLAYER_DRIVER)";
    throw CliError(exit_code_for(rc), "cannot open the store at " + root + ": " + msg);
  }
  // From here on there is something to clean up (temporary files, handles): catch the signals.
  // Until now a signal simply ends the process (waiting for a busy store, for instance).
  install_signal_handlers();
  return StorePtr(s);
}

Layer open_layer(rolayer_store* store, const std::string& chain_id) {
  rolayer_layer* l = nullptr;
  Err err;
  int rc = rolayer_open(&l, store, chain_id.c_str(), err.out());
  if (rc == ROLAYER_ENOTFOUND) throw CliError(kNotFound, "no such layer: " + chain_id);
  if (rc != ROLAYER_OK) lib_fail(rc, err, chain_id);
  return Layer(l);
}

std::vector<Layer> open_chain(rolayer_store* store, const std::string& top, int64_t* total_size) {
  std::vector<Layer> chain;
  int64_t total = 0;
  for (std::string c = top; !c.empty();) {
    Layer l = open_layer(store, c);
    int64_t sz = 0;
    rolayer_layer_stream_size(&sz, l.get(), nullptr);
    total += std::max<int64_t>(0, sz);
    const char* par = rolayer_layer_parent(l.get());
    c = par ? par : "";
    chain.push_back(std::move(l));
  }
  std::reverse(chain.begin(), chain.end());
  if (total_size) *total_size = total;
  return chain;
}

std::vector<std::string> list_chain_ids(rolayer_store* store) {
  rolayer_string_list* l = nullptr;
  Err err;
  int rc = rolayer_store_list(&l, store, err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "listing the store");
  std::vector<std::string> ids;
  size_t n = rolayer_string_list_count(l);
  ids.reserve(n);
  for (size_t i = 0; i < n; i++) ids.emplace_back(rolayer_string_list_get(l, i));
  rolayer_string_list_free(l);
  return ids;
}

namespace {
bool is_lower_hex(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
}  // namespace

bool is_digest(const std::string& s) {
  if (s.rfind("sha256:", 0) == 0) return s.size() == 7 + 64 && is_lower_hex(s.substr(7));
  if (s.rfind("sha512:", 0) == 0) return s.size() == 7 + 128 && is_lower_hex(s.substr(7));
  return false;
}

std::string resolve_chain_id(rolayer_store* store, const std::string& arg) {
  if (arg.empty()) usage_error("empty ChainID");
  if (is_digest(arg)) return arg;
  std::string hex = arg;
  if (hex.rfind("sha256:", 0) == 0) hex = hex.substr(7);
  std::string lower = hex;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (!is_lower_hex(lower) || lower.size() > 64) usage_error("not a ChainID: \"" + arg + "\"");
  if (lower.size() == 64) return "sha256:" + lower;
  std::vector<std::string> hits;
  for (const auto& id : list_chain_ids(store))
    if (id.rfind("sha256:" + lower, 0) == 0) hits.push_back(id);
  if (hits.empty()) throw CliError(kNotFound, "no such layer: " + arg);
  if (hits.size() > 1) usage_error("ambiguous ChainID prefix \"" + arg + "\": " + std::to_string(hits.size()) + " layers match");
  return hits[0];
}

// --- utilities --------------------------------------------------------------------------------

std::string human_bytes(int64_t n) {
  if (n < 0) return "?";
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    u++;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(n));
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string short_id(const std::string& id) {
  auto c = id.find(':');
  std::string hex = c == std::string::npos ? id : id.substr(c + 1);
  return hex.substr(0, 12);
}

std::string dirname_of(const std::string& path) {
  auto p = path.find_last_of('/');
  if (p == std::string::npos) return ".";
  if (p == 0) return "/";
  return path.substr(0, p);
}

std::string basename_of(const std::string& path) {
  auto p = path.find_last_of('/');
  return p == std::string::npos ? path : path.substr(p + 1);
}

int usable_cpus() { return rolayer::usable_cpus(); }

int default_jobs() { return std::clamp(usable_cpus(), 1, kDefaultJobsMax); }

bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void mkdirs(const std::string& path, unsigned mode) {
  if (path.empty() || is_directory(path)) return;
  std::string parent = dirname_of(path);
  if (parent != path) mkdirs(parent, 0755);
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) sys_fail("mkdir " + path);
}

void write_all(int fd, const void* data, size_t len, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    // A signal interrupts a blocked write with a short count, not EINTR: look before writing on.
    check_interrupted();
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR && !interrupted()) continue;
      sys_fail("write " + what);
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
}

std::string read_file(const std::string& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) throw CliError(kNotFound, path + ": no such file");
    sys_fail("open " + path);
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR && !interrupted()) continue;
      int e = errno;
      ::close(fd);
      errno = e;
      sys_fail("read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      ::close(fd);
      throw CliError(kBadInput, path + ": larger than " + human_bytes(static_cast<int64_t>(max_bytes)));
    }
  }
  ::close(fd);
  return out;
}

// --- OutputFile -------------------------------------------------------------------------------

OutputFile::OutputFile(const std::string& path) {
  if (path.empty() || path == "-") {
    fd_ = STDOUT_FILENO;
    display_ = "standard output";
    return;
  }
  if (is_directory(path)) usage_error(path + " is a directory");
  display_ = path;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd_ < 0) sys_fail("open " + path);
    own_fd_ = true;
    return;
  }
  path_ = path;
  tmp_ = dirname_of(path) + "/." + basename_of(path) + ".rolayer-XXXXXX";
  std::vector<char> t(tmp_.begin(), tmp_.end());
  t.push_back('\0');
  fd_ = ::mkostemp(t.data(), O_CLOEXEC);
  if (fd_ < 0) sys_fail("create a temporary file next to " + path);
  tmp_ = t.data();
  mode_t um = ::umask(0);
  ::umask(um);
  ::fchmod(fd_, 0666 & ~um);
}

OutputFile::~OutputFile() {
  if (!path_.empty() && !committed_) {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(tmp_.c_str());
  } else if (own_fd_ && fd_ >= 0) {
    ::close(fd_);
  }
}

void OutputFile::write(const void* data, size_t len) { write_all(fd_, data, len, display_); }

void OutputFile::commit() {
  if (own_fd_) {  // written in place: nothing to rename
    int fd = fd_;
    fd_ = -1;
    if (fd >= 0 && ::close(fd) != 0) sys_fail("close " + display_);
    return;
  }
  if (path_.empty()) return;
  if (::fsync(fd_) != 0) sys_fail("fsync " + tmp_);
  if (::close(fd_) != 0) {
    fd_ = -1;
    sys_fail("close " + tmp_);
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) sys_fail("rename " + tmp_ + " to " + path_);
  committed_ = true;
  // Make the rename durable too.
  int d = ::open(dirname_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d >= 0) {
    ::fsync(d);
    ::close(d);
  }
}

int terminal_columns() {
  struct winsize ws;
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

bool stderr_is_terminal() {
  if (!::isatty(STDERR_FILENO)) return false;
  const char* term = std::getenv("TERM");
  return !(term && std::strcmp(term, "dumb") == 0);
}

}  // namespace cli
