// SPDX-License-Identifier: Apache-2.0
// rolayer docker verify | import: a Docker host's graphdriver layers, read offline through the
// public C API of include/rolayer/docker.h. See docs/cli.md.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "args.h"
#include "commands.h"
#include "progress.h"

namespace cli {

using nlohmann::json;

namespace {

struct DockerRootDeleter {
  void operator()(rolayer_docker_root* r) const { rolayer_docker_root_free(r); }
};
using DockerRootPtr = std::unique_ptr<rolayer_docker_root, DockerRootDeleter>;
struct DockerLayersDeleter {
  void operator()(rolayer_docker_layers* l) const { rolayer_docker_layers_free(l); }
};
using DockerLayersPtr = std::unique_ptr<rolayer_docker_layers, DockerLayersDeleter>;
struct TarStreamDeleter {
  void operator()(rolayer_tar_stream* s) const { rolayer_tar_stream_free(s); }
};
using TarStreamPtr = std::unique_ptr<rolayer_tar_stream, TarStreamDeleter>;
struct StringListDeleter {
  void operator()(rolayer_string_list* l) const { rolayer_string_list_free(l); }
};
using StringListPtr = std::unique_ptr<rolayer_string_list, StringListDeleter>;

const std::vector<OptSpec> kRootOpts = {{"data-root", 0, true}, {"storage-driver", 0, true}};

std::string data_root_of(const ParsedArgs& p) {
  if (p.has("data-root")) return p.get("data-root");
  if (const char* e = std::getenv("DOCKER_DATA_ROOT"); e && *e) return e;
  return "/var/lib/docker";
}

DockerRootPtr open_docker_root(const ParsedArgs& p) {
  std::string root = data_root_of(p);
  std::string drv = p.get("storage-driver");
  rolayer_docker_root* r = nullptr;
  Err err;
  int rc = rolayer_docker_root_open(&r, root.c_str(), drv.empty() ? nullptr : drv.c_str(), err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "docker data root " + root);
  return DockerRootPtr(r);
}

std::vector<std::string> resolve(rolayer_docker_root* root, const std::string& ref) {
  rolayer_string_list* l = nullptr;
  Err err;
  int rc = rolayer_docker_resolve(&l, root, ref.c_str(), err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, ref);
  StringListPtr list(l);
  std::vector<std::string> out;
  for (size_t i = 0; i < rolayer_string_list_count(l); i++) out.emplace_back(rolayer_string_list_get(l, i));
  return out;
}

bool is_damage(int rc) { return rc == ROLAYER_EDIGEST || rc == ROLAYER_ECORRUPT || rc == ROLAYER_EUNSAFE; }

void print_line(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
}

// --- verify ----------------------------------------------------------------------------------

struct Result {
  std::string chain_id, diff_id;
  bool done = false;
  int rc = ROLAYER_OK;
  std::string error, path;
};

int docker_verify(Globals& g, const Args& args) {
  auto opts = kRootOpts;
  opts.push_back({"json", 0, false});
  opts.push_back({"jobs", 'j', true});
  auto p = parse_args("docker verify", args, opts, g);
  if (p.help) return print_command_help(*find_command("docker")), 0;
  int jobs = default_jobs();
  if (p.has("jobs")) {
    // One string that outlives strtol's end pointer (p.get returns a temporary).
    const std::string js = p.get("jobs");
    char* end = nullptr;
    long v = std::strtol(js.c_str(), &end, 10);
    if (js.empty() || *end || v < 1 || v > 256) usage_error("docker verify: -j needs a number from 1 to 256");
    jobs = static_cast<int>(v);
  }
  bool as_json = p.has("json");
  install_signal_handlers();
  DockerRootPtr root = open_docker_root(p);

  std::vector<Result> results;
  int other = kOk;
  if (p.positionals.empty()) {
    rolayer_docker_layers* l = nullptr;
    Err err;
    int rc = rolayer_docker_layers_list(&l, root.get(), err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, "list the layers of " + data_root_of(p));
    DockerLayersPtr list(l);
    for (size_t i = 0; i < rolayer_docker_layers_count(l); i++) {
      Result r;
      r.chain_id = rolayer_docker_layers_chain_id(l, i);
      if (const char* d = rolayer_docker_layers_diff_id(l, i)) r.diff_id = d;
      if (const char* e = rolayer_docker_layers_error(l, i)) {
        r.done = true;
        r.rc = ROLAYER_ECORRUPT;
        r.error = e;
      }
      results.push_back(r);
    }
  } else {
    for (const auto& a : p.positionals) {
      std::vector<std::string> chain;
      try {
        chain = resolve(root.get(), a);
      } catch (const CliError& e) {
        std::fprintf(stderr, "rolayer: docker verify: %s\n", e.what());
        if (other == kOk) other = e.code();
        continue;
      }
      // A layer names itself only; an image (a name or an image ID) its whole chain.
      std::string hex = a.rfind("sha256:", 0) == 0 ? a.substr(7) : a;
      if (chain.back().compare(7, hex.size(), hex) == 0) chain = {chain.back()};
      for (const auto& c : chain) {
        if (std::any_of(results.begin(), results.end(), [&](const Result& r) { return r.chain_id == c; })) continue;
        Result r;
        r.chain_id = c;
        rolayer_docker_layers* l = nullptr;
        Err err;
        int rc = rolayer_docker_layers_get(&l, root.get(), c.c_str(), err.out());
        DockerLayersPtr list(l);
        if (rc == ROLAYER_OK) {
          r.diff_id = rolayer_docker_layers_diff_id(l, 0);
        } else {
          r.done = true;
          r.rc = rc;
          r.error = err.message(rc);
        }
        results.push_back(r);
      }
    }
  }

  // Workers take layers in order; the main thread draws the progress bar and prints results in
  // order as they complete.
  Progress prog(progress_enabled(g), "docker verify", -1);
  std::atomic<uint64_t> bytes{0};
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::condition_variable cv;
  size_t finished = 0;
  for (const auto& r : results) finished += r.done ? 1 : 0;
  auto work = [&] {
    std::vector<unsigned char> buf(1 << 20);
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= results.size()) return;
      {
        std::lock_guard<std::mutex> lk(mu);
        if (results[i].done) continue;
      }
      Err err;
      rolayer_tar_stream* s = nullptr;
      int rc = rolayer_docker_stream_open(&s, root.get(), results[i].chain_id.c_str(), err.out());
      TarStreamPtr stream(s);
      while (rc == ROLAYER_OK && !interrupted()) {
        size_t n = 0;
        rc = rolayer_tar_stream_read(s, buf.data(), buf.size(), &n, err.out());
        if (rc != ROLAYER_OK || n == 0) break;
        bytes += n;
      }
      std::lock_guard<std::mutex> lk(mu);
      Result& r = results[i];
      r.done = true;
      r.rc = rc;
      if (rc != ROLAYER_OK) {
        r.error = err.message(rc);
        if (const char* path = err.path()) r.path = path;
      }
      finished++;
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  size_t todo = results.size() - finished;
  for (int k = 0; k < jobs && static_cast<size_t>(k) < todo; k++) pool.emplace_back(work);

  size_t printed = 0, ok = 0, bad = 0;
  bool damaged = false;
  json out = json::array();
  auto emit = [&](const Result& r) {
    json j;
    j["chain_id"] = r.chain_id;
    j["diff_id"] = r.diff_id.empty() ? json(nullptr) : json(r.diff_id);
    j["ok"] = r.rc == ROLAYER_OK;
    j["error"] = r.rc == ROLAYER_OK ? json(nullptr) : json(r.error);
    j["path"] = r.path.empty() ? json(nullptr) : json(r.path);
    out.push_back(j);
    if (r.rc == ROLAYER_OK) {
      ok++;
      if (!as_json) print_line(r.chain_id + "  ok");
      return;
    }
    bad++;
    if (is_damage(r.rc)) {
      damaged = true;
      if (!as_json) print_line(r.chain_id + "  DAMAGED" + (r.path.empty() ? "" : "  path " + r.path) + ": " + r.error);
    } else {
      if (other == kOk) other = exit_code_for(r.rc);
      if (!as_json) print_line(r.chain_id + "  ERROR: " + r.error);
    }
  };
  {
    std::unique_lock<std::mutex> lk(mu);
    while (printed < results.size()) {
      cv.wait_for(lk, std::chrono::milliseconds(100));
      bool any = false;
      while (printed < results.size() && results[printed].done) {
        if (!any) prog.clear();
        any = true;
        emit(results[printed++]);
      }
      if (any) std::fflush(stdout);
      prog.set_label("docker verify " + std::to_string(finished) + "/" + std::to_string(results.size()));
      prog.set_done(static_cast<int64_t>(bytes.load()));
      if (interrupted()) break;
    }
  }
  for (auto& t : pool) t.join();
  prog.clear();
  check_interrupted();
  if (as_json) print_line(out.dump(2));
  if (std::fflush(stdout) != 0) sys_fail("write standard output");
  if (!g.quiet)
    std::fprintf(stderr, "rolayer: docker verify: %zu layer(s): %zu ok, %zu failed\n", ok + bad, ok, bad);
  return damaged ? kVerify : other;
}

// --- import ----------------------------------------------------------------------------------

// Feeds a Docker layer's verified stream to rolayer_register_ext, keeping the stream's own
// error (a damaged file, the DiffID) to report instead of the callback failure.
struct Feed {
  rolayer_tar_stream* s;
  Progress* prog;
  Err err;
  int rc = ROLAYER_OK;
};

int feed_read(void* buf, size_t cap, size_t* n_read, void* user_data) {
  auto* f = static_cast<Feed*>(user_data);
  if (interrupted()) return 2;
  int rc = rolayer_tar_stream_read(f->s, buf, cap, n_read, f->err.out());
  if (rc != ROLAYER_OK) {
    f->rc = rc;
    return 1;
  }
  f->prog->add(*n_read);
  return 0;
}

int docker_import(Globals& g, const Args& args) {
  auto p = parse_args("docker import", args, kRootOpts, g);
  if (p.help) return print_command_help(*find_command("docker")), 0;
  if (p.positionals.size() != 1) usage_error("docker import: needs exactly one IMAGE or CHAINID");
  const std::string ref = p.positionals[0];
  DockerRootPtr root = open_docker_root(p);
  std::vector<std::string> chain = resolve(root.get(), ref);

  struct Want {
    std::string chain_id, diff_id, media_type, digest;
    int64_t size = -1;
  };
  std::vector<Want> wants;
  for (const auto& c : chain) {
    rolayer_docker_layers* l = nullptr;
    Err err;
    int rc = rolayer_docker_layers_get(&l, root.get(), c.c_str(), err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, ref);
    DockerLayersPtr list(l);
    Want w;
    w.chain_id = c;
    w.diff_id = rolayer_docker_layers_diff_id(l, 0);
    if (const char* m = rolayer_docker_layers_descriptor_media_type(l, 0)) w.media_type = m;
    if (const char* d = rolayer_docker_layers_descriptor_digest(l, 0)) w.digest = d;
    w.size = rolayer_docker_layers_descriptor_size(l, 0);
    wants.push_back(w);
  }

  StorePtr store = open_store(g);
  Progress prog(progress_enabled(g), "docker import", -1);
  std::vector<Layer> held;  // released (newest first) on failure: what this import registered goes
  std::string parent;
  try {
    for (size_t i = 0; i < wants.size(); i++) {
      const Want& w = wants[i];
      prog.set_label("docker import " + std::to_string(i + 1) + "/" + std::to_string(wants.size()));
      rolayer_tar_stream* s = nullptr;
      Err err;
      int rc = rolayer_docker_stream_open(&s, root.get(), w.chain_id.c_str(), err.out());
      if (rc != ROLAYER_OK) lib_fail(rc, err, "docker layer " + w.chain_id);
      TarStreamPtr stream(s);
      Feed feed{s, &prog, {}, ROLAYER_OK};
      rolayer_register_options ro = ROLAYER_REGISTER_OPTIONS_INIT;
      if (!w.digest.empty()) {
        ro.descriptor_media_type = w.media_type.empty() ? nullptr : w.media_type.c_str();
        ro.descriptor_digest = w.digest.c_str();
        ro.descriptor_size = w.size;
      }
      rolayer_layer* l = nullptr;
      rc = rolayer_register_ext(&l, store.get(), parent.empty() ? nullptr : parent.c_str(), feed_read, &feed, &ro,
                                err.out());
      if (rc != ROLAYER_OK) {
        check_interrupted();
        if (feed.rc != ROLAYER_OK) lib_fail(feed.rc, feed.err, "docker layer " + w.chain_id);
        lib_fail(rc, err, "register docker layer " + w.chain_id);
      }
      held.emplace_back(l);
      std::string got = rolayer_layer_chain_id(l);
      if (got != w.chain_id || w.diff_id != rolayer_layer_diff_id(l))
        throw CliError(kVerify, "docker layer " + w.chain_id + ": registered as " + got + " (DiffID " +
                                    rolayer_layer_diff_id(l) + ", the layerdb says " + w.diff_id + ")");
      parent = got;
      prog.note("layer " + std::to_string(i + 1) + "/" + std::to_string(wants.size()) + "  " + parent);
    }
    retain_once(store.get(), parent);
  } catch (...) {
    prog.clear();
    while (!held.empty()) {
      Err ignored;
      held.back().release(ignored);
      held.pop_back();
    }
    throw;
  }
  held.clear();
  prog.clear();
  std::printf("%s\n", parent.c_str());
  if (std::fflush(stdout) != 0) sys_fail("write standard output");
  return kOk;
}

}  // namespace

int cmd_docker(Globals& g, const Args& args) {
  if (args.empty()) usage_error("docker: needs a subcommand: verify or import (see: rolayer docker --help)");
  Args rest(args.begin() + 1, args.end());
  if (args[0] == "verify") return docker_verify(g, rest);
  if (args[0] == "import") return docker_import(g, rest);
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") return print_command_help(*find_command("docker")), 0;
  usage_error("docker: no such subcommand: " + args[0] + " (verify or import)");
}

const char* const kDockerHelp =
    "usage: rolayer docker verify [--data-root DIR] [--json] [-j N] [CHAINID|IMAGE...]\n"
    "       rolayer docker import [--data-root DIR] IMAGE|CHAINID\n"
    "\n"
    "Reads a Docker engine's graphdriver layers (overlay2 or vfs) offline, without the\n"
    "daemon, and never writes under the data root (safe while dockerd runs). Each layer is\n"
    "reassembled from its tar-split record and the driver's files as `docker save` would,\n"
    "checking every file's size and CRC-64 and the DiffID.\n"
    "\n"
    "verify: one line per layer (all by default; an image name or ID means its chain), `ok`\n"
    "or `DAMAGED  path <path>: <what differs>`. Exit 0 when all passed, 4 when any layer is\n"
    "damaged.\n"
    "import: registers the image's (or the layer's) chain into the store, base first, straight\n"
    "from the host's data (no tar files), each checked against its DiffID and ChainID, with\n"
    "its descriptor.json; prints the top ChainID and keeps a reference on it.\n"
    "IMAGE: name[:tag] or name@digest from repositories.json, or an image ID (prefix).\n"
    "\n"
    "Options:\n"
    "  --data-root DIR        the Docker data root (default: $DOCKER_DATA_ROOT, else\n"
    "                         /var/lib/docker)\n"
    "  --storage-driver NAME  overlay2 or vfs (default: the one with a layer database)\n"
    "  --json                 verify: a JSON array of {chain_id, diff_id, ok, error, path}\n"
    "  -j, --jobs N           verify: layers checked in parallel (default: up to 4)\n";

}  // namespace cli
