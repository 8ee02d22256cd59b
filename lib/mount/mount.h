/* SPDX-License-Identifier: Apache-2.0 */
// Read-only overlay mounts of a layer's flattened chain (issue 15). Uses the store (holds) and
// the dir driver (overlay-ready layer directories); lib/capi/mount_capi.cpp wraps it for C.
//
// A mount is held: mount() takes one persistent reference (Store::retain) on the chain and
// records it in <root>/mounts/<key> (magic, chain id, target, mount id), so that every
// process sees it; umount() drops both. Mounts outlive their process: a record whose target
// is no longer that overlay mount (see /proc/self/mountinfo) is found by reconcile(), which
// drops its hold.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "store/store.h"

namespace rolayer::mount {

inline constexpr unsigned kNoSuid = 1u, kNoDev = 2u, kNoExec = 4u;

struct LowerDirs {
  std::vector<std::string> dirs;  // topmost first (overlay order)
  bool userxattr = false;         // the layers carry user.overlay.* markers
};

struct Record {
  std::string chain_id, target;
  uint64_t mnt_id = 0;  // 0: not known (the process died between mount and record)
  std::string file;     // record file name below <root>/mounts
  bool by_reference = false;  // a version 1 record, held by a persistent reference (not a pin)
};

// Errors: Unsupported for a store whose driver is not "dir", a layer of the old layout;
// NotFound for an unknown chain.
LowerDirs lower_dirs(Store& store, const std::string& chain_id);
// target: an existing directory. Errors: Busy when target already holds a mount of this store,
// Unsupported when the kernel has no overlayfs, Io (errno) for a refused mount (EPERM
// unprivileged outside a user namespace...).
void mount_chain(Store& store, const std::string& chain_id, const std::string& target, unsigned flags);
// Unmounts a mount made by mount_chain and drops its hold. NotFound when target has none.
void umount(Store& store, const std::string& target);
std::vector<Record> list(Store& store);
// Drops the hold of every record whose mount is gone; returns those records.
std::vector<Record> reconcile(Store& store);

}  // namespace rolayer::mount
