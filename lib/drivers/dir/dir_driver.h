/* SPDX-License-Identifier: Apache-2.0 */
// The built-in "dir" graph driver: one directory per layer holding only that layer's own
// changes (like moby's vfs, without copying the parent), plus metadata that records whiteouts,
// opaque directories and relocated payloads. Layout and formats: dir_internal.h.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "drivers/driver.h"

namespace rolayer {

namespace dirdrv {
struct LayerPaths;  // dir_internal.h
}

// Errors: an operation on a layer whose storage (or a part of it) is missing reports
// Code::Corrupt naming the layer: the store only asks about layers it holds.
class DirDriver : public Driver {
 public:
  DirDriver() = default;
  std::string name() const override { return "dir"; }
  DriverCaps caps() const override { return DriverCaps{}; }
  std::vector<std::string> init(const std::string& store_root) override { return init_impl(store_root, true); }
  std::vector<std::string> init_shared(const std::string& store_root) override {
    return init_impl(store_root, false);
  }
  // As init()/init_shared() without collecting the ids: one pass over the driver directory
  // that only looks at the crash leftovers (".tmp-", ".removing-"), unless the layout needs
  // its migration (which visits every layer).
  void open_store(const std::string& store_root, bool alone) override { init_impl(store_root, alone, false); }
  // Uses the driver directory of a store that is already open (another instance ran init):
  // no clean-up, no migration. For read-only helpers such as lib/mount.
  void attach(const std::string& store_root);
  void create(const std::string& id, const std::string& parent) override;
  void remove(const std::string& id) override;
  int64_t apply_diff(const std::string& id, const std::string& parent, ByteSource& tar) override;
  std::unique_ptr<ByteSource> diff(const std::string& id, const std::string& ancestor) override;
  // Staging (lib/store): a layer created on no parent, applied without reading any other
  // layer, then attached to its parent at commit.
  bool can_stage() const override { return true; }
  int64_t apply_staged(const std::string& id, ByteSource& tar, bool* needs_parent) override;
  void set_parent(const std::string& id, const std::string& parent) override;
  std::unique_ptr<PayloadSession> payloads(const std::string& id) override;
  // Reads the tree (diff/, meta/reloc) and compares each packed payload with its pack bytes.
  std::unique_ptr<PayloadSession> verify_payloads(const std::string& id) override;
  // Payload pack (dir_pack.h): layers applied from now on pack regular payloads of 1 to
  // max_bytes bytes (at most 16 MiB; 0 = no pack).
  void set_payload_pack(uint64_t max_bytes) override;
  std::vector<std::pair<std::string, std::string>> metadata(const std::string& id) override;

  // Overlay lower directories of id's flattened chain, topmost first (absolute paths of the
  // layers' diff/; the chain stops at a layer whose root is opaque). *userxattr (may be null):
  // the mount must use `userxattr` (the layers' markers are user.overlay.*). Errors:
  // Unsupported for a layer of the old layout or a chain mixing both marker forms.
  std::vector<std::string> lower_dirs(const std::string& id, bool* userxattr) const;
  // An empty directory (<root>/dir/.empty) to pair with a single lower directory.
  std::string empty_dir() const;

 private:
  std::string layer_dir(const std::string& id) const;
  std::string read_parent(const std::string& id) const;
  // id, its parent, ..., the base layer. Throws Corrupt if a layer of the chain is missing.
  std::vector<std::string> chain(const std::string& id) const;
  // The paths of parent's chain, parent first (empty for no parent): an apply's lower layers.
  std::vector<dirdrv::LayerPaths> lower_paths(const std::string& parent) const;
  // payloads (verify false) and verify_payloads (true).
  std::unique_ptr<PayloadSession> payload_session(const std::string& id, bool verify);
  void require_init() const;
  // cleanup: remove the .tmp-*/.removing-* leftovers (only when no one else uses the store).
  std::vector<std::string> init_impl(const std::string& store_root, bool cleanup, bool want_ids = true);
  void upgrade_layout(int rootfd, const std::vector<std::string>& ids);

  std::string root_;  // canonical <store_root>/dir
  std::atomic<uint64_t> pack_max_{0};
};

std::unique_ptr<Driver> make_dir_driver();

}  // namespace rolayer
