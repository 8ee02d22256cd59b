// SPDX-License-Identifier: Apache-2.0
// rolayer mount / umount (issue 15): a layer's flattened chain as a read-only overlay mount.
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "common.h"

namespace cli {

namespace {

using nlohmann::json;

void print_line(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
}

void flush_stdout() {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) sys_fail("write standard output");
}

struct ListPtr {
  rolayer_string_list* l = nullptr;
  ~ListPtr() { rolayer_string_list_free(l); }
};

// Drops the holds of recorded mounts that are gone, telling the user.
void reconcile(rolayer_store* store) {
  ListPtr dropped;
  Err err;
  int rc = rolayer_mount_reconcile(&dropped.l, store, err.out());
  if (rc != ROLAYER_OK) {
    std::fprintf(stderr, "rolayer: warning: cannot check recorded mounts: %s\n", err.message(rc).c_str());
    return;
  }
  for (size_t i = 0; i < rolayer_string_list_count(dropped.l); i++)
    std::fprintf(stderr, "rolayer: the recorded mount at %s is gone: its hold was dropped\n",
                 rolayer_string_list_get(dropped.l, i));
}

}  // namespace

// Refuses to drop the reference of a mounted layer (rm): EBUSY-like, naming the mount.
void refuse_if_mounted(rolayer_store* store, const std::string& chain_id) {
  reconcile(store);
  ListPtr targets;
  Err err;
  int rc = rolayer_mount_list(&targets.l, nullptr, store, chain_id.c_str(), err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "rm " + chain_id);
  if (rolayer_string_list_count(targets.l) > 0)
    throw CliError(kBusy, chain_id + " is mounted at " + rolayer_string_list_get(targets.l, 0) +
                              " (rolayer umount " + rolayer_string_list_get(targets.l, 0) + " first)");
}

int cmd_mount(Globals& g, const Args& args) {
  auto p = parse_args("mount", args,
                      {{"lower-dirs", 0, false}, {"json", 0, false}, {"nosuid", 0, false}, {"nodev", 0, false}}, g);
  if (p.help) return print_command_help(*find_command("mount")), 0;
  StorePtr store = open_store(g);
  if (p.has("lower-dirs")) {
    if (p.positionals.size() != 1) usage_error("mount --lower-dirs: needs exactly one CHAINID");
    std::string id = resolve_chain_id(store.get(), p.positionals[0]);
    ListPtr dirs;
    int userxattr = 0;
    Err err;
    int rc = rolayer_mount_lower_dirs(&dirs.l, store.get(), id.c_str(), &userxattr, err.out());
    if (rc != ROLAYER_OK) lib_fail(rc, err, "mount --lower-dirs " + id);
    size_t n = rolayer_string_list_count(dirs.l);
    if (p.has("json")) {
      json j;
      j["chain_id"] = id;
      j["lower_dirs"] = json::array();
      for (size_t i = 0; i < n; i++) j["lower_dirs"].push_back(rolayer_string_list_get(dirs.l, i));
      j["userxattr"] = userxattr != 0;
      print_line(j.dump());
    } else {
      for (size_t i = 0; i < n; i++) print_line(rolayer_string_list_get(dirs.l, i));
    }
    flush_stdout();
    return kOk;
  }
  if (p.has("json")) usage_error("mount: --json goes with --lower-dirs");
  if (p.positionals.size() != 2) usage_error("mount: needs CHAINID and DIR");
  reconcile(store.get());
  std::string id = resolve_chain_id(store.get(), p.positionals[0]);
  unsigned flags = (p.has("nosuid") ? ROLAYER_MOUNT_NOSUID : 0u) | (p.has("nodev") ? ROLAYER_MOUNT_NODEV : 0u);
  Err err;
  int rc = rolayer_mount(store.get(), id.c_str(), p.positionals[1].c_str(), flags, err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "mount " + id);
  return kOk;
}

int cmd_umount(Globals& g, const Args& args) {
  auto p = parse_args("umount", args, {}, g);
  if (p.help) return print_command_help(*find_command("umount")), 0;
  if (p.positionals.size() != 1) usage_error("umount: needs DIR");
  StorePtr store = open_store(g);
  Err err;
  int rc = rolayer_umount(store.get(), p.positionals[0].c_str(), err.out());
  if (rc != ROLAYER_OK) lib_fail(rc, err, "umount " + p.positionals[0]);
  reconcile(store.get());
  return kOk;
}

}  // namespace cli
