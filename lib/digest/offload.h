/* SPDX-License-Identifier: Apache-2.0 */
// A streaming hasher that hashes memory its owner lends it, in order, on a worker thread,
// without copying it: the owner lends ranges of its buffer (lend) while it goes on filling the
// next ones, and waits (drain) before it changes or gives away any lent range. Used by export
// (lib/store/stream.cpp) to hash the caller's buffer piece by piece while the caller's thread
// reads the next pieces; every lent range is hashed, or abandoned, before the export read
// returns, so the caller's buffer is never touched after the read that filled it.
//
// lend() hashes inline until more than `inline_limit` bytes have gone through (tiny streams
// never pay for a thread) and always on a single-CPU machine or when no thread can be had.
// Only the owner's memory crosses to the worker: no callback ever runs on it
// (docs/threading.md); it takes no signals.
//
// One thread at a time calls lend()/drain()/abandon()/finish() (the owner may move between
// threads).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "digest/digest.h"

namespace rolayer {

class OffloadHasher {
 public:
  struct Options {
    size_t inline_limit = size_t{4} << 20;  // bytes hashed inline before the worker starts
  };
  OffloadHasher() : OffloadHasher(Options{}) {}
  explicit OffloadHasher(Options opts, DigestAlgorithm algo = DigestAlgorithm::Sha256);
  ~OffloadHasher();
  OffloadHasher(const OffloadHasher&) = delete;
  OffloadHasher& operator=(const OffloadHasher&) = delete;

  // Adds data[0, len) to the hash, after everything lent before. The range must stay valid and
  // unchanged until the next drain() or abandon() returns.
  void lend(const void* data, size_t len);
  // Returns once every lent range is hashed (rethrows a failure of the hash).
  void drain();
  // Returns once the worker no longer reads any lent range; ranges not hashed yet are dropped
  // and the hasher is broken (finish() throws). Never throws.
  void abandon() noexcept;
  // The digest of everything lent; the hasher may not be used afterwards.
  Digest finish();

  // From now on hash every lent range inline, on the owner's thread (on: true), or hand long
  // streams to the worker again (false; the default). For an owner that shares the CPUs with
  // other hashing streams of its own (verify -j N, N >= the CPUs): the hand-off to a worker
  // costs CPU and a second thread gains nothing when every core is busy. Waits for the
  // ranges lent before (rethrows a failure of the hash, like drain()).
  void set_inline(bool on);

  // Whether the worker thread was started (for tests and diagnostics).
  bool threaded() const { return started_; }

 private:
  struct Range {
    const uint8_t* p;
    size_t n;
  };
  void start_worker();
  void worker();
  void stop() noexcept;

  Options opts_;
  Hasher hasher_;  // touched only by the owner before the worker starts, then only by the worker
  uint64_t inline_bytes_ = 0;
  bool started_ = false;
  bool finished_ = false;
  bool broken_ = false;
  bool force_inline_ = false;  // set_inline(true): the owner hashes every range itself

  std::mutex mu_;
  std::condition_variable work_cv_, idle_cv_;
  std::vector<Range> queue_;  // guarded by mu_: [head_, size) wait; queue_[head_] may be in work
  size_t head_ = 0;           // guarded by mu_
  bool skip_ = false;         // guarded by mu_: drop waiting ranges (abandon)
  bool closing_ = false;      // guarded by mu_: the worker exits
  std::exception_ptr error_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace rolayer
