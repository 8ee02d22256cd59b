// SPDX-License-Identifier: Apache-2.0
#include "progress.h"

#include <mutex>

#include "text.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "common.h"

namespace cli {

namespace {
std::string clock_text(double seconds) {
  if (seconds < 0 || seconds > 99 * 3600) return "--:--";
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}
void put(const std::string& s) {
  // Best effort: progress output must never fail an operation.
  const char* p = s.data();
  size_t n = s.size();
  while (n > 0) {
    ssize_t w = ::write(STDERR_FILENO, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}
}  // namespace

Progress::Progress(bool enabled, std::string label, int64_t total)
    : enabled_(enabled), label_(std::move(label)), total_(total) {
  start_ = std::chrono::steady_clock::now();
  last_draw_ = start_ - std::chrono::seconds(1);
}

Progress::~Progress() { clear(); }

void Progress::add(uint64_t n) {
  std::lock_guard<std::recursive_mutex> lock(mu_);  // import stages layers on several threads
  if (!enabled_) return;
  done_ += static_cast<int64_t>(n);
  draw(false);
}

void Progress::set_done(int64_t done) {
  std::lock_guard<std::recursive_mutex> lock(mu_);  // import stages layers on several threads
  if (!enabled_) return;
  done_ = done;
  draw(false);
}

void Progress::set_label(std::string label) {
  std::lock_guard<std::recursive_mutex> lock(mu_);  // import stages layers on several threads
  label_ = std::move(label);
  if (enabled_) draw(true);
}

void Progress::set_total(int64_t total) { total_ = total; }

void Progress::clear() {
  std::lock_guard<std::recursive_mutex> lock(mu_);  // import stages layers on several threads
  if (enabled_ && drawn_) put("\r\033[K");
  drawn_ = false;
}

void Progress::note(const std::string& line) {
  std::lock_guard<std::recursive_mutex> lock(mu_);  // import stages layers on several threads
  if (!enabled_) return;
  clear();
  put(term_safe(line) + "\n");
  draw(true);
}

void Progress::draw(bool force) {
  auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double rate = elapsed > 0.2 ? static_cast<double>(done_) / elapsed : 0.0;

  std::string tail;
  if (total_ >= 0) {
    int pct = total_ > 0 ? static_cast<int>(std::min<int64_t>(100, done_ * 100 / total_)) : 100;
    char p[8];
    std::snprintf(p, sizeof p, "%3d%%", pct);
    tail += p;
    tail += "  " + human_bytes(done_) + " / " + human_bytes(total_);
  } else {
    tail += human_bytes(done_);
  }
  if (rate > 0) tail += "  " + human_bytes(static_cast<int64_t>(rate)) + "/s";
  if (total_ >= 0) {
    double eta = rate > 0 ? static_cast<double>(std::max<int64_t>(0, total_ - done_)) / rate : -1;
    tail += "  ETA " + clock_text(eta);
  }

  int cols = terminal_columns() - 1;
  std::string label = term_safe(label_);
  int bar_width = 0;
  if (total_ >= 0) {
    // A steady bar: room is reserved for the longest tail ("100%  999.9 MiB / 999.9 MiB
    // 999.9 MiB/s  ETA 59:59"), so the bar does not jump as the numbers grow.
    constexpr int kTailRoom = 50;
    bar_width = std::min(30, cols - static_cast<int>(label.size()) - 4 - kTailRoom);
    if (bar_width < 10) bar_width = 0;
  }
  std::string line = label;
  if (bar_width > 0) {
    int fill = total_ > 0 ? static_cast<int>(static_cast<double>(std::min(done_, total_)) / static_cast<double>(total_) * bar_width)
                          : bar_width;
    line += " [" + std::string(static_cast<size_t>(fill), '#') + std::string(static_cast<size_t>(bar_width - fill), '.') + "]";
  }
  line += " " + tail;
  if (static_cast<int>(line.size()) > cols && cols > 0) line.resize(static_cast<size_t>(cols));
  put("\r" + line + "\033[K");
  drawn_ = true;
}

}  // namespace cli
