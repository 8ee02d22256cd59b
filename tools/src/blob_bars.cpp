// SPDX-License-Identifier: Apache-2.0
#include "blob_bars.h"

#include <unistd.h>

#include <algorithm>

#include "common.h"

namespace cli {

size_t BlobBars::add_bar(std::string label, int64_t total) {
  std::lock_guard<std::mutex> g(mu_);
  bars_.push_back(Bar{std::move(label), "", total, 0});
  if (enabled_) draw_locked(true);
  return bars_.size() - 1;
}

void BlobBars::add(size_t bar, uint64_t n) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> g(mu_);
  bars_[bar].done += static_cast<int64_t>(n);
  draw_locked(false);
}

void BlobBars::set_status(size_t bar, std::string status) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> g(mu_);
  bars_[bar].status = std::move(status);
  draw_locked(true);
}

void BlobBars::finish() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> g(mu_);
  if (finished_) return;
  draw_locked(true);
  finished_ = true;
}

void BlobBars::draw_locked(bool force) {
  if (finished_) return;
  auto now = std::chrono::steady_clock::now();
  if (!force && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  int cols = std::max(20, terminal_columns() - 1);
  std::string out;
  if (drawn_lines_ > 0) out += "\033[" + std::to_string(drawn_lines_) + "A";
  for (const auto& b : bars_) {
    std::string line = b.label;
    if (b.total > 0) {
      int width = 24;
      int fill = static_cast<int>(static_cast<double>(std::min(b.done, b.total)) / static_cast<double>(b.total) * width);
      // (appended piece by piece: " [" + std::string(…) makes GCC 12 warn falsely, -Wrestrict, PR105651)
      line.append(" [").append(static_cast<size_t>(fill), '#').append(static_cast<size_t>(width - fill), '.').append("] ");
      line += human_bytes(b.done) + " / " + human_bytes(b.total);
    } else {
      line.append(" ").append(human_bytes(b.done));  // (not " " + …: GCC 12 -Wrestrict, PR105651)
    }
    if (!b.status.empty()) line += "  " + b.status;
    if (static_cast<int>(line.size()) > cols) line.resize(static_cast<size_t>(cols));
    out += "\r" + line + "\033[K\n";
  }
  drawn_lines_ = bars_.size();
  const char* p = out.data();
  size_t n = out.size();
  while (n > 0) {  // best effort: progress never fails an operation
    ssize_t w = ::write(STDERR_FILENO, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace cli
