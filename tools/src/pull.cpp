// SPDX-License-Identifier: Apache-2.0
// rolayer pull: an image's layers straight from a registry into the store.
//
// How the stream flows: each layer blob is downloaded by its own thread into a small bounded
// in-memory pipe (kPipeBytes) and read from it by the thread that applies the layer, through
// LayerReader (the same one-pass reader `import` uses: it hashes and counts the compressed bytes
// against the descriptor and decompresses them). With --jobs N > 1 (default: the number of CPUs, at most 4)
// up to N layers are downloaded and applied at once with the staged-register API and committed
// in chain order, as `import --jobs N` does (staged_chain.h); with --jobs 1 they are registered
// one after the other. Memory stays bounded by N pipes whatever the image size, and no blob is
// ever written to a temporary file.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "args.h"
#include "blob_bars.h"
#include "blob.h"
#include "commands.h"
#include "progress.h"
#include "registry.h"
#include "registry_cmds.h"
#include "staged_chain.h"

namespace cli {

using nlohmann::json;

namespace {

constexpr size_t kPipeBytes = 1u << 20;

// A bounded single-producer single-consumer byte pipe between a download thread and the thread
// that applies the layer.
class Pipe {
 public:
  // Producer: blocks while full; false when the consumer cancelled.
  bool write(const char* d, size_t n) {
    std::unique_lock<std::mutex> g(mu_);
    while (n > 0) {
      cv_.wait(g, [&] { return cancelled_ || buffered_ < kPipeBytes; });
      if (cancelled_) return false;
      size_t k = std::min(n, kPipeBytes - buffered_);
      chunks_.emplace_back(d, k);
      buffered_ += k;
      d += k;
      n -= k;
      cv_.notify_all();
    }
    return true;
  }
  void close() {
    std::lock_guard<std::mutex> g(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  void fail(const CliError& e) {
    std::lock_guard<std::mutex> g(mu_);
    if (!error_) error_ = e;
    closed_ = true;
    cv_.notify_all();
  }
  void cancel() {
    std::lock_guard<std::mutex> g(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }
  bool cancelled() {
    std::lock_guard<std::mutex> g(mu_);
    return cancelled_;
  }
  // Consumer: 0 at a clean end; throws the producer's error.
  size_t read(void* buf, size_t cap) {
    std::unique_lock<std::mutex> g(mu_);
    for (;;) {
      if (!chunks_.empty()) {
        std::string& c = chunks_.front();
        size_t k = std::min(cap, c.size() - pos_);
        std::memcpy(buf, c.data() + pos_, k);
        pos_ += k;
        if (pos_ == c.size()) {
          chunks_.pop_front();
          pos_ = 0;
        }
        buffered_ -= k;
        cv_.notify_all();
        return k;
      }
      if (error_) throw *error_;
      if (closed_) return 0;
      if (interrupted()) {
        g.unlock();
        check_interrupted();
        g.lock();
      }
      cv_.wait_for(g, std::chrono::milliseconds(200));
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> chunks_;
  size_t pos_ = 0, buffered_ = 0;
  bool closed_ = false, cancelled_ = false;
  std::optional<CliError> error_;
};

class PipeSource : public ByteSource {
 public:
  explicit PipeSource(Pipe& p) : p_(p) {}
  size_t read(void* buf, size_t cap) override { return p_.read(buf, cap); }

 private:
  Pipe& p_;
};

struct PullLayer {
  Descriptor desc;
  std::string diff_id, chain_id;
  bool present = false;
  std::string local;  // a layer in the store from the same blob (same descriptor digest and DiffID)
  Pipe pipe;
};

// A local layer's verified stream as a rolayer_read_fn.
struct LocalStream {
  rolayer_tar_stream* s = nullptr;
  Err err;
  int rc = ROLAYER_OK;
  ~LocalStream() { rolayer_tar_stream_free(s); }
  static int read(void* buf, size_t cap, size_t* n, void* u) {
    auto* ls = static_cast<LocalStream*>(u);
    *n = 0;
    if (interrupted()) return 2;
    ls->rc = rolayer_tar_stream_read(ls->s, buf, cap, n, ls->err.out());
    return ls->rc == ROLAYER_OK ? 0 : 1;
  }
};


}  // namespace

Platform parse_platform(const std::string& s) {
  Platform p;
  if (s.empty()) {
    p.os = "linux";
    p.arch = host_arch();
    return p;
  }
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find('/', i);
    if (j == std::string::npos) j = s.size();
    parts.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  if (parts.size() < 2 || parts.size() > 3) usage_error("--platform needs OS/ARCH[/VARIANT], not \"" + s + "\"");
  for (const auto& x : parts)
    if (x.empty()) usage_error("--platform needs OS/ARCH[/VARIANT], not \"" + s + "\"");
  p.os = parts[0];
  p.arch = parts[1];
  if (parts.size() == 3) p.variant = parts[2];
  p.explicit_ = true;
  return p;
}

std::string Platform::str() const { return os + "/" + arch + (variant.empty() ? "" : "/" + variant); }

Descriptor parse_descriptor_json(const json& j, const std::string& what) {
  if (!j.is_object()) throw CliError(kBadInput, what + ": a descriptor is not an object");
  Descriptor d;
  if (j.contains("mediaType") && j["mediaType"].is_string()) d.media_type = j["mediaType"].get<std::string>();
  if (!j.contains("digest") || !j["digest"].is_string()) throw CliError(kBadInput, what + ": a descriptor has no digest");
  d.digest = j["digest"].get<std::string>();
  if (!is_digest(d.digest))
    throw CliError(kBadInput, what + ": unsupported or malformed digest \"" + printable(d.digest.substr(0, 200)) + "\"");
  if (!j.contains("size") || !j["size"].is_number_integer() || j["size"].get<int64_t>() < 0)
    throw CliError(kBadInput, what + ": descriptor " + d.digest + " has no valid size");
  d.size = j["size"].get<int64_t>();
  return d;
}

std::string chain_id_of(const std::string& parent, const std::string& diff_id) {
  return parent.empty() ? diff_id : Hasher::digest_of(parent + " " + diff_id);
}

TransportOptions transport_options(const ParsedArgs& p) {
  TransportOptions t;
  t.insecure = p.has("insecure");
  t.cert_dir = p.get("cert-dir");
  t.ca_file = p.get("ca-file");
  if (p.has("retries")) {
    const std::string v = p.get("retries");
    char* end = nullptr;
    long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end || n < 0 || n > 100) usage_error("--retries needs a number from 0 to 100, not \"" + v + "\"");
    t.retries = static_cast<int>(n);
  }
  return t;
}

int parse_jobs(const ParsedArgs& p, int default_jobs) {
  if (!p.has("jobs")) return default_jobs;
  const std::string v = p.get("jobs");
  char* end = nullptr;
  long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || n < 1 || n > 32) usage_error("--jobs needs a number from 1 to 32, not \"" + v + "\"");
  return static_cast<int>(n);
}

// Resolves ref to an image manifest for the platform: returns the manifest's body, media type
// and digest.
ResolvedImage resolve_image(Registry& reg, const Platform& plat) {
  ResolvedImage out;
  std::string mt, digest;
  std::string body = reg.get_manifest(reg.ref().reference(), &mt, &digest);
  json j;
  check_json_depth(body, reg.describe() + ": manifest");
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    throw CliError(kBadInput, reg.describe() + ": manifest: not valid JSON: " + e.what());
  }
  if (mt == kMtOciIndex || mt == kMtDockerList || (j.is_object() && j.contains("manifests") && !j.contains("layers"))) {
    if (!j.contains("manifests") || !j["manifests"].is_array())
      throw CliError(kBadInput, reg.describe() + ": index " + digest + " has no manifests");
    const json* pick = nullptr;
    std::string available;
    for (const auto& m : j["manifests"]) {
      if (!m.is_object() || !m.contains("platform") || !m["platform"].is_object()) continue;
      const json& pf = m["platform"];
      auto field = [&](const char* k) {
        return pf.contains(k) && pf[k].is_string() ? pf[k].get<std::string>() : std::string();
      };
      std::string os = field("os"), arch = field("architecture"), variant = field("variant");
      if (available.size() < 1000)
        available += (available.empty() ? "" : ", ") + printable(os + "/" + arch + (variant.empty() ? "" : "/" + variant));
      if (os != plat.os || arch != plat.arch) continue;
      if (!plat.variant.empty() && variant != plat.variant) continue;
      if (!pick) pick = &m;
    }
    if (!pick)
      throw CliError(kNotFound, reg.describe() + ": " + reg.ref().reference() + " has no image for " + plat.str() +
                                    " (it has: " + (available.empty() ? "none" : available) + "; choose one with --platform)");
    Descriptor d = parse_descriptor_json(*pick, reg.describe() + ": index");
    out.index_digest = digest;
    body = reg.get_manifest(d.digest, &mt, &digest);
    check_json_depth(body, reg.describe() + ": manifest " + d.digest);
    try {
      j = json::parse(body);
    } catch (const json::exception& e) {
      throw CliError(kBadInput, reg.describe() + ": manifest " + d.digest + ": not valid JSON: " + e.what());
    }
  }
  if (mt != kMtOciManifest && mt != kMtDockerManifest) {
    if (mt.find("manifest.v1") != std::string::npos || (j.is_object() && j.contains("schemaVersion") && j["schemaVersion"] == 1))
      throw CliError(kBadInput, reg.describe() + ": Docker schema 1 manifests are not supported (deprecated by Docker)");
    if (!(j.is_object() && j.contains("layers") && j.contains("config")))
      throw CliError(kBadInput, reg.describe() + ": unsupported manifest media type \"" + printable(mt) + "\"");
  }
  out.manifest = body;
  out.manifest_media_type = mt;
  out.manifest_digest = digest;
  out.json = j;
  return out;
}

int cmd_pull(Globals& g, const Args& args) {
  auto p = parse_args("pull", args,
                      {{"platform", 0, true}, {"jobs", 'j', true}, {"insecure", 0, false}, {"cert-dir", 0, true},
                       {"ca-file", 0, true}, {"retries", 0, true}},
                      g);
  if (p.help) return print_command_help(*find_command("pull")), 0;
  if (p.positionals.size() != 1) usage_error("pull: needs exactly one image reference");
  Reference ref = parse_reference(p.positionals[0]);
  // A pull-through mirror for docker.io, as the Docker daemon's registry-mirrors: the same
  // repository path (library/NAME for official images) is asked of the mirror.
  if (const char* m = std::getenv("ROLAYER_DOCKER_IO_MIRROR"); m && *m && ref.domain == "docker.io") {
    Reference mr = parse_reference(std::string(m) + "/x");
    if (mr.domain == "docker.io") usage_error("$ROLAYER_DOCKER_IO_MIRROR must be a registry host[:port], not \"" + std::string(m) + "\"");
    ref.mirror = mr.domain;
  }
  Platform plat = parse_platform(p.get("platform"));
  const int jobs = parse_stage_jobs(p, "pull");
  TransportOptions topts = transport_options(p);

  StorePtr store = open_store(g);  // also installs the signal handlers
  Registry reg(ref, topts, "pull");
  reg.ping();
  ResolvedImage img = resolve_image(reg, plat);
  const json& m = img.json;
  std::string mwhat = reg.describe() + ": manifest " + img.manifest_digest;
  if (!m.is_object() || !m.contains("config")) throw CliError(kBadInput, mwhat + ": no config");
  Descriptor cfgd = parse_descriptor_json(m["config"], mwhat);
  std::string cfg = reg.get_small_blob(cfgd.digest, cfgd.size);
  json config;
  check_json_depth(cfg, reg.describe() + ": config " + cfgd.digest);
  try {
    config = json::parse(cfg);
  } catch (const json::exception& e) {
    throw CliError(kBadInput, reg.describe() + ": config " + cfgd.digest + ": not valid JSON: " + e.what());
  }
  std::vector<std::string> diff_ids;
  if (!config.is_object() || !config.contains("rootfs") || !config["rootfs"].is_object() ||
      !config["rootfs"].contains("diff_ids") || !config["rootfs"]["diff_ids"].is_array())
    throw CliError(kBadInput, reg.describe() + ": config " + cfgd.digest + ": no rootfs.diff_ids");
  for (const auto& d : config["rootfs"]["diff_ids"]) {
    if (!d.is_string() || !is_digest(d.get<std::string>()))
      throw CliError(kBadInput, reg.describe() + ": config " + cfgd.digest + ": malformed DiffID");
    diff_ids.push_back(d.get<std::string>());
  }
  if (plat.explicit_ && config.contains("architecture") && config["architecture"].is_string() &&
      config["architecture"].get<std::string>() != plat.arch)
    throw CliError(kNotFound, reg.describe() + ": " + ref.reference() + " is for " +
                                  printable(config["architecture"].get<std::string>()) + ", not " + plat.str());
  if (!m.contains("layers") || !m["layers"].is_array()) throw CliError(kBadInput, mwhat + ": no layers");
  size_t n = m["layers"].size();
  if (n == 0) throw CliError(kBadInput, mwhat + ": the image has no layers");
  if (n != diff_ids.size())
    throw CliError(kBadInput, mwhat + ": " + std::to_string(n) + " layers, but the config lists " +
                                  std::to_string(diff_ids.size()) + " DiffIDs");
  if (n > ROLAYER_MAX_DEPTH)
    throw CliError(kBadInput, mwhat + ": " + std::to_string(n) + " layers, more than " + std::to_string(ROLAYER_MAX_DEPTH));

  std::vector<std::unique_ptr<PullLayer>> layers;
  std::string parent;
  for (size_t i = 0; i < n; i++) {
    auto l = std::make_unique<PullLayer>();
    l->desc = parse_descriptor_json(m["layers"][i], mwhat);
    if (!is_layer_media_type(l->desc.media_type))
      throw CliError(kBadInput, mwhat + ": layer blob " + l->desc.digest + " has unsupported media type \"" +
                                    printable(l->desc.media_type) + "\"");
    l->diff_id = diff_ids[i];
    l->chain_id = parent = chain_id_of(parent, l->diff_id);
    layers.push_back(std::move(l));
  }

  // Every handle this pull holds; on failure they are released newest first, which deletes
  // what this pull registered and nothing that was there before.
  std::vector<Layer> held;
  // Skip the layers already in the store: the highest one present brings its whole chain.
  size_t first = 0, preexisting = 0;
  for (size_t i = n; i-- > 0;) {
    rolayer_layer* l = nullptr;
    if (rolayer_open(&l, store.get(), layers[i]->chain_id.c_str(), nullptr) == ROLAYER_OK) {
      held.emplace_back(l);
      preexisting = 1;
      first = i + 1;
      for (size_t k = 0; k <= i; k++) layers[k]->present = true;
      break;
    }
  }

  // A layer not in the store at its place in this chain may be there on another parent, from the
  // same blob: its verified stream is registered instead of downloading the blob again.
  if (first < n) {
    std::map<std::string, std::string> by_blob;  // "descriptor digest DiffID" -> ChainID
    for (const auto& id : list_chain_ids(store.get())) {
      rolayer_layer* l = nullptr;
      if (rolayer_open(&l, store.get(), id.c_str(), nullptr) != ROLAYER_OK) continue;
      Layer layer(l);
      const char* dd = rolayer_layer_descriptor_digest(l);
      if (dd) by_blob.emplace(std::string(dd) + " " + rolayer_layer_diff_id(l), id);
    }
    for (size_t i = first; i < n; i++) {
      auto it = by_blob.find(layers[i]->desc.digest + " " + layers[i]->diff_id);
      if (it != by_blob.end()) layers[i]->local = it->second;
    }
  }

  // One bar per blob on a terminal.
  BlobBars bars(progress_enabled(g));
  std::vector<size_t> bar(n, 0);
  for (size_t i = 0; i < n; i++) {
    bar[i] = bars.add_bar("layer " + std::to_string(i + 1) + "/" + std::to_string(n) + " " + short_id(layers[i]->desc.digest),
                          layers[i]->desc.size);
    if (i < first) bars.set_status(bar[i], "already in the store");
  }

  // Each layer not in the store is downloaded by its own thread into its pipe while the layer's
  // applying thread (the main one with --jobs 1, else one of stage_and_commit_chain's) reads it.
  auto start_download = [&](size_t i) {
    PullLayer& l = *layers[i];
    return std::thread([&reg, &bars, &bar, &l, i] {
      try {
        reg.fetch_blob(
            l.desc.digest, l.desc.size,
            [&](const char* d, size_t k) {
              if (!l.pipe.write(d, k)) return false;
              bars.add(bar[i], k);
              return true;
            },
            [&] { return l.pipe.cancelled() || interrupted(); });
        l.pipe.close();
      } catch (const CliError& e) {
        l.pipe.fail(e);
      } catch (const std::exception& e) {
        l.pipe.fail(CliError(kFailure, e.what()));
      }
    });
  };
  // Stops a layer's download (when its reader gave up early) and waits for its thread.
  struct Download {
    PullLayer& l;
    std::thread t;
    ~Download() {
      l.pipe.cancel();
      if (t.joinable()) t.join();
    }
  };
  auto options_of = [](const PullLayer& l) {
    rolayer_register_options opts = ROLAYER_REGISTER_OPTIONS_INIT;
    opts.descriptor_media_type = l.desc.media_type.c_str();
    opts.descriptor_digest = l.desc.digest.c_str();
    opts.descriptor_size = l.desc.size;
    return opts;
  };
  auto name_of = [&](const PullLayer& l) { return reg.describe() + ": layer blob " + l.desc.digest; };
  auto local_what = [](const PullLayer& l) { return "the store's copy of " + l.desc.digest + " (" + l.local + ")"; };
  auto check_diff_id = [&](size_t i, const std::string& diff_id) {
    const PullLayer& l = *layers[i];
    if (diff_id != l.diff_id)
      throw CliError(kVerify, name_of(l) + ": DiffID mismatch: the config lists " + l.diff_id + " for layer " +
                                  std::to_string(i + 1) + ", the uncompressed blob is " + diff_id);
  };
  // A layer the store already holds under another chain: its stored stream is read back through
  // `apply` (rolayer_stage or rolayer_register_ext, given LocalStream::read and the stream), whose
  // failure is named after the stored copy when reading it failed, after the blob otherwise.
  auto apply_local = [&](size_t i, const std::function<int(LocalStream&, Err&)>& apply) {
    const PullLayer& l = *layers[i];
    Layer from = open_layer(store.get(), l.local);
    LocalStream ls;
    Err err;
    int rc = rolayer_tar_stream_open(&ls.s, from.get(), err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, local_what(l));
    rc = apply(ls, err);
    if (rc != ROLAYER_OK) {
      check_interrupted();
      if (ls.rc != ROLAYER_OK) lib_fail(ls.rc, ls.err, local_what(l));
      lib_fail(rc, err, name_of(l));
    }
    bars.add(bar[i], static_cast<uint64_t>(std::max<int64_t>(0, l.desc.size)));
  };
  auto registered = [&](size_t i, const std::string& chain_id) {
    bars.set_status(bar[i], (layers[i]->local.empty() ? "registered " : "registered from the store's copy as ") + short_id(chain_id));
  };
  parent = first > 0 ? layers[first - 1]->chain_id : "";
  try {
    if (jobs > 1 && n - first > 1) {
      // Layers applied at once, committed in chain order (as import --jobs N; docs/cli.md).
      ChainSteps steps;
      steps.stage = [&](size_t k) -> StagedPtr {
        const size_t i = first + k;
        PullLayer& l = *layers[i];
        rolayer_register_options opts = options_of(l);
        if (!l.local.empty()) {
          rolayer_staged* st = nullptr;
          apply_local(i, [&](LocalStream& ls, Err& err) {
            return rolayer_stage(&st, store.get(), LocalStream::read, &ls, &opts, err.out());
          });
          return StagedPtr(st, rolayer_stage_free);
        }
        Download dl{l, start_download(i)};
        PipeSource src(l.pipe);
        BlobExpectation expect{name_of(l), l.desc.digest, l.desc.size};
        LayerReader reader(src, expect.name, nullptr, &expect);
        return stage_layer(store.get(), reader, &opts, expect.name);
      };
      steps.check = [&](size_t k, const rolayer_staged* st) { check_diff_id(first + k, rolayer_staged_diff_id(st)); };
      steps.context = [&](size_t k) { return name_of(*layers[first + k]); };
      steps.committed = [&](size_t k, const std::string& chain_id) { registered(first + k, chain_id); };
      steps.abandon = [&](size_t k) { layers[first + k]->pipe.cancel(); };
      stage_and_commit_chain(store.get(), n - first, jobs, steps, held, parent);
    } else {
      for (size_t i = first; i < n; i++) {
        PullLayer& l = *layers[i];
        const std::string name = name_of(l);
        rolayer_register_options opts = options_of(l);
        if (!l.local.empty()) {
          rolayer_layer* out = nullptr;
          apply_local(i, [&](LocalStream& ls, Err& err) {
            return rolayer_register_ext(&out, store.get(), parent.empty() ? nullptr : parent.c_str(), LocalStream::read,
                                        &ls, &opts, err.out());
          });
          held.emplace_back(out);
        } else {
          Download dl{l, start_download(i)};
          PipeSource src(l.pipe);
          BlobExpectation expect{name, l.desc.digest, l.desc.size};
          // LayerReader counts the compressed bytes for its progress: the download thread does here.
          LayerReader reader(src, name, nullptr, &expect);
          held.push_back(register_layer(store.get(), parent, reader, &opts, name));
        }
        check_diff_id(i, rolayer_layer_diff_id(held.back().get()));
        parent = rolayer_layer_chain_id(held.back().get());
        registered(i, parent);
      }
    }
    check_interrupted();
    // The image: its manifest (for an index, the platform's) and config, under its name.
    store_image(store.get(), ref.str(), parent, img.manifest_media_type, img.manifest, cfg);
    retain_once(store.get(), parent);
  } catch (...) {
    bars.finish();
    while (held.size() > preexisting) {
      Err ignored;
      held.back().release(ignored);
      held.pop_back();
    }
    held.clear();  // a layer that was there before is only closed
    throw;
  }
  // The layers that existed before keep their own references; those this pull registered are
  // kept by the retained top (their children hold them).
  while (!held.empty()) held.pop_back();
  bars.finish();
  std::printf("%s\n", parent.c_str());
  if (std::fflush(stdout) != 0) sys_fail("write standard output");
  return kOk;
}

}  // namespace cli

namespace cli {

const char* const kPullHelp =
    "usage: rolayer pull REF [--platform OS/ARCH[/VARIANT]] [--jobs N] [TRANSPORT OPTIONS]\n"
    "\n"
    "Pulls an image's layers from a registry into the store and prints the top ChainID,\n"
    "which stays in the store until `rolayer rm` (as for import). REF is written as Docker\n"
    "does: alpine, library/alpine:3.19, HOST[:PORT]/PATH[:TAG], or with @sha256:<hex>;\n"
    "a name without a registry host means docker.io (and library/ for one component).\n"
    "An index (manifest list) is resolved to --platform (default: linux and the host's\n"
    "architecture). Each blob is streamed once: hashed against its descriptor's digest\n"
    "and size, decompressed (gzip, zstd or plain) and applied in the same pass, without\n"
    "a temporary copy; up to N layers are downloaded and applied at once and committed\n"
    "in chain order, as import --jobs N does. DiffIDs are checked against the config.\n"
    "Layers already in the store are not downloaded.\n"
    "A dropped connection resumes with a Range request (--retries times in a row without\n"
    "progress). Any failure or Ctrl-C leaves the store as it was.\n"
    "\n"
    "Options:\n"
    "  --platform OS/ARCH[/VARIANT]  the platform to pick from an index\n"
    "  -j, --jobs N                  layers downloaded and applied at once (1-64,\n"
    "                                default: the number of CPUs, at most 4;\n"
    "                                1 = one by one)\n"
    "  --retries N                   resumptions after a dropped connection (default 5)\n"
    "  --insecure                    allow plain HTTP and unverified TLS for any host\n"
    "                                (without it, plain HTTP only for loopback hosts)\n"
    "  --ca-file FILE                trust the CA certificates in FILE (PEM)\n"
    "  --cert-dir DIR                trust the *.crt files in DIR\n"
    "\n"
    "Credentials: $REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json,\n"
    "~/.docker/config.json (auths); see `rolayer login`. Exit codes beyond the common\n"
    "ones: 7 authentication required or refused, 8 registry unreachable or transfer\n"
    "failed after the retries.\n";

const char* const kPushHelp =
    "usage: rolayer push CHAINID|IMAGE REF [--compression gzip|zstd|none] [--from-repo REPO]\n"
    "                    [--jobs N] [--platform OS/ARCH[/VARIANT]] [TRANSPORT OPTIONS]\n"
    "\n"
    "Pushes the chain ending at CHAINID to the registry as an image: its layers, a config\n"
    "(rootfs.diff_ids, os and architecture, as export-image writes it) and an OCI\n"
    "manifest tagged with REF's tag (default latest). Prints the manifest digest.\n"
    "A layer whose recorded descriptor (from pull or import) names a blob the registry\n"
    "already has is not sent (HEAD), or is mounted from --from-repo of the same registry;\n"
    "any other layer's verified stream is compressed on the fly and streamed up (POST,\n"
    "PATCH, PUT with the digest computed while streaming): no temporary file.\n"
    "An image kept by pull (IMAGE as `rolayer images` lists it, or its top ChainID) is\n"
    "pushed with its own config, and with its own manifest when all its original layer\n"
    "blobs are in the registry (or mountable): the same manifest digest.\n"
    "\n"
    "Options:\n"
    "  --compression ALG   gzip (default), zstd or none\n"
    "  --from-repo REPO    mount known blobs from this repository of the same registry\n"
    "  -j, --jobs N        layers pushed at once (1-32, default 5)\n"
    "  --platform P        the config's os/architecture (default: linux/host)\n"
    "  --retries, --insecure, --ca-file, --cert-dir   as for pull\n";

const char* const kLoginHelp =
    "usage: rolayer login HOST --username USER (--password-stdin | --password PASS)\n"
    "\n"
    "Checks the credentials against the registry at HOST[:PORT] and saves them as Docker\n"
    "does (auths.HOST.auth = base64 of USER:PASS) in $REGISTRY_AUTH_FILE, else\n"
    "$DOCKER_CONFIG/config.json, else ~/.docker/config.json (mode 0600).\n"
    "\n"
    "Options:\n"
    "  -u, --username USER\n"
    "  --password-stdin     read the password from the first line of standard input\n"
    "  -p, --password PASS  (visible to other users in the process list: prefer stdin)\n"
    "  --insecure, --ca-file, --cert-dir   as for pull\n";

}  // namespace cli
