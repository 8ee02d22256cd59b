// What `rolayer pull`, `push` and `login` share (tools/src/pull.cpp, push.cpp, login.cpp).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "args.h"
#include "commands.h"
#include "registry.h"

namespace cli {

int cmd_pull(Globals& g, const Args& args);
int cmd_push(Globals& g, const Args& args);
int cmd_login(Globals& g, const Args& args);

// The help texts (main.cpp's command table).
extern const char* const kPullHelp;
extern const char* const kPushHelp;
extern const char* const kLoginHelp;

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
bool is_layer_media_type(const std::string& mt);
std::string chain_id_of(const std::string& parent, const std::string& diff_id);

struct ResolvedImage {
  std::string index_digest;  // when the reference named an index
  std::string manifest, manifest_media_type, manifest_digest;
  nlohmann::json json;
};
ResolvedImage resolve_image(Registry& reg, const Platform& plat);

// --insecure, --cert-dir, --ca-file, --retries.
TransportOptions transport_options(const ParsedArgs& p);
int parse_jobs(const ParsedArgs& p);

}  // namespace cli
