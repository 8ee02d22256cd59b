/* SPDX-License-Identifier: Apache-2.0 */
// Internal pieces of the "dir" driver shared by dir_driver.cpp, dir_apply.cpp, dir_export.cpp.
//
// On-disk layout below <store_root>/dir/:
//   <id>/diff/             the layer's own tree (only its changes; never a copy of a parent)
//   <id>/meta/parent       the parent id (exact bytes, no newline; empty for a base layer)
//   <id>/meta/whiteouts    paths this layer deletes from lower layers (".wh.<name>" entries,
//                          and a non-directory of the layer later replaced by a directory)
//   <id>/meta/opaque       directories opaque to lower layers ("" = the root)
//   <id>/meta/payloads     index of relocated payloads: records <path> <occurrence> <file>,
//                          <occurrence> in decimal (1 = the first payload entry at <path>),
//                          <file> relative to meta/ ("reloc/<n>" or "reloc/<n>/<sub-path>")
//   <id>/meta/reloc/       relocated payloads (earlier duplicates, files displaced by a later
//                          entry, payloads of whiteout and AUFS metadata entries)
//   <id>/meta/applied      commit marker written last by apply_diff: magic, byte count
//   <id>/meta/pack, pack-index  the payload pack (opt-in; dir_pack.h): small regular payloads
//                          again, back to back in stream order, for exports
//   .tmp-<random>/         a layer being created (renamed to <id> when complete)
//   .removing-<random>/    a layer being removed (renamed away from <id> first)
// init() deletes .tmp-* and .removing-* leftovers. whiteouts/opaque/payloads exist only when
// non-empty. Every meta file is written to "<name>.tmp", fsynced, renamed into place, and the
// directory fsynced. Files are NUL-separated records (entry names are NUL-free) starting with a
// magic record naming the format and version; every record, the last included, ends in NUL.
// Paths are cleaned relative paths (no leading '/', no "." / ".." / empty components).
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <archive_entry.h>

#include "core/error.h"
#include "core/io.h"
#include "drivers/dir/dir_fs.h"

namespace rolayer::dirdrv {

inline constexpr const char* kDriverDir = "dir";
inline constexpr const char* kDiffDir = "diff";
inline constexpr const char* kMetaDir = "meta";
inline constexpr const char* kRelocDir = "reloc";
inline constexpr const char* kParentFile = "parent";
inline constexpr const char* kWhiteoutsFile = "whiteouts";
inline constexpr const char* kOpaqueFile = "opaque";
inline constexpr const char* kPayloadsFile = "payloads";
inline constexpr const char* kAppliedFile = "applied";
// Present (empty magic record) when the layer was applied by a non-root user: then the layer's
// files and directories keep owner access on disk, and an object whose real mode differs holds
// it in dirfs::kOverrideStatXattr (an attribute the store wrote, never one of the layer's).
inline constexpr const char* kOverrideStatFile = "override-stat";
inline constexpr std::string_view kOverrideStatMagic = "rolayer-dir-override-stat-1";
// A staged layer (apply_layer_staged) until its commit: the directories its entries needed
// but did not declare, made plain while no lower layer could be read, that the parent chain
// may provide (fix_staged_layer), and those of them declared by a later entry.
inline constexpr const char* kStagedImplicitFile = "staged-implicit";
inline constexpr const char* kStagedDeclaredFile = "staged-declared";
inline constexpr std::string_view kStagedImplicitMagic = "rolayer-dir-staged-implicit-1";
inline constexpr std::string_view kStagedDeclaredMagic = "rolayer-dir-staged-declared-1";
inline constexpr std::string_view kWhiteoutsMagic = "rolayer-dir-whiteouts-1";
inline constexpr std::string_view kOpaqueMagic = "rolayer-dir-opaque-1";
inline constexpr std::string_view kPayloadsMagic = "rolayer-dir-payloads-1";
inline constexpr std::string_view kAppliedMagic = "rolayer-dir-applied-1";
inline constexpr size_t kMaxMetaFile = size_t(1) << 30;  // sanity bound when reading meta files

// Absolute paths of one layer.
struct LayerPaths {
  std::string id;
  std::string dir;   // <root>/dir/<id>
  std::string diff;  // <dir>/diff
  std::string meta;  // <dir>/meta
};

// Opens one of a layer's own directories (layer.diff, layer.meta...). Its absence means the
// layer's storage was damaged: Error(Code::Corrupt) naming the layer id and the path.
dirfs::Fd open_layer_dir(const LayerPaths& layer, const std::string& abs, bool path_only = false);

std::string encode_list(std::string_view magic, const std::set<std::string>& items);
// Throws Error(Code::Corrupt) for a bad magic, a missing terminator or an unclean path.
std::vector<std::string> decode_list(std::string_view magic, const std::string& data,
                                     bool allow_empty_paths, const std::string& what_path);

struct IndexRecord {
  std::string path;         // cleaned path of the payload entry
  uint32_t occurrence = 0;  // 1-based count of payload entries at that path, in stream order
  std::string file;         // relative to meta/, e.g. "reloc/12" or "reloc/3/sub/f"
};
std::string encode_index_record(const IndexRecord& r);
std::vector<IndexRecord> decode_index(const std::string& data, const std::string& what_path);

// A layer's whiteouts and opaque directories, in memory (O(number of records)).
struct LayerCuts {
  std::unordered_set<std::string> whiteouts;
  std::unordered_set<std::string> opaque;
  // whiteout names grouped by parent directory (for emitting ".wh.<name>" entries)
  std::unordered_map<std::string, std::vector<std::string>> whiteout_children;
  // meta/override-stat exists: dirfs::kOverrideStatXattr on its objects is the store's.
  bool override_stat = false;
  void load(const LayerPaths& layer);  // missing files mean none
  // True when this layer hides `rel` of the layers below it: `rel` or an ancestor is whited
  // out, or a strict ancestor (or the root) is opaque.
  bool hides(std::string_view rel) const;
};

// apply_diff's body (dir_apply.cpp). lowers: parent first, down to the base layer.
// pack_max > 0: the payloads of regular files of 1 to pack_max bytes are also written to the
// layer's payload pack (dir_pack.h).
int64_t apply_layer(const LayerPaths& layer, const std::vector<LayerPaths>& lowers, ByteSource& tar,
                    uint64_t pack_max = 0);
// As apply_layer for a layer whose parent is not known yet (staging, lib/store): no lower layer
// is read. *needs_parent is set when the result would differ on a parent in a way that needs
// the parent's data (a hard link whose target is not in the layer); such a layer is applied
// again on its parent at commit. A missing parent directory that a lower layer could provide
// is made as a plain placeholder and listed in meta/staged-implicit for fix_staged_layer.
// pack_max: as apply_layer's.
int64_t apply_layer_staged(const LayerPaths& layer, ByteSource& tar, bool* needs_parent, uint64_t pack_max = 0);
// At the commit of a layer applied with apply_layer_staged, on lowers (its new parent first,
// down to the base layer): gives its placeholders the metadata a register on that parent
// would have given them, syncs them, then removes the lists. No lists: nothing to do.
// Repeatable after a failure (on the same lowers).
void fix_staged_layer(const LayerPaths& layer, const std::vector<LayerPaths>& lowers);

// diff's body (dir_export.cpp). range: top layer first; emit_whiteouts false for a whole
// flattened chain.
std::unique_ptr<ByteSource> open_diff_stream(std::vector<LayerPaths> range, bool emit_whiteouts);

// An owned libarchive entry (apply and export both build entries).
class EntryHolder {
 public:
  EntryHolder() : e_(archive_entry_new()) {
    if (!e_) throw Error(Code::NoMem, "archive_entry_new failed");
  }
  ~EntryHolder() { archive_entry_free(e_); }
  EntryHolder(const EntryHolder&) = delete;
  EntryHolder& operator=(const EntryHolder&) = delete;
  archive_entry* get() const { return e_; }

 private:
  archive_entry* e_;
};

}  // namespace rolayer::dirdrv
