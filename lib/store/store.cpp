#include "store/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <thread>
#include <unordered_set>

#include "core/error.h"
#include "core/fault.h"
#include "core/fs.h"
#include "digest/pipelined.h"
#include "record/record.h"
#include "record/xxh3.h"
#include "store/flatten.h"
#include "store/record_bind.h"
#include "store/state.h"
#include "tar/path.h"
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

// Takes the store's process lock: one process at a time uses a store (docs/threading.md).
fs::Fd take_lock(const std::string& root, int timeout_ms) {
  std::string path = root + "/lock";
  fs::Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) throw_errno("open " + path);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(0, timeout_ms));
  for (;;) {
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return fd;
    if (errno != EWOULDBLOCK && errno != EINTR) throw_errno("lock " + path);
    if (timeout_ms < 0 || std::chrono::steady_clock::now() >= deadline)
      throw Error(Code::Busy, "store is busy: " + root + " is in use by another process");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The tee between the caller's input and the driver: hashes every byte (DiffID), scans and
// validates the archive, and records it when the driver needs a fidelity record.
class RegisterTee : public ByteSource, private tar::ScanHandler {
 public:
  RegisterTee(ByteSource& in, record::Writer* rec) : in_(in), rec_(rec), scanner_(*this) {}

  size_t read(uint8_t* buf, size_t cap) override {
    if (failure_) std::rethrow_exception(failure_);
    if (eof_) return 0;
    try {
      size_t n = in_.read(buf, cap);
      if (n == 0) {
        eof_ = true;
        scanner_.finish();
        return 0;
      }
      sha_.update(buf, n);
      total_ += n;
      scanner_.feed(buf, n);
      return n;
    } catch (...) {
      failure_ = std::current_exception();
      throw;
    }
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
    std::string path = safety_.check(e);
    // The fidelity record stores paths up to 64 KiB; no file system takes more anyway.
    if (path.size() > kMaxEntryPath)
      throw Error(Code::Archive, "tar entry name is longer than " + std::to_string(kMaxEntryPath) + " bytes")
          .with_path(path.substr(0, 256));
    if (!e.has_payload()) return;
    if (path.empty())
      throw Error(Code::Archive, "a regular-file entry names the layer's root directory").with_path(e.name);
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
    if (!rec_) return;
    xxh_.update(data, len);
    blocks_.update(data, len);  // per-MiB sums: the export checks each block before it goes out
  }
  void on_entry_end() override {
    if (!rec_ || file_.type != record::Item::Type::File) return;
    file_.xxh3 = xxh_.digest();
    file_.blocks = blocks_.finish();
    rec_->add_file(file_);
    file_.type = record::Item::Type::Raw;
  }

  ByteSource& in_;
  record::Writer* rec_;
  tar::Scanner scanner_;
  tar::SafetyChecker safety_;
  PipelinedHasher sha_;  // the DiffID, hashed on a worker thread once the stream is long
  record::Xxh3 xxh_;
  record::BlockSums blocks_;
  record::Item file_;
  uint64_t total_ = 0;
  int64_t diff_size_ = 0;
  bool eof_ = false;
  std::exception_ptr failure_;
};

}  // namespace

// ---- StoreState ---------------------------------------------------------------------------

void StoreState::check_open() const {
  if (closed) throw Error(Code::Inval, "the store was closed");
}

std::shared_ptr<LayerNode> StoreState::find_locked(const std::string& chain_id) const {
  auto it = layers.find(chain_id);
  return it == layers.end() ? nullptr : it->second;
}

std::unique_ptr<LayerRef> StoreState::new_ref(const std::shared_ptr<StoreState>& self,
                                              const std::shared_ptr<LayerNode>& node) {
  node->handles++;
  return std::unique_ptr<LayerRef>(new LayerRef(self, node));
}

int64_t StoreState::chain_size(const LayerNode& n) const {
  int64_t s = 0;
  for (const LayerNode* p = &n; p; p = p->parent.get()) s += p->diff_size;
  return s;
}

std::vector<Removed> StoreState::collect_locked(std::shared_ptr<LayerNode> node,
                                                std::vector<std::string>& doomed) {
  std::vector<Removed> out;
  while (node && !node->removed && node->handles == 0 && node->children == 0 && node->persistent == 0) {
    mark_pending(node->cache_id);
    ROLAYER_FAULT_POINT("release.marked");
    {
      sql::Transaction tx(*db);
      sql::Stmt(*db, "DELETE FROM records WHERE chain_id = ?").bind(1, node->chain_id.str()).run();
      sql::Stmt(*db, "DELETE FROM layers WHERE chain_id = ?").bind(1, node->chain_id.str()).run();
      ROLAYER_FAULT_POINT("release.before_commit");
      tx.commit();
    }
    ROLAYER_FAULT_POINT("release.row_deleted");
    node->removed = true;
    layers.erase(node->chain_id.str());
    doomed.push_back(node->cache_id);
    out.push_back({node->chain_id.str(), node->diff_id.str(), chain_size(*node), node->diff_size});
    auto parent = node->parent;
    if (parent) {
      parent->children--;
      // The cascade asks for the parent's release: if a stream or a handle still holds it, the
      // parent goes when that last reference does.
      parent->release_pending = true;
    }
    node = parent;
  }
  return out;
}

void StoreState::remove_driver_data(const std::vector<std::string>& doomed) {
  // The metadata is gone already; driver data left by a failure here is an orphan that the
  // next open removes.
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
  std::string p = pending_dir + "/" + id;
  fs::Fd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) throw_errno("create " + p);
  fs::fsync_dir(pending_dir);
}

void StoreState::clear_pending(const std::string& id) { ::unlink((pending_dir + "/" + id).c_str()); }

std::vector<Removed> StoreState::release_handle(const std::shared_ptr<LayerNode>& node, bool explicit_release) {
  std::vector<std::string> doomed;
  std::vector<Removed> out;
  {
    std::lock_guard<std::mutex> g(mu);
    node->handles--;
    if (closed) return out;
    if (explicit_release) node->release_pending = true;
    if (!node->release_pending) return out;
    out = collect_locked(node, doomed);
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

std::unique_ptr<Store> Store::open(const std::string& root_in, StoreOptions opts) {
  if (root_in.empty()) throw Error(Code::Inval, "the store root must not be empty");
  auto st = std::make_shared<StoreState>();
  st->root = root_in;
  while (st->root.size() > 1 && st->root.back() == '/') st->root.pop_back();
  fs::mkdirs(st->root, 0700);
  st->lock_fd = take_lock(st->root, opts.busy_timeout_ms == 0 ? 5000 : opts.busy_timeout_ms);
  st->tmp_dir = st->root + "/tmp";
  if (fs::exists(st->tmp_dir)) fs::remove_all(st->tmp_dir);  // leftovers of a crash
  fs::mkdirs(st->tmp_dir, 0700);
  st->pending_dir = st->root + "/pending";
  fs::mkdirs(st->pending_dir, 0700);

  st->db = std::make_unique<sql::Db>(st->root + "/metadata.db");
  auto& db = *st->db;
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("PRAGMA synchronous=FULL");
  db.exec("PRAGMA foreign_keys=ON");
  {
    // A store that holds layer data but whose database is empty (lost, truncated) is not a new
    // store: refuse rather than treat every layer as gone.
    sql::Stmt q(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'layers'");
    bool fresh = q.step() && q.int64(0) == 0;
    if (fresh) {
      for (const char* d : {"dir", "exact"}) {
        std::string p = st->root + "/" + d;
        if (DIR* dd = ::opendir(p.c_str())) {
          bool any = false;
          while (struct dirent* de = ::readdir(dd))
            if (de->d_name[0] != '.') any = true;
          ::closedir(dd);
          if (any)
            throw Error(Code::Corrupt, "the store database " + db.path() + " is empty, but " + p +
                                           " holds layer data: the database was lost or truncated; refusing to "
                                           "open it as a new store");
        }
      }
    }
  }
  db.exec(kSchema);
  ensure_record_binding_column(db);  // lib/store/record_bind.cpp

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
    sql::Transaction tx(db);
    sql::Stmt get(db, "SELECT value FROM meta WHERE key = ?");
    get.bind(1, "driver");
    if (get.step()) {
      std::string have = get.text(0);
      if (have != st->driver->name())
        throw Error(Code::Inval, "the store at " + st->root + " uses the \"" + have +
                                     "\" driver, not \"" + st->driver->name() + "\"");
    } else {
      sql::Stmt(db, "INSERT INTO meta (key, value) VALUES ('driver', ?)").bind(1, st->driver->name()).run();
      sql::Stmt(db, "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)")
          .bind(1, std::to_string(kSchemaVersion)).run();
    }
    tx.commit();
  }
  {
    sql::Stmt get(db, "SELECT value FROM meta WHERE key = 'schema'");
    if (get.step() && get.text(0) != std::to_string(kSchemaVersion))
      throw Error(Code::Unsupported, "the store at " + st->root + " has schema version " + get.text(0) +
                                         "; this library reads version " + std::to_string(kSchemaVersion));
  }

  // Load every layer, parents first.
  size_t rows = 0;
  {
    sql::Stmt c(db, "SELECT count(*) FROM layers");
    if (c.step()) rows = static_cast<size_t>(std::max<int64_t>(0, c.int64(0)));
  }
  st->layers.reserve(rows);
  sql::Stmt q(db,
              "SELECT chain_id, diff_id, parent, depth, cache_id, diff_size, stream_size, desc_media_type, "
              "desc_digest, desc_size, has_record, persistent FROM layers ORDER BY depth");
  std::unordered_set<std::string> cache_ids;
  cache_ids.reserve(rows);
  while (q.step()) {
    auto n = std::make_shared<LayerNode>();
    try {
      n->chain_id = Digest::parse(q.text(0));
      n->diff_id = Digest::parse(q.text(1));
    } catch (const Error&) {
      continue;  // an unreadable row: skip it, the layer is reported missing
    }
    if (!q.is_null(2)) {
      n->parent = st->find_locked(q.text(2));
      if (!n->parent) continue;  // parent row unreadable: the child cannot be served
      n->parent->children++;
    }
    n->depth = static_cast<int>(q.int64(3));
    n->cache_id = q.text(4);
    n->diff_size = q.int64(5);
    n->stream_size = q.int64(6);
    if (!q.is_null(7)) n->descriptor.media_type = q.text(7);
    if (!q.is_null(8)) n->descriptor.digest = q.text(8);
    n->descriptor.size = q.is_null(9) ? -1 : q.int64(9);
    n->has_record = q.int64(10) != 0;
    n->persistent = q.int64(11);
    cache_ids.insert(n->cache_id);
    std::string key = n->chain_id.str();
    st->layers.emplace(std::move(key), std::move(n));
  }
  st->driver->init(st->root);
  // Remove driver data that no committed layer owns, left by a crash during register or
  // release: exactly the ids that intent marks name and no row holds (a row that cannot be
  // loaded still holds its data: the open cannot tell that such a layer is gone). Only the
  // marks listed in pending/ are looked at and cleared.
  std::vector<std::string> pending;
  if (DIR* d = ::opendir(st->pending_dir.c_str())) {
    while (struct dirent* de = ::readdir(d))
      if (de->d_name[0] != '.') pending.emplace_back(de->d_name);
    ::closedir(d);
  }
  if (!pending.empty()) {
    // Rows that could not be loaded above still own their data.
    sql::Stmt all(db, "SELECT cache_id FROM layers");
    while (all.step()) cache_ids.insert(all.text(0));
  }
  for (const auto& id : pending) {
    try {
      if (!cache_ids.count(id)) st->driver->remove(id);
      st->clear_pending(id);
    } catch (...) {
    }
  }
  return std::unique_ptr<Store>(new Store(std::move(st)));
}

Store::~Store() {
  std::lock_guard<std::mutex> g(st_->mu);
  st_->closed = true;
  st_->db.reset();
  st_->lock_fd.reset();
}

const std::string& Store::root() const { return st_->root; }
std::string Store::driver_name() const { return st_->driver->name(); }

std::unique_ptr<LayerRef> Store::register_layer(const std::string& parent_id, ByteSource& tar,
                                                const Descriptor& descriptor) {
  if (!descriptor.digest.empty()) Digest::parse(descriptor.digest);
  if (!descriptor.media_type.empty() && descriptor.media_type.size() > 255)
    throw Error(Code::Inval, "descriptor media type is too long");

  // Hold the parent for the duration (a temporary handle, dropped without deletion).
  std::shared_ptr<LayerNode> parent;
  if (!parent_id.empty()) {
    Digest::parse(parent_id);
    std::lock_guard<std::mutex> g(st_->mu);
    st_->check_open();
    parent = st_->find_locked(parent_id);
    if (!parent) throw Error(Code::NotFound, "layer does not exist: " + parent_id);
    if (parent->depth >= kMaxDepth)
      throw Error(Code::MaxDepth, "max depth exceeded: layer " + parent_id + " has depth " +
                                      std::to_string(parent->depth) + " (the maximum is " +
                                      std::to_string(kMaxDepth) + ")");
    parent->handles++;
  }
  struct ParentHold {
    StoreState& st;
    std::shared_ptr<LayerNode> p;
    ~ParentHold() {
      if (!p) return;
      std::lock_guard<std::mutex> g(st.mu);
      p->handles--;
    }
  } hold{*st_, parent};

  std::string cache_id = fs::random_hex();
  const std::string parent_cache = parent ? parent->cache_id : std::string();
  bool committed = false;
  std::string rec_path;
  auto cleanup = [&]() {
    try {
      // Even when create itself failed: it may have made part of the layer's storage.
      if (!committed) st_->driver->remove(cache_id);
      st_->clear_pending(cache_id);  // kept if the removal failed: the next open retries it
    } catch (...) {
    }
    if (!rec_path.empty()) ::unlink(rec_path.c_str());
  };

  Digest diff_id, chain;
  int64_t diff_size = 0;
  uint64_t stream_size = 0;
  try {
    std::unique_ptr<fs::FdSink> rec_sink;
    std::unique_ptr<record::Writer> rec;
    RecordBodyHashes body_hashes;
    if (!st_->caps.exact_diffs) {
      rec_path = st_->tmp_dir + "/record-" + cache_id;
      fs::Fd fd(::open(rec_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!fd) throw_errno("create " + rec_path);
      rec_sink = std::make_unique<fs::FdSink>(std::move(fd));
      rec = std::make_unique<record::Writer>(*rec_sink, &body_hashes);
    }
    st_->mark_pending(cache_id);
    st_->driver->create(cache_id, parent_cache);
    ROLAYER_FAULT_POINT("register.created");
    StreamBlockSums stream_blocks(tar, st_->caps.exact_diffs);  // lib/store/record_bind.h
    RegisterTee tee(stream_blocks, rec.get());
    try {
      st_->driver->apply_diff(cache_id, parent_cache, tee);
      tee.drain();
    } catch (...) {
      // The store's own verdict on the input (the caller's reader, the archive) comes first.
      if (tee.failure()) std::rethrow_exception(tee.failure());
      throw;
    }
    if (tee.failure()) std::rethrow_exception(tee.failure());
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
    if (auto existing = st_->find_locked(chain.str())) {
      auto ref = st_->new_ref(st_, existing);
      g.unlock();
      cleanup();
      return ref;
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
      auto& db = *st_->db;
      sql::Transaction tx(db);
      {
        sql::Stmt q(db, "SELECT cache_id FROM layers WHERE chain_id = ?");
        q.bind(1, chain.str());
        if (q.step()) stale_cache = q.text(0);
      }
      if (!stale_cache.empty()) st_->mark_pending(stale_cache);
      sql::Stmt ins(db,
                    "INSERT OR REPLACE INTO layers (chain_id, diff_id, parent, depth, cache_id, diff_size, stream_size, "
                    "desc_media_type, desc_digest, desc_size, has_record, persistent, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, strftime('%s','now'))");
      ins.bind(1, chain.str()).bind(2, diff_id.str());
      if (parent) ins.bind(3, parent->chain_id.str()); else ins.bind_null(3);
      ins.bind(4, static_cast<int64_t>(node->depth)).bind(5, cache_id).bind(6, diff_size)
          .bind(7, node->stream_size);
      if (descriptor.media_type.empty()) ins.bind_null(8); else ins.bind(8, descriptor.media_type);
      if (descriptor.digest.empty()) ins.bind_null(9); else ins.bind(9, descriptor.digest);
      if (descriptor.size < 0) ins.bind_null(10); else ins.bind(10, descriptor.size);
      ins.bind(11, static_cast<int64_t>(node->has_record ? 1 : 0));
      ins.run();
      // A row with this ChainID that is not loaded is a damaged leftover: it is replaced.
      sql::Stmt(db, "DELETE FROM records WHERE chain_id = ?").bind(1, chain.str()).run();
      if (rec) {
        sql::Stmt chunk(db, "INSERT INTO records (chain_id, seq, data) VALUES (?, ?, ?)");
        if (::lseek(rec_sink->fd(), 0, SEEK_SET) != 0) throw_errno("seek " + rec_path);
        std::unique_ptr<uint8_t[]> buf(new uint8_t[kRecordChunk]);  // not zero-filled: read_full writes first
        for (int64_t seq = 0;; seq++) {
          size_t n = fs::read_full(rec_sink->fd(), buf.get(), kRecordChunk);
          if (n == 0) break;
          chunk.reset();
          chunk.bind(1, chain.str()).bind(2, seq).bind_blob(3, buf.get(), n);
          chunk.run();
        }
        // Binds the record to this layer (lib/store/record_bind.h).
        store_record_digests(db, chain.str(), body_hashes.bound(chain.str()));
      }
      if (st_->caps.exact_diffs) store_stream_blocks(db, chain.str(), stream_blocks.finish());
      ROLAYER_FAULT_POINT("register.before_commit");
      tx.commit();
    }
    // Committed: from here on nothing undoes the layer.
    committed = true;
    st_->layers[chain.str()] = node;
    if (parent) parent->children++;
    auto ref = st_->new_ref(st_, node);
    g.unlock();
    if (!stale_cache.empty() && stale_cache != cache_id) st_->remove_driver_data({stale_cache});
    ROLAYER_FAULT_POINT("register.committed");
    st_->clear_pending(cache_id);
    if (!rec_path.empty()) ::unlink(rec_path.c_str());
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
  auto n = st_->find_locked(chain_id);
  if (!n) throw Error(Code::NotFound, "layer does not exist: " + chain_id);
  return st_->new_ref(st_, n);
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
  std::vector<std::string> out;
  out.reserve(st_->layers.size());
  for (const auto& kv : st_->layers) out.push_back(kv.first);
  return out;
}

void Store::retain(const std::string& chain_id) {
  Digest::parse(chain_id);
  std::lock_guard<std::mutex> g(st_->mu);
  st_->check_open();
  auto n = st_->find_locked(chain_id);
  if (!n) throw Error(Code::NotFound, "layer does not exist: " + chain_id);
  sql::Stmt(*st_->db, "UPDATE layers SET persistent = persistent + 1 WHERE chain_id = ?").bind(1, chain_id).run();
  n->persistent++;
}

std::vector<Removed> Store::unretain(const std::string& chain_id) {
  Digest::parse(chain_id);
  std::vector<std::string> doomed;
  std::vector<Removed> out;
  {
    std::lock_guard<std::mutex> g(st_->mu);
    st_->check_open();
    auto n = st_->find_locked(chain_id);
    if (!n) throw Error(Code::NotFound, "layer does not exist: " + chain_id);
    if (n->persistent <= 0) throw Error(Code::NotRetained, "layer not retained: " + chain_id);
    sql::Stmt(*st_->db, "UPDATE layers SET persistent = persistent - 1 WHERE chain_id = ?").bind(1, chain_id).run();
    n->persistent--;
    out = st_->collect_locked(n, doomed);
  }
  st_->remove_driver_data(doomed);
  return out;
}

int64_t Store::retained(const std::string& chain_id) {
  Digest::parse(chain_id);
  std::lock_guard<std::mutex> g(st_->mu);
  st_->check_open();
  auto n = st_->find_locked(chain_id);
  if (!n) throw Error(Code::NotFound, "layer does not exist: " + chain_id);
  return n->persistent;
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

std::unique_ptr<ByteSource> Store::tar_stream(const LayerRef& ref) {
  auto& st = ref.st_;
  std::unique_ptr<LayerRef> keep;
  {
    std::lock_guard<std::mutex> g(st->mu);
    st->check_open();
    if (ref.released()) throw Error(Code::NotRetained, "layer not retained: " + ref.node().chain_id.str());
    keep = st->new_ref(st, ref.node_);
  }
  return make_verified_stream(st, std::move(keep));
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
