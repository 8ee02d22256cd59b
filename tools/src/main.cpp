// SPDX-License-Identifier: Apache-2.0
// rolayer: the command-line tool of librolayer. See docs/cli.md.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "text.h"

#include "registry_cmds.h"

namespace cli {

namespace {

const char* kGlobalHelp =
    "usage: rolayer [GLOBAL OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "A read-only container-image layer store with verified, byte-exact tar streams.\n"
    "\n"
    "Commands:\n"
    "%s"
    "\n"
    "Global options (before or after the command):\n"
    "  --store DIR      the store (default: $ROLAYER_ROOT, else $XDG_DATA_HOME/rolayer,\n"
    "                   else ~/.local/share/rolayer; created on first use)\n"
    "  --driver NAME    storage driver of a new store: dir (default) or exact;\n"
    "                   an existing store needs the driver it was made with\n"
    "                   (default: $ROLAYER_DRIVER, else dir)\n"
    "  --wait SECONDS   how long to wait for a store another process is using\n"
    "                   (default 5; 0 = do not wait)\n"
    "  -q, --quiet      no progress bar (it is shown only when stderr is a terminal)\n"
    "  --max-uncompressed SIZE  refuse input that decompresses to more than SIZE\n"
    "                   (K/M/G/T suffixes; default: $ROLAYER_MAX_UNCOMPRESSED, else 0 = none)\n"
    "  --max-ratio N    refuse input that decompresses to more than N times its size\n"
    "                   (past 16 MiB; default: $ROLAYER_MAX_RATIO, else 4096; 0 = none)\n"
    "  --pack-small SIZE|off  dir driver: layers registered from now on also keep\n"
    "                   their regular files of 1 byte to SIZE (at most 16M; e.g. 32K) in\n"
    "                   one pack file that exports read instead of one file each (faster\n"
    "                   export of many small files; those bytes are stored twice); kept\n"
    "                   in the store; off: no pack for new layers\n"
    "  -h, --help       this help; `rolayer COMMAND --help` for a command's\n"
    "  --version        the tool's and the library's versions\n"
    "\n"
    "Exit codes:\n"
    "  0    success\n"
    "  1    failure (I/O error, unsupported operation, ...)\n"
    "  2    usage error: bad arguments, ambiguous ChainID prefix, wrong --driver\n"
    "  3    not found: no such layer, image reference, file or blob\n"
    "  4    verification failed: digest, size or DiffID mismatch, damaged store data\n"
    "  5    store is busy: another writer kept the store locked longer than --wait\n"
    "  6    invalid input: malformed or unsafe tar, unknown compression, bad image layout\n"
    "  7    registry authentication required or refused (pull, push, login)\n"
    "  8    registry unreachable, or a transfer failed after its retries\n"
    "  130  interrupted (nothing half-written is left behind)\n"
    "\n"
    "Layers are named by ChainID: sha256:<hex>, <hex>, or a unique prefix of <hex>.\n";

const std::vector<Command> kCommands = {
    {"register", "register a layer from a tar (plain, gzip, zstd or xz); print its ChainID",
     "usage: rolayer register [--parent CHAINID] [FILE|-]\n"
     "\n"
     "Registers the tar in FILE (or standard input: - or no FILE) as a layer on top of\n"
     "--parent (a base layer without it) and prints its ChainID on one line. The input may\n"
     "be a plain tar or compressed with gzip, zstd, xz (or bzip2, lz4, ...): the compression\n"
     "is detected from the bytes; the DiffID is that of the uncompressed stream.\n"
     "The layer stays in the store, across processes, until `rolayer rm` (registering the\n"
     "same layer again keeps a single reference).\n"
     "\n"
     "Options:\n"
     "  -p, --parent CHAINID   the parent layer\n",
     cmd_register},
    {"export", "write a layer's verified, byte-exact tar stream",
     "usage: rolayer export CHAINID [-o FILE]\n"
     "\n"
     "Writes the layer's tar stream, exactly as registered, to standard output or FILE.\n"
     "The stream is hashed as it is read and checked against the DiffID: a mismatch is an\n"
     "error (exit 4) with the library's message, and no partial FILE is left behind (FILE\n"
     "is written to a temporary file in the same directory and renamed on success; a\n"
     "device or FIFO is written in place).\n"
     "\n"
     "Options:\n"
     "  -o, --output FILE   write to FILE instead of standard output\n",
     cmd_export},
    {"diff", "write the driver's diff between a layer and an ancestor",
     "usage: rolayer diff CHAINID [--from ANCESTOR] [-o FILE]\n"
     "\n"
     "Writes the storage driver's diff between the layer and ANCESTOR (one of its parents)\n"
     "as a tar; without --from, the whole flattened chain. This stream is the driver's\n"
     "view, not the registered stream, and is not verified (use export for that). The\n"
     "exact driver only provides the diff against the direct parent.\n"
     "\n"
     "Options:\n"
     "  --from ANCESTOR     the ancestor's ChainID\n"
     "  -o, --output FILE   write to FILE instead of standard output\n",
     cmd_diff},
    {"ls", "list the layers",
     "usage: rolayer ls [--json] [--no-trunc]\n"
     "\n"
     "Lists every layer, parents first: ChainID, DiffID, parent, depth, size (the chain's\n"
     "payload bytes), diff size (this layer's payload bytes) and whether it is retained\n"
     "(kept by `rolayer rm`'s reference; other layers stay while they have children).\n"
     "\n"
     "Options:\n"
     "  --json       a JSON array of objects: chain_id, diff_id, parent (or null), depth,\n"
     "               size, diff_size, stream_size, retained, descriptor (media_type,\n"
     "               digest, size; or null)\n"
     "  --no-trunc   full IDs in the table\n",
     cmd_ls},
    {"inspect", "show one layer in detail",
     "usage: rolayer inspect CHAINID [--json]\n"
     "\n"
     "Shows the layer's IDs, sizes, references, distribution descriptor, driver metadata,\n"
     "its chain (base first) and its children.\n"
     "\n"
     "Options:\n"
     "  --json   a JSON object: the fields of `ls --json` and metadata, chain, children,\n"
     "           driver\n",
     cmd_inspect},
    {"rm", "drop the retained reference of layers; print what was removed",
     "usage: rolayer rm [--force] CHAINID...\n"
     "\n"
     "Drops the reference that register/import keep on each layer. A layer goes when\n"
     "nothing holds it any more, and then its parents that nothing else holds go too (the\n"
     "cascade): one `removed CHAINID` line each, child first. A layer with children stays\n"
     "until its children go. A layer without a reference of its own (left by a register\n"
     "killed before it kept one) is released: it goes now, or when the last process that\n"
     "has it open lets go. The top layer of a kept image (see: rolayer images) is refused\n"
     "(exit 2): remove the image with rmi; --force drops the layer's reference anyway.\n",
     cmd_rm},
    {"verify", "check stored layers against their DiffIDs",
     "usage: rolayer verify [--json] [-j N] [CHAINID...]\n"
     "\n"
     "Reads each layer's stream (all layers by default) without writing it anywhere and\n"
     "checks it against its DiffID: one line per layer, `ok` or `DAMAGED` with the damaged\n"
     "path when known. Exit code 0 when all passed, 4 when any layer is damaged.\n"
     "\n"
     "Options:\n"
     "  --json   a JSON array of {chain_id, diff_id, ok, error, path}\n"
     "  -j, --jobs N   layers checked at once (1-256, default: the number of CPUs, at most 4); the\n"
     "                 output is the same, in the same order, whatever N\n",
     cmd_verify},
    {"import", "register the layers of an OCI image layout or a docker save archive",
     "usage: rolayer import [--jobs N] DIR|ARCHIVE[:REF]\n"
     "       rolayer import [--jobs N] -[:REF]   (the archive on standard input)\n"
     "\n"
     "Reads an OCI image layout (oci-layout, index.json, blobs/) as a directory or a tar\n"
     "(plain or compressed) of one, or a `docker save` archive (manifest.json), and\n"
     "registers the image's layers in order as a chain. Every compressed blob is checked\n"
     "against its descriptor's digest and size in the same pass that computes its DiffID,\n"
     "and the DiffIDs against the config's rootfs.diff_ids; each layer records its\n"
     "descriptor. Prints the top ChainID, which stays in the store until `rolayer rm`.\n"
     "Any mismatch is an error naming the blob, and nothing of the image stays registered\n"
     "(layers that were in the store before stay).\n"
     "\n"
     "REF picks a manifest by its org.opencontainers.image.ref.name annotation when the\n"
     "index holds several (for docker save: a RepoTag). Multi-platform indexes are resolved\n"
     "to the host's linux platform.\n"
     "\n"
     "`-` reads an archive (docker save, or an OCI layout tar; plain or compressed) from\n"
     "standard input, e.g. docker save IMAGE | rolayer import -. A pipe is copied once into\n"
     "an unnamed private file in the store's tmp folder; a plain tar file is read in place.\n"
     "\n"
     "Options:\n"
     "  -j, --jobs N   layers applied at once (1-64, default: the number of CPUs, at most\n"
     "                 4), each on its own thread, committed in chain order; 1 registers\n"
     "                 them one after the other. The result is the same whatever N.\n",
     cmd_import},
    {"export-image", "write a chain as an OCI image layout with uncompressed layers",
     "usage: rolayer export-image (CHAINID | --image NAME) DIR [--ref NAME] [--arch ARCH] [--os OS]\n"
     "\n"
     "Writes an OCI image layout in DIR (created, or an existing layout to add to) whose\n"
     "layers are the chain's verified streams, uncompressed and byte-exact\n"
     "(application/vnd.oci.image.layer.v1.tar), with a config whose rootfs.diff_ids are\n"
     "the DiffIDs, a manifest, and index.json naming it NAME. Prints the manifest digest.\n"
     "When a kept image (pull, import; see: rolayer images) has CHAINID as its top layer, or\n"
     "with --image NAME, its original config is written byte for byte (same digest) instead.\n"
     "\n"
     "Options:\n"
     "  --ref NAME    the org.opencontainers.image.ref.name (default: latest)\n"
     "  --arch ARCH   the config's architecture (default: the host's)\n"
     "  --os OS       the config's os (default: linux)\n"
     "  --image NAME  the kept image to export (its top layer and its config)\n"
     "  --format docker-archive\n"
     "                write one tar archive to FILE (in place of DIR; - for standard\n"
     "                output) that docker load reads: manifest.json and repositories\n"
     "                beside the OCI layout. Prints the image ID (the config digest).\n"
     "  --tag NAME[:TAG]  the archive's RepoTags (default: the kept image's name)\n",
     cmd_export_image},
    {"pull", "pull an image's layers from a registry (verified, streamed, in parallel)", kPullHelp, cmd_pull},
    {"push", "push a chain to a registry as an image", kPushHelp, cmd_push},
    {"login", "save credentials for a registry", kLoginHelp, cmd_login},
    {"images", "list the images kept in the store (pulled or imported)", kImagesHelp, cmd_images},
    {"rmi", "remove images (and their layers when nothing else holds them)", kRmiHelp, cmd_rmi},

    {"gc", "remove what nothing keeps: layers without a reference, dead processes' leftovers",
     "usage: rolayer gc\n"
     "\n"
     "Removes every layer that has no reference (`rm`'s), no child and is not open in a\n"
     "running process (for instance one registered by a process killed before it kept a\n"
     "reference), and what processes that died with the store open left: their holds,\n"
     "temporary files and half-written layer data. One `removed CHAINID` line each. Layers\n"
     "other processes have open are never touched; gc may run while they work.\n",
     cmd_gc},
    {"docker", "verify or import a Docker host's layers (overlay2, vfs), offline", kDockerHelp, cmd_docker},
    {"mount", "mount a layer's flattened chain read-only (overlayfs); print lower dirs",
     "usage: rolayer mount [--nosuid] [--nodev] CHAINID DIR\n"
     "       rolayer mount --lower-dirs CHAINID [--json]\n"
     "\n"
     "Mounts the layer's flattened chain read-only at DIR (an existing directory) with\n"
     "overlayfs, each layer's stored directory a lower layer; the layer is held (rm refuses it)\n"
     "until `rolayer umount DIR`. With --lower-dirs, prints the lower directories, topmost\n"
     "first, one per line (or as JSON with \"userxattr\": whether the mount needs that option),\n"
     "for a caller that mounts itself. Needs the dir driver. See docs/mount.md.\n",
     cmd_mount},
    {"umount", "unmount a mount made by `rolayer mount` and drop its hold",
     "usage: rolayer umount DIR\n",
     cmd_umount},
};

void print_global_help(FILE* f) {
  std::string list;
  for (const auto& c : kCommands) {
    std::string n = c.name;
    list += "  " + n + std::string(n.size() < 14 ? 14 - n.size() : 1, ' ') + c.summary + "\n";
  }
  std::fprintf(f, kGlobalHelp, list.c_str());
}

int run(int argc, char** argv) {
  Globals g;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; i++) rest.emplace_back(argv[i]);

  // Global options before the command.
  size_t i = 0;
  for (; i < rest.size(); i++) {
    const std::string& a = rest[i];
    if (a == "--help" || a == "-h") {
      print_global_help(stdout);
      return kOk;
    }
    if (a == "--version") {
      std::printf("rolayer %s (librolayer %s)\n", ROLAYER_VERSION_STRING, rolayer_version_string());
      return kOk;
    }
    if (a.size() < 2 || a[0] != '-') break;
    std::string name = a.rfind("--", 0) == 0 ? a.substr(2) : std::string();
    char short_name = name.empty() ? a[1] : 0;
    std::string value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    bool takes_value = false;
    std::string long_name;
    if (!is_global(name, short_name, &takes_value, &long_name) || (short_name && a.size() != 2))
      usage_error("unknown option " + a + " (see: rolayer --help)");
    if (takes_value && !inline_value) {
      if (i + 1 >= rest.size()) usage_error("--" + long_name + " needs a value");
      value = rest[++i];
    }
    if (!takes_value && inline_value) usage_error("--" + long_name + " takes no value");
    apply_global(g, long_name, value);
  }
  if (i >= rest.size()) {
    print_global_help(stderr);
    return kUsage;
  }
  std::string command = rest[i];
  std::vector<std::string> args(rest.begin() + static_cast<long>(i) + 1, rest.end());
  if (command == "help") {
    if (args.empty()) {
      print_global_help(stdout);
      return kOk;
    }
    const Command* c = find_command(args[0]);
    if (!c) usage_error("no such command: " + args[0] + " (see: rolayer --help)");
    print_command_help(*c);
    return kOk;
  }
  const Command* c = find_command(command);
  if (!c) usage_error("no such command: " + command + " (see: rolayer --help)");
  return c->fn(g, args);
}

}  // namespace

const std::vector<Command>& all_commands() { return kCommands; }

const Command* find_command(const std::string& name) {
  for (const auto& c : kCommands)
    if (name == c.name) return &c;
  return nullptr;
}

void print_command_help(const Command& c) {
  std::fputs(c.help, stdout);
  std::fputs(
      "\nGlobal options: --store DIR, --driver NAME, --wait SECONDS, -q/--quiet,\n"
      "--max-uncompressed SIZE, --max-ratio N (see: rolayer --help).\n",
      stdout);
}

}  // namespace cli

int main(int argc, char** argv) {
  cli::ignore_sigpipe();
  int code;
  try {
    code = cli::run(argc, argv);
  } catch (const cli::CliError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "rolayer: %s\n", cli::term_safe(e.what()).c_str());
    code = e.code();
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "rolayer: out of memory\n");
    code = cli::kFailure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rolayer: internal error: %s\n", cli::term_safe(e.what()).c_str());
    code = cli::kFailure;
  }
  if (std::fflush(stdout) != 0 && code == cli::kOk) {
    std::fprintf(stderr, "rolayer: write standard output: %s\n", std::strerror(errno));
    code = cli::kFailure;
  }
  return code;
}
