/* SPDX-License-Identifier: Apache-2.0 */
// Private to lib/store: hard-link targets of a layer being registered that are not earlier
// entries of the layer itself, and the check, before the commit, that each of them exists in
// the parent chain as a non-directory. The dir driver finds out while it applies the layer (a
// link needs its target on disk); a driver that keeps the stream as it came (exact diffs) does
// not, so the store asks the parents' verified streams (docs/security.md, "Hard links to
// targets that do not exist").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tar/scanner.h"

namespace rolayer {

struct StoreState;
struct LayerNode;

class LinkTargets {
 public:
  // One entry of the layer, in tar order: path is its cleaned path, link_target the cleaned
  // target of a hard link (empty for other kinds). Throws Error(Code::Archive) for a link to
  // a directory of the layer, as the dir driver does.
  void see(const std::string& path, const std::string& link_target, tar::EntryKind kind);
  bool empty() const { return pending_.empty(); }

  // Throws Error(Code::Archive) "hard link '<path>': target '<target>' not found" (the dir
  // driver's message) for the first pending target the chain ending at `parent` (may be null)
  // does not hold as a non-directory, taking whiteouts and opaque directories into account.
  void check_parents(const std::shared_ptr<StoreState>& st, const std::shared_ptr<LayerNode>& parent) const;

 private:
  struct Key {
    uint64_t a = 0, b = 0;
    bool operator==(const Key& o) const { return a == o.a && b == o.b; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return static_cast<size_t>(k.a ^ (k.b * 0x9e3779b97f4a7c15ull)); }
  };
  static Key key_of(const std::string& path);

  bool maybe_seen(const Key& k) const;
  void remember(const Key& k, bool dir);

  // The paths of the layer so far, in memory bounded by a constant: the first ones exactly
  // (true for a directory), then, past kExact entries (directories: past twice that), in a
  // Bloom filter of fixed size (docs/security.md gives the odds of a false "seen").
  std::unordered_map<Key, bool, KeyHash> seen_;
  std::vector<uint64_t> bloom_;
  // (link path, target) for targets that were no earlier entry; each target once.
  std::vector<std::pair<std::string, std::string>> pending_;
  std::unordered_map<Key, bool, KeyHash> pending_keys_;
  uint64_t pending_bytes_ = 0;
};

}  // namespace rolayer
