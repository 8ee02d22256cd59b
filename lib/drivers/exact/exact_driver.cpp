// SPDX-License-Identifier: Apache-2.0
#include "drivers/exact/exact_driver.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fault.h"
#include "core/fs.h"

namespace rolayer {
namespace {

// Opens one of the driver's own files (the entry `name` of the directory dirfd; `file` is its
// path, for messages) for reading: without following a symlink, without blocking (a FIFO
// planted in its place would block open(2) forever), and only if it is a regular file (a FIFO or
// a device such as /dev/zero would give no end or an endless stream).
fs::Fd open_regular(int dirfd, const char* name, const std::string& file) {
  fs::Fd fd(::openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd) {
    if (errno == ENOENT) throw Error(Code::Corrupt, "the stored file " + file + " is missing").with_errno(ENOENT);
    if (errno == ELOOP)
      throw Error(Code::Corrupt, "the stored file " + file + " is a symbolic link: the layer store was modified")
          .with_errno(ELOOP)
          .with_path(file);
    throw_errno("open " + file);
  }
  struct stat sb;
  if (::fstat(fd.get(), &sb) != 0) throw_errno("stat " + file);
  if (!S_ISREG(sb.st_mode))
    throw Error(Code::Corrupt, "the stored file " + file + " is not a regular file: the layer store was modified")
        .with_path(file);
  // Back to blocking reads (O_NONBLOCK means nothing for a regular file, but say what we mean).
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl >= 0) (void)::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
  return fd;
}

const char* kind_of(const struct stat& st) {
  return S_ISLNK(st.st_mode) ? "a symbolic link" : "another kind of file";
}

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
      return false;
  return true;
}

class ExactDriver : public Driver {
 public:
  std::string name() const override { return "exact"; }
  DriverCaps caps() const override { return DriverCaps{true}; }

  std::vector<std::string> init(const std::string& store_root) override {
    base_ = store_root + "/exact";
    // The driver's folder: made private, its entry in the root made durable, never a link.
    if (::mkdir(base_.c_str(), 0700) == 0) {
      fs::fsync_dir(store_root);
    } else if (errno != EEXIST) {
      throw_errno("mkdir " + base_);
    }
    // From here on every path of the driver is opened relative to this descriptor, never by name.
    fs::Fd base(::open(base_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!base) {
      int e = errno;
      struct stat st;
      if ((e == ELOOP || e == ENOTDIR) && ::lstat(base_.c_str(), &st) == 0)
        throw Error(Code::Corrupt, "the store's own " + base_ + " is not a directory (" + kind_of(st) + ")")
            .with_path(base_);
      throw_errno("open " + base_, e);
    }
    basefd_ = std::move(base);
    std::vector<std::string> ids;
    int dupfd = ::fcntl(basefd_.get(), F_DUPFD_CLOEXEC, 0);
    if (dupfd < 0) throw_errno("dup " + base_);
    DIR* d = ::fdopendir(dupfd);
    if (!d) {
      int e = errno;
      ::close(dupfd);
      throw_errno("opendir " + base_, e);
    }
    while (struct dirent* de = ::readdir(d)) {
      if (de->d_name[0] == '.') continue;
      ids.emplace_back(de->d_name);
    }
    ::closedir(d);
    return ids;
  }

  void create(const std::string& id, const std::string& parent) override {
    check_id(id);
    std::string dir = shown(id);
    if (::mkdirat(basefd_.get(), id.c_str(), 0700) != 0) throw_errno("mkdir " + dir);
    fs::Fd dfd = open_layer(id);
    fs::write_file_atomic_at(dfd.get(), "parent", parent, dir + "/parent");
    ROLAYER_FAULT_POINT("fs.fsync");
    if (::fsync(basefd_.get()) != 0) throw_errno("fsync " + base_);  // the new layer directory's entry
  }

  void remove(const std::string& id) override {
    check_id(id);
    fs::remove_all_at(basefd_.get(), id);  // a planted link is unlinked, never followed
    ROLAYER_FAULT_POINT("fs.fsync");
    if (::fsync(basefd_.get()) != 0) throw_errno("fsync " + base_);
  }

  int64_t apply_diff(const std::string& id, const std::string&, ByteSource& tar) override {
    fs::Fd dfd = open_layer(id);
    std::string file = shown(id) + "/layer.tar";
    fs::Fd fd(::openat(dfd.get(), "layer.tar", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) {
      if (errno == ELOOP)
        throw Error(Code::Corrupt, "the stored file " + file + " is a symbolic link: the layer store was modified")
            .with_errno(ELOOP)
            .with_path(file);
      throw_errno("create " + file);
    }
    struct stat sb;
    if (::fstat(fd.get(), &sb) != 0) throw_errno("stat " + file);
    if (!S_ISREG(sb.st_mode))
      throw Error(Code::Corrupt, "the stored file " + file + " is not a regular file: the layer store was modified")
          .with_path(file);
    std::vector<uint8_t> buf(1 << 20);
    int64_t total = 0;
    for (;;) {
      size_t n = tar.read(buf.data(), buf.size());
      if (n == 0) break;
      fs::write_full(fd.get(), buf.data(), n);
      total += static_cast<int64_t>(n);
    }
    if (::fsync(fd.get()) != 0) throw_errno("fsync " + file);
    ROLAYER_FAULT_POINT("fs.fsync");
    if (::fsync(dfd.get()) != 0) throw_errno("fsync " + shown(id));  // and layer.tar's entry in it
    return total;
  }

  std::unique_ptr<ByteSource> diff(const std::string& id, const std::string& ancestor) override {
    fs::Fd dfd = open_layer(id);
    std::string parent = read_parent(id);
    if (ancestor != parent) {
      // Another ancestor of the layer (or the flattened chain): a diff this driver cannot make.
      // An ancestor its own records do not lead to: those records were changed.
      if (ancestor.empty())
        throw Error(Code::Unsupported, "the exact driver cannot flatten a chain; use the dir driver");
      for (std::string p = parent; !p.empty();) {
        if (p == ancestor)
          throw Error(Code::Unsupported,
                      "the exact driver only reproduces a layer's diff against its parent; use the dir driver for "
                      "diffs against other ancestors");
        try {
          p = read_parent(p);
        } catch (const Error&) {
          break;
        }
      }
      throw Error(Code::Corrupt, "the exact driver's record of the parent of layer " + id +
                                     " does not match the store: the layer store was modified");
    }
    fs::Fd fd = open_regular(dfd.get(), "layer.tar", shown(id) + "/layer.tar");
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    return std::make_unique<fs::FdSource>(std::move(fd));
  }

  std::unique_ptr<PayloadSession> payloads(const std::string&) override {
    throw Error(Code::Unsupported, "the exact driver keeps whole streams, not payloads");
  }

  std::vector<std::pair<std::string, std::string>> metadata(const std::string& id) override {
    return {{"Path", shown(id) + "/layer.tar"}};
  }

 private:
  std::string read_parent(const std::string& id) const {
    std::string file = shown(id) + "/parent";
    try {
      fs::Fd dfd = open_layer(id);
      fs::Fd fd = open_regular(dfd.get(), "parent", file);
      std::string out;
      uint8_t buf[4097];
      for (;;) {
        size_t n = fs::read_full(fd.get(), buf, sizeof buf);
        if (n == 0) break;
        if (out.size() + n > 4096) throw Error(Code::Corrupt, file + " is larger than expected");
        out.append(reinterpret_cast<char*>(buf), n);
      }
      return out;
    } catch (const Error& e) {
      if (e.sys_errno() == ENOENT)
        throw Error(Code::Corrupt, "the exact driver's data for layer " + id + " is missing (" + file +
                                       "): the layer store was modified")
            .with_errno(ENOENT);
      throw;
    }
  }
  void check_id(const std::string& id) const {
    if (!valid_id(id)) throw Error(Code::Inval, "invalid driver id \"" + id + "\"");
  }
  // The path of a layer's folder, for messages and metadata only (never opened by name).
  std::string shown(const std::string& id) const {
    check_id(id);
    return base_ + "/" + id;
  }
  // A layer's folder, opened beneath the driver's verified folder without following a link: a
  // link or another kind of file planted in its place is refused, whenever it was planted.
  fs::Fd open_layer(const std::string& id) const {
    std::string p = shown(id);
    fs::Fd fd(::openat(basefd_.get(), id.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd) return fd;
    int e = errno;
    if (e == ENOENT)
      throw Error(Code::Corrupt, "the exact driver's data for layer " + id + " is missing (" + p +
                                     "): the layer store was modified")
          .with_errno(ENOENT)
          .with_path(p);
    if (e == ELOOP || e == ENOTDIR) {
      // A link or another kind of file was there when it was opened (it may be gone since).
      struct stat st;
      std::string what = "a symbolic link or another kind of file";
      if (::fstatat(basefd_.get(), id.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
        what = kind_of(st);
      throw Error(Code::Corrupt, "the exact driver's " + p + " is not a directory (" + what +
                                     "): the layer store was modified")
          .with_errno(e)
          .with_path(p);
    }
    throw_errno("open " + p, e);
  }
  std::string base_;
  fs::Fd basefd_;
};

}  // namespace

std::unique_ptr<Driver> make_exact_driver() { return std::make_unique<ExactDriver>(); }

}  // namespace rolayer
