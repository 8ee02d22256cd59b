/* SPDX-License-Identifier: Apache-2.0 */
// The kept images (include/rolayer/image.h) as import, export-image and rm use them
// (tools/src/images_cmd.cpp). Free of registry.h, so the image readers' files can include it.
#pragma once
#include "rolayer.h"

#include <string>
#include <vector>

namespace cli {

// Keeps (adds or replaces) the image called name.
void store_image(rolayer_store* store, const std::string& name, const std::string& top, const std::string& mt,
                 const std::string& manifest, const std::string& config);
// The names of the kept images whose top layer is top (sorted).
std::vector<std::string> images_with_top(rolayer_store* store, const std::string& top);
// arg as an image's stored name or a reference normalising to one: that name, else "".
std::string find_image_name(rolayer_store* store, const std::string& arg);
// The kept image called name (as stored): its top ChainID and its config bytes.
void kept_image_config(rolayer_store* store, const std::string& name, std::string* top, std::string* config);
// name normalised the way Docker normalises references ("app:2" = "docker.io/library/app:2");
// throws CliError(kUsage) when it is no reference.
std::string normalise_reference(const std::string& name);

}  // namespace cli
