// SPDX-License-Identifier: Apache-2.0
#include "drivers/exact/exact_driver.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fs.h"

namespace rolayer {
namespace {

// Opens one of the driver's own files for reading: without following a symlink, without
// blocking (a FIFO planted in its place would block open(2) forever), and only if it is a
// regular file (a FIFO or a device such as /dev/zero would give no end or an endless stream).
fs::Fd open_regular(const std::string& file) {
  fs::Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
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
    struct stat st;
    if (::lstat(base_.c_str(), &st) != 0) throw_errno("stat " + base_);
    if (!S_ISDIR(st.st_mode))
      throw Error(Code::Corrupt, "the store's own " + base_ + " is not a directory (" +
                                     (S_ISLNK(st.st_mode) ? "a symbolic link" : "another kind of file") + ")")
          .with_path(base_);
    std::vector<std::string> ids;
    DIR* d = ::opendir(base_.c_str());
    if (!d) throw_errno("opendir " + base_);
    while (struct dirent* de = ::readdir(d)) {
      if (de->d_name[0] == '.') continue;
      ids.emplace_back(de->d_name);
    }
    ::closedir(d);
    return ids;
  }

  void create(const std::string& id, const std::string& parent) override {
    std::string dir = path(id);
    if (::mkdir(dir.c_str(), 0700) != 0) throw_errno("mkdir " + dir);
    fs::write_file_atomic(dir + "/parent", parent);
    fs::fsync_dir(base_);  // the new layer directory's entry survives a power loss
  }

  void remove(const std::string& id) override {
    if (!valid_id(id)) throw Error(Code::Inval, "invalid driver id \"" + id + "\"");
    fs::remove_all(base_ + "/" + id);  // a planted link is unlinked, never followed
    fs::fsync_dir(base_);
  }

  int64_t apply_diff(const std::string& id, const std::string&, ByteSource& tar) override {
    std::string file = path(id) + "/layer.tar";
    fs::Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) throw_errno("create " + file);
    std::vector<uint8_t> buf(1 << 20);
    int64_t total = 0;
    for (;;) {
      size_t n = tar.read(buf.data(), buf.size());
      if (n == 0) break;
      fs::write_full(fd.get(), buf.data(), n);
      total += static_cast<int64_t>(n);
    }
    if (::fsync(fd.get()) != 0) throw_errno("fsync " + file);
    fs::fsync_dir(path(id));  // and layer.tar's entry in it
    return total;
  }

  std::unique_ptr<ByteSource> diff(const std::string& id, const std::string& ancestor) override {
    std::string dir = path(id);
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
    std::string file = dir + "/layer.tar";
    fs::Fd fd = open_regular(file);
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    return std::make_unique<fs::FdSource>(std::move(fd));
  }

  std::unique_ptr<PayloadSession> payloads(const std::string&) override {
    throw Error(Code::Unsupported, "the exact driver keeps whole streams, not payloads");
  }

  std::vector<std::pair<std::string, std::string>> metadata(const std::string& id) override {
    return {{"Path", path(id) + "/layer.tar"}};
  }

 private:
  std::string read_parent(const std::string& id) const {
    std::string file = path(id) + "/parent";
    try {
      fs::Fd fd = open_regular(file);
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
  std::string path(const std::string& id) const {
    if (!valid_id(id)) throw Error(Code::Inval, "invalid driver id \"" + id + "\"");
    std::string p = base_ + "/" + id;
    // A layer's folder is what the driver made: a link planted in its place is not followed.
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      throw Error(Code::Corrupt, "the exact driver's " + p + " is not a directory (" +
                                     (S_ISLNK(st.st_mode) ? "a symbolic link" : "another kind of file") +
                                     "): the layer store was modified")
          .with_path(p);
    return p;
  }
  std::string base_;
};

}  // namespace

std::unique_ptr<Driver> make_exact_driver() { return std::make_unique<ExactDriver>(); }

}  // namespace rolayer
