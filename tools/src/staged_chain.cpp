// SPDX-License-Identifier: Apache-2.0
// The layers of one chain applied at once and committed in chain order: see staged_chain.h.
#include "staged_chain.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

namespace cli {

int parse_stage_jobs(const ParsedArgs& p, const std::string& command) {
  // Default: the number of CPUs, at most 4. Each layer under way costs about 7 MiB of buffers
  // (bench/RESULTS.md, session 5), so four keep import and pull within 64 MiB on any machine.
  if (!p.has("jobs")) return default_jobs();
  const std::string v = p.get("jobs");  // one string that outlives strtol's end pointer
  char* end = nullptr;
  long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || n < 1 || n > 64) usage_error(command + ": --jobs needs a number from 1 to 64, not \"" + v + "\"");
  return static_cast<int>(n);
}

StagedPtr stage_layer(rolayer_store* store, LayerReader& reader, const rolayer_register_options* opts,
                      const std::string& context) {
  rolayer_staged* st = nullptr;
  Err err;
  int rc = rolayer_stage(&st, store, LayerReader::read_cb, &reader, opts, err.out());
  if (rc == ROLAYER_OK) return StagedPtr(st, rolayer_stage_free);
  if (rc == ROLAYER_EUSER && reader.failed()) throw reader.error();
  if (interrupted()) throw interrupted_error();
  if (auto mismatch = reader.blob_mismatch()) throw *mismatch;
  lib_fail(rc, err, context);
}

void stage_and_commit_chain(rolayer_store* store, size_t n, int jobs, const ChainSteps& steps, std::vector<Layer>& held,
                            std::string& parent) {
  struct Slot {
    StagedPtr staged{nullptr, rolayer_stage_free};
    std::exception_ptr error;
    bool started = false, done = false;
  };
  std::vector<Slot> slots(n);
  std::mutex mu;
  std::condition_variable cv;
  size_t next = 0, committed = 0;
  bool stop = false;
  // Staged but not committed yet, at most: keeps the disk a failure would have to give back bounded.
  const size_t window = static_cast<size_t>(jobs) * 2;
  auto worker = [&] {
    for (;;) {
      size_t i;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return stop || next >= n || next < committed + window; });
        if (stop || next >= n) return;
        i = next++;
        slots[i].started = true;
      }
      StagedPtr staged(nullptr, rolayer_stage_free);
      std::exception_ptr error;
      try {
        staged = steps.stage(i);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lk(mu);
      slots[i].staged = std::move(staged);
      slots[i].error = error;
      slots[i].done = true;
      if (error && !stop) {
        stop = true;  // no new layer starts; the committer reports in chain order
        // The layers above this one can no longer be committed: those under way may give up.
        if (steps.abandon)
          for (size_t k = i + 1; k < n; k++)
            if (slots[k].started && !slots[k].done) steps.abandon(k);
      }
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  auto finish = [&] {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
      cv.notify_all();
    }
    for (auto& th : pool) th.join();
    pool.clear();
    for (auto& sl : slots) sl.staged.reset();  // discards what was not committed
  };
  try {
    for (int t = 0; t < jobs && static_cast<size_t>(t) < n; t++) pool.emplace_back(worker);
    for (size_t i = 0; i < n; i++) {
      StagedPtr staged(nullptr, rolayer_stage_free);
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return slots[i].done; });
        if (slots[i].error) std::rethrow_exception(slots[i].error);
        staged = std::move(slots[i].staged);
      }
      steps.check(i, staged.get());
      rolayer_layer* l = nullptr;
      Err err;
      int rc = rolayer_stage_commit(&l, store, staged.get(), parent.empty() ? nullptr : parent.c_str(), err.out());
      if (rc != ROLAYER_OK) lib_fail(rc, err, steps.context(i));
      held.emplace_back(l);
      parent = rolayer_layer_chain_id(l);
      {
        std::lock_guard<std::mutex> lk(mu);
        committed = i + 1;
        cv.notify_all();
      }
      steps.committed(i, parent);
    }
  } catch (...) {
    // A layer above the failing one may still be downloading or applying: it may give up.
    {
      std::lock_guard<std::mutex> lk(mu);
      if (steps.abandon)
        for (size_t k = 0; k < n; k++)
          if (slots[k].started && !slots[k].done) steps.abandon(k);
    }
    finish();
    throw;
  }
  finish();
}

}  // namespace cli
