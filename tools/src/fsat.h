/* SPDX-License-Identifier: Apache-2.0 */
// File access beneath a verified directory descriptor, never following symbolic links.
//
// Everything the tool reads from an image directory (import DIR) and everything it writes into
// an image layout (export-image DIR) goes through these helpers: each path is walked one
// component at a time with openat(2) and O_NOFOLLOW, every directory is opened with
// O_DIRECTORY, and every file is checked to be a regular file (fstat) before a byte of it is
// read. A symbolic link, a device, a FIFO or a socket is an error that names the path inside the
// image and says what it is, and reveals nothing of a link's target.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace cli {

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// "a symbolic link", "a FIFO", "a block device", ... for a st_mode.
std::string file_kind(mode_t mode);

// Opens a directory the user named (following links in that path: the user chose it).
Fd open_user_dir(const std::string& path);

// What lookup_beneath found.
enum class Found { Missing, Regular, Directory, Other };

// Looks at REL (a relative path of '/'-separated components, no "..") beneath DIRFD without
// following any link. Missing when a component does not exist; Other (with *kind set) when the
// last component, or a directory component, is not what it must be.
Found lookup_beneath(int dirfd, const std::string& rel, std::string* kind = nullptr);

// Opens the directory REL beneath DIRFD (REL "" or "." is DIRFD itself, duplicated). Throws
// CliError(kBadInput) naming DISPLAY/REL when a component is a link or not a directory, and
// CliError(kNotFound) when one is missing.
Fd open_dir_beneath(int dirfd, const std::string& rel, const std::string& display);

// Opens the regular file REL beneath DIRFD for reading (O_NONBLOCK, so that a FIFO cannot make
// the open hang; cleared again for a regular file). Errors as open_dir_beneath.
Fd open_file_beneath(int dirfd, const std::string& rel, const std::string& display);

// Reads at most MAX bytes of the regular file REL beneath DIRFD (CliError(kBadInput) when larger).
std::string read_file_beneath(int dirfd, const std::string& rel, size_t max, const std::string& display);

// Makes (or opens) the directory NAME (one component) in DIRFD, mode 0755 & ~umask. An existing
// entry that is not a directory (a link, a file, a device) is refused with kBadInput. *created
// says whether it was made here.
Fd make_dir_at(int dirfd, const std::string& name, const std::string& display, bool* created);

// Writes NAME (one component) in DIRFD atomically: a temporary file ".NAME.rolayer-XXXXXX"
// created with O_EXCL|O_NOFOLLOW, written, fsynced, then renameat() over NAME. An existing NAME
// that is not a regular file (a link, a FIFO, a device, a directory) is refused with kBadInput
// before anything is written. Use begin/write/commit for streamed content.
class AtomicFileAt {
 public:
  AtomicFileAt(int dirfd, std::string name, std::string display);
  ~AtomicFileAt();  // not committed: the temporary file is removed
  AtomicFileAt(const AtomicFileAt&) = delete;
  AtomicFileAt& operator=(const AtomicFileAt&) = delete;
  void write(const void* data, size_t len);
  // Renames into place; *replaced says whether a file of that name was there before.
  void commit(bool* replaced = nullptr);

 private:
  int dirfd_;
  std::string name_, tmp_, display_;
  int fd_ = -1;
  bool committed_ = false;
};

void write_file_at(int dirfd, const std::string& name, const std::string& data, const std::string& display,
                   bool* replaced = nullptr);

}  // namespace cli
