/* SPDX-License-Identifier: Apache-2.0 */
// What `rolayer pull`, `push` and `login` share (tools/src/pull.cpp, push.cpp, login.cpp).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "image_plan.h"
#include "kept_images.h"
#include "registry.h"

namespace cli {

int cmd_pull(Globals& g, const Args& args);
int cmd_push(Globals& g, const Args& args);
int cmd_login(Globals& g, const Args& args);
int cmd_images(Globals& g, const Args& args);
int cmd_rmi(Globals& g, const Args& args);

// The help texts (main.cpp's command table).
extern const char* const kPullHelp;
extern const char* const kPushHelp;
extern const char* const kLoginHelp;
extern const char* const kImagesHelp;
extern const char* const kRmiHelp;

struct Platform {
  std::string os, arch, variant;
  bool explicit_ = false;  // given with --platform
  std::string str() const;
};
// "OS/ARCH[/VARIANT]"; "" = the host's (linux/ARCH).
Platform parse_platform(const std::string& s);

struct Descriptor {
  std::string media_type, digest;
  int64_t size = -1;
};
Descriptor parse_descriptor_json(const nlohmann::json& j, const std::string& what);
std::string chain_id_of(const std::string& parent, const std::string& diff_id);

struct ResolvedImage {
  std::string index_digest;  // when the reference named an index
  std::string manifest, manifest_media_type, manifest_digest;
  nlohmann::json json;
};
ResolvedImage resolve_image(Registry& reg, const Platform& plat);

// An image kept in the store (include/rolayer/image.h).
struct StoredImage {
  std::string name, top, manifest_media_type, manifest, manifest_digest, config, config_digest;
  Descriptor config_desc;
  std::vector<Descriptor> layers;
};
void store_image(rolayer_store* store, const std::string& name, const std::string& top, const std::string& mt,
                 const std::string& manifest, const std::string& config);
// arg names an image (as stored, or a reference normalising to it): that image and its top.
// Else arg is a ChainID (resolved into *top): the first image with that top, if any.
std::optional<StoredImage> find_image(rolayer_store* store, const std::string& arg, std::string* top);

// --insecure, --cert-dir, --ca-file, --retries.
TransportOptions transport_options(const ParsedArgs& p);
// --jobs N (1-32), else default_jobs.
int parse_jobs(const ParsedArgs& p, int default_jobs);

}  // namespace cli
