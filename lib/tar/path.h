/* SPDX-License-Identifier: Apache-2.0 */
// Entry paths: normalisation, OCI whiteouts and the escape checks every register runs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>

#include "tar/scanner.h"

namespace rolayer::tar {

// Clean a raw entry name the way the Docker engine does: a leading '/' is dropped (absolute
// names are rooted at the layer), "." and empty components removed, ".." resolved lexically.
// Returns the cleaned relative path ("" for the root itself).
// Throws Error(Code::Unsafe) when the name climbs above the root (e.g. "../x", "a/../../x")
// and Error(Code::Archive) for an empty name.
std::string clean_path(std::string_view raw);

// OCI whiteouts.
constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueWhiteout = ".wh..wh..opq";
// True when the base name of cleaned path p starts with ".wh.".
bool is_whiteout(std::string_view cleaned);
bool is_opaque_whiteout(std::string_view cleaned);
// The path a whiteout deletes ("a/.wh.b" -> "a/b"); for the opaque marker, its directory.
std::string whiteout_target(std::string_view cleaned);

// Tracks a layer's entries and refuses those that would leave the layer's root: a name
// with "..", an entry written through a symlink created earlier in this layer, a hard link
// whose target climbs out. Symlink targets themselves may point anywhere (they are resolved
// inside the container's root at run time). Memory: a constant (about 48 bytes) per symlink
// in the layer, whatever the length of its name: a symlink is kept as two independent
// polynomial hashes of its cleaned path (mod 2^61-1, random bases chosen per checker), so two
// different paths are mistaken for each other with probability below (L/2^61)^2 for names of
// L bytes (L <= kMaxNameBytes: below 2^-90).
class SafetyChecker {
 public:
  SafetyChecker();

  // Returns the cleaned path of e; throws Error(Code::Unsafe) naming the path on an escape.
  std::string check(const Entry& e);

  // Same checks as check(); also returns the cleaned hard-link target (Hardlink entries
  // only; empty otherwise), which is relative to the layer root like the path.
  struct Checked {
    std::string path;
    std::string link_target;
  };
  Checked check_entry(const Entry& e);

 private:
  struct Key {
    uint64_t a = 0, b = 0;
    bool operator==(const Key& o) const { return a == o.a && b == o.b; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return static_cast<size_t>(k.a ^ (k.b * 0x9e3779b97f4a7c15ull)); }
  };
  bool through_symlink(const std::string& cleaned, bool* self, Key* whole) const;
  Key step(Key h, unsigned char c) const;
  Key key_of(const std::string& cleaned) const;

  // The symlinks of the layer so far, as hashes of their cleaned paths (so that every prefix
  // of a name is tested in time linear in the name's length, in constant memory per symlink).
  std::unordered_set<Key, KeyHash> symlinks_;
  uint64_t hash_base_ = 0, hash_base2_ = 0;
};

}  // namespace rolayer::tar
