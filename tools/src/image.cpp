// rolayer import (OCI image layouts and `docker save` archives, as directories or tar files)
// and rolayer export-image (an OCI image layout of a chain, with uncompressed layers).
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "args.h"
#include "blob.h"
#include "commands.h"
#include "progress.h"

namespace cli {

using nlohmann::json;

namespace {

constexpr size_t kMaxJson = 16u << 20;  // index, manifests, configs: 16 MiB at most

const char* kMtOciIndex = "application/vnd.oci.image.index.v1+json";
const char* kMtOciManifest = "application/vnd.oci.image.manifest.v1+json";
const char* kMtOciConfig = "application/vnd.oci.image.config.v1+json";
const char* kMtOciLayerTar = "application/vnd.oci.image.layer.v1.tar";
const char* kMtDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
const char* kMtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
const char* kRefAnnotation = "org.opencontainers.image.ref.name";

bool known_layer_media_type(const std::string& mt) {
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

// A path named by an image's JSON must stay inside the image: relative, no "..".
void check_inner_path(const std::string& p, const std::string& what) {
  if (p.empty() || p[0] == '/') throw CliError(kBadInput, what + ": not a relative path: \"" + p + "\"");
  std::string s = "/" + p + "/";
  if (s.find("/../") != std::string::npos) throw CliError(kBadInput, what + ": path leaves the image: \"" + p + "\"");
}

std::string blob_path(const std::string& digest) {
  auto c = digest.find(':');
  return "blobs/" + digest.substr(0, c) + "/" + digest.substr(c + 1);
}

// --- image sources ----------------------------------------------------------------------------

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual bool exists(const std::string& rel) = 0;
  virtual std::string read_small(const std::string& rel, size_t max) = 0;
  virtual std::unique_ptr<ByteSource> open(const std::string& rel) = 0;
  virtual std::string describe() const = 0;
};

class DirSource : public ImageSource {
 public:
  explicit DirSource(std::string root) : root_(std::move(root)) {}
  bool exists(const std::string& rel) override {
    struct stat st;
    return ::stat(full(rel).c_str(), &st) == 0 && S_ISREG(st.st_mode);
  }
  std::string read_small(const std::string& rel, size_t max) override { return read_file(full(rel), max); }
  std::unique_ptr<ByteSource> open(const std::string& rel) override { return FdSource::open_file(full(rel)); }
  std::string describe() const override { return root_; }

 private:
  std::string full(const std::string& rel) const { return root_ + "/" + rel; }
  std::string root_;
};

struct ArchiveDeleter {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<struct archive, ArchiveDeleter>;

// One entry's data, read straight out of the image archive.
class ArchiveEntrySource : public ByteSource {
 public:
  ArchiveEntrySource(ArchivePtr a, std::string name) : a_(std::move(a)), name_(std::move(name)) {}
  size_t read(void* buf, size_t cap) override {
    check_interrupted();
    la_ssize_t n = archive_read_data(a_.get(), buf, cap);
    if (n < 0) {
      check_interrupted();
      const char* m = archive_error_string(a_.get());
      throw CliError(kBadInput, name_ + ": " + (m ? m : "cannot read"));
    }
    return static_cast<size_t>(n);
  }

 private:
  ArchivePtr a_;
  std::string name_;
};

// A tar (plain or compressed) holding an image layout or a docker save archive. The first pass
// indexes the entries and keeps the small ones (manifests, configs); a blob is read by a pass
// that skips to its entry (cheap for a plain tar file, where skipping seeks).
class TarSource : public ImageSource {
 public:
  explicit TarSource(std::string file) : file_(std::move(file)) {
    ArchivePtr a = open_archive();
    struct archive_entry* e = nullptr;
    size_t ordinal = 0;
    size_t cached = 0;
    for (;;) {
      check_interrupted();
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) fail_archive(a.get());
      Entry en;
      en.ordinal = ordinal++;
      std::string name = clean_path(archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
      if (name.empty()) continue;
      if (const char* hl = archive_entry_hardlink(e)) {
        en.type = Entry::Hard;
        en.target = clean_path(hl);
      } else if (archive_entry_filetype(e) == AE_IFLNK) {
        en.type = Entry::Sym;
        const char* t = archive_entry_symlink(e);
        std::string target = t ? t : "";
        en.target = clean_path(target.size() && target[0] == '/' ? target : dirname_of("/" + name).substr(1) + "/" + target);
      } else if (archive_entry_filetype(e) == AE_IFREG) {
        en.type = Entry::File;
        en.size = archive_entry_size(e);
        if (en.size >= 0 && en.size <= (1 << 20) && cached + static_cast<size_t>(en.size) <= (64u << 20)) {
          std::string data;
          data.resize(static_cast<size_t>(en.size));
          size_t got = 0;
          while (got < data.size()) {
            la_ssize_t n = archive_read_data(a.get(), data.data() + got, data.size() - got);
            if (n < 0) fail_archive(a.get());
            if (n == 0) break;
            got += static_cast<size_t>(n);
          }
          data.resize(got);
          cached += got;
          en.cached = true;
          en.data = std::move(data);
        }
      } else {
        continue;
      }
      entries_[name] = std::move(en);
    }
    // The layout may sit in one top-level directory of the archive.
    if (!entries_.count("index.json") && !entries_.count("manifest.json")) {
      std::set<std::string> tops;
      for (const auto& [n, en] : entries_) {
        auto s = n.find('/');
        if (s != std::string::npos && n.find('/', s + 1) == std::string::npos &&
            (n.substr(s + 1) == "index.json" || n.substr(s + 1) == "manifest.json"))
          tops.insert(n.substr(0, s + 1));
      }
      if (tops.size() == 1) prefix_ = *tops.begin();
    }
  }

  bool exists(const std::string& rel) override { return find(rel) != nullptr; }

  std::string read_small(const std::string& rel, size_t max) override {
    const Entry* en = find(rel);
    if (!en) throw CliError(kNotFound, file_ + ": no " + rel + " in the archive");
    if (en->size > static_cast<int64_t>(max))
      throw CliError(kBadInput, file_ + ": " + rel + " is larger than " + human_bytes(static_cast<int64_t>(max)));
    if (en->cached) return en->data;
    auto src = open(rel);
    std::string out;
    std::vector<char> buf(1 << 16);
    for (;;) {
      size_t n = src->read(buf.data(), buf.size());
      if (n == 0) break;
      out.append(buf.data(), n);
      if (out.size() > max) throw CliError(kBadInput, file_ + ": " + rel + " is too large");
    }
    return out;
  }

  std::unique_ptr<ByteSource> open(const std::string& rel) override {
    const Entry* en = find(rel);
    if (!en) throw CliError(kNotFound, file_ + ": no " + rel + " in the archive");
    ArchivePtr a = open_archive();
    struct archive_entry* e = nullptr;
    for (size_t ordinal = 0;; ordinal++) {
      check_interrupted();
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) fail_archive(a.get());
      if (ordinal == en->ordinal) return std::make_unique<ArchiveEntrySource>(std::move(a), file_ + ": " + rel);
    }
    throw CliError(kBadInput, file_ + ": " + rel + " vanished from the archive while reading it");
  }

  std::string describe() const override { return file_; }

 private:
  struct Entry {
    enum Type { File, Sym, Hard } type = File;
    size_t ordinal = 0;
    int64_t size = 0;
    std::string target;
    bool cached = false;
    std::string data;
  };

  const Entry* find(const std::string& rel) const {
    std::string name = clean_path(prefix_ + rel);
    for (int hops = 0; hops < 16; hops++) {
      auto it = entries_.find(name);
      if (it == entries_.end()) return nullptr;
      if (it->second.type == Entry::File) return &it->second;
      name = it->second.target;
    }
    return nullptr;
  }

  ArchivePtr open_archive() const {
    ArchivePtr a(archive_read_new());
    if (!a) throw CliError(kFailure, "out of memory");
    archive_read_support_filter_all(a.get());
    archive_read_support_format_tar(a.get());
    archive_read_support_format_gnutar(a.get());
    if (archive_read_open_filename(a.get(), file_.c_str(), 1 << 16) != ARCHIVE_OK) fail_archive(a.get());
    return a;
  }

  [[noreturn]] void fail_archive(struct archive* a) const {
    check_interrupted();
    const char* m = archive_error_string(a);
    int e = archive_errno(a);
    if (e == ENOENT) throw CliError(kNotFound, file_ + ": no such file");
    throw CliError(kBadInput, file_ + ": not a readable image archive: " + (m ? m : "unknown error"));
  }

  std::string file_;
  std::string prefix_;
  std::map<std::string, Entry> entries_;
};

// --- JSON helpers -----------------------------------------------------------------------------

json parse_json(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw CliError(kBadInput, what + ": not valid JSON: " + e.what());
  }
}

std::string str_field(const json& j, const char* key, const std::string& what, bool required = true) {
  if (!j.is_object() || !j.contains(key)) {
    if (required) throw CliError(kBadInput, what + ": missing \"" + key + "\"");
    return {};
  }
  if (!j[key].is_string()) throw CliError(kBadInput, what + ": \"" + key + "\" is not a string");
  return j[key].get<std::string>();
}

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
std::string read_blob(ImageSource& src, const Descriptor& d, const std::string& what_in) {
  std::string what = src.describe() + ": " + what_in;
  std::string path = blob_path(d.digest);
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

struct LayerPlan {
  std::string path;        // inside the image
  std::string display;     // "blob sha256:…" or the archive member name
  BlobExpectation expect;  // digest and size to check in the registering pass
  bool record = false;     // record the descriptor with the layer
  std::string media_type;
  std::string diff_id;     // from the config's rootfs.diff_ids
};

struct Plan {
  std::string what;  // "OCI image layout" or "docker save archive"
  std::vector<LayerPlan> layers;
};

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

  // Descend through nested indexes (multi-platform images) to an image manifest.
  json manifest;
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

  std::string mwhat = where + ": manifest " + chosen.digest;
  if (!manifest.is_object() || !manifest.contains("config")) throw CliError(kBadInput, mwhat + ": no config");
  Descriptor cfg = parse_descriptor(manifest["config"], mwhat);
  json config = parse_json(read_blob(src, cfg, "config"), where + ": config " + cfg.digest);
  auto diff_ids = config_diff_ids(config, where + ": config " + cfg.digest);
  if (!manifest.contains("layers") || !manifest["layers"].is_array()) throw CliError(kBadInput, mwhat + ": no layers");
  Plan plan;
  plan.what = "OCI image layout";
  size_t n = manifest["layers"].size();
  if (n != diff_ids.size())
    throw CliError(kBadInput, mwhat + ": " + std::to_string(n) + " layers, but the config lists " +
                                  std::to_string(diff_ids.size()) + " DiffIDs");
  if (n == 0) throw CliError(kBadInput, mwhat + ": the image has no layers");
  for (size_t i = 0; i < n; i++) {
    Descriptor d = parse_descriptor(manifest["layers"][i], mwhat);
    if (!known_layer_media_type(d.media_type))
      throw CliError(kBadInput, where + ": layer blob " + d.digest + " has unsupported media type \"" + d.media_type + "\"");
    LayerPlan lp;
    lp.path = blob_path(d.digest);
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

// "PATH:REF" → PATH and REF: the whole argument when it exists, else the shortest prefix before
// a colon that exists (as skopeo's oci:PATH:REF does).
void split_image_arg(const std::string& arg, std::string* path, std::string* ref) {
  if (path_exists(arg)) {
    *path = arg;
    ref->clear();
    return;
  }
  for (size_t c = arg.find(':'); c != std::string::npos; c = arg.find(':', c + 1)) {
    std::string p = arg.substr(0, c);
    if (!p.empty() && path_exists(p)) {
      *path = p;
      *ref = arg.substr(c + 1);
      return;
    }
  }
  throw CliError(kNotFound, arg + ": no such file or directory");
}

}  // namespace

// --- import -----------------------------------------------------------------------------------

int cmd_import(Globals& g, const Args& args) {
  auto p = parse_args("import", args, {}, g);
  if (p.help) return print_command_help(*find_command("import")), 0;
  if (p.positionals.size() != 1) usage_error("import: needs exactly one DIR or ARCHIVE (with an optional :REF)");
  std::string path, ref;
  split_image_arg(p.positionals[0], &path, &ref);

  std::unique_ptr<ImageSource> src;
  if (is_directory(path))
    src = std::make_unique<DirSource>(path);
  else
    src = std::make_unique<TarSource>(path);

  Plan plan;
  if (src->exists("index.json"))
    plan = plan_oci(*src, ref);
  else if (src->exists("manifest.json"))
    plan = plan_docker(*src, ref);
  else
    throw CliError(kBadInput, path + ": neither an OCI image layout (index.json) nor a docker save archive (manifest.json)");

  StorePtr store = open_store(g);
  int64_t total = 0;
  for (const auto& l : plan.layers) total += std::max<int64_t>(0, l.expect.size);
  Progress prog(progress_enabled(g), "import", total > 0 ? total : -1);

  // Every handle this import holds; on failure they are released (newest first) and what this
  // import registered goes with them; layers that existed before keep their own references.
  std::vector<Layer> held;
  std::string parent;
  try {
    for (size_t i = 0; i < plan.layers.size(); i++) {
      const LayerPlan& lp = plan.layers[i];
      prog.set_label("import " + std::to_string(i + 1) + "/" + std::to_string(plan.layers.size()));
      auto in = src->open(lp.path);
      BlobExpectation expect = lp.expect;
      expect.name = src->describe() + ": " + lp.display;
      LayerReader reader(*in, expect.name, &prog, &expect);
      rolayer_register_options opts = ROLAYER_REGISTER_OPTIONS_INIT;
      if (lp.record) {
        opts.descriptor_media_type = lp.media_type.c_str();
        opts.descriptor_digest = lp.expect.digest.c_str();
        opts.descriptor_size = lp.expect.size;
      }
      held.push_back(register_layer(store.get(), parent, reader, &opts, src->describe() + ": " + lp.display));
      const Layer& layer = held.back();
      std::string diff_id = rolayer_layer_diff_id(layer.get());
      if (diff_id != lp.diff_id)
        throw CliError(kVerify, src->describe() + ": " + lp.display + ": DiffID mismatch: the config lists " + lp.diff_id +
                                    " for layer " + std::to_string(i + 1) + ", the uncompressed blob is " + diff_id);
      parent = rolayer_layer_chain_id(layer.get());
      prog.note("layer " + std::to_string(i + 1) + "/" + std::to_string(plan.layers.size()) + "  " + parent);
    }
    retain_once(store.get(), parent);
  } catch (...) {
    prog.clear();
    // Release (not just close) what this import holds, newest first: what it registered goes.
    while (!held.empty()) {
      Err ignored;
      held.back().release(ignored);
      held.pop_back();
    }
    throw;
  }
  while (!held.empty()) held.pop_back();
  prog.clear();
  std::printf("%s\n", parent.c_str());
  if (std::fflush(stdout) != 0) sys_fail("write standard output");
  return kOk;
}

// --- export-image -----------------------------------------------------------------------------

int cmd_export_image(Globals& g, const Args& args) {
  auto p = parse_args("export-image", args, {{"ref", 0, true}, {"arch", 0, true}, {"os", 0, true}}, g);
  if (p.help) return print_command_help(*find_command("export-image")), 0;
  if (p.positionals.size() != 2) usage_error("export-image: needs CHAINID and DIR");
  std::string dir = p.positionals[1];
  std::string ref = p.get("ref", "latest");
  if (ref.empty()) usage_error("export-image: --ref must not be empty");
  std::string arch = p.get("arch", host_arch());
  std::string os = p.get("os", "linux");

  // An existing directory must be empty or an image layout (to which this image is added).
  bool existing_layout = false;
  if (path_exists(dir)) {
    if (!is_directory(dir)) usage_error("export-image: " + dir + " exists and is not a directory");
    if (path_exists(dir + "/oci-layout")) {
      existing_layout = true;
      json layout = parse_json(read_file(dir + "/oci-layout", 65536), dir + "/oci-layout");
      std::string v = str_field(layout, "imageLayoutVersion", dir + "/oci-layout");
      if (v.rfind("1.", 0) != 0) throw CliError(kBadInput, dir + ": unsupported image layout version " + v);
    } else {
      bool empty = true;
      if (DIR* d = ::opendir(dir.c_str())) {
        while (struct dirent* de = ::readdir(d))
          if (std::string(de->d_name) != "." && std::string(de->d_name) != "..") empty = false;
        ::closedir(d);
      }
      if (!empty) usage_error("export-image: " + dir + " is neither empty nor an OCI image layout");
    }
  }
  json index;
  if (existing_layout && path_exists(dir + "/index.json")) {
    index = parse_json(read_file(dir + "/index.json", kMaxJson), dir + "/index.json");
    if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array())
      throw CliError(kBadInput, dir + "/index.json has no manifests");
  } else {
    index = json{{"schemaVersion", 2}, {"mediaType", kMtOciIndex}, {"manifests", json::array()}};
  }

  StorePtr store = open_store(g);
  std::string top = resolve_chain_id(store.get(), p.positionals[0]);
  std::vector<Layer> chain;
  int64_t total = 0;
  for (std::string c = top; !c.empty();) {
    Layer l = open_layer(store.get(), c);
    int64_t sz = 0;
    rolayer_layer_stream_size(&sz, l.get(), nullptr);
    total += std::max<int64_t>(0, sz);
    const char* par = rolayer_layer_parent(l.get());
    c = par ? par : "";
    chain.push_back(std::move(l));
  }
  std::reverse(chain.begin(), chain.end());

  std::string blobs = dir + "/blobs/sha256";
  mkdirs(blobs, 0755);
  Progress prog(progress_enabled(g), "export-image", total);
  json layers = json::array(), diff_ids = json::array();
  for (size_t i = 0; i < chain.size(); i++) {
    prog.set_label("export-image " + std::to_string(i + 1) + "/" + std::to_string(chain.size()));
    rolayer_layer* l = chain[i].get();
    std::string diff_id = rolayer_layer_diff_id(l);
    std::string chain_id = rolayer_layer_chain_id(l);
    rolayer_tar_stream* s = nullptr;
    Err err;
    int rc = rolayer_tar_stream_open(&s, l, err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, "export-image " + chain_id);
    std::unique_ptr<rolayer_tar_stream, void (*)(rolayer_tar_stream*)> stream(s, rolayer_tar_stream_free);
    OutputFile out(blobs + "/" + diff_id.substr(7));
    Hasher h;
    std::vector<unsigned char> buf(1 << 20);
    int64_t size = 0;
    for (;;) {
      check_interrupted();
      size_t n = 0;
      rc = rolayer_tar_stream_read(s, buf.data(), buf.size(), &n, err.out());
      if (rc != ROLAYER_OK) {
        prog.clear();
        lib_fail(rc, err, "export-image " + chain_id);
      }
      if (n == 0) break;
      h.update(buf.data(), n);
      out.write(buf.data(), n);
      size += static_cast<int64_t>(n);
      prog.add(n);
    }
    std::string got = h.finish();
    if (got != diff_id)  // cannot happen with a verified stream; checked all the same
      throw CliError(kVerify, "export-image " + chain_id + ": the stream hashes to " + got + ", not " + diff_id);
    out.commit();
    layers.push_back(json{{"mediaType", kMtOciLayerTar}, {"digest", diff_id}, {"size", size}});
    diff_ids.push_back(diff_id);
  }
  prog.clear();

  auto write_blob = [&](const std::string& data) {
    std::string d = Hasher::digest_of(data);
    OutputFile out(blobs + "/" + d.substr(7));
    out.write(data.data(), data.size());
    out.commit();
    return d;
  };
  json config = {{"architecture", arch}, {"os", os}, {"config", json::object()},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  std::string config_data = config.dump();
  std::string config_digest = write_blob(config_data);
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", kMtOciManifest},
                   {"config", {{"mediaType", kMtOciConfig}, {"digest", config_digest}, {"size", config_data.size()}}},
                   {"layers", layers}};
  std::string manifest_data = manifest.dump();
  std::string manifest_digest = write_blob(manifest_data);

  json kept = json::array();
  for (const auto& m : index["manifests"]) {
    bool same_ref = m.is_object() && m.contains("annotations") && m["annotations"].is_object() &&
                    m["annotations"].contains(kRefAnnotation) && m["annotations"][kRefAnnotation] == ref;
    if (!same_ref) kept.push_back(m);
  }
  kept.push_back(json{{"mediaType", kMtOciManifest},
                      {"digest", manifest_digest},
                      {"size", manifest_data.size()},
                      {"platform", {{"architecture", arch}, {"os", os}}},
                      {"annotations", {{kRefAnnotation, ref}}}});
  index["manifests"] = kept;
  if (!existing_layout) {
    OutputFile layout(dir + "/oci-layout");
    std::string text = json{{"imageLayoutVersion", "1.0.0"}}.dump();
    layout.write(text.data(), text.size());
    layout.commit();
  }
  {
    OutputFile idx(dir + "/index.json");
    std::string text = index.dump();
    idx.write(text.data(), text.size());
    idx.commit();
  }
  std::printf("%s\n", manifest_digest.c_str());
  if (std::fflush(stdout) != 0) sys_fail("write standard output");
  return kOk;
}

}  // namespace cli
