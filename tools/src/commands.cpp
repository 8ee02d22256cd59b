// SPDX-License-Identifier: Apache-2.0
#include "commands.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "args.h"
#include "blob.h"
#include "progress.h"
#include "registry_cmds.h"
#include "text.h"

namespace cli {

using nlohmann::json;

bool progress_enabled(const Globals& g) { return !g.quiet && stderr_is_terminal(); }

void retain_once(rolayer_store* store, const std::string& chain_id) {
  Err err;
  int64_t n = 0;
  int rc = rolayer_store_retained(&n, store, chain_id.c_str(), err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "retain " + chain_id);
  if (n > 0) return;
  rc = rolayer_store_retain(store, chain_id.c_str(), err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "retain " + chain_id);
}

namespace {

// Human output: text from the store (names, media types, metadata, messages) is escaped
// (term_safe) so that no control character reaches a terminal raw.
void print_line(const std::string& s);
void print_text(const std::string& s);

void print_line(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
}

void print_text(const std::string& s) { print_line(term_safe(s)); }

void flush_stdout() {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) sys_fail("write standard output");
}

struct StreamDeleter {
  void operator()(rolayer_tar_stream* s) const { rolayer_tar_stream_free(s); }
};
using StreamPtr = std::unique_ptr<rolayer_tar_stream, StreamDeleter>;

// Copies a tar stream to out (or nowhere when out is NULL), with progress.
void pump(rolayer_tar_stream* s, OutputFile* out, Progress& prog, const std::string& context) {
  std::vector<unsigned char> buf(1 << 20);
  for (;;) {
    check_interrupted();
    size_t n = 0;
    Err err;
    int rc = rolayer_tar_stream_read(s, buf.data(), buf.size(), &n, err.out());
    if (rc != ROLAYER_OK) {
      prog.clear();
      lib_fail(rc, err, context);
    }
    if (n == 0) break;
    if (out) out->write(buf.data(), n);
    prog.add(n);
  }
}

void refuse_terminal_stdout(const std::string& command, const std::string& out) {
  if ((out.empty() || out == "-") && ::isatty(STDOUT_FILENO))
    usage_error(command + ": refusing to write a tar stream to a terminal: use -o FILE or redirect standard output");
}

struct Info {
  std::string chain_id, diff_id, parent;
  int depth = 0;
  int64_t size = -1, diff_size = -1, stream_size = -1, retained = 0;
  std::string media_type, digest;
  int64_t desc_size = -1;
  bool has_descriptor = false;
  std::vector<std::pair<std::string, std::string>> metadata;
};

int64_t get_int(int (*fn)(int64_t*, const rolayer_layer*, rolayer_error**), const rolayer_layer* l, const char* what) {
  int64_t v = -1;
  Err err;
  int rc = fn(&v, l, err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, std::string(what) + " of " + rolayer_layer_chain_id(l));
  return v;
}

Info layer_info(rolayer_store* store, const Layer& layer, bool with_metadata) {
  const rolayer_layer* l = layer.get();
  Info i;
  i.chain_id = rolayer_layer_chain_id(l);
  i.diff_id = rolayer_layer_diff_id(l);
  if (const char* p = rolayer_layer_parent(l)) i.parent = p;
  i.depth = rolayer_layer_depth(l);
  i.size = get_int(rolayer_layer_size, l, "size");
  i.diff_size = get_int(rolayer_layer_diff_size, l, "diff size");
  i.stream_size = get_int(rolayer_layer_stream_size, l, "stream size");
  {
    Err err;
    int rc = rolayer_store_retained(&i.retained, store, i.chain_id.c_str(), err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, i.chain_id);
  }
  const char* mt = rolayer_layer_descriptor_media_type(l);
  const char* dg = rolayer_layer_descriptor_digest(l);
  i.desc_size = rolayer_layer_descriptor_size(l);
  if (mt || dg || i.desc_size >= 0) {
    i.has_descriptor = true;
    i.media_type = mt ? mt : "";
    i.digest = dg ? dg : "";
  }
  if (with_metadata) {
    rolayer_string_list* md = nullptr;
    Err err;
    int rc = rolayer_layer_metadata(&md, l, err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, "metadata of " + i.chain_id);
    size_t n = rolayer_string_list_count(md);
    for (size_t k = 0; k + 1 < n; k += 2)
      i.metadata.emplace_back(rolayer_string_list_get(md, k), rolayer_string_list_get(md, k + 1));
    rolayer_string_list_free(md);
  }
  return i;
}

json to_json(const Info& i) {
  json j;
  json_text(j, "chain_id", i.chain_id);
  json_text(j, "diff_id", i.diff_id);
  if (i.parent.empty())
    j["parent"] = nullptr;
  else
    json_text(j, "parent", i.parent);
  j["depth"] = i.depth;
  j["size"] = i.size;
  j["diff_size"] = i.diff_size;
  j["stream_size"] = i.stream_size;
  j["retained"] = i.retained;
  if (i.has_descriptor) {
    json d;
    if (i.media_type.empty())
      d["media_type"] = nullptr;
    else
      json_text(d, "media_type", i.media_type);
    if (i.digest.empty())
      d["digest"] = nullptr;
    else
      json_text(d, "digest", i.digest);
    d["size"] = i.desc_size >= 0 ? json(i.desc_size) : json(nullptr);
    j["descriptor"] = d;
  } else {
    j["descriptor"] = nullptr;
  }
  return j;
}

// Every layer's info, parents before children, then by ChainID.
std::vector<Info> all_infos(rolayer_store* store, bool with_metadata) {
  std::vector<Info> out;
  if (!with_metadata) {
    // One query for all (rolayer_store_layers): a handle per layer is a hold written and
    // removed in the store's database, minutes for a store of 100,000 layers.
    rolayer_layer_list* l = nullptr;
    Err err;
    int rc = rolayer_store_layers(&l, store, err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, "listing the store");
    std::unique_ptr<rolayer_layer_list, void (*)(rolayer_layer_list*)> list(l, rolayer_layer_list_free);
    size_t n = rolayer_layer_list_count(l);
    out.reserve(n);
    for (size_t k = 0; k < n; k++) {
      Info i;
      i.chain_id = rolayer_layer_list_chain_id(l, k);
      i.diff_id = rolayer_layer_list_diff_id(l, k);
      if (const char* p = rolayer_layer_list_parent(l, k)) i.parent = p;
      i.depth = rolayer_layer_list_depth(l, k);
      i.size = rolayer_layer_list_size(l, k);
      i.diff_size = rolayer_layer_list_diff_size(l, k);
      i.stream_size = rolayer_layer_list_stream_size(l, k);
      i.retained = rolayer_layer_list_retained(l, k);
      const char* mt = rolayer_layer_list_descriptor_media_type(l, k);
      const char* dg = rolayer_layer_list_descriptor_digest(l, k);
      i.desc_size = rolayer_layer_list_descriptor_size(l, k);
      if (mt || dg || i.desc_size >= 0) {
        i.has_descriptor = true;
        i.media_type = mt ? mt : "";
        i.digest = dg ? dg : "";
      }
      out.push_back(std::move(i));
    }
    std::sort(out.begin(), out.end(), [](const Info& a, const Info& b) {
      return a.depth != b.depth ? a.depth < b.depth : a.chain_id < b.chain_id;
    });
    return out;
  }
  for (const auto& id : list_chain_ids(store)) {
    rolayer_layer* l = nullptr;
    Err err;
    int rc = rolayer_open(&l, store, id.c_str(), err.out());
    if (rc == ROLAYER_ENOTFOUND) continue;
    if (rc != ROLAYER_OK) lib_fail(rc, err, id);
    Layer layer(l);
    out.push_back(layer_info(store, layer, with_metadata));
  }
  std::sort(out.begin(), out.end(), [](const Info& a, const Info& b) {
    return a.depth != b.depth ? a.depth < b.depth : a.chain_id < b.chain_id;
  });
  return out;
}

void print_table(std::vector<std::vector<std::string>> rows) {
  for (auto& r : rows)
    for (auto& c : r) c = term_safe(c);
  std::vector<size_t> w;
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size(); c++) {
      if (w.size() <= c) w.push_back(0);
      w[c] = std::max(w[c], r[c].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t c = 0; c < r.size(); c++) {
      line += r[c];
      if (c + 1 < r.size()) line += std::string(w[c] - r[c].size() + 3, ' ');
    }
    print_line(line);
  }
}

int64_t file_size_or_unknown(int fd) {
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) return st.st_size;
  return -1;
}

size_t count_children(rolayer_store* store, const std::string& chain_id) {
  size_t n = 0;
  for (const auto& id : list_chain_ids(store)) {
    rolayer_layer* l = nullptr;
    if (rolayer_open(&l, store, id.c_str(), nullptr) != ROLAYER_OK) continue;
    Layer layer(l);
    const char* p = rolayer_layer_parent(l);
    if (p && chain_id == p) n++;
  }
  return n;
}

}  // namespace

// --- register ---------------------------------------------------------------------------------

int cmd_register(Globals& g, const Args& args) {
  auto p = parse_args("register", args, {{"parent", 'p', true}}, g);
  if (p.help) return print_command_help(*find_command("register")), 0;
  if (p.positionals.size() > 1) usage_error("register: takes one FILE (or - for standard input)");
  std::string input = p.positionals.empty() ? "-" : p.positionals[0];
  if (input == "-" && ::isatty(STDIN_FILENO))
    usage_error("register: refusing to read a layer from a terminal: give FILE or pipe the tar into standard input");

  std::unique_ptr<FdSource> src;
  std::string name;
  if (input == "-") {
    src = std::make_unique<FdSource>(STDIN_FILENO, false, "standard input");
    name = "standard input";
  } else {
    if (is_directory(input)) usage_error("register: " + input + " is a directory, not a tar file");
    src = FdSource::open_file(input);
    name = input;
  }
  StorePtr store = open_store(g);
  std::string parent = p.has("parent") ? resolve_chain_id(store.get(), p.get("parent")) : std::string();

  Progress prog(progress_enabled(g), "register", file_size_or_unknown(src->fd()));
  LayerReader reader(*src, name, &prog, nullptr);
  Layer layer = register_layer(store.get(), parent, reader, nullptr, "register " + name);
  std::string chain = rolayer_layer_chain_id(layer.get());
  retain_once(store.get(), chain);
  layer.reset();
  prog.clear();
  print_line(chain);
  flush_stdout();
  return kOk;
}

// --- export / diff ----------------------------------------------------------------------------

int cmd_export(Globals& g, const Args& args) {
  auto p = parse_args("export", args, {{"output", 'o', true}}, g);
  if (p.help) return print_command_help(*find_command("export")), 0;
  if (p.positionals.size() != 1) usage_error("export: needs exactly one CHAINID");
  std::string out_path = p.get("output");
  refuse_terminal_stdout("export", out_path);

  StorePtr store = open_store(g);
  std::string id = resolve_chain_id(store.get(), p.positionals[0]);
  Layer layer = open_layer(store.get(), id);
  int64_t size = get_int(rolayer_layer_stream_size, layer.get(), "stream size");
  rolayer_tar_stream* s = nullptr;
  Err err;
  int rc = rolayer_tar_stream_open(&s, layer.get(), err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "export " + id);
  StreamPtr stream(s);

  OutputFile out(out_path);
  Progress prog(progress_enabled(g), "export " + short_id(id), size);
  pump(stream.get(), &out, prog, "export " + id);
  stream.reset();
  out.commit();
  prog.clear();
  return kOk;
}

int cmd_diff(Globals& g, const Args& args) {
  auto p = parse_args("diff", args, {{"from", 0, true}, {"output", 'o', true}}, g);
  if (p.help) return print_command_help(*find_command("diff")), 0;
  if (p.positionals.size() != 1) usage_error("diff: needs exactly one CHAINID");
  std::string out_path = p.get("output");
  refuse_terminal_stdout("diff", out_path);

  StorePtr store = open_store(g);
  std::string id = resolve_chain_id(store.get(), p.positionals[0]);
  std::string from = p.has("from") ? resolve_chain_id(store.get(), p.get("from")) : std::string();
  Layer layer = open_layer(store.get(), id);
  rolayer_tar_stream* s = nullptr;
  Err err;
  int rc = rolayer_tar_stream_open_from(&s, layer.get(), from.empty() ? nullptr : from.c_str(), err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "diff " + id);
  StreamPtr stream(s);

  OutputFile out(out_path);
  Progress prog(progress_enabled(g), "diff " + short_id(id), -1);
  pump(stream.get(), &out, prog, "diff " + id);
  stream.reset();
  out.commit();
  prog.clear();
  return kOk;
}

// --- ls / inspect -----------------------------------------------------------------------------

int cmd_ls(Globals& g, const Args& args) {
  auto p = parse_args("ls", args, {{"json", 0, false}, {"no-trunc", 0, false}}, g);
  if (p.help) return print_command_help(*find_command("ls")), 0;
  if (!p.positionals.empty()) usage_error("ls: takes no arguments");
  StorePtr store = open_store(g);
  auto infos = all_infos(store.get(), false);
  if (p.has("json")) {
    // Streamed element by element, the same text as json_dump of the whole array: 100,000
    // layers as one JSON value took hundreds of MiB.
    if (infos.empty()) {
      print_line("[]");
    } else {
      std::fputs("[\n", stdout);
      for (size_t k = 0; k < infos.size(); k++) {
        std::string e = json_dump(to_json(infos[k]));
        std::fputs("  ", stdout);
        for (char c : e) {
          std::fputc(c, stdout);
          if (c == '\n') std::fputs("  ", stdout);
        }
        print_line(k + 1 < infos.size() ? "," : "");
      }
      print_line("]");
    }
  } else {
    bool full = p.has("no-trunc");
    auto idf = [&](const std::string& s) { return s.empty() ? std::string("-") : full ? s : short_id(s); };
    std::vector<std::vector<std::string>> rows{{"CHAIN ID", "DIFF ID", "PARENT", "DEPTH", "SIZE", "DIFF SIZE", "RETAINED"}};
    for (const auto& i : infos)
      rows.push_back({idf(i.chain_id), idf(i.diff_id), idf(i.parent), std::to_string(i.depth), human_bytes(i.size),
                      human_bytes(i.diff_size), i.retained > 0 ? "yes" : "-"});
    print_table(rows);
  }
  flush_stdout();
  return kOk;
}

int cmd_inspect(Globals& g, const Args& args) {
  auto p = parse_args("inspect", args, {{"json", 0, false}}, g);
  if (p.help) return print_command_help(*find_command("inspect")), 0;
  if (p.positionals.size() != 1) usage_error("inspect: needs exactly one CHAINID");
  StorePtr store = open_store(g);
  std::string id = resolve_chain_id(store.get(), p.positionals[0]);
  Layer layer = open_layer(store.get(), id);
  Info i = layer_info(store.get(), layer, true);
  layer.reset();

  // The chain, base first, and the children.
  std::vector<std::string> chain;
  for (std::string c = i.chain_id; !c.empty();) {
    chain.push_back(c);
    Layer l = open_layer(store.get(), c);
    const char* par = rolayer_layer_parent(l.get());
    c = par ? par : "";
  }
  std::reverse(chain.begin(), chain.end());
  std::vector<std::string> children;
  for (const auto& other : list_chain_ids(store.get())) {
    rolayer_layer* l = nullptr;
    if (rolayer_open(&l, store.get(), other.c_str(), nullptr) != ROLAYER_OK) continue;
    Layer h(l);
    const char* par = rolayer_layer_parent(l);
    if (par && i.chain_id == par) children.push_back(other);
  }
  std::sort(children.begin(), children.end());

  if (p.has("json")) {
    json j = to_json(i);
    json md = json::object();
    for (const auto& [k, v] : i.metadata) json_text(md, k, v);
    j["metadata"] = md;
    j["chain"] = chain;
    j["children"] = children;
    json_text(j, "driver", rolayer_store_driver(store.get()));
    print_line(json_dump(j));
  } else {
    auto bytes = [](int64_t n) { return human_bytes(n) + " (" + std::to_string(n) + " bytes)"; };
    print_text("ChainID:      " + i.chain_id);
    print_text("DiffID:       " + i.diff_id);
    print_text("Parent:       " + (i.parent.empty() ? std::string("(none: a base layer)") : i.parent));
    print_text("Depth:        " + std::to_string(i.depth));
    print_text("Size:         " + bytes(i.size));
    print_text("DiffSize:     " + bytes(i.diff_size));
    print_text("StreamSize:   " + bytes(i.stream_size));
    print_text("Retained:     " + std::to_string(i.retained));
    if (i.has_descriptor)
      print_text("Descriptor:   " + (i.media_type.empty() ? std::string("-") : i.media_type) + " " +
                 (i.digest.empty() ? std::string("-") : i.digest) +
                 (i.desc_size >= 0 ? " (" + std::to_string(i.desc_size) + " bytes)" : std::string()));
    else
      print_text("Descriptor:   (none)");
    print_text("Driver:       " + std::string(rolayer_store_driver(store.get())));
    for (const auto& [k, v] : i.metadata) print_text("  " + k + ": " + v);
    print_text("Chain (base first):");
    for (const auto& c : chain) print_text("  " + c);
    print_text("Children:     " + (children.empty() ? std::string("(none)") : std::to_string(children.size())));
    for (const auto& c : children) print_text("  " + c);
  }
  flush_stdout();
  return kOk;
}

// --- gc ---------------------------------------------------------------------------------------

int cmd_gc(Globals& g, const Args& args) {
  auto p = parse_args("gc", args, {}, g);
  if (p.help) return print_command_help(*find_command("gc")), 0;
  if (!p.positionals.empty()) usage_error("gc: takes no arguments");
  StorePtr store = open_store(g);
  rolayer_removed* removed = nullptr;
  Err err;
  int rc = rolayer_store_gc(&removed, store.get(), err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "gc");
  size_t n = rolayer_removed_count(removed);
  for (size_t k = 0; k < n; k++) print_line("removed " + std::string(rolayer_removed_chain_id(removed, k)));
  rolayer_removed_free(removed);
  flush_stdout();
  return kOk;
}

// --- rm ---------------------------------------------------------------------------------------

int cmd_rm(Globals& g, const Args& args) {
  auto p = parse_args("rm", args, {{"force", 'f', false}}, g);
  if (p.help) return print_command_help(*find_command("rm")), 0;
  if (p.positionals.empty()) usage_error("rm: needs at least one CHAINID");
  StorePtr store = open_store(g);
  int status = kOk;
  for (const auto& arg : p.positionals) {
    try {
      std::string id = resolve_chain_id(store.get(), arg);
      refuse_if_mounted(store.get(), id);
      // A kept image holds its top layer: rm would drop the image's reference and leave an image
      // whose layers are missing. rmi removes the image (and the layers with it).
      if (!p.has("force"))
        if (auto imgs = images_with_top(store.get(), id); !imgs.empty()) {
          std::string names;
          for (const auto& n : imgs) names += (names.empty() ? "" : ", ") + n;
          throw CliError(kUsage, id + " is the top layer of the kept image(s) " + names + ": remove the image(s) first with "
                                 "`rolayer rmi " + imgs[0] + "` (or rm --force to drop the layer's reference anyway)");
        }
      rolayer_removed* removed = nullptr;
      Err err;
      int rc = rolayer_store_unretain(&removed, store.get(), id.c_str(), err.out());
      if (rc == ROLAYER_ENOTFOUND) throw CliError(kNotFound, "no such layer: " + id);
      if (rc == ROLAYER_ENOTRETAINED) {
        size_t kids = count_children(store.get(), id);
        if (kids)
          throw CliError(kFailure, id + " is not retained: it stays while the " + std::to_string(kids) +
                                       " layer(s) on top of it exist; remove those instead");
        // No reference of its own (a register killed before it retained the layer, a handle
        // closed without a release): ask for its release. It goes now, or when the last live
        // process that holds it lets go.
        rolayer_layer* l = nullptr;
        Err oerr;
        int orc = rolayer_open(&l, store.get(), id.c_str(), oerr.out());
        if (orc == ROLAYER_ENOTFOUND) throw CliError(kNotFound, "no such layer: " + id);
        if (orc != ROLAYER_OK) lib_fail(orc, oerr, "rm " + id);
        Err rerr;
        rc = rolayer_release_ext(&removed, l, rerr.out());
        if (rc != ROLAYER_OK) lib_fail(rc, rerr, "rm " + id);
        size_t gone = rolayer_removed_count(removed);
        for (size_t k = 0; k < gone; k++) print_line("removed " + std::string(rolayer_removed_chain_id(removed, k)));
        rolayer_removed_free(removed);
        if (gone == 0)
          std::fprintf(stderr, "rolayer: released %s; kept: another process has it open (it goes when that "
                               "process lets go)\n", id.c_str());
        continue;
      }
      if (rc != ROLAYER_OK) lib_fail(rc, err, "rm " + id);
      size_t n = rolayer_removed_count(removed);
      for (size_t k = 0; k < n; k++)
        print_text("removed " + std::string(rolayer_removed_chain_id(removed, k)));
      rolayer_removed_free(removed);
      if (n == 0) {
        int64_t still = 0;
        rolayer_store_retained(&still, store.get(), id.c_str(), nullptr);
        size_t kids = count_children(store.get(), id);
        std::string why = kids ? "the parent of " + std::to_string(kids) + " layer(s)" : std::string();
        if (still > 0) why += std::string(why.empty() ? "" : "; ") + "retained " + std::to_string(still) + " more time(s)";
        std::fprintf(stderr, "rolayer: released %s; kept%s\n", term_safe(id).c_str(),
                     why.empty() ? "" : (": still " + why).c_str());
      }
    } catch (const CliError& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "rolayer: rm: %s\n", term_safe(e.what()).c_str());
      if (status == kOk) status = e.code();
      if (is_interruption(e.code())) break;
    }
  }
  flush_stdout();
  return status;
}

// --- verify -----------------------------------------------------------------------------------

int cmd_verify(Globals& g, const Args& args) {
  auto p = parse_args("verify", args, {{"json", 0, false}, {"jobs", 'j', true}}, g);
  if (p.help) return print_command_help(*find_command("verify")), 0;
  int jobs = default_jobs();
  if (p.has("jobs")) {
    const std::string js = p.get("jobs");  // one string that outlives strtol's end pointer
    char* end = nullptr;
    long v = std::strtol(js.c_str(), &end, 10);
    if (js.empty() || *end || v < 1 || v > 256) usage_error("verify: -j needs a number from 1 to 256");
    jobs = static_cast<int>(v);
  }
  StorePtr store = open_store(g);
  bool as_json = p.has("json");

  struct Target {
    std::string arg, id;
    int depth = 0;
    int64_t size = 0;
  };
  std::vector<Target> targets;
  bool damaged = false;  // exit 4 when any layer failed verification
  int other = kOk;       // else the first other failure's exit code
  json results = json::array();
  auto report_error = [&](const std::string& what, const CliError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "rolayer: verify: %s: %s\n", term_safe(what).c_str(), term_safe(e.what()).c_str());
    if (other == kOk) other = e.code();
  };

  std::vector<std::string> ids;
  if (p.positionals.empty()) {
    ids = list_chain_ids(store.get());
  } else {
    for (const auto& a : p.positionals) {
      try {
        ids.push_back(resolve_chain_id(store.get(), a));
      } catch (const CliError& e) {
        if (is_interruption(e.code())) throw;
        report_error(a, e);
      }
    }
  }
  int64_t total = 0;
  for (const auto& id : ids) {
    rolayer_layer* l = nullptr;
    Err err;
    int rc = rolayer_open(&l, store.get(), id.c_str(), err.out());
    if (rc != ROLAYER_OK) {
      report_error(id, CliError(exit_code_for(rc), err.message(rc)));
      continue;
    }
    Layer layer(l);
    Target t{id, id, rolayer_layer_depth(l), 0};
    rolayer_layer_stream_size(&t.size, l, nullptr);
    total += std::max<int64_t>(0, t.size);
    targets.push_back(t);
  }
  std::sort(targets.begin(), targets.end(), [](const Target& a, const Target& b) {
    return a.depth != b.depth ? a.depth < b.depth : a.id < b.id;
  });

  Progress prog(progress_enabled(g), "verify", total);
  size_t ok = 0, bad = 0;
  int64_t done = 0;
  // Layers are checked on up to `jobs` threads at once (the store and its layer handles are
  // safe to share: docs/threading.md), each with its own handle; results are reported here,
  // in the order of `targets`, as soon as each is in: the output is the same whatever -j.
  struct Outcome {
    bool ready = false;
    bool open_failed = false;
    CliError open_error{kOk, ""};
    int rc = ROLAYER_OK;
    std::string msg, path, diff_id;
    bool has_path = false;
  };
  std::vector<Outcome> outcomes(targets.size());
  std::mutex mu;
  std::condition_variable cv;
  size_t next = 0;
  bool stop = false;
  auto check_one = [&](size_t k, Outcome& o) {
    const auto& t = targets[k];
    Layer layer;
    try {
      layer = open_layer(store.get(), t.id);
    } catch (const CliError& e) {
      o.open_failed = true;
      o.open_error = e;
      return;
    }
    Err err;
    int rc;
    // rolayer_layer_verify, not a tar stream: it reads the files as mounts see them, and checks
    // a layer's payload pack (which a tar stream reads instead) against them. The progress bar
    // moves layer by layer.
    rc = rolayer_layer_verify(layer.get(), err.out());
    o.rc = rc;
    o.diff_id = rolayer_layer_diff_id(layer.get());
    if (rc != ROLAYER_OK) {
      o.msg = err.message(rc);
      if (const char* path = err.path()) {
        o.has_path = true;
        o.path = path;
      }
    }
  };
  auto worker = [&] {
    for (;;) {
      size_t k;
      {
        std::lock_guard<std::mutex> lk(mu);
        if (stop || next >= targets.size()) return;
        k = next++;
      }
      Outcome o;
      try {
        if (!interrupted()) check_one(k, o);
      } catch (const std::exception& e) {  // out of memory: reported for this layer
        o.open_failed = true;
        o.open_error = CliError(kFailure, std::string("internal error: ") + e.what());
      }
      std::lock_guard<std::mutex> lk(mu);
      outcomes[k] = std::move(o);
      outcomes[k].ready = true;
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < jobs && static_cast<size_t>(t) < targets.size(); t++) pool.emplace_back(worker);
  struct Joiner {
    std::vector<std::thread>& pool;
    std::mutex& mu;
    bool& stop;
    ~Joiner() {
      {
        std::lock_guard<std::mutex> lk(mu);
        stop = true;
      }
      for (auto& th : pool) th.join();
    }
  } joiner{pool, mu, stop};
  for (size_t k = 0; k < targets.size(); k++) {
    const auto& t = targets[k];
    Outcome o;
    {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return outcomes[k].ready; });
      o = std::move(outcomes[k]);
    }
    check_interrupted();
    prog.set_label("verify " + std::to_string(k + 1) + "/" + std::to_string(targets.size()));
    if (o.open_failed) {
      report_error(t.id, o.open_error);
      continue;
    }
    const int rc = o.rc;
    done += std::max<int64_t>(0, t.size);
    prog.set_done(done);
    const std::string& diff_id = o.diff_id;
    json r;
    json_text(r, "chain_id", t.id);
    json_text(r, "diff_id", diff_id);
    if (rc == ROLAYER_OK) {
      ok++;
      r["ok"] = true;
      r["error"] = nullptr;
      r["path"] = nullptr;
      if (!as_json) {
        prog.clear();
        print_text(t.id + "  ok");
      }
    } else {
      const std::string& msg = o.msg;
      const char* path = o.has_path ? o.path.c_str() : nullptr;
      r["ok"] = false;
      json_text(r, "error", msg);
      if (path)
        json_text(r, "path", path);
      else
        r["path"] = nullptr;
      bad++;
      if (rc == ROLAYER_EDIGEST || rc == ROLAYER_ECORRUPT) {
        damaged = true;
        if (!as_json) {
          prog.clear();
          print_text(t.id + "  DAMAGED" + (path ? std::string("  path ") + path : std::string()) + ": " + msg);
        }
      } else {
        if (other == kOk) other = exit_code_for(rc);
        if (!as_json) {
          prog.clear();
          print_text(t.id + "  ERROR: " + msg);
        }
      }
    }
    results.push_back(r);
  }
  prog.clear();
  if (as_json) print_line(json_dump(results));
  flush_stdout();
  if (!g.quiet)
    std::fprintf(stderr, "rolayer: verified %zu layer(s): %zu ok, %zu failed\n", ok + bad, ok, bad);
  return damaged ? kVerify : other;
}

}  // namespace cli
