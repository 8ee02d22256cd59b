// SPDX-License-Identifier: Apache-2.0
// The library counts the CPUs a thread may run on (its affinity mask: taskset, a cgroup cpuset,
// a container's --cpuset-cpus), not the machine's, when it decides whether a hash runs on a
// worker (lib/core/cpus.h). With one CPU a worker only adds its hand-off.
#include <gtest/gtest.h>
#include <sched.h>

#include <functional>
#include <string>
#include <thread>

#include "core/cpus.h"
#include "digest/digest.h"
#include "digest/offload.h"
#include "digest/pipelined.h"
#include "test_util.h"

using namespace rolayer;

namespace {

int mask_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
  return CPU_COUNT(&set);
}

// Runs f on a new thread whose affinity mask holds only the first CPU of this one's (the mask is
// per thread: the test's own threads keep theirs). A mask that cannot be read or set fails the
// test (f does not run).
void on_one_cpu(const std::function<void()>& f) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0) << "sched_getaffinity";
  int first = -1;
  for (int c = 0; c < CPU_SETSIZE && first < 0; ++c)
    if (CPU_ISSET(c, &set)) first = c;
  ASSERT_GE(first, 0) << "an empty affinity mask";
  bool restricted = false;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) return;
    restricted = true;
    f();
  });
  t.join();
  ASSERT_TRUE(restricted) << "sched_setaffinity";
}

// What hashing data in pieces of 64 KiB gave: the digest, and whether a worker ran.
struct Hashed {
  Digest digest;
  bool threaded = true;
};

template <class H, class Feed>
Hashed hash_with(typename H::Options o, const std::string& data, Feed feed) {
  H h(o);
  for (size_t at = 0; at < data.size(); at += 65536) feed(h, data.data() + at, std::min<size_t>(65536, data.size() - at));
  Hashed r;
  r.threaded = h.threaded();
  r.digest = h.finish();
  return r;
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
  on_one_cpu([&] { inside = usable_cpus(); });
  EXPECT_EQ(inside, 1);
  EXPECT_EQ(usable_cpus(), n);  // (the mask of the thread that asks)
}

// Before: the hashers asked std::thread::hardware_concurrency() (the machine's CPUs), so under
// `taskset -c 0` a stream still handed its bytes to a worker on the same CPU.
TEST(UsableCpus, OneCpuInTheMaskKeepsTheOffloadHasherInline) {
  SKIP_ON_ONE_CPU();
  const std::string data = test::pseudo_random(3 << 20, 11);
  OffloadHasher::Options o;
  o.inline_limit = 0;  // a worker from the first byte, where there is a CPU for it
  auto feed = [](OffloadHasher& h, const char* p, size_t n) {
    h.lend(p, n);
    h.drain();  // (the caller's buffer is reused after each piece)
  };
  Hashed one, all;
  on_one_cpu([&] { one = hash_with<OffloadHasher>(o, data, feed); });
  all = hash_with<OffloadHasher>(o, data, feed);  // on this thread's CPUs
  EXPECT_FALSE(one.threaded);
  EXPECT_TRUE(all.threaded);
  EXPECT_EQ(one.digest, sha256_of(data));
  EXPECT_EQ(all.digest, sha256_of(data));
}

TEST(UsableCpus, OneCpuInTheMaskKeepsThePipelinedHasherInline) {
  SKIP_ON_ONE_CPU();
  const std::string data = test::pseudo_random(3 << 20, 12);
  PipelinedHasher::Options o;
  o.inline_limit = 1000;
  auto feed = [](PipelinedHasher& h, const char* p, size_t n) { h.update(p, n); };
  Hashed one, all;
  on_one_cpu([&] { one = hash_with<PipelinedHasher>(o, data, feed); });
  all = hash_with<PipelinedHasher>(o, data, feed);
  EXPECT_FALSE(one.threaded);
  EXPECT_TRUE(all.threaded);
  EXPECT_EQ(one.digest, sha256_of(data));
  EXPECT_EQ(all.digest, sha256_of(data));
}
