// SPDX-License-Identifier: Apache-2.0
#include "digest/pipelined.h"

#include <signal.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <system_error>

#include "core/cpus.h"
#include "core/error.h"

namespace rolayer {
PipelinedHasher::PipelinedHasher(Options opts, DigestAlgorithm algo) : opts_(opts), hasher_(algo) {
  if (opts_.block_size == 0) opts_.block_size = size_t{1} << 20;
  if (opts_.blocks < 2) opts_.blocks = 2;
  if (usable_cpus() == 1) opts_.inline_limit = std::numeric_limits<size_t>::max();
}

PipelinedHasher::~PipelinedHasher() { stop(); }

void PipelinedHasher::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> g(mu_);
    abort_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

void PipelinedHasher::start_worker() {
  try {
    ring_.reset(new uint8_t[opts_.blocks * opts_.block_size]);
    lens_.reset(new size_t[opts_.blocks]());
    // The worker takes no signals: they stay with the caller's threads.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
      thread_ = std::thread(&PipelinedHasher::worker, this);
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
  if (!started_) {
    ring_.reset();
    lens_.reset();
    opts_.inline_limit = std::numeric_limits<size_t>::max();
  }
}

void PipelinedHasher::update(const void* data, size_t len) {
  if (finished_) throw Error(Code::Inval, "digest update after finish");
  if (len == 0) return;
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
  auto p = static_cast<const uint8_t*>(data);
  while (len > 0) {
    if (!cur_) acquire_block();
    size_t n = std::min(len, opts_.block_size - cur_len_);
    std::memcpy(cur_ + cur_len_, p, n);
    cur_len_ += n;
    p += n;
    len -= n;
    if (cur_len_ == opts_.block_size) submit_current();
  }
}

void PipelinedHasher::acquire_block() {
  std::unique_lock<std::mutex> g(mu_);
  space_cv_.wait(g, [&] { return produced_ - consumed_ < opts_.blocks; });
  cur_ = ring_.get() + (produced_ % opts_.blocks) * opts_.block_size;
  cur_len_ = 0;
}

void PipelinedHasher::submit_current() {
  {
    std::lock_guard<std::mutex> g(mu_);
    lens_[produced_ % opts_.blocks] = cur_len_;
    produced_++;
  }
  work_cv_.notify_one();
  cur_ = nullptr;
  cur_len_ = 0;
}

void PipelinedHasher::worker() {
  for (;;) {
    size_t idx, len;
    bool failed;
    {
      std::unique_lock<std::mutex> g(mu_);
      work_cv_.wait(g, [&] { return abort_ || closing_ || consumed_ < produced_; });
      if (abort_ || consumed_ == produced_) return;  // stopped, or closing and drained
      idx = static_cast<size_t>(consumed_ % opts_.blocks);
      len = lens_[idx];
      failed = error_ != nullptr;
    }
    if (!failed) {
      try {
        hasher_.update(ring_.get() + idx * opts_.block_size, len);
      } catch (...) {
        std::lock_guard<std::mutex> g(mu_);
        error_ = std::current_exception();
      }
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      consumed_++;
    }
    space_cv_.notify_one();
  }
}

Digest PipelinedHasher::finish() {
  if (finished_) throw Error(Code::Inval, "digest finished twice");
  finished_ = true;
  if (started_) {
    if (cur_ && cur_len_ > 0) submit_current();
    {
      std::lock_guard<std::mutex> g(mu_);
      closing_ = true;
    }
    work_cv_.notify_all();
    thread_.join();
    if (error_) std::rethrow_exception(error_);
  }
  return hasher_.finish();
}

}  // namespace rolayer
