/* SPDX-License-Identifier: Apache-2.0 */
// Small POSIX file helpers shared by the core and the drivers.
#pragma once

#include <cstdint>
#include <string>

#include "core/io.h"

namespace rolayer::fs {

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { int f = fd_; fd_ = -1; return f; }
  void reset();

 private:
  int fd_ = -1;
};

void mkdirs(const std::string& path, unsigned mode = 0755);  // like mkdir -p
bool exists(const std::string& path);
// Remove a tree without following symlinks; a missing path is fine.
void remove_all(const std::string& path);
// The same for the entry `name` of the directory dirfd (never following a link).
void remove_all_at(int dirfd, const std::string& name);
// Write a whole file atomically (temp + fsync + rename + fsync of the directory).
void write_file_atomic(const std::string& path, const std::string& data);
// The same for the entry `name` of the directory dirfd (never following a link; `shown` is the
// path named in errors).
void write_file_atomic_at(int dirfd, const std::string& name, const std::string& data, const std::string& shown);
std::string read_file(const std::string& path, size_t max = 1 << 20);
void fsync_dir(const std::string& dir);
// 128 random bits as 32 hex characters.
std::string random_hex();

// Full read/write with EINTR handling; throw Error(Io).
size_t read_full(int fd, uint8_t* buf, size_t cap);
void write_full(int fd, const uint8_t* data, size_t len);

// A ByteSource over a file descriptor it owns.
class FdSource : public ByteSource {
 public:
  explicit FdSource(Fd fd) : fd_(std::move(fd)) {}
  size_t read(uint8_t* buf, size_t cap) override;

 private:
  Fd fd_;
};

// A ByteSink that appends to a file descriptor it owns, through a buffer.
class FdSink : public ByteSink {
 public:
  explicit FdSink(Fd fd) : fd_(std::move(fd)) {}
  ~FdSink() override;
  void write(const uint8_t* data, size_t len) override;
  void flush();
  int fd() const { return fd_.get(); }

 private:
  Fd fd_;
  std::string buf_;
};

}  // namespace rolayer::fs
