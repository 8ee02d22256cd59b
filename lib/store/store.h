/* SPDX-License-Identifier: Apache-2.0 */
// The layer store: register, open, release (with the cascade), verified streams.
// Semantics follow the Docker engine's layer package (layer/layer_store.go, ro_layer.go);
// see docs/store.md for where and why they differ.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/io.h"
#include "digest/digest.h"
#include "drivers/driver.h"

namespace rolayer {

constexpr int kMaxDepth = 125;

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = -1;
};

// One layer of the store, as one open store sees it. Identity fields are immutable once
// registered (a row of the database is the truth; this is a cache of it, checked by cache_id).
// The reference counts of the store live in the database (persistent references, children,
// every open store's holds): see docs/store.md.
struct LayerNode {
  Digest chain_id, diff_id;
  std::shared_ptr<LayerNode> parent;  // null for a base layer
  int depth = 1;
  std::string cache_id;               // the driver's id for the layer
  int64_t diff_size = 0;              // regular-file payload bytes of this layer
  int64_t stream_size = 0;            // bytes of the registered tar
  Descriptor descriptor;
  bool has_record = false;            // a fidelity record is stored (driver without exact diffs)
  // Guarded by the store mutex: open references (handles and streams) through this open
  // store. While it is above 0 the database holds a row (session, chain_id) that keeps the
  // layer from being deleted by anyone.
  int64_t handles = 0;
};

struct Removed {
  std::string chain_id, diff_id;
  int64_t size = 0, diff_size = 0;
};

// One layer as rolayer_store_layers() reports it (the getters of a layer handle, in one list).
struct LayerInfo {
  std::string chain_id, diff_id, parent;  // parent empty for a base layer
  std::string cache_id;                    // the driver's id for the layer
  int depth = 0;
  int64_t size = 0, diff_size = 0, stream_size = 0, retained = 0;
  std::string media_type, digest;  // the descriptor's; empty when not recorded
  int64_t desc_size = -1;
};

struct StoreState;

// A reference to a layer: what rolayer_layer wraps.
class LayerRef {
 public:
  ~LayerRef();
  LayerRef(const LayerRef&) = delete;
  LayerRef& operator=(const LayerRef&) = delete;
  const LayerNode& node() const { return *node_; }
  bool released() const { return released_.load(); }

 private:
  friend class Store;
  friend struct StoreState;
  LayerRef(std::shared_ptr<StoreState> st, std::shared_ptr<LayerNode> node)
      : st_(std::move(st)), node_(std::move(node)) {}
  std::shared_ptr<StoreState> st_;
  std::shared_ptr<LayerNode> node_;
  std::atomic<bool> released_{false};
};

// A layer applied before its parent is known (Store::stage): its DiffID, sizes and record are
// computed, its data is applied (dir driver) or kept aside (other drivers); commit_staged puts
// it on a parent. Destroying one that was not committed discards it (nothing stays behind).
// One thread at a time; it may move between threads.
class StagedLayer {
 public:
  ~StagedLayer();
  StagedLayer(const StagedLayer&) = delete;
  StagedLayer& operator=(const StagedLayer&) = delete;
  const Digest& diff_id() const;
  int64_t stream_size() const;
  int64_t diff_size() const;
  // The layer is applied at commit, on its parent: the driver cannot stage, or the layer
  // depends on its parent (a hard link to a lower file, a parent directory it did not declare).
  bool deferred() const;

 private:
  friend class Store;
  struct Impl;
  explicit StagedLayer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct StoreOptions {
  std::string driver_name;          // built-in driver, "" = "dir"; ignored when driver is set
  std::unique_ptr<Driver> driver;   // a driver instance (e.g. a caller's C driver)
  int busy_timeout_ms = 5000;       // wait for another process's lock; < 0: fail at once
  bool read_only = false;           // list/inspect/export/verify only; writes fail (EIO, errno EROFS)
  // The payload pack (docs/store.md): > 0 = layers registered from now on keep a pack of their
  // regular payloads of 1 to this many bytes (at most 16 MiB); < 0 = no pack for new layers;
  // 0 = the store's setting as it is. A change is kept in the store's metadata for later opens.
  int64_t payload_pack_max = 0;
};

class Store {
 public:
  static std::unique_ptr<Store> open(const std::string& root, StoreOptions opts);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& root() const;
  std::string driver_name() const;

  std::unique_ptr<LayerRef> register_layer(const std::string& parent_chain_id, ByteSource& tar,
                                           const Descriptor& descriptor = {});
  // Two-phase register (docs/store.md, "Staged registers"): stage applies and hashes a layer's
  // stream with no parent (safe on many threads at once); commit_staged puts it on parent_chain_id
  // ("" = a base layer), computing the ChainID and running the checks that need the parent
  // chain, with the same outcomes as register_layer on that parent. Throws Error(Inval) for a
  // staged layer of another store, or one already committed or discarded.
  std::unique_ptr<StagedLayer> stage(ByteSource& tar, const Descriptor& descriptor = {});
  std::unique_ptr<LayerRef> commit_staged(StagedLayer& staged, const std::string& parent_chain_id);
  // Discards an uncommitted staged layer now (its data and temporary files); idempotent.
  static void discard_staged(StagedLayer& staged) noexcept;
  std::unique_ptr<LayerRef> get(const std::string& chain_id);
  // Drops the reference; throws Error(NotRetained) if it was already released.
  std::vector<Removed> release(LayerRef& ref);
  std::vector<std::string> list();
  // Every layer that list() names, with what a handle tells about it, read in one query
  // (no handle, no hold, no write): listing a store of many layers.
  std::vector<LayerInfo> layer_infos();
  // How many layers this open store has loaded and still uses (held, or the parent of one that
  // is): what a long-lived process keeps in memory for the store's layers.
  size_t loaded_layers();

  void retain(const std::string& chain_id);
  std::vector<Removed> unretain(const std::string& chain_id);
  int64_t retained(const std::string& chain_id);
  // A persistent, named hold (a mount's): while a pin names a layer, no release, unretain or gc
  // deletes it (nor, through it, its parents), whatever process asks; it survives the process
  // that made it and ends only by unpin. Pinning a name again moves it. It is not a persistent
  // reference: retained() does not count it. Throws NotFound for an unknown chain.
  void pin(const std::string& name, const std::string& chain_id);
  // Drops the pin (existed: whether there was one) and collects what it alone kept: the layer
  // when it has no persistent reference, no child and no live holder, then the cascade.
  std::vector<Removed> unpin(const std::string& name, bool* existed = nullptr);
  // The pins whose names start with prefix: (name, chain_id), by name.
  std::vector<std::pair<std::string, std::string>> pins(const std::string& prefix);
  // Collects what no live holder keeps: the holds and leftovers of dead processes, and every
  // layer without a persistent reference, a child or a live hold. Returns what was removed.
  std::vector<Removed> gc();
  bool read_only() const;
  // The store's payload-pack threshold in bytes (0 = off), as this open uses it.
  int64_t payload_pack_max() const;

  // These work through the reference's own store (they fail cleanly once it is closed).
  static int64_t size(const LayerRef& ref);  // DiffSize over the chain
  static std::vector<std::pair<std::string, std::string>> metadata(const LayerRef& ref);
  // The verified stream (keeps its own reference to the layer).
  static std::unique_ptr<ByteSource> tar_stream(const LayerRef& ref);
  // The same stream for a verification: payloads read as mounts see them (a driver's second copy
  // for exports, the dir driver's payload pack, is checked against them).
  static std::unique_ptr<ByteSource> verify_stream(const LayerRef& ref);
  // The diff against ancestor ("" = flattened chain), verified: the registered stream when
  // ancestor is the parent (or "" for a base layer), else built from the verified registered
  // streams of the layers above ancestor (lib/store/flatten.h).
  static std::unique_ptr<ByteSource> tar_stream_from(const LayerRef& ref, const std::string& ancestor);
  static std::unique_ptr<ByteSource> verified_diff_from(const LayerRef& ref, const std::string& ancestor);

  // Releases a reference through whichever store it belongs to (the store may be closed).
  static std::vector<Removed> release_ref(LayerRef& ref);
  // Drops the reference without deleting anything, even if it was the last one.
  static void close_ref(LayerRef& ref);

 private:
  friend struct ImagesAccess;  // lib/store/images.cpp
  // tar_stream (verify_tree false) and verify_stream (true).
  static std::unique_ptr<ByteSource> verified_stream(const LayerRef& ref, bool verify_tree);
  // lib/store/store.cpp: a register's or a commit's parent, held while it runs.
  struct ParentHold {
    ParentHold(Store& store, const std::string& parent_id);
    ~ParentHold();
    ParentHold(const ParentHold&) = delete;
    ParentHold& operator=(const ParentHold&) = delete;
    std::unique_ptr<LayerRef> ref;
    std::shared_ptr<LayerNode> node;
  };
  explicit Store(std::shared_ptr<StoreState> st) : st_(std::move(st)) {}
  std::shared_ptr<StoreState> st_;
};

}  // namespace rolayer
