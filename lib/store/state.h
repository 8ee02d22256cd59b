// Private to lib/store: the shared state behind a Store, its references and its streams.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/fs.h"
#include "drivers/driver.h"
#include "store/sqlite.h"
#include "store/store.h"

namespace rolayer {

struct StoreState {
  std::string root;
  std::string tmp_dir;
  std::string pending_dir;  // intent marks: driver ids whose data may exist without a committed row
  std::shared_ptr<Driver> driver;
  DriverCaps caps;
  fs::Fd lock_fd;

  std::mutex mu;  // guards everything below, and every use of db
  std::unique_ptr<sql::Db> db;
  std::unordered_map<std::string, std::shared_ptr<LayerNode>> layers;
  bool closed = false;

  void check_open() const;  // throws Error(Inval) once the store was closed
  std::shared_ptr<LayerNode> find_locked(const std::string& chain_id) const;
  // Drop one handle of node; returns what was removed. Only an explicit release (or a handle
  // dropped after one was asked for) deletes: closing a handle or freeing a stream alone never does.
  std::vector<Removed> release_handle(const std::shared_ptr<LayerNode>& node, bool explicit_release);
  // With mu held: delete every node that no longer has a reference, following parents.
  // Database rows go here; driver data removal is appended to `doomed` to run unlocked.
  std::vector<Removed> collect_locked(std::shared_ptr<LayerNode> node, std::vector<std::string>& doomed);
  void remove_driver_data(const std::vector<std::string>& doomed);
  // Intent marks, so that a crash between driver work and the database commit leaves nothing
  // that the next open cannot find, whatever the driver (a caller's driver cannot list its ids).
  void mark_pending(const std::string& id);
  void clear_pending(const std::string& id);
  // A new handle (handles + 1) on node.
  std::unique_ptr<LayerRef> new_ref(const std::shared_ptr<StoreState>& self, const std::shared_ptr<LayerNode>& node);
  int64_t chain_size(const LayerNode& n) const;
  // Reads record chunk seq of layer chain_id into out; false when there is none.
  bool record_chunk(const std::string& chain_id, int64_t seq, std::string& out);
};

// lib/store/stream.cpp
std::unique_ptr<ByteSource> make_verified_stream(std::shared_ptr<StoreState> st,
                                                 std::unique_ptr<LayerRef> keep);

}  // namespace rolayer
