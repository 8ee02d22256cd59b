// SPDX-License-Identifier: Apache-2.0
// rolayer push (a chain, as an image, to a registry) and rolayer login.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <thread>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "args.h"
#include "blob_bars.h"
#include "blob.h"
#include "commands.h"
#include "progress.h"
#include "registry.h"
#include "registry_cmds.h"

namespace cli {

using nlohmann::json;

namespace {

const char* kMtLayerTar = "application/vnd.oci.image.layer.v1.tar";
const char* kMtLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
const char* kMtLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";

struct StreamDeleter {
  void operator()(rolayer_tar_stream* s) const { rolayer_tar_stream_free(s); }
};

// gzip: zlib at this level for the parts of a layer that compress: Z_BEST_SPEED, as crane
// (go-containerregistry) writes layers. On binaries and text it is 3 to 4 times as fast as
// zlib's default level 6 for about 10 % more bytes (a tar of /usr/lib: ratio 0.339 at 82 MB/s
// against 0.306 at 24 MB/s, one core). A part that does not compress (a stretch whose bytes look
// random: already-compressed files, encrypted data) is written as stored deflate blocks; zlib
// would spend ten times the CPU of a copy finding nothing to gain.
constexpr int kGzipLevel = Z_BEST_SPEED;
// The stream is compressed in blocks of this size (the last one shorter), whatever the sizes
// the tar stream reads return, so that the level chosen per part, and thus the blob and its
// digest, depend on the layer's bytes only.
constexpr size_t kCompressBlock = 1u << 20;
// ... each decided part by part.
constexpr size_t kEntropyPart = 64u << 10;
// Order-0 entropy (bits per byte) from which a part is stored: deflate's Huffman coding cannot
// gain more than (8 - H) / 8 on it without long matches, 2 % at 7.85.
constexpr double kStoreEntropy = 7.85;

// The order-0 entropy of p[0..n), in bits per byte, estimated from every 4th byte.
double sampled_entropy(const unsigned char* p, size_t n) {
  uint32_t count[256] = {};
  size_t samples = 0;
  for (size_t i = 0; i < n; i += 4, samples++) count[p[i]]++;
  if (samples == 0) return 0;
  double h = 0, total = static_cast<double>(samples);
  for (uint32_t c : count)
    if (c) {
      double q = c / total;
      h -= q * std::log2(q);
    }
  return h;
}

// A layer's verified tar stream, compressed on the fly; the compressed bytes are hashed and
// counted as they are handed out, so the digest is known when the stream ends.
class CompressingReader {
 public:
  CompressingReader(rolayer_layer* layer, std::string compression, BlobBars* bars, size_t bar,
                    const std::atomic<bool>* cancel)
      : compression_(std::move(compression)), bars_(bars), bar_(bar), cancel_(cancel), in_(kCompressBlock) {
    rolayer_tar_stream* s = nullptr;
    Err err;
    int rc = rolayer_tar_stream_open(&s, layer, err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, std::string("push ") + rolayer_layer_chain_id(layer));
    stream_.reset(s);
    chain_id_ = rolayer_layer_chain_id(layer);
    if (compression_ == "gzip") {
      std::memset(&z_, 0, sizeof z_);
      // windowBits 15 + 16: a gzip wrapper (mtime 0, no name), as Docker and containers/image.
      if (deflateInit2(&z_, kGzipLevel, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        throw CliError(kFailure, "cannot initialise gzip");
      z_init_ = true;
      level_ = kGzipLevel;
    } else if (compression_ == "zstd") {
      zc_ = ZSTD_createCCtx();
      if (!zc_) throw CliError(kFailure, "cannot initialise zstd");
      ZSTD_CCtx_setParameter(zc_, ZSTD_c_compressionLevel, 3);
    }
  }
  ~CompressingReader() {
    if (z_init_) deflateEnd(&z_);
    if (zc_) ZSTD_freeCCtx(zc_);
  }

  size_t read(char* buf, size_t cap) {
    while (out_pos_ == out_.size() && !done_) refill();
    size_t k = std::min(cap, out_.size() - out_pos_);
    std::memcpy(buf, out_.data() + out_pos_, k);
    out_pos_ += k;
    return k;
  }
  std::string digest() {
    if (digest_.empty()) digest_ = hash_.finish();
    return digest_;
  }
  uint64_t size() const { return size_; }

 private:
  void refill() {
    check_interrupted();
    if (*cancel_) throw CliError(kInterrupted, "cancelled");
    out_.clear();
    out_pos_ = 0;
    size_t n = 0;
    // A whole block (kCompressBlock) unless the stream ends.
    while (!in_eof_ && n < in_.size()) {
      Err err;
      size_t got = 0;
      int rc = rolayer_tar_stream_read(stream_.get(), in_.data() + n, in_.size() - n, &got, err.out());
      if (rc != ROLAYER_OK) lib_fail(rc, err, "push " + chain_id_);
      if (got == 0) in_eof_ = true;
      bars_->add(bar_, got);
      n += got;
      if (compression_ != "gzip") break;  // zstd and none do not depend on the read sizes
    }
    if (compression_ == "gzip") {
      const auto* in = reinterpret_cast<const unsigned char*>(in_.data());
      for (size_t off = 0; off < n; off += kEntropyPart) {
        size_t k = std::min(kEntropyPart, n - off);
        set_level(sampled_entropy(in + off, k) >= kStoreEntropy ? 0 : kGzipLevel);
        deflate_some(in + off, k, Z_NO_FLUSH);
      }
      if (in_eof_) {
        deflate_some(nullptr, 0, Z_FINISH);
        done_ = true;
      }
    } else if (compression_ == "zstd") {
      ZSTD_inBuffer ib{in_.data(), n, 0};
      ZSTD_EndDirective mode = in_eof_ ? ZSTD_e_end : ZSTD_e_continue;
      for (;;) {
        char tmp[1 << 16];
        ZSTD_outBuffer ob{tmp, sizeof tmp, 0};
        size_t left = ZSTD_compressStream2(zc_, &ob, &ib, mode);
        if (ZSTD_isError(left)) throw CliError(kFailure, std::string("zstd compression failed: ") + ZSTD_getErrorName(left));
        out_.append(tmp, ob.pos);
        if (mode == ZSTD_e_end ? left == 0 : ib.pos == ib.size) break;
      }
      if (in_eof_) done_ = true;
    } else {
      out_.assign(in_.data(), n);
      if (in_eof_) done_ = true;
    }
    hash_.update(out_.data(), out_.size());
    size_ += out_.size();
  }

  // Feeds p[0..n) to deflate and appends what comes out (flush Z_FINISH: to the end of the stream).
  void deflate_some(const unsigned char* p, size_t n, int flush) {
    z_.next_in = const_cast<Bytef*>(p);
    z_.avail_in = static_cast<uInt>(n);
    for (;;) {
      char tmp[1 << 16];
      z_.next_out = reinterpret_cast<Bytef*>(tmp);
      z_.avail_out = sizeof tmp;
      int r = deflate(&z_, flush);
      if (r == Z_STREAM_ERROR) throw CliError(kFailure, "gzip compression failed");
      out_.append(tmp, sizeof tmp - z_.avail_out);
      if (flush == Z_FINISH ? r == Z_STREAM_END : (z_.avail_in == 0 && z_.avail_out != 0)) break;
    }
  }
  // Switches deflate's level (0: stored blocks); what came before is compressed at the old one.
  void set_level(int level) {
    if (level == level_) return;
    for (;;) {
      char tmp[1 << 16];
      z_.next_out = reinterpret_cast<Bytef*>(tmp);
      z_.avail_out = sizeof tmp;
      int r = deflateParams(&z_, level, Z_DEFAULT_STRATEGY);
      out_.append(tmp, sizeof tmp - z_.avail_out);
      if (r == Z_OK) break;
      if (r != Z_BUF_ERROR) throw CliError(kFailure, "gzip compression failed (deflateParams)");
    }
    level_ = level;
  }

  std::string compression_;
  int level_ = 0;
  BlobBars* bars_;
  size_t bar_;
  const std::atomic<bool>* cancel_;
  std::unique_ptr<rolayer_tar_stream, StreamDeleter> stream_;
  std::string chain_id_;
  std::vector<char> in_;
  std::string out_;
  size_t out_pos_ = 0;
  bool in_eof_ = false, done_ = false;
  z_stream z_;
  bool z_init_ = false;
  ZSTD_CCtx* zc_ = nullptr;
  Hasher hash_;
  uint64_t size_ = 0;
  std::string digest_;
};

// The OCI media type for a recorded descriptor's blob (Docker's names map to OCI's; the
// bytes are the same). "" when the blob cannot be reused (foreign layers).
std::string oci_layer_type(const std::string& mt) {
  if (mt == "application/vnd.docker.image.rootfs.diff.tar.gzip" || mt == kMtLayerGzip) return kMtLayerGzip;
  if (mt == "application/vnd.docker.image.rootfs.diff.tar.zstd" || mt == kMtLayerZstd) return kMtLayerZstd;
  if (mt == "application/vnd.docker.image.rootfs.diff.tar" || mt == kMtLayerTar) return kMtLayerTar;
  return {};
}


}  // namespace

int cmd_push(Globals& g, const Args& args) {
  auto p = parse_args("push", args,
                      {{"compression", 0, true}, {"from-repo", 0, true}, {"jobs", 'j', true}, {"platform", 0, true}, {"insecure", 0, false},
                       {"cert-dir", 0, true}, {"ca-file", 0, true}, {"retries", 0, true}},
                      g);
  if (p.help) return print_command_help(*find_command("push")), 0;
  if (p.positionals.size() != 2) usage_error("push: needs CHAINID and an image reference");
  std::string compression = p.get("compression", "gzip");
  if (compression != "gzip" && compression != "zstd" && compression != "none")
    usage_error("push: --compression is gzip, zstd or none, not \"" + compression + "\"");
  Reference ref = parse_reference(p.positionals[1]);
  std::string from_repo;
  if (p.has("from-repo")) {
    // A repository of the same registry: "path/name", or written with the registry host.
    std::string f = p.get("from-repo");
    if (f.rfind(ref.domain + "/", 0) == 0) f = f.substr(ref.domain.size() + 1);
    Reference fr = parse_reference(ref.domain + "/" + f);
    if (fr.domain != ref.domain || fr.tag != "latest" || !fr.digest.empty())
      usage_error("push: --from-repo needs a repository of the same registry (" + ref.domain + "), without a tag");
    from_repo = fr.repository;
  }
  Platform plat = p.has("platform") ? parse_platform(p.get("platform")) : Platform{"linux", host_arch(), "", false};
  TransportOptions topts = transport_options(p);
  // dockerd's max-concurrent-uploads: with one more layer than jobs, the last one would be
  // compressed alone while the other cores idle.
  int jobs = parse_jobs(p, 5);

  StorePtr store = open_store(g);
  // An image kept in the store (by pull) is pushed with its own config and, when the registry
  // has (or gets by mount) its original blobs, its own manifest: the same digests.
  std::string top;
  std::optional<StoredImage> image = find_image(store.get(), p.positionals[0], &top);
  int64_t total = 0;
  std::vector<Layer> chain = open_chain(store.get(), top, &total);

  Registry reg(ref, topts, "pull,push", from_repo.empty() ? std::vector<std::string>{} : std::vector<std::string>{from_repo});
  reg.ping();
  BlobBars bars(progress_enabled(g));
  std::vector<size_t> bar;
  for (size_t i = 0; i < chain.size(); i++) {
    int64_t sz = 0;
    rolayer_layer_stream_size(&sz, chain[i].get(), nullptr);
    bar.push_back(bars.add_bar("layer " + std::to_string(i + 1) + "/" + std::to_string(chain.size()) + " " +
                                   short_id(rolayer_layer_chain_id(chain[i].get())),
                               sz));
  }
  json layers = json::array(), diff_ids = json::array();
  if (image && image->layers.size() != chain.size()) image.reset();  // not this chain's manifest
  for (size_t i = 0; i < chain.size(); i++) diff_ids.push_back(rolayer_layer_diff_id(chain[i].get()));
  // Layers are pushed in parallel (--jobs at once): each is independent.
  std::vector<json> descs(chain.size());
  std::atomic<bool> cancel{false}, all_original{image.has_value()};
  std::atomic<uint64_t> uploaded_total{0};
  auto push_layer = [&](size_t i) {
    rolayer_layer* l = chain[i].get();
    int64_t sz = 0;
    rolayer_layer_stream_size(&sz, l, nullptr);
    // 0. The image's own blob for this layer.
    if (image) {
      const Descriptor& d = image->layers[i];
      bool have = reg.has_blob(d.digest);
      if (!have && !from_repo.empty()) have = reg.mount_blob(d.digest, from_repo);
      if (have) {
        descs[i] = json{{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
        bars.add(bar[i], static_cast<uint64_t>(std::max<int64_t>(0, sz)));
        bars.set_status(bar[i], std::string("exists as ") + short_id(d.digest));
        return;
      }
    }
    all_original = false;
    // 1. The blob the layer came from, when the registry has it (or can mount it).
    const char* dmt = rolayer_layer_descriptor_media_type(l);
    const char* dd = rolayer_layer_descriptor_digest(l);
    int64_t ds = rolayer_layer_descriptor_size(l);
    std::string mt = dmt ? oci_layer_type(dmt) : "";
    if (dd && ds >= 0 && !mt.empty()) {
      bool have = reg.has_blob(dd);
      if (!have && !from_repo.empty()) have = reg.mount_blob(dd, from_repo);
      if (have) {
        descs[i] = json{{"mediaType", mt}, {"digest", dd}, {"size", ds}};
        bars.add(bar[i], static_cast<uint64_t>(std::max<int64_t>(0, sz)));
        bars.set_status(bar[i], std::string("exists as ") + short_id(dd));
        return;
      }
    }
    // 2. Compressed on the fly and uploaded; a dropped upload starts over (the compression is
    //    deterministic, so the digest is the same).
    for (int attempt = 0;; attempt++) {
      CompressingReader cr(l, compression, &bars, bar[i], &cancel);
      try {
        reg.upload_blob([&](char* b, size_t cap) { return cr.read(b, cap); }, [&] { return cr.digest(); });
      } catch (const CliError& e) {
        if (e.code() != kNetwork || attempt >= topts.retries || cancel) throw;
        bars.set_status(bar[i], "retrying");
        continue;
      }
      uploaded_total += cr.size();
      std::string lmt = compression == "gzip" ? kMtLayerGzip : compression == "zstd" ? kMtLayerZstd : kMtLayerTar;
      descs[i] = json{{"mediaType", lmt}, {"digest", cr.digest()}, {"size", cr.size()}};
      bars.set_status(bar[i], "pushed " + short_id(cr.digest()) + " (" + human_bytes(static_cast<int64_t>(cr.size())) + ")");
      return;
    }
  };
  {
    std::mutex mu;
    size_t next = 0;
    std::vector<std::optional<CliError>> errors(chain.size());
    auto worker = [&] {
      for (;;) {
        size_t i;
        {
          std::lock_guard<std::mutex> gl(mu);
          if (next >= chain.size() || cancel) return;
          i = next++;
        }
        try {
          push_layer(i);
        } catch (const CliError& e) {
          errors[i] = e;
          cancel = true;
        } catch (const std::exception& e) {
          errors[i] = CliError(kFailure, e.what());
          cancel = true;
        }
      }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < jobs && static_cast<size_t>(t) < chain.size(); t++) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    check_interrupted();
    // The first real error (not a cancellation caused by another layer's failure).
    for (auto& e : errors)
      if (e && !(e->code() == kInterrupted && std::string(e->what()) == "cancelled")) {
        bars.finish();
        throw *e;
      }
  }
  for (auto& d : descs) layers.push_back(d);
  bool same_layers = all_original;
  uint64_t uploaded = uploaded_total;
  bars.finish();
  // The config and manifest: the image's own, else as export-image writes them.
  std::string config_data, config_mt = kMtOciConfig;
  if (image) {
    config_data = image->config;
    if (!image->config_desc.media_type.empty()) config_mt = image->config_desc.media_type;
  } else {
    json config = {{"architecture", plat.arch}, {"os", plat.os}, {"config", json::object()},
                   {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    if (!plat.variant.empty()) config["variant"] = plat.variant;
    config_data = config.dump();
  }
  std::string config_digest = Hasher::digest_of(config_data);
  if (!reg.has_blob(config_digest)) reg.upload_small_blob(config_data, config_digest);
  std::string manifest_data, manifest_mt = kMtOciManifest;
  if (image && same_layers) {
    manifest_data = image->manifest;
    manifest_mt = image->manifest_media_type;
  } else {
    // The OCI config media type names the same JSON as Docker's.
    if (config_mt == kMtDockerConfig) config_mt = kMtOciConfig;
    json manifest = {{"schemaVersion", 2},
                     {"mediaType", kMtOciManifest},
                     {"config", {{"mediaType", config_mt}, {"digest", config_digest}, {"size", config_data.size()}}},
                     {"layers", layers}};
    manifest_data = manifest.dump();
  }
  std::string digest = reg.put_manifest(ref.reference(), manifest_mt, manifest_data);
  if (!g.quiet) std::fprintf(stderr, "pushed %s: %s of layer data uploaded\n", ref.str().c_str(), human_bytes(static_cast<int64_t>(uploaded)).c_str());
  std::printf("%s\n", digest.c_str());
  if (std::fflush(stdout) != 0) sys_fail("write standard output");
  return kOk;
}

// --- login ------------------------------------------------------------------------------------

int cmd_login(Globals& g, const Args& args) {
  auto p = parse_args("login", args,
                      {{"username", 'u', true}, {"password", 'p', true}, {"password-stdin", 0, false}, {"insecure", 0, false},
                       {"cert-dir", 0, true}, {"ca-file", 0, true}},
                      g);
  if (p.help) return print_command_help(*find_command("login")), 0;
  if (p.positionals.size() != 1) usage_error("login: needs exactly one registry host");
  std::string host = p.positionals[0];
  for (const char* prefix : {"https://", "http://"})
    if (host.rfind(prefix, 0) == 0) host = host.substr(std::strlen(prefix));
  while (!host.empty() && host.back() == '/') host.pop_back();
  if (host == "index.docker.io" || host == "registry-1.docker.io") host = "docker.io";
  Reference ref = parse_reference(host + "/x", "latest");
  if (ref.domain != host) usage_error("login: \"" + p.positionals[0] + "\" is not a registry host");
  TransportOptions topts = transport_options(p);
  topts.username = p.get("username");
  if (topts.username.empty()) usage_error("login: needs --username");
  if (p.has("password-stdin")) {
    std::string line;
    std::getline(std::cin, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    topts.password = line;
  } else if (p.has("password")) {
    topts.password = p.get("password");
  } else {
    usage_error("login: needs --password-stdin (or --password)");
  }
  ref.repository.clear();
  Registry reg(ref, topts, "");
  reg.ping();  // authenticates with these credentials: a refusal is an error (exit 7)
  // Saved as Docker does: auths[HOST].auth = base64(user:password), in a file only the user reads.
  std::string file = login_auth_file();
  json j = json::object();
  if (path_exists(file)) {
    try {
      std::string text = read_file(file, 4u << 20);
      check_json_depth(text, file);
      j = json::parse(text);
    } catch (const json::exception& e) {
      throw CliError(kBadInput, file + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw CliError(kBadInput, file + ": not a JSON object");
  }
  if (!j.contains("auths") || !j["auths"].is_object()) j["auths"] = json::object();
  j["auths"][host] = json{{"auth", base64_encode(topts.username + ":" + topts.password)}};
  std::string dir = dirname_of(file);
  mkdirs(dir, 0700);
  std::string tmp = dir + "/." + basename_of(file) + ".rolayer-XXXXXX";
  std::vector<char> t(tmp.begin(), tmp.end());
  t.push_back('\0');
  int fd = ::mkostemp(t.data(), O_CLOEXEC);  // mode 0600
  if (fd < 0) sys_fail("create a temporary file in " + dir);
  std::string text = j.dump(1, '\t') + "\n";
  try {
    write_all(fd, text.data(), text.size(), t.data());
    if (::fsync(fd) != 0) sys_fail("fsync " + std::string(t.data()));
  } catch (...) {
    ::close(fd);
    ::unlink(t.data());
    throw;
  }
  ::close(fd);
  if (::rename(t.data(), file.c_str()) != 0) {
    ::unlink(t.data());
    sys_fail("rename to " + file);
  }
  if (!g.quiet) std::fprintf(stderr, "login succeeded: credentials for %s saved in %s\n", host.c_str(), file.c_str());
  return kOk;
}

}  // namespace cli
