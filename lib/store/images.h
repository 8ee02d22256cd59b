/* SPDX-License-Identifier: Apache-2.0 */
// Images kept in a store: a name (the reference it was pulled or imported as), its manifest and
// config (content-addressed blobs, shared between images) and its top layer, on which the image
// holds one persistent reference. Removing the image drops the reference (and the layers with
// it when nothing else holds them) and the blobs no other image uses.
// Tables live in the store's database (created on first use, CREATE TABLE IF NOT EXISTS).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "store/store.h"

namespace rolayer {

struct ImageRecord {
  std::string name, top_chain_id;
  std::string manifest_media_type, manifest_digest, manifest;
  std::string config_digest, config;
  int64_t created = 0;  // seconds since the epoch
};

class Images {
 public:
  static constexpr size_t kMaxName = 1024;
  static constexpr size_t kMaxBlob = 4u << 20;
  // Adds or replaces the image called name. The top layer must exist; digests are computed
  // here (sha256). Replacing moves the image's reference from the old top to the new one.
  static void put(Store& s, const std::string& name, const std::string& top_chain_id,
                  const std::string& manifest_media_type, const std::string& manifest, const std::string& config);
  static ImageRecord get(Store& s, const std::string& name);  // Error(NotFound)
  static std::vector<std::string> list(Store& s);
  static std::vector<Removed> remove(Store& s, const std::string& name);  // Error(NotFound)
};

}  // namespace rolayer
