/* SPDX-License-Identifier: Apache-2.0 */
// A streaming hasher that moves the hashing of long streams to a worker thread.
//
// update() hashes inline until more than `inline_limit` bytes have gone through (tiny streams
// never pay for a thread); from then on it copies the bytes into a bounded ring of blocks that
// a worker thread hashes in order. finish() hashes what is left, joins the worker and returns
// the digest of every byte given. Only our own memory crosses to the worker: no callback ever
// runs on it (docs/threading.md).
//
// Memory: at most `blocks` × `block_size` bytes of ring (default 4 × 1 MiB), allocated when
// the worker starts. Destroying the hasher before finish() (a stream closed early, an
// exception) stops and joins the worker without hashing the rest.
//
// One thread at a time calls update()/finish() (the owner may move between threads).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "digest/digest.h"

namespace rolayer {

class PipelinedHasher {
 public:
  struct Options {
    size_t inline_limit = size_t{4} << 20;  // bytes hashed inline before the worker starts
    size_t block_size = size_t{1} << 20;
    size_t blocks = 4;
  };
  PipelinedHasher() : PipelinedHasher(Options{}) {}
  explicit PipelinedHasher(Options opts, DigestAlgorithm algo = DigestAlgorithm::Sha256);
  ~PipelinedHasher();
  PipelinedHasher(const PipelinedHasher&) = delete;
  PipelinedHasher& operator=(const PipelinedHasher&) = delete;

  void update(const void* data, size_t len);
  // The digest of everything given; the hasher may not be updated afterwards.
  Digest finish();

  // Whether the worker thread was started (for tests and diagnostics).
  bool threaded() const { return started_; }

 private:
  void start_worker();
  void submit_current();  // hands the block being filled to the worker
  void acquire_block();   // waits for a free block to fill
  void worker();
  void stop();

  Options opts_;
  Hasher hasher_;  // touched only by the owner before the worker starts, then only by the worker
  uint64_t inline_bytes_ = 0;
  bool started_ = false;
  bool finished_ = false;

  // Ring: block i % blocks; [consumed_, produced_) are full and waiting for the worker.
  std::unique_ptr<uint8_t[]> ring_;
  std::unique_ptr<size_t[]> lens_;
  uint8_t* cur_ = nullptr;  // the block the owner fills (owned by it), or null
  size_t cur_len_ = 0;

  std::mutex mu_;
  std::condition_variable work_cv_, space_cv_;
  uint64_t produced_ = 0, consumed_ = 0;  // guarded by mu_
  bool closing_ = false;                  // guarded by mu_: no more blocks will come
  bool abort_ = false;                    // guarded by mu_: stop without hashing the rest
  std::exception_ptr error_;              // guarded by mu_
  std::thread thread_;
};

}  // namespace rolayer
