/* SPDX-License-Identifier: Apache-2.0 */
// Shared helpers of the rolayer command-line tool: exit codes, the error type, RAII wrappers
// over the public C API, store opening, ChainID resolution, output files and formatting.
// The tool is a client of the public C API only (include/rolayer.h).
#pragma once

#include <atomic>
#include <csignal>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "rolayer.h"

namespace cli {

// Exit codes (documented in docs/cli.md and `rolayer --help`; keep them stable).
enum Exit : int {
  kOk = 0,
  kFailure = 1,      // any other failure (I/O, unsupported, internal)
  kUsage = 2,        // bad command line, ambiguous or malformed argument, wrong --driver
  kNotFound = 3,     // no such layer, image reference or file entry
  kVerify = 4,       // verification failed: digest, size or DiffID mismatch, damaged store data
  kBusy = 5,         // the store is locked by another process (after --wait)
  kBadInput = 6,     // malformed or unsafe input: tar, compression, image layout, JSON
  kInterrupted = 128  // + the signal: 130 SIGINT, 143 SIGTERM, 129 SIGHUP; stopped cleanly
};

// The one error type of the tool: an exit code and a one-line message.
class CliError : public std::runtime_error {
 public:
  CliError(int code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

[[noreturn]] void usage_error(const std::string& msg);
// Throws CliError(kFailure, "<what>: <strerror(errno)>").
[[noreturn]] void sys_fail(const std::string& what);

// Maps a library status code to an exit code.
int exit_code_for(int rc);

// Owns a rolayer_error* (the library's out-of-band detail).
class Err {
 public:
  Err() = default;
  Err(const Err&) = delete;
  Err& operator=(const Err&) = delete;
  ~Err() { rolayer_error_free(e_); }
  rolayer_error** out() {
    rolayer_error_free(e_);
    e_ = nullptr;
    return &e_;
  }
  const rolayer_error* get() const { return e_; }
  std::string message(int rc) const;  // the library's message, else rolayer_strerror(rc)
  const char* path() const { return e_ ? rolayer_error_path(e_) : nullptr; }
  int user_code() const { return e_ ? rolayer_error_user_code(e_) : 0; }

 private:
  rolayer_error* e_ = nullptr;
};

// Throws a CliError for a failed library call: "<context>: <message>" and the mapped exit code.
[[noreturn]] void lib_fail(int rc, const Err& err, const std::string& context = {});

// --- interruption -----------------------------------------------------------------------------
// Set by the signal handler, read by every thread (downloads, staging): a lock-free atomic, as
// both a signal handler and other threads may use it (a volatile sig_atomic_t is a data race
// between threads).
extern std::atomic<int> g_interrupted;
void install_signal_handlers();  // done by open_store()
void ignore_sigpipe();
inline bool interrupted() { return g_interrupted.load(std::memory_order_relaxed) != 0; }
void check_interrupted();  // throws interrupted_error() when a signal came
CliError interrupted_error();  // exit 128 + the signal, "interrupted"
inline bool is_interruption(int code) { return code > kInterrupted; }

// --- global options ---------------------------------------------------------------------------
struct Globals {
  std::string store;        // --store DIR (empty: the default)
  std::string driver;       // --driver NAME (empty: $ROLAYER_DRIVER, else "dir")
  int busy_timeout_ms = 0;  // --wait SECONDS: 0 = library default (5 s), <0 = fail at once
  bool wait_given = false;
  bool quiet = false;       // --quiet: no progress output
  int64_t pack_small = 0;   // --pack-small SIZE|off: the store's payload pack (> 0 on, < 0 off, 0 as it is)
};

// The store directory: --store, else $ROLAYER_ROOT, else $XDG_DATA_HOME/rolayer, else
// ~/.local/share/rolayer.
std::string default_store_root(const Globals& g);

struct StoreDeleter {
  void operator()(rolayer_store* s) const { rolayer_store_free(s); }
};
using StorePtr = std::unique_ptr<rolayer_store, StoreDeleter>;

// Opens (creating on first use) the store; a busy store gives CliError(kBusy).
StorePtr open_store(const Globals& g);

// A handle on a layer. Going out of scope closes it (rolayer_layer_close): looking at a layer
// never deletes it. release() drops the reference for real (and may delete the layer).
class Layer {
 public:
  Layer() = default;
  explicit Layer(rolayer_layer* p) : p_(p) {}
  Layer(Layer&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  Layer& operator=(Layer&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = o.p_;
      o.p_ = nullptr;
    }
    return *this;
  }
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;
  ~Layer() { reset(); }
  rolayer_layer* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }
  void reset() {
    if (p_) rolayer_layer_close(p_);
    p_ = nullptr;
  }
  // Releases and reports failures (used where a release result matters).
  int release(Err& err) {
    rolayer_layer* p = p_;
    p_ = nullptr;
    return p ? rolayer_release(p, err.out()) : ROLAYER_OK;
  }

 private:
  rolayer_layer* p_ = nullptr;
};

Layer open_layer(rolayer_store* store, const std::string& chain_id);

// The chain ending at top: a handle on each layer, base first (CliError(kNotFound) when one is
// missing). *total_size, when given, is the sum of the layers' stream sizes (an unknown size
// counts 0).
std::vector<Layer> open_chain(rolayer_store* store, const std::string& top, int64_t* total_size = nullptr);

// All ChainIDs in the store.
std::vector<std::string> list_chain_ids(rolayer_store* store);

// Resolves a user's ChainID argument: "sha256:<hex>", "<hex>" or a unique prefix of the hex.
// Not found: CliError(kNotFound); ambiguous or malformed: CliError(kUsage).
std::string resolve_chain_id(rolayer_store* store, const std::string& arg);

// Every JSON document from outside (an image, a registry, an auth file) is refused when nested
// deeper than this many levels (arrays and objects), checked before it is parsed: nlohmann's
// parser, copies and destruction recurse (image_plan.h's parse_json, registry.h's
// check_json_depth).
constexpr int kMaxJsonDepth = 64;

// --- small utilities --------------------------------------------------------------------------
std::string human_bytes(int64_t n);        // "12.3 MiB"
std::string short_id(const std::string& id);  // "sha256:0123456789ab" -> "0123456789ab"
bool is_digest(const std::string& s);       // "sha256:<64 lowercase hex>" (or sha512:<128>)
std::string dirname_of(const std::string& path);
std::string basename_of(const std::string& path);
bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
void mkdirs(const std::string& path, unsigned mode = 0755);
void write_all(int fd, const void* data, size_t len, const std::string& what);
std::string read_file(const std::string& path, size_t max_bytes);
// The CPUs this process may run on (its affinity mask: taskset, a cgroup cpuset, a container's
// --cpuset-cpus), at least 1: what the default --jobs of verify, import and pull count. It is
// the library's own count (lib/core/cpus.cpp, compiled into the CLI), which decides whether a
// stream hashes on a worker.
int usable_cpus();
// The default --jobs of verify, docker verify, import and pull: usable_cpus(), at most
// kDefaultJobsMax. Each layer under way holds about 5-7 MiB of buffers (verify: 44 MiB peak RSS
// at 4 jobs, 64 MiB at 8), so the cap keeps every command within 64 MiB on a machine of any size.
constexpr int kDefaultJobsMax = 4;
int default_jobs();

// Output to a file, atomically: written to a temporary file in the same directory and renamed
// into place by commit(); anything else (error, interruption) removes the temporary file, so no
// partial file is ever left behind. "-" or "" writes to standard output instead. An existing
// path that is not a regular file (a device such as /dev/null, a FIFO, /dev/stdout) is written
// in place: renaming over it would replace the device with a file.
class OutputFile {
 public:
  explicit OutputFile(const std::string& path);
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile();
  void write(const void* data, size_t len);
  void commit();
  bool is_stdout() const { return path_.empty() && !own_fd_; }
  const std::string& display_name() const { return display_; }

 private:
  std::string path_, tmp_, display_;  // path_ and tmp_ only for an atomic (renamed) output
  int fd_ = -1;
  bool own_fd_ = false;  // fd_ was opened here for an in-place output
  bool committed_ = false;
};

// The bytes a terminal can show in one line of stderr (80 when unknown).
int terminal_columns();
bool stderr_is_terminal();

}  // namespace cli
