// SPDX-License-Identifier: Apache-2.0
#include "store/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <thread>
#include <unordered_set>

#include "core/error.h"
#include "core/fault.h"
#include "core/fs.h"
#include "digest/pipelined.h"
#include "record/record.h"
#include "record/xxh3.h"
#include "store/flatten.h"
#include "store/link_targets.h"
#include "store/record_bind.h"
#include "store/state.h"
#include "tar/path.h"
#include "tar/scanned.h"
#include "tar/scanner.h"

namespace rolayer {

namespace {

constexpr int kSchemaVersion = 1;
constexpr size_t kRecordChunk = 256 * 1024;
constexpr size_t kMaxEntryPath = 64 * 1024;

const char* kSchema = R"SQL(
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layers (
  chain_id TEXT PRIMARY KEY,
  diff_id TEXT NOT NULL,
  parent TEXT REFERENCES layers(chain_id),
  depth INTEGER NOT NULL,
  cache_id TEXT NOT NULL UNIQUE,
  diff_size INTEGER NOT NULL,
  stream_size INTEGER NOT NULL,
  desc_media_type TEXT,
  desc_digest TEXT,
  desc_size INTEGER,
  has_record INTEGER NOT NULL,
  persistent INTEGER NOT NULL DEFAULT 0,
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
  chain_id TEXT NOT NULL REFERENCES layers(chain_id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (chain_id, seq)
) WITHOUT ROWID;
)SQL";

const char* kSchemaShared = R"SQL(
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  slot INTEGER NOT NULL,
  pid INTEGER NOT NULL,
  started INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS holds (
  session TEXT NOT NULL,
  chain_id TEXT NOT NULL,
  PRIMARY KEY (session, chain_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holds_chain ON holds(chain_id);
CREATE TABLE IF NOT EXISTS pins (
  name TEXT PRIMARY KEY,
  chain_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pins_chain ON pins(chain_id);
CREATE INDEX IF NOT EXISTS layers_parent ON layers(parent);
)SQL";

// Byte 0 of <root>/lock: every open store holds a shared (read) OFD lock on it for its life;
// an open that finds no other store takes it exclusively for a moment, to clean up what no
// live process can own (a driver's temporary folders). Bytes 1… are the sessions' slots.
constexpr off_t kSharedByte = 0;
constexpr int64_t kMaxSlots = 1 << 20;

[[noreturn]] void not_ours(const std::string& path, const std::string& what) {
  throw Error(Code::Corrupt, "the store's own " + path + " is " + what +
                                 ", not what the store made: refusing to use the store (nothing was changed)")
      .with_path(path);
}

// An entry of the store's root: false when absent, true when of the expected kind; anything
// else (a symbolic link, a FIFO, a device) is refused.
bool check_entry(int rootfd, const std::string& root, const std::string& name, bool dir) {
  struct stat st;
  std::string p = root + "/" + name;
  if (::fstatat(rootfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return false;
    throw_errno("stat " + p);
  }
  if (S_ISLNK(st.st_mode)) not_ours(p, "a symbolic link");
  if (dir && !S_ISDIR(st.st_mode)) not_ours(p, "not a directory");
  if (!dir && !S_ISREG(st.st_mode)) not_ours(p, "not a regular file");
  return true;
}

// Private to the owner: tightens a store file or folder that group/other can reach.
void tighten(int fd, const std::string& path, bool dir) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno("stat " + path);
  if ((st.st_mode & 077) == 0 || st.st_uid != ::geteuid()) return;
  if (::fchmod(fd, dir ? 0700 : 0600) != 0) throw_errno("chmod " + path);
}

// A folder of the store's root, created (0700) when missing and `create`; an invalid Fd when
// it is missing and not created.
fs::Fd open_own_dir(int rootfd, const std::string& root, const std::string& name, bool create, bool writable) {
  std::string p = root + "/" + name;
  if (!check_entry(rootfd, root, name, true)) {
    if (!create) return fs::Fd();
    ROLAYER_FAULT_POINT("fs.mkdir");
    if (::mkdirat(rootfd, name.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("mkdir " + p);
    check_entry(rootfd, root, name, true);
  }
  fs::Fd fd(::openat(rootfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ELOOP || errno == ENOTDIR) not_ours(p, "not a directory");
    throw_errno("open " + p);
  }
  if (writable) tighten(fd.get(), p, true);
  return fd;
}

std::vector<std::string> list_names(int dirfd, const std::string& path) {
  std::vector<std::string> out;
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno("open " + path);
  DIR* d = ::fdopendir(fd);
  if (!d) {
    int e = errno;
    ::close(fd);
    throw_errno("opendir " + path, e);
  }
  while (struct dirent* de = ::readdir(d))
    if (de->d_name[0] != '.') out.emplace_back(de->d_name);
  ::closedir(d);
  return out;
}

// Non-blocking OFD lock of one byte: true when taken, false when another open file
// description holds a conflicting lock.
bool ofd_lock(int fd, short type, off_t byte) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  for (;;) {
    if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return true;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EACCES) return false;
    throw_errno("lock the store's lock file");
  }
}

// Whether another open file description holds a lock on the byte.
bool ofd_locked_elsewhere(int fd, off_t byte) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: alive
  return fl.l_type != F_UNLCK;
}

// A transaction whose commit need not survive a power loss (holds die with the processes):
// no fsync of the log for it.
class Relaxed {
 public:
  explicit Relaxed(sql::Db& db) : db_(db) { db_.exec("PRAGMA synchronous=NORMAL"); }
  ~Relaxed() {
    try {
      db_.exec("PRAGMA synchronous=FULL");
    } catch (...) {
    }
  }

 private:
  sql::Db& db_;
};

[[noreturn]] void read_only_error(const std::string& root, const std::string& what) {
  throw Error(Code::Io, "cannot " + what + ": the store at " + root +
                            " is read-only (opened read-only, or on a read-only file system)")
      .with_errno(EROFS);
}

// The tee between the caller's input and the driver: hashes every byte (DiffID), scans and
// validates the archive, and records it when the driver needs a fidelity record.
//
// It is a tar::ScannedSource (lib/tar/scanned.h): a driver that would scan and check the same
// bytes again (the dir driver) attaches its handler instead and gets the tee's entries and
// verdicts. The tee's own verdict on the bytes of one read() still comes before the driver's,
// as when the driver scanned a read() only after the tee had: the driver's error is held until
// the tee has scanned the rest of that read().
class RegisterTee : public tar::ScannedSource, private tar::ScanHandler {
 public:
  RegisterTee(ByteSource& in, record::Writer* rec, LinkTargets* links = nullptr)
      : in_(in), rec_(rec), links_(links), scanner_(*this) {}

  bool attach(tar::CheckedScanHandler& handler) override {
    if (total_ != 0 || eof_ || failure_ || sink_) return false;
    sink_ = &handler;
    return true;
  }

  size_t read(uint8_t* buf, size_t cap) override {
    if (failure_) std::rethrow_exception(failure_);
    if (sink_failure_) std::rethrow_exception(sink_failure_);
    if (eof_) return 0;
    size_t n = 0;
    try {
      n = in_.read(buf, cap);
      if (n == 0) {
        eof_ = true;
        scanner_.finish();
      } else {
        sha_.update(buf, n);
        total_ += n;
        scanner_.feed(buf, n);
      }
    } catch (...) {
      failure_ = std::current_exception();
      throw;
    }
    // The tee accepted these bytes: the driver applies what is queued, then its verdict.
    dispatch();
    if (sink_failure_) std::rethrow_exception(sink_failure_);
    return n;
  }

  // Reads what the driver left, so that the DiffID covers every byte up to end of input.
  void drain() {
    if (eof_ && !failure_) return;  // the driver read to the end (the usual case)
    constexpr size_t kDrainBuf = 256 * 1024;
    std::unique_ptr<uint8_t[]> buf(new uint8_t[kDrainBuf]);  // not zero-filled: read() writes before use
    while (read(buf.get(), kDrainBuf) > 0) {
    }
  }

  std::exception_ptr failure() const { return failure_; }
  Digest diff_id() { return sha_.finish(); }
  uint64_t total() const { return total_; }
  int64_t diff_size() const { return diff_size_; }

 private:
  void on_raw(const uint8_t* data, size_t len) override {
    if (rec_) rec_->add_raw(data, len);
  }
  void on_entry(const tar::Entry& e) override {
    tar::SafetyChecker::Checked checked = safety_.check_entry(e);
    std::string& path = checked.path;
    if (links_) links_->see(path, checked.link_target, e.kind);  // lib/store/link_targets.h
    // The fidelity record stores paths up to 64 KiB; no file system takes more anyway.
    if (path.size() > kMaxEntryPath)
      throw Error(Code::Archive, "tar entry name is longer than " + std::to_string(kMaxEntryPath) + " bytes")
          .with_path(path.substr(0, 256));
    if (e.has_payload() && path.empty())
      throw Error(Code::Archive, "a regular-file entry names the layer's root directory").with_path(e.name);
    // Accepted: the attached driver gets it (before the record takes the path).
    if (sink_) queue_entry(e, checked);
    if (!e.has_payload()) return;
    diff_size_ += static_cast<int64_t>(e.real_size);
    if (!rec_) return;
    file_.type = record::Item::Type::File;
    file_.path = std::move(path);
    file_.size = e.payload_size;
    file_.fragments.clear();
    if (e.kind == tar::EntryKind::Sparse) {
      file_.fragments = e.sparse;
      // An all-hole sparse file still reads as sparse at export: one empty fragment at its end.
      if (file_.fragments.empty()) file_.fragments.push_back({e.real_size, 0});
    }
    xxh_.reset();
    blocks_.start(file_.size);
  }
  void on_payload(const uint8_t* data, size_t len) override {
    if (sink_) queue_.push_back({Event::Payload, data, len});
    if (!rec_) return;
    xxh_.update(data, len);
    blocks_.update(data, len);  // per-MiB sums: the export checks each block before it goes out
  }
  void on_entry_end() override {
    if (sink_) queue_.push_back({Event::End, nullptr, 0});
    if (!rec_ || file_.type != record::Item::Type::File) return;
    file_.xxh3 = xxh_.digest();
    file_.blocks = blocks_.finish();
    rec_->add_file(file_);
    file_.type = record::Item::Type::Raw;
  }

  ByteSource& in_;
  record::Writer* rec_;
  LinkTargets* links_;
  tar::Scanner scanner_;
  tar::SafetyChecker safety_;
  PipelinedHasher sha_;  // the DiffID, hashed on a worker thread once the stream is long
  record::Xxh3 xxh_;
  record::BlockSums blocks_;
  record::Item file_;
  uint64_t total_ = 0;
  int64_t diff_size_ = 0;
  bool eof_ = false;
  std::exception_ptr failure_;            // the tee's own verdict (the input, the archive)
  tar::CheckedScanHandler* sink_ = nullptr;  // the attached driver's handler
  std::exception_ptr sink_failure_;       // its error, thrown once the tee accepted the bytes

  // The attached driver's events of the current read(), applied once the tee has scanned the
  // whole read (dispatch): the tee's pass (scanner, checker, record writer and its zstd) then
  // runs in one tight loop, as when the driver scanned a read() only after the tee, instead of
  // alternating with the driver's per-entry system calls, which evict zstd's tables (session 6
  // in bench/RESULTS.md). Memory stays bounded: only entries with at most kQueuedEntryBytes of
  // names, attributes and sparse map are copied (into slots reused across reads, so at most
  // one read's count of them, <= 2,048 per MiB); a bigger entry first applies what is queued and
  // goes to the driver at once. Payload events point into the caller's buffer, valid during
  // the read(). Every dispatch holds the driver's error (see read()), so the order of errors is
  // the same wherever the queue is cut.
  static constexpr size_t kQueuedEntryBytes = 512;
  struct Event {
    enum Kind : uint8_t { Entry, Payload, End } kind;
    const uint8_t* data;  // Payload
    size_t len;           // Payload: bytes; Entry: slot
  };
  static size_t entry_bytes(const tar::Entry& e, const tar::SafetyChecker::Checked& c) {
    size_t n = e.name.size() + e.linkname.size() + e.uname.size() + e.gname.size() + c.path.size() +
               c.link_target.size() + e.sparse.size() * sizeof(tar::SparseFragment);
    for (const auto& x : e.xattrs) n += x.first.size() + x.second.size() + 64;
    return n;
  }
  void queue_entry(const tar::Entry& e, const tar::SafetyChecker::Checked& c) {
    if (entry_bytes(e, c) > kQueuedEntryBytes) {
      dispatch();
      if (!sink_failure_) {
        try {
          sink_->on_checked_entry(e, c);
        } catch (...) {
          sink_failure_ = std::current_exception();
        }
      }
      return;
    }
    if (slots_used_ == slots_.size()) slots_.emplace_back();
    slots_[slots_used_].first = e;
    slots_[slots_used_].second = c;
    queue_.push_back({Event::Entry, nullptr, slots_used_++});
  }
  void dispatch() {
    for (const Event& ev : queue_) {
      if (sink_failure_) break;
      try {
        switch (ev.kind) {
          case Event::Entry:
            sink_->on_checked_entry(slots_[ev.len].first, slots_[ev.len].second);
            break;
          case Event::Payload:
            sink_->on_payload(ev.data, ev.len);
            break;
          case Event::End:
            sink_->on_entry_end();
            break;
        }
      } catch (...) {
        sink_failure_ = std::current_exception();
      }
    }
    queue_.clear();
    slots_used_ = 0;
  }
  std::vector<Event> queue_;
  std::vector<std::pair<tar::Entry, tar::SafetyChecker::Checked>> slots_;
  size_t slots_used_ = 0;
};

}  // namespace

// ---- StoreState ---------------------------------------------------------------------------

void StoreState::check_open() const {
  if (closed) throw Error(Code::Inval, "the store was closed");
}

void StoreState::check_writable() const {
  if (read_only) read_only_error(root, "change the store");
}

std::shared_ptr<LayerNode> StoreState::load_locked(const std::string& chain_id, int level) {
  // A chain longer than the maximum depth (rows changed into a loop) cannot be served.
  if (level > kMaxDepth) return nullptr;
  sql::Stmt q(*db,
              "SELECT diff_id, parent, depth, cache_id, diff_size, stream_size, desc_media_type, desc_digest, "
              "desc_size, has_record FROM layers WHERE chain_id = ?");
  q.bind(1, chain_id);
  if (!q.step()) return nullptr;
  std::string cache_id = q.text(3);
  auto cached = node_locked(chain_id);
  if (cached && cached->cache_id == cache_id) return cached;
  auto n = std::make_shared<LayerNode>();
  std::string parent;
  try {
    n->chain_id = Digest::parse(chain_id);
    n->diff_id = Digest::parse(q.text(0));
  } catch (const Error&) {
    return nullptr;  // an unreadable row: the layer is reported missing
  }
  if (!q.is_null(1)) parent = q.text(1);
  n->depth = static_cast<int>(q.int64(2));
  n->cache_id = cache_id;
  n->diff_size = q.int64(4);
  n->stream_size = q.int64(5);
  if (!q.is_null(6)) n->descriptor.media_type = q.text(6);
  if (!q.is_null(7)) n->descriptor.digest = q.text(7);
  n->descriptor.size = q.is_null(8) ? -1 : q.int64(8);
  n->has_record = q.int64(9) != 0;
  q.reset();
  if (!parent.empty()) {
    if (parent == chain_id) return nullptr;
    n->parent = load_locked(parent, level + 1);
    if (!n->parent) return nullptr;  // parent row unreadable: the child cannot be served
  }
  // A node still held under an old cache id cannot be: a held layer is never deleted. Replace
  // only what nobody holds here.
  if (cached && cached->handles > 0) return cached;
  remember_locked(n);
  return n;
}

std::shared_ptr<LayerNode> StoreState::node_locked(const std::string& chain_id) {
  auto it = nodes.find(chain_id);
  return it == nodes.end() ? nullptr : it->second.lock();
}

std::shared_ptr<LayerNode> StoreState::held_locked(const std::string& chain_id) {
  auto n = node_locked(chain_id);
  return n && n->handles > 0 ? n : nullptr;
}

void StoreState::remember_locked(const std::shared_ptr<LayerNode>& node) {
  nodes[node->chain_id.str()] = node;
  if (nodes.size() < nodes_sweep_at) return;
  std::erase_if(nodes, [](const auto& kv) { return kv.second.expired(); });
  nodes_sweep_at = std::max<size_t>(1024, 2 * nodes.size());
}

void StoreState::hold_locked(const std::shared_ptr<LayerNode>& node) {
  if (node->handles == 0 && !session.empty())
    sql::Stmt(*db, "INSERT OR IGNORE INTO holds (session, chain_id) VALUES (?, ?)")
        .bind(1, session).bind(2, node->chain_id.str()).run();
  node->handles++;
  remember_locked(node);
}

std::unique_ptr<LayerRef> StoreState::new_ref(const std::shared_ptr<StoreState>& self,
                                              const std::shared_ptr<LayerNode>& node) {
  if (node->handles == 0 && !session.empty()) {
    Relaxed r(*db);
    sql::Transaction tx(*db);
    hold_locked(node);
    tx.commit();
  } else {
    hold_locked(node);
  }
  return std::unique_ptr<LayerRef>(new LayerRef(self, node));
}

int64_t StoreState::chain_size(const LayerNode& n) const {
  int64_t s = 0;
  for (const LayerNode* p = &n; p; p = p->parent.get()) s += p->diff_size;
  return s;
}

bool StoreState::session_alive(const std::string& id) {
  if (id == session) return !closed;
  if (!lock_fd) return true;  // cannot tell
  sql::Stmt q(*db, "SELECT slot FROM sessions WHERE id = ?");
  q.bind(1, id);
  if (!q.step()) return false;
  return ofd_locked_elsewhere(lock_fd.get(), static_cast<off_t>(q.int64(0)));
}

std::vector<Removed> StoreState::collect_locked(std::string chain, bool asked, std::vector<std::string>& doomed) {
  std::vector<Removed> out;
  if (read_only) return out;
  while (!chain.empty()) {
    if (held_locked(chain)) break;  // held here
    {
      // A cheap look first: most handles dropped have nothing to collect.
      sql::Stmt q(*db, "SELECT persistent, release_requested FROM layers WHERE chain_id = ?");
      q.bind(1, chain);
      if (!q.step() || q.int64(0) > 0 || !(asked || q.int64(1) != 0)) break;
    }
    sql::Transaction tx(*db);
    std::string cache_id, parent, diff_id;
    int64_t diff_size = 0, size = 0;
    {
      sql::Stmt q(*db,
                  "SELECT cache_id, parent, diff_id, diff_size, persistent, release_requested FROM layers "
                  "WHERE chain_id = ?");
      q.bind(1, chain);
      if (!q.step() || q.int64(4) > 0 || !(asked || q.int64(5) != 0)) break;
      cache_id = q.text(0);
      if (!q.is_null(1)) parent = q.text(1);
      diff_id = q.text(2);
      diff_size = q.int64(3);
    }
    {
      sql::Stmt q(*db, "SELECT 1 FROM layers WHERE parent = ? LIMIT 1");
      q.bind(1, chain);
      if (q.step()) break;  // a child keeps it
    }
    bool held = false;
    {
      std::vector<std::string> holders;
      sql::Stmt q(*db, "SELECT session FROM holds WHERE chain_id = ?");
      q.bind(1, chain);
      while (q.step()) holders.push_back(q.text(0));
      q.reset();
      for (const auto& h : holders)
        if (session_alive(h)) held = true;
    }
    if (held) break;  // it goes when the last live holder lets go
    {
      sql::Stmt q(*db, "SELECT 1 FROM pins WHERE chain_id = ? LIMIT 1");
      q.bind(1, chain);
      if (q.step()) break;  // a pin (a mount's) keeps it; the unpin collects it
    }
    {
      sql::Stmt q(*db,
                  "WITH RECURSIVE c(id, p, s) AS (SELECT chain_id, parent, diff_size FROM layers WHERE chain_id = ? "
                  "UNION ALL SELECT l.chain_id, l.parent, l.diff_size FROM layers l JOIN c ON l.chain_id = c.p) "
                  "SELECT sum(s) FROM c");
      q.bind(1, chain);
      if (q.step()) size = q.int64(0);
    }
    mark_pending(cache_id);
    ROLAYER_FAULT_POINT("release.marked");
    sql::Stmt(*db, "DELETE FROM holds WHERE chain_id = ?").bind(1, chain).run();
    sql::Stmt(*db, "DELETE FROM records WHERE chain_id = ?").bind(1, chain).run();
    sql::Stmt(*db, "DELETE FROM layers WHERE chain_id = ?").bind(1, chain).run();
    // The cascade asks for the parent's release: if a stream or a handle (of any process)
    // still holds it, the parent goes when that last reference does.
    if (!parent.empty())
      sql::Stmt(*db, "UPDATE layers SET release_requested = 1 WHERE chain_id = ?").bind(1, parent).run();
    ROLAYER_FAULT_POINT("release.before_commit");
    tx.commit();
    ROLAYER_FAULT_POINT("release.row_deleted");
    nodes.erase(chain);
    doomed.push_back(cache_id);
    out.push_back({chain, diff_id, size, diff_size});
    chain = parent;
    asked = false;
  }
  return out;
}

std::vector<Removed> StoreState::sweep_locked(bool exclusive, std::vector<std::string>& doomed) {
  std::vector<Removed> out;
  if (read_only || session.empty()) return out;
  // Sessions that the database knows, and owners of holds, temporary files and marks.
  std::vector<std::string> ids;
  {
    sql::Stmt q(*db, "SELECT id FROM sessions UNION SELECT DISTINCT session FROM holds");
    while (q.step()) ids.push_back(q.text(0));
  }
  auto owner = [](const std::string& name) {
    auto dash = name.find('-');
    return dash == std::string::npos ? std::string() : name.substr(0, dash);
  };
  auto tmp_names = list_names(tmp_fd.get(), tmp_dir);
  auto marks = list_names(pending_fd.get(), pending_dir);
  for (const auto* v : {&tmp_names, &marks})
    for (const auto& n : *v) ids.push_back(owner(n));
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::unordered_set<std::string> dead;
  for (const auto& id : ids)
    if (id.empty() ? exclusive : !session_alive(id)) dead.insert(id);
  if (dead.empty()) return out;
  // Their holds go; what they held with no persistent reference is released (a layer a
  // killed process registered and had not retained yet, for instance).
  std::vector<std::string> released;
  for (const auto& id : dead) {
    if (id.empty()) continue;
    sql::Transaction tx(*db);
    {
      sql::Stmt q(*db, "SELECT h.chain_id FROM holds h JOIN layers l ON l.chain_id = h.chain_id "
                       "WHERE h.session = ? AND l.persistent = 0");
      q.bind(1, id);
      while (q.step()) released.push_back(q.text(0));
    }
    sql::Stmt(*db, "UPDATE layers SET release_requested = 1 WHERE persistent = 0 AND chain_id IN "
                   "(SELECT chain_id FROM holds WHERE session = ?)")
        .bind(1, id).run();
    sql::Stmt(*db, "DELETE FROM holds WHERE session = ?").bind(1, id).run();
    sql::Stmt(*db, "DELETE FROM sessions WHERE id = ?").bind(1, id).run();
    tx.commit();
  }
  for (const auto& c : released) {
    auto r = collect_locked(c, false, doomed);
    out.insert(out.end(), r.begin(), r.end());
  }
  // Their temporary files, and the driver data their intent marks name that no row owns.
  for (const auto& n : tmp_names)
    if (dead.count(owner(n))) {
      try {
        fs::remove_all_at(tmp_fd.get(), n);
      } catch (...) {
      }
    }
  std::unordered_set<std::string> owned;
  bool loaded = false;
  for (const auto& n : marks) {
    if (!dead.count(owner(n))) continue;
    if (!loaded) {
      sql::Stmt all(*db, "SELECT cache_id FROM layers");
      while (all.step()) owned.insert(all.text(0));
      loaded = true;
    }
    std::string id = owner(n).empty() ? n : n.substr(n.find('-') + 1);
    try {
      if (!owned.count(id)) driver->remove(id);
      ::unlinkat(pending_fd.get(), n.c_str(), 0);
    } catch (...) {
    }
  }
  return out;
}

void StoreState::remove_driver_data(const std::vector<std::string>& doomed) {
  // The metadata is gone already; driver data left by a failure here is an orphan that the
  // intent mark names: collected once this session ends.
  for (const auto& id : doomed) {
    try {
      ROLAYER_FAULT_POINT("release.removing_data");
      driver->remove(id);
      ROLAYER_FAULT_POINT("release.data_removed");
      clear_pending(id);
    } catch (...) {
    }
  }
}

void StoreState::mark_pending(const std::string& id) {
  std::string name = session + "-" + id;
  fs::Fd fd(::openat(pending_fd.get(), name.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) throw_errno("create " + pending_dir + "/" + name);
  ROLAYER_FAULT_POINT("fs.fsync");
  if (::fsync(pending_fd.get()) != 0) throw_errno("fsync " + pending_dir);
}

void StoreState::clear_pending(const std::string& id) {
  ::unlinkat(pending_fd.get(), (session + "-" + id).c_str(), 0);
}

std::vector<Removed> StoreState::release_handle(const std::shared_ptr<LayerNode>& node, bool explicit_release) {
  std::vector<std::string> doomed;
  std::vector<Removed> out;
  {
    std::lock_guard<std::mutex> g(mu);
    if (closed) {
      node->handles--;
      return out;
    }
    const std::string chain = node->chain_id.str();
    const bool last = --node->handles == 0;
    if (!session.empty() && (last || (explicit_release && !read_only))) {
      std::unique_ptr<Relaxed> relaxed;
      if (!explicit_release) relaxed = std::make_unique<Relaxed>(*db);
      sql::Transaction tx(*db);
      if (last)
        sql::Stmt(*db, "DELETE FROM holds WHERE session = ? AND chain_id = ?").bind(1, session).bind(2, chain).run();
      if (explicit_release && !read_only)
        sql::Stmt(*db, "UPDATE layers SET release_requested = 1 WHERE chain_id = ?").bind(1, chain).run();
      tx.commit();
    }
    if (!last) return out;
    out = collect_locked(chain, false, doomed);
  }
  remove_driver_data(doomed);
  return out;
}

bool StoreState::record_chunk(const std::string& chain_id, int64_t seq, std::string& out) {
  std::lock_guard<std::mutex> g(mu);
  check_open();
  sql::Stmt st(*db, "SELECT data FROM records WHERE chain_id = ? AND seq = ?");
  st.bind(1, chain_id).bind(2, seq);
  if (!st.step()) return false;
  out = st.blob(0);
  return true;
}

LayerRef::~LayerRef() {
  // Dropping a reference without releasing it (a stream's own reference, a closed handle)
  // deletes nothing unless a release was asked for meanwhile.
  if (!released_.exchange(true)) {
    try {
      st_->release_handle(node_, false);
    } catch (...) {
    }
  }
}

// ---- Store --------------------------------------------------------------------------------

namespace {

// The payload-pack setting (meta key 'payload_pack_max', decimal bytes; absent = 0 = off):
// `requested` > 0 sets it, < 0 turns it off, 0 keeps it. The driver applies new layers with it.
void apply_pack_setting(StoreState& st, sql::Db& db, int64_t requested) {
  constexpr auto kMax = static_cast<int64_t>(kMaxPayloadPackBytes);
  if (requested > kMax)
    throw Error(Code::Inval, "payload_pack_max " + std::to_string(requested) + " is above the maximum of " +
                                 std::to_string(kMax) + " bytes");
  int64_t have = 0;
  auto read = [&] {
    sql::Stmt get(db, "SELECT value FROM meta WHERE key = 'payload_pack_max'");
    if (!get.step()) return int64_t(0);
    const std::string v = get.text(0);
    char* end = nullptr;
    errno = 0;
    long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end || errno || x < 0 || x > kMax)
      throw Error(Code::Corrupt, "invalid payload_pack_max in the store's metadata: '" + v + "'");
    return static_cast<int64_t>(x);
  };
  have = read();
  const int64_t want = requested > 0 ? requested : requested < 0 ? 0 : have;
  if (want != have) {
    if (st.read_only)
      throw Error(Code::Io, "cannot change the payload pack setting of a store opened read-only").with_errno(EROFS);
    sql::Transaction tx(db);
    sql::Stmt(db, "INSERT OR REPLACE INTO meta (key, value) VALUES ('payload_pack_max', ?)")
        .bind(1, std::to_string(want)).run();
    tx.commit();
  }
  if (want > 0) st.driver->set_payload_pack(static_cast<uint64_t>(want));
  st.payload_pack_max = want;
}

}  // namespace

std::unique_ptr<Store> Store::open(const std::string& root_in, StoreOptions opts) {
  if (root_in.empty()) throw Error(Code::Inval, "the store root must not be empty");
  auto st = std::make_shared<StoreState>();
  st->root = root_in;
  while (st->root.size() > 1 && st->root.back() == '/') st->root.pop_back();
  const std::string& root = st->root;
  st->busy_ms = opts.busy_timeout_ms == 0 ? 5000 : opts.busy_timeout_ms;
  if (!opts.read_only) fs::mkdirs(root, 0700);
  // Everything the store owns is reached from this descriptor, without following links.
  st->root_fd = fs::Fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!st->root_fd) {
    if (errno == ENOENT && opts.read_only)
      throw Error(Code::NotFound, "there is no store at " + root + " (opened read-only: nothing is created)");
    throw_errno("open " + root);
  }
  {
    struct statvfs vfs;
    st->fs_read_only = ::fstatvfs(st->root_fd.get(), &vfs) == 0 && (vfs.f_flag & ST_RDONLY);
  }
  st->read_only = opts.read_only || st->fs_read_only;
  const bool writable = !st->read_only;
  const int rootfd = st->root_fd.get();
  {
    // The root is private to its owner (docs/security.md): tightened when it is ours,
    // refused when another user's root lets others in.
    struct stat rs;
    if (::fstat(rootfd, &rs) != 0) throw_errno("stat " + root);
    if ((rs.st_mode & 077) != 0 && writable) {
      if (rs.st_uid == ::geteuid()) {
        if (::fchmod(rootfd, 0700) != 0) throw_errno("chmod " + root);
      } else {
        throw Error(Code::Io, "the store root " + root + " belongs to uid " + std::to_string(rs.st_uid) +
                                  " and other users can reach it (mode " +
                                  [&] { char b[8]; std::snprintf(b, sizeof b, "%04o", rs.st_mode & 07777); return std::string(b); }() +
                                  "): refusing to use it; make it private (chmod 0700) first")
            .with_errno(EACCES);
      }
    }
  }
  // The store's own entries must be what it made.
  for (const char* f : {"lock", "metadata.db", "metadata.db-wal", "metadata.db-shm", "metadata.db-journal"})
    check_entry(rootfd, root, f, false);
  for (const char* d : {"dir", "exact"}) check_entry(rootfd, root, d, true);
  // Read-only creates nothing: not even the store's folders in a root that holds no store.
  if (st->read_only && !check_entry(rootfd, root, "metadata.db", false))
    throw Error(Code::NotFound, "there is no store at " + root + " (opened read-only: nothing is created)");
  st->tmp_dir = root + "/tmp";
  st->pending_dir = root + "/pending";
  st->tmp_fd = open_own_dir(rootfd, root, "tmp", !st->fs_read_only, !st->fs_read_only);
  st->pending_fd = open_own_dir(rootfd, root, "pending", !st->fs_read_only, !st->fs_read_only);

  // The lock file: a shared lock on byte 0 for the store's life, and this session's slot.
  bool exclusive = false;
  {
    int flags = O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | (st->fs_read_only ? O_RDONLY : (O_RDWR | O_CREAT));
    st->lock_fd = fs::Fd(::openat(rootfd, "lock", flags, 0600));
    if (!st->lock_fd) {
      if (errno == ELOOP) not_ours(root + "/lock", "a symbolic link");
      if (!(st->fs_read_only && errno == ENOENT)) throw_errno("open " + root + "/lock");
    }
  }
  if (st->lock_fd) {
    struct stat ls;
    if (::fstat(st->lock_fd.get(), &ls) != 0) throw_errno("stat " + root + "/lock");
    if (!S_ISREG(ls.st_mode)) not_ours(root + "/lock", "not a regular file");
    if (!st->fs_read_only) tighten(st->lock_fd.get(), root + "/lock", false);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(0, st->busy_ms));
    for (;;) {
      if (!st->fs_read_only && ofd_lock(st->lock_fd.get(), F_WRLCK, kSharedByte)) {
        exclusive = true;
        break;
      }
      if (ofd_lock(st->lock_fd.get(), F_RDLCK, kSharedByte)) break;
      if (st->busy_ms < 0 || std::chrono::steady_clock::now() >= deadline)
        throw Error(Code::Busy, "store is busy: another open of " + root +
                                    " (in this or another process) is cleaning up the store and kept its lock for "
                                    "longer than the busy timeout of " + std::to_string(std::max(0, st->busy_ms)) +
                                    " ms");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!st->fs_read_only) {
      for (int64_t slot = 1;; slot++) {
        if (slot >= kMaxSlots) throw Error(Code::Busy, "store is busy: " + root + " has too many open stores");
        if (ofd_lock(st->lock_fd.get(), F_WRLCK, static_cast<off_t>(slot))) {
          st->slot = slot;
          break;
        }
      }
    }
  }
  // Leave the exclusive lock (for a shared one) however the open ends.
  struct Downgrade {
    StoreState& st;
    bool& excl;
    ~Downgrade() {
      if (excl) ofd_lock(st.lock_fd.get(), F_RDLCK, kSharedByte);
    }
  } downgrade{*st, exclusive};

  {
    // The database file is made here, private, so that SQLite never creates it (with the
    // process's umask) and its -wal/-shm (which take its mode) are private too.
    if (!st->fs_read_only && !check_entry(rootfd, root, "metadata.db", false)) {
      fs::Fd f(::openat(rootfd, "metadata.db", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!f && errno != EEXIST) throw_errno("create " + root + "/metadata.db");
    }
    if (!st->fs_read_only)
      for (const char* f : {"metadata.db", "metadata.db-wal", "metadata.db-shm"}) {
        fs::Fd fd(::openat(rootfd, f, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
        if (fd) tighten(fd.get(), root + "/" + f, false);
      }
  }
  if (st->read_only && !check_entry(rootfd, root, "metadata.db", false))
    throw Error(Code::NotFound, "there is no store at " + root + " (opened read-only: nothing is created)");
  sql::DbOptions dbo;
  dbo.busy_timeout_ms = std::max(0, st->busy_ms);
  dbo.read_only = st->fs_read_only;
  if (st->fs_read_only) {
    // SQLite cannot make a -shm on a read-only file system: a database without a log to
    // replay is opened as immutable.
    struct stat ws;
    dbo.immutable = !(::fstatat(rootfd, "metadata.db-wal", &ws, AT_SYMLINK_NOFOLLOW) == 0 && ws.st_size > 0);
  }
  st->db = std::make_unique<sql::Db>(root + "/metadata.db", dbo);
  auto& db = *st->db;
  if (!st->fs_read_only) {
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("PRAGMA synchronous=FULL");
  }
  db.exec("PRAGMA foreign_keys=ON");
  {
    // A store that holds layer data but whose database is empty (lost, truncated) is not a new
    // store: refuse rather than treat every layer as gone.
    sql::Stmt q(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'layers'");
    bool fresh = q.step() && q.int64(0) == 0;
    q.reset();
    if (fresh) {
      for (const char* d : {"dir", "exact"}) {
        fs::Fd dfd = open_own_dir(rootfd, root, d, false, false);
        if (dfd && !list_names(dfd.get(), root + "/" + d).empty())
          throw Error(Code::Corrupt, "the store database " + db.path() + " is empty, but " + root + "/" + d +
                                         " holds layer data: the database was lost or truncated; refusing to "
                                         "open it as a new store");
      }
      if (st->read_only)
        throw Error(Code::NotFound, "there is no store at " + root + " (opened read-only: nothing is created)");
    }
  }
  if (!st->fs_read_only) {
    db.exec(kSchema);
    db.exec(kSchemaShared);
    bool has_flag = false;
    {
      sql::Stmt q(db, "SELECT 1 FROM pragma_table_info('layers') WHERE name = 'release_requested'");
      has_flag = q.step();
    }
    if (!has_flag) {
      sql::Transaction tx(db);
      sql::Stmt q(db, "SELECT 1 FROM pragma_table_info('layers') WHERE name = 'release_requested'");
      if (!q.step()) db.exec("ALTER TABLE layers ADD COLUMN release_requested INTEGER NOT NULL DEFAULT 0");
      q.reset();
      tx.commit();
    }
    {
      // The record binding and the exact streams' block sums (lib/store/record_bind.cpp), added
      // in one write transaction so that two first opens cannot both add a column.
      sql::Transaction tx(db);
      ensure_record_binding_column(db);
      tx.commit();
    }
  }

  // No driver named: the one the store was created with, else "dir".
  std::string driver_name = opts.driver_name;
  if (!opts.driver && driver_name.empty()) {
    sql::Stmt get(db, "SELECT value FROM meta WHERE key = 'driver'");
    driver_name = get.step() ? get.text(0) : "dir";
  }
  st->driver = opts.driver ? std::shared_ptr<Driver>(std::move(opts.driver))
                           : std::shared_ptr<Driver>(make_builtin_driver(driver_name));
  st->caps = st->driver->caps();
  {
    std::string have;
    {
      sql::Stmt get(db, "SELECT value FROM meta WHERE key = 'driver'");
      if (get.step()) have = get.text(0);
    }
    if (have.empty() && st->read_only)
      throw Error(Code::NotFound, "there is no store at " + root + " (opened read-only: nothing is created)");
    if (have.empty()) {
      sql::Transaction tx(db);
      sql::Stmt get(db, "SELECT value FROM meta WHERE key = 'driver'");
      if (get.step()) {
        have = get.text(0);
      } else {
        sql::Stmt(db, "INSERT INTO meta (key, value) VALUES ('driver', ?)").bind(1, st->driver->name()).run();
        sql::Stmt(db, "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)")
            .bind(1, std::to_string(kSchemaVersion)).run();
      }
      get.reset();
      tx.commit();
    }
    if (!have.empty() && have != st->driver->name())
      throw Error(Code::Inval, "the store at " + root + " uses the \"" + have + "\" driver, not \"" +
                                   st->driver->name() + "\"");
  }
  {
    sql::Stmt get(db, "SELECT value FROM meta WHERE key = 'schema'");
    if (get.step() && get.text(0) != std::to_string(kSchemaVersion))
      throw Error(Code::Unsupported, "the store at " + root + " has schema version " + get.text(0) +
                                         "; this library reads version " + std::to_string(kSchemaVersion));
  }
  if (st->read_only) {
    sql::Stmt q(db, "SELECT 1 FROM pragma_table_info('layers') WHERE name = 'release_requested'");
    if (!q.step())
      throw Error(Code::Unsupported, "the store at " + root +
                                         " was last written by an older library; open it writable once to upgrade it");
  }

  // This open's session: a row naming its lock slot. Rows of sessions that had this slot
  // before are dead (the slot's lock was free): they are forgotten by the sweep below.
  if (!st->fs_read_only) {
    st->session = fs::random_hex().substr(0, 16);
    Relaxed r(db);
    sql::Transaction tx(db);
    sql::Stmt(db, "INSERT INTO sessions (id, slot, pid, started) VALUES (?, ?, ?, strftime('%s','now'))")
        .bind(1, st->session).bind(2, st->slot).bind(3, static_cast<int64_t>(::getpid())).run();
    tx.commit();
  }
  // Alone: the driver may clean up its own leftovers (Driver::open_store: init() or
  // init_shared(), without listing every layer when the driver can avoid it).
  st->driver->open_store(root, exclusive && !st->read_only);
  apply_pack_setting(*st, db, opts.payload_pack_max);
  if (!st->read_only) {
    std::vector<std::string> doomed;
    {
      std::lock_guard<std::mutex> g(st->mu);
      if (exclusive) {
        // Alone: temporary files that no session owns (an older library's) go too.
        for (const auto& n : list_names(st->tmp_fd.get(), st->tmp_dir))
          if (n.find('-') == std::string::npos || n.rfind("record-", 0) == 0) fs::remove_all_at(st->tmp_fd.get(), n);
        // What follows (dead sessions' leftovers) needs no exclusivity: let other opens in.
        ofd_lock(st->lock_fd.get(), F_RDLCK, kSharedByte);
      }
      st->sweep_locked(exclusive, doomed);
    }
    st->remove_driver_data(doomed);
  }
  return std::unique_ptr<Store>(new Store(std::move(st)));
}

Store::~Store() {
  std::lock_guard<std::mutex> g(st_->mu);
  if (!st_->session.empty()) {
    // This session's holds end (nothing is deleted: closing never deletes); its intent
    // marks, if any are left, are collected by the next open that sees the session dead.
    try {
      Relaxed r(*st_->db);
      sql::Transaction tx(*st_->db);
      sql::Stmt(*st_->db, "DELETE FROM holds WHERE session = ?").bind(1, st_->session).run();
      sql::Stmt(*st_->db, "DELETE FROM sessions WHERE id = ?").bind(1, st_->session).run();
      tx.commit();
    } catch (...) {
    }
    try {
      for (const auto& n : list_names(st_->tmp_fd.get(), st_->tmp_dir))
        if (n.rfind(st_->session + "-", 0) == 0) fs::remove_all_at(st_->tmp_fd.get(), n);
    } catch (...) {
    }
  }
  st_->closed = true;
  st_->db.reset();
  st_->lock_fd.reset();
}

const std::string& Store::root() const { return st_->root; }
std::string Store::driver_name() const { return st_->driver->name(); }
bool Store::read_only() const { return st_->read_only; }
int64_t Store::payload_pack_max() const { return st_->payload_pack_max; }

// The parent a new layer goes on, held by a temporary handle for the duration of a register or
// a commit and dropped without deletion; "" is no parent. Throws NotFound for an unknown parent
// and MaxDepth when a child would exceed kMaxDepth.
Store::ParentHold::ParentHold(Store& store, const std::string& parent_id) {
  if (parent_id.empty()) return;
  Digest::parse(parent_id);
  ref = store.get(parent_id);
  node = ref->node_;
  if (node->depth >= kMaxDepth)
    throw Error(Code::MaxDepth, "max depth exceeded: layer " + parent_id + " has depth " +
                                    std::to_string(node->depth) + " (the maximum is " + std::to_string(kMaxDepth) + ")");
}

Store::ParentHold::~ParentHold() {
  try {
    if (ref) Store::close_ref(*ref);
  } catch (...) {
  }
}

namespace {

// Within the caller's transaction: the new layer's row (replacing a damaged row of that ChainID),
// the rows on top of that ChainID marked damaged, and the layer's record copied in chunks from
// rec_fd (read from offset 0; rec_path names it in errors) and bound to the layer, when the layer
// has one. Shared by register_layer and commit_staged.
void insert_layer_row(sql::Db& db, const LayerNode& node, int rec_fd, const std::string& rec_path,
                      const RecordBodyHashes& body_hashes) {
  const std::string chain = node.chain_id.str();
  const Descriptor& d = node.descriptor;
  sql::Stmt ins(db,
                "INSERT OR REPLACE INTO layers (chain_id, diff_id, parent, depth, cache_id, diff_size, stream_size, "
                "desc_media_type, desc_digest, desc_size, has_record, persistent, created, release_requested) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, strftime('%s','now'), 0)");
  ins.bind(1, chain).bind(2, node.diff_id.str());
  if (node.parent) ins.bind(3, node.parent->chain_id.str()); else ins.bind_null(3);
  ins.bind(4, static_cast<int64_t>(node.depth)).bind(5, node.cache_id).bind(6, node.diff_size)
      .bind(7, node.stream_size);
  if (d.media_type.empty()) ins.bind_null(8); else ins.bind(8, d.media_type);
  if (d.digest.empty()) ins.bind_null(9); else ins.bind(9, d.digest);
  if (d.size < 0) ins.bind_null(10); else ins.bind(10, d.size);
  ins.bind(11, static_cast<int64_t>(node.has_record ? 1 : 0));
  ins.run();
  // Rows on top of this ChainID that exist already were made on a parent that is gone (a
  // damaged store: a parent row deleted or replaced): their driver data names the old
  // parent's, so they cannot be served; they are marked damaged, to be registered again.
  sql::Stmt(db,
            "WITH RECURSIVE d(id) AS (SELECT chain_id FROM layers WHERE parent = ?1 AND chain_id <> ?1 "
            "UNION SELECT l.chain_id FROM layers l JOIN d ON l.parent = d.id) "
            "UPDATE layers SET diff_id = 'damaged:' || diff_id WHERE chain_id IN d AND diff_id NOT LIKE 'damaged:%'")
      .bind(1, chain).run();
  // A row with this ChainID that cannot be loaded is a damaged leftover: it is replaced.
  sql::Stmt(db, "DELETE FROM records WHERE chain_id = ?").bind(1, chain).run();
  if (!node.has_record) return;
  sql::Stmt chunk(db, "INSERT INTO records (chain_id, seq, data) VALUES (?, ?, ?)");
  std::unique_ptr<uint8_t[]> buf(new uint8_t[kRecordChunk]);  // not zero-filled: pread writes first
  off_t off = 0;
  std::string chunk_digests;
  for (int64_t seq = 0;; seq++) {
    ssize_t n;
    do n = ::pread(rec_fd, buf.get(), kRecordChunk, off);
    while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno("read " + rec_path);
    if (n == 0) break;
    off += n;
    chunk.reset();
    chunk.bind(1, chain).bind(2, seq).bind_blob(3, buf.get(), static_cast<size_t>(n));
    chunk.run();
    chunk_digests += bind_record_chunk(chain, static_cast<uint64_t>(seq), buf.get(), static_cast<size_t>(n));
  }
  // Binds the record to this layer (lib/store/record_bind.h): its body for older libraries,
  // its stored chunks for this one.
  store_record_digests(db, chain, body_hashes.bound(chain));
  store_record_chunk_digests(db, chain, chunk_digests);
}

}  // namespace

std::unique_ptr<LayerRef> Store::register_layer(const std::string& parent_id, ByteSource& tar,
                                                const Descriptor& descriptor) {
  if (!descriptor.digest.empty()) Digest::parse(descriptor.digest);
  if (!descriptor.media_type.empty() && descriptor.media_type.size() > 255)
    throw Error(Code::Inval, "descriptor media type is too long");
  st_->check_writable();

  // Hold the parent for the duration (a temporary handle, dropped without deletion).
  ParentHold hold(*this, parent_id);
  const std::shared_ptr<LayerNode>& parent = hold.node;

  std::string cache_id = fs::random_hex();
  const std::string parent_cache = parent ? parent->cache_id : std::string();
  bool committed = false;
  std::string rec_name;
  auto cleanup = [&]() {
    try {
      // Even when create itself failed: it may have made part of the layer's storage.
      if (!committed) st_->driver->remove(cache_id);
      st_->clear_pending(cache_id);  // kept if the removal failed: collected once the session ends
    } catch (...) {
    }
    if (!rec_name.empty()) ::unlinkat(st_->tmp_fd.get(), rec_name.c_str(), 0);
  };

  Digest diff_id, chain;
  int64_t diff_size = 0;
  uint64_t stream_size = 0;
  try {
    std::unique_ptr<fs::FdSink> rec_sink;
    std::unique_ptr<record::Writer> rec;
    RecordBodyHashes body_hashes;
    if (!st_->caps.exact_diffs) {
      rec_name = st_->session + "-record-" + cache_id;
      fs::Fd fd(::openat(st_->tmp_fd.get(), rec_name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!fd) throw_errno("create " + st_->tmp_dir + "/" + rec_name);
      rec_sink = std::make_unique<fs::FdSink>(std::move(fd));
      rec = std::make_unique<record::Writer>(*rec_sink, &body_hashes);
    }
    st_->mark_pending(cache_id);
    st_->driver->create(cache_id, parent_cache);
    ROLAYER_FAULT_POINT("register.created");
    StreamBlockSums stream_blocks(tar, st_->caps.exact_diffs);  // lib/store/record_bind.h
    // A driver that keeps the stream as it came does not look at hard-link targets: the store
    // does, with the dir driver's verdict (lib/store/link_targets.h).
    LinkTargets links;
    RegisterTee tee(stream_blocks, rec.get(), st_->caps.exact_diffs ? &links : nullptr);
    try {
      st_->driver->apply_diff(cache_id, parent_cache, tee);
      tee.drain();
    } catch (...) {
      // The store's own verdict on the input (the caller's reader, the archive) comes first.
      if (tee.failure()) std::rethrow_exception(tee.failure());
      throw;
    }
    if (tee.failure()) std::rethrow_exception(tee.failure());
    links.check_parents(st_, parent);
    ROLAYER_FAULT_POINT("register.applied");
    if (rec) {
      rec->finish();
      rec_sink->flush();
      ROLAYER_FAULT_POINT("register.recorded");
    }
    diff_id = tee.diff_id();
    diff_size = tee.diff_size();
    stream_size = tee.total();
    chain = chain_id(parent ? parent->chain_id : Digest(), diff_id);

    std::unique_lock<std::mutex> g(st_->mu);
    st_->check_open();
    auto& db = *st_->db;
    // Held here already: the same layer, registered again.
    {
      if (auto held = st_->held_locked(chain.str())) {
        auto ref = st_->new_ref(st_, held);
        g.unlock();
        cleanup();
        return ref;
      }
    }
    auto node = std::make_shared<LayerNode>();
    node->chain_id = chain;
    node->diff_id = diff_id;
    node->parent = parent;
    node->depth = parent ? parent->depth + 1 : 1;
    node->cache_id = cache_id;
    node->diff_size = diff_size;
    node->stream_size = static_cast<int64_t>(stream_size);
    node->descriptor = descriptor;
    node->has_record = rec != nullptr;
    std::string stale_cache;  // the driver data of a damaged row this register replaces
    {
      sql::Transaction tx(db);
      // Another register (in any process) committed this ChainID first: converge on its layer.
      if (auto existing = st_->load_locked(chain.str())) {
        st_->hold_locked(existing);
        tx.commit();
        auto ref = std::unique_ptr<LayerRef>(new LayerRef(st_, existing));
        g.unlock();
        cleanup();
        return ref;
      }
      {
        sql::Stmt q(db, "SELECT cache_id FROM layers WHERE chain_id = ?");
        q.bind(1, chain.str());
        if (q.step()) stale_cache = q.text(0);
      }
      if (!stale_cache.empty()) st_->mark_pending(stale_cache);
      insert_layer_row(db, *node, rec ? rec_sink->fd() : -1, st_->tmp_dir + "/" + rec_name, body_hashes);
      if (st_->caps.exact_diffs) store_stream_blocks(db, chain.str(), stream_blocks.finish());
      // The new layer is held by this session from its first moment: a crash before the
      // caller retains it leaves a layer that only a dead session held (collected).
      st_->nodes.erase(chain.str());
      st_->hold_locked(node);
      ROLAYER_FAULT_POINT("register.before_commit");
      try {
        tx.commit();
      } catch (...) {
        node->handles--;
        st_->nodes.erase(chain.str());
        throw;
      }
    }
    // Committed: from here on nothing undoes the layer.
    committed = true;
    auto ref = std::unique_ptr<LayerRef>(new LayerRef(st_, node));
    g.unlock();
    if (!stale_cache.empty() && stale_cache != cache_id) st_->remove_driver_data({stale_cache});
    ROLAYER_FAULT_POINT("register.committed");
    st_->clear_pending(cache_id);
    if (!rec_name.empty()) ::unlinkat(st_->tmp_fd.get(), rec_name.c_str(), 0);
    return ref;
  } catch (...) {
    cleanup();
    throw;
  }
}

std::unique_ptr<LayerRef> Store::get(const std::string& chain_id) {
  Digest::parse(chain_id);
  std::lock_guard<std::mutex> g(st_->mu);
  st_->check_open();
  if (auto held = st_->held_locked(chain_id)) return st_->new_ref(st_, held);
  auto& db = *st_->db;
  if (st_->session.empty()) {
    auto n = st_->load_locked(chain_id);
    if (!n) throw Error(Code::NotFound, "layer does not exist: " + chain_id);
    return st_->new_ref(st_, n);
  }
  // The look-up and the hold in one transaction: nobody deletes the layer in between.
  Relaxed r(db);
  sql::Transaction tx(db);
  auto n = st_->load_locked(chain_id);
  if (!n) throw Error(Code::NotFound, "layer does not exist: " + chain_id);
  st_->hold_locked(n);
  try {
    tx.commit();
  } catch (...) {
    n->handles--;
    throw;
  }
  return std::unique_ptr<LayerRef>(new LayerRef(st_, n));
}

std::vector<Removed> Store::release(LayerRef& ref) {
  if (ref.st_ != st_) throw Error(Code::Inval, "the layer belongs to another store");
  return release_ref(ref);
}

std::vector<Removed> Store::release_ref(LayerRef& ref) {
  if (ref.released_.exchange(true))
    throw Error(Code::NotRetained, "layer not retained: " + ref.node_->chain_id.str());
  return ref.st_->release_handle(ref.node_, true);
}

void Store::close_ref(LayerRef& ref) {
  if (ref.released_.exchange(true)) return;
  ref.st_->release_handle(ref.node_, false);
}

std::vector<std::string> Store::list() {
  std::lock_guard<std::mutex> g(st_->mu);
  st_->check_open();
  // Every layer whose row and ancestors' rows can be read (as the old loader did).
  std::unordered_map<std::string, std::string> parent_of;
  {
    sql::Stmt q(*st_->db, "SELECT chain_id, diff_id, parent FROM layers");
    while (q.step()) {
      std::string c = q.text(0);
      try {
        Digest::parse(c);
        Digest::parse(q.text(1));
      } catch (const Error&) {
        continue;
      }
      parent_of.emplace(std::move(c), q.is_null(2) ? std::string() : q.text(2));
    }
  }
  std::unordered_map<std::string, bool> ok;
  std::function<bool(const std::string&, int)> good = [&](const std::string& c, int depth) -> bool {
    auto k = ok.find(c);
    if (k != ok.end()) return k->second;
    auto it = parent_of.find(c);
    bool r = it != parent_of.end() && depth <= kMaxDepth + 1 &&
             (it->second.empty() || (it->second != c && good(it->second, depth + 1)));
    ok[c] = r;
    return r;
  };
  std::vector<std::string> out;
  out.reserve(parent_of.size());
  for (const auto& kv : parent_of)
    if (good(kv.first, 0)) out.push_back(kv.first);
  return out;
}

size_t Store::loaded_layers() {
  std::lock_guard<std::mutex> g(st_->mu);
  return static_cast<size_t>(
      std::count_if(st_->nodes.begin(), st_->nodes.end(), [](const auto& kv) { return !kv.second.expired(); }));
}

std::vector<LayerInfo> Store::layer_infos() {
  std::lock_guard<std::mutex> g(st_->mu);
  st_->check_open();
  // One statement: one read snapshot of every row, whatever other processes write meanwhile.
  std::unordered_map<std::string, size_t> index;
  std::vector<LayerInfo> rows;
  {
    sql::Stmt q(*st_->db,
                "SELECT chain_id, diff_id, parent, depth, diff_size, stream_size, desc_media_type, desc_digest, "
                "desc_size, persistent, cache_id FROM layers");
    while (q.step()) {
      LayerInfo i;
      i.chain_id = q.text(0);
      i.diff_id = q.text(1);
      try {
        Digest::parse(i.chain_id);
        Digest::parse(i.diff_id);
      } catch (const Error&) {
        continue;  // an unreadable row: the layer is reported missing (as list() and get() do)
      }
      if (!q.is_null(2)) i.parent = q.text(2);
      i.depth = static_cast<int>(q.int64(3));
      i.diff_size = q.int64(4);
      i.stream_size = q.int64(5);
      if (!q.is_null(6)) i.media_type = q.text(6);
      if (!q.is_null(7)) i.digest = q.text(7);
      i.desc_size = q.is_null(8) ? -1 : q.int64(8);
      i.retained = q.int64(9);
      i.cache_id = q.text(10);
      index.emplace(i.chain_id, rows.size());
      rows.push_back(std::move(i));
    }
  }
  // A layer is listed when its ancestors are (list()'s rule); its size is its chain's DiffSize
  // sum. -1: not yet known, -2: being visited (a loop), -3: not listed.
  std::vector<int64_t> size(rows.size(), -1);
  std::function<int64_t(size_t, int)> chain = [&](size_t k, int level) -> int64_t {
    if (size[k] != -1) return size[k] == -2 ? -3 : size[k];
    if (level > kMaxDepth + 1) return -3;
    size[k] = -2;
    int64_t s = rows[k].diff_size;
    if (!rows[k].parent.empty()) {
      auto it = index.find(rows[k].parent);
      int64_t ps = it == index.end() ? -3 : chain(it->second, level + 1);
      s = ps < 0 ? -3 : s + ps;
    }
    size[k] = s;
    return s;
  };
  std::vector<LayerInfo> out;
  out.reserve(rows.size());
  for (size_t k = 0; k < rows.size(); k++)
    if (chain(k, 0) >= 0) {
      rows[k].size = size[k];
      out.push_back(std::move(rows[k]));
    }
  return out;
}

void Store::retain(const std::string& chain_id) {
  Digest::parse(chain_id);
  std::lock_guard<std::mutex> g(st_->mu);
  st_->check_open();
  st_->check_writable();
  sql::Transaction tx(*st_->db);
  if (!st_->load_locked(chain_id)) throw Error(Code::NotFound, "layer does not exist: " + chain_id);
  sql::Stmt(*st_->db, "UPDATE layers SET persistent = persistent + 1 WHERE chain_id = ?").bind(1, chain_id).run();
  tx.commit();
}

std::vector<Removed> Store::unretain(const std::string& chain_id) {
  Digest::parse(chain_id);
  std::vector<std::string> doomed;
  std::vector<Removed> out;
  {
    std::lock_guard<std::mutex> g(st_->mu);
    st_->check_open();
    st_->check_writable();
    {
      sql::Transaction tx(*st_->db);
      if (!st_->load_locked(chain_id)) throw Error(Code::NotFound, "layer does not exist: " + chain_id);
      int64_t have = 0;
      {
        sql::Stmt q(*st_->db, "SELECT persistent FROM layers WHERE chain_id = ?");
        q.bind(1, chain_id);
        if (q.step()) have = q.int64(0);
      }
      if (have <= 0) throw Error(Code::NotRetained, "layer not retained: " + chain_id);
      sql::Stmt(*st_->db, "UPDATE layers SET persistent = persistent - 1 WHERE chain_id = ?").bind(1, chain_id).run();
      tx.commit();
    }
    out = st_->collect_locked(chain_id, true, doomed);
  }
  st_->remove_driver_data(doomed);
  return out;
}

void Store::pin(const std::string& name, const std::string& chain_id) {
  Digest::parse(chain_id);
  if (name.empty()) throw Error(Code::Inval, "a pin needs a name");
  std::lock_guard<std::mutex> g(st_->mu);
  st_->check_open();
  st_->check_writable();
  sql::Transaction tx(*st_->db);
  if (!st_->load_locked(chain_id)) throw Error(Code::NotFound, "layer does not exist: " + chain_id);
  sql::Stmt(*st_->db, "INSERT OR REPLACE INTO pins (name, chain_id) VALUES (?, ?)").bind(1, name).bind(2, chain_id).run();
  tx.commit();
}

std::vector<Removed> Store::unpin(const std::string& name, bool* existed) {
  std::vector<std::string> doomed;
  std::vector<Removed> out;
  if (existed) *existed = false;
  {
    std::lock_guard<std::mutex> g(st_->mu);
    st_->check_open();
    st_->check_writable();
    std::string chain;
    int64_t persistent = 1;
    {
      sql::Transaction tx(*st_->db);
      {
        sql::Stmt q(*st_->db, "SELECT p.chain_id, l.persistent FROM pins p LEFT JOIN layers l ON l.chain_id = p.chain_id "
                              "WHERE p.name = ?");
        q.bind(1, name);
        if (!q.step()) return out;
        chain = q.text(0);
        if (!q.is_null(1)) persistent = q.int64(1);
      }
      sql::Stmt(*st_->db, "DELETE FROM pins WHERE name = ?").bind(1, name).run();
      tx.commit();
    }
    if (existed) *existed = true;
    // What the pin alone kept goes: a layer with no persistent reference (never retained, or
    // unretained while pinned), no child and no live holder.
    out = st_->collect_locked(chain, persistent <= 0, doomed);
  }
  st_->remove_driver_data(doomed);
  return out;
}

std::vector<std::pair<std::string, std::string>> Store::pins(const std::string& prefix) {
  std::lock_guard<std::mutex> g(st_->mu);
  st_->check_open();
  std::vector<std::pair<std::string, std::string>> out;
  sql::Stmt q(*st_->db, "SELECT name, chain_id FROM pins WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name");
  q.bind(1, prefix);
  while (q.step()) out.emplace_back(q.text(0), q.text(1));
  return out;
}

int64_t Store::retained(const std::string& chain_id) {
  Digest::parse(chain_id);
  std::lock_guard<std::mutex> g(st_->mu);
  st_->check_open();
  if (!st_->load_locked(chain_id)) throw Error(Code::NotFound, "layer does not exist: " + chain_id);
  sql::Stmt q(*st_->db, "SELECT persistent FROM layers WHERE chain_id = ?");
  q.bind(1, chain_id);
  return q.step() ? q.int64(0) : 0;
}

std::vector<Removed> Store::gc() {
  std::vector<std::string> doomed;
  std::vector<Removed> out;
  {
    std::lock_guard<std::mutex> g(st_->mu);
    st_->check_open();
    st_->check_writable();
    // Alone (no other open store anywhere): leftovers without an owner go too.
    bool alone = st_->lock_fd && ofd_lock(st_->lock_fd.get(), F_WRLCK, kSharedByte);
    struct Back {
      StoreState& st;
      bool alone;
      ~Back() {
        if (alone) ofd_lock(st.lock_fd.get(), F_RDLCK, kSharedByte);
      }
    } back{*st_, alone};
    if (alone) st_->driver->init(st_->root);
    out = st_->sweep_locked(alone, doomed);
    // Every layer without a persistent reference, a child or a live hold (leaves first; the
    // cascade reaches their parents).
    for (;;) {
      std::vector<std::string> leaves;
      {
        sql::Stmt q(*st_->db,
                    "SELECT chain_id FROM layers l WHERE persistent = 0 AND NOT EXISTS "
                    "(SELECT 1 FROM layers c WHERE c.parent = l.chain_id)");
        while (q.step()) leaves.push_back(q.text(0));
      }
      size_t before = out.size();
      for (const auto& c : leaves) {
        auto r = st_->collect_locked(c, true, doomed);
        out.insert(out.end(), r.begin(), r.end());
      }
      if (out.size() == before) break;
    }
  }
  st_->remove_driver_data(doomed);
  return out;
}

int64_t Store::size(const LayerRef& ref) { return ref.st_->chain_size(ref.node()); }

std::vector<std::pair<std::string, std::string>> Store::metadata(const LayerRef& ref) {
  auto& st = ref.st_;
  {
    std::lock_guard<std::mutex> g(st->mu);
    st->check_open();
  }
  return st->driver->metadata(ref.node().cache_id);
}

std::unique_ptr<ByteSource> Store::tar_stream(const LayerRef& ref) { return verified_stream(ref, false); }

std::unique_ptr<ByteSource> Store::verify_stream(const LayerRef& ref) { return verified_stream(ref, true); }

std::unique_ptr<ByteSource> Store::verified_stream(const LayerRef& ref, bool verify_tree) {
  auto& st = ref.st_;
  std::unique_ptr<LayerRef> keep;
  {
    std::lock_guard<std::mutex> g(st->mu);
    st->check_open();
    if (ref.released()) throw Error(Code::NotRetained, "layer not retained: " + ref.node().chain_id.str());
    keep = st->new_ref(st, ref.node_);
  }
  return make_verified_stream(st, std::move(keep), verify_tree);
}

std::unique_ptr<ByteSource> Store::tar_stream_from(const LayerRef& ref, const std::string& ancestor) {
  // Verified on every driver (lib/store/flatten.h, docs/store.md): the registered stream when
  // the ancestor is the parent, else a diff built from the layers' verified streams.
  return verified_diff_from(ref, ancestor);
}

std::unique_ptr<ByteSource> Store::verified_diff_from(const LayerRef& ref, const std::string& ancestor) {
  auto& st = ref.st_;
  std::vector<std::shared_ptr<LayerNode>> range;  // the layers above the ancestor, oldest first
  {
    std::lock_guard<std::mutex> g(st->mu);
    st->check_open();
    if (ref.released()) throw Error(Code::NotRetained, "layer not retained: " + ref.node().chain_id.str());
    if (!ancestor.empty()) Digest::parse(ancestor);
    const LayerNode* stop = nullptr;
    if (!ancestor.empty()) {
      const LayerNode* p = ref.node().parent.get();
      while (p && p->chain_id.str() != ancestor) p = p->parent.get();
      if (!p)
        throw Error(Code::NotAncestor, "layer ID '" + ancestor +
                                           "' is not a parent of the specified layer: cannot provide diff to non-parent");
      stop = p;
    }
    for (auto n = ref.node_; n && n.get() != stop; n = n->parent) range.push_back(n);
  }
  std::reverse(range.begin(), range.end());
  if (range.size() == 1) return tar_stream(ref);  // the diff against the parent: the registered stream
  return make_flattened_diff(st, std::move(range), !ancestor.empty());
}

}  // namespace rolayer

// ---- Staged registers (Store::stage / commit_staged) -------------------------------------
//
// A staged layer is what a register has done before it needs the parent: the input hashed
// (DiffID), scanned and validated, the fidelity record written to <root>/tmp, and — on a driver
// that can stage (the dir driver) — the layer applied under a fresh cache id made on no parent,
// named by an intent mark in <root>/pending. A crash leaves exactly what a crashed register
// leaves, collected the same way. Drivers that cannot stage keep the stream in <root>/tmp and
// apply it at commit. A layer that depends on its parent (the dir driver says so) is applied
// again at commit, from its own record and payloads (each payload checked against the record,
// the whole stream against the DiffID by the register on the parent).

namespace rolayer {

struct StagedLayer::Impl {
  std::shared_ptr<StoreState> st;
  Descriptor descriptor;
  std::string cache_id;  // driver data applied with no parent ("" when the stream is kept aside)
  std::string rec_name;  // <root>/tmp: the record, or the kept stream
  std::unique_ptr<fs::FdSink> rec_sink;
  RecordBodyHashes body_hashes;
  bool has_record = false;
  bool needs_parent = false;
  Digest diff_id;
  int64_t diff_size = 0, stream_size = 0;
  enum class State { Open, Committed, Discarded } state = State::Open;

  int tmp_fd() const { return rec_sink ? rec_sink->fd() : -1; }
  // Removes what the staged layer holds on disk (nothing once the store was closed: the
  // session is over and the next open collects its intent mark).
  void discard() noexcept {
    if (state != State::Open) return;
    state = State::Discarded;
    bool closed;
    {
      std::lock_guard<std::mutex> g(st->mu);
      closed = st->closed;
    }
    rec_sink.reset();
    if (closed) return;
    if (!cache_id.empty()) {
      try {
        st->driver->remove(cache_id);
        st->clear_pending(cache_id);  // kept if the removal failed: collected once the session ends
      } catch (...) {
      }
    }
    if (!rec_name.empty()) ::unlinkat(st->tmp_fd.get(), rec_name.c_str(), 0);
  }
};

StagedLayer::StagedLayer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StagedLayer::~StagedLayer() { impl_->discard(); }
const Digest& StagedLayer::diff_id() const { return impl_->diff_id; }
int64_t StagedLayer::stream_size() const { return impl_->stream_size; }
int64_t StagedLayer::diff_size() const { return impl_->diff_size; }
bool StagedLayer::deferred() const { return impl_->cache_id.empty() || impl_->needs_parent; }

void Store::discard_staged(StagedLayer& staged) noexcept { staged.impl_->discard(); }

std::unique_ptr<StagedLayer> Store::stage(ByteSource& tar, const Descriptor& descriptor) {
  if (!descriptor.digest.empty()) Digest::parse(descriptor.digest);
  if (!descriptor.media_type.empty() && descriptor.media_type.size() > 255)
    throw Error(Code::Inval, "descriptor media type is too long");
  {
    std::lock_guard<std::mutex> g(st_->mu);
    st_->check_open();
  }
  st_->check_writable();
  auto im = std::make_unique<StagedLayer::Impl>();
  im->st = st_;
  im->descriptor = descriptor;
  std::unique_ptr<StagedLayer> staged(new StagedLayer(std::move(im)));
  StagedLayer::Impl& s = *staged->impl_;  // discarded by staged's destructor on any failure below
  const bool apply_now = st_->driver->can_stage() && !st_->caps.exact_diffs;
  std::string id = fs::random_hex();
  s.rec_name = st_->session + (apply_now ? "-record-" : "-stage-") + id;
  {
    fs::Fd fd(::openat(st_->tmp_fd.get(), s.rec_name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("create " + st_->tmp_dir + "/" + s.rec_name);
    s.rec_sink = std::make_unique<fs::FdSink>(std::move(fd));
  }
  if (apply_now) {
    record::Writer rec(*s.rec_sink, &s.body_hashes);
    st_->mark_pending(id);
    s.cache_id = id;
    st_->driver->create(id, "");
    ROLAYER_FAULT_POINT("stage.created");
    RegisterTee tee(tar, &rec, nullptr);
    try {
      st_->driver->apply_staged(id, tee, &s.needs_parent);
      tee.drain();
    } catch (...) {
      if (tee.failure()) std::rethrow_exception(tee.failure());
      throw;
    }
    if (tee.failure()) std::rethrow_exception(tee.failure());
    rec.finish();
    s.rec_sink->flush();
    s.has_record = true;
    s.diff_id = tee.diff_id();
    s.diff_size = tee.diff_size();
    s.stream_size = static_cast<int64_t>(tee.total());
  } else {
    // Kept aside as it came (validated and hashed on the way), applied at commit.
    RegisterTee tee(tar, nullptr, nullptr);
    constexpr size_t kBuf = 1 << 20;
    std::unique_ptr<uint8_t[]> buf(new uint8_t[kBuf]);
    for (;;) {
      size_t n = tee.read(buf.get(), kBuf);
      if (n == 0) break;
      s.rec_sink->write(buf.get(), n);
    }
    s.rec_sink->flush();
    s.diff_id = tee.diff_id();
    s.diff_size = tee.diff_size();
    s.stream_size = static_cast<int64_t>(tee.total());
  }
  ROLAYER_FAULT_POINT("stage.done");
  return staged;
}

std::unique_ptr<LayerRef> Store::commit_staged(StagedLayer& staged, const std::string& parent_id) {
  StagedLayer::Impl& s = *staged.impl_;
  if (s.st != st_) throw Error(Code::Inval, "the staged layer belongs to another store");
  if (s.state == StagedLayer::Impl::State::Committed) throw Error(Code::Inval, "the staged layer was committed already");
  if (s.state == StagedLayer::Impl::State::Discarded) throw Error(Code::Inval, "the staged layer was discarded");
  st_->check_writable();

  if (staged.deferred()) {
    // Applied now, on the parent, by an ordinary register: from the stream kept aside, or
    // rebuilt from the staged record and payloads (each checked; the DiffID is compared below).
    std::unique_ptr<ByteSource> src;
    if (s.cache_id.empty()) {
      fs::Fd fd(::fcntl(s.tmp_fd(), F_DUPFD_CLOEXEC, 0));
      if (!fd) throw_errno("reopen " + st_->tmp_dir + "/" + s.rec_name);
      if (::lseek(fd.get(), 0, SEEK_SET) != 0) throw_errno("seek " + st_->tmp_dir + "/" + s.rec_name);
      src = std::make_unique<fs::FdSource>(std::move(fd));
    } else {
      src = make_staged_stream(st_, s.tmp_fd(), s.cache_id);
    }
    auto ref = register_layer(parent_id, *src, s.descriptor);
    if (ref->node().diff_id != s.diff_id) {
      Store::release_ref(*ref);  // what this commit registered goes again
      throw Error(Code::Digest, "could not verify the staged layer " + s.diff_id.str() +
                                    ": applied again on its parent it gives " + ref->node().diff_id.str() +
                                    ". This may be because internal files in the layer store were modified")
          .with_diff_id(s.diff_id.str());
    }
    s.discard();
    s.state = StagedLayer::Impl::State::Committed;
    return ref;
  }

  // Hold the parent for the duration (a temporary handle, dropped without deletion).
  ParentHold hold(*this, parent_id);
  const std::shared_ptr<LayerNode>& parent = hold.node;

  const std::string cache_id = s.cache_id;
  st_->driver->set_parent(cache_id, parent ? parent->cache_id : std::string());
  ROLAYER_FAULT_POINT("stage.attached");
  const Digest chain = chain_id(parent ? parent->chain_id : Digest(), s.diff_id);

  std::unique_lock<std::mutex> g(st_->mu);
  st_->check_open();
  auto& db = *st_->db;
  auto converge = [&](std::unique_ptr<LayerRef> ref) {
    g.unlock();
    s.discard();
    s.state = StagedLayer::Impl::State::Committed;
    return ref;
  };
  {
    if (auto held = st_->held_locked(chain.str())) return converge(st_->new_ref(st_, held));
  }
  auto node = std::make_shared<LayerNode>();
  node->chain_id = chain;
  node->diff_id = s.diff_id;
  node->parent = parent;
  node->depth = parent ? parent->depth + 1 : 1;
  node->cache_id = cache_id;
  node->diff_size = s.diff_size;
  node->stream_size = s.stream_size;
  node->descriptor = s.descriptor;
  node->has_record = s.has_record;
  std::string stale_cache;
  {
    sql::Transaction tx(db);
    if (auto existing = st_->load_locked(chain.str())) {
      st_->hold_locked(existing);
      tx.commit();
      return converge(std::unique_ptr<LayerRef>(new LayerRef(st_, existing)));
    }
    {
      sql::Stmt q(db, "SELECT cache_id FROM layers WHERE chain_id = ?");
      q.bind(1, chain.str());
      if (q.step()) stale_cache = q.text(0);
    }
    if (!stale_cache.empty()) st_->mark_pending(stale_cache);
    insert_layer_row(db, *node, s.tmp_fd(), st_->tmp_dir + "/" + s.rec_name, s.body_hashes);
    st_->nodes.erase(chain.str());
    st_->hold_locked(node);
    ROLAYER_FAULT_POINT("stage.before_commit");
    try {
      tx.commit();
    } catch (...) {
      node->handles--;
      st_->nodes.erase(chain.str());
      throw;
    }
  }
  // Committed: from here on nothing undoes the layer.
  s.state = StagedLayer::Impl::State::Committed;
  auto ref = std::unique_ptr<LayerRef>(new LayerRef(st_, node));
  g.unlock();
  if (!stale_cache.empty() && stale_cache != cache_id) st_->remove_driver_data({stale_cache});
  st_->clear_pending(cache_id);
  s.rec_sink.reset();
  ::unlinkat(st_->tmp_fd.get(), s.rec_name.c_str(), 0);
  return ref;
}

}  // namespace rolayer
