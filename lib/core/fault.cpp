// SPDX-License-Identifier: Apache-2.0
#include "core/fault.h"

#ifdef ROLAYER_FAULT_HOOKS
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/error.h"

namespace rolayer::fault {
namespace {

struct Spec {
  std::string name;
  long nth = 1;
  int err = 0;
  bool set = false;
};

// "name[:N]" or, with want_errno, "name[:N]=ERRNO".
Spec parse(const char* env, bool want_errno) {
  Spec s;
  if (!env || !*env) return s;
  std::string v(env);
  if (want_errno) {
    auto eq = v.rfind('=');
    if (eq == std::string::npos) return s;
    s.err = std::atoi(v.c_str() + eq + 1);
    v.resize(eq);
  }
  auto colon = v.rfind(':');
  if (colon != std::string::npos) {
    s.nth = std::atol(v.c_str() + colon + 1);
    v.resize(colon);
  }
  s.name = v;
  s.set = !s.name.empty();
  return s;
}

std::mutex mu;
std::unordered_map<std::string, long> hits;

// Counts a hit of `name`; kills the process at ROLAYER_FAULT_KILL's; true (and *err, the errno
// to inject) at ROLAYER_FAULT_ERRNO's.
bool hit(const char* name, int* err) {
  static const Spec kill_spec = parse(std::getenv("ROLAYER_FAULT_KILL"), false);
  static const Spec errno_spec = parse(std::getenv("ROLAYER_FAULT_ERRNO"), true);
  if (!kill_spec.set && !errno_spec.set) return false;
  long n;
  {
    std::lock_guard<std::mutex> g(mu);
    n = ++hits[name];
  }
  if (kill_spec.set && kill_spec.name == name && n == kill_spec.nth) ::kill(::getpid(), SIGKILL);
  if (errno_spec.set && errno_spec.name == name && n == errno_spec.nth) {
    *err = errno_spec.err;
    return true;
  }
  return false;
}

}  // namespace

void point(const char* name) {
  int err = 0;
  if (hit(name, &err))
    throw Error(Code::Io, std::string("injected fault at ") + name + ": " + std::strerror(err)).with_errno(err);
}

int injected_errno(const char* name) {
  int err = 0;
  return hit(name, &err) ? err : 0;
}

}  // namespace rolayer::fault
#else
namespace rolayer::fault {
void point(const char*) {}
int injected_errno(const char*) { return 0; }
}  // namespace rolayer::fault
#endif
