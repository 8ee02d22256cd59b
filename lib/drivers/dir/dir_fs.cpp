// SPDX-License-Identifier: Apache-2.0
#include "drivers/dir/dir_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#if defined(SYS_openat2) && __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define ROLAYER_HAVE_OPENAT2 1
#endif

namespace rolayer::dirfs {

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Error sys_error(const std::string& what, const std::string& path, int err) {
  char buf[256];
  const char* msg = strerror_r(err, buf, sizeof buf);
  Code code = err == ENOMEM ? Code::NoMem : Code::Io;
  std::string m = what;
  if (!path.empty()) m += " " + path;
  m += ": ";
  m += msg;
  Error e(code, m);
  e.with_errno(err).with_path(path);
  return e;
}

std::vector<std::string_view> split(std::string_view rel) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < rel.size()) {
    size_t j = rel.find('/', i);
    if (j == std::string_view::npos) j = rel.size();
    if (j > i) out.push_back(rel.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

std::string join(std::string_view dir, std::string_view name) {
  std::string out;
  out.reserve(dir.size() + 1 + name.size());
  out.append(dir);
  if (!dir.empty() && !name.empty()) out.push_back('/');
  out.append(name);
  return out;
}

std::string_view dir_of(std::string_view rel) {
  size_t k = rel.rfind('/');
  return k == std::string_view::npos ? std::string_view() : rel.substr(0, k);
}

std::string_view base_of(std::string_view rel) {
  size_t k = rel.rfind('/');
  return k == std::string_view::npos ? rel : rel.substr(k + 1);
}

bool is_strict_ancestor(std::string_view anc, std::string_view p) {
  if (anc.empty()) return !p.empty();
  return p.size() > anc.size() && p.compare(0, anc.size(), anc) == 0 && p[anc.size()] == '/';
}

Fd open_dir(const std::string& abs, bool path_only) {
  int flags = O_DIRECTORY | O_CLOEXEC | (path_only ? O_PATH : O_RDONLY);
  int fd = ::open(abs.c_str(), flags);
  if (fd < 0) throw sys_error("cannot open directory", abs, errno);
  return Fd(fd);
}

#ifdef ROLAYER_HAVE_OPENAT2
static int raw_openat2(int rootfd, const char* rel, int flags) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(flags | O_NOFOLLOW | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  for (;;) {
    long fd = ::syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    if (errno != EINTR) return -1;
  }
}

static bool probe_openat2() {
  // A bad directory fd: a kernel that takes this open_how answers EBADF without looking at any
  // path (nothing depends on the working directory). Older kernels give ENOSYS; seccomp filters
  // that do not know the call often give EPERM (or ENOSYS); E2BIG/EINVAL mean the kernel does
  // not take this open_how.
  int fd = raw_openat2(-1, "x", O_PATH | O_DIRECTORY);
  if (fd >= 0) {
    ::close(fd);
    return false;
  }
  return errno == EBADF;
}
#endif

bool have_openat2() {
#ifdef ROLAYER_HAVE_OPENAT2
  static const bool ok = probe_openat2();
  return ok;
#else
  return false;
#endif
}

int openat2_beneath(int rootfd, const char* rel, int flags) {
#ifdef ROLAYER_HAVE_OPENAT2
  if (have_openat2()) return raw_openat2(rootfd, rel, flags);
#else
  (void)rootfd;
  (void)rel;
  (void)flags;
#endif
  errno = ENOSYS;
  return -1;
}

// Number of components of `rel` as split() counts them.
static size_t count_components(std::string_view rel) {
  size_t n = 0;
  bool in = false;
  for (char c : rel) {
    if (c == '/') {
      in = false;
    } else if (!in) {
      in = true;
      ++n;
    }
  }
  return n;
}

bool valid_clean_path(std::string_view p, bool allow_empty) {
  if (p.empty()) return allow_empty;
  if (p.front() == '/' || p.back() == '/') return false;
  if (p.find('\0') != std::string_view::npos) return false;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view c = p.substr(i, j - i);
    if (c.empty() || c == "." || c == "..") return false;
    i = j + 1;
  }
  return true;
}

WalkResult walk_parent(int rootfd, std::string_view rel, const std::string& what_path) {
  WalkResult r;
  std::string_view dir = dir_of(rel);
  if (!dir.empty() && have_openat2() && valid_clean_path(rel, false)) {
    // Every strict prefix a real directory, resolved in one call. On any failure the walk below
    // runs and tells which prefix is missing / not a directory / a symlink (or throws).
    std::string d(dir);
    int fd = openat2_beneath(rootfd, d.c_str(), O_PATH | O_DIRECTORY);
    if (fd >= 0) {
      r.status = Walk::Ok;
      r.parent = Fd(fd);
      r.stopped_at = count_components(rel);
      return r;
    }
  }
  auto comps = split(rel);
  int fd = ::openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw sys_error("cannot open directory", what_path, errno);
  Fd cur(fd);
  std::string name;
  for (size_t i = 0; i + 1 < comps.size(); ++i) {
    name.assign(comps[i]);
    struct stat st;
    if (::fstatat(cur.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) {
        r.status = Walk::Missing;
        r.stopped_at = i;
        return r;
      }
      throw sys_error("cannot stat", what_path, errno);
    }
    if (S_ISLNK(st.st_mode)) {
      r.status = Walk::Symlink;
      r.stopped_at = i;
      return r;
    }
    if (!S_ISDIR(st.st_mode)) {
      r.status = Walk::NotDir;
      r.stopped_at = i;
      return r;
    }
    int nfd = ::openat(cur.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (nfd < 0) {
      if (errno == ENOENT) {
        r.status = Walk::Missing;
        r.stopped_at = i;
        return r;
      }
      if (errno == ENOTDIR || errno == ELOOP) {
        r.status = Walk::NotDir;
        r.stopped_at = i;
        return r;
      }
      throw sys_error("cannot open directory", what_path, errno);
    }
    cur.reset(nfd);
  }
  r.status = Walk::Ok;
  r.parent = std::move(cur);
  r.stopped_at = comps.size();
  return r;
}

bool lookup(int rootfd, std::string_view rel, Fd& parent, struct stat& st, Walk* why) {
  WalkResult w = walk_parent(rootfd, rel, std::string(rel));
  if (why) *why = w.status;
  if (w.status != Walk::Ok) return false;
  std::string base(base_of(rel));
  if (base.empty()) {
    if (::fstat(w.parent.get(), &st) != 0) return false;
    parent = std::move(w.parent);
    return true;
  }
  if (::fstatat(w.parent.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      if (why) *why = Walk::Missing;
      return false;
    }
    throw sys_error("cannot stat", std::string(rel), errno);
  }
  parent = std::move(w.parent);
  return true;
}

Fd open_beneath(int rootfd, std::string_view rel, int flags) {
  if (have_openat2() && (rel.empty() || valid_clean_path(rel, false))) {
    std::string p = rel.empty() ? std::string(".") : std::string(rel);
    int fd = openat2_beneath(rootfd, p.c_str(), flags);
    if (fd >= 0) return Fd(fd);
    // A missing component, a non-directory prefix or a symlink give the errno the walk gives
    // (ENOENT, ENOTDIR, ELOOP); anything else goes through the walk, which may throw.
    if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return Fd();
  }
  WalkResult w = walk_parent(rootfd, rel, std::string(rel));
  if (w.status != Walk::Ok) {
    errno = w.status == Walk::Missing ? ENOENT : (w.status == Walk::Symlink ? ELOOP : ENOTDIR);
    return Fd();
  }
  std::string base(base_of(rel));
  int fd = ::openat(w.parent.get(), base.empty() ? "." : base.c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
  return Fd(fd);
}

void fsync_fd(int fd, const std::string& what_path) {
  if (::fsync(fd) != 0) throw sys_error("fsync failed for", what_path, errno);
}

static void write_all(int fd, const char* p, size_t n, const std::string& what_path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw sys_error("cannot write", what_path, errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void write_file_atomic(int dirfd, const std::string& name, std::string_view data,
                       const std::string& what_path) {
  std::string tmp = name + ".tmp";
  ::unlinkat(dirfd, tmp.c_str(), 0);
  Fd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd.valid()) throw sys_error("cannot create", what_path, errno);
  write_all(fd.get(), data.data(), data.size(), what_path);
  fsync_fd(fd.get(), what_path);
  fd.reset();
  if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0)
    throw sys_error("cannot rename", what_path, errno);
  fsync_fd(dirfd, what_path);
}

bool read_file(int dirfd, const std::string& name, std::string& out, size_t max_size,
               const std::string& what_path) {
  out.clear();
  Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) {
    if (errno == ENOENT) return false;
    if (errno == ELOOP) throw Error(Code::Corrupt, "metadata file is a symlink: " + what_path).with_path(what_path);
    throw sys_error("cannot open", what_path, errno);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw sys_error("cannot stat", what_path, errno);
  if (!S_ISREG(st.st_mode))
    throw Error(Code::Corrupt, "metadata file is not a regular file: " + what_path).with_path(what_path);
  if (static_cast<uint64_t>(st.st_size) > max_size)
    throw Error(Code::Corrupt, "metadata file too large: " + what_path).with_path(what_path);
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw sys_error("cannot read", what_path, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_size)
      throw Error(Code::Corrupt, "metadata file too large: " + what_path).with_path(what_path);
  }
  return true;
}

std::vector<std::pair<std::string, unsigned char>> list_dir(int dirfd, const std::string& what_path) {
  std::vector<std::pair<std::string, unsigned char>> out;
  // A new open file description, so that the caller's fd offset is untouched.
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw sys_error("cannot open directory", what_path, errno);
  DIR* d = ::fdopendir(fd);
  if (!d) {
    int e = errno;
    ::close(fd);
    throw sys_error("cannot list directory", what_path, e);
  }
  errno = 0;
  while (struct dirent* de = ::readdir(d)) {
    const char* n = de->d_name;
    if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) continue;
    out.emplace_back(n, de->d_type);
    errno = 0;
  }
  int e = errno;
  ::closedir(d);
  if (e != 0) throw sys_error("cannot list directory", what_path, e);
  return out;
}

void for_each_dot_entry(int dirfd, const std::string& what_path, const std::function<void(const std::string&)>& f) {
  Fd fd(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) throw sys_error("cannot open directory", what_path, errno);
  std::vector<std::string> dots;
  std::unique_ptr<char[]> buf(new char[1 << 18]);
  for (;;) {
    ssize_t n = ::getdents64(fd.get(), buf.get(), 1 << 18);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw sys_error("cannot list directory", what_path, errno);
    }
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      struct dirent64 de;
      std::memcpy(&de, buf.get() + off, offsetof(struct dirent64, d_name));
      const char* nm = buf.get() + off + offsetof(struct dirent64, d_name);
      off += de.d_reclen;
      if (nm[0] != '.' || nm[1] == 0 || (nm[1] == '.' && nm[2] == 0)) continue;
      dots.emplace_back(nm);
    }
  }
  for (const auto& n : dots) f(n);
}

std::vector<std::pair<std::string, unsigned char>> list_dir_fd(int dirfd,
                                                               const std::string& what_path) {
  std::vector<std::pair<std::string, unsigned char>> out;
  alignas(struct dirent64) char buf[32768];
  for (;;) {
    ssize_t n = ::getdents64(dirfd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw sys_error("cannot list directory", what_path, errno);
    }
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      auto* de = reinterpret_cast<struct dirent64*>(buf + off);
      off += de->d_reclen;
      const char* nm = de->d_name;
      if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
      out.emplace_back(nm, de->d_type);
    }
  }
  return out;
}

bool give_owner_access(int dirfd, const char* name, mode_t bits) {
  struct stat st;
  if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
  if (S_ISLNK(st.st_mode) || st.st_uid != ::geteuid()) return false;
  if ((st.st_mode & bits) == bits) return true;
  const mode_t mode = (st.st_mode & 07777) | bits;
  if (::fchmodat(dirfd, name, mode, AT_SYMLINK_NOFOLLOW) == 0) return true;
  if (errno != ENOTSUP && errno != EOPNOTSUPP && errno != ENOSYS) return false;
  // A C library without fchmodat(AT_SYMLINK_NOFOLLOW): through an O_PATH descriptor of the
  // very object just checked (never a symlink: O_NOFOLLOW on O_PATH opens the link itself).
  Fd p(::openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat pst;
  if (!p.valid() || ::fstat(p.get(), &pst) != 0 || S_ISLNK(pst.st_mode) || pst.st_ino != st.st_ino ||
      pst.st_dev != st.st_dev)
    return false;
  std::string proc = "/proc/self/fd/" + std::to_string(p.get());
  return ::chmod(proc.c_str(), mode) == 0;
}

namespace detail {

namespace {
struct Level {
  std::string name;                  // this directory's name in its parent
  std::vector<std::string> subdirs;  // sub-directories still to visit
};

// Opens directory `name` below `dirfd` for a removal walk (O_NOFOLLOW). As a non-root user,
// a directory of ours that denies its owner reading or searching (mode 0000, 0300, 0100...)
// is given u+rwx first, by name and without following a symlink: the store must be able to
// remove everything it wrote, whatever the modes in the layer (and layers written before the
// owner-access rule of dir_apply.cpp have such directories on disk).
int open_dir_for_removal(int dirfd, const char* name) {
  int fd = ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0 || errno != EACCES || ::geteuid() == 0) return fd;
  if (!give_owner_access(dirfd, name, S_IRWXU)) {
    errno = EACCES;
    return -1;
  }
  return ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

void make_owner_writable(int fd) {
  if (::geteuid() == 0) return;
  struct stat st;
  if (::fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700) ::fchmod(fd, (st.st_mode & 07777) | 0700);
}

// Lists `fd`: non-directories are unlinked (or kept by `keep`); sub-directories are collected.
void process_level(int fd, const std::string& rel, Level& lv, const std::string& what_path,
                   bool (*keep)(void*, const std::string&), void* ctx) {
  make_owner_writable(fd);
  for (auto& [n, type] : list_dir(fd, what_path)) {
    unsigned char t = type;
    if (t == DT_UNKNOWN) {
      struct stat st;
      if (::fstatat(fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;
        throw sys_error("cannot stat", what_path, errno);
      }
      t = S_ISDIR(st.st_mode) ? DT_DIR : (S_ISREG(st.st_mode) ? DT_REG : DT_LNK);
    }
    if (t == DT_DIR) {
      lv.subdirs.push_back(n);
      continue;
    }
    if (t == DT_REG && keep && keep(ctx, join(rel, n))) continue;
    if (::unlinkat(fd, n.c_str(), 0) != 0 && errno != ENOENT)
      throw sys_error("cannot remove", what_path, errno);
  }
}
}  // namespace

void prune_impl(int dirfd, const std::string& name, const std::string& what_path,
                bool (*keep)(void*, const std::string&), void* ctx) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return;
    throw sys_error("cannot stat", what_path, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (S_ISREG(st.st_mode) && keep && keep(ctx, "")) return;
    if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT)
      throw sys_error("cannot remove", what_path, errno);
    return;
  }
  // Descend with one open directory at a time; climb back through "..", which is the real
  // parent because every directory was entered with O_NOFOLLOW.
  Fd cur(open_dir_for_removal(dirfd, name.c_str()));
  if (!cur.valid()) throw sys_error("cannot open directory", what_path, errno);
  std::vector<Level> stack;
  std::string rel;  // path of `cur` relative to the walk's root
  stack.push_back(Level{name, {}});
  process_level(cur.get(), rel, stack.back(), what_path, keep, ctx);
  for (;;) {
    Level& top = stack.back();
    if (!top.subdirs.empty()) {
      std::string sub = std::move(top.subdirs.back());
      top.subdirs.pop_back();
      Fd next(open_dir_for_removal(cur.get(), sub.c_str()));
      if (!next.valid()) {
        if (errno == ENOENT) continue;
        if (errno == ENOTDIR || errno == ELOOP) {  // replaced meanwhile: remove as a file
          if (::unlinkat(cur.get(), sub.c_str(), 0) != 0 && errno != ENOENT)
            throw sys_error("cannot remove", what_path, errno);
          continue;
        }
        throw sys_error("cannot open directory", what_path, errno);
      }
      cur = std::move(next);
      rel = join(rel, sub);
      stack.push_back(Level{sub, {}});
      process_level(cur.get(), rel, stack.back(), what_path, keep, ctx);
      continue;
    }
    // This level is done: leave it and remove it from its parent.
    std::string done = std::move(top.name);
    stack.pop_back();
    if (stack.empty()) {
      cur.reset();
      if (::unlinkat(dirfd, done.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT &&
          !(keep && (errno == ENOTEMPTY || errno == EEXIST)))
        throw sys_error("cannot remove", what_path, errno);
      return;
    }
    Fd up(::openat(cur.get(), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!up.valid()) throw sys_error("cannot open parent directory", what_path, errno);
    cur = std::move(up);
    rel = std::string(dir_of(rel));
    if (::unlinkat(cur.get(), done.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT &&
        !(keep && (errno == ENOTEMPTY || errno == EEXIST)))
      throw sys_error("cannot remove", what_path, errno);
  }
}

}  // namespace detail

void remove_tree(int dirfd, const std::string& name, const std::string& what_path) {
  detail::prune_impl(dirfd, name, what_path, nullptr, nullptr);
}

static bool skip_xattr_errno(int e) {
  return e == ENOTSUP || e == EPERM || e == EACCES;
}

// ---- overlay-ready trees: attribute names on disk ----
namespace {
constexpr std::string_view kEscTag = "rolayer-esc";       // reserved second component
constexpr std::string_view kEscPrefix = "rolayer-esc.";   // an escaped layer attribute
constexpr std::string_view kOverlayPrefix = "overlay.";   // overlayfs' own attributes
// The part of an attribute name after its namespace ("trusted.", "user.", ...), or npos.
size_t after_ns(std::string_view k) {
  size_t d = k.find('.');
  return d == std::string_view::npos ? d : d + 1;
}
}  // namespace

std::string escape_xattr_name(const std::string& k) {
  size_t a = after_ns(k);
  if (a == std::string::npos) return k;
  std::string_view rest = std::string_view(k).substr(a);
  if (rest.substr(0, kOverlayPrefix.size()) != kOverlayPrefix && rest.substr(0, kEscTag.size()) != kEscTag) return k;
  return k.substr(0, a) + std::string(kEscPrefix) + std::string(rest);
}

bool unescape_xattr_name(std::string& k) {
  size_t a = after_ns(k);
  if (a == std::string::npos) return true;
  std::string_view rest = std::string_view(k).substr(a);
  if (rest.substr(0, kEscPrefix.size()) == kEscPrefix) {
    k.erase(a, kEscPrefix.size());
    return true;
  }
  // overlayfs' markers and the store's own "<ns>.rolayer-esc*" attributes are not the layer's.
  return rest.substr(0, kOverlayPrefix.size()) != kOverlayPrefix && rest.substr(0, kEscTag.size()) != kEscTag;
}

static void unescape_all(std::vector<std::pair<std::string, std::string>>& xs) {
  size_t o = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!unescape_xattr_name(xs[i].first)) continue;
    if (o != i) xs[o] = std::move(xs[i]);
    ++o;
  }
  xs.resize(o);
}

std::vector<std::pair<std::string, std::string>> list_xattrs_raw_fd(int fd) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string names;
  for (int attempt = 0; attempt < 8; ++attempt) {
    ssize_t n = ::flistxattr(fd, nullptr, 0);
    if (n <= 0) return out;
    names.resize(static_cast<size_t>(n));
    n = ::flistxattr(fd, names.data(), names.size());
    if (n < 0) {
      if (errno == ERANGE) continue;
      return out;
    }
    names.resize(static_cast<size_t>(n));
    break;
  }
  for (size_t i = 0; i < names.size();) {
    size_t j = names.find('\0', i);
    if (j == std::string::npos) j = names.size();
    std::string key = names.substr(i, j - i);
    i = j + 1;
    if (key.empty()) continue;
    std::string val;
    for (int attempt = 0; attempt < 8; ++attempt) {
      ssize_t n = ::fgetxattr(fd, key.c_str(), nullptr, 0);
      if (n < 0) break;
      val.resize(static_cast<size_t>(n));
      n = ::fgetxattr(fd, key.c_str(), val.data(), val.size());
      if (n < 0) {
        if (errno == ERANGE) continue;
        break;
      }
      val.resize(static_cast<size_t>(n));
      out.emplace_back(std::move(key), std::move(val));
      break;
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> list_xattrs_raw_at(int dirfd, const std::string& name) {
  // Symlinks and special files cannot be opened for reading; go through /proc, which names the
  // directory fd itself (no lookup through the layer's own symlinks) and does not follow `name`.
  std::vector<std::pair<std::string, std::string>> out;
  std::string p = "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
  std::string names;
  ssize_t n = ::llistxattr(p.c_str(), nullptr, 0);
  if (n <= 0) return out;
  names.resize(static_cast<size_t>(n));
  n = ::llistxattr(p.c_str(), names.data(), names.size());
  if (n <= 0) return out;
  names.resize(static_cast<size_t>(n));
  for (size_t i = 0; i < names.size();) {
    size_t j = names.find('\0', i);
    if (j == std::string::npos) j = names.size();
    std::string key = names.substr(i, j - i);
    i = j + 1;
    if (key.empty()) continue;
    ssize_t m = ::lgetxattr(p.c_str(), key.c_str(), nullptr, 0);
    if (m < 0) continue;
    std::string val(static_cast<size_t>(m), '\0');
    m = ::lgetxattr(p.c_str(), key.c_str(), val.data(), val.size());
    if (m < 0) continue;
    val.resize(static_cast<size_t>(m));
    out.emplace_back(std::move(key), std::move(val));
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> list_xattrs_fd(int fd) {
  auto xs = list_xattrs_raw_fd(fd);
  unescape_all(xs);
  return xs;
}

std::vector<std::pair<std::string, std::string>> list_xattrs_at(int dirfd, const std::string& name) {
  auto xs = list_xattrs_raw_at(dirfd, name);
  unescape_all(xs);
  return xs;
}

void set_xattrs_fd(int fd, const std::vector<std::pair<std::string, std::string>>& xattrs,
                   const std::string& what_path, bool skip_all) {
  for (auto& [k0, v] : xattrs) {
    const std::string k = escape_xattr_name(k0);
    if (::fsetxattr(fd, k.c_str(), v.data(), v.size(), 0) != 0) {
      if (skip_all || skip_xattr_errno(errno)) continue;
      throw sys_error("cannot set extended attribute " + k + " on", what_path, errno);
    }
  }
}

namespace {
#ifndef SYS_setxattrat
#define SYS_setxattrat 463  // unified syscall number (every architecture but alpha)
#endif
struct XattrArgs {  // struct xattr_args of <linux/xattr.h>, VER0
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};
std::atomic<bool> g_no_setxattrat{false};
}  // namespace

void set_xattrs_at(int dirfd, const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& xattrs,
                   const std::string& fallback_abs, const std::string& what_path, bool skip_all) {
  for (auto& [k0, v] : xattrs) {
    const std::string k = escape_xattr_name(k0);
    int r = -1;
    if (!g_no_setxattrat.load(std::memory_order_relaxed)) {
      XattrArgs args{reinterpret_cast<uintptr_t>(v.data()), static_cast<uint32_t>(v.size()), 0};
      r = static_cast<int>(::syscall(SYS_setxattrat, dirfd, name.c_str(), AT_SYMLINK_NOFOLLOW, k.c_str(),
                                     &args, sizeof args));
      if (r != 0 && errno == ENOSYS) g_no_setxattrat.store(true, std::memory_order_relaxed);
    }
    if (g_no_setxattrat.load(std::memory_order_relaxed))
      r = ::lsetxattr(fallback_abs.c_str(), k.c_str(), v.data(), v.size(), 0);
    if (r != 0) {
      if (skip_all || skip_xattr_errno(errno)) continue;
      throw sys_error("cannot set extended attribute " + k + " on", what_path, errno);
    }
  }
}

static void copy_range(int src, int dst, uint64_t off, uint64_t len, const std::string& what_path) {
  std::vector<char> buf(1 << 20);
  while (len > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(len, buf.size()));
    ssize_t n = ::pread(src, buf.data(), want, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw sys_error("cannot read", what_path, errno);
    }
    if (n == 0) throw Error(Code::Io, "file shrank while copying: " + what_path).with_path(what_path);
    const char* p = buf.data();
    size_t left = static_cast<size_t>(n);
    uint64_t woff = off;
    while (left > 0) {
      ssize_t w = ::pwrite(dst, p, left, static_cast<off_t>(woff));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw sys_error("cannot write", what_path, errno);
      }
      p += w;
      left -= static_cast<size_t>(w);
      woff += static_cast<uint64_t>(w);
    }
    off += static_cast<uint64_t>(n);
    len -= static_cast<uint64_t>(n);
  }
}

void copy_data(int src, int dst, uint64_t size, const std::string& what_path) {
  std::vector<std::pair<uint64_t, uint64_t>> segs;
  if (data_segments(src, size, 1u << 20, segs)) {
    for (auto& [o, l] : segs) copy_range(src, dst, o, l, what_path);
  } else {
    copy_range(src, dst, 0, size, what_path);
  }
  if (::ftruncate(dst, static_cast<off_t>(size)) != 0) throw sys_error("cannot resize", what_path, errno);
}

void coalesce_segments(std::vector<std::pair<uint64_t, uint64_t>>& segs, size_t max_segments) {
  if (max_segments == 0) max_segments = 1;
  if (segs.size() <= max_segments) return;
  // Merge across the smallest holes: keep the (max_segments - 1) largest gaps as holes.
  std::vector<uint64_t> gaps;
  gaps.reserve(segs.size() - 1);
  for (size_t i = 1; i < segs.size(); ++i) gaps.push_back(segs[i].first - (segs[i - 1].first + segs[i - 1].second));
  const size_t keep = max_segments - 1;  // holes kept
  uint64_t threshold = 0;                // gaps strictly larger stay holes, ties fill up `keep`
  size_t ties_left = 0;
  if (keep == 0) {
    threshold = UINT64_MAX;
  } else {
    std::vector<uint64_t> sorted = gaps;
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(keep - 1), sorted.end(),
                     std::greater<uint64_t>());
    threshold = sorted[keep - 1];  // the keep-th largest gap
    size_t larger = 0;
    for (uint64_t g : gaps) larger += g > threshold;
    ties_left = keep - larger;
  }
  std::vector<std::pair<uint64_t, uint64_t>> out;
  out.reserve(max_segments);
  out.push_back(segs[0]);
  for (size_t i = 1; i < segs.size(); ++i) {
    const uint64_t g = gaps[i - 1];
    bool hole = g > threshold;
    if (!hole && keep != 0 && g == threshold && ties_left > 0) {
      hole = true;
      --ties_left;
    }
    if (hole) {
      out.push_back(segs[i]);
    } else {
      out.back().second = segs[i].first + segs[i].second - out.back().first;
    }
  }
  segs.swap(out);
}

bool data_segments(int fd, uint64_t size, size_t max_segments,
                   std::vector<std::pair<uint64_t, uint64_t>>& out, const struct stat* known) {
  out.clear();
  if (size == 0) return false;
  struct stat st;
  if (known) {
    st = *known;
  } else if (::fstat(fd, &st) != 0) {
    return false;
  }
  // Cheap test first: a file whose allocated blocks cover its size has no hole.
  if (static_cast<uint64_t>(st.st_blocks) * 512 >= size) return false;
  uint64_t pos = 0;
  while (pos < size) {
    off_t d = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (d < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      out.clear();
      return false;  // SEEK_DATA unsupported
    }
    if (static_cast<uint64_t>(d) >= size) break;
    off_t h = ::lseek(fd, d, SEEK_HOLE);
    if (h < 0) {
      out.clear();
      return false;
    }
    uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(h), size);
    out.emplace_back(static_cast<uint64_t>(d), end - static_cast<uint64_t>(d));
    if (out.size() >= 2 * max_segments) coalesce_segments(out, max_segments);
    pos = end;
  }
  coalesce_segments(out, max_segments);
  uint64_t data = 0;
  for (auto& s : out) data += s.second;
  if (data >= size) {
    out.clear();
    return false;
  }
  return true;
}

std::string override_stat_value(int64_t uid, int64_t gid, uint32_t mode, bool is_dir) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%lld:%lld:%04o:%s", static_cast<long long>(uid), static_cast<long long>(gid),
                static_cast<unsigned>(mode & 07777), is_dir ? "dir" : "file");
  return buf;
}

void set_override_stat_fd(int fd, int64_t uid, int64_t gid, uint32_t mode, bool is_dir,
                          const std::string& what_path) {
  const std::string v = override_stat_value(uid, gid, mode, is_dir);
  if (::fsetxattr(fd, kOverrideStatXattr, v.data(), v.size(), 0) != 0) {
    const int e = errno;
    char oct[16];
    std::snprintf(oct, sizeof oct, "%04o", static_cast<unsigned>(mode & 07777));
    throw sys_error(std::string("cannot keep the real mode ") + oct + " of '" + what_path +
                        "' in the extended attribute " + kOverrideStatXattr +
                        " (an unprivileged store keeps owner access on disk and the real mode there;"
                        " the file system must support user extended attributes)",
                    what_path, e);
  }
}

bool parse_override_mode(std::string_view v, uint32_t& mode) {
  // uid:gid:mode[:type]
  size_t c1 = v.find(':');
  if (c1 == std::string_view::npos) return false;
  size_t c2 = v.find(':', c1 + 1);
  if (c2 == std::string_view::npos) return false;
  size_t c3 = v.find(':', c2 + 1);
  std::string_view m = v.substr(c2 + 1, c3 == std::string_view::npos ? std::string_view::npos : c3 - c2 - 1);
  if (m.empty() || m.size() > 7) return false;
  uint32_t r = 0;
  for (char ch : m) {
    if (ch < '0' || ch > '7') return false;
    r = r * 8 + static_cast<uint32_t>(ch - '0');
  }
  mode = r & 07777;
  return true;
}

uint32_t take_override_mode(std::vector<std::pair<std::string, std::string>>& xattrs, uint32_t disk_mode) {
  uint32_t mode = disk_mode & 07777;
  for (auto it = xattrs.begin(); it != xattrs.end(); ++it) {
    if (it->first != kOverrideStatXattr) continue;
    uint32_t m = 0;
    if (parse_override_mode(it->second, m)) mode = m;
    xattrs.erase(it);
    break;
  }
  return mode;
}

std::string random_suffix() {
  uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
    std::random_device rd;
    v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace rolayer::dirfs
