// SPDX-License-Identifier: Apache-2.0
#include "image_plan.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <set>
#include <tuple>

namespace cli {

using nlohmann::json;

const char* const kMtOciIndex = "application/vnd.oci.image.index.v1+json";
const char* const kMtOciManifest = "application/vnd.oci.image.manifest.v1+json";
const char* const kMtOciConfig = "application/vnd.oci.image.config.v1+json";
const char* const kMtOciLayerTar = "application/vnd.oci.image.layer.v1.tar";
const char* const kMtDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
const char* const kMtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
const char* const kRefAnnotation = "org.opencontainers.image.ref.name";

bool is_layer_media_type(const std::string& mt) {
  static const std::set<std::string> known = {
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.diff.tar.zstd",
      "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  };
  return known.count(mt) != 0;
}

// "a/./b//c/../d" -> "a/b/d"; ".." above the top is dropped (clamped at the root).
std::string clean_path(const std::string& p) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    std::string c = p.substr(i, j - i);
    if (c == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!c.empty() && c != ".") {
      parts.push_back(c);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& c : parts) out += (out.empty() ? "" : "/") + c;
  return out;
}

namespace {

// A path named by an image's JSON must stay inside the image: relative, no "..".
void check_inner_path(const std::string& p, const std::string& what) {
  if (p.empty() || p[0] == '/') throw CliError(kBadInput, what + ": not a relative path: \"" + p + "\"");
  std::string s = "/" + p + "/";
  if (s.find("/../") != std::string::npos) throw CliError(kBadInput, what + ": path leaves the image: \"" + p + "\"");
}

// Where a blob lives: "blobs/<alg>/<hex>" in an OCI layout, "<hex>" in skopeo's dir: layout.
std::string blob_path(const std::string& digest, bool flat = false) {
  auto c = digest.find(':');
  if (flat) return digest.substr(0, c) == "sha256" ? digest.substr(c + 1) : digest.substr(0, c) + "-" + digest.substr(c + 1);
  return "blobs/" + digest.substr(0, c) + "/" + digest.substr(c + 1);
}

}  // namespace

// --- JSON helpers -----------------------------------------------------------------------------

int json_nesting_depth(const std::string& text, int limit) {
  int depth = 0, max = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c == ']' || c == '}') {
      if (depth > 0) depth--;
    }
  }
  return max;
}

json parse_json(const std::string& text, const std::string& what) {
  if (text.size() > kMaxJson)
    throw CliError(kBadInput, what + ": larger than " + human_bytes(static_cast<int64_t>(kMaxJson)) + " of JSON");
  // Counted before parsing: nlohmann's parser, copies and destructor recurse once per level.
  if (json_nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth)
    throw CliError(kBadInput, what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels: refused");
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw CliError(kBadInput, what + ": not valid JSON: " + e.what());
  }
}

std::string str_field(const json& j, const char* key, const std::string& what, bool required) {
  if (!j.is_object() || !j.contains(key)) {
    if (required) throw CliError(kBadInput, what + ": missing \"" + key + "\"");
    return {};
  }
  if (!j[key].is_string()) throw CliError(kBadInput, what + ": \"" + key + "\" is not a string");
  return j[key].get<std::string>();
}

namespace {

struct Descriptor {
  std::string media_type, digest;
  int64_t size = -1;
  json annotations, platform;
};

Descriptor parse_descriptor(const json& j, const std::string& what) {
  if (!j.is_object()) throw CliError(kBadInput, what + ": a descriptor is not an object");
  Descriptor d;
  d.media_type = str_field(j, "mediaType", what, false);
  d.digest = str_field(j, "digest", what);
  if (!is_digest(d.digest)) throw CliError(kBadInput, what + ": unsupported or malformed digest \"" + d.digest + "\"");
  if (!j.contains("size") || !j["size"].is_number_integer() || j["size"].get<int64_t>() < 0)
    throw CliError(kBadInput, what + ": descriptor " + d.digest + " has no valid size");
  d.size = j["size"].get<int64_t>();
  if (j.contains("annotations") && j["annotations"].is_object()) d.annotations = j["annotations"];
  if (j.contains("platform") && j["platform"].is_object()) d.platform = j["platform"];
  return d;
}

// Reads a small blob and checks it against its descriptor.
std::string read_blob(ImageSource& src, const Descriptor& d, const std::string& what_in, bool flat = false) {
  std::string what = src.describe() + ": " + what_in;
  std::string path = blob_path(d.digest, flat);
  if (!src.exists(path)) throw CliError(kNotFound, what + " " + d.digest + ": blob missing (" + path + ")");
  if (d.size > static_cast<int64_t>(kMaxJson)) throw CliError(kBadInput, what + " " + d.digest + ": too large");
  std::string data = src.read_small(path, kMaxJson);
  if (static_cast<int64_t>(data.size()) != d.size)
    throw CliError(kVerify, what + " blob " + d.digest + ": size mismatch: the descriptor gives " +
                                std::to_string(d.size) + " bytes, the blob has " + std::to_string(data.size()));
  std::string got = Hasher::digest_of(data, d.digest.substr(0, d.digest.find(':')));
  if (got != d.digest)
    throw CliError(kVerify, what + " blob " + d.digest + ": digest mismatch: the blob's content is " + got);
  return data;
}

}  // namespace

std::string host_arch() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#elif defined(__arm__)
  return "arm";
#elif defined(__i386__)
  return "386";
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
  return "ppc64le";
#elif defined(__s390x__)
  return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  return "riscv64";
#else
  return "unknown";
#endif
}

namespace {

std::string refs_of(const std::vector<Descriptor>& ds) {
  std::string out;
  for (const auto& d : ds) {
    std::string r = d.annotations.is_object() && d.annotations.contains(kRefAnnotation) && d.annotations[kRefAnnotation].is_string()
                        ? d.annotations[kRefAnnotation].get<std::string>()
                        : "(unnamed " + short_id(d.digest) + ")";
    out += (out.empty() ? "" : ", ") + r;
  }
  return out;
}

bool ref_matches(const Descriptor& d, const std::string& ref) {
  if (!d.annotations.is_object()) return false;
  for (const char* key : {kRefAnnotation, "io.containerd.image.name"})
    if (d.annotations.contains(key) && d.annotations[key].is_string() && d.annotations[key].get<std::string>() == ref)
      return true;
  return false;
}

// --- the plan of an import --------------------------------------------------------------------

std::vector<std::string> config_diff_ids(const json& config, const std::string& what) {
  if (!config.is_object() || !config.contains("rootfs") || !config["rootfs"].is_object() ||
      !config["rootfs"].contains("diff_ids") || !config["rootfs"]["diff_ids"].is_array())
    throw CliError(kBadInput, what + ": the config has no rootfs.diff_ids");
  std::vector<std::string> out;
  for (const auto& d : config["rootfs"]["diff_ids"]) {
    if (!d.is_string() || d.get<std::string>().rfind("sha256:", 0) != 0 || !is_digest(d.get<std::string>()))
      throw CliError(kBadInput, what + ": the config's rootfs.diff_ids holds a malformed DiffID");
    out.push_back(d.get<std::string>());
  }
  return out;
}

// The layers of an image manifest (OCI or Docker schema 2), its config read and checked.
Plan plan_from_manifest(ImageSource& src, const json& manifest, const std::string& manifest_data,
                        const std::string& manifest_mt, const std::string& mwhat, bool flat, const std::string& what) {
  std::string where = src.describe();
  if (!manifest.is_object() || !manifest.contains("config")) throw CliError(kBadInput, mwhat + ": no config");
  Descriptor cfg = parse_descriptor(manifest["config"], mwhat);
  std::string config_data = read_blob(src, cfg, "config", flat);
  json config = parse_json(config_data, where + ": config " + cfg.digest);
  auto diff_ids = config_diff_ids(config, where + ": config " + cfg.digest);
  if (!manifest.contains("layers") || !manifest["layers"].is_array()) throw CliError(kBadInput, mwhat + ": no layers");
  Plan plan;
  plan.what = what;
  plan.manifest = manifest_data;
  plan.manifest_media_type = manifest_mt.empty() ? std::string(kMtOciManifest) : manifest_mt;
  plan.config = config_data;
  size_t n = manifest["layers"].size();
  if (n != diff_ids.size())
    throw CliError(kBadInput, mwhat + ": " + std::to_string(n) + " layers, but the config lists " +
                                  std::to_string(diff_ids.size()) + " DiffIDs");
  if (n == 0) throw CliError(kBadInput, mwhat + ": the image has no layers");
  for (size_t i = 0; i < n; i++) {
    Descriptor d = parse_descriptor(manifest["layers"][i], mwhat);
    if (!is_layer_media_type(d.media_type))
      throw CliError(kBadInput, where + ": layer blob " + d.digest + " has unsupported media type \"" + d.media_type + "\"");
    LayerPlan lp;
    lp.path = blob_path(d.digest, flat);
    lp.display = "layer blob " + d.digest;
    lp.expect = BlobExpectation{lp.display, d.digest, d.size};
    lp.record = true;
    lp.media_type = d.media_type;
    lp.diff_id = diff_ids[i];
    if (!src.exists(lp.path)) throw CliError(kNotFound, where + ": " + lp.display + ": blob missing (" + lp.path + ")");
    plan.layers.push_back(lp);
  }
  return plan;
}

Plan plan_oci(ImageSource& src, const std::string& ref) {
  std::string where = src.describe();
  if (src.exists("oci-layout")) {
    json layout = parse_json(src.read_small("oci-layout", 65536), where + ": oci-layout");
    std::string v = str_field(layout, "imageLayoutVersion", where + ": oci-layout");
    if (v.rfind("1.", 0) != 0) throw CliError(kBadInput, where + ": unsupported image layout version " + v);
  }
  json index = parse_json(src.read_small("index.json", kMaxJson), where + ": index.json");
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array())
    throw CliError(kBadInput, where + ": index.json has no manifests");
  std::vector<Descriptor> ds;
  for (const auto& m : index["manifests"]) ds.push_back(parse_descriptor(m, where + ": index.json"));
  if (ds.empty()) throw CliError(kBadInput, where + ": index.json lists no manifest");

  Descriptor chosen;
  if (!ref.empty()) {
    std::vector<Descriptor> hits;
    for (const auto& d : ds)
      if (ref_matches(d, ref)) hits.push_back(d);
    if (hits.empty())
      throw CliError(kNotFound, where + ": no manifest named \"" + ref + "\" (names: " + refs_of(ds) + ")");
    chosen = hits.back();  // a later entry with the same name replaces an earlier one
  } else if (ds.size() == 1) {
    chosen = ds[0];
  } else {
    usage_error(where + " holds " + std::to_string(ds.size()) + " manifests: choose one with " + where +
                ":REF (names: " + refs_of(ds) + ")");
  }

  // The image's name: the chosen entry's full name (io.containerd.image.name, as docker save
  // writes it next to a ref.name that holds only the tag), else its ref.name.
  std::vector<std::string> names;
  if (chosen.annotations.is_object())
    for (const char* key : {"io.containerd.image.name", kRefAnnotation})
      if (names.empty() && chosen.annotations.contains(key) && chosen.annotations[key].is_string())
        names.push_back(chosen.annotations[key].get<std::string>());

  // Descend through nested indexes (multi-platform images) to an image manifest.
  json manifest;
  std::string manifest_data, manifest_mt;
  for (int depth = 0;; depth++) {
    if (depth > 4) throw CliError(kBadInput, where + ": indexes nested too deeply");
    std::string data = read_blob(src, chosen, "manifest");
    json j = parse_json(data, where + ": manifest " + chosen.digest);
    std::string mt = j.is_object() && j.contains("mediaType") && j["mediaType"].is_string() ? j["mediaType"].get<std::string>()
                                                                                             : chosen.media_type;
    bool is_index = mt == kMtOciIndex || mt == kMtDockerList || (mt.empty() && j.is_object() && j.contains("manifests"));
    if (!is_index) {
      if (!mt.empty() && mt != kMtOciManifest && mt != kMtDockerManifest)
        throw CliError(kBadInput, where + ": manifest " + chosen.digest + " has unsupported media type " + mt);
      manifest = j;
      manifest_data = data;
      manifest_mt = mt;
      break;
    }
    if (!j.contains("manifests") || !j["manifests"].is_array() || j["manifests"].empty())
      throw CliError(kBadInput, where + ": index " + chosen.digest + " lists no manifest");
    std::vector<Descriptor> inner;
    for (const auto& m : j["manifests"]) inner.push_back(parse_descriptor(m, where + ": index " + chosen.digest));
    if (inner.size() == 1) {
      chosen = inner[0];
      continue;
    }
    std::string arch = host_arch();
    const Descriptor* pick = nullptr;
    for (const auto& d : inner)
      if (d.platform.is_object() && d.platform.value("os", "") == "linux" && d.platform.value("architecture", "") == arch) {
        pick = &d;
        break;
      }
    if (!pick)
      throw CliError(kNotFound, where + ": index " + chosen.digest + " has no manifest for linux/" + arch);
    chosen = *pick;
  }

  Plan plan = plan_from_manifest(src, manifest, manifest_data, manifest_mt, where + ": manifest " + chosen.digest, false,
                                 "OCI image layout");
  plan.names = names;
  return plan;
}

// `docker save`: manifest.json = [{"Config": "<file>", "RepoTags": [...], "Layers": ["<file>", …]}].
Plan plan_docker(ImageSource& src, const std::string& ref) {
  std::string where = src.describe();
  json m = parse_json(src.read_small("manifest.json", kMaxJson), where + ": manifest.json");
  if (!m.is_array() || m.empty()) throw CliError(kBadInput, where + ": manifest.json lists no image");
  auto tags_of = [](const json& e) {
    std::vector<std::string> t;
    if (e.is_object() && e.contains("RepoTags") && e["RepoTags"].is_array())
      for (const auto& x : e["RepoTags"])
        if (x.is_string()) t.push_back(x.get<std::string>());
    return t;
  };
  auto all_tags = [&] {
    std::string s;
    for (const auto& e : m)
      for (const auto& t : tags_of(e)) s += (s.empty() ? "" : ", ") + t;
    return s.empty() ? std::string("none") : s;
  };
  const json* entry = nullptr;
  if (!ref.empty()) {
    for (const auto& e : m)
      for (const auto& t : tags_of(e))
        if (t == ref || t == ref + ":latest" || t == "docker.io/library/" + ref || t == "docker.io/library/" + ref + ":latest")
          entry = &e;
    if (!entry) throw CliError(kNotFound, where + ": no image tagged \"" + ref + "\" (tags: " + all_tags() + ")");
  } else if (m.size() == 1) {
    entry = &m[0];
  } else {
    usage_error(where + " holds " + std::to_string(m.size()) + " images: choose one with " + where + ":TAG (tags: " +
                all_tags() + ")");
  }
  std::string cfg_path = str_field(*entry, "Config", where + ": manifest.json");
  check_inner_path(cfg_path, where + ": manifest.json Config");
  std::string cfg_data = src.read_small(cfg_path, kMaxJson);
  // The config's file is named by its digest ("<hex>.json" or "blobs/sha256/<hex>"): check it.
  {
    std::string base = basename_of(cfg_path);
    if (base.size() > 5 && base.substr(base.size() - 5) == ".json") base = base.substr(0, base.size() - 5);
    if (is_digest("sha256:" + base)) {
      std::string got = Hasher::digest_of(cfg_data);
      if (got != "sha256:" + base)
        throw CliError(kVerify, where + ": config " + cfg_path + ": digest mismatch: its content is " + got);
    }
  }
  auto diff_ids = config_diff_ids(parse_json(cfg_data, where + ": " + cfg_path), where + ": " + cfg_path);
  if (!entry->contains("Layers") || !(*entry)["Layers"].is_array())
    throw CliError(kBadInput, where + ": manifest.json has no Layers");
  const json& layers = (*entry)["Layers"];
  if (layers.size() != diff_ids.size())
    throw CliError(kBadInput, where + ": " + std::to_string(layers.size()) + " layers, but the config lists " +
                                  std::to_string(diff_ids.size()) + " DiffIDs");
  if (layers.empty()) throw CliError(kBadInput, where + ": the image has no layers");
  Plan plan;
  plan.what = "docker save archive";
  plan.config = cfg_data;
  plan.names = tags_of(*entry);
  for (size_t i = 0; i < layers.size(); i++) {
    if (!layers[i].is_string()) throw CliError(kBadInput, where + ": manifest.json Layers holds a non-string");
    LayerPlan lp;
    lp.path = layers[i].get<std::string>();
    check_inner_path(lp.path, where + ": manifest.json Layers");
    lp.display = "layer " + lp.path;
    lp.expect.name = lp.display;
    // Blobs named by their digest are checked against that name: "blobs/sha256/<hex>" (docker
    // 25 and later) and "<hex>.tar" (containers/image, e.g. skopeo's docker-archive). The older
    // "<v1 id>/layer.tar" names say nothing; the DiffID check covers those.
    std::string base = basename_of(lp.path), dir = dirname_of(lp.path);
    if (base.size() == 68 && base.substr(64) == ".tar" && dir == ".") base = base.substr(0, 64);
    if ((dir == "blobs/sha256" || dir == ".") && is_digest("sha256:" + base)) lp.expect.digest = "sha256:" + base;
    lp.diff_id = diff_ids[i];
    if (!src.exists(lp.path)) throw CliError(kNotFound, where + ": " + lp.display + ": missing from the archive");
    plan.layers.push_back(lp);
  }
  return plan;
}

// skopeo's dir: layout: "version" ("Directory Transport Version: 1.x"), manifest.json (the
// image manifest itself), the config and the layers as "<hex>" files (blobs named by digest).
Plan plan_skopeo_dir(ImageSource& src) {
  std::string where = src.describe();
  std::string m_data = src.read_small("manifest.json", kMaxJson);
  json m = parse_json(m_data, where + ": manifest.json");
  std::string mt = m.is_object() && m.contains("mediaType") && m["mediaType"].is_string() ? m["mediaType"].get<std::string>() : "";
  if (mt == kMtOciIndex || mt == kMtDockerList || (m.is_object() && m.contains("manifests")))
    throw CliError(kBadInput, where + ": a skopeo dir: layout of a multi-platform image (copied with --all) is not "
                              "supported: copy one platform, or use an oci: layout");
  if (!mt.empty() && mt != kMtOciManifest && mt != kMtDockerManifest)
    throw CliError(kBadInput, where + ": manifest.json has unsupported media type " + mt);
  return plan_from_manifest(src, m, m_data, mt, where + ": manifest.json", true, "skopeo dir: layout");
}

bool is_skopeo_dir(ImageSource& src) {
  if (!src.exists("version")) return false;
  std::string v = src.read_small("version", 4096);
  return v.rfind("Directory Transport Version:", 0) == 0;
}

}  // namespace

std::string MemSource::read_small(const std::string& rel, size_t max) {
  auto it = files.find(clean_path(rel));
  if (it == files.end()) throw CliError(kNotFound, name_ + ": no " + rel);
  if (it->second.size() > max) throw CliError(kBadInput, name_ + ": " + rel + " is larger than " + human_bytes(static_cast<int64_t>(max)));
  return it->second;
}

namespace {
class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string s) : s_(std::move(s)) {}
  size_t read(void* buf, size_t cap) override {
    size_t n = std::min(cap, s_.size() - pos_);
    std::memcpy(buf, s_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  std::string s_;
  size_t pos_ = 0;
};
}  // namespace

std::unique_ptr<ByteSource> MemSource::open(const std::string& rel) {
  return std::make_unique<StringSource>(read_small(rel, SIZE_MAX));
}

Plan plan_image(ImageSource& src, const std::string& ref) {
  try {
    if (src.exists("index.json")) return plan_oci(src, ref);
    if (src.exists("manifest.json")) {
      if (is_skopeo_dir(src)) {
        if (!ref.empty()) usage_error(src.describe() + ": a skopeo dir: layout holds one image: no :REF");
        return plan_skopeo_dir(src);
      }
      return plan_docker(src, ref);
    }
  } catch (const json::exception& e) {
    // A value of the wrong type where the reader asked for one (e.g. a number as "os").
    throw CliError(kBadInput, src.describe() + ": malformed image JSON: " + e.what());
  }
  throw CliError(kBadInput, src.describe() +
                                ": neither an OCI image layout (index.json), a docker save archive (manifest.json) "
                                "nor a skopeo dir: layout (version, manifest.json)");
}

std::string export_config(const std::string& image_name, const std::string& image_config,
                          const nlohmann::json& diff_ids, const std::string& want_arch, const std::string& want_os,
                          std::string* arch, std::string* os) {
  using nlohmann::json;
  if (image_name.empty()) {
    json config = {{"architecture", *arch}, {"os", *os}, {"config", json::object()},
                   {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    return config.dump();
  }
  json cj;
  try {
    cj = json::parse(image_config);
  } catch (const json::exception& e) {
    throw CliError(kVerify, "export-image: the config of image " + image_name + " is not readable: " + e.what());
  }
  if (!cj.is_object() || !cj.contains("rootfs") || !cj["rootfs"].is_object() || cj["rootfs"].value("diff_ids", json()) != diff_ids)
    throw CliError(kVerify, "export-image: the config of image " + image_name + " does not list the chain's DiffIDs");
  for (auto [key, opt, want, val] : {std::tuple<const char*, const char*, const std::string*, std::string*>{
                                         "architecture", "arch", &want_arch, arch},
                                     {"os", "os", &want_os, os}})
    if (cj.contains(key) && cj[key].is_string()) {
      if (!want->empty() && *want != cj[key].get<std::string>())
        usage_error("export-image: --" + std::string(opt) + " " + *want + " differs from the " + key + " of image " +
                    image_name + " (" + cj[key].get<std::string>() + ")");
      *val = cj[key].get<std::string>();
    }
  return image_config;
}

}  // namespace cli
