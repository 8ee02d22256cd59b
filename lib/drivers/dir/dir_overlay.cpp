// SPDX-License-Identifier: Apache-2.0
#include "drivers/dir/dir_overlay.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <dirent.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "core/error.h"
#include "drivers/dir/dir_fs.h"

namespace rolayer::dirdrv {

using dirfs::Fd;
using dirfs::sys_error;
using dirfs::list_xattrs_raw_at;
using dirfs::list_xattrs_raw_fd;
using dirfs::escape_xattr_name;
using dirfs::unescape_xattr_name;
using Xattrs = std::vector<std::pair<std::string, std::string>>;

namespace {

bool in_initial_userns() {
  FILE* f = std::fopen("/proc/self/uid_map", "re");
  if (!f) return true;  // no user namespaces at all
  unsigned long a = 1, b = 1, c = 0;
  int n = std::fscanf(f, "%lu %lu %lu", &a, &b, &c);
  std::fclose(f);
  return n == 3 && a == 0 && b == 0 && c == 4294967295UL;
}

const char* opaque_name(OverlayForm f) {
  return f == OverlayForm::Trusted ? "trusted.overlay.opaque" : "user.overlay.opaque";
}

Fd open_dir_beneath(int root, const std::string& rel) {
  if (rel.empty()) return Fd(::openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  return dirfs::open_beneath(root, rel, O_RDONLY | O_DIRECTORY);
}

void set_attr(int fd, const char* name, const char* value, const std::string& what) {
  if (::fsetxattr(fd, name, value, std::strlen(value), 0) != 0)
    throw sys_error(std::string("cannot set the overlay attribute ") + name + " on", what, errno);
}

}  // namespace

OverlayForm current_form() {
  static const OverlayForm f =
      (::geteuid() == 0 && in_initial_userns()) ? OverlayForm::Trusted : OverlayForm::User;
  return f;
}

const char* form_name(OverlayForm f) { return f == OverlayForm::Trusted ? "trusted" : "user"; }

bool is_whiteout_object(int dirfd, const std::string& name) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
  if (S_ISCHR(st.st_mode)) return st.st_rdev == makedev(0, 0);
  if (!S_ISREG(st.st_mode) || st.st_size != 0) return false;
  Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return false;
  return ::fgetxattr(fd.get(), "user.overlay.whiteout", nullptr, 0) >= 0 ||
         ::fgetxattr(fd.get(), "trusted.overlay.whiteout", nullptr, 0) >= 0;
}

bool is_chr00_placeholder(int fd) { return ::fgetxattr(fd, kChr00Xattr, nullptr, 0) >= 0; }

void materialize_overlay(const LayerPaths& layer, const LayerCuts& cuts, OverlayForm form) {
  if (cuts.whiteouts.empty() && cuts.opaque.empty()) return;
  Fd diff = open_layer_dir(layer, layer.diff);
  // Directories of this layer that hide what is below them.
  std::set<std::string> opaque;
  for (auto& o : cuts.opaque) opaque.insert(o);
  std::set<std::string> whiteouts(cuts.whiteouts.begin(), cuts.whiteouts.end());
  std::set<std::string> objects;  // whiteouts with nothing of this layer at their path
  for (auto& w : whiteouts) {
    Fd parent = open_dir_beneath(diff.get(), std::string(dirfs::dir_of(w)));
    if (!parent.valid()) continue;  // a non-directory of this layer above it shadows it anyway
    struct stat st;
    std::string base(dirfs::base_of(w));
    if (::fstatat(parent.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISDIR(st.st_mode)) opaque.insert(w);  // re-created directory: lower content hidden
      continue;
    }
    if (errno != ENOENT) throw sys_error("cannot stat", layer.diff + "/" + w, errno);
    objects.insert(w);
  }
  for (auto& o : opaque) {
    Fd d = open_dir_beneath(diff.get(), o);
    if (!d.valid()) continue;
    set_attr(d.get(), opaque_name(form), "y", layer.diff + "/" + o);
  }
  for (auto& w : objects) {
    std::string pdir(dirfs::dir_of(w));
    // xattr whiteouts in an opaque directory would show as files and hide nothing more.
    if (form == OverlayForm::User && opaque.count(pdir)) continue;
    Fd parent = open_dir_beneath(diff.get(), pdir);
    if (!parent.valid()) continue;
    struct stat pst;
    if (::fstat(parent.get(), &pst) != 0) throw sys_error("cannot stat", layer.diff + "/" + pdir, errno);
    std::string base(dirfs::base_of(w));
    std::string what = layer.diff + "/" + w;
    if (form == OverlayForm::Trusted) {
      if (::mknodat(parent.get(), base.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0 && errno != EEXIST)
        throw sys_error("cannot create whiteout", what, errno);
    } else {
      Fd f(::openat(parent.get(), base.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!f.valid()) throw sys_error("cannot create whiteout", what, errno);
      set_attr(f.get(), "user.overlay.whiteout", "y", what);
      std::string v;
      if (::fgetxattr(parent.get(), "user.overlay.opaque", nullptr, 0) < 0)
        set_attr(parent.get(), "user.overlay.opaque", "x", layer.diff + "/" + pdir);
    }
    struct timespec ts[2] = {pst.st_atim, pst.st_mtim};
    if (::futimens(parent.get(), ts) != 0) throw sys_error("cannot set times", layer.diff + "/" + pdir, errno);
  }
}

void write_overlay_marker(int meta_fd, const LayerPaths& layer, OverlayForm form) {
  std::string data(kOverlayMagic);
  data.push_back('\0');
  data += form_name(form);
  data.push_back('\0');
  dirfs::write_file_atomic(meta_fd, kOverlayFile, data, layer.meta + "/" + kOverlayFile);
}

std::optional<OverlayForm> read_overlay_marker(const LayerPaths& layer) {
  Fd meta = open_layer_dir(layer, layer.meta);
  std::string data;
  std::string what = layer.meta + "/" + kOverlayFile;
  if (!dirfs::read_file(meta.get(), kOverlayFile, data, 4096, what)) return std::nullopt;
  std::string want(kOverlayMagic);
  want.push_back('\0');
  if (data == want + "trusted" + std::string(1, '\0')) return OverlayForm::Trusted;
  if (data == want + "user" + std::string(1, '\0')) return OverlayForm::User;
  throw Error(Code::Corrupt, "invalid overlay record: " + what).with_path(what);
}

namespace {

// Version-1 trees stored a layer's attributes under their own names and its 0/0 devices as
// devices: escape them (escape_xattr_name, the chr00 placeholder). Each step can be repeated:
// an attribute is set under its escaped name before the original goes; a device is replaced
// by renaming a complete placeholder over it. A 0/0 device at a recorded whiteout path is left
// alone (a whiteout object of an interrupted earlier run).
void escape_tree(const LayerPaths& layer, const LayerCuts& cuts) {
  struct Level {
    Fd fd;
    std::string rel;
  };
  std::vector<Level> todo;
  todo.push_back(Level{open_layer_dir(layer, layer.diff), std::string()});
  while (!todo.empty()) {
    Level lv = std::move(todo.back());
    todo.pop_back();
    const std::string what_dir = layer.diff + "/" + lv.rel;
    {  // the directory's own attributes
      for (auto& [k, v] : list_xattrs_raw_fd(lv.fd.get())) {
        std::string e = escape_xattr_name(k);
        if (e == k) continue;
        dirfs::set_xattrs_fd(lv.fd.get(), {{k, v}}, what_dir);
        if (::fremovexattr(lv.fd.get(), k.c_str()) != 0 && errno != ENODATA)
          throw sys_error("cannot remove extended attribute " + k + " of", what_dir, errno);
      }
    }
    for (auto& [name, type] : dirfs::list_dir(lv.fd.get(), what_dir)) {
      std::string rel = dirfs::join(lv.rel, name);
      std::string what = layer.diff + "/" + rel;
      if (type == DT_DIR) {
        Fd sub(::openat(lv.fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub.valid()) throw sys_error("cannot open directory", what, errno);
        todo.push_back(Level{std::move(sub), rel});
        continue;
      }
      struct stat st;
      if (::fstatat(lv.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) throw sys_error("cannot stat", what, errno);
      std::string proc = "/proc/self/fd/" + std::to_string(lv.fd.get()) + "/" + name;
      auto raw = list_xattrs_raw_at(lv.fd.get(), name);
      if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0) && !cuts.whiteouts.count(rel)) {
        struct stat pst;  // the directory's times are the layer's: kept
        if (::fstat(lv.fd.get(), &pst) != 0) throw sys_error("cannot stat", what_dir, errno);
        std::string tmp = ".rolayer-migrate-" + dirfs::random_suffix();
        Fd f(::openat(lv.fd.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!f.valid()) throw sys_error("cannot create", layer.diff + "/" + tmp, errno);
        try {
          if (::fsetxattr(f.get(), kChr00Xattr, "", 0, 0) != 0) throw sys_error("cannot mark", what, errno);
          dirfs::set_xattrs_fd(f.get(), raw, what, true);  // the layer's, stored escaped
          if (::fchown(f.get(), st.st_uid, st.st_gid) != 0 && ::geteuid() == 0) throw sys_error("cannot chown", what, errno);
          if (::fchmod(f.get(), st.st_mode & 07777) != 0) throw sys_error("cannot chmod", what, errno);
          struct timespec ts[2] = {st.st_atim, st.st_mtim};
          if (::futimens(f.get(), ts) != 0) throw sys_error("cannot set times", what, errno);
          if (::renameat(lv.fd.get(), tmp.c_str(), lv.fd.get(), name.c_str()) != 0)
            throw sys_error("cannot replace", what, errno);
          struct timespec pts[2] = {pst.st_atim, pst.st_mtim};
          if (::futimens(lv.fd.get(), pts) != 0) throw sys_error("cannot set times", what_dir, errno);
        } catch (...) {
          ::unlinkat(lv.fd.get(), tmp.c_str(), 0);
          throw;
        }
        continue;
      }
      for (auto& [k, v] : raw) {
        std::string e = escape_xattr_name(k);
        if (e == k) continue;
        dirfs::set_xattrs_at(lv.fd.get(), name, {{k, v}}, proc, what);
        if (::lremovexattr(proc.c_str(), k.c_str()) != 0 && errno != ENODATA)
          throw sys_error("cannot remove extended attribute " + k + " of", what, errno);
      }
    }
  }
}

}  // namespace

void migrate_layer(const LayerPaths& layer) {
  if (read_overlay_marker(layer)) return;
  LayerCuts cuts;
  cuts.load(layer);
  OverlayForm form = current_form();
  // Opened before any change: syncfs reports the write-back errors since its descriptor opened.
  Fd dir = open_layer_dir(layer, layer.dir);
  escape_tree(layer, cuts);
  materialize_overlay(layer, cuts, form);
  if (::syncfs(dir.get()) != 0) throw sys_error("syncfs failed for", layer.dir, errno);
  Fd meta = open_layer_dir(layer, layer.meta);
  write_overlay_marker(meta.get(), layer, form);
}

}  // namespace rolayer::dirdrv
