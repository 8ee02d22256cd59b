// SPDX-License-Identifier: Apache-2.0
#include "fsat.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common.h"

namespace cli {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

std::string file_kind(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFLNK: return "a symbolic link";
    case S_IFIFO: return "a FIFO";
    case S_IFBLK: return "a block device";
    case S_IFCHR: return "a character device";
    case S_IFSOCK: return "a socket";
    default: return "not a regular file";
  }
}

namespace {

std::vector<std::string> components(const std::string& rel) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= rel.size()) {
    size_t j = rel.find('/', i);
    if (j == std::string::npos) j = rel.size();
    std::string c = rel.substr(i, j - i);
    if (c == "..") throw CliError(kBadInput, "path leaves the image: \"" + rel + "\"");
    if (!c.empty() && c != ".") out.push_back(c);
    i = j + 1;
  }
  return out;
}

std::string join(const std::string& display, const std::string& rel) {
  if (rel.empty() || rel == ".") return display;
  return display + "/" + rel;
}

std::string prefix_of(const std::vector<std::string>& cs, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; i++) s += (s.empty() ? "" : "/") + cs[i];
  return s;
}

// Walks the directory components of cs[0..n) beneath dirfd; throws on a link or a non-directory.
Fd walk_dirs(int dirfd, const std::vector<std::string>& cs, size_t n, const std::string& display) {
  int cur = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (cur < 0) sys_fail("dup " + display);
  Fd fd(cur);
  for (size_t i = 0; i < n; i++) {
    int next = ::openat(fd.get(), cs[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      int e = errno;
      std::string where = join(display, prefix_of(cs, i + 1));
      if (e == ENOENT) throw CliError(kNotFound, where + ": no such file or directory");
      if (e == ELOOP || e == ENOTDIR) {
        struct stat st;
        std::string kind = ::fstatat(fd.get(), cs[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? file_kind(st.st_mode)
                                                                                             : "not a directory";
        throw CliError(kBadInput, where + " is " + kind + ", not a directory: refused (links are never followed)");
      }
      errno = e;
      sys_fail("open " + where);
    }
    fd = Fd(next);
  }
  return fd;
}

}  // namespace

Fd open_user_dir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) throw CliError(kNotFound, path + ": no such directory");
    sys_fail("open " + path);
  }
  return Fd(fd);
}

Found lookup_beneath(int dirfd, const std::string& rel, std::string* kind) {
  auto cs = components(rel);
  if (cs.empty()) return Found::Directory;
  int cur = dirfd;
  Fd hold;
  for (size_t i = 0; i + 1 < cs.size(); i++) {
    struct stat st;
    if (::fstatat(cur, cs[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Found::Missing;
    if (!S_ISDIR(st.st_mode)) {
      if (kind) *kind = file_kind(st.st_mode);
      return Found::Other;
    }
    int next = ::openat(cur, cs[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      if (kind) *kind = "not a directory";
      return Found::Other;
    }
    hold = Fd(next);
    cur = hold.get();
  }
  struct stat st;
  if (::fstatat(cur, cs.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Found::Missing;
  if (S_ISREG(st.st_mode)) return Found::Regular;
  if (S_ISDIR(st.st_mode)) return Found::Directory;
  if (kind) *kind = file_kind(st.st_mode);
  return Found::Other;
}

Fd open_dir_beneath(int dirfd, const std::string& rel, const std::string& display) {
  auto cs = components(rel);
  return walk_dirs(dirfd, cs, cs.size(), display);
}

Fd open_file_beneath(int dirfd, const std::string& rel, const std::string& display) {
  auto cs = components(rel);
  if (cs.empty()) throw CliError(kBadInput, display + ": is a directory, not a file");
  Fd dir = walk_dirs(dirfd, cs, cs.size() - 1, display);
  std::string where = join(display, rel);
  int fd = ::openat(dir.get(), cs.back().c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) throw CliError(kNotFound, where + ": no such file");
    if (e == ELOOP)
      throw CliError(kBadInput, where + " is a symbolic link: refused (links are never followed)");
    errno = e;
    sys_fail("open " + where);
  }
  Fd f(fd);
  struct stat st;
  if (::fstat(f.get(), &st) != 0) sys_fail("stat " + where);
  if (!S_ISREG(st.st_mode))
    throw CliError(kBadInput, where + " is " + file_kind(st.st_mode) + ", not a regular file: refused");
  int fl = ::fcntl(f.get(), F_GETFL);
  if (fl >= 0) ::fcntl(f.get(), F_SETFL, fl & ~O_NONBLOCK);
  return f;
}

std::string read_file_beneath(int dirfd, const std::string& rel, size_t max, const std::string& display) {
  Fd f = open_file_beneath(dirfd, rel, display);
  std::string where = join(display, rel);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(f.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR && !interrupted()) continue;
      sys_fail("read " + where);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max) throw CliError(kBadInput, where + ": larger than " + human_bytes(static_cast<int64_t>(max)));
  }
  return out;
}

Fd make_dir_at(int dirfd, const std::string& name, const std::string& display, bool* created) {
  *created = false;
  if (::mkdirat(dirfd, name.c_str(), 0755) == 0)
    *created = true;
  else if (errno != EEXIST)
    sys_fail("mkdir " + display);
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    struct stat st;
    if ((e == ELOOP || e == ENOTDIR) && ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
      throw CliError(kBadInput, display + " is " + file_kind(st.st_mode) +
                                    ", not a directory: refused (links are never followed)");
    errno = e;
    sys_fail("open " + display);
  }
  return Fd(fd);
}

AtomicFileAt::AtomicFileAt(int dirfd, std::string name, std::string display)
    : dirfd_(dirfd), name_(std::move(name)), display_(std::move(display)) {
  struct stat st;
  if (::fstatat(dirfd_, name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode))
    throw CliError(kBadInput, display_ + " exists and is " + file_kind(st.st_mode) +
                                  ", not a regular file: refused (nothing is written through it)");
  for (int attempt = 0; attempt < 100; attempt++) {
    unsigned char rnd[6];
    if (::getrandom(rnd, sizeof rnd, 0) != static_cast<ssize_t>(sizeof rnd)) sys_fail("getrandom");
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    tmp_ = "." + name_ + ".rolayer-" + suffix;
    fd_ = ::openat(dirfd_, tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd_ >= 0) return;
    if (errno != EEXIST) sys_fail("create a temporary file next to " + display_);
  }
  throw CliError(kFailure, "cannot create a temporary file next to " + display_);
}

AtomicFileAt::~AtomicFileAt() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_.empty()) ::unlinkat(dirfd_, tmp_.c_str(), 0);
}

void AtomicFileAt::write(const void* data, size_t len) { write_all(fd_, data, len, display_); }

void AtomicFileAt::commit(bool* replaced) {
  if (::fsync(fd_) != 0) sys_fail("fsync " + display_);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) sys_fail("close " + display_);
  // Looked at again just before the rename: what is there now must still be a regular file.
  struct stat st;
  bool existed = ::fstatat(dirfd_, name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (existed && !S_ISREG(st.st_mode))
    throw CliError(kBadInput, display_ + " exists and is " + file_kind(st.st_mode) +
                                  ", not a regular file: refused (nothing is written through it)");
  if (::renameat(dirfd_, tmp_.c_str(), dirfd_, name_.c_str()) != 0) sys_fail("rename into " + display_);
  committed_ = true;
  if (replaced) *replaced = existed;
  ::fsync(dirfd_);
}

void write_file_at(int dirfd, const std::string& name, const std::string& data, const std::string& display,
                   bool* replaced) {
  AtomicFileAt f(dirfd, name, display);
  f.write(data.data(), data.size());
  f.commit(replaced);
}

}  // namespace cli
