/* SPDX-License-Identifier: Apache-2.0 */
// dockerdb: reading a Docker engine's graphdriver layers offline (no daemon), read-only.
//
// A Docker data root keeps each layer's metadata in
//   <root>/image/<driver>/layerdb/sha256/<chainID hex>/{diff,parent,size,cache-id,
//                                                       descriptor.json,tar-split.json.gz}
// and its files in <root>/overlay2/<cache-id>/diff (only this layer's changes) or
// <root>/vfs/dir/<cache-id> (the full tree). A layer's tar stream is reassembled from the
// tar-split record (docs/tar-split-format.md) and those files, checked per file (size and the
// record's CRC-64/ISO) and at the end against the DiffID (SHA-256).
//
// Safety: nothing under the root is ever written; every path under it is opened relative to a
// directory descriptor, component by component, without following symlinks (O_NOFOLLOW); files
// are opened O_NOATIME where allowed. Memory is bounded: metadata files and tar-split lines have
// size caps. A DataRoot is safe to share between threads (each stream has its own descriptors);
// a stream is used by one thread at a time. Errors are rolayer::Error: Corrupt/Digest for damage
// (naming the layer, and the entry path where one is concerned), NotFound, Unsupported for other
// drivers, Io.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/fs.h"
#include "core/io.h"

namespace rolayer::dockerdb {

// Caps (a hostile data root gets a clear error instead of unbounded memory).
constexpr size_t kMaxMetaFile = 64 * 1024;           // diff, parent, size, cache-id, descriptor.json
constexpr size_t kMaxTarSplitLine = 16 * 1024 * 1024;  // one JSON line of tar-split.json.gz
constexpr size_t kMaxConfigFile = 16 * 1024 * 1024;  // imagedb config, repositories.json

struct LayerInfo {
  std::string chain_id;  // "sha256:<hex>" (the layerdb directory name)
  std::string diff_id;   // from `diff`
  std::string parent;    // from `parent`; empty for a base layer
  std::string cache_id;  // from `cache-id`: the driver's directory name
  int64_t size = -1;     // from `size` (the driver's size of this layer's files); -1 if absent
  // From descriptor.json when present (a pulled layer), else empty / -1.
  std::string descriptor_media_type, descriptor_digest;
  int64_t descriptor_size = -1;
};

// CRC-64 with the ISO polynomial as Go's hash/crc64 computes it (reflected 0xD800000000000000,
// initial and final value all ones). update() continues from a previous result (0 to start).
uint64_t crc64_iso(uint64_t crc, const uint8_t* data, size_t len);

class DataRoot : public std::enable_shared_from_this<DataRoot> {
 public:
  // Opens the data root (the directory itself may be reached through symlinks; nothing below it
  // is). driver: "overlay2" or "vfs", or empty to pick the one driver that has a layerdb under
  // <root>/image/. Several: Inval naming them. Another driver (btrfs, zfs, devicemapper, aufs,
  // fuse-overlayfs, …): Unsupported. None: NotFound.
  static std::shared_ptr<DataRoot> open(const std::string& path, const std::string& driver = {});

  const std::string& path() const { return path_; }
  const std::string& driver() const { return driver_; }

  // Every layer in the layerdb, parents before children (then by ChainID). A layer whose
  // metadata cannot be read is left out only when `skipped` is given (it gets "<chainID>: why").
  std::vector<LayerInfo> layers(std::vector<std::string>* skipped = nullptr) const;
  // One layer; NotFound when the layerdb has no such ChainID; Corrupt when its metadata is bad.
  LayerInfo layer(const std::string& chain_id) const;

  // The layer's tar stream, reassembled and verified as it is read: per file, the size on disk
  // and the CRC-64 of its content against the record (Corrupt naming the layer and the path:
  // "missing file", "size differs", "content differs"); at the end, the SHA-256 against the
  // DiffID (Digest). Also checks first that ChainID = chain(parent, diff) (Corrupt).
  std::unique_ptr<ByteSource> open_stream(const std::string& chain_id) const;

  // Reads the whole verified stream and discards it; returns the stream's length. Throws as
  // open_stream's reads do. progress (optional) gets each chunk's byte count.
  int64_t verify(const std::string& chain_id, void (*progress)(uint64_t, void*) = nullptr,
                 void* user_data = nullptr) const;

  // The chain (ChainIDs, base first) that REF names: a layer's ChainID ("sha256:<hex>", its hex,
  // or a unique hex prefix), an image ID from imagedb (same forms), or a name from
  // repositories.json ("name", "name:tag", "name@sha256:…", with or without "docker.io/" and
  // "docker.io/library/"). The image config is checked against its ID. NotFound when nothing
  // matches, Inval when a prefix is ambiguous.
  std::vector<std::string> resolve(const std::string& ref) const;

  // Internal, for streams: opens the layer's file directory and tar-split record.
  fs::Fd open_layer_files(const LayerInfo& info) const;
  fs::Fd open_layer_meta_dir(const std::string& chain_hex) const;
  std::string meta_rel(const std::string& chain_hex, const std::string& file) const;

 private:
  DataRoot() = default;
  std::vector<std::string> image_ids() const;
  std::vector<std::string> chain_of_image(const std::string& image_id) const;

  std::string path_, driver_;
  fs::Fd root_;     // the data root
  fs::Fd layerdb_;  // image/<driver>/layerdb/sha256
  fs::Fd imagedir_; // image/<driver>
};

}  // namespace rolayer::dockerdb
