/* SPDX-License-Identifier: Apache-2.0 */
// The rolayer commands. Each takes the global options and its own arguments (after the command
// word) and returns the exit code; failures throw CliError.
#pragma once

#include <string>
#include <vector>

#include "common.h"

namespace cli {

using Args = std::vector<std::string>;
using CommandFn = int (*)(Globals&, const Args&);

struct Command {
  const char* name;
  const char* summary;  // one line for `rolayer --help`
  const char* help;     // the full text for `rolayer CMD --help`
  CommandFn fn;
};

const std::vector<Command>& all_commands();
const Command* find_command(const std::string& name);

int cmd_register(Globals& g, const Args& args);
int cmd_export(Globals& g, const Args& args);
int cmd_diff(Globals& g, const Args& args);
int cmd_ls(Globals& g, const Args& args);
int cmd_inspect(Globals& g, const Args& args);
int cmd_rm(Globals& g, const Args& args);
int cmd_gc(Globals& g, const Args& args);
int cmd_verify(Globals& g, const Args& args);
int cmd_import(Globals& g, const Args& args);
int cmd_export_image(Globals& g, const Args& args);
// tools/src/image_archive.cpp: export-image --format docker-archive (p: export-image's options).
struct ParsedArgs;
int export_image_archive(Globals& g, const ParsedArgs& p);
// tools/src/docker.cpp: `rolayer docker verify|import`, and its help text.
int cmd_docker(Globals& g, const Args& args);
extern const char* const kDockerHelp;
int cmd_mount(Globals& g, const Args& args);   // tools/src/mount.cpp
int cmd_umount(Globals& g, const Args& args);  // tools/src/mount.cpp
// Throws CliError(kBusy) naming the mount when chain_id is mounted (tools/src/mount.cpp).
void refuse_if_mounted(rolayer_store* store, const std::string& chain_id);

// Prints a command's help to stdout.
void print_command_help(const Command& c);

// Progress display is on for terminals unless --quiet.
bool progress_enabled(const Globals& g);

// Keeps one persistent reference on chain_id (adds one only when there is none).
void retain_once(rolayer_store* store, const std::string& chain_id);

}  // namespace cli
