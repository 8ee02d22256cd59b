// SPDX-License-Identifier: Apache-2.0
// The layers of one chain applied at once and committed in chain order (rolayer/stage.h):
// shared by `import --jobs N` and `pull --jobs N`.
#ifndef ROLAYER_TOOLS_STAGED_CHAIN_H
#define ROLAYER_TOOLS_STAGED_CHAIN_H

#include <rolayer/stage.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "blob.h"
#include "common.h"

namespace cli {

using StagedPtr = std::unique_ptr<rolayer_staged, void (*)(rolayer_staged*)>;

// --jobs N: layers applied at once (1-64, default: the number of CPUs); `command` names the
// command in the usage error.
int parse_stage_jobs(const ParsedArgs& p, const std::string& command);

// Stages one layer read through a LayerReader, with register_layer's error reporting (blob.cpp).
StagedPtr stage_layer(rolayer_store* store, LayerReader& reader, const rolayer_register_options* opts,
                      const std::string& context);

// What the caller does for layer i (0-based, in chain order) of the chain.
struct ChainSteps {
  // Stages layer i; runs on a worker thread (several at once); throws on failure.
  std::function<StagedPtr(size_t i)> stage;
  // Before the commit of layer i (on the calling thread): throws to refuse the staged layer
  // (e.g. a DiffID that is not the one the config lists).
  std::function<void(size_t i, const rolayer_staged* staged)> check;
  // The context of a failed commit's message.
  std::function<std::string(size_t i)> context;
  // After layer i is committed, its handle the last of `held` (on the calling thread).
  std::function<void(size_t i, const std::string& chain_id)> committed;
  // Optional: a layer below i failed, so layer i will never be committed: make a staging of it
  // that is under way give up early (e.g. stop its download). Called with the lock held of the
  // scheduler: must not block. Its stage() may then fail; that error is never reported.
  std::function<void(size_t i)> abandon;
};

// Stages the n layers on up to `jobs` threads at once (each layer on its own thread: the dir
// driver stores each layer's own changes, so applying needs no parent) and commits them on the
// calling thread, in chain order on top of `parent`, each as soon as the layer below is. At most
// 2 x jobs layers are staged and not yet committed. Every committed layer's handle is appended
// to `held` and `parent` becomes its ChainID. A failure reports what the serial loop (register
// in chain order) would: the error of the lowest layer that fails; the layers below it are
// committed (in `held`, for the caller to release, as after a serial failure), the layers above
// it are never committed, and every staged layer not committed is discarded before this returns
// (docs/cli.md, "Layers applied at once").
void stage_and_commit_chain(rolayer_store* store, size_t n, int jobs, const ChainSteps& steps, std::vector<Layer>& held,
                            std::string& parent);

}  // namespace cli

#endif
