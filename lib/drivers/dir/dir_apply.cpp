// apply_diff of the "dir" driver.
//
// Semantics (one layer = its own diff/ plus whiteouts/opaque records, merged like overlayfs):
// - Entries are applied in stream order into diff/. A later entry replaces an earlier one at
//   the same path (a directory over a directory merges and takes the later metadata).
// - Whiteouts (".wh.<name>") and opaque markers (".wh..wh..opq") are recorded in meta/ and only
//   hide lower layers (OCI): they never remove this layer's own earlier entries, and nothing is
//   created for them in diff/.
// - Replacing a non-directory of this layer by a directory (explicitly or as an entry's parent)
//   records an implicit whiteout: the lower content it had hidden stays hidden.
// - Every entry's missing parent directories are created in diff/ (as the Docker engine does);
//   one that is visible in a lower layer is created with that directory's metadata (owner,
//   mode, times, xattrs), so the merged view is unchanged; otherwise 0755 owned by the caller.
// - A hard link whose target is not in diff/ is resolved through the lower layers (honouring
//   whiteouts and opaque directories, this layer's so far included); the target is copied up
//   into diff/ at its own path first, then linked.
// - Every payload (regular/sparse content) stays readable after the apply, for re-assembly:
//   the latest payload at a path lives in diff/; any payload that is displaced (same path
//   again, replaced by another type, parent directory replaced) is moved to meta/reloc/ and
//   indexed by (path, occurrence). Payloads of whiteout entries (and of the root path "",
//   should one get past the checker) are written to meta/reloc/ directly.
// - The root entry itself ("./", "/") is not applied: diff/ keeps its own metadata.
// - Top-level AUFS metadata (".wh..wh.plnk/", ".wh..wh.aufs", ".wh..wh.orph/") is skipped as
//   the Docker engine does; hard links into ".wh..wh.plnk/" link to the stashed file.
// - Entries below a name starting with ".wh." elsewhere are refused (Code::Archive): they
//   would put whiteout names into the layer's tree.
//
// Memory: per distinct payload path one hash-map entry (a 64-bit XXH3 hash of the path -> the
// number of payload entries seen there and whether the latest is still in diff/), ~40 bytes;
// a 64-bit collision (probability ~n^2/2^65) could mis-index a relocated payload, which the
// store's per-file checksums would then report at export. Plus: the whiteout/opaque records of
// this layer, the pending metadata of its directories (mode/times, applied at the end, like
// libarchive's own fixup list), and the relocation index; lower layers' records only when a
// lookup needs them. Input is read in 1 MiB chunks.
//
// Security: every directory walk uses O_NOFOLLOW component by component; libarchive writes
// only non-directories, at absolute paths under the canonical store root whose parents have
// just been verified, with SECURE_SYMLINKS and SECURE_NODOTDOT as a second line of defence
// (SECURE_NOABSOLUTEPATHS cannot be used with absolute paths; entry names are cleaned
// relative paths anyway). Directories and hard links are made here (libarchive 3.6 defers
// directory metadata to path-based fixups at close, which would follow symlinks created later
// in the same layer, and its hard-link checks unlink a symlink target).
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "drivers/dir/dir_fs.h"
#include "drivers/dir/dir_internal.h"
#include "tar/path.h"
#include "tar/scanner.h"

namespace rolayer::dirdrv {

namespace {

using dirfs::Fd;
using dirfs::sys_error;
using dirfs::Walk;

// libarchive's write-disk code reads the umask with umask(0) followed by umask(old), in
// archive_write_disk_new and in every archive_write_header. Two threads interleaving those
// pairs can leave the process umask at 0; serialising them keeps it intact.
std::mutex& umask_mutex() {
  static std::mutex m;
  return m;
}

struct DirFix {
  uint32_t mode = 0755;
  bool has_times = false;
  struct timespec atime {};
  struct timespec mtime {};
};

struct LowerHit {
  size_t layer = 0;
  Fd parent;
  std::string base;
  struct stat st {};
};

class Applier final : public tar::ScanHandler {
 public:
  Applier(const LayerPaths& layer, const std::vector<LayerPaths>& lowers)
      : layer_(layer), lowers_(lowers), owner_(::geteuid() == 0) {}
  ~Applier() override {
    if (disk_) archive_write_free(disk_);
  }

  int64_t run(ByteSource& src);

  void on_raw(const uint8_t*, size_t) override {}
  void on_entry(const tar::Entry& e) override;
  void on_payload(const uint8_t* data, size_t len) override;
  void on_entry_end() override { finish_current(); }

 private:
  // --- payload bookkeeping ---
  static uint64_t hash(const std::string& p) { return XXH3_64bits(p.data(), p.size()); }
  uint32_t bump(const std::string& p) {
    uint32_t& v = state_[hash(p)];
    uint32_t c = (v >> 1) + 1;
    if (c >= (1u << 31)) throw Error(Code::Archive, "too many entries at one path").with_path(p);
    v = (c << 1) | (v & 1u);
    return c;
  }
  bool is_live(const std::string& p) const {
    auto it = state_.find(hash(p));
    return it != state_.end() && (it->second & 1u);
  }
  uint32_t count(const std::string& p) const {
    auto it = state_.find(hash(p));
    return it == state_.end() ? 0 : it->second >> 1;
  }
  void set_live(const std::string& p, bool live) {
    uint32_t& v = state_[hash(p)];
    v = (v & ~1u) | (live ? 1u : 0u);
  }
  void record(const std::string& path, uint32_t occ, const std::string& file) {
    index_ += encode_index_record(IndexRecord{path, occ, file});
  }
  std::string next_reloc_name() { return std::to_string(++reloc_seq_); }

  // --- libarchive plumbing ---
  [[noreturn]] void throw_la(const std::string& what, const std::string& path);
  void check_la(int r, const std::string& what, const std::string& path);
  void fill_entry(archive_entry* ae, const tar::Entry& e, const std::string& abs);
  void start_payload(const tar::Entry& e, const std::string& what);
  void finish_current();

  // --- tree operations ---
  Fd ensure_parents(const std::string& path);
  bool clear_target(int parentfd, const std::string& path, const std::string& base, bool new_is_dir);
  void displace(int parentfd, const std::string& base, const std::string& path, const struct stat& st);
  void make_implicit_dir(int parentfd, const std::string& name, const std::string& prefix);
  void make_plain_dir(int parentfd, const std::string& name, const std::string& prefix);
  std::optional<LowerHit> lower_lookup(const std::string& rel);
  void load_lowers();
  void copy_object(const LowerHit& src, int dparent, const std::string& dbase, const std::string& what);
  void invalidate_cache() {
    cache_valid_ = false;
    cache_fd_.reset();
  }

  // --- entry kinds ---
  void apply_whiteout(const std::string& path, const tar::Entry& e);
  void apply_dir(const std::string& path, const tar::Entry& e);
  void apply_hardlink(const std::string& path, const std::string& target);  // target cleaned
  void apply_other(const std::string& path, const tar::Entry& e);
  void check_owner(const std::string& path, const tar::Entry& e) const;
  // Counted after the target was cleared, so that a displaced earlier payload at the same
  // path is recorded with its own occurrence number.
  // Returns the name of the file below meta/reloc/. full_meta: the entry's owner, mode, times
  // and xattrs instead of a private 0600 file (AUFS link stashes, which get linked into diff/).
  std::string write_reloc_payload(const std::string& path, const tar::Entry& e, bool full_meta = false);
  bool apply_aufs_meta(const std::string& path, const tar::Entry& e);
  void apply_fixups();
  void write_meta();

  const LayerPaths& layer_;
  const std::vector<LayerPaths>& lowers_;
  bool owner_;
  Fd diff_fd_, meta_fd_, reloc_fd_;
  archive* disk_ = nullptr;
  tar::SafetyChecker checker_;

  LayerCuts own_;  // this layer's whiteouts and opaque dirs so far
  std::unordered_map<uint64_t, uint32_t> state_;  // path hash -> (count << 1) | live
  std::string index_;                              // encoded relocation records
  uint64_t reloc_seq_ = 0;
  std::map<std::string, DirFix> fixups_;
  int64_t bytes_ = 0;

  bool lowers_loaded_ = false;
  std::vector<LayerCuts> lower_cuts_;
  std::vector<Fd> lower_roots_;

  // AUFS hard-link stash (".wh..wh.plnk/<name>" files): name -> file below meta/reloc/.
  std::unordered_map<std::string, std::string> aufs_links_;

  bool cache_valid_ = false;  // the parent directory of the previous entry
  std::string cache_path_;
  Fd cache_fd_;

  struct Current {
    bool active = false;
    std::string what;
    bool sparse = false;
    std::vector<tar::SparseFragment> frags;
    size_t fi = 0;
    uint64_t fpos = 0;
    uint64_t off = 0;
  } cur_;
};

void Applier::throw_la(const std::string& what, const std::string& path) {
  const char* m = archive_error_string(disk_);
  std::string msg = m ? m : "unknown libarchive error";
  int err = archive_errno(disk_);
  bool unsafe = msg.find("symlink") != std::string::npos || msg.find("'..'") != std::string::npos ||
                msg.find("absolute") != std::string::npos;
  Error e(unsafe ? Code::Unsafe : Code::Io, what + " '" + path + "': " + msg);
  e.with_path(path);
  if (err > 0) e.with_errno(err);
  throw e;
}

void Applier::check_la(int r, const std::string& what, const std::string& path) {
  if (r == ARCHIVE_OK) return;
  if (r == ARCHIVE_WARN) {
    // Extended attributes the file system refuses are skipped, as the Docker engine does.
    const char* m = archive_error_string(disk_);
    std::string msg = m ? m : "";
    if (msg.empty() || msg.find("xattr") != std::string::npos ||
        msg.find("xtended attribute") != std::string::npos)
      return;
  }
  throw_la(what, path);
}

void Applier::fill_entry(archive_entry* ae, const tar::Entry& e, const std::string& abs) {
  archive_entry_set_pathname(ae, abs.c_str());
  switch (e.kind) {
    case tar::EntryKind::Regular:
      archive_entry_set_filetype(ae, AE_IFREG);
      archive_entry_set_size(ae, static_cast<la_int64_t>(e.payload_size));
      break;
    case tar::EntryKind::Sparse:
      archive_entry_set_filetype(ae, AE_IFREG);
      archive_entry_set_size(ae, static_cast<la_int64_t>(e.real_size));
      break;
    case tar::EntryKind::Symlink:
      archive_entry_set_filetype(ae, AE_IFLNK);
      archive_entry_set_symlink(ae, e.linkname.c_str());
      archive_entry_set_size(ae, 0);
      break;
    case tar::EntryKind::CharDev:
      archive_entry_set_filetype(ae, AE_IFCHR);
      archive_entry_set_rdevmajor(ae, e.devmajor);
      archive_entry_set_rdevminor(ae, e.devminor);
      archive_entry_set_size(ae, 0);
      break;
    case tar::EntryKind::BlockDev:
      archive_entry_set_filetype(ae, AE_IFBLK);
      archive_entry_set_rdevmajor(ae, e.devmajor);
      archive_entry_set_rdevminor(ae, e.devminor);
      archive_entry_set_size(ae, 0);
      break;
    case tar::EntryKind::Fifo:
      archive_entry_set_filetype(ae, AE_IFIFO);
      archive_entry_set_size(ae, 0);
      break;
    default:
      throw Error(Code::Archive, "unexpected entry kind").with_path(e.name);
  }
  archive_entry_set_perm(ae, e.mode & 07777);
  archive_entry_set_uid(ae, e.uid);
  archive_entry_set_gid(ae, e.gid);
  archive_entry_set_mtime(ae, e.mtime_sec, e.mtime_nsec);
  archive_entry_set_atime(ae, e.mtime_sec, e.mtime_nsec);
  for (auto& [k, v] : e.xattrs) archive_entry_xattr_add_entry(ae, k.c_str(), v.data(), v.size());
}

void Applier::start_payload(const tar::Entry& e, const std::string& what) {
  cur_.active = true;
  cur_.what = what;
  cur_.sparse = e.kind == tar::EntryKind::Sparse;
  cur_.frags = cur_.sparse ? e.sparse : std::vector<tar::SparseFragment>{};
  cur_.fi = 0;
  cur_.fpos = 0;
  cur_.off = 0;
}

void Applier::finish_current() {
  if (!cur_.active) return;
  cur_.active = false;
  check_la(archive_write_finish_entry(disk_), "cannot write", cur_.what);
}

void Applier::on_payload(const uint8_t* data, size_t len) {
  if (len == 0) return;
  if (!cur_.active) throw Error(Code::Archive, "payload bytes outside a file entry");
  while (len > 0) {
    uint64_t offset;
    size_t n;
    if (!cur_.sparse) {
      offset = cur_.off;
      n = len;
      cur_.off += len;
    } else {
      while (cur_.fi < cur_.frags.size() && cur_.fpos == cur_.frags[cur_.fi].length) {
        ++cur_.fi;
        cur_.fpos = 0;
      }
      if (cur_.fi == cur_.frags.size())
        throw Error(Code::Archive, "sparse payload longer than its map").with_path(cur_.what);
      const auto& f = cur_.frags[cur_.fi];
      n = static_cast<size_t>(std::min<uint64_t>(len, f.length - cur_.fpos));
      offset = f.offset + cur_.fpos;
      cur_.fpos += n;
    }
    la_ssize_t r = archive_write_data_block(disk_, data, n, static_cast<la_int64_t>(offset));
    if (r < 0) throw_la("cannot write", cur_.what);
    data += n;
    len -= n;
  }
}

// The parent directory of `path` in diff/, created (or fixed) as needed. Every component
// is checked with O_NOFOLLOW; a symlink there is an escape.
Fd Applier::ensure_parents(const std::string& path) {
  std::string pdir(dirfs::dir_of(path));
  if (cache_valid_ && pdir == cache_path_) {
    int fd = ::fcntl(cache_fd_.get(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) throw sys_error("cannot duplicate descriptor", path, errno);
    return Fd(fd);
  }
  Fd cur(::openat(diff_fd_.get(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cur.valid()) throw sys_error("cannot open", layer_.diff, errno);
  std::string prefix;
  for (auto c : dirfs::split(pdir)) {
    std::string name(c);
    prefix = dirfs::join(prefix, name);
    struct stat st;
    if (::fstatat(cur.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISLNK(st.st_mode))
        throw Error(Code::Unsafe, "entry '" + path + "' would be written through the symlink '" +
                                      prefix + "'")
            .with_path(path);
      if (!S_ISDIR(st.st_mode)) {
        // A non-directory of this layer becomes a directory: what it hid below stays hidden.
        displace(cur.get(), name, prefix, st);
        own_.whiteouts.insert(prefix);
        make_plain_dir(cur.get(), name, prefix);
      }
    } else if (errno == ENOENT) {
      make_implicit_dir(cur.get(), name, prefix);
    } else {
      throw sys_error("cannot stat", prefix, errno);
    }
    Fd next(::openat(cur.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) throw sys_error("cannot open directory", prefix, errno);
    cur = std::move(next);
  }
  int fd = ::fcntl(cur.get(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) throw sys_error("cannot duplicate descriptor", path, errno);
  cache_fd_.reset(fd);
  cache_path_ = pdir;
  cache_valid_ = true;
  return cur;
}

void Applier::make_plain_dir(int parentfd, const std::string& name, const std::string& prefix) {
  if (::mkdirat(parentfd, name.c_str(), 0700) != 0) throw sys_error("cannot create directory", prefix, errno);
  if (::fchmodat(parentfd, name.c_str(), 0755, 0) != 0) throw sys_error("cannot chmod", prefix, errno);
}

void Applier::make_implicit_dir(int parentfd, const std::string& name, const std::string& prefix) {
  std::optional<LowerHit> hit = lower_lookup(prefix);
  if (!hit || !S_ISDIR(hit->st.st_mode)) {
    make_plain_dir(parentfd, name, prefix);
    return;
  }
  if (::mkdirat(parentfd, name.c_str(), 0700) != 0) throw sys_error("cannot create directory", prefix, errno);
  Fd fd(::openat(parentfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) throw sys_error("cannot open directory", prefix, errno);
  if (owner_ && ::fchown(fd.get(), hit->st.st_uid, hit->st.st_gid) != 0)
    throw sys_error("cannot chown", prefix, errno);
  Fd src(::openat(hit->parent.get(), hit->base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (src.valid()) dirfs::set_xattrs_fd(fd.get(), dirfs::list_xattrs_fd(src.get()), prefix);
  DirFix fx;
  fx.mode = hit->st.st_mode & 07777;
  fx.has_times = true;
  fx.atime = hit->st.st_atim;
  fx.mtime = hit->st.st_mtim;
  fixups_[prefix] = fx;
}

// Makes room for a new entry at `path`. Returns true when an existing directory is kept (a
// directory entry over a directory).
bool Applier::clear_target(int parentfd, const std::string& path, const std::string& base,
                           bool new_is_dir) {
  struct stat st;
  if (::fstatat(parentfd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return false;
    throw sys_error("cannot stat", path, errno);
  }
  if (new_is_dir && S_ISDIR(st.st_mode)) return true;
  displace(parentfd, base, path, st);
  if (new_is_dir) own_.whiteouts.insert(path);
  return false;
}

// Removes `path` from diff/, moving every payload that is still needed into meta/reloc/.
void Applier::displace(int parentfd, const std::string& base, const std::string& path,
                       const struct stat& st) {
  invalidate_cache();
  if (!S_ISDIR(st.st_mode)) {
    if (S_ISREG(st.st_mode) && is_live(path)) {
      std::string name = next_reloc_name();
      if (::renameat(parentfd, base.c_str(), reloc_fd_.get(), name.c_str()) != 0)
        throw sys_error("cannot relocate", path, errno);
      record(path, count(path), std::string(kRelocDir) + "/" + name);
      set_live(path, false);
    } else if (::unlinkat(parentfd, base.c_str(), 0) != 0 && errno != ENOENT) {
      throw sys_error("cannot remove", path, errno);
    }
    return;
  }
  std::string name = next_reloc_name();
  if (::renameat(parentfd, base.c_str(), reloc_fd_.get(), name.c_str()) != 0)
    throw sys_error("cannot relocate", path, errno);
  fixups_.erase(fixups_.lower_bound(path), fixups_.lower_bound(path + "0"));  // path and path/...
  std::string reloc_root = std::string(kRelocDir) + "/" + name;
  dirfs::prune_tree(reloc_fd_.get(), name, layer_.meta + "/" + reloc_root, [&](const std::string& rel) {
    std::string q = dirfs::join(path, rel);
    if (!is_live(q)) return false;
    record(q, count(q), dirfs::join(reloc_root, rel));
    set_live(q, false);
    return true;
  });
}

void Applier::load_lowers() {
  if (lowers_loaded_) return;
  lower_cuts_.resize(lowers_.size());
  lower_roots_.resize(lowers_.size());
  for (size_t i = 0; i < lowers_.size(); ++i) {
    lower_cuts_[i].load(lowers_[i]);
    lower_roots_[i] = open_layer_dir(lowers_[i], lowers_[i].diff, true);
  }
  lowers_loaded_ = true;
}

// The object visible at `rel` in the merged view of the lower layers, as seen from this layer
// (its whiteouts and opaque directories so far apply).
std::optional<LowerHit> Applier::lower_lookup(const std::string& rel) {
  if (lowers_.empty() || own_.hides(rel)) return std::nullopt;
  load_lowers();
  for (size_t i = 0; i < lowers_.size(); ++i) {
    LowerHit h;
    Walk why = Walk::Ok;
    if (dirfs::lookup(lower_roots_[i].get(), rel, h.parent, h.st, &why)) {
      h.layer = i;
      h.base = std::string(dirfs::base_of(rel));
      return h;
    }
    if (why == Walk::NotDir || why == Walk::Symlink) return std::nullopt;  // shadowed here
    if (lower_cuts_[i].hides(rel)) return std::nullopt;
  }
  return std::nullopt;
}

void Applier::copy_object(const LowerHit& src, int dparent, const std::string& dbase,
                          const std::string& what) {
  const struct stat& st = src.st;
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  if (S_ISREG(st.st_mode)) {
    Fd in(::openat(src.parent.get(), src.base.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!in.valid()) throw sys_error("cannot open lower file", what, errno);
    Fd out(::openat(dparent, dbase.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out.valid()) throw sys_error("cannot create", what, errno);
    dirfs::copy_data(in.get(), out.get(), static_cast<uint64_t>(st.st_size), what);
    if (owner_ && ::fchown(out.get(), st.st_uid, st.st_gid) != 0) throw sys_error("cannot chown", what, errno);
    if (::fchmod(out.get(), st.st_mode & 07777) != 0) throw sys_error("cannot chmod", what, errno);
    dirfs::set_xattrs_fd(out.get(), dirfs::list_xattrs_fd(in.get()), what);
    if (::futimens(out.get(), ts) != 0) throw sys_error("cannot set times", what, errno);
    return;
  }
  if (S_ISLNK(st.st_mode)) {
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    for (;;) {
      ssize_t n = ::readlinkat(src.parent.get(), src.base.c_str(), target.data(), target.size());
      if (n < 0) throw sys_error("cannot read link", what, errno);
      if (static_cast<size_t>(n) < target.size()) {
        target.resize(static_cast<size_t>(n));
        break;
      }
      target.resize(target.size() * 2);
    }
    if (::symlinkat(target.c_str(), dparent, dbase.c_str()) != 0) throw sys_error("cannot create symlink", what, errno);
  } else {
    if (::mknodat(dparent, dbase.c_str(), st.st_mode & (S_IFMT | 07777), st.st_rdev) != 0)
      throw sys_error("cannot create node", what, errno);
    if (::fchmodat(dparent, dbase.c_str(), st.st_mode & 07777, 0) != 0) throw sys_error("cannot chmod", what, errno);
  }
  if (owner_ && ::fchownat(dparent, dbase.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0)
    throw sys_error("cannot chown", what, errno);
  if (::utimensat(dparent, dbase.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0)
    throw sys_error("cannot set times", what, errno);
}

std::string Applier::write_reloc_payload(const std::string& path, const tar::Entry& e, bool full_meta) {
  uint32_t occ = bump(path);
  std::string name = next_reloc_name();
  std::string abs = layer_.meta + "/" + kRelocDir + "/" + name;
  EntryHolder ae;
  if (full_meta) {
    fill_entry(ae.get(), e, abs);
  } else {
    archive_entry_set_pathname(ae.get(), abs.c_str());
    archive_entry_set_filetype(ae.get(), AE_IFREG);
    uint64_t size = e.kind == tar::EntryKind::Sparse ? e.real_size : e.payload_size;
    archive_entry_set_size(ae.get(), static_cast<la_int64_t>(size));
    archive_entry_set_perm(ae.get(), 0600);
    archive_entry_set_uid(ae.get(), ::geteuid());
    archive_entry_set_gid(ae.get(), ::getegid());
    archive_entry_set_mtime(ae.get(), e.mtime_sec, e.mtime_nsec);
    archive_entry_set_atime(ae.get(), e.mtime_sec, e.mtime_nsec);
  }
  {
    std::lock_guard<std::mutex> lock(umask_mutex());
    check_la(archive_write_header(disk_, ae.get()), "cannot create", path);
  }
  record(path, occ, std::string(kRelocDir) + "/" + name);
  start_payload(e, path);
  return name;
}

// Top-level AUFS metadata (".wh..wh.plnk/", ".wh..wh.aufs", ".wh..wh.orph/"), as the Docker
// engine handles it: skipped, except that regular files in ".wh..wh.plnk" are kept aside as
// targets of hard links that name them. Payloads are kept for re-assembly in any case.
bool Applier::apply_aufs_meta(const std::string& path, const tar::Entry& e) {
  constexpr std::string_view kMeta = ".wh..wh.";
  constexpr std::string_view kLinkDir = ".wh..wh.plnk";
  if (path.compare(0, kMeta.size(), kMeta) != 0 || path == tar::kOpaqueWhiteout) return false;
  if (!e.has_payload()) return true;
  auto comps = dirfs::split(path);
  if (comps.size() == 2 && comps[0] == kLinkDir) {
    check_owner(path, e);
    aufs_links_[std::string(comps[1])] = write_reloc_payload(path, e, true);
  } else {
    write_reloc_payload(path, e);
  }
  return true;
}

void Applier::apply_whiteout(const std::string& path, const tar::Entry& e) {
  ensure_parents(path);  // the engine creates a whiteout's parent directories too
  std::string target = tar::whiteout_target(path);
  if (tar::is_opaque_whiteout(path) || target.empty())
    own_.opaque.insert(target);  // ".wh." alone deletes its directory's content
  else
    own_.whiteouts.insert(target);
  if (e.has_payload()) write_reloc_payload(path, e);
}

void Applier::apply_dir(const std::string& path, const tar::Entry& e) {
  check_owner(path, e);
  Fd parent = ensure_parents(path);
  std::string base(dirfs::base_of(path));
  bool kept = clear_target(parent.get(), path, base, true);
  if (!kept && ::mkdirat(parent.get(), base.c_str(), 0700) != 0)
    throw sys_error("cannot create directory", path, errno);
  Fd fd(::openat(parent.get(), base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) throw sys_error("cannot open directory", path, errno);
  if (owner_ && ::fchown(fd.get(), static_cast<uid_t>(e.uid), static_cast<gid_t>(e.gid)) != 0)
    throw sys_error("cannot chown", path, errno);
  dirfs::set_xattrs_fd(fd.get(), e.xattrs, path);
  DirFix fx;
  fx.mode = e.mode & 07777;
  fx.has_times = true;
  fx.mtime.tv_sec = e.mtime_sec;
  fx.mtime.tv_nsec = e.mtime_nsec;
  fx.atime = fx.mtime;
  fixups_[path] = fx;
}

void Applier::apply_hardlink(const std::string& path, const std::string& target) {
  if (target.empty()) throw Error(Code::Archive, "hard link to the layer root: '" + path + "'").with_path(path);
  if (dirfs::is_strict_ancestor(path, target) || dirfs::is_strict_ancestor(target, path))
    throw Error(Code::Archive, "hard link '" + path + "' to its own ancestor or descendant '" + target + "'")
        .with_path(path);
  Fd parent = ensure_parents(path);
  std::string base(dirfs::base_of(path));
  if (target != path) clear_target(parent.get(), path, base, false);
  if (target.rfind(".wh..wh.plnk/", 0) == 0) {  // a link to an AUFS stash file
    auto it = aufs_links_.find(std::string(dirfs::base_of(target)));
    if (it == aufs_links_.end())
      throw Error(Code::Archive, "invalid aufs hard link '" + path + "' to '" + target + "'").with_path(path);
    if (::linkat(reloc_fd_.get(), it->second.c_str(), parent.get(), base.c_str(), 0) != 0)
      throw sys_error("cannot create hard link", path, errno);
    return;
  }

  Fd tparent;
  struct stat tst;
  Walk why = Walk::Ok;
  bool found = dirfs::lookup(diff_fd_.get(), target, tparent, tst, &why);
  if (!found) {
    if (why == Walk::Symlink)
      throw Error(Code::Unsafe, "hard link '" + path + "' to '" + target + "' goes through a symlink")
          .with_path(path);
    std::optional<LowerHit> hit;
    if (why != Walk::NotDir) hit = lower_lookup(target);
    if (!hit)
      throw Error(Code::Archive, "hard link '" + path + "': target '" + target + "' not found").with_path(path);
    if (S_ISDIR(hit->st.st_mode))
      throw Error(Code::Archive, "hard link '" + path + "' to a directory '" + target + "'").with_path(path);
    // Copy the lower file up into this layer (same path), then link to that copy.
    Fd cparent = ensure_parents(target);
    copy_object(*hit, cparent.get(), std::string(dirfs::base_of(target)), target);
    if (target == path) return;
    if (!dirfs::lookup(diff_fd_.get(), target, tparent, tst))
      throw Error(Code::Io, "copied-up file vanished: '" + target + "'").with_path(target);
    parent = ensure_parents(path);
  } else if (target == path) {
    if (S_ISDIR(tst.st_mode))
      throw Error(Code::Archive, "hard link '" + path + "' to a directory").with_path(path);
    return;  // a link to itself: nothing to do
  }
  if (S_ISDIR(tst.st_mode))
    throw Error(Code::Archive, "hard link '" + path + "' to a directory '" + target + "'").with_path(path);
  std::string tbase(dirfs::base_of(target));
  if (::linkat(tparent.get(), tbase.c_str(), parent.get(), base.c_str(), 0) != 0)
    throw sys_error("cannot create hard link", path, errno);
}

void Applier::check_owner(const std::string& path, const tar::Entry& e) const {
  if (owner_ && (e.uid < 0 || e.uid >= 0xFFFFFFFFLL || e.gid < 0 || e.gid >= 0xFFFFFFFFLL))
    throw Error(Code::Archive, "owner id out of range for '" + path + "'").with_path(path);
}

void Applier::apply_other(const std::string& path, const tar::Entry& e) {
  check_owner(path, e);
  Fd parent = ensure_parents(path);
  std::string base(dirfs::base_of(path));
  clear_target(parent.get(), path, base, false);
  std::string abs = layer_.diff + "/" + path;
  EntryHolder ae;
  fill_entry(ae.get(), e, abs);
  {
    std::lock_guard<std::mutex> lock(umask_mutex());
    check_la(archive_write_header(disk_, ae.get()), "cannot create", path);
  }
  if (e.has_payload()) {
    bump(path);  // after clear_target: see write_reloc_payload
    set_live(path, true);
    start_payload(e, path);
  } else {
    check_la(archive_write_finish_entry(disk_), "cannot create", path);
  }
}

void Applier::on_entry(const tar::Entry& e) {
  finish_current();
  tar::SafetyChecker::Checked checked = checker_.check_entry(e);  // Code::Unsafe on escapes
  const std::string& path = checked.path;
  const bool payload = e.has_payload();
  if (payload) {
    bytes_ += static_cast<int64_t>(e.real_size);
    if (e.kind == tar::EntryKind::Sparse) {
      for (auto& f : e.sparse)
        if (f.offset > e.real_size || f.length > e.real_size - f.offset)
          throw Error(Code::Archive, "sparse fragment beyond the file's size").with_path(path);
    }
  }
  if (path.empty()) {  // the root itself (the checker refuses a non-directory there)
    if (payload) write_reloc_payload(path, e);
    return;
  }
  if (layer_.diff.size() + 1 + path.size() >= PATH_MAX)
    throw Error(Code::Io, "path too long: '" + path + "'").with_errno(ENAMETOOLONG).with_path(path);
  if (apply_aufs_meta(path, e)) return;
  auto comps = dirfs::split(path);
  for (size_t i = 0; i + 1 < comps.size(); ++i)
    if (comps[i].substr(0, tar::kWhiteoutPrefix.size()) == tar::kWhiteoutPrefix)
      throw Error(Code::Archive, "entry below a whiteout name: '" + path + "'").with_path(path);
  if (tar::is_whiteout(path)) {
    apply_whiteout(path, e);
    return;
  }
  switch (e.kind) {
    case tar::EntryKind::Directory:
      apply_dir(path, e);
      break;
    case tar::EntryKind::Hardlink:
      apply_hardlink(path, checked.link_target);
      break;
    case tar::EntryKind::Regular:
    case tar::EntryKind::Sparse:
    case tar::EntryKind::Symlink:
    case tar::EntryKind::CharDev:
    case tar::EntryKind::BlockDev:
    case tar::EntryKind::Fifo:
      apply_other(path, e);
      break;
    case tar::EntryKind::Other:
      if (e.typeflag == 'D') apply_dir(path, e);  // GNU dumpdir: a directory
      // Labels, volume headers and unknown types have nothing to extract.
      break;
  }
}

void Applier::apply_fixups() {
  for (auto it = fixups_.rbegin(); it != fixups_.rend(); ++it) {  // children before parents
    Fd fd = dirfs::open_beneath(diff_fd_.get(), it->first, O_RDONLY | O_DIRECTORY);
    if (!fd.valid()) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;
      throw sys_error("cannot open directory", it->first, errno);
    }
    if (::fchmod(fd.get(), it->second.mode) != 0) throw sys_error("cannot chmod", it->first, errno);
    if (it->second.has_times) {
      struct timespec ts[2] = {it->second.atime, it->second.mtime};
      if (::futimens(fd.get(), ts) != 0) throw sys_error("cannot set times", it->first, errno);
    }
  }
  fixups_.clear();
}

void Applier::write_meta() {
  auto sorted = [](const std::unordered_set<std::string>& s) { return std::set<std::string>(s.begin(), s.end()); };
  if (!own_.whiteouts.empty())
    dirfs::write_file_atomic(meta_fd_.get(), kWhiteoutsFile, encode_list(kWhiteoutsMagic, sorted(own_.whiteouts)),
                             layer_.meta + "/" + kWhiteoutsFile);
  if (!own_.opaque.empty())
    dirfs::write_file_atomic(meta_fd_.get(), kOpaqueFile, encode_list(kOpaqueMagic, sorted(own_.opaque)),
                             layer_.meta + "/" + kOpaqueFile);
  if (!index_.empty()) {
    std::string data(kPayloadsMagic);
    data.push_back('\0');
    data += index_;
    dirfs::write_file_atomic(meta_fd_.get(), kPayloadsFile, data, layer_.meta + "/" + kPayloadsFile);
  }
}

int64_t Applier::run(ByteSource& src) {
  diff_fd_ = open_layer_dir(layer_, layer_.diff, true);
  meta_fd_ = open_layer_dir(layer_, layer_.meta);
  if (::mkdirat(meta_fd_.get(), kRelocDir, 0700) != 0 && errno != EEXIST)
    throw sys_error("cannot create", layer_.meta + "/" + kRelocDir, errno);
  reloc_fd_ = Fd(::openat(meta_fd_.get(), kRelocDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!reloc_fd_.valid()) throw sys_error("cannot open", layer_.meta + "/" + kRelocDir, errno);

  {
    std::lock_guard<std::mutex> lock(umask_mutex());
    disk_ = archive_write_disk_new();
  }
  if (!disk_) throw Error(Code::NoMem, "archive_write_disk_new failed");
  int flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_NO_AUTODIR |
              ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_XATTR;
  if (owner_) flags |= ARCHIVE_EXTRACT_OWNER;
  archive_write_disk_set_options(disk_, flags);

  {
    std::vector<uint8_t> buf(size_t(1) << 20);
    tar::Scanner scanner(*this);
    for (;;) {
      size_t n = src.read(buf.data(), buf.size());
      if (n == 0) break;
      scanner.feed(buf.data(), n);
    }
    scanner.finish();
  }
  finish_current();
  if (archive_write_close(disk_) != ARCHIVE_OK) throw_la("cannot finish extraction of", layer_.diff);
  archive_write_free(disk_);
  disk_ = nullptr;
  invalidate_cache();

  apply_fixups();
  write_meta();
  // Everything of the layer (diff/ and meta/) on stable storage, then the commit marker.
  Fd layer_fd = open_layer_dir(layer_, layer_.dir);
  if (::syncfs(layer_fd.get()) != 0) throw sys_error("syncfs failed for", layer_.dir, errno);
  std::string applied(kAppliedMagic);
  applied.push_back('\0');
  applied += std::to_string(bytes_);
  applied.push_back('\0');
  dirfs::write_file_atomic(meta_fd_.get(), kAppliedFile, applied, layer_.meta + "/" + kAppliedFile);
  return bytes_;
}

}  // namespace

int64_t apply_layer(const LayerPaths& layer, const std::vector<LayerPaths>& lowers, ByteSource& tar) {
  Applier a(layer, lowers);
  return a.run(tar);
}

}  // namespace rolayer::dirdrv
