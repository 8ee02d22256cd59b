// SPDX-License-Identifier: Apache-2.0
#include "core/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <openssl/rand.h>

#include "core/error.h"
#include "core/fault.h"

namespace rolayer::fs {

Fd::~Fd() { reset(); }
Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}
void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void mkdirs(const std::string& path, unsigned mode) {
  if (path.empty()) return;
  ROLAYER_FAULT_POINT("fs.mkdir");
  std::string cur;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    cur = path.substr(0, j);
    i = j + 1;
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) throw_errno("mkdir " + cur);
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw_errno("stat " + path);
  if (!S_ISDIR(st.st_mode)) throw Error(Code::Io, path + " exists and is not a directory").with_errno(ENOTDIR);
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

namespace {
void remove_at(int dirfd, const char* name) {
  ROLAYER_FAULT_POINT("fs.remove");
  if (::unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return;
  if (errno != EISDIR && errno != EPERM) throw_errno(std::string("unlink ") + name);
  int fd = ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return;
    // Maybe a directory without read permission: make it readable and retry.
    if (errno == EACCES && ::fchmodat(dirfd, name, 0700, 0) == 0)
      fd = ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) throw_errno(std::string("open ") + name);
  }
  ::fchmod(fd, 0700);
  DIR* d = ::fdopendir(fd);
  if (!d) {
    int e = errno;
    ::close(fd);
    throw_errno(std::string("opendir ") + name, e);
  }
  while (struct dirent* de = ::readdir(d)) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    try {
      remove_at(::dirfd(d), de->d_name);
    } catch (...) {
      ::closedir(d);
      throw;
    }
  }
  ::closedir(d);
  if (::unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) throw_errno(std::string("rmdir ") + name);
}
}  // namespace

void remove_all(const std::string& path) { remove_at(AT_FDCWD, path.c_str()); }
void remove_all_at(int dirfd, const std::string& name) { remove_at(dirfd, name.c_str()); }

void fsync_dir(const std::string& dir) {
  ROLAYER_FAULT_POINT("fs.fsync");
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("open " + dir);
  if (::fsync(fd.get()) != 0) throw_errno("fsync " + dir);
}

void write_file_atomic(const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp-" + random_hex().substr(0, 8);
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) throw_errno("create " + tmp);
    write_full(fd.get(), reinterpret_cast<const uint8_t*>(data.data()), data.size());
    ROLAYER_FAULT_POINT("fs.fsync");
    if (::fsync(fd.get()) != 0) throw_errno("fsync " + tmp);
  }
  ROLAYER_FAULT_POINT("fs.rename");
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    throw_errno("rename " + tmp, e);
  }
  auto slash = path.rfind('/');
  fsync_dir(slash == std::string::npos ? "." : path.substr(0, slash));
}

void write_file_atomic_at(int dirfd, const std::string& name, const std::string& data, const std::string& shown) {
  std::string tmp = name + ".tmp-" + random_hex().substr(0, 8);
  {
    Fd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) throw_errno("create " + shown + ".tmp");
    write_full(fd.get(), reinterpret_cast<const uint8_t*>(data.data()), data.size());
    ROLAYER_FAULT_POINT("fs.fsync");
    if (::fsync(fd.get()) != 0) throw_errno("fsync " + shown + ".tmp");
  }
  ROLAYER_FAULT_POINT("fs.rename");
  if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
    int e = errno;
    ::unlinkat(dirfd, tmp.c_str(), 0);
    throw_errno("rename " + shown, e);
  }
  ROLAYER_FAULT_POINT("fs.fsync");
  if (::fsync(dirfd) != 0) throw_errno("fsync the directory of " + shown);
}

std::string read_file(const std::string& path, size_t max) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) throw_errno("open " + path);
  std::string out;
  uint8_t buf[65536];
  for (;;) {
    size_t n = read_full(fd.get(), buf, sizeof buf);
    if (n == 0) break;
    if (out.size() + n > max) throw Error(Code::Corrupt, path + " is larger than expected");
    out.append(reinterpret_cast<char*>(buf), n);
  }
  return out;
}

std::string random_hex() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) throw Error(Code::Io, "no random bytes available");
  static const char kHex[] = "0123456789abcdef";
  std::string s(32, '0');
  for (int i = 0; i < 16; i++) {
    s[2 * i] = kHex[b[i] >> 4];
    s[2 * i + 1] = kHex[b[i] & 15];
  }
  return s;
}

size_t read_full(int fd, uint8_t* buf, size_t cap) {
  ROLAYER_FAULT_POINT("fs.read");
  size_t got = 0;
  while (got < cap) {
    ssize_t n = ::read(fd, buf + got, cap - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read");
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

void write_full(int fd, const uint8_t* data, size_t len) {
  ROLAYER_FAULT_POINT("fs.write");
  while (len) {
    ssize_t n = ::write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write");
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
}

size_t FdSource::read(uint8_t* buf, size_t cap) {
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf, cap);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) throw_errno("read");
  }
}

FdSink::~FdSink() {
  try {
    flush();
  } catch (...) {
  }
}

void FdSink::write(const uint8_t* data, size_t len) {
  if (buf_.size() + len > (1 << 20)) flush();
  if (len >= (1 << 20)) {
    write_full(fd_.get(), data, len);
    return;
  }
  buf_.append(reinterpret_cast<const char*>(data), len);
}

void FdSink::flush() {
  if (!buf_.empty()) {
    std::string b;
    b.swap(buf_);
    write_full(fd_.get(), reinterpret_cast<const uint8_t*>(b.data()), b.size());
  }
}

}  // namespace rolayer::fs
