/* SPDX-License-Identifier: Apache-2.0 */
// rolayer::Error: the one exception type of the C++ core. lib/capi maps it to status codes.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

namespace rolayer {

// Mirrors the ROLAYER_E* codes of include/rolayer/common.h (values pinned there).
enum class Code : int {
  Ok = 0,
  Inval = -1,
  NotFound = -2,
  Exists = -3,
  NotRetained = -4,
  MaxDepth = -5,
  NotAncestor = -6,
  Digest = -7,
  Corrupt = -8,
  Archive = -9,
  Unsafe = -10,
  Io = -11,
  NoMem = -12,
  User = -13,
  Busy = -14,
  Unsupported = -15,
};

class Error : public std::runtime_error {
 public:
  Error(Code code, const std::string& message) : std::runtime_error(message), code_(code) {}

  Code code() const noexcept { return code_; }
  int sys_errno() const noexcept { return errno_; }
  int user_code() const noexcept { return user_code_; }
  const std::string& path() const noexcept { return path_; }
  const std::string& diff_id() const noexcept { return diff_id_; }

  Error& with_errno(int e) { errno_ = e; return *this; }
  Error& with_user_code(int c) { user_code_ = c; return *this; }
  Error& with_path(std::string p) { path_ = std::move(p); return *this; }
  Error& with_diff_id(std::string d) { diff_id_ = std::move(d); return *this; }

 private:
  Code code_;
  int errno_ = 0;
  int user_code_ = 0;
  std::string path_;
  std::string diff_id_;
};

// An I/O error from errno: "<what>: <strerror(errno)>", Code::Io, errno kept.
[[noreturn]] void throw_errno(const std::string& what, int err = errno);

}  // namespace rolayer
