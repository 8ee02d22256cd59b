// SPDX-License-Identifier: Apache-2.0
// rolayer images, rolayer rmi, and the stored-image lookups of pull and push
// (include/rolayer/image.h).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "registry_cmds.h"

namespace cli {

using nlohmann::json;

namespace {

struct ImageDeleter {
  void operator()(rolayer_image* i) const { rolayer_image_free(i); }
};
using ImagePtr = std::unique_ptr<rolayer_image, ImageDeleter>;

std::vector<std::string> image_names(rolayer_store* store) {
  rolayer_string_list* l = nullptr;
  Err err;
  int rc = rolayer_image_list(&l, store, err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "list images");
  std::vector<std::string> out;
  for (size_t i = 0; i < rolayer_string_list_count(l); i++) out.push_back(rolayer_string_list_get(l, i));
  rolayer_string_list_free(l);
  return out;
}

ImagePtr open_image(rolayer_store* store, const std::string& name) {
  rolayer_image* i = nullptr;
  Err err;
  int rc = rolayer_image_open(&i, store, name.c_str(), err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "image " + name);
  return ImagePtr(i);
}

// The stored name for what a user typed: the name itself, else its normalised reference.
std::string find_name(rolayer_store* store, const std::string& arg) {
  auto names = image_names(store);
  for (const auto& n : names)
    if (n == arg) return n;
  try {
    std::string norm = parse_reference(arg).str();
    for (const auto& n : names)
      if (n == norm) return n;
  } catch (const CliError&) {
  }
  return {};
}

StoredImage load(rolayer_store* store, const std::string& name) {
  ImagePtr img = open_image(store, name);
  StoredImage s;
  s.name = name;
  s.top = rolayer_image_top_chain_id(img.get());
  s.manifest_media_type = rolayer_image_manifest_media_type(img.get());
  size_t n = 0;
  const uint8_t* m = rolayer_image_manifest(img.get(), &n);
  s.manifest.assign(reinterpret_cast<const char*>(m), n);
  const uint8_t* c = rolayer_image_config(img.get(), &n);
  s.config.assign(reinterpret_cast<const char*>(c), n);
  s.manifest_digest = rolayer_image_manifest_digest(img.get());
  s.config_digest = rolayer_image_config_digest(img.get());
  try {
    check_json_depth(s.manifest, "image " + name);
    json j = json::parse(s.manifest);
    s.config_desc = parse_descriptor_json(j.at("config"), "image " + name);
    for (const auto& l : j.at("layers")) s.layers.push_back(parse_descriptor_json(l, "image " + name));
  } catch (const json::exception& e) {
    throw CliError(kVerify, "image " + name + ": the stored manifest is not readable: " + e.what());
  }
  return s;
}

}  // namespace

void store_image(rolayer_store* store, const std::string& name, const std::string& top, const std::string& mt,
                 const std::string& manifest, const std::string& config) {
  Err err;
  int rc = rolayer_image_put(store, name.c_str(), top.c_str(), mt.c_str(), reinterpret_cast<const uint8_t*>(manifest.data()),
                             manifest.size(), reinterpret_cast<const uint8_t*>(config.data()), config.size(), err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "keep image " + name);
}

std::vector<std::string> images_with_top(rolayer_store* store, const std::string& top) {
  std::vector<std::string> out;
  for (const auto& n : image_names(store)) {
    ImagePtr img = open_image(store, n);
    if (top == rolayer_image_top_chain_id(img.get())) out.push_back(n);
  }
  return out;
}

std::string find_image_name(rolayer_store* store, const std::string& arg) { return find_name(store, arg); }

void kept_image_config(rolayer_store* store, const std::string& name, std::string* top, std::string* config) {
  ImagePtr img = open_image(store, name);
  *top = rolayer_image_top_chain_id(img.get());
  size_t n = 0;
  const uint8_t* c = rolayer_image_config(img.get(), &n);
  config->assign(reinterpret_cast<const char*>(c), n);
}

std::string normalise_reference(const std::string& name) { return parse_reference(name).str(); }

std::optional<StoredImage> find_image(rolayer_store* store, const std::string& arg, std::string* top) {
  if (std::string n = find_name(store, arg); !n.empty()) {
    StoredImage s = load(store, n);
    *top = s.top;
    return s;
  }
  *top = resolve_chain_id(store, arg);
  for (const auto& n : image_names(store)) {
    ImagePtr img = open_image(store, n);
    if (*top == rolayer_image_top_chain_id(img.get())) return load(store, n);
  }
  return std::nullopt;
}

int cmd_images(Globals& g, const Args& args) {
  auto p = parse_args("images", args, {{"json", 0, false}, {"no-trunc", 0, false}}, g);
  if (p.help) return print_command_help(*find_command("images")), 0;
  if (!p.positionals.empty()) usage_error("images: takes no arguments");
  StorePtr store = open_store(g);
  json out = json::array();
  std::vector<std::vector<std::string>> rows = {{"NAME", "MANIFEST DIGEST", "TOP CHAIN ID", "SIZE"}};
  bool full = p.has("no-trunc");
  for (const auto& n : image_names(store.get())) {
    ImagePtr img = open_image(store.get(), n);
    std::string top = rolayer_image_top_chain_id(img.get());
    int64_t size = -1;
    rolayer_layer* l = nullptr;
    if (rolayer_open(&l, store.get(), top.c_str(), nullptr) == ROLAYER_OK) {
      Layer layer(l);
      rolayer_layer_size(&size, l, nullptr);
    }
    std::string md = rolayer_image_manifest_digest(img.get());
    out.push_back(json{{"name", n},
                       {"manifest_digest", md},
                       {"manifest_media_type", rolayer_image_manifest_media_type(img.get())},
                       {"config_digest", rolayer_image_config_digest(img.get())},
                       {"top_chain_id", top},
                       {"size", size >= 0 ? json(size) : json(nullptr)},
                       {"created", rolayer_image_created(img.get())}});
    rows.push_back({n, full ? md : short_id(md), full ? top : short_id(top), size >= 0 ? human_bytes(size) : "missing"});
  }
  if (p.has("json")) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::vector<size_t> w(4, 0);
    for (const auto& r : rows)
      for (size_t c = 0; c < 4; c++) w[c] = std::max(w[c], r[c].size());
    for (const auto& r : rows) {
      std::string line;
      for (size_t c = 0; c < 4; c++) line += r[c] + (c + 1 < 4 ? std::string(w[c] - r[c].size() + 3, ' ') : "");
      std::printf("%s\n", line.c_str());
    }
  }
  if (std::fflush(stdout) != 0) sys_fail("write standard output");
  return kOk;
}

int cmd_rmi(Globals& g, const Args& args) {
  auto p = parse_args("rmi", args, {}, g);
  if (p.help) return print_command_help(*find_command("rmi")), 0;
  if (p.positionals.empty()) usage_error("rmi: needs at least one image name");
  StorePtr store = open_store(g);
  for (const auto& arg : p.positionals) {
    std::string n = find_name(store.get(), arg);
    if (n.empty()) throw CliError(kNotFound, "no such image: " + arg + " (see: rolayer images)");
    rolayer_removed* r = nullptr;
    Err err;
    int rc = rolayer_image_remove(&r, store.get(), n.c_str(), err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, "rmi " + n);
    std::printf("untagged %s\n", n.c_str());
    for (size_t i = 0; i < rolayer_removed_count(r); i++) std::printf("removed %s\n", rolayer_removed_chain_id(r, i));
    rolayer_removed_free(r);
  }
  if (std::fflush(stdout) != 0) sys_fail("write standard output");
  return kOk;
}

const char* const kImagesHelp =
    "usage: rolayer images [--json] [--no-trunc]\n"
    "\n"
    "Lists the images kept in the store (by pull and import): name (the normalised reference), manifest\n"
    "digest, top ChainID and size (the chain's payload bytes; \"missing\" when its top layer\n"
    "was removed with rm --force).\n"
    "\n"
    "Options:\n"
    "  --json       a JSON array of {name, manifest_digest, manifest_media_type,\n"
    "               config_digest, top_chain_id, size, created}\n"
    "  --no-trunc   full digests\n";

const char* const kRmiHelp =
    "usage: rolayer rmi NAME...\n"
    "\n"
    "Removes images (NAME as listed by `rolayer images`, or as a reference that normalises to\n"
    "it): their manifest and config go unless another image uses them, and the image's\n"
    "reference on its top layer is dropped, so the chain goes when nothing else holds it\n"
    "(`removed CHAINID` lines, child first).\n";

}  // namespace cli
