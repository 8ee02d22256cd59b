// SPDX-License-Identifier: Apache-2.0
// The library counts the CPUs a thread may run on (its affinity mask: taskset, a cgroup cpuset,
// a container's --cpuset-cpus), not the machine's, when it decides whether a hash runs on a
// worker (lib/core/cpus.h). With one CPU a worker only adds its hand-off.
#include <gtest/gtest.h>
#include <sched.h>

#include <functional>
#include <random>
#include <string>
#include <thread>

#include "core/cpus.h"
#include "digest/digest.h"
#include "digest/offload.h"
#include "digest/pipelined.h"

using namespace rolayer;

namespace {

int mask_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
  return CPU_COUNT(&set);
}

// Runs f on a new thread whose affinity mask holds only the first CPU of this one's (the mask is
// per thread: the test's own threads keep theirs). Returns false, with the reason, where the
// mask cannot be read or set.
bool on_one_cpu(const std::function<void()>& f, std::string* why) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return *why = "sched_getaffinity failed", false;
  int first = -1;
  for (int c = 0; c < CPU_SETSIZE && first < 0; ++c)
    if (CPU_ISSET(c, &set)) first = c;
  if (first < 0) return *why = "an empty affinity mask", false;
  bool ok = false;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) {
      *why = "sched_setaffinity failed";
      return;
    }
    ok = true;
    f();
  });
  t.join();
  return ok;
}

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

Digest sha256_of(const std::string& d) {
  Hasher h;
  h.update(d.data(), d.size());
  return h.finish();
}

#define SKIP_ON_ONE_CPU()                                                                          \
  do {                                                                                             \
    if (mask_count() < 2) GTEST_SKIP() << "this process may run on one CPU only: nothing to restrict"; \
  } while (0)

}  // namespace

TEST(UsableCpus, CountsTheAffinityMask) {
  int n = mask_count();
  if (n <= 0) GTEST_SKIP() << "sched_getaffinity failed here";
  EXPECT_EQ(usable_cpus(), n);
  SKIP_ON_ONE_CPU();
  int inside = 0;
  std::string why;
  ASSERT_TRUE(on_one_cpu([&] { inside = usable_cpus(); }, &why)) << why;
  EXPECT_EQ(inside, 1);
  EXPECT_EQ(usable_cpus(), n);  // (the mask of the thread that asks)
}

// Before: the hashers asked std::thread::hardware_concurrency() (the machine's CPUs), so under
// `taskset -c 0` a stream still handed its bytes to a worker on the same CPU.
TEST(UsableCpus, OneCpuInTheMaskKeepsTheOffloadHasherInline) {
  SKIP_ON_ONE_CPU();
  const std::string data = random_bytes(3 << 20, 11);
  OffloadHasher::Options o;
  o.inline_limit = 0;  // a worker from the first byte, where there is a CPU for it
  bool threaded = true;
  Digest got;
  std::string why;
  ASSERT_TRUE(on_one_cpu(
      [&] {
        OffloadHasher h(o);
        for (size_t at = 0; at < data.size(); at += 65536) h.lend(data.data() + at, 65536);
        h.drain();
        threaded = h.threaded();
        got = h.finish();
      },
      &why))
      << why;
  EXPECT_FALSE(threaded);
  EXPECT_EQ(got, sha256_of(data));
  OffloadHasher h(o);  // on this thread's CPUs: a worker
  h.lend(data.data(), data.size());
  h.drain();
  EXPECT_TRUE(h.threaded());
  EXPECT_EQ(h.finish(), sha256_of(data));
}

TEST(UsableCpus, OneCpuInTheMaskKeepsThePipelinedHasherInline) {
  SKIP_ON_ONE_CPU();
  const std::string data = random_bytes(3 << 20, 12);
  PipelinedHasher::Options o;
  o.inline_limit = 1000;
  bool threaded = true;
  Digest got;
  std::string why;
  ASSERT_TRUE(on_one_cpu(
      [&] {
        PipelinedHasher h(o);
        for (size_t at = 0; at < data.size(); at += 65536) h.update(data.data() + at, 65536);
        threaded = h.threaded();
        got = h.finish();
      },
      &why))
      << why;
  EXPECT_FALSE(threaded);
  EXPECT_EQ(got, sha256_of(data));
  PipelinedHasher h(o);
  h.update(data.data(), data.size());
  EXPECT_TRUE(h.threaded());
  EXPECT_EQ(h.finish(), sha256_of(data));
}
