// SPDX-License-Identifier: Apache-2.0
// diff() of the "dir" driver: a tar (libarchive, PAX restricted) of the merged view of a range
// of layers, produced incrementally as the consumer reads.
//
// Merge rules (overlayfs-like): for each path the topmost layer of the range that has it
// provides it; a directory merges with the directories below it until a layer hides them
// (a whiteout of the path or an ancestor, an opaque directory, or a non-directory at that
// path). Against an ancestor, deletions are emitted as "<dir>/.wh.<name>" and a directory whose
// lower content is hidden (opaque, or re-created after a deletion or over a non-directory) as
// "<dir>/" followed by "<dir>/.wh..wh..opq". For the whole chain (ancestor "") nothing is
// emitted for deletions: they are just applied.
//
// Order: depth first; within a directory, children sorted bytewise by name (a deletion sorts
// at the name it deletes); a directory's opaque marker comes right after the directory.
// Files with several links inside the output are emitted once, then as hard-link entries.
// Sparse files (holes found with SEEK_HOLE) are written as PAX sparse entries.
// Whiteout entries: empty regular files, mode 0, owner 0:0, mtime 0 (deterministic).
// Extended attributes are exported except "security.selinux" (a host label).
//
// Memory: a pull stream. Output is produced one step at a time (one header, or one 256 KiB
// chunk of file data, or up to 1 MiB of hole) into a buffer that the reader drains, so a
// step's output is all that is buffered. State kept: the whiteout/opaque records of the range
// (loaded once; O(records)), the sorted child list of each directory on the current path
// (O(entries of those directories)), and the first path of each multiply-linked file emitted
// (O(such files)). Descriptors: one per layer of the range plus one per layer for the current
// directory.
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "core/error.h"
#include "drivers/dir/dir_fs.h"
#include "drivers/dir/dir_internal.h"
#include "drivers/dir/dir_overlay.h"
#include "tar/path.h"
#include "tar/scanner.h"

namespace rolayer::dirdrv {

namespace {

using dirfs::Fd;
using dirfs::sys_error;

constexpr size_t kChunk = 256 * 1024;
constexpr size_t kZeroLen = 1 << 20;
const uint8_t kZeros[kZeroLen] = {};

struct ExportLayer {
  LayerPaths paths;
  LayerCuts cuts;
  Fd root;
};

struct Child {
  enum Kind : uint8_t { Entry, Dir, Whiteout };
  std::string name;
  Kind kind = Entry;
  bool cut = false;     // Dir: nothing below the range (or below a cut) shows through
  bool opaque = false;  // Dir: emit an opaque marker
  uint16_t provider = 0;
  std::vector<uint16_t> parts;  // Dir: the layers whose content and records apply inside it
};

struct Frame {
  std::string path;
  std::vector<Child> children;
  size_t next = 0;
};

class DiffStream final : public ByteSource {
 public:
  DiffStream(std::vector<LayerPaths> range, bool emit_whiteouts) : emit_whiteouts_(emit_whiteouts) {
    if (range.size() > 0xFFFF) throw Error(Code::Inval, "layer range too long");
    layers_.resize(range.size());
    for (size_t i = 0; i < range.size(); ++i) {
      layers_[i].paths = std::move(range[i]);
      layers_[i].cuts.load(layers_[i].paths);
      layers_[i].root = open_layer_dir(layers_[i].paths, layers_[i].paths.diff, true);
    }
    cache_.resize(layers_.size());
    w_ = archive_write_new();
    if (!w_) throw Error(Code::NoMem, "archive_write_new failed");
    if (archive_write_set_format_pax_restricted(w_) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(w_, 0) != ARCHIVE_OK ||
        archive_write_open(w_, this, nullptr, &DiffStream::write_cb, nullptr) != ARCHIVE_OK) {
      std::string m = archive_error_string(w_) ? archive_error_string(w_) : "";
      archive_write_free(w_);
      w_ = nullptr;
      throw Error(Code::Io, "cannot start tar writer: " + m);
    }
  }

  ~DiffStream() override {
    if (w_) {
      // Closing pads the entry being written with zeros and adds the end-of-archive blocks:
      // discarded, costing CPU for the rest of that one entry only. (archive_write_fail would
      // skip that but leaks libarchive's client filter in 3.6.)
      discard_ = true;
      archive_write_free(w_);
    }
  }

  size_t read(uint8_t* buf, size_t cap) override {
    if (cap == 0) return 0;
    while (out_pos_ >= out_.size()) {
      out_.clear();
      out_pos_ = 0;
      if (state_ == State::Done) return 0;
      if (failed_) throw Error(Code::Io, "layer diff stream failed earlier");
      try {
        step();
      } catch (...) {
        failed_ = true;
        throw;
      }
    }
    size_t n = std::min(cap, out_.size() - out_pos_);
    std::memcpy(buf, out_.data() + out_pos_, n);
    out_pos_ += n;
    return n;
  }

 private:
  enum class State { Start, Walk, Data, Done };

  static la_ssize_t write_cb(archive*, void* ctx, const void* buf, size_t len) {
    auto* self = static_cast<DiffStream*>(ctx);
    if (!self->discard_) self->out_.append(static_cast<const char*>(buf), len);
    return static_cast<la_ssize_t>(len);
  }

  [[noreturn]] void throw_la(const std::string& what, const std::string& path) {
    const char* m = archive_error_string(w_);
    throw Error(Code::Io, what + " '" + path + "': " + (m ? m : "libarchive error")).with_path(path);
  }

  void clear_cache() {
    for (auto& f : cache_) f.reset();
  }

  int dir_fd(uint16_t layer) {
    Fd& f = cache_[layer];
    if (!f.valid()) {
      const std::string& p = stack_.back().path;
      f = dirfs::open_beneath(layers_[layer].root.get(), p, O_RDONLY | O_DIRECTORY);
      if (!f.valid()) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
          throw Error(Code::Corrupt, "storage of layer " + layers_[layer].paths.id + " changed during export: " +
                                         layers_[layer].paths.diff + "/" + p + " is missing")
              .with_path(layers_[layer].paths.diff + "/" + p);
        throw sys_error("cannot open layer directory", layers_[layer].paths.diff + "/" + p, errno);
      }
    }
    return f.get();
  }

  void step() {
    switch (state_) {
      case State::Start:
        start();
        state_ = State::Walk;
        return;
      case State::Data:
        pump_data();
        return;
      case State::Done:
        return;
      case State::Walk:
        break;
    }
    if (stack_.empty()) {
      if (archive_write_close(w_) != ARCHIVE_OK) throw_la("cannot finish tar", "");
      state_ = State::Done;
      return;
    }
    Frame& f = stack_.back();
    if (f.next == f.children.size()) {
      stack_.pop_back();
      clear_cache();
      return;
    }
    Child c = std::move(f.children[f.next++]);
    std::string dir = f.path;  // `f` may move when a frame is pushed
    std::string cp = dirfs::join(dir, c.name);
    switch (c.kind) {
      case Child::Whiteout:
        emit_marker(dirfs::join(dir, std::string(tar::kWhiteoutPrefix) + c.name));
        break;
      case Child::Entry:
        emit_node(c.provider, dir, c.name, false);
        break;
      case Child::Dir: {
        Fd dfd = emit_node(c.provider, dir, c.name, true);
        if (c.opaque) emit_marker(dirfs::join(cp, tar::kOpaqueWhiteout));
        push_frame(cp, std::move(c.parts), c.cut, c.provider, std::move(dfd));
        break;
      }
    }
  }

  void start() {
    std::vector<uint16_t> parts;
    bool root_cut = !emit_whiteouts_;
    bool root_opaque = false;
    for (size_t i = 0; i < layers_.size(); ++i) {
      parts.push_back(static_cast<uint16_t>(i));
      if (layers_[i].cuts.opaque.count(std::string())) {
        root_opaque = true;
        break;
      }
    }
    if (root_opaque && !root_cut) {
      emit_marker(std::string(tar::kOpaqueWhiteout));
      root_cut = true;
    }
    push_frame("", std::move(parts), root_cut);
  }

  // Lists `path` in every participating layer and resolves each child. `opened`, when valid, is
  // `path` in layer `opened_layer`, just opened (O_RDONLY, offset 0) by emit_node.
  void push_frame(const std::string& path, std::vector<uint16_t> parts, bool cut,
                  uint16_t opened_layer = 0, Fd opened = Fd()) {
    clear_cache();
    std::vector<Fd> fds(layers_.size());
    std::unordered_map<std::string, std::vector<std::pair<uint16_t, bool>>> names;
    for (uint16_t l : parts) {
      Fd fd;
      if (opened.valid() && l == opened_layer) {
        fd = std::move(opened);
      } else {
        fd = dirfs::open_beneath(layers_[l].root.get(), path, O_RDONLY | O_DIRECTORY);
      }
      if (!fd.valid()) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;
        throw sys_error("cannot open layer directory", layers_[l].paths.diff + "/" + path, errno);
      }
      // The fd is new and serves only as a base for *at calls: list it in place.
      const auto& wo = layers_[l].cuts.whiteouts;
      for (auto& [n, t] : dirfs::list_dir_fd(fd.get(), layers_[l].paths.diff + "/" + path)) {
        // A whiteout object of the overlay-ready tree is a deletion (in the records), not an entry.
        if (t != DT_DIR && !wo.empty() && wo.count(dirfs::join(path, n)) && is_whiteout_object(fd.get(), n))
          continue;
        bool is_dir = t == DT_DIR;
        if (t == DT_UNKNOWN) {
          struct stat st;
          if (::fstatat(fd.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
          is_dir = S_ISDIR(st.st_mode);
        }
        names[n].emplace_back(l, is_dir);
      }
      fds[l] = std::move(fd);
    }
    if (emit_whiteouts_ && !cut) {
      for (uint16_t l : parts) {
        auto it = layers_[l].cuts.whiteout_children.find(path);
        if (it == layers_[l].cuts.whiteout_children.end()) continue;
        for (auto& n : it->second) names[n];
      }
    }
    std::vector<std::string> keys;
    keys.reserve(names.size());
    for (auto& kv : names) keys.push_back(kv.first);
    std::sort(keys.begin(), keys.end());

    Frame fr;
    fr.path = path;
    for (auto& key : keys) {
      const auto& pres = names[key];
      std::string cp = dirfs::join(path, key);
      int provider = -1;
      bool pdir = false, c = false;
      std::vector<uint16_t> cparts;
      size_t pi = 0;
      for (uint16_t l : parts) {
        const std::pair<uint16_t, bool>* p = nullptr;
        if (pi < pres.size() && pres[pi].first == l) p = &pres[pi++];
        if (p) {
          if (provider < 0) {
            provider = l;
            pdir = p->second;
            if (!pdir) break;  // a non-directory shadows everything below
            cparts.push_back(l);
          } else if (p->second) {
            cparts.push_back(l);
          } else {
            c = true;  // a non-directory below the directory: it and what is below are hidden
            break;
          }
        } else if (provider < 0 || pdir) {
          cparts.push_back(l);  // no content here, but its records may hide deeper paths
        }
        if (layers_[l].cuts.whiteouts.count(cp) || layers_[l].cuts.opaque.count(cp)) {
          c = true;
          break;
        }
      }
      Child ch;
      ch.name = key;
      if (provider < 0) {
        if (!(emit_whiteouts_ && !cut && c)) continue;
        ch.kind = Child::Whiteout;
      } else if (!pdir) {
        ch.kind = Child::Entry;
        ch.provider = static_cast<uint16_t>(provider);
      } else {
        ch.kind = Child::Dir;
        ch.provider = static_cast<uint16_t>(provider);
        ch.cut = cut || c;
        ch.opaque = emit_whiteouts_ && !cut && c;
        ch.parts = std::move(cparts);
      }
      fr.children.push_back(std::move(ch));
    }
    stack_.push_back(std::move(fr));
    for (size_t i = 0; i < fds.size(); ++i) cache_[i] = std::move(fds[i]);
  }

  void write_header(archive_entry* ae, const std::string& path) {
    int r = archive_write_header(w_, ae);
    if (r < ARCHIVE_WARN) throw_la("cannot write tar header for", path);
  }

  void emit_marker(const std::string& path) {
    EntryHolder ae;
    archive_entry_set_pathname(ae.get(), path.c_str());
    archive_entry_set_filetype(ae.get(), AE_IFREG);
    archive_entry_set_perm(ae.get(), 0);
    archive_entry_set_size(ae.get(), 0);
    archive_entry_set_uid(ae.get(), 0);
    archive_entry_set_gid(ae.get(), 0);
    archive_entry_set_mtime(ae.get(), 0, 0);
    write_header(ae.get(), path);
    if (archive_write_finish_entry(w_) < ARCHIVE_WARN) throw_la("cannot write tar entry", path);
  }

  static void add_xattrs(archive_entry* ae, const std::vector<std::pair<std::string, std::string>>& xs) {
    for (auto& [k, v] : xs) {
      if (k == "security.selinux") continue;
      archive_entry_xattr_add_entry(ae, k.c_str(), v.data(), v.size());
    }
  }

  // A layer applied unprivileged keeps owner access on disk and the real mode of an object in
  // the store's override_stat attribute: the entry takes that mode, and the attribute (the
  // store's, not the layer's) is not exported.
  void add_meta_xattrs(archive_entry* ae, uint16_t layer, std::vector<std::pair<std::string, std::string>> xs,
                       const struct stat& st) {
    if (layers_[layer].cuts.override_stat)
      archive_entry_set_perm(ae, dirfs::take_override_mode(xs, st.st_mode & 07777));
    add_xattrs(ae, xs);
  }

  // For a directory, returns it opened (O_RDONLY, offset 0) when it could be, for push_frame.
  Fd emit_node(uint16_t layer, const std::string& dir, const std::string& name, bool is_dir) {
    int dfd = dir_fd(layer);
    std::string path = dirfs::join(dir, name);
    struct stat st;
    if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT)
        throw Error(Code::Corrupt, "storage of layer " + layers_[layer].paths.id + " changed during export: " +
                                       layers_[layer].paths.diff + "/" + path + " is missing")
            .with_path(layers_[layer].paths.diff + "/" + path);
      throw sys_error("cannot stat", layers_[layer].paths.diff + "/" + path, errno);
    }
    if (S_ISDIR(st.st_mode) != is_dir)
      throw Error(Code::Io, "layer file changed during export: " + path).with_path(path);
    if (S_ISSOCK(st.st_mode)) return Fd();  // not representable in tar
    EntryHolder ae;
    archive_entry_set_pathname(ae.get(), is_dir ? (path + "/").c_str() : path.c_str());
    archive_entry_set_perm(ae.get(), st.st_mode & 07777);
    archive_entry_set_uid(ae.get(), st.st_uid);
    archive_entry_set_gid(ae.get(), st.st_gid);
    archive_entry_set_mtime(ae.get(), st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    archive_entry_set_size(ae.get(), 0);

    if (is_dir) {
      archive_entry_set_filetype(ae.get(), AE_IFDIR);
      Fd fd(::openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (fd.valid()) add_meta_xattrs(ae.get(), layer, dirfs::list_xattrs_fd(fd.get()), st);
      write_header(ae.get(), path);
      if (archive_write_finish_entry(w_) < ARCHIVE_WARN) throw_la("cannot write tar entry", path);
      return fd;
    }

    archive_entry_set_filetype(ae.get(), st.st_mode & S_IFMT);
    if (st.st_nlink > 1) {
      auto key = std::make_pair(static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino));
      auto it = links_.find(key);
      if (it != links_.end()) {
        archive_entry_set_hardlink(ae.get(), it->second.c_str());
        write_header(ae.get(), path);
        if (archive_write_finish_entry(w_) < ARCHIVE_WARN) throw_la("cannot write tar entry", path);
        return Fd();
      }
      links_.emplace(key, path);
    }

    if (S_ISREG(st.st_mode)) {
      Fd fd(::openat(dfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
      if (!fd.valid()) throw sys_error("cannot open layer file", layers_[layer].paths.diff + "/" + path, errno);
      struct stat st2;
      if (::fstat(fd.get(), &st2) != 0 || st2.st_ino != st.st_ino || !S_ISREG(st2.st_mode))
        throw Error(Code::Io, "layer file changed during export: " + path).with_path(path);
      add_meta_xattrs(ae.get(), layer, dirfs::list_xattrs_fd(fd.get()), st);
      if (st.st_size == 0 && is_chr00_placeholder(fd.get())) {  // the layer's 0/0 character device
        archive_entry_set_filetype(ae.get(), AE_IFCHR);
        archive_entry_set_rdevmajor(ae.get(), 0);
        archive_entry_set_rdevminor(ae.get(), 0);
        write_header(ae.get(), path);
        if (archive_write_finish_entry(w_) < ARCHIVE_WARN) throw_la("cannot write tar entry", path);
        return Fd();
      }
      uint64_t size = static_cast<uint64_t>(st.st_size);
      archive_entry_set_size(ae.get(), static_cast<la_int64_t>(size));
      segs_.clear();
      sparse_ = dirfs::data_segments(fd.get(), size, tar::kMaxSparseFragments, segs_, &st2);
      if (sparse_) {
        for (auto& [o, l] : segs_)
          archive_entry_sparse_add_entry(ae.get(), static_cast<la_int64_t>(o), static_cast<la_int64_t>(l));
      }
      write_header(ae.get(), path);
      data_fd_ = std::move(fd);
      data_path_ = path;
      data_size_ = size;
      data_off_ = 0;
      seg_i_ = 0;
      state_ = State::Data;
      return Fd();
    }
    if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      for (;;) {
        ssize_t n = ::readlinkat(dfd, name.c_str(), target.data(), target.size());
        if (n < 0) throw sys_error("cannot read link", layers_[layer].paths.diff + "/" + path, errno);
        if (static_cast<size_t>(n) < target.size()) {
          target.resize(static_cast<size_t>(n));
          break;
        }
        target.resize(target.size() * 2);
      }
      archive_entry_set_symlink(ae.get(), target.c_str());
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      archive_entry_set_rdevmajor(ae.get(), major(st.st_rdev));
      archive_entry_set_rdevminor(ae.get(), minor(st.st_rdev));
    }
    add_meta_xattrs(ae.get(), layer, dirfs::list_xattrs_at(dfd, name), st);
    write_header(ae.get(), path);
    if (archive_write_finish_entry(w_) < ARCHIVE_WARN) throw_la("cannot write tar entry", path);
    return Fd();
  }

  void pump_data() {
    if (data_off_ >= data_size_) {
      if (archive_write_finish_entry(w_) < ARCHIVE_WARN) throw_la("cannot write tar entry", data_path_);
      data_fd_.reset();
      state_ = State::Walk;
      return;
    }
    uint64_t left = data_size_ - data_off_;
    bool hole = false;
    uint64_t n = std::min<uint64_t>(left, kChunk);
    if (sparse_) {
      while (seg_i_ < segs_.size() && segs_[seg_i_].first + segs_[seg_i_].second <= data_off_) ++seg_i_;
      if (seg_i_ < segs_.size() && segs_[seg_i_].first <= data_off_) {
        n = std::min<uint64_t>(n, segs_[seg_i_].first + segs_[seg_i_].second - data_off_);
      } else {
        uint64_t hole_end = seg_i_ < segs_.size() ? segs_[seg_i_].first : data_size_;
        n = std::min<uint64_t>(hole_end - data_off_, kZeroLen);
        hole = true;
      }
    }
    const void* src = kZeros;
    if (!hole) {
      chunk_.resize(kChunk);
      size_t got = 0;
      while (got < n) {
        ssize_t r = ::pread(data_fd_.get(), chunk_.data() + got, static_cast<size_t>(n) - got,
                            static_cast<off_t>(data_off_ + got));
        if (r < 0) {
          if (errno == EINTR) continue;
          throw sys_error("cannot read layer file", data_path_, errno);
        }
        if (r == 0) throw Error(Code::Io, "layer file shrank during export: " + data_path_).with_path(data_path_);
        got += static_cast<size_t>(r);
      }
      src = chunk_.data();
    }
    la_ssize_t w = archive_write_data(w_, src, static_cast<size_t>(n));
    if (w < 0) throw_la("cannot write tar data for", data_path_);
    data_off_ += n;
  }

  std::vector<ExportLayer> layers_;
  bool emit_whiteouts_;
  archive* w_ = nullptr;
  std::string out_;
  size_t out_pos_ = 0;
  bool discard_ = false;
  bool failed_ = false;
  State state_ = State::Start;
  std::vector<Frame> stack_;
  std::vector<Fd> cache_;
  std::map<std::pair<uint64_t, uint64_t>, std::string> links_;
  Fd data_fd_;
  std::string data_path_;
  uint64_t data_size_ = 0, data_off_ = 0;
  std::vector<std::pair<uint64_t, uint64_t>> segs_;
  size_t seg_i_ = 0;
  bool sparse_ = false;
  std::vector<uint8_t> chunk_;
};

}  // namespace

std::unique_ptr<ByteSource> open_diff_stream(std::vector<LayerPaths> range, bool emit_whiteouts) {
  return std::make_unique<DiffStream>(std::move(range), emit_whiteouts);
}

}  // namespace rolayer::dirdrv
