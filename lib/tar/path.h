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
// inside the container's root at run time). Memory: one string per symlink in the layer.
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
  bool through_symlink(const std::string& cleaned, bool include_self) const;
  uint64_t prefix_hash_step(uint64_t h, unsigned char c) const;

  std::unordered_set<std::string> symlinks_;
  // Hashes (mod 2^61-1, random base) of the paths in symlinks_, so that every prefix of a
  // name can be tested in time linear in the name's length.
  std::unordered_set<uint64_t> symlink_hashes_;
  uint64_t hash_base_ = 0;
};

}  // namespace rolayer::tar
