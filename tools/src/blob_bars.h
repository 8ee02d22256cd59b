/* SPDX-License-Identifier: Apache-2.0 */
// One progress bar per blob on a terminal (pull and push): a block of lines redrawn in place
// on stderr, at most ten times a second. Thread-safe. Disabled (every call a no-op) unless
// stderr is a terminal and --quiet was not given.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace cli {

class BlobBars {
 public:
  explicit BlobBars(bool enabled) : enabled_(enabled) {}
  ~BlobBars() { finish(); }
  BlobBars(const BlobBars&) = delete;
  BlobBars& operator=(const BlobBars&) = delete;

  // A new bar; returns its index.
  size_t add_bar(std::string label, int64_t total);
  void add(size_t bar, uint64_t n);
  void set_status(size_t bar, std::string status);  // e.g. "registered", "exists", "failed"
  // Draws the final state once and stops drawing.
  void finish();
  bool enabled() const { return enabled_; }

 private:
  struct Bar {
    std::string label, status;
    int64_t total = -1, done = 0;
  };
  void draw_locked(bool force);
  bool enabled_;
  bool finished_ = false;
  std::mutex mu_;
  std::vector<Bar> bars_;
  size_t drawn_lines_ = 0;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace cli
