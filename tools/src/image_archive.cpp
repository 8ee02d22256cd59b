// SPDX-License-Identifier: Apache-2.0
// rolayer export-image --format docker-archive: a chain (or a kept image) as one tar archive
// that `docker load` reads as it reads what `docker save` (25+) writes: manifest.json and
// repositories (the docker-archive index) beside an OCI image layout (oci-layout, index.json,
// blobs/sha256/…) whose blobs both indexes share. Layers are uncompressed (digest = DiffID).
// The archive is written straight to the file (a temporary file next to it, renamed into place
// once complete and fsync'd: no partial archive is ever left under the name) or to standard
// output: no layer is staged on disk first.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "args.h"
#include "blob.h"
#include "commands.h"
#include "image_plan.h"
#include "kept_images.h"
#include "progress.h"
#include "text.h"

namespace cli {

using nlohmann::json;

namespace {

// USTAR headers, as Go's archive/tar writes them for `docker save`: octal fields, a size over
// 8 GiB - 1 in base-256 (GNU), which Go, libarchive and GNU tar all read.
class TarOut {
 public:
  explicit TarOut(OutputFile& out) : out_(out) {}

  void dir(const std::string& name) { header(name, 0, '5', 0755); }
  void file(const std::string& name, const std::string& data) {
    header(name, static_cast<int64_t>(data.size()), '0', 0644);
    out_.write(data.data(), data.size());
    pad(static_cast<int64_t>(data.size()));
  }
  // A regular file whose size is known now and whose bytes the caller writes next.
  void begin_file(const std::string& name, int64_t size) { header(name, size, '0', 0644); }
  void write(const void* p, size_t n) { out_.write(p, n); }
  void pad(int64_t size) {
    static const char zeros[512] = {};
    size_t r = static_cast<size_t>(size % 512);
    if (r) out_.write(zeros, 512 - r);
  }
  void finish() {
    static const char zeros[1024] = {};
    out_.write(zeros, sizeof zeros);
  }

 private:
  static void octal(char* field, size_t len, uint64_t v) {
    // len - 1 digits and a NUL.
    std::snprintf(field, len, "%0*llo", static_cast<int>(len - 1), static_cast<unsigned long long>(v));
  }
  void header(const std::string& name, int64_t size, char type, unsigned mode) {
    if (name.size() > 100) throw CliError(kFailure, "export-image: tar name too long: " + name);
    char h[512] = {};
    std::memcpy(h, name.data(), name.size());
    octal(h + 100, 8, mode);
    octal(h + 108, 8, 0);
    octal(h + 116, 8, 0);
    if (static_cast<uint64_t>(size) <= 077777777777ULL) {
      octal(h + 124, 12, static_cast<uint64_t>(size));
    } else {
      unsigned char* f = reinterpret_cast<unsigned char*>(h + 124);
      uint64_t v = static_cast<uint64_t>(size);
      for (int i = 11; i >= 1; i--, v >>= 8) f[i] = static_cast<unsigned char>(v & 0xff);
      f[0] = 0x80;
    }
    octal(h + 136, 12, 0);  // mtime: the epoch, so that the same chain gives the same archive
    h[156] = type;
    std::memcpy(h + 257, "ustar\0" "00", 8);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    std::snprintf(h + 148, 8, "%06o", sum);
    h[155] = ' ';
    out_.write(h, sizeof h);
  }
  OutputFile& out_;
};

void check_text(const std::string& opt, const std::string& v) {
  if (!is_valid_utf8(v))
    usage_error("export-image: --" + opt + " is not UTF-8 text (\"" + term_safe(v) + "\"): image JSON holds UTF-8 only");
  for (unsigned char c : v)
    if (c < 0x20 || c == 0x7f) usage_error("export-image: --" + opt + " holds a control character (\"" + term_safe(v) + "\")");
}

// "name:tag" of a docker reference as manifest.json's RepoTags and repositories hold it: the
// tag after the last ':' that follows the last '/' ("latest" when there is none); a digest
// reference (name@sha256:…) has no tag to give.
bool split_repo_tag(const std::string& ref, std::string* repo, std::string* tag) {
  if (ref.empty() || ref.find('@') != std::string::npos) return false;
  auto slash = ref.rfind('/');
  auto colon = ref.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    *repo = ref.substr(0, colon);
    *tag = ref.substr(colon + 1);
  } else {
    *repo = ref;
    *tag = "latest";
  }
  return !repo->empty() && !tag->empty();
}

}  // namespace

int export_image_archive(Globals& g, const ParsedArgs& p) {
  bool by_image = p.has("image");
  if (by_image && p.positionals.size() != 1) usage_error("export-image: with --image NAME, needs only FILE");
  if (!by_image && p.positionals.size() != 2) usage_error("export-image: needs CHAINID and FILE (- for standard output)");
  std::string file = p.positionals.back();
  std::string ref = p.get("ref", "latest");
  if (ref.empty()) usage_error("export-image: --ref must not be empty");
  std::string arch = p.get("arch", host_arch());
  std::string os = p.get("os", "linux");
  check_text("ref", ref);
  check_text("arch", arch);
  check_text("os", os);
  if (p.has("tag")) check_text("tag", p.get("tag"));
  if ((file == "-" || file.empty()) && ::isatty(STDOUT_FILENO))
    usage_error("export-image: refusing to write an image archive to a terminal: give FILE or redirect standard output");

  StorePtr store = open_store(g);
  std::string top, image_name, image_config;
  if (by_image) {
    image_name = find_image_name(store.get(), p.get("image"));
    if (image_name.empty()) throw CliError(kNotFound, "export-image: no such image: " + p.get("image") + " (see: rolayer images)");
  } else {
    top = resolve_chain_id(store.get(), p.positionals[0]);
    auto names = images_with_top(store.get(), top);
    if (!names.empty()) image_name = names[0];
  }
  if (!image_name.empty()) kept_image_config(store.get(), image_name, &top, &image_config);
  // The chain, base first, with each layer's stream size (the tar header needs it up front).
  std::vector<Layer> chain;
  std::vector<int64_t> sizes;
  int64_t total = 0;
  for (std::string c = top; !c.empty();) {
    Layer l = open_layer(store.get(), c);
    int64_t sz = 0;
    Err err;
    int rc = rolayer_layer_stream_size(&sz, l.get(), err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, "export-image " + c);
    total += sz;
    sizes.push_back(sz);
    const char* par = rolayer_layer_parent(l.get());
    c = par ? par : "";
    chain.push_back(std::move(l));
  }
  std::reverse(chain.begin(), chain.end());
  std::reverse(sizes.begin(), sizes.end());
  json diff_ids = json::array();
  for (const auto& l : chain) diff_ids.push_back(rolayer_layer_diff_id(l.get()));

  // The config: the kept image's own, byte for byte (its digest is the image ID `docker load`
  // reports), else a minimal one naming the chain's DiffIDs.
  std::string config_data = export_config(image_name, image_config, diff_ids, p.has("arch") ? p.get("arch") : "",
                                          p.has("os") ? p.get("os") : "", &arch, &os);
  std::string config_digest = Hasher::digest_of(config_data);
  json layers = json::array(), layer_paths = json::array();
  for (size_t i = 0; i < chain.size(); i++) {
    std::string d = diff_ids[i].get<std::string>();
    layers.push_back(json{{"mediaType", kMtOciLayerTar}, {"digest", d}, {"size", sizes[i]}});
    layer_paths.push_back("blobs/sha256/" + d.substr(7));
  }
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", kMtOciManifest},
                   {"config", {{"mediaType", kMtOciConfig}, {"digest", config_digest}, {"size", config_data.size()}}},
                   {"layers", layers}};
  std::string manifest_data = manifest.dump();
  std::string manifest_digest = Hasher::digest_of(manifest_data);

  // RepoTags: --tag, else the kept image's name; none for a bare chain (docker load then
  // reports the image ID only).
  std::string tag_ref = p.has("tag") ? p.get("tag") : image_name;
  std::string repo, tag;
  bool tagged = split_repo_tag(tag_ref, &repo, &tag);
  if (p.has("tag") && !tagged) usage_error("export-image: --tag " + term_safe(p.get("tag")) + " is not NAME[:TAG]");
  json annotations = {{kRefAnnotation, ref}};
  if (tagged) annotations["io.containerd.image.name"] = repo + ":" + tag;
  json index = {{"schemaVersion", 2},
                {"mediaType", kMtOciIndex},
                {"manifests", json::array({json{{"mediaType", kMtOciManifest},
                                                {"digest", manifest_digest},
                                                {"size", manifest_data.size()},
                                                {"platform", {{"architecture", arch}, {"os", os}}},
                                                {"annotations", annotations}}})}};
  json entry = {{"Config", "blobs/sha256/" + config_digest.substr(7)},
                {"RepoTags", tagged ? json::array({repo + ":" + tag}) : json(nullptr)},
                {"Layers", layer_paths}};
  json docker_manifest = json::array({entry});

  OutputFile out(file);
  TarOut tar(out);
  tar.dir("blobs/");
  tar.dir("blobs/sha256/");
  Progress prog(progress_enabled(g), "export-image", total);
  std::vector<unsigned char> buf(1 << 20);
  std::vector<std::string> written;  // a chain may hold one DiffID twice: one blob
  for (size_t i = 0; i < chain.size(); i++) {
    std::string name = layer_paths[i].get<std::string>();
    if (std::find(written.begin(), written.end(), name) != written.end()) continue;
    written.push_back(name);
    prog.set_label("export-image " + std::to_string(i + 1) + "/" + std::to_string(chain.size()));
    rolayer_layer* l = chain[i].get();
    std::string chain_id = rolayer_layer_chain_id(l);
    rolayer_tar_stream* s = nullptr;
    Err err;
    int rc = rolayer_tar_stream_open(&s, l, err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, "export-image " + chain_id);
    std::unique_ptr<rolayer_tar_stream, void (*)(rolayer_tar_stream*)> stream(s, rolayer_tar_stream_free);
    tar.begin_file(name, sizes[i]);
    // The library verifies the stream against the DiffID as it ends (a mismatch is an error
    // from the last read): no second hash here.
    int64_t got = 0;
    for (;;) {
      check_interrupted();
      size_t n = 0;
      rc = rolayer_tar_stream_read(s, buf.data(), buf.size(), &n, err.out());
      if (rc != ROLAYER_OK) {
        prog.clear();
        lib_fail(rc, err, "export-image " + chain_id);
      }
      if (n == 0) break;
      got += static_cast<int64_t>(n);
      if (got > sizes[i]) break;
      tar.write(buf.data(), n);
      prog.add(n);
    }
    if (got != sizes[i])
      throw CliError(kVerify, "export-image " + chain_id + ": the stream is " + (got > sizes[i] ? "longer" : "shorter") +
                                  " than the " + std::to_string(sizes[i]) + " bytes the store records");
    tar.pad(sizes[i]);
  }
  prog.clear();
  tar.file("blobs/sha256/" + config_digest.substr(7), config_data);
  if (manifest_digest != config_digest) tar.file("blobs/sha256/" + manifest_digest.substr(7), manifest_data);
  tar.file("index.json", index.dump());
  tar.file("manifest.json", docker_manifest.dump());
  tar.file("oci-layout", json{{"imageLayoutVersion", "1.0.0"}}.dump());
  if (tagged) tar.file("repositories", json{{repo, {{tag, config_digest.substr(7)}}}}.dump());
  tar.finish();
  check_interrupted();
  out.commit();
  if (!out.is_stdout()) {
    std::printf("%s\n", config_digest.c_str());
    if (std::fflush(stdout) != 0) sys_fail("write standard output");
  }
  return kOk;
}

}  // namespace cli
