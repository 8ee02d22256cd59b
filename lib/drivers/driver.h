/* SPDX-License-Identifier: Apache-2.0 */
// The graph-driver interface. Built-in drivers ("dir", "exact") and callers' C drivers
// (rolayer_driver_ops, through lib/drivers/user) all implement it: one code path.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/io.h"

namespace rolayer {

// The largest payload-pack threshold a store may set (rolayer_store_options.payload_pack_max,
// documented there as 16 MiB): a packed payload is read whole by an export.
inline constexpr uint64_t kMaxPayloadPackBytes = uint64_t(16) << 20;

struct DriverCaps {
  bool exact_diffs = false;  // diff(id, parent) reproduces the registered stream byte for byte
};

// Payloads of one layer, opened in stream order during one export.
class PayloadSession {
 public:
  virtual ~PayloadSession() = default;
  // The payload of the next regular/sparse entry of the stream, by cleaned relative path.
  // Called once per such entry, in stream order (so duplicate paths can be told apart).
  virtual std::unique_ptr<PayloadFile> open(const std::string& path) = 0;
  // The stream ended (every payload was opened): a driver may check what it read ahead.
  virtual void finish() {}

  // Batched reads (optional). A driver that keeps consecutive payloads together in one file
  // (the dir driver's payload pack) reads several whole payloads with one system call, straight
  // into their places in the caller's output. batchable(f): f, opened from this session, can be
  // read by read_batch (its size() is its exact length). read_batch(reads, n): reads each
  // listed payload whole (size bytes, its size()) into dst; the files were opened in the order
  // listed. The bytes are unchecked: the caller checks them as it checks any read's. A read that
  // comes up short (the file shrank) throws (Code::Corrupt for the pack).
  struct BatchRead {
    PayloadFile* file;
    uint8_t* dst;
    size_t size;
  };
  virtual bool batchable(const PayloadFile& f) const {
    (void)f;
    return false;
  }
  virtual void read_batch(const BatchRead* reads, size_t n);
};

class Driver {
 public:
  virtual ~Driver() = default;
  virtual std::string name() const = 0;
  virtual DriverCaps caps() const = 0;
  // Called once when a store opens (root: the store's root directory, which the driver may use
  // below <root>/<name>/). Returns the ids the driver holds, so that the store can remove
  // orphans left by a crash.
  virtual std::vector<std::string> init(const std::string& store_root) = 0;
  // As init(), while other processes (or other opens in this one) may be using the store: what
  // looks like the leftover of an interrupted create or remove may be another's work in
  // progress and must be kept. The store calls init() only when it is the store's only user.
  virtual std::vector<std::string> init_shared(const std::string& store_root) { return init(store_root); }
  // What a store's open calls: init() when alone, else init_shared(), without the ids (a store
  // of 100,000 layers need not list and sort them on every open). A driver may override it
  // with a cheaper start that does the same clean-up.
  virtual void open_store(const std::string& store_root, bool alone) {
    if (alone)
      init(store_root);
    else
      init_shared(store_root);
  }
  // Create empty storage for layer id on top of parent ("" = base).
  virtual void create(const std::string& id, const std::string& parent) = 0;
  // Remove a layer's storage; no error if it does not exist.
  virtual void remove(const std::string& id) = 0;
  // Apply an uncompressed tar to layer id; returns the bytes stored. Durable on return.
  virtual int64_t apply_diff(const std::string& id, const std::string& parent, ByteSource& tar) = 0;
  // The diff of id against ancestor ("" = the whole flattened chain).
  virtual std::unique_ptr<ByteSource> diff(const std::string& id, const std::string& ancestor) = 0;
  // Payload access for stream reassembly (drivers without exact_diffs).
  virtual std::unique_ptr<PayloadSession> payloads(const std::string& id) = 0;
  // As payloads(), for a verification: the payloads as mounts see them (a driver that keeps a
  // second copy for exports, the dir driver's payload pack, reads the files and checks the copy
  // against them).
  virtual std::unique_ptr<PayloadSession> verify_payloads(const std::string& id) { return payloads(id); }
  // The store's payload-pack setting (rolayer_store_options.payload_pack_max): layers applied
  // from now on keep a pack of their regular files' payloads of 1 to max_bytes bytes (0 = none).
  // Drivers without a pack ignore it. Called after open_store, before any apply.
  virtual void set_payload_pack(uint64_t max_bytes) { (void)max_bytes; }
  // Key/value metadata of layer id.
  virtual std::vector<std::pair<std::string, std::string>> metadata(const std::string& id) = 0;

  // Staging (a layer applied before its parent is known; Store::stage). A driver that cannot
  // (the default) is staged by the store keeping the stream aside and applying it at commit.
  virtual bool can_stage() const { return false; }
  // Applies tar to id (made with create(id, "")) without reading any other layer; returns the
  // bytes stored, durable on return. *needs_parent: the result would differ on a parent, and
  // the store applies the layer again on it at commit.
  virtual int64_t apply_staged(const std::string& id, ByteSource& tar, bool* needs_parent);
  // Makes id, applied with apply_staged, a child of parent (an applied layer). Durable on return.
  virtual void set_parent(const std::string& id, const std::string& parent);
};

// Built-in drivers by name ("dir", "exact"); Error(Inval) for an unknown name (builtin.cpp).
std::unique_ptr<Driver> make_builtin_driver(const std::string& name);

}  // namespace rolayer
