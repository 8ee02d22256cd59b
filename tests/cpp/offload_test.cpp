// SPDX-License-Identifier: Apache-2.0
// OffloadHasher: SHA-256 of memory its owner lends it, hashed in order on a worker thread
// without a copy (export hashes the caller's buffer with it, lib/store/stream.cpp). The
// *Concurren* tests run under ThreadSanitizer in .ci/run.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/cpus.h"
#include "core/error.h"
#include "digest/offload.h"

using namespace rolayer;

namespace {

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

OffloadHasher::Options threaded_from(size_t inline_limit) {
  OffloadHasher::Options o;
  o.inline_limit = inline_limit;
  return o;
}

// Lends data in pieces of the given sizes (cycled), draining every `drain_every` pieces.
Digest lend_all(OffloadHasher& h, const std::string& data, const std::vector<size_t>& pieces, size_t drain_every) {
  size_t at = 0, i = 0;
  while (at < data.size()) {
    size_t n = std::min(pieces[i % pieces.size()], data.size() - at);
    h.lend(data.data() + at, n);
    at += n;
    if (++i % drain_every == 0) h.drain();
  }
  return h.finish();
}

TEST(OffloadHasher, MatchesTheOneShotDigestForAnyPiecesAndLimits) {
  const std::string data = random_bytes(5 * 1000 * 1000 + 17, 1);
  const Digest want = sha256_of(data.data(), data.size());
  for (size_t limit : {size_t{0}, size_t{1}, size_t{4} << 20, size_t{100} << 20}) {
    for (const std::vector<size_t>& pieces : std::vector<std::vector<size_t>>{
             {1}, {1 << 20}, {131072, 1, 512, 65537}, {7, 4096, 300000}}) {
      for (size_t drain_every : {size_t{1}, size_t{8}, size_t{1000000}}) {
        // (Byte by byte once is enough: 5 million lends.)
        if (pieces.size() == 1 && pieces[0] == 1 && (limit != 0 || drain_every != 1000000)) continue;
        OffloadHasher h(threaded_from(limit));
        EXPECT_EQ(lend_all(h, data, pieces, drain_every), want)
            << "limit " << limit << " pieces " << pieces.size() << " drain " << drain_every;
      }
    }
  }
}

TEST(OffloadHasher, TheWorkerStartsOnlyPastTheInlineLimit) {
  const std::string data = random_bytes(1 << 20, 2);
  OffloadHasher small;  // default: 4 MiB inline
  small.lend(data.data(), data.size());
  small.drain();
  EXPECT_FALSE(small.threaded());
  OffloadHasher big(threaded_from(0));
  big.lend(data.data(), data.size());
  big.drain();
  EXPECT_EQ(big.threaded(), usable_cpus() != 1);
  EXPECT_EQ(big.finish(), sha256_of(data.data(), data.size()));
}

TEST(OffloadHasher, ABufferReusedAfterDrainHashesWhatItHeldWhenLent) {
  std::string buf = random_bytes(1 << 20, 3);
  std::string all;
  OffloadHasher h(threaded_from(0));
  for (int round = 0; round < 20; ++round) {
    for (size_t at = 0; at < buf.size(); at += 131072) h.lend(buf.data() + at, 131072);
    all += buf;
    h.drain();  // the owner may change the buffer now
    buf = random_bytes(buf.size(), 100 + round);
  }
  EXPECT_EQ(h.finish(), sha256_of(all.data(), all.size()));
}

TEST(OffloadHasher, AbandonedHashingNeverFinishes) {
  const std::string data = random_bytes(8 << 20, 4);
  for (size_t limit : {size_t{0}, size_t{100} << 20}) {
    OffloadHasher h(threaded_from(limit));
    for (size_t at = 0; at < data.size(); at += 65536) h.lend(data.data() + at, 65536);
    h.abandon();  // returns with no lent range in use
    EXPECT_THROW(h.finish(), Error);
  }
  // Destroyed with ranges lent and not drained: stops and joins without hashing the rest.
  {
    OffloadHasher h(threaded_from(0));
    for (size_t at = 0; at < data.size(); at += 65536) h.lend(data.data() + at, 65536);
  }
}

TEST(OffloadHasher, FinishTwiceOrLendAfterFinishFails) {
  OffloadHasher h;
  h.lend("abc", 3);
  EXPECT_EQ(h.finish(), sha256_of("abc", 3));
  EXPECT_THROW(h.finish(), Error);
  EXPECT_THROW(h.lend("x", 1), Error);
}

TEST(OffloadHasherConcurrency, ManyHashersAtOnceAndOwnersMovingBetweenThreads) {
  const std::string data = random_bytes(6 << 20, 5);
  const Digest want = sha256_of(data.data(), data.size());
  std::vector<std::thread> ts;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      auto h = std::make_unique<OffloadHasher>(threaded_from(t == 0 ? 0 : 1 << 20));
      const size_t half = data.size() / 2;
      for (size_t at = 0; at < half; at += 100000) h->lend(data.data() + at, std::min<size_t>(100000, half - at));
      h->drain();
      // The owner moves to another thread for the second half.
      std::thread([&] {
        for (size_t at = half; at < data.size(); at += 77777)
          h->lend(data.data() + at, std::min<size_t>(77777, data.size() - at));
        ok[t] = h->finish() == want;
      }).join();
    });
  }
  for (auto& t : ts) t.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(ok[t], 1) << t;
}

// set_inline (verify -j N with N >= the CPUs): the owner hashes on its own thread from then on,
// or hands long streams to the worker again; the digest is the same whatever the switches.
TEST(OffloadHasher, InlineFromTheStartNeverStartsTheWorker) {
  const std::string data = random_bytes(6 << 20, 6);
  OffloadHasher h(threaded_from(0));
  h.set_inline(true);
  for (size_t at = 0; at < data.size(); at += 131072) h.lend(data.data() + at, std::min<size_t>(131072, data.size() - at));
  h.drain();
  EXPECT_FALSE(h.threaded());
  EXPECT_EQ(h.finish(), sha256_of(data.data(), data.size()));
}

// (Named *Concurren*: ThreadSanitizer checks that the hash passes between the owner and the
// worker with each switch.)
TEST(OffloadHasherConcurrency, SetInlineSwitchesBetweenOwnerAndWorkerInOrder) {
  const std::string data = random_bytes(9 << 20, 7);
  const Digest want = sha256_of(data.data(), data.size());
  for (size_t every : {size_t{1}, size_t{3}, size_t{16}}) {
    OffloadHasher h(threaded_from(1 << 20));
    size_t i = 0;
    bool on = false;
    for (size_t at = 0; at < data.size(); at += 100003, ++i) {
      if (i % every == 0) h.set_inline(on = !on);
      h.lend(data.data() + at, std::min<size_t>(100003, data.size() - at));
      // The owner reuses nothing here, but drains now and then as the stream's read() does.
      if (i % 5 == 4) h.drain();
    }
    EXPECT_EQ(h.threaded(), usable_cpus() != 1) << every;
    EXPECT_EQ(h.finish(), want) << every;
  }
  // Abandoned while inline: broken as before.
  OffloadHasher b(threaded_from(0));
  b.lend(data.data(), 1 << 20);
  b.set_inline(true);
  b.lend(data.data(), 1 << 20);
  b.abandon();
  EXPECT_THROW(b.finish(), Error);
}

}  // namespace
