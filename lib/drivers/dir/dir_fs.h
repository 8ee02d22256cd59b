/* SPDX-License-Identifier: Apache-2.0 */
// Internal file-system helpers of the "dir" driver: fd ownership, symlink-free walks below a
// directory fd, atomic small files, tree removal with a constant number of descriptors, xattrs.
// Nothing here follows a symlink that lives inside a layer.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.h"

namespace rolayer::dirfs {

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Error(Code::Io, "<what>: <strerror>") (Code::NoMem for ENOMEM) with errno and path attached.
Error sys_error(const std::string& what, const std::string& path, int err);

// Split a cleaned relative path ("a/b/c") into components; "" gives none.
std::vector<std::string_view> split(std::string_view rel);
// "a" + "b" -> "a/b"; "" + "b" -> "b".
std::string join(std::string_view dir, std::string_view name);
// Directory part ("a/b/c" -> "a/b", "c" -> "") and base name.
std::string_view dir_of(std::string_view rel);
std::string_view base_of(std::string_view rel);
// True when `anc` is a strict ancestor of `p` ("" is the ancestor of every non-empty path).
bool is_strict_ancestor(std::string_view anc, std::string_view p);

// Open an absolute directory path (the store's own, canonical paths).
Fd open_dir(const std::string& abs, bool path_only = false);

// Result of walking to the parent directory of a relative path below a root fd.
enum class Walk {
  Ok,       // every strict prefix is a real directory; `parent` is open (O_PATH)
  Missing,  // a strict prefix does not exist (stopped_at = its component index)
  NotDir,   // a strict prefix is a non-directory that is not a symlink
  Symlink,  // a strict prefix is a symlink
};
// True for a cleaned relative path as the store writes them: no leading or trailing '/', no
// NUL, no empty, "." or ".." component ("" only when allow_empty). Only such paths take the
// openat2 shortcut (RESOLVE_BENEATH treats ".." and "/" differently from the walk).
bool valid_clean_path(std::string_view p, bool allow_empty);

struct WalkResult {
  Walk status = Walk::Ok;
  Fd parent;              // valid when status == Ok
  size_t stopped_at = 0;  // component index where the walk stopped
};
// Walk the strict prefixes of `rel` below `rootfd` without following symlinks.
// Throws only on unexpected errors (EACCES, EMFILE...).
WalkResult walk_parent(int rootfd, std::string_view rel, const std::string& what_path);

// lstat-like lookup of `rel` below `rootfd`. Returns false when it does not exist (or a
// prefix is missing / not a directory / a symlink); `parent` and `st` are set when found.
bool lookup(int rootfd, std::string_view rel, Fd& parent, struct stat& st, Walk* why = nullptr);

// Open `rel` below rootfd with `flags` (O_NOFOLLOW is always added; intermediate components
// must be real directories). Returns an invalid Fd and sets errno on failure.
Fd open_beneath(int rootfd, std::string_view rel, int flags);

// One system call: openat2(rootfd, rel, flags | O_NOFOLLOW | O_CLOEXEC) with RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS (no symlink anywhere in `rel`, never outside
// rootfd). Returns -1 with errno on failure; errno ENOSYS when openat2 is not usable here (kernel
// before 5.6, or refused by a seccomp filter), which is probed once per process.
// walk_parent, lookup and open_beneath use it first and fall back to their component-by-component
// walk when it is unusable or fails (so their results and errors stay the same).
int openat2_beneath(int rootfd, const char* rel, int flags);
bool have_openat2();

// Small-file helpers relative to a directory fd.
void write_file_atomic(int dirfd, const std::string& name, std::string_view data,
                       const std::string& what_path);
// Reads the whole file (at most max_size bytes, else Error(Code::Corrupt)). Returns false if
// the file does not exist.
bool read_file(int dirfd, const std::string& name, std::string& out, size_t max_size,
               const std::string& what_path);
void fsync_fd(int fd, const std::string& what_path);

// Remove `name` below dirfd (a file or a whole tree), never following symlinks, making
// read-only directories writable as needed, with O(1) descriptors whatever the depth.
// No error if it does not exist.
void remove_tree(int dirfd, const std::string& name, const std::string& what_path);

// Walk the tree rooted at directory `name` below dirfd (not following symlinks). For every
// regular file, keep(rel_path) decides whether it stays; every other non-directory and every
// regular file not kept is unlinked; directories left empty are removed (the root included).
template <class Keep>
void prune_tree(int dirfd, const std::string& name, const std::string& what_path, Keep&& keep);

// Directory listing of an open directory fd (the fd is not consumed): (name, d_type).
std::vector<std::pair<std::string, unsigned char>> list_dir(int dirfd,
                                                            const std::string& what_path);
// The same, reading `dirfd` itself from its current offset (no new open file description): for
// a directory fd the caller just opened (O_RDONLY) and uses only as a base for *at calls.
// Calls f with the name of each entry of the directory at dirfd that starts with '.' (not "."
// or ".."), after the listing ended (f may remove them). One pass with a large getdents
// buffer, keeping no other name: a driver directory of 100,000 layers.
void for_each_dot_entry(int dirfd, const std::string& what_path, const std::function<void(const std::string&)>& f);
std::vector<std::pair<std::string, unsigned char>> list_dir_fd(int dirfd,
                                                               const std::string& what_path);

// Extended attributes. list_xattrs_* return (name, value) pairs; absent support gives none.
// A layer's attributes are stored escaped, so that none of them is ever read by overlayfs:
// "<ns>.overlay.X" (trusted.overlay.*, user.overlay.*) and "<ns>.rolayer-esc*" are stored as
// "<ns>.rolayer-esc.<rest>". set_xattrs_* escape; list_xattrs_* unescape and leave out the
// attributes that are overlayfs' ("<ns>.overlay.*": the whiteout/opaque markers the driver
// writes) or the store's ("<ns>.rolayer-esc" not followed by '.'). list_xattrs_raw_* return
// the names on disk as they are.
std::vector<std::pair<std::string, std::string>> list_xattrs_fd(int fd);
std::vector<std::pair<std::string, std::string>> list_xattrs_at(int dirfd, const std::string& name);
std::vector<std::pair<std::string, std::string>> list_xattrs_raw_fd(int fd);
std::vector<std::pair<std::string, std::string>> list_xattrs_raw_at(int dirfd, const std::string& name);
std::string escape_xattr_name(const std::string& name);
// false: the name on disk is overlayfs' or the store's, not a layer's attribute.
bool unescape_xattr_name(std::string& name);
// Sets each attribute; ENOTSUP/EPERM/EACCES are ignored (as the Docker engine does), and with
// skip_all every error is (as libarchive's write-disk does: E2BIG for a value over 64 KiB...).
void set_xattrs_fd(int fd, const std::vector<std::pair<std::string, std::string>>& xattrs,
                   const std::string& what_path, bool skip_all = false);
// The same for `name` below dirfd without following it (a symlink, a device node or a FIFO,
// which cannot be opened for fsetxattr): setxattrat(2) with AT_SYMLINK_NOFOLLOW (Linux 6.13);
// where the kernel lacks it, lsetxattr(2) on `fallback_abs`, the absolute path of the same
// object, whose parent directories the caller has just verified.
void set_xattrs_at(int dirfd, const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& xattrs,
                   const std::string& fallback_abs, const std::string& what_path, bool skip_all = false);


// Copy a regular file's content, keeping holes (SEEK_DATA/SEEK_HOLE) where possible.
void copy_data(int src, int dst, uint64_t size, const std::string& what_path);

// Data segments (offset, length) of a regular file, via SEEK_DATA/SEEK_HOLE. Returns false when
// the file has no hole worth describing. A file with more than max_segments segments is
// described with max_segments of them (coalesce_segments): it stays sparse, only its smallest
// holes are written as zeros.
// `known`: the file's fstat when the caller already has it (saves one fstat).
bool data_segments(int fd, uint64_t size, size_t max_segments,
                   std::vector<std::pair<uint64_t, uint64_t>>& out,
                   const struct stat* known = nullptr);

// Merges neighbouring segments (sorted, disjoint) across the smallest holes until at most
// max_segments remain; the largest holes are kept. O(n) memory, O(n) expected time.
void coalesce_segments(std::vector<std::pair<uint64_t, uint64_t>>& segs, size_t max_segments);

// Gives the owner the permission `bits` (e.g. S_IRWXU) on `name` below dirfd, never following
// a symlink; only for an object the caller owns. Returns false (errno set) when it could not.
bool give_owner_access(int dirfd, const char* name, mode_t bits);

// The extended attribute in which an unprivileged store keeps a file's real owner and mode when
// the mode on disk had to differ (dir_apply.cpp): containers/storage's and fuse-overlayfs's
// "uid:gid:mode:type" (mode in 4 octal digits, type "file" or "dir").
inline constexpr const char* kOverrideStatXattr = "user.containers.override_stat";
std::string override_stat_value(int64_t uid, int64_t gid, uint32_t mode, bool is_dir);
// Sets it through fd; Error(Code::Io) naming the file when the file system refuses it.
void set_override_stat_fd(int fd, int64_t uid, int64_t gid, uint32_t mode, bool is_dir,
                          const std::string& what_path);
// Parses the mode of an override_stat value; false when absent or malformed.
bool parse_override_mode(std::string_view value, uint32_t& mode);
// The real permission bits of an object of a layer applied unprivileged: the override's mode
// when its xattrs hold one, else the mode on disk. The override itself is removed from xattrs.
uint32_t take_override_mode(std::vector<std::pair<std::string, std::string>>& xattrs, uint32_t disk_mode);

// 16 random hex digits, for temporary names.
std::string random_suffix();

// ---- template implementation ----
namespace detail {
void prune_impl(int dirfd, const std::string& name, const std::string& what_path,
                bool (*keep)(void*, const std::string&), void* ctx);
}  // namespace detail

template <class Keep>
void prune_tree(int dirfd, const std::string& name, const std::string& what_path, Keep&& keep) {
  using K = std::remove_reference_t<Keep>;
  detail::prune_impl(
      dirfd, name, what_path,
      [](void* ctx, const std::string& rel) -> bool { return (*static_cast<K*>(ctx))(rel); },
      const_cast<void*>(static_cast<const void*>(&keep)));
}

}  // namespace rolayer::dirfs
