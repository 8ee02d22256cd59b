/* SPDX-License-Identifier: Apache-2.0 */
// The image readers of `rolayer import`: where an image's files come from (ImageSource) and how
// its JSON (oci-layout, index.json, manifests, configs, docker save's manifest.json, skopeo's
// dir: layout) becomes the plan of an import: which blobs to register, in which order, checked
// against which digests. Separate from the commands so that the fuzz target
// (tests/fuzz/image_reader.cpp) can drive the readers on in-memory images.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "blob.h"
#include "common.h"

namespace cli {

// Every JSON document read from an image or an existing layout: at most this many bytes and
// kMaxJsonDepth (common.h) levels of nesting (arrays and objects). The depth is checked before
// the document is parsed, so neither the parser nor a copy or destruction of the document
// recurses deeper.
constexpr size_t kMaxJson = 16u << 20;

extern const char* const kMtOciIndex;
extern const char* const kMtOciManifest;
extern const char* const kMtOciConfig;
extern const char* const kMtOciLayerTar;
extern const char* const kRefAnnotation;

// Parses TEXT (named WHAT in errors): CliError(kBadInput) when it is larger than kMaxJson,
// nested deeper than kMaxJsonDepth, or not valid JSON (which includes text that is not UTF-8).
nlohmann::json parse_json(const std::string& text, const std::string& what);

// The depth of TEXT's deepest array or object, counted without parsing (strings skipped); stops
// counting at LIMIT + 1.
int json_nesting_depth(const std::string& text, int limit);

// Whether MT is a layer media type this tool reads (OCI and Docker; tar, gzip, zstd).
bool is_layer_media_type(const std::string& mt);

std::string str_field(const nlohmann::json& j, const char* key, const std::string& what, bool required = true);
std::string clean_path(const std::string& p);
std::string host_arch();

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  // True for a regular file, and also for anything that is not a directory (a link, a device):
  // reading it then fails with a message that says what it is.
  virtual bool exists(const std::string& rel) = 0;
  virtual std::string read_small(const std::string& rel, size_t max) = 0;
  virtual std::unique_ptr<ByteSource> open(const std::string& rel) = 0;
  virtual std::string describe() const = 0;
};

// An image held in memory (tests and the fuzz target).
class MemSource : public ImageSource {
 public:
  explicit MemSource(std::string name) : name_(std::move(name)) {}
  std::map<std::string, std::string> files;
  bool exists(const std::string& rel) override { return files.count(clean_path(rel)) != 0; }
  std::string read_small(const std::string& rel, size_t max) override;
  std::unique_ptr<ByteSource> open(const std::string& rel) override;
  std::string describe() const override { return name_; }

 private:
  std::string name_;
};

struct LayerPlan {
  std::string path;        // inside the image
  std::string display;     // "blob sha256:…" or the archive member name
  BlobExpectation expect;  // digest and size to check in the registering pass
  bool record = false;     // record the descriptor with the layer
  std::string media_type;
  std::string diff_id;     // from the config's rootfs.diff_ids
};

struct Plan {
  std::string what;  // "OCI image layout", "docker save archive" or "skopeo dir: layout"
  std::vector<LayerPlan> layers;
  // The image itself, kept in the store by import (rolayer_image_put): the manifest's bytes and
  // media type as found (empty for a docker save archive, which has none: import makes one),
  // the config's bytes as found, and the names the image carries as written in it (OCI
  // org.opencontainers.image.ref.name / io.containerd.image.name, docker save RepoTags).
  std::string manifest, manifest_media_type, config;
  std::vector<std::string> names;
};

// Reads the image's JSON and makes the plan (REF picks a manifest; "" when there is one).
// Throws CliError only: kBadInput (malformed), kNotFound (missing blob or REF), kVerify (a
// digest or size mismatch of a manifest or config), kUsage (REF needed).
Plan plan_image(ImageSource& src, const std::string& ref);

// The config export-image writes: the kept image's own (image_name non-empty, its bytes
// image_config), byte for byte, when it lists diff_ids (else CliError kVerify); its
// architecture and os then go to *arch and *os, and an --arch/--os given (want_arch/want_os
// non-empty) that differs is a usage error. Without an image: a minimal config of *arch, *os
// and the DiffIDs.
std::string export_config(const std::string& image_name, const std::string& image_config,
                          const nlohmann::json& diff_ids, const std::string& want_arch, const std::string& want_os,
                          std::string* arch, std::string* os);

}  // namespace cli
