// SPDX-License-Identifier: Apache-2.0
#include "mount/mount.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/fault.h"
#include "drivers/dir/dir_driver.h"
#include "drivers/dir/dir_fs.h"

namespace rolayer::mount {

namespace {

using dirfs::Fd;
using dirfs::sys_error;

// Version 2 records are held by a store pin named kPinPrefix + the record's name; version 1
// records (written before pins) by a persistent reference, which umount still drops.
constexpr std::string_view kRecordMagic = "rolayer-mount-2";
constexpr std::string_view kRecordMagicV1 = "rolayer-mount-1";
constexpr std::string_view kPinPrefix = "mount:";

std::string pin_name(const std::string& key) { return std::string(kPinPrefix) + key; }
constexpr const char* kMountsDir = "mounts";
constexpr const char* kSource = "rolayer";

std::string canonical_root(Store& store) {
  char* rp = ::realpath(store.root().c_str(), nullptr);
  if (!rp) throw sys_error("cannot resolve store root", store.root(), errno);
  std::string r(rp);
  std::free(rp);
  return r;
}

Fd mounts_dir(Store& store, bool create) {
  std::string root = canonical_root(store);
  Fd rootfd = dirfs::open_dir(root);
  if (create && ::mkdirat(rootfd.get(), kMountsDir, 0700) != 0 && errno != EEXIST)
    throw sys_error("cannot create", root + "/" + kMountsDir, errno);
  Fd fd(::openat(rootfd.get(), kMountsDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid() && !(errno == ENOENT && !create)) throw sys_error("cannot open", root + "/" + kMountsDir, errno);
  return fd;
}

std::string key_of(const std::string& target) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : target) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string encode(const Record& r, pid_t pid) {
  std::string out(kRecordMagic);
  for (const std::string& f : {r.chain_id, r.target, std::to_string(r.mnt_id), std::to_string(pid)}) {
    out.push_back('\0');
    out += f;
  }
  out.push_back('\0');
  return out;
}

bool decode(const std::string& data, Record& r, pid_t& pid) {
  std::vector<std::string> f;
  size_t i = 0;
  while (i < data.size()) {
    size_t j = data.find('\0', i);
    if (j == std::string::npos) return false;
    f.push_back(data.substr(i, j - i));
    i = j + 1;
  }
  if (f.size() != 5 || (f[0] != kRecordMagic && f[0] != kRecordMagicV1) || f[2].empty() || f[2][0] != '/')
    return false;
  r.by_reference = f[0] == kRecordMagicV1;
  r.chain_id = f[1];
  r.target = f[2];
  char* end = nullptr;
  r.mnt_id = std::strtoull(f[3].c_str(), &end, 10);
  pid = static_cast<pid_t>(std::strtol(f[4].c_str(), nullptr, 10));
  return true;
}

std::string resolve_target(const std::string& target) {
  if (target.empty()) throw Error(Code::Inval, "empty mount target");
  char* rp = ::realpath(target.c_str(), nullptr);
  if (!rp) throw sys_error("cannot resolve mount target", target, errno);
  std::string t(rp);
  std::free(rp);
  return t;
}

// /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_octal(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; ++k) {
        if (s[i + k] < '0' || s[i + k] > '7') ok = false;
        else v = v * 8 + (s[i + k] - '0');
      }
      if (ok) {
        o.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    o.push_back(s[i]);
  }
  return o;
}

// True when target is an overlay mount of ours: the recorded mount id (when known) at that
// mount point, file system type overlay, source "rolayer".
bool is_our_mount(const Record& r) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devs, root, mp;
    if (!(ls >> id >> parent >> devs >> root >> mp)) continue;
    size_t sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream rs(line.substr(sep + 3));
    std::string fstype, source;
    rs >> fstype >> source;
    if (fstype != "overlay" || source != kSource || unescape_octal(mp) != r.target) continue;
    if (r.mnt_id == 0 || std::strtoull(id.c_str(), nullptr, 10) == r.mnt_id) return true;
  }
  return false;
}

uint64_t mount_id_of(const std::string& path) {
  struct statx sx;
  if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &sx) != 0 || !(sx.stx_mask & STATX_MNT_ID))
    return 0;
  return sx.stx_mnt_id;
}

std::string fs_error_log(int fs) {
  std::string out;
  char buf[512];
  for (int i = 0; i < 8; ++i) {
    ssize_t n = ::read(fs, buf, sizeof buf - 1);
    if (n <= 0) break;
    if (!out.empty()) out += "; ";
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

[[noreturn]] void mount_failed(const std::string& how, const std::string& target, int e, const std::string& log) {
  std::string msg = "cannot mount overlay (" + how + ") at " + target + ": " + std::strerror(e);
  if (!log.empty()) msg += " (" + log + ")";
  if (e == EPERM)
    msg += "; mounting needs CAP_SYS_ADMIN: run as root, or inside a user namespace that owns the mount "
           "namespace with a store written by that user";
  if (e == ENODEV) throw Error(Code::Unsupported, "the kernel has no overlay file system: " + msg);
  throw Error(Code::Io, msg).with_errno(e).with_path(target);
}

// The new mount API: one "lowerdir+" per layer, so any depth fits (no option page limit).
// Returns false (errno ENOSYS) when the kernel lacks fsopen or lowerdir+.
bool mount_new_api(const LowerDirs& ld, int target_fd, const std::string& target, unsigned flags) {
  try {
    ROLAYER_FAULT_POINT("mount.fsopen");  // tests: ROLAYER_FAULT_ERRNO=mount.fsopen=38 takes the fallback
  } catch (const Error& e) {
    if (e.sys_errno() == ENOSYS) return false;
    throw;
  }
  Fd fs(::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs.valid()) {
    if (errno == ENOSYS) return false;
    mount_failed("fsopen", target, errno, "");
  }
  if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "source", kSource, 0) != 0)
    mount_failed("fsconfig source", target, errno, fs_error_log(fs.get()));
  for (size_t i = 0; i < ld.dirs.size(); ++i) {
    if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "lowerdir+", ld.dirs[i].c_str(), 0) != 0) {
      int e = errno;
      std::string log = fs_error_log(fs.get());
      if (i == 0 && e == EINVAL && log.find("lowerdir+") != std::string::npos) return false;
      mount_failed("lowerdir+ " + ld.dirs[i], target, e, log);
    }
  }
  if (ld.userxattr && ::fsconfig(fs.get(), FSCONFIG_SET_FLAG, "userxattr", nullptr, 0) != 0)
    mount_failed("userxattr", target, errno, fs_error_log(fs.get()));
  if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    mount_failed("create", target, errno, fs_error_log(fs.get()));
  unsigned attr = MOUNT_ATTR_RDONLY;
  if (flags & kNoSuid) attr |= MOUNT_ATTR_NOSUID;
  if (flags & kNoDev) attr |= MOUNT_ATTR_NODEV;
  if (flags & kNoExec) attr |= MOUNT_ATTR_NOEXEC;
  Fd mnt(::fsmount(fs.get(), FSMOUNT_CLOEXEC, attr));
  if (!mnt.valid()) mount_failed("fsmount", target, errno, fs_error_log(fs.get()));
  if (::move_mount(mnt.get(), "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
    mount_failed("move_mount", target, errno, "");
  return true;
}

// mount(2): the layers as /proc/self/fd/N of descriptors opened here, so that the option
// string stays short (about 18 bytes a layer: 125 layers fit in one page).
void mount_legacy(const LowerDirs& ld, int target_fd, const std::string& target, unsigned flags) {
  std::vector<Fd> fds;
  std::string opt = "lowerdir=";
  for (size_t i = 0; i < ld.dirs.size(); ++i) {
    Fd fd(::open(ld.dirs[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) throw sys_error("cannot open layer directory", ld.dirs[i], errno);
    if (i) opt.push_back(':');
    opt += "/proc/self/fd/" + std::to_string(fd.get());
    fds.push_back(std::move(fd));
  }
  if (ld.userxattr) opt += ",userxattr";
  unsigned long mf = MS_RDONLY;
  if (flags & kNoSuid) mf |= MS_NOSUID;
  if (flags & kNoDev) mf |= MS_NODEV;
  if (flags & kNoExec) mf |= MS_NOEXEC;
  std::string tp = "/proc/self/fd/" + std::to_string(target_fd);
  if (::mount(kSource, tp.c_str(), "overlay", mf, opt.c_str()) != 0) mount_failed("mount(2)", target, errno, "");
}

}  // namespace

LowerDirs lower_dirs(Store& store, const std::string& chain_id) {
  if (store.driver_name() != "dir")
    throw Error(Code::Unsupported, "mounting needs the dir driver (this store uses '" + store.driver_name() + "')");
  auto ref = store.get(chain_id);
  std::string cache_id = ref->node().cache_id;
  Store::close_ref(*ref);
  DirDriver d;
  d.attach(store.root());
  LowerDirs out;
  out.dirs = d.lower_dirs(cache_id, &out.userxattr);
  if (out.dirs.size() == 1) out.dirs.push_back(d.empty_dir());  // overlay needs two lowers without an upper
  return out;
}

namespace {
// " by pid N (comm), ..." for up to three processes whose working directory, root or an open
// file is at or below target, as far as /proc lets this process see; "" when none is seen.
std::string users_of(const std::string& target) {
  auto below = [&](const std::string& p) {
    return p == target || (p.size() > target.size() && p.compare(0, target.size(), target) == 0 &&
                           p[target.size()] == '/');
  };
  auto link = [](const std::string& p) {
    char buf[4096];
    ssize_t n = ::readlink(p.c_str(), buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  };
  std::vector<std::string> found;
  size_t more = 0;
  DIR* proc = ::opendir("/proc");
  if (!proc) return "";
  while (dirent* de = ::readdir(proc)) {
    if (de->d_name[0] < '1' || de->d_name[0] > '9') continue;
    const std::string base = std::string("/proc/") + de->d_name;
    bool uses = below(link(base + "/cwd")) || below(link(base + "/root"));
    if (!uses) {
      if (DIR* fds = ::opendir((base + "/fd").c_str())) {
        while (dirent* fe = ::readdir(fds))
          if (fe->d_name[0] != '.' && below(link(base + "/fd/" + fe->d_name))) {
            uses = true;
            break;
          }
        ::closedir(fds);
      }
    }
    if (!uses) continue;
    if (found.size() == 3) {
      more++;
      continue;
    }
    std::string comm;
    if (FILE* c = std::fopen((base + "/comm").c_str(), "re")) {
      char buf[64] = {};
      if (std::fgets(buf, sizeof buf, c)) comm = buf;
      std::fclose(c);
    }
    while (!comm.empty() && (comm.back() == '\n' || comm.back() == '\r')) comm.pop_back();
    found.push_back(std::string(de->d_name) + (comm.empty() ? "" : " (" + comm + ")"));
  }
  ::closedir(proc);
  if (found.empty()) return "";
  std::string out = " by pid ";
  for (size_t i = 0; i < found.size(); ++i) out += (i ? ", " : "") + found[i];
  if (more) out += " and " + std::to_string(more) + " more";
  return out;
}

// Ends the hold of a removed record: its pin, or the persistent reference of a version 1 record.
void drop_hold(Store& store, const Record& r, const std::string& key) {
  if (!r.by_reference) {
    store.unpin(pin_name(key));
    return;
  }
  try {
    store.unretain(r.chain_id);
  } catch (const Error& e) {
    if (e.code() != Code::NotRetained && e.code() != Code::NotFound) throw;
  }
}
}  // namespace

void mount_chain(Store& store, const std::string& chain_id, const std::string& target_in, unsigned flags) {
  std::string target = resolve_target(target_in);
  Fd tfd(::open(target.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!tfd.valid()) throw sys_error("cannot open mount target", target, errno);
  LowerDirs ld = lower_dirs(store, chain_id);
  Fd mdir = mounts_dir(store, true);
  const std::string key = key_of(target);
  Record r{chain_id, target, 0, key};
  {
    std::string data;
    if (dirfs::read_file(mdir.get(), key, data, 1 << 16, key)) {
      Record old;
      pid_t pid = 0;
      if (decode(data, old, pid) && old.target == target)
        throw Error(Code::Busy, "layer " + old.chain_id + " is already mounted at " + target +
                                    " from this store (unmount it first: rolayer umount " + target + ")")
            .with_path(target);
    }
  }
  // The record first, then its pin: a crash in between leaves a record whose process is gone,
  // which reconcile drops (with the pin, if any).
  dirfs::write_file_atomic(mdir.get(), key, encode(r, ::getpid()), key);
  try {
    store.pin(pin_name(key), chain_id);
    ROLAYER_FAULT_POINT("mount.recorded");
    if (!mount_new_api(ld, tfd.get(), target, flags)) mount_legacy(ld, tfd.get(), target, flags);
    ROLAYER_FAULT_POINT("mount.mounted");
  } catch (...) {
    ::unlinkat(mdir.get(), key.c_str(), 0);
    try {
      store.unpin(pin_name(key));
    } catch (...) {
    }
    throw;
  }
  r.mnt_id = mount_id_of(target);
  dirfs::write_file_atomic(mdir.get(), key, encode(r, 0), key);
}

std::vector<Record> list(Store& store) {
  std::vector<Record> out;
  Fd mdir = mounts_dir(store, false);
  if (!mdir.valid()) return out;
  for (auto& [name, type] : dirfs::list_dir(mdir.get(), kMountsDir)) {
    if (name.empty() || name[0] == '.' || name.find(".tmp") != std::string::npos) continue;
    std::string data;
    Record r;
    pid_t pid = 0;
    if (!dirfs::read_file(mdir.get(), name, data, 1 << 16, name) || !decode(data, r, pid)) continue;
    r.file = name;
    out.push_back(std::move(r));
  }
  return out;
}

void umount(Store& store, const std::string& target_in) {
  std::string target = resolve_target(target_in);
  Fd mdir = mounts_dir(store, false);
  std::string key = key_of(target);
  std::string data;
  Record r;
  pid_t pid = 0;
  if (!mdir.valid() || !dirfs::read_file(mdir.get(), key, data, 1 << 16, key) || !decode(data, r, pid) ||
      r.target != target)
    throw Error(Code::NotFound, "no mount of this store at " + target).with_path(target);
  if (is_our_mount(r)) {
    if (::umount2(target.c_str(), UMOUNT_NOFOLLOW) != 0) {
      int e = errno;
      if (e == EBUSY)
        throw Error(Code::Busy, "cannot unmount " + target + ": it is busy (in use" + users_of(target) + ")")
            .with_path(target);
      throw sys_error("cannot unmount", target, e);
    }
  }
  if (::unlinkat(mdir.get(), key.c_str(), 0) != 0 && errno != ENOENT) throw sys_error("cannot remove mount record", key, errno);
  drop_hold(store, r, key);
}

std::vector<Record> reconcile(Store& store) {
  std::vector<Record> dropped;
  Fd mdir = mounts_dir(store, false);
  if (!mdir.valid()) return dropped;
  for (auto& [name, type] : dirfs::list_dir(mdir.get(), kMountsDir)) {
    if (name.empty() || name[0] == '.' || name.find(".tmp") != std::string::npos) continue;
    std::string data;
    Record r;
    pid_t pid = 0;
    if (!dirfs::read_file(mdir.get(), name, data, 1 << 16, name)) continue;
    if (!decode(data, r, pid)) continue;
    r.file = name;
    // Being mounted right now by a live process.
    if (r.mnt_id == 0 && pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM)) continue;
    if (is_our_mount(r)) continue;
    if (::unlinkat(mdir.get(), name.c_str(), 0) != 0) {
      if (errno == ENOENT) continue;  // another process dropped it first
      throw sys_error("cannot remove mount record", name, errno);
    }
    drop_hold(store, r, name);
    dropped.push_back(std::move(r));
  }
  // A pin whose record is gone (a crash between umount's two steps) holds nothing any more.
  // Records are written before their pins and removed before them, so a pin without a record
  // is never a mount being made.
  if (!store.read_only()) {
    for (const auto& [pin, chain] : store.pins(std::string(kPinPrefix))) {
      const std::string key = pin.substr(kPinPrefix.size());
      std::string data;
      if (!dirfs::read_file(mdir.get(), key, data, 1 << 16, key)) store.unpin(pin);
    }
  }
  return dropped;
}

}  // namespace rolayer::mount
