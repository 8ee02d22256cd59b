/* SPDX-License-Identifier: Apache-2.0 */
// Private to lib/store: the shared state behind a Store, its references and its streams.
//
// Several stores (in one process or in many) use one root at once. The database is the truth
// for the layers, their persistent references and every open store's holds; what a StoreState
// keeps in memory is a cache of immutable identity rows and its own handle counts. See
// docs/store.md ("Several processes").
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/fs.h"
#include "drivers/driver.h"
#include "store/sqlite.h"
#include "store/store.h"

namespace rolayer {

struct StoreState {
  std::string root;
  std::string tmp_dir;      // <root>/tmp: temporary files, named <session>-…
  std::string pending_dir;  // <root>/pending: intent marks <session>-<driver id>
  fs::Fd root_fd, tmp_fd, pending_fd, lock_fd;
  // This open store's session: a row in `sessions` and an OFD lock on byte `slot` of <root>/lock,
  // which the kernel drops when the process dies. "" = none (a read-only file system).
  std::string session;
  int64_t slot = 0;
  bool read_only = false;   // no write to the store's layers (option, or a read-only file system)
  int64_t payload_pack_max = 0;  // the payload-pack threshold this open applies layers with (0 = off)
  bool fs_read_only = false;
  int busy_ms = 5000;
  std::shared_ptr<Driver> driver;
  DriverCaps caps;

  std::mutex mu;  // guards everything below, and every use of db
  std::unique_ptr<sql::Db> db;
  // Nodes this store has loaded, by ChainID; a node with handles > 0 is held by this store.
  // Weak: a node lives as long as a reference (LayerRef) or a child node uses it, so a
  // long-lived process that looks at many layers keeps only what it still uses, and there is
  // never a second live node for a ChainID while the first one lives. Expired entries are
  // dropped when the map has doubled since the last sweep (node_locked / remember_locked).
  std::unordered_map<std::string, std::weak_ptr<LayerNode>> nodes;
  size_t nodes_sweep_at = 1024;
  bool closed = false;

  // With mu held: the live node of chain_id (nullptr when none is loaded), and the same when it
  // is held here (handles > 0), else nullptr.
  std::shared_ptr<LayerNode> node_locked(const std::string& chain_id);
  std::shared_ptr<LayerNode> held_locked(const std::string& chain_id);
  // With mu held: node becomes the loaded node of its ChainID.
  void remember_locked(const std::shared_ptr<LayerNode>& node);
  void check_open() const;      // throws Error(Inval) once the store was closed
  void check_writable() const;  // throws Error(Io, EROFS) on a read-only store
  // With mu held: the layer from the database (nullptr when there is none, or its row or an
  // ancestor's cannot be read). Reuses a loaded node whose cache_id matches.
  std::shared_ptr<LayerNode> load_locked(const std::string& chain_id, int level = 0);
  // With mu held (inside a transaction when the node is not held yet): one more handle.
  void hold_locked(const std::shared_ptr<LayerNode>& node);
  std::unique_ptr<LayerRef> new_ref(const std::shared_ptr<StoreState>& self, const std::shared_ptr<LayerNode>& node);
  // Drop one handle of node; returns what was removed. Only an explicit release (or a handle
  // dropped after one was asked for, by any process) deletes: closing a handle alone never does.
  std::vector<Removed> release_handle(const std::shared_ptr<LayerNode>& node, bool explicit_release);
  // With mu held: delete chain_id if nothing keeps it (no persistent reference, no child, no
  // hold by a live session) and a release was asked for (or `asked`), then its parents the
  // same way. Rows go here; driver data removal is appended to `doomed` to run unlocked.
  std::vector<Removed> collect_locked(std::string chain_id, bool asked, std::vector<std::string>& doomed);
  // With mu held: the holds, temporary files and intent marks of dead sessions; what only they
  // held is collected. `exclusive`: no other session is open (leftovers without an owner too).
  std::vector<Removed> sweep_locked(bool exclusive, std::vector<std::string>& doomed);
  bool session_alive(const std::string& id);
  void remove_driver_data(const std::vector<std::string>& doomed);
  // Intent marks, so that a crash between driver work and the database commit leaves nothing
  // that the next open cannot find, whatever the driver (a caller's driver cannot list its ids).
  void mark_pending(const std::string& id);
  void clear_pending(const std::string& id);
  int64_t chain_size(const LayerNode& n) const;
  // Reads record chunk seq of layer chain_id into out; false when there is none.
  bool record_chunk(const std::string& chain_id, int64_t seq, std::string& out);
};

// lib/store/stream.cpp
// verify: the payloads as mounts see them (Driver::verify_payloads), for a verification.
std::unique_ptr<ByteSource> make_verified_stream(std::shared_ptr<StoreState> st,
                                                 std::unique_ptr<LayerRef> keep, bool verify = false);
// A staged layer's stream rebuilt from its record (a temporary file, read from offset 0) and
// the driver's payloads of cache_id, each payload checked against the record; the caller
// checks the DiffID (Store::commit_staged applies it again on the parent, which hashes it).
std::unique_ptr<ByteSource> make_staged_stream(const std::shared_ptr<StoreState>& st, int record_fd,
                                               const std::string& cache_id);

}  // namespace rolayer
