// SPDX-License-Identifier: Apache-2.0
#include "digest/offload.h"

#include <signal.h>

#include <algorithm>
#include <limits>
#include <new>
#include <system_error>

#include "core/cpus.h"
#include "core/error.h"

namespace rolayer {

OffloadHasher::OffloadHasher(Options opts, DigestAlgorithm algo) : opts_(opts), hasher_(algo) {
  if (usable_cpus() == 1) opts_.inline_limit = std::numeric_limits<size_t>::max();
}

OffloadHasher::~OffloadHasher() { stop(); }

void OffloadHasher::stop() noexcept {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> g(mu_);
    closing_ = true;
    skip_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

void OffloadHasher::start_worker() {
  try {
    queue_.reserve(64);
    // The worker takes no signals: they stay with the caller's threads.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
      thread_ = std::thread(&OffloadHasher::worker, this);
    } catch (...) {
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      throw;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    started_ = true;
  } catch (const std::system_error&) {
    // No thread to be had: keep hashing inline.
  } catch (const std::bad_alloc&) {
  }
  if (!started_) opts_.inline_limit = std::numeric_limits<size_t>::max();
}

void OffloadHasher::lend(const void* data, size_t len) {
  if (finished_) throw Error(Code::Inval, "digest update after finish");
  if (len == 0) return;
  if (force_inline_) {  // the worker, if any, is idle: set_inline drained it
    hasher_.update(data, len);
    inline_bytes_ += len;
    return;
  }
  if (!started_) {
    if (len <= opts_.inline_limit - std::min<uint64_t>(inline_bytes_, opts_.inline_limit)) {
      hasher_.update(data, len);
      inline_bytes_ += len;
      return;
    }
    start_worker();
    if (!started_) {
      hasher_.update(data, len);
      return;
    }
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    queue_.push_back({static_cast<const uint8_t*>(data), len});
  }
  work_cv_.notify_one();
}

void OffloadHasher::set_inline(bool on) {
  if (on == force_inline_) return;
  // The worker hashes nothing from here on (or again), in order: every range lent before is
  // hashed first; the mutex makes its updates of hasher_ visible to this thread, and the next
  // range queued makes this thread's visible to the worker.
  drain();
  force_inline_ = on;
}

void OffloadHasher::worker() {
  std::unique_lock<std::mutex> g(mu_);
  for (;;) {
    work_cv_.wait(g, [&] { return closing_ || head_ < queue_.size(); });
    if (head_ == queue_.size()) return;  // closing and nothing waits
    Range r = queue_[head_];
    bool hash = !skip_ && !error_;
    if (hash) {
      g.unlock();
      try {
        hasher_.update(r.p, r.n);
      } catch (...) {
        g.lock();
        error_ = std::current_exception();
        g.unlock();
      }
      g.lock();
    }
    if (++head_ == queue_.size()) {
      queue_.clear();
      head_ = 0;
      idle_cv_.notify_all();
    }
  }
}

void OffloadHasher::drain() {
  if (!started_) return;
  std::unique_lock<std::mutex> g(mu_);
  idle_cv_.wait(g, [&] { return head_ == queue_.size(); });
  if (error_) std::rethrow_exception(error_);
}

void OffloadHasher::abandon() noexcept {
  broken_ = true;
  if (!started_) return;
  std::unique_lock<std::mutex> g(mu_);
  skip_ = true;
  work_cv_.notify_one();
  idle_cv_.wait(g, [&] { return head_ == queue_.size(); });
  skip_ = false;
}

Digest OffloadHasher::finish() {
  if (finished_) throw Error(Code::Inval, "digest finished twice");
  drain();
  finished_ = true;
  stop();
  if (broken_) throw Error(Code::Io, "digest of a stream whose hashing was abandoned");
  return hasher_.finish();
}

}  // namespace rolayer
