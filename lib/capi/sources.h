/* SPDX-License-Identifier: Apache-2.0 */
// The caller's inputs as ByteSources, for the shims that read a layer stream (capi.cpp's
// registers and stage_capi.cpp's stagers).
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "rolayer.h"
#include "core/io.h"

namespace rolayer::capi {

// The caller's read callback as a ByteSource.
class CallbackSource : public ByteSource {
 public:
  CallbackSource(rolayer_read_fn fn, void* ud) : fn_(fn), ud_(ud) {}
  size_t read(uint8_t* buf, size_t cap) override {
    size_t n = 0;
    int rc = fn_(buf, cap, &n, ud_);
    if (rc != 0)
      throw Error(Code::User, "the read callback failed (returned " + std::to_string(rc) + ")").with_user_code(rc);
    if (n > cap) throw Error(Code::Inval, "the read callback reported more bytes than the buffer holds");
    return n;
  }

 private:
  rolayer_read_fn fn_;
  void* ud_;
};

// An open descriptor the caller keeps, read to its end.
class BorrowedFdSource : public ByteSource {
 public:
  explicit BorrowedFdSource(int fd) : fd_(fd) {}
  size_t read(uint8_t* buf, size_t cap) override {
    for (;;) {
      ssize_t n = ::read(fd_, buf, cap);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) throw_errno("read from the input descriptor");
    }
  }

 private:
  int fd_;
};

}  // namespace rolayer::capi
