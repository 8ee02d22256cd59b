// SPDX-License-Identifier: Apache-2.0
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
// number of payload entries seen there and whether the latest is still in diff/), a 16-byte
// slot of an open-addressing table at most 3/4 full;
// a 64-bit collision (probability ~n^2/2^65) could mis-index a relocated payload, which the
// store's per-file checksums would then report at export. Plus: the whiteout/opaque records of
// this layer, the pending metadata of its directories (mode/times, applied at the end), the
// relocation index, and the open directories of the current parent path (one per component);
// lower layers' records only when a lookup needs them. Input is read in 1 MiB chunks.
//
// Security: every object is created relative to its parent directory's descriptor, by name
// (openat O_CREAT|O_EXCL|O_NOFOLLOW, mkdirat, symlinkat, mknodat, linkat), and its metadata is
// set through its own descriptor or with AT_SYMLINK_NOFOLLOW. Parent directories are reached
// component by component with O_NOFOLLOW|O_DIRECTORY from diff/ (a symlink there is
// Code::Unsafe). The open parent path of the previous entry is reused (entries come in walk
// order); whatever replaces one of its components (displace) drops the components from there
// down, so an open descriptor never stands for a path that now names something else.
// Directory modes and times are set after the directory's children: through the descriptor
// apply_dir opened (O_NOFOLLOW|O_DIRECTORY below its verified parent) once the walk leaves it
// (flush_retired), or, for the rest, at the end (children first), each directory opened with
// one openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) or, without openat2, the O_NOFOLLOW walk.
// Metadata order as GNU tar and libarchive: owner, mode (so that set-uid bits survive chown),
// extended attributes (before the mode when unprivileged: a read-only mode could refuse them;
// after it as root, so that security.capability is set last), times.
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include "core/error.h"
#include "core/fault.h"
#include "drivers/dir/dir_fs.h"
#include "drivers/dir/dir_overlay.h"
#include "drivers/dir/dir_pack.h"
#include "drivers/dir/dir_internal.h"
#include "tar/path.h"
#include "tar/scanned.h"
#include "tar/scanner.h"

namespace rolayer::dirdrv {

namespace {

using dirfs::Fd;
using dirfs::sys_error;
using dirfs::Walk;

using Xattrs = std::vector<std::pair<std::string, std::string>>;

// Files of at least this size get their write-back started as soon as they are complete
// (Applier::start_writeback), so that the disk works while the rest of the layer is applied
// and the final syncfs has less left to wait for. 64 KiB: on the bench's `medium` layer 5 % of
// the files with 57 % of the bytes (1 MiB: 18 % of the bytes); smaller thresholds made the
// large layer's register slower (each call allocates and submits one small file's blocks).
constexpr uint64_t kEarlyWritebackBytes = uint64_t(64) << 10;

// Owner, permission bits, times and extended attributes of an object to create.
struct NodeMeta {
  int64_t uid = 0, gid = 0;  // as root: checked to be in 0 .. 2^32-2 (check_owner)
  uint32_t mode = 0;        // permission and special bits (07777)
  struct timespec atime {};
  struct timespec mtime {};
  const Xattrs* xattrs = nullptr;
  // Any error setting an attribute is skipped (not only ENOTSUP/EPERM/EACCES): the behaviour
  // that entries had when libarchive's write-disk created them.
  bool skip_xattr_errors = false;
};

NodeMeta entry_meta(const tar::Entry& e) {
  NodeMeta m;
  m.uid = e.uid;
  m.gid = e.gid;
  m.mode = e.mode & 07777;
  m.mtime.tv_sec = static_cast<time_t>(e.mtime_sec);
  m.mtime.tv_nsec = static_cast<long>(e.mtime_nsec);
  m.atime = m.mtime;
  m.xattrs = e.xattrs.empty() ? nullptr : &e.xattrs;
  m.skip_xattr_errors = true;
  return m;
}

NodeMeta stat_meta(const struct stat& st) {
  NodeMeta m;
  m.uid = st.st_uid;
  m.gid = st.st_gid;
  m.mode = st.st_mode & 07777;
  m.atime = st.st_atim;
  m.mtime = st.st_mtim;
  return m;
}

struct DirFix {
  uint32_t mode = 0755;
  int64_t uid = 0, gid = 0;  // for the override_stat attribute (unprivileged)
  bool has_times = false;
  // Applied early, through the descriptor that apply_dir kept (see Applier::flush_retired):
  // apply_fixups skips it. `gen` changes whenever the directory may change again.
  bool done = false;
  uint64_t gen = 0;
  struct timespec atime {};
  struct timespec mtime {};
};

// Path hash -> 32-bit value, open addressing with linear probing (the payload bookkeeping has
// one entry per distinct payload path: ~190,000 on a layer of tiny files, where a node-based
// unordered_map cost an allocation per path and a cache miss per lookup). Key 0 is the empty
// slot; a hash of 0 is stored as 1 (a collision like any other, see "Memory" above).
class PathCounts {
 public:
  uint32_t* find(uint64_t h) {
    if (slots_.empty()) return nullptr;
    h = h ? h : 1;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == h) return &slots_[i].val;
      if (slots_[i].key == 0) return nullptr;
    }
  }
  uint32_t& operator[](uint64_t h) {
    h = h ? h : 1;
    if ((used_ + 1) * 4 > slots_.size() * 3) grow();
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == h) return slots_[i].val;
      if (slots_[i].key == 0) {
        slots_[i].key = h;
        ++used_;
        return slots_[i].val;
      }
    }
  }

 private:
  struct Slot {
    uint64_t key = 0;
    uint32_t val = 0;
  };
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.key == 0) continue;
      size_t i = s.key & mask_;
      while (slots_[i].key != 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t used_ = 0;
};

struct LowerHit {
  size_t layer = 0;
  Fd parent;
  std::string base;
  struct stat st {};
};

class Applier final : public tar::ScanHandler, public tar::CheckedScanHandler {
 public:
  Applier(const LayerPaths& layer, const std::vector<LayerPaths>& lowers)
      : layer_(layer), lowers_(lowers), owner_(::geteuid() == 0), euid_(::geteuid()) {}

  int64_t run(ByteSource& src);
  // Staged apply (no parent known yet): what would read a lower layer sets *needs instead,
  // except a missing parent directory, made as a placeholder (see kStagedImplicitFile).
  void set_staged(bool* needs) { staged_needs_ = needs; }
  // At commit (fix_staged_layer): gives the placeholders of a staged apply what make_implicit_dir
  // would have given them on the parent chain `lowers_`. declared: later declared by an entry.
  void fix_implicit(const std::vector<std::string>& paths, const std::set<std::string>& declared);
  // Also writes the payload pack (dir_pack.h) of the regular files of 1 to max bytes.
  void set_pack(uint64_t max) { pack_max_ = max; }

  void on_raw(const uint8_t*, size_t) override {}
  // Its own scan: the entry checked here, then on_checked_entry.
  void on_entry(const tar::Entry& e) override;
  // An entry the store's register tee scanned and checked (lib/tar/scanned.h), or on_entry's.
  void on_checked_entry(const tar::Entry& e, const tar::SafetyChecker::Checked& checked) override;
  void on_payload(const uint8_t* data, size_t len) override;
  void on_entry_end() override {
    finish_current();
    if (pack_) pack_->end();
  }

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
  bool is_live(const std::string& p) {
    const uint32_t* v = state_.find(hash(p));
    return v && (*v & 1u);
  }
  uint32_t count(const std::string& p) {
    const uint32_t* v = state_.find(hash(p));
    return v ? *v >> 1 : 0;
  }
  void set_live(const std::string& p, bool live) {
    uint32_t& v = state_[hash(p)];
    v = (v & ~1u) | (live ? 1u : 0u);
  }
  void record(const std::string& path, uint32_t occ, const std::string& file) {
    index_ += encode_index_record(IndexRecord{path, occ, file});
  }
  std::string next_reloc_name() { return std::to_string(++reloc_seq_); }

  // --- object creation (shared by entries, relocated payloads and copy-ups) ---
  uint32_t settable_mode(const NodeMeta& m, gid_t file_gid) const;
  // The mode written on disk: the real one as root; with owner access added otherwise (a
  // directory u+rwx, a file u+rw), so that the store can always read and remove what it wrote.
  uint32_t disk_mode(uint32_t mode, bool dir) const {
    if (owner_) return mode;
    return mode | (dir ? S_IRWXU : (S_IRUSR | S_IWUSR));
  }
  // The real mode of a lower object (its override_stat when that layer was applied
  // unprivileged); drops the store's attribute from xattrs.
  uint32_t lower_mode(const LowerHit& hit, Xattrs& xattrs) const {
    uint32_t mode = hit.st.st_mode & 07777;
    if (hit.layer < lower_cuts_.size() && lower_cuts_[hit.layer].override_stat)
      return dirfs::take_override_mode(xattrs, mode);
    return mode;
  }
  void set_meta_fd(int fd, const NodeMeta& m, const std::string& what);
  void set_meta_at(int parent, const std::string& base, const NodeMeta& m, bool symlink,
                   const std::string& rel, const std::string& what);
  Fd create_file(int parent, const std::string& base, const std::string& what);
  void start_payload(const tar::Entry& e, Fd fd, const NodeMeta& m, const std::string& what);
  void finish_current();
  void start_writeback(int fd, const std::string& what);

  // --- tree operations ---
  // The parent directory of `path` in diff/ (created or fixed as needed), borrowed from the
  // parent-path cache: valid until the end of the current entry.
  int parent_of(const std::string& path);
  int walk_from_deep(const std::string& path, std::string_view rest);
  // The same, as an owned duplicate (for code that walks to several parents).
  Fd ensure_parents(const std::string& path);
  // Tries make(); when the name exists, clears it (clear_target) and tries once more.
  template <class Make>
  int create_or_replace(int parent, const std::string& base, const std::string& path, Make&& make);
  bool clear_target(int parentfd, const std::string& path, const std::string& base, bool new_is_dir);
  void displace(int parentfd, const std::string& base, const std::string& path, const struct stat& st);
  void make_implicit_dir(int parentfd, const std::string& name, const std::string& prefix);
  void make_plain_dir(int parentfd, const std::string& name, const std::string& prefix);
  std::optional<LowerHit> lower_lookup(const std::string& rel);
  void load_lowers();
  void copy_object(const LowerHit& src, int dparent, const std::string& dbase, const std::string& what);
  void make_node(int parent, const std::string& base, const std::string& path, mode_t type, dev_t rdev,
                 const std::string& linkname, const NodeMeta& m, bool replace);
  // `path` is about to be removed or replaced: forget the open components from it down.
  void drop_cached(const std::string& path);

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
  bool* staged_needs_ = nullptr;  // staged apply: set when the result depends on a parent
  // Staged apply: the implicit directories made while no lower layer could be read (each a
  // plain directory, no part of this layer hiding it when made), and those of them that an
  // entry declared later. Written to meta/ for the commit (fix_staged_layer).
  std::set<std::string> placeholders_, declared_;
  void drop_placeholders(const std::string& path) {
    for (auto it = placeholders_.lower_bound(path); it != placeholders_.end();) {
      if (*it != path && !dirfs::is_strict_ancestor(path, *it)) {
        if (it->compare(0, path.size(), path) != 0) break;  // past every "path..." name
        ++it;
        continue;
      }
      declared_.erase(*it);
      it = placeholders_.erase(it);
    }
  }
  uint64_t pack_max_ = 0;           // > 0: write the payload pack
  std::unique_ptr<PackWriter> pack_;
  uint64_t payload_ordinal_ = 0;    // payload entries so far (the pack's ordinals)
  bool owner_;
  uid_t euid_;
  Fd diff_fd_, meta_fd_, reloc_fd_;
  tar::SafetyChecker checker_;

  LayerCuts own_;  // this layer's whiteouts and opaque dirs so far
  PathCounts state_;                               // path hash -> (count << 1) | live
  std::string index_;                              // encoded relocation records
  uint64_t reloc_seq_ = 0;
  std::map<std::string, DirFix> fixups_;
  int64_t bytes_ = 0;

  bool lowers_loaded_ = false;
  std::vector<LayerCuts> lower_cuts_;
  std::vector<Fd> lower_roots_;

  // AUFS hard-link stash (".wh..wh.plnk/<name>" files): name -> file below meta/reloc/.
  std::unordered_map<std::string, std::string> aufs_links_;

  // The open directories of the last parent path: parents_[i] is its first i+1 components.
  struct CachedDir {
    std::string name;
    Fd fd;
    // Set by apply_dir (fd is then O_RDONLY): the directory's fixup generation and full path,
    // for setting its mode and times through fd once the walk has left it (flush_retired).
    uint64_t fix_gen = 0;
    std::string path;
  };
  // At most kMaxCachedDirs components are kept open (descriptors are a limited resource); a
  // parent directory deeper than that is reached from the last of them and kept in deep_.
  static constexpr size_t kMaxCachedDirs = 64;
  std::vector<CachedDir> parents_;
  Fd deep_;
  std::string deep_path_;
  void retire_deep() {
    if (deep_.valid()) retired_.push_back(Retired{std::move(deep_), 0, {}});
    deep_path_.clear();
  }
  void retire_parent() {
    CachedDir& c = parents_.back();
    retired_.push_back(Retired{std::move(c.fd), c.fix_gen, std::move(c.path)});
    parents_.pop_back();
  }
  // Descriptors dropped from parents_ during the current entry (parent_of's results may
  // still be in use); closed when the next entry starts (flush_retired).
  struct Retired {
    Fd fd;
    uint64_t fix_gen = 0;
    std::string path;
  };
  std::vector<Retired> retired_;
  // Closes retired_; a directory that apply_dir opened gets its mode and times there, through
  // that descriptor, when its fixup is still the one it was opened with (no walk has reached
  // the directory again since, so nothing changed in it after its entry and its children):
  // tar streams come in walk order, so this spares apply_fixups' second open of almost every
  // directory. Whatever may change the directory later (a walk through it: parent_of,
  // ensure_parents) gives it a new generation (touch_fixup), and apply_fixups sets it again.
  void flush_retired();
  void apply_fix(int fd, const std::string& path, const DirFix& fx);
  // A walk opened the existing directory `prefix`: it may change, its early fixup is void.
  void touch_fixup(const std::string& prefix) {
    if (fixups_.empty()) return;
    auto it = fixups_.find(prefix);
    if (it == fixups_.end()) return;
    it->second.done = false;
    it->second.gen = ++fix_gen_;
  }
  uint64_t fix_gen_ = 0;

  struct Current {
    bool active = false;
    std::string what;
    Fd fd;
    NodeMeta meta;
    Xattrs xattrs;
    uint64_t size = 0;  // logical size
    uint64_t end = 0;   // end of the data written so far
    bool sparse = false;
    std::vector<tar::SparseFragment> frags;
    size_t fi = 0;
    uint64_t fpos = 0;
    uint64_t off = 0;
  } cur_;
  bool writeback_ = true;  // early write-back (start_writeback) works on this file system
};

// Set-uid and set-gid bits survive only where the owner is right: as root the owner is set;
// otherwise set-uid needs the entry's owner to be the caller and set-gid the file's group to be
// the entry's (as libarchive does).
uint32_t Applier::settable_mode(const NodeMeta& m, gid_t file_gid) const {
  uint32_t mode = m.mode;
  if (owner_) return mode;
  if ((mode & S_ISUID) && m.uid != static_cast<int64_t>(euid_)) mode &= ~static_cast<uint32_t>(S_ISUID);
  if ((mode & S_ISGID) && m.gid != static_cast<int64_t>(file_gid)) mode &= ~static_cast<uint32_t>(S_ISGID);
  return mode;
}

// Owner, mode, extended attributes and times of a regular file, through its descriptor.
void Applier::set_meta_fd(int fd, const NodeMeta& m, const std::string& what) {
  if (owner_) {
    if (::fchown(fd, static_cast<uid_t>(m.uid), static_cast<gid_t>(m.gid)) != 0)
      throw sys_error("cannot chown", what, errno);
    if (::fchmod(fd, m.mode) != 0) throw sys_error("cannot chmod", what, errno);
    if (m.xattrs) dirfs::set_xattrs_fd(fd, *m.xattrs, what, m.skip_xattr_errors);
  } else {
    if (m.xattrs) dirfs::set_xattrs_fd(fd, *m.xattrs, what, m.skip_xattr_errors);
    gid_t g = 0;
    if (m.mode & S_ISGID) {
      struct stat st;
      if (::fstat(fd, &st) != 0) throw sys_error("cannot stat", what, errno);
      g = st.st_gid;
    }
    const uint32_t real = settable_mode(m, g);
    const uint32_t disk = disk_mode(real, false);
    if (disk != real) dirfs::set_override_stat_fd(fd, m.uid, m.gid, real, false, what);
    if (::fchmod(fd, disk) != 0) throw sys_error("cannot chmod", what, errno);
  }
  struct timespec ts[2] = {m.atime, m.mtime};
  if (::futimens(fd, ts) != 0) throw sys_error("cannot set times", what, errno);
}

// The same for a symlink, device node or FIFO, by name below `parent`, never following it.
// rel: its path below diff/ (for the extended-attribute fallback).
void Applier::set_meta_at(int parent, const std::string& base, const NodeMeta& m, bool symlink,
                          const std::string& rel, const std::string& what) {
  const char* b = base.c_str();
  auto xattrs = [&] {
    if (m.xattrs)
      dirfs::set_xattrs_at(parent, base, *m.xattrs, layer_.diff + "/" + rel, what, m.skip_xattr_errors);
  };
  if (owner_ && ::fchownat(parent, b, static_cast<uid_t>(m.uid), static_cast<gid_t>(m.gid), AT_SYMLINK_NOFOLLOW) != 0)
    throw sys_error("cannot chown", what, errno);
  if (!owner_) xattrs();
  if (!symlink) {  // a node just made here by mknodat: fchmodat cannot follow anything
    gid_t g = 0;
    if (!owner_ && (m.mode & S_ISGID)) {
      struct stat st;
      if (::fstatat(parent, b, &st, AT_SYMLINK_NOFOLLOW) != 0) throw sys_error("cannot stat", what, errno);
      g = st.st_gid;
    }
    if (::fchmodat(parent, b, settable_mode(m, g), 0) != 0) throw sys_error("cannot chmod", what, errno);
  }
  if (owner_) xattrs();
  struct timespec ts[2] = {m.atime, m.mtime};
  if (::utimensat(parent, b, ts, AT_SYMLINK_NOFOLLOW) != 0) throw sys_error("cannot set times", what, errno);
}

// A new, empty, private regular file `base` below `parent` (which must not hold that name).
Fd Applier::create_file(int parent, const std::string& base, const std::string& what) {
  Fd fd(::openat(parent, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) throw sys_error("cannot create", what, errno);
  return fd;
}

template <class Make>
int Applier::create_or_replace(int parent, const std::string& base, const std::string& path, Make&& make) {
  int r = make();
  if (r < 0 && errno == EEXIST) {
    clear_target(parent, path, base, false);
    r = make();
  }
  return r;
}

// The file's metadata is set when its content is complete (finish_current): writing would
// clear security.capability, and the mode may forbid writing.
void Applier::start_payload(const tar::Entry& e, Fd fd, const NodeMeta& m, const std::string& what) {
  cur_.active = true;
  cur_.what = what;
  cur_.fd = std::move(fd);
  cur_.meta = m;
  cur_.xattrs = e.xattrs;
  cur_.meta.xattrs = cur_.xattrs.empty() ? nullptr : &cur_.xattrs;
  cur_.size = e.kind == tar::EntryKind::Sparse ? e.real_size : e.payload_size;
  cur_.end = 0;
  cur_.sparse = e.kind == tar::EntryKind::Sparse;
  cur_.frags = cur_.sparse ? e.sparse : std::vector<tar::SparseFragment>{};
  cur_.fi = 0;
  cur_.fpos = 0;
  cur_.off = 0;
}

void Applier::finish_current() {
  if (!cur_.active) return;
  cur_.active = false;
  Fd fd = std::move(cur_.fd);
  // A sparse file's trailing hole (or a file whose payload ended early).
  if (cur_.end < cur_.size && ::ftruncate(fd.get(), static_cast<off_t>(cur_.size)) != 0)
    throw sys_error("cannot resize", cur_.what, errno);
  set_meta_fd(fd.get(), cur_.meta, cur_.what);
  // Start the write-back now: the final syncfs then finds less to write.
  if (cur_.size >= kEarlyWritebackBytes) start_writeback(fd.get(), cur_.what);
  cur_.xattrs.clear();
  cur_.frags.clear();
}

void Applier::on_payload(const uint8_t* data, size_t len) {
  if (len == 0) return;
  if (!cur_.active) throw Error(Code::Archive, "payload bytes outside a file entry");
  if (pack_) pack_->add(data, len);
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
    if (offset > cur_.size || n > cur_.size - offset)
      throw Error(Code::Archive, "payload beyond the file's size").with_path(cur_.what);
    const uint8_t* p = data;
    size_t left = n;
    uint64_t woff = offset;
    while (left > 0) {
      ssize_t w = ::pwrite(cur_.fd.get(), p, left, static_cast<off_t>(woff));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw sys_error("cannot write", cur_.what, errno);
      }
      p += w;
      left -= static_cast<size_t>(w);
      woff += static_cast<uint64_t>(w);
    }
    cur_.end = std::max(cur_.end, offset + n);
    data += n;
    len -= n;
  }
}

// Starts the write-back of a complete file (SYNC_FILE_RANGE_WRITE: queues its dirty pages for
// writing and waits for none of them), so that the disk works while the rest of the layer is
// applied. Durability still comes from the apply's syncfs alone: this only moves write-back
// earlier. A file system that cannot do it (EINVAL, ENOSYS, EOPNOTSUPP, ESPIPE) gets no early
// write-back for the rest of the layer; any other error (EIO, ENOSPC, ENOMEM, ...) fails the
// layer now, as the syncfs would later. EINTR is retried. Fault point "dir.writeback" (an
// injected errno stands for the call's).
void Applier::start_writeback(int fd, const std::string& what) {
  if (!writeback_) return;
  int r;
  do {
    if (int injected = ROLAYER_FAULT_INJECTED_ERRNO("dir.writeback")) {
      errno = injected;
      r = -1;
    } else {
      r = ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    }
  } while (r != 0 && errno == EINTR);
  if (r == 0) return;
  if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == ESPIPE) {
    writeback_ = false;
    return;
  }
  throw sys_error("cannot start the write-back of", what, errno);
}

void Applier::drop_cached(const std::string& path) {
  if (deep_.valid() && (deep_path_ == path || dirfs::is_strict_ancestor(path, deep_path_))) retire_deep();
  // parents_[k - 1] is the first k components: `path` is among them when it has k <= size
  // components and they match.
  size_t k = 0;
  std::string_view rest(path);
  while (k < parents_.size()) {
    size_t slash = rest.find('/');
    std::string_view c = rest.substr(0, slash);
    if (c != parents_[k].name) return;  // not on the cached path
    ++k;
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
    if (k == parents_.size()) return;  // deeper than the cached path
  }
  if (k == 0) return;
  retire_deep();
  while (parents_.size() >= k) retire_parent();
}

// Every component is opened with O_NOFOLLOW|O_DIRECTORY; a symlink there is an escape.
int Applier::parent_of(const std::string& path) {
  std::string_view pdir = dirfs::dir_of(path);
  auto comps = dirfs::split(pdir);
  size_t keep = 0;
  while (keep < comps.size() && keep < parents_.size() && parents_[keep].name == comps[keep]) ++keep;
  if (deep_.valid() && keep == parents_.size() && deep_path_ == pdir) return deep_.get();
  // A parent below the deep directory (entries of a deep tree come in walk order): walk on
  // from it, so that each level costs one openat and a deep chain stays linear.
  if (deep_.valid() && keep == parents_.size() && dirfs::is_strict_ancestor(deep_path_, pdir)) {
    std::string_view rest = pdir.substr(deep_path_.size() + 1);
    return walk_from_deep(path, rest);
  }
  retire_deep();
  while (parents_.size() > keep) retire_parent();
  if (keep == comps.size()) return parents_.empty() ? diff_fd_.get() : parents_.back().fd.get();
  std::string prefix;  // the first `keep` components (comps are views into pdir)
  if (keep > 0) prefix = pdir.substr(0, static_cast<size_t>(comps[keep - 1].data() - pdir.data()) + comps[keep - 1].size());
  Fd walk;  // the current directory once parents_ is full
  for (size_t i = keep; i < comps.size(); ++i) {
    std::string name(comps[i]);
    prefix = dirfs::join(prefix, name);
    int cur = walk.valid() ? walk.get() : parents_.empty() ? diff_fd_.get() : parents_.back().fd.get();
    constexpr int kDirFlags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    Fd next(::openat(cur, name.c_str(), kDirFlags));
    if (next.valid()) {
      touch_fixup(prefix);
    } else {
      if (errno == ENOENT) {
        make_implicit_dir(cur, name, prefix);
      } else if (errno == ENOTDIR || errno == ELOOP) {
        struct stat st;
        if (::fstatat(cur, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) throw sys_error("cannot stat", prefix, errno);
        if (S_ISLNK(st.st_mode))
          throw Error(Code::Unsafe, "entry '" + path + "' would be written through the symlink '" +
                                        prefix + "'")
              .with_path(path);
        if (S_ISDIR(st.st_mode)) throw sys_error("cannot open directory", prefix, ENOTDIR);
        // A non-directory of this layer becomes a directory: what it hid below stays hidden.
        displace(cur, name, prefix, st);
        own_.whiteouts.insert(prefix);
        make_plain_dir(cur, name, prefix);
      } else {
        throw sys_error("cannot open directory", prefix, errno);
      }
      next = Fd(::openat(cur, name.c_str(), kDirFlags));
      if (!next.valid()) throw sys_error("cannot open directory", prefix, errno);
    }
    if (!walk.valid() && parents_.size() < kMaxCachedDirs)
      parents_.push_back(CachedDir{std::move(name), std::move(next), 0, {}});
    else
      walk = std::move(next);  // closes the previous one, which nobody else holds
  }
  if (walk.valid()) {
    deep_ = std::move(walk);
    deep_path_ = std::string(pdir);
    return deep_.get();
  }
  return parents_.empty() ? diff_fd_.get() : parents_.back().fd.get();
}

// Walks the components of `rest` (a clean relative path) down from deep_, creating missing
// directories as parent_of does, and makes the result the new deep_ (retiring the old one).
int Applier::walk_from_deep(const std::string& path, std::string_view rest) {
  std::string prefix = deep_path_;
  Fd walk;
  for (std::string_view c : dirfs::split(rest)) {
    std::string name(c);
    prefix = dirfs::join(prefix, name);
    int cur = walk.valid() ? walk.get() : deep_.get();
    constexpr int kDirFlags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    Fd next(::openat(cur, name.c_str(), kDirFlags));
    if (next.valid()) {
      touch_fixup(prefix);
    } else {
      if (errno == ENOENT) {
        make_implicit_dir(cur, name, prefix);
      } else if (errno == ENOTDIR || errno == ELOOP) {
        struct stat st;
        if (::fstatat(cur, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) throw sys_error("cannot stat", prefix, errno);
        if (S_ISLNK(st.st_mode))
          throw Error(Code::Unsafe, "entry '" + path + "' would be written through the symlink '" + prefix + "'")
              .with_path(path);
        if (S_ISDIR(st.st_mode)) throw sys_error("cannot open directory", prefix, ENOTDIR);
        displace(cur, name, prefix, st);
        own_.whiteouts.insert(prefix);
        make_plain_dir(cur, name, prefix);
      } else {
        throw sys_error("cannot open directory", prefix, errno);
      }
      next = Fd(::openat(cur, name.c_str(), kDirFlags));
      if (!next.valid()) throw sys_error("cannot open directory", prefix, errno);
    }
    walk = std::move(next);
  }
  retire_deep();
  deep_ = std::move(walk);
  deep_path_ = prefix;
  return deep_.get();
}

Fd Applier::ensure_parents(const std::string& path) {
  int fd = ::fcntl(parent_of(path), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) throw sys_error("cannot duplicate descriptor", path, errno);
  return Fd(fd);
}

void Applier::make_plain_dir(int parentfd, const std::string& name, const std::string& prefix) {
  if (::mkdirat(parentfd, name.c_str(), 0700) != 0) throw sys_error("cannot create directory", prefix, errno);
  if (::fchmodat(parentfd, name.c_str(), 0755, 0) != 0) throw sys_error("cannot chmod", prefix, errno);
}

void Applier::make_implicit_dir(int parentfd, const std::string& name, const std::string& prefix) {
  if (staged_needs_) {
    // Staged: a plain directory now; when nothing of this layer hides it from the lower
    // layers, the commit gives it the metadata of the parent chain's directory there (lower
    // layers do not change, and the layer's cuts only grow: the lookup at commit, on the lower
    // layers alone, is the one a register would have made here).
    make_plain_dir(parentfd, name, prefix);
    if (!own_.hides(prefix)) placeholders_.insert(prefix);
    return;
  }
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
  Xattrs lx;
  if (src.valid()) lx = dirfs::list_xattrs_fd(src.get());
  DirFix fx;
  fx.mode = lower_mode(*hit, lx);
  dirfs::set_xattrs_fd(fd.get(), lx, prefix);
  fx.uid = hit->st.st_uid;
  fx.gid = hit->st.st_gid;
  fx.has_times = true;
  fx.atime = hit->st.st_atim;
  fx.mtime = hit->st.st_mtim;
  fx.gen = ++fix_gen_;
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
  drop_cached(path);
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
  // path itself and path/... ("path/" to "path0": '0' follows '/'); not the siblings that sort in
  // between ("path-x", "path.x", which [path, path0) would take too).
  fixups_.erase(path);
  fixups_.erase(fixups_.lower_bound(path + "/"), fixups_.lower_bound(path + "0"));
  if (!placeholders_.empty()) drop_placeholders(path);
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
  if (staged_needs_ && !own_.hides(rel)) return *staged_needs_ = true, std::nullopt;  // staged: parent unknown
  if (lowers_.empty() || own_.hides(rel)) return std::nullopt;
  load_lowers();
  for (size_t i = 0; i < lowers_.size(); ++i) {
    LowerHit h;
    Walk why = Walk::Ok;
    if (dirfs::lookup(lower_roots_[i].get(), rel, h.parent, h.st, &why)) {
      h.base = std::string(dirfs::base_of(rel));
      // That layer's whiteout object (overlay-ready tree): a deletion, not an object.
      if (!S_ISDIR(h.st.st_mode) && lower_cuts_[i].whiteouts.count(rel) &&
          is_whiteout_object(h.parent.get(), h.base))
        return std::nullopt;
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
  NodeMeta m = stat_meta(st);
  if (S_ISREG(st.st_mode)) {
    Fd in(::openat(src.parent.get(), src.base.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!in.valid()) throw sys_error("cannot open lower file", what, errno);
    if (st.st_size == 0 && is_chr00_placeholder(in.get())) {  // a 0/0 character device, escaped
      Xattrs xattrs = dirfs::list_xattrs_fd(in.get());
      m.mode = lower_mode(src, xattrs);
      m.xattrs = xattrs.empty() ? nullptr : &xattrs;
      make_node(dparent, dbase, what, S_IFCHR, makedev(0, 0), std::string(), m, false);
      return;
    }
    Fd out = create_file(dparent, dbase, what);
    dirfs::copy_data(in.get(), out.get(), static_cast<uint64_t>(st.st_size), what);
    Xattrs xattrs = dirfs::list_xattrs_fd(in.get());
    m.mode = lower_mode(src, xattrs);
    m.xattrs = xattrs.empty() ? nullptr : &xattrs;
    set_meta_fd(out.get(), m, what);
    return;
  }
  std::string target;
  if (S_ISLNK(st.st_mode)) {
    target.assign(static_cast<size_t>(st.st_size) + 1, '\0');
    for (;;) {
      ssize_t n = ::readlinkat(src.parent.get(), src.base.c_str(), target.data(), target.size());
      if (n < 0) throw sys_error("cannot read link", what, errno);
      if (static_cast<size_t>(n) < target.size()) {
        target.resize(static_cast<size_t>(n));
        break;
      }
      target.resize(target.size() * 2);
    }
  }
  make_node(dparent, dbase, what, st.st_mode & S_IFMT, st.st_rdev, target, m, false);
}

// A symlink (linkname), device node or FIFO `base` below `parent`, with its metadata. replace:
// an existing object there is cleared first (clear_target), else it is an error.
void Applier::make_node(int parent, const std::string& base, const std::string& path, mode_t type, dev_t rdev,
                        const std::string& linkname, const NodeMeta& m, bool replace) {
  auto make = [&] {
    if (type == S_IFLNK) return ::symlinkat(linkname.c_str(), parent, base.c_str());
    if (type == S_IFCHR && rdev == makedev(0, 0)) {
      // The layer's own 0/0 character device would be an overlay whiteout: stored as an empty
      // regular file marked with kChr00Xattr (dir_overlay.h); diffs give the device back.
      Fd f(::openat(parent, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!f.valid()) return -1;
      if (::fsetxattr(f.get(), kChr00Xattr, "", 0, 0) != 0) {
        int e = errno;
        ::unlinkat(parent, base.c_str(), 0);
        errno = e;
        return -1;
      }
      return 0;
    }
    return ::mknodat(parent, base.c_str(), type | 0600, rdev);
  };
  int r = replace ? create_or_replace(parent, base, path, make) : make();
  if (r != 0) throw sys_error(type == S_IFLNK ? "cannot create symlink" : "cannot create", path, errno);
  set_meta_at(parent, base, m, type == S_IFLNK, path, path);
}

std::string Applier::write_reloc_payload(const std::string& path, const tar::Entry& e, bool full_meta) {
  uint32_t occ = bump(path);
  std::string name = next_reloc_name();
  Fd fd = create_file(reloc_fd_.get(), name, path);
  NodeMeta m = entry_meta(e);
  if (!full_meta) {  // a private copy: 0600, the caller's, no extended attributes
    m.uid = euid_;
    m.gid = ::getegid();
    m.mode = 0600;
  }
  record(path, occ, std::string(kRelocDir) + "/" + name);
  start_payload(e, std::move(fd), m, path);
  if (!full_meta) cur_.meta.xattrs = nullptr;
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
  parent_of(path);  // the engine creates a whiteout's parent directories too
  std::string target = tar::whiteout_target(path);
  if (tar::is_opaque_whiteout(path) || target.empty())
    own_.opaque.insert(target);  // ".wh." alone deletes its directory's content
  else
    own_.whiteouts.insert(target);
  if (e.has_payload()) write_reloc_payload(path, e);
}

void Applier::apply_dir(const std::string& path, const tar::Entry& e) {
  check_owner(path, e);
  int parent = parent_of(path);
  // The number of components of its parent path (the path is clean: no empty components).
  const size_t depth = static_cast<size_t>(std::count(path.begin(), path.end(), '/'));
  std::string base(dirfs::base_of(path));
  if (::mkdirat(parent, base.c_str(), 0700) != 0) {
    if (errno != EEXIST) throw sys_error("cannot create directory", path, errno);
    bool kept = clear_target(parent, path, base, true);
    if (!kept && ::mkdirat(parent, base.c_str(), 0700) != 0)
      throw sys_error("cannot create directory", path, errno);
  }
  Fd fd(::openat(parent, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) throw sys_error("cannot open directory", path, errno);
  if (!placeholders_.empty() && placeholders_.count(path)) declared_.insert(path);
  if (owner_ && ::fchown(fd.get(), static_cast<uid_t>(e.uid), static_cast<gid_t>(e.gid)) != 0)
    throw sys_error("cannot chown", path, errno);
  dirfs::set_xattrs_fd(fd.get(), e.xattrs, path);
  DirFix fx;
  fx.mode = e.mode & 07777;
  fx.uid = e.uid;
  fx.gid = e.gid;
  fx.has_times = true;
  fx.mtime.tv_sec = e.mtime_sec;
  fx.mtime.tv_nsec = e.mtime_nsec;
  fx.atime = fx.mtime;
  fx.gen = ++fix_gen_;
  fixups_[path] = fx;
  // Its entries usually follow: it becomes the cached parent path's next component.
  // (parent_of left parents_ at its parent path when that is shallow enough; only a displace
  // of a component could have shortened it since.)
  if (depth < kMaxCachedDirs && parents_.size() == depth && !deep_.valid())
    parents_.push_back(CachedDir{std::move(base), std::move(fd), fx.gen, path});
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
    // Staged: the target may be in the parent, unknown yet: the layer is applied again on it.
    if (why != Walk::NotDir && staged_needs_ && !own_.hides(target)) return void(*staged_needs_ = true);
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
  int parent = parent_of(path);
  std::string base(dirfs::base_of(path));
  NodeMeta m = entry_meta(e);
  if (e.has_payload()) {
    int fd = create_or_replace(parent, base, path, [&] {
      return ::openat(parent, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    });
    if (fd < 0) throw sys_error("cannot create", path, errno);
    bump(path);  // after clear_target: see write_reloc_payload
    set_live(path, true);
    start_payload(e, Fd(fd), m, path);
    return;
  }
  mode_t type = 0;
  dev_t rdev = 0;
  switch (e.kind) {
    case tar::EntryKind::Symlink:
      type = S_IFLNK;
      break;
    case tar::EntryKind::CharDev:
      type = S_IFCHR;
      rdev = makedev(e.devmajor, e.devminor);
      break;
    case tar::EntryKind::BlockDev:
      type = S_IFBLK;
      rdev = makedev(e.devmajor, e.devminor);
      break;
    case tar::EntryKind::Fifo:
      type = S_IFIFO;
      break;
    default:
      throw Error(Code::Archive, "unexpected entry kind").with_path(e.name);
  }
  make_node(parent, base, path, type, rdev, e.linkname, m, true);
}

void Applier::on_entry(const tar::Entry& e) {
  on_checked_entry(e, checker_.check_entry(e));  // Code::Unsafe on escapes
}

void Applier::on_checked_entry(const tar::Entry& e, const tar::SafetyChecker::Checked& checked) {
  finish_current();
  flush_retired();
  const std::string& path = checked.path;
  if (!owner_)
    for (const auto& x : e.xattrs)
      if (x.first == dirfs::kOverrideStatXattr)
        throw Error(Code::Unsafe, "tar entry '" + path + "' sets the extended attribute " + x.first +
                                      ", which an unprivileged store keeps for the real modes of its files")
            .with_path(path);
  const bool payload = e.has_payload();
  if (payload) {
    // Counted for every payload entry, as the export's payload session counts its opens.
    ++payload_ordinal_;
    if (pack_) pack_->begin(payload_ordinal_, e.kind == tar::EntryKind::Regular, e.payload_size);
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
  {
    // A directory component (any but the last) named ".wh.*": the path is clean, so that is
    // the parent path starting with ".wh." or holding "/.wh." (no split: this runs per entry).
    const std::string_view pdir = dirfs::dir_of(path);
    constexpr std::string_view slash_prefix = "/.wh.";  // "/" + tar::kWhiteoutPrefix
    static_assert(slash_prefix.substr(1) == tar::kWhiteoutPrefix);
    if (pdir.substr(0, tar::kWhiteoutPrefix.size()) == tar::kWhiteoutPrefix ||
        pdir.find(slash_prefix) != std::string_view::npos)
      throw Error(Code::Archive, "entry below a whiteout name: '" + path + "'").with_path(path);
  }
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

void Applier::apply_fix(int fd, const std::string& path, const DirFix& fx) {
  const uint32_t disk = disk_mode(fx.mode, true);
  if (disk != fx.mode) dirfs::set_override_stat_fd(fd, fx.uid, fx.gid, fx.mode, true, path);
  if (::fchmod(fd, disk) != 0) throw sys_error("cannot chmod", path, errno);
  if (fx.has_times) {
    struct timespec ts[2] = {fx.atime, fx.mtime};
    if (::futimens(fd, ts) != 0) throw sys_error("cannot set times", path, errno);
  }
}

void Applier::flush_retired() {
  for (Retired& r : retired_) {
    if (r.fix_gen == 0) continue;
    auto it = fixups_.find(r.path);
    if (it == fixups_.end() || it->second.gen != r.fix_gen || it->second.done) continue;
    apply_fix(r.fd.get(), it->first, it->second);
    it->second.done = true;
  }
  retired_.clear();
}

void Applier::apply_fixups() {
  // Children before parents. When a directory is the parent of the previous one (a deep
  // chain), it is reached through the previous one's "..": that is its real parent, since the
  // previous one was entered without following any symlink, and a chain stays linear.
  // Directories fixed early (flush_retired) are skipped.
  Fd prev;
  std::string_view prev_parent;
  for (auto it = fixups_.rbegin(); it != fixups_.rend(); ++it) {
    if (it->second.done) continue;
    Fd fd;
    if (prev.valid() && !it->first.empty() && prev_parent == it->first)
      fd = Fd(::openat(prev.get(), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    else
      fd = dirfs::open_beneath(diff_fd_.get(), it->first, O_RDONLY | O_DIRECTORY);
    prev.reset();
    if (!fd.valid()) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;
      throw sys_error("cannot open directory", it->first, errno);
    }
    apply_fix(fd.get(), it->first, it->second);
    prev = std::move(fd);
    prev_parent = dirfs::dir_of(it->first);
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
  if (!owner_)
    dirfs::write_file_atomic(meta_fd_.get(), kOverrideStatFile, encode_list(kOverrideStatMagic, {}),
                             layer_.meta + "/" + kOverrideStatFile);
  if (!placeholders_.empty())
    dirfs::write_file_atomic(meta_fd_.get(), kStagedImplicitFile, encode_list(kStagedImplicitMagic, placeholders_),
                             layer_.meta + "/" + kStagedImplicitFile);
  if (!declared_.empty())
    dirfs::write_file_atomic(meta_fd_.get(), kStagedDeclaredFile, encode_list(kStagedDeclaredMagic, declared_),
                             layer_.meta + "/" + kStagedDeclaredFile);
  if (!index_.empty()) {
    std::string data(kPayloadsMagic);
    data.push_back('\0');
    data += index_;
    dirfs::write_file_atomic(meta_fd_.get(), kPayloadsFile, data, layer_.meta + "/" + kPayloadsFile);
  }
}

int64_t Applier::run(ByteSource& src) {
  // The descriptor of the final syncfs, opened before anything is written: syncfs reports the
  // file system's write-back errors since its descriptor was opened, and with the early
  // write-back (start_writeback) a page of this layer can fail before the syncfs is reached.
  Fd sync_fd = open_layer_dir(layer_, layer_.dir);
  diff_fd_ = open_layer_dir(layer_, layer_.diff, true);
  meta_fd_ = open_layer_dir(layer_, layer_.meta);
  if (::mkdirat(meta_fd_.get(), kRelocDir, 0700) != 0 && errno != EEXIST)
    throw sys_error("cannot create", layer_.meta + "/" + kRelocDir, errno);
  reloc_fd_ = Fd(::openat(meta_fd_.get(), kRelocDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!reloc_fd_.valid()) throw sys_error("cannot open", layer_.meta + "/" + kRelocDir, errno);
  if (pack_max_ > 0) pack_ = std::make_unique<PackWriter>(layer_, meta_fd_.get(), pack_max_);

  {
    std::vector<uint8_t> buf(size_t(1) << 20);
    // Under the store's register tee the entries come already scanned and checked, once.
    auto* scanned = dynamic_cast<tar::ScannedSource*>(&src);
    if (scanned && scanned->attach(*this)) {
      while (src.read(buf.data(), buf.size()) != 0) {
      }
    } else {
      tar::Scanner scanner(*this);
      for (;;) {
        size_t n = src.read(buf.data(), buf.size());
        if (n == 0) break;
        scanner.feed(buf.data(), n);
      }
      scanner.finish();
    }
  }
  finish_current();
  if (pack_) pack_->finish();  // before the syncfs below, which makes it durable with the tree
  retire_deep();
  while (!parents_.empty()) retire_parent();
  flush_retired();

  // Overlay-ready: whiteout objects and opaque attributes (before the directories' times).
  const OverlayForm form = current_form();
  materialize_overlay(layer_, own_, form);
  apply_fixups();
  write_meta();
  write_overlay_marker(meta_fd_.get(), layer_, form);
  // Everything of the layer (diff/ and meta/) on stable storage, then the commit marker.
  if (::syncfs(sync_fd.get()) != 0) throw sys_error("syncfs failed for", layer_.dir, errno);
  std::string applied(kAppliedMagic);
  applied.push_back('\0');
  applied += std::to_string(bytes_);
  applied.push_back('\0');
  dirfs::write_file_atomic(meta_fd_.get(), kAppliedFile, applied, layer_.meta + "/" + kAppliedFile);
  return bytes_;
}

// The placeholders get, in this order, what make_implicit_dir gives an implicit directory with
// a lower directory at its path: the owner (as root), the lower directory's attributes (its
// real mode taken out of the store's override_stat when that layer was applied unprivileged),
// then mode and times as apply_fix sets them. A placeholder that a directory entry declared
// later got that entry's owner, mode, times and attributes over the copied ones (apply_dir):
// of the copy only the lower attributes the entry did not set remain, and only those are
// added. A placeholder with no lower directory there stays the plain directory it is. Synced
// at the end; repeating the whole is harmless (the same parent gives the same values).
void Applier::fix_implicit(const std::vector<std::string>& paths, const std::set<std::string>& declared) {
  Fd sync_fd = open_layer_dir(layer_, layer_.dir);  // before any change (see run())
  diff_fd_ = open_layer_dir(layer_, layer_.diff, true);
  bool fixed = false;
  for (const std::string& path : paths) {
    std::optional<LowerHit> hit = lower_lookup(path);
    if (!hit || !S_ISDIR(hit->st.st_mode)) continue;
    Fd fd = dirfs::open_beneath(diff_fd_.get(), path, O_RDONLY | O_DIRECTORY);
    if (!fd.valid()) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
        throw Error(Code::Corrupt, "directory '" + path + "' of the staged layer " + layer_.id + " is missing")
            .with_path(layer_.diff + "/" + path);
      throw sys_error("cannot open directory", path, errno);
    }
    Fd src(::openat(hit->parent.get(), hit->base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    Xattrs lx;
    if (src.valid()) lx = dirfs::list_xattrs_fd(src.get());
    const uint32_t mode = lower_mode(*hit, lx);
    if (declared.count(path)) {
      Xattrs have = dirfs::list_xattrs_raw_fd(fd.get());
      Xattrs add;
      for (auto& x : lx) {
        const std::string k = dirfs::escape_xattr_name(x.first);
        if (std::none_of(have.begin(), have.end(), [&](const auto& h) { return h.first == k; })) add.push_back(x);
      }
      dirfs::set_xattrs_fd(fd.get(), add, path);
    } else {
      if (owner_ && ::fchown(fd.get(), hit->st.st_uid, hit->st.st_gid) != 0)
        throw sys_error("cannot chown", path, errno);
      dirfs::set_xattrs_fd(fd.get(), lx, path);
      DirFix fx;
      fx.mode = mode;
      fx.uid = hit->st.st_uid;
      fx.gid = hit->st.st_gid;
      fx.has_times = true;
      fx.atime = hit->st.st_atim;
      fx.mtime = hit->st.st_mtim;
      apply_fix(fd.get(), path, fx);
    }
    fixed = true;
    ROLAYER_FAULT_POINT("stage.fixup");
  }
  // On stable storage before the commit goes on (one syncfs, as the apply's: a directory
  // fsync each would commit the journal once per directory).
  if (fixed && ::syncfs(sync_fd.get()) != 0) throw sys_error("syncfs failed for", layer_.dir, errno);
}

}  // namespace

int64_t apply_layer(const LayerPaths& layer, const std::vector<LayerPaths>& lowers, ByteSource& tar,
                    uint64_t pack_max) {
  Applier a(layer, lowers);
  a.set_pack(pack_max);
  return a.run(tar);
}

int64_t apply_layer_staged(const LayerPaths& layer, ByteSource& tar, bool* needs_parent, uint64_t pack_max) {
  static const std::vector<LayerPaths> kNoLowers;
  *needs_parent = false;
  Applier a(layer, kNoLowers);
  a.set_staged(needs_parent);
  a.set_pack(pack_max);
  return a.run(tar);
}

}  // namespace rolayer::dirdrv

namespace rolayer::dirdrv {

void fix_staged_layer(const LayerPaths& layer, const std::vector<LayerPaths>& lowers) {
  Fd mfd = open_layer_dir(layer, layer.meta);
  const std::string ip = layer.meta + "/" + kStagedImplicitFile, dp = layer.meta + "/" + kStagedDeclaredFile;
  std::string data;
  if (dirfs::read_file(mfd.get(), kStagedImplicitFile, data, kMaxMetaFile, ip)) {
    if (!lowers.empty()) {  // on no parent the placeholders are what a register makes
      std::vector<std::string> paths = decode_list(kStagedImplicitMagic, data, false, ip);
      std::set<std::string> declared;
      std::string d;
      if (dirfs::read_file(mfd.get(), kStagedDeclaredFile, d, kMaxMetaFile, dp))
        for (auto& p : decode_list(kStagedDeclaredMagic, d, false, dp)) declared.insert(std::move(p));
      Applier a(layer, lowers);
      a.fix_implicit(paths, declared);
    }
    // Done and durable: the list goes first (a repeat then finds nothing to do), then the rest.
    if (::unlinkat(mfd.get(), kStagedImplicitFile, 0) != 0 && errno != ENOENT)
      throw sys_error("cannot remove", ip, errno);
  }
  if (::unlinkat(mfd.get(), kStagedDeclaredFile, 0) != 0 && errno != ENOENT) throw sys_error("cannot remove", dp, errno);
  dirfs::fsync_fd(mfd.get(), layer.meta);
}

}  // namespace rolayer::dirdrv
