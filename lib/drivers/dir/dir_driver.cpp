// SPDX-License-Identifier: Apache-2.0
#include "drivers/dir/dir_driver.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

#include "core/error.h"
#include "drivers/dir/dir_fs.h"
#include "drivers/dir/dir_internal.h"
#include "drivers/dir/dir_pack.h"
#include "drivers/dir/dir_overlay.h"

namespace rolayer {

using dirfs::Fd;
using dirfs::sys_error;

namespace dirdrv {

Fd open_layer_dir(const LayerPaths& layer, const std::string& abs, bool path_only) {
  int fd = ::open(abs.c_str(), O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | (path_only ? O_PATH : O_RDONLY));
  if (fd >= 0) return Fd(fd);
  if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
    throw Error(Code::Corrupt, "storage of layer " + layer.id + " is damaged: " + abs + " is missing").with_path(abs);
  throw sys_error("cannot open directory", abs, errno);
}

std::string encode_list(std::string_view magic, const std::set<std::string>& items) {
  std::string out(magic);
  out.push_back('\0');
  for (auto& s : items) {
    out += s;
    out.push_back('\0');
  }
  return out;
}

static std::vector<std::string_view> split_records(const std::string& data, std::string_view magic,
                                                   const std::string& what_path) {
  std::vector<std::string_view> recs;
  std::string_view d(data);
  if (d.empty() || d.back() != '\0')
    throw Error(Code::Corrupt, "truncated metadata file: " + what_path).with_path(what_path);
  size_t i = 0;
  while (i < d.size()) {
    size_t j = d.find('\0', i);
    recs.push_back(d.substr(i, j - i));
    i = j + 1;
  }
  if (recs.empty() || recs.front() != magic)
    throw Error(Code::Corrupt, "unknown metadata file format: " + what_path).with_path(what_path);
  recs.erase(recs.begin());
  return recs;
}

std::vector<std::string> decode_list(std::string_view magic, const std::string& data,
                                     bool allow_empty_paths, const std::string& what_path) {
  std::vector<std::string> out;
  for (auto r : split_records(data, magic, what_path)) {
    if (!dirfs::valid_clean_path(r, allow_empty_paths))
      throw Error(Code::Corrupt, "invalid path in metadata file: " + what_path).with_path(what_path);
    out.emplace_back(r);
  }
  return out;
}

std::string encode_index_record(const IndexRecord& r) {
  std::string out = r.path;
  out.push_back('\0');
  out += std::to_string(r.occurrence);
  out.push_back('\0');
  out += r.file;
  out.push_back('\0');
  return out;
}

std::vector<IndexRecord> decode_index(const std::string& data, const std::string& what_path) {
  auto recs = split_records(data, kPayloadsMagic, what_path);
  if (recs.size() % 3 != 0)
    throw Error(Code::Corrupt, "truncated payload index: " + what_path).with_path(what_path);
  std::vector<IndexRecord> out;
  for (size_t i = 0; i < recs.size(); i += 3) {
    IndexRecord r;
    r.path = std::string(recs[i]);
    std::string_view occ = recs[i + 1];
    r.file = std::string(recs[i + 2]);
    uint64_t v = 0;
    bool ok = !occ.empty() && occ.size() <= 10 && occ[0] != '0';
    for (char c : occ) {
      if (c < '0' || c > '9') ok = false;
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (!ok || v == 0 || v > UINT32_MAX || !dirfs::valid_clean_path(r.path, true) ||
        !dirfs::valid_clean_path(r.file, false) || r.file.rfind(std::string(kRelocDir) + "/", 0) != 0)
      throw Error(Code::Corrupt, "invalid payload index record: " + what_path).with_path(what_path);
    r.occurrence = static_cast<uint32_t>(v);
    out.push_back(std::move(r));
  }
  return out;
}

void LayerCuts::load(const LayerPaths& layer) {
  Fd meta = open_layer_dir(layer, layer.meta);
  std::string data;
  if (dirfs::read_file(meta.get(), kWhiteoutsFile, data, kMaxMetaFile, layer.meta + "/" + kWhiteoutsFile)) {
    for (auto& w : decode_list(kWhiteoutsMagic, data, false, layer.meta + "/" + kWhiteoutsFile)) {
      whiteout_children[std::string(dirfs::dir_of(w))].emplace_back(dirfs::base_of(w));
      whiteouts.insert(std::move(w));
    }
  }
  if (dirfs::read_file(meta.get(), kOpaqueFile, data, kMaxMetaFile, layer.meta + "/" + kOpaqueFile)) {
    for (auto& o : decode_list(kOpaqueMagic, data, true, layer.meta + "/" + kOpaqueFile))
      opaque.insert(std::move(o));
  }
  if (dirfs::read_file(meta.get(), kOverrideStatFile, data, 4096, layer.meta + "/" + kOverrideStatFile)) {
    decode_list(kOverrideStatMagic, data, false, layer.meta + "/" + kOverrideStatFile);
    override_stat = true;
  }
}

bool LayerCuts::hides(std::string_view rel) const {
  if (opaque.count(std::string()) && !rel.empty()) return true;
  if (whiteouts.empty() && opaque.empty()) return false;
  std::string prefix;
  auto comps = dirfs::split(rel);
  for (size_t i = 0; i < comps.size(); ++i) {
    if (i) prefix.push_back('/');
    prefix.append(comps[i]);
    if (whiteouts.count(prefix)) return true;
    if (i + 1 < comps.size() && opaque.count(prefix)) return true;
  }
  return false;
}

}  // namespace dirdrv

using namespace dirdrv;

namespace {

void check_id(const std::string& id) {
  if (id.empty() || id.size() > 200 || id[0] == '.' || id.find('/') != std::string::npos ||
      id.find('\0') != std::string::npos)
    throw Error(Code::Inval, "invalid layer id: '" + id + "'");
}

LayerPaths paths_of(const std::string& root, const std::string& id) {
  LayerPaths p;
  p.id = id;
  p.dir = root + "/" + id;
  p.diff = p.dir + "/" + kDiffDir;
  p.meta = p.dir + "/" + kMetaDir;
  return p;
}

bool is_dir_at(int dirfd, const std::string& name) {
  struct stat st;
  return ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

// Reads one stored payload with pread.
class DirPayloadFile : public PayloadFile {
 public:
  DirPayloadFile(Fd fd, std::string path, int64_t size)
      : fd_(std::move(fd)), path_(std::move(path)), size_(size) {}
  size_t pread(uint64_t offset, uint8_t* buf, size_t cap) override {
    for (;;) {
      ssize_t n = ::pread(fd_.get(), buf, cap, static_cast<off_t>(offset));
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      throw sys_error("cannot read payload", path_, errno);
    }
  }
  int64_t size() const override { return size_; }

 private:
  Fd fd_;
  std::string path_;
  int64_t size_;
};

// A payload served from the layer's pack (dir_pack.h): its range, read through the reader's
// read-ahead window.
class PackedPayloadFile : public PayloadFile {
 public:
  PackedPayloadFile(std::shared_ptr<PackReader> pack, uint64_t offset, uint64_t size)
      : pack_(std::move(pack)), offset_(offset), size_(size) {}
  size_t pread(uint64_t offset, uint8_t* buf, size_t cap) override {
    if (offset >= size_) return 0;
    size_t n = static_cast<size_t>(std::min<uint64_t>(cap, size_ - offset));
    pack_->read(offset_ + offset, buf, n);
    return n;
  }
  int64_t size() const override { return static_cast<int64_t>(size_); }
  uint64_t pack_offset() const { return offset_; }

 private:
  std::shared_ptr<PackReader> pack_;
  uint64_t offset_, size_;
};

// A verification's payload: the tree file's bytes; each read is compared with the same bytes of
// the pack. A difference is noted in *mismatch, and the session reports it at its next open()
// or finish(): by then the caller has checked the tree's bytes against the record's sums, so
// that a changed tree file is reported as such, and only a damaged pack as the pack's.
class CheckedPayloadFile : public PayloadFile {
 public:
  CheckedPayloadFile(std::unique_ptr<PayloadFile> tree, std::shared_ptr<PackReader> pack, uint64_t offset,
                     uint64_t size, std::string path, std::string* mismatch)
      : tree_(std::move(tree)), pack_(std::move(pack)), offset_(offset), size_(size), path_(std::move(path)),
        mismatch_(mismatch) {
    if (tree_->size() >= 0 && static_cast<uint64_t>(tree_->size()) != size_)
      note("the pack holds " + std::to_string(size_) + " bytes, the file " + std::to_string(tree_->size()));
  }
  size_t pread(uint64_t offset, uint8_t* buf, size_t cap) override {
    size_t n = tree_->pread(offset, buf, cap);
    if (n == 0 || !mismatch_->empty()) return n;
    if (offset >= size_) {
      note("the file is longer than the pack's copy");
      return n;
    }
    const size_t m = static_cast<size_t>(std::min<uint64_t>(n, size_ - offset));
    if (cmp_.size() < m) cmp_.resize(m);
    pack_->read(offset_ + offset, cmp_.data(), m);
    if (m < n) note("the file is longer than the pack's copy");
    else if (std::memcmp(cmp_.data(), buf, m) != 0)
      note("bytes " + std::to_string(offset) + " to " + std::to_string(offset + m) + " differ from the file's");
    return n;
  }
  int64_t size() const override { return tree_->size(); }

 private:
  void note(const std::string& why) {
    if (mismatch_->empty())
      *mismatch_ = "the payload pack of layer " + pack_->layer_id() + " does not match '" + path_ + "': " + why;
  }
  std::unique_ptr<PayloadFile> tree_;
  std::shared_ptr<PackReader> pack_;
  uint64_t offset_, size_;
  std::string path_;
  std::string* mismatch_;  // the session's
  std::vector<uint8_t> cmp_;
};

// Opens payloads in stream order. Memory: the relocation index (normally empty or tiny) plus
// one counter per path that appears in it.
//
// Fast path (stream order is walk order, so consecutive payloads mostly share a directory): the
// parent directory of the last payload stays open (O_PATH, reached with every component a real
// directory: one openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or the component walk), and
// a payload costs fstatat + openat (O_NOATIME) + close. The fstatat comes first so that nothing
// but a regular file is ever opened (a device or FIFO node where a payload should be is
// reported, never opened), and it gives the size. Any failure on the fast path re-runs the
// original lookup (open_slow), which gives the errors and messages and checks the opened file
// again with fstat.
class DirPayloadSession : public PayloadSession {
 public:
  // verify: payloads come from the tree; a packed one is compared with its pack bytes.
  DirPayloadSession(const LayerPaths& lp, bool verify)
      : diff_(open_layer_dir(lp, lp.diff, true)), meta_(open_layer_dir(lp, lp.meta, true)), verify_(verify) {
    pack_ = PackReader::open(lp, meta_.get());
    pack_path_ = lp.meta + "/" + kPackFile;
    std::string data;
    std::string ip = lp.meta + "/" + kPayloadsFile;
    if (dirfs::read_file(meta_.get(), kPayloadsFile, data, kMaxMetaFile, ip)) {
      for (auto& r : decode_index(data, ip)) index_[r.path][r.occurrence] = std::move(r.file);
    }
  }

  std::unique_ptr<PayloadFile> open(const std::string& path) override {
    if (!dirfs::valid_clean_path(path, true))
      throw Error(Code::Inval, "invalid payload path: '" + path + "'").with_path(path);
    check_mismatch();
    ++ordinal_;
    uint64_t poff = 0, psize = 0;
    if (pack_ && pack_->lookup(ordinal_, &poff, &psize)) {
      // Relocation bookkeeping goes on as if the tree were read (a later occurrence's number).
      if (!index_.empty() && index_.count(path)) ++seen_[path];
      if (!verify_) return std::make_unique<PackedPayloadFile>(pack_, poff, psize);
      return std::make_unique<CheckedPayloadFile>(open_tree(path, true), pack_, poff, psize, path,
                                                  mismatch_.get());
    }
    return open_tree(path, false);
  }

  void finish() override {
    check_mismatch();
    if (pack_) pack_->finish(ordinal_);
  }

  // An export's packed payloads (a verification reads the tree: CheckedPayloadFile is not one).
  bool batchable(const PayloadFile& f) const override {
    return dynamic_cast<const PackedPayloadFile*>(&f) != nullptr;
  }

  // Each run of payloads that lie back to back in the pack: one preadv, scattered to their
  // places in the caller's output.
  void read_batch(const BatchRead* reads, size_t n) override {
    size_t i = 0;
    while (i < n) {
      const uint64_t start = run_start(reads[i]);
      uint64_t end = start;
      iov_.clear();
      size_t j = i;
      for (; j < n; ++j) {
        if (run_start(reads[j]) != end || end == UINT64_MAX) break;
        iov_.push_back({reads[j].dst, reads[j].size});
        end += reads[j].size;
      }
      if (j == i) {  // not a packed payload of its own size: read as any file
        PayloadSession::read_batch(reads + i, 1);
        ++i;
        continue;
      }
      pack_->read_into(start, iov_.data(), iov_.size(), static_cast<size_t>(end - start));
      i = j;
    }
  }

 private:
  // Where r's bytes begin in the pack, or UINT64_MAX when r is not a whole packed payload.
  static uint64_t run_start(const BatchRead& r) {
    auto* p = dynamic_cast<const PackedPayloadFile*>(r.file);
    if (!p || static_cast<uint64_t>(p->size()) != r.size) return UINT64_MAX;
    return p->pack_offset();
  }

  void check_mismatch() {
    if (mismatch_->empty()) return;
    throw Error(Code::Corrupt, *mismatch_ + ". This may be because internal files in the layer store were modified")
        .with_path(pack_path_);
  }

  // The payload from the tree (or meta/reloc). counted: the occurrence was counted already.
  std::unique_ptr<PayloadFile> open_tree(const std::string& path, bool counted) {
    const std::string* file = nullptr;
    if (!index_.empty()) {
      auto it = index_.find(path);
      if (it != index_.end()) {
        uint32_t occ = counted ? seen_[path] : ++seen_[path];
        auto jt = it->second.find(occ);
        if (jt != it->second.end()) file = &jt->second;
      }
    }
    bool in_meta = file != nullptr;
    const std::string& rel = file ? *file : path;
    if (!rel.empty()) {
      if (auto f = open_fast(in_meta, rel, path)) return f;
    }
    return open_slow(in_meta, rel, path);
  }

  // Returns null when anything is unexpected: the caller then takes the slow path.
  std::unique_ptr<PayloadFile> open_fast(bool in_meta, const std::string& rel, const std::string& path) {
    std::string_view dir = dirfs::dir_of(rel);
    if (!parent_.valid() || parent_in_meta_ != in_meta || parent_dir_ != dir) {
      parent_.reset();
      dirfs::WalkResult w = dirfs::walk_parent(in_meta ? meta_.get() : diff_.get(), rel, rel);
      if (w.status != dirfs::Walk::Ok) return nullptr;
      parent_ = std::move(w.parent);
      parent_in_meta_ = in_meta;
      parent_dir_.assign(dir);
    }
    std::string base(dirfs::base_of(rel));
    struct stat st;
    if (::fstatat(parent_.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
      return nullptr;
    Fd fd = open_payload(parent_.get(), base);
    if (!fd.valid()) return nullptr;
    // The fstatat above is the regular-file check and the size: no second fstat. (Something
    // swapped in between would fail the record's checksums; the slow path checks after opening.)
    return std::make_unique<DirPayloadFile>(std::move(fd), path, static_cast<int64_t>(st.st_size));
  }

  // O_NOATIME: an export only reads, and must not dirty one inode per payload on the first
  // read after a register (the apply set old access times). It needs the file's owner or
  // CAP_FOWNER; where refused (EPERM), payloads open without it from then on.
  Fd open_payload(int parent, const std::string& base) {
    constexpr int kFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    if (noatime_) {
      Fd fd(::openat(parent, base.c_str(), kFlags | O_NOATIME));
      if (fd.valid() || errno != EPERM) return fd;
      noatime_ = false;
    }
    return Fd(::openat(parent, base.c_str(), kFlags));
  }

  std::unique_ptr<PayloadFile> finish(Fd fd, const std::string& path) {
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) throw sys_error("cannot stat payload", path, errno);
    if (!S_ISREG(st.st_mode))
      throw Error(Code::Corrupt, "layer payload is not a regular file: '" + path + "'").with_path(path);
    return std::make_unique<DirPayloadFile>(std::move(fd), path, static_cast<int64_t>(st.st_size));
  }

  // The original lookup, component by component: exact errors for every failure.
  std::unique_ptr<PayloadFile> open_slow(bool in_meta, const std::string& rel, const std::string& path) {
    int root = in_meta ? meta_.get() : diff_.get();
    Fd parent;
    struct stat st;
    if (rel.empty() || !dirfs::lookup(root, rel, parent, st))
      throw Error(Code::Corrupt, "layer payload missing: '" + path + "'").with_path(path);
    if (!S_ISREG(st.st_mode))
      throw Error(Code::Corrupt, "layer payload is not a regular file: '" + path + "'").with_path(path);
    std::string base(dirfs::base_of(rel));
    Fd fd = open_payload(parent.get(), base);
    if (!fd.valid()) {
      if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)
        throw Error(Code::Corrupt, "layer payload missing: '" + path + "'").with_path(path);
      throw sys_error("cannot open payload", path, errno);
    }
    return finish(std::move(fd), path);
  }

  Fd diff_, meta_;
  bool verify_;
  std::shared_ptr<PackReader> pack_;  // null: the layer has no payload pack
  std::vector<struct iovec> iov_;     // read_batch's
  uint64_t ordinal_ = 0;              // payloads opened so far
  std::string pack_path_;
  // A verification's pack difference (CheckedPayloadFile), reported at the next open/finish.
  std::unique_ptr<std::string> mismatch_ = std::make_unique<std::string>();
  std::unordered_map<std::string, std::unordered_map<uint32_t, std::string>> index_;
  std::unordered_map<std::string, uint32_t> seen_;
  // The directory of the last payload opened (the fast path's cache).
  Fd parent_;
  bool parent_in_meta_ = false;
  std::string parent_dir_;
  bool noatime_ = true;  // until the file system refuses O_NOATIME (EPERM)
};

}  // namespace

void DirDriver::require_init() const {
  if (root_.empty()) throw Error(Code::Inval, "dir driver used before init()");
}

std::string DirDriver::layer_dir(const std::string& id) const { return root_ + "/" + id; }

std::vector<std::string> DirDriver::init_impl(const std::string& store_root, bool cleanup, bool want_ids) {
  if (store_root.empty()) throw Error(Code::Inval, "empty store root");
  if (::mkdir(store_root.c_str(), 0711) != 0 && errno != EEXIST)
    throw sys_error("cannot create store root", store_root, errno);
  // Canonical (symlink-free) root: libarchive's symlink checks walk absolute paths from "/".
  char* rp = ::realpath(store_root.c_str(), nullptr);
  if (!rp) throw sys_error("cannot resolve store root", store_root, errno);
  std::string root = std::string(rp) + "/" + kDriverDir;
  std::free(rp);
  if (::mkdir(root.c_str(), 0711) != 0 && errno != EEXIST)
    throw sys_error("cannot create driver directory", root, errno);
  struct stat st;
  if (::lstat(root.c_str(), &st) != 0) throw sys_error("cannot stat", root, errno);
  if (!S_ISDIR(st.st_mode)) throw Error(Code::Io, "not a directory: " + root).with_path(root);
  Fd rootfd = dirfs::open_dir(root);
  std::vector<std::string> ids;
  if (!want_ids) {
    // The layout needs no migration: only the leftovers matter, and only to an open alone.
    std::string data, want = std::string(dirdrv::kFormatMagic) + '\0' + std::to_string(dirdrv::kFormatVersion) + '\0';
    if (dirfs::read_file(rootfd.get(), dirdrv::kFormatFile, data, 4096, root + "/" + dirdrv::kFormatFile) && data == want) {
      if (cleanup)
        dirfs::for_each_dot_entry(rootfd.get(), root, [&](const std::string& name) {
          if (name.rfind(".tmp-", 0) == 0 || name.rfind(".removing-", 0) == 0)
            dirfs::remove_tree(rootfd.get(), name, root + "/" + name);
        });
      root_ = root;
      return ids;
    }
  }
  auto entries = dirfs::list_dir(rootfd.get(), root);
  ids.reserve(entries.size());
  for (auto& [name, type] : entries) {
    if (name.rfind(".tmp-", 0) == 0 || name.rfind(".removing-", 0) == 0) {
      // Left by a crash during create or remove: never a complete layer. With other users of
      // the store, maybe their work in progress: kept for an init() that runs alone.
      if (!cleanup) continue;
      dirfs::remove_tree(rootfd.get(), name, root + "/" + name);
      continue;
    }
    if (name[0] == '.') continue;
    // d_type answers without a stat on most file systems; DT_UNKNOWN asks.
    if (type == DT_UNKNOWN ? !is_dir_at(rootfd.get(), name) : type != DT_DIR) continue;
    ids.push_back(std::move(name));
  }
  std::sort(ids.begin(), ids.end());
  root_ = root;
  upgrade_layout(rootfd.get(), ids);
  return ids;
}

void DirDriver::attach(const std::string& store_root) {
  char* rp = ::realpath(store_root.c_str(), nullptr);
  if (!rp) throw sys_error("cannot resolve store root", store_root, errno);
  std::string root = std::string(rp) + "/" + kDriverDir;
  std::free(rp);
  struct stat st;
  if (::lstat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error(Code::Io, "not a directory: " + root).with_path(root);
  root_ = root;
}

// The driver directory's layout version (<root>/dir/.format). Version 1 (no file) kept deletions
// only in meta/; version 2 makes every layer overlay-ready. Opening a version-1 store migrates
// it here: each applied layer without meta/overlay gets its whiteout objects and opaque
// attributes (dirdrv::migrate_layer: idempotent, its marker written last), then the format
// file is written atomically. A crash in between leaves version 1, and the next open finishes.
// A newer version than this library knows is refused.
void DirDriver::upgrade_layout(int rootfd, const std::vector<std::string>& ids) {
  std::string data;
  std::string what = root_ + "/" + dirdrv::kFormatFile;
  std::string want = std::string(dirdrv::kFormatMagic) + '\0' + std::to_string(dirdrv::kFormatVersion) + '\0';
  if (dirfs::read_file(rootfd, dirdrv::kFormatFile, data, 4096, what)) {
    if (data == want) return;
    std::string prefix = std::string(dirdrv::kFormatMagic) + '\0';
    if (data.rfind(prefix, 0) == 0)
      throw Error(Code::Unsupported, "the dir driver layout of this store (" + what + ": version " +
                                         data.substr(prefix.size(), data.size() - prefix.size() - 1) +
                                         ") is newer than this library supports (version " +
                                         std::to_string(dirdrv::kFormatVersion) + ")")
          .with_path(what);
    throw Error(Code::Corrupt, "invalid layout version file: " + what).with_path(what);
  }
  for (auto& id : ids) {
    LayerPaths lp = paths_of(root_, id);
    Fd mfd(::open(lp.meta.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (!mfd.valid() || ::fstatat(mfd.get(), dirdrv::kAppliedFile, &st, AT_SYMLINK_NOFOLLOW) != 0)
      continue;  // not applied (yet): apply writes the new layout itself
    dirdrv::migrate_layer(lp);
  }
  dirfs::write_file_atomic(rootfd, dirdrv::kFormatFile, want, what);
}

std::vector<std::string> DirDriver::lower_dirs(const std::string& id, bool* userxattr) const {
  require_init();
  check_id(id);
  std::vector<std::string> out;
  int trusted = 0, user = 0;
  for (auto& l : chain(id)) {
    LayerPaths lp = paths_of(root_, l);
    dirdrv::LayerCuts cuts;
    cuts.load(lp);
    auto form = dirdrv::read_overlay_marker(lp);
    if (!form)
      throw Error(Code::Unsupported, "layer " + l + " is stored in the layout of an older version (no meta/overlay): "
                                     "opening the store with this version migrates it (any `rolayer` command does)");
    if (!cuts.whiteouts.empty() || !cuts.opaque.empty()) (*form == dirdrv::OverlayForm::Trusted ? trusted : user)++;
    out.push_back(lp.diff);
    if (cuts.opaque.count(std::string())) break;  // nothing below an opaque root shows
  }
  if (trusted && user)
    throw Error(Code::Unsupported, "the chain of " + id + " mixes layers stored by root (trusted.overlay.* "
                                   "markers) and by an unprivileged user (user.overlay.*): it cannot be mounted");
  if (userxattr) *userxattr = user > 0 || (trusted == 0 && dirdrv::current_form() == dirdrv::OverlayForm::User);
  return out;
}

std::string DirDriver::empty_dir() const {
  require_init();
  std::string p = root_ + "/.empty";
  if (::mkdir(p.c_str(), 0555) != 0 && errno != EEXIST) throw sys_error("cannot create", p, errno);
  return p;
}

void DirDriver::create(const std::string& id, const std::string& parent) {
  require_init();
  check_id(id);
  if (!parent.empty()) check_id(parent);
  Fd rootfd = dirfs::open_dir(root_);
  struct stat st;
  if (::fstatat(rootfd.get(), id.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
    throw Error(Code::Exists, "layer storage already exists: " + id).with_path(layer_dir(id));
  if (!parent.empty() && !is_dir_at(rootfd.get(), parent))
    throw Error(Code::NotFound, "parent layer not found: " + parent);
  std::string tmp = ".tmp-" + dirfs::random_suffix();
  std::string tmp_path = root_ + "/" + tmp;
  try {
    if (::mkdirat(rootfd.get(), tmp.c_str(), 0700) != 0) throw sys_error("cannot create", tmp_path, errno);
    Fd tfd(::openat(rootfd.get(), tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!tfd.valid()) throw sys_error("cannot open", tmp_path, errno);
    if (::mkdirat(tfd.get(), kDiffDir, 0755) != 0 || ::fchmodat(tfd.get(), kDiffDir, 0755, 0) != 0)
      throw sys_error("cannot create", tmp_path + "/" + kDiffDir, errno);
    if (::mkdirat(tfd.get(), kMetaDir, 0700) != 0) throw sys_error("cannot create", tmp_path + "/" + kMetaDir, errno);
    Fd mfd(::openat(tfd.get(), kMetaDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!mfd.valid()) throw sys_error("cannot open", tmp_path + "/" + kMetaDir, errno);
    dirfs::write_file_atomic(mfd.get(), kParentFile, parent, tmp_path + "/meta/parent");
    if (::fchmod(tfd.get(), 0711) != 0) throw sys_error("cannot chmod", tmp_path, errno);
    dirfs::fsync_fd(tfd.get(), tmp_path);
    if (::renameat2(rootfd.get(), tmp.c_str(), rootfd.get(), id.c_str(), RENAME_NOREPLACE) != 0) {
      if (errno == EEXIST)
        throw Error(Code::Exists, "layer storage already exists: " + id).with_path(layer_dir(id));
      throw sys_error("cannot rename", tmp_path, errno);
    }
    dirfs::fsync_fd(rootfd.get(), root_);
  } catch (...) {
    try {
      dirfs::remove_tree(rootfd.get(), tmp, tmp_path);
    } catch (...) {
    }
    throw;
  }
}

void DirDriver::remove(const std::string& id) {
  require_init();
  check_id(id);
  Fd rootfd = dirfs::open_dir(root_);
  // Rename first: the id disappears atomically, and init() finishes an interrupted removal.
  std::string tmp = ".removing-" + dirfs::random_suffix();
  if (::renameat(rootfd.get(), id.c_str(), rootfd.get(), tmp.c_str()) != 0) {
    if (errno == ENOENT) return;
    throw sys_error("cannot remove layer", layer_dir(id), errno);
  }
  dirfs::fsync_fd(rootfd.get(), root_);
  dirfs::remove_tree(rootfd.get(), tmp, root_ + "/" + tmp);
}

std::string DirDriver::read_parent(const std::string& id) const {
  std::string p = layer_dir(id) + "/" + kMetaDir;
  Fd mfd;
  {
    int fd = ::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) throw Error(Code::Corrupt, "layer metadata missing: " + id).with_path(p);
      throw sys_error("cannot open", p, errno);
    }
    mfd.reset(fd);
  }
  std::string parent;
  if (!dirfs::read_file(mfd.get(), kParentFile, parent, 4096, p + "/" + kParentFile))
    throw Error(Code::Corrupt, "layer parent record missing: " + id).with_path(p + "/" + kParentFile);
  if (!parent.empty()) {
    try {
      check_id(parent);
    } catch (const Error&) {
      throw Error(Code::Corrupt, "invalid parent record in layer " + id).with_path(p + "/" + kParentFile);
    }
  }
  return parent;
}

std::vector<std::string> DirDriver::chain(const std::string& id) const {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  std::string cur = id;
  Fd rootfd = dirfs::open_dir(root_);
  while (!cur.empty()) {
    if (!is_dir_at(rootfd.get(), cur)) {
      if (out.empty())
        throw Error(Code::Corrupt, "storage of layer " + id + " is missing").with_path(layer_dir(id));
      throw Error(Code::Corrupt, "parent layer " + cur + " of " + out.back() + " is missing")
          .with_path(layer_dir(cur));
    }
    if (!seen.insert(cur).second || out.size() > 4096)
      throw Error(Code::Corrupt, "cyclic layer parent chain at " + cur).with_path(layer_dir(cur));
    out.push_back(cur);
    cur = read_parent(cur);
  }
  return out;
}

int64_t DirDriver::apply_diff(const std::string& id, const std::string& parent, ByteSource& tar) {
  require_init();
  check_id(id);
  if (!parent.empty()) check_id(parent);
  Fd rootfd = dirfs::open_dir(root_);
  if (!is_dir_at(rootfd.get(), id))
    throw Error(Code::Corrupt, "storage of layer " + id + " is missing").with_path(layer_dir(id));
  std::string recorded = read_parent(id);
  if (recorded != parent)
    throw Error(Code::Inval, "layer " + id + " was created on parent '" + recorded +
                                 "', not '" + parent + "'");
  LayerPaths lp = paths_of(root_, id);
  {
    Fd mfd = open_layer_dir(lp, lp.meta, true);
    struct stat st;
    if (::fstatat(mfd.get(), kAppliedFile, &st, AT_SYMLINK_NOFOLLOW) == 0)
      throw Error(Code::Exists, "layer already applied: " + id).with_path(lp.dir);
  }
  return apply_layer(lp, lower_paths(parent), tar, pack_max_.load());
}

int64_t DirDriver::apply_staged(const std::string& id, ByteSource& tar, bool* needs_parent) {
  require_init();
  check_id(id);
  Fd rootfd = dirfs::open_dir(root_);
  if (!is_dir_at(rootfd.get(), id))
    throw Error(Code::Corrupt, "storage of layer " + id + " is missing").with_path(layer_dir(id));
  if (!read_parent(id).empty()) throw Error(Code::Inval, "layer " + id + " was not created for staging");
  LayerPaths lp = paths_of(root_, id);
  {
    Fd mfd = open_layer_dir(lp, lp.meta, true);
    struct stat st;
    if (::fstatat(mfd.get(), kAppliedFile, &st, AT_SYMLINK_NOFOLLOW) == 0)
      throw Error(Code::Exists, "layer already applied: " + id).with_path(lp.dir);
  }
  return apply_layer_staged(lp, tar, needs_parent, pack_max_.load());
}

void DirDriver::set_parent(const std::string& id, const std::string& parent) {
  require_init();
  check_id(id);
  if (!parent.empty()) check_id(parent);
  Fd rootfd = dirfs::open_dir(root_);
  if (!is_dir_at(rootfd.get(), id))
    throw Error(Code::Corrupt, "storage of layer " + id + " is missing").with_path(layer_dir(id));
  if (!parent.empty() && !is_dir_at(rootfd.get(), parent))
    throw Error(Code::NotFound, "parent layer not found: " + parent);
  std::string recorded = read_parent(id);
  LayerPaths lp = paths_of(root_, id);
  Fd mfd = open_layer_dir(lp, lp.meta);
  if (recorded != parent) {
    if (!recorded.empty())
      throw Error(Code::Inval, "layer " + id + " has parent '" + recorded + "' already, not '" + parent + "'");
    // Written to a temporary name, fsynced, renamed over the old record, the folder fsynced.
    dirfs::write_file_atomic(mfd.get(), kParentFile, parent, lp.meta + "/" + kParentFile);
  }
  // Then the undeclared parent directories get the parent chain's metadata (after the parent
  // record: a failure in between leaves the layer on this parent only, where a repeat is right).
  struct stat st;
  if (::fstatat(mfd.get(), kStagedImplicitFile, &st, AT_SYMLINK_NOFOLLOW) != 0 &&
      ::fstatat(mfd.get(), kStagedDeclaredFile, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return;  // (the usual case: every directory was declared)
  fix_staged_layer(lp, lower_paths(parent));
}

std::vector<LayerPaths> DirDriver::lower_paths(const std::string& parent) const {
  std::vector<LayerPaths> lowers;
  if (!parent.empty())
    for (auto& l : chain(parent)) lowers.push_back(paths_of(root_, l));
  return lowers;
}

std::unique_ptr<ByteSource> DirDriver::diff(const std::string& id, const std::string& ancestor) {
  require_init();
  check_id(id);
  std::vector<std::string> ids = chain(id);
  size_t end = ids.size();
  if (!ancestor.empty()) {
    auto it = std::find(ids.begin() + 1, ids.end(), ancestor);
    if (it == ids.end())
      throw Error(Code::NotAncestor, "layer ID '" + ancestor +
                                         "' is not a parent of the specified layer: cannot "
                                         "provide diff to non-parent");
    end = static_cast<size_t>(it - ids.begin());
  }
  std::vector<LayerPaths> range;
  for (size_t i = 0; i < end; ++i) range.push_back(paths_of(root_, ids[i]));
  return open_diff_stream(std::move(range), !ancestor.empty());
}

std::unique_ptr<PayloadSession> DirDriver::payloads(const std::string& id) { return payload_session(id, false); }

std::unique_ptr<PayloadSession> DirDriver::verify_payloads(const std::string& id) { return payload_session(id, true); }

std::unique_ptr<PayloadSession> DirDriver::payload_session(const std::string& id, bool verify) {
  require_init();
  check_id(id);
  Fd rootfd = dirfs::open_dir(root_);
  if (!is_dir_at(rootfd.get(), id))
    throw Error(Code::Corrupt, "storage of layer " + id + " is missing").with_path(layer_dir(id));
  return std::make_unique<DirPayloadSession>(paths_of(root_, id), verify);
}

void DirDriver::set_payload_pack(uint64_t max_bytes) {
  if (max_bytes > kMaxPackThreshold)
    throw Error(Code::Inval, "payload pack threshold " + std::to_string(max_bytes) + " is above the maximum of " +
                                 std::to_string(kMaxPackThreshold) + " bytes");
  pack_max_.store(max_bytes);
}

std::vector<std::pair<std::string, std::string>> DirDriver::metadata(const std::string& id) {
  require_init();
  check_id(id);
  Fd rootfd = dirfs::open_dir(root_);
  if (!is_dir_at(rootfd.get(), id))
    throw Error(Code::Corrupt, "storage of layer " + id + " is missing").with_path(layer_dir(id));
  return {{"Path", paths_of(root_, id).diff}, {"Parent", read_parent(id)}};
}

std::unique_ptr<Driver> make_dir_driver() { return std::make_unique<DirDriver>(); }

}  // namespace rolayer
