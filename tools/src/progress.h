/* SPDX-License-Identifier: Apache-2.0 */
// A one-line progress bar on stderr: label, bar, percentage, bytes, rate and ETA.
// Shown only when stderr is a terminal and --quiet was not given; otherwise every call is a no-op.
#pragma once

#include <chrono>
#include <mutex>
#include <cstdint>
#include <string>

namespace cli {

class Progress {
 public:
  // total < 0: unknown (no bar, no ETA; bytes and rate only).
  Progress(bool enabled, std::string label, int64_t total);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();

  void add(uint64_t n);
  void set_label(std::string label);
  void set_total(int64_t total);
  void set_done(int64_t done);  // absolute position
  // Clears the line; further updates draw again.
  void clear();
  // Prints a line above the bar (e.g. "registered layer 2/5"), keeping the bar below it.
  void note(const std::string& line);
  bool enabled() const { return enabled_; }

 private:
  void draw(bool force);
  bool enabled_;
  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  bool drawn_ = false;
  std::recursive_mutex mu_;  // every public call may come from any thread
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace cli
