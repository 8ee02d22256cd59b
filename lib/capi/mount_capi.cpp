// SPDX-License-Identifier: Apache-2.0
// C shims for rolayer/mount.h (lib/mount). Same rule as capi.cpp: one try/catch per entry
// point maps exceptions to status codes; nothing unwinds into C.
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <utility>

#include "rolayer.h"
#include "capi/handles.h"
#include "core/error.h"
#include "mount/mount.h"

using rolayer::Code;
using rolayer::Error;

namespace {

// capi.cpp's exception-to-status mapping and handle check, so that every entry point reports
// errors alike (code, message, errno, path, user code, DiffID).
template <class F>
int guard(rolayer_error** err, F&& f) noexcept {
  return capi_guard(err, std::forward<F>(f));
}

rolayer::Store& store_of(rolayer_store* s) { return capi_store_of(s); }

}  // namespace

extern "C" {

ROLAYER_API int rolayer_mount_lower_dirs(rolayer_string_list** out, rolayer_store* store, const char* chain_id,
                                         int* out_userxattr, rolayer_error** err) {
  return guard(err, [&] {
    if (!out || !chain_id) throw Error(Code::Inval, "out and chain_id must not be NULL");
    *out = nullptr;
    auto ld = rolayer::mount::lower_dirs(store_of(store), chain_id);
    auto list = std::make_unique<rolayer_string_list>();
    list->items = std::move(ld.dirs);
    if (out_userxattr) *out_userxattr = ld.userxattr ? 1 : 0;
    *out = list.release();
  });
}

ROLAYER_API int rolayer_mount(rolayer_store* store, const char* chain_id, const char* target, unsigned flags,
                              rolayer_error** err) {
  return guard(err, [&] {
    if (!chain_id || !target) throw Error(Code::Inval, "chain_id and target must not be NULL");
    if (flags & ~(ROLAYER_MOUNT_NOSUID | ROLAYER_MOUNT_NODEV | ROLAYER_MOUNT_NOEXEC))
      throw Error(Code::Inval, "unknown mount flags");
    rolayer::mount::mount_chain(store_of(store), chain_id, target, flags);
  });
}

ROLAYER_API int rolayer_umount(rolayer_store* store, const char* target, rolayer_error** err) {
  return guard(err, [&] {
    if (!target) throw Error(Code::Inval, "target must not be NULL");
    rolayer::mount::umount(store_of(store), target);
  });
}

ROLAYER_API int rolayer_mount_list(rolayer_string_list** out_targets, rolayer_string_list** out_chain_ids,
                                   rolayer_store* store, const char* chain_id, rolayer_error** err) {
  return guard(err, [&] {
    if (out_targets) *out_targets = nullptr;
    if (out_chain_ids) *out_chain_ids = nullptr;
    auto t = std::make_unique<rolayer_string_list>();
    auto c = std::make_unique<rolayer_string_list>();
    for (auto& r : rolayer::mount::list(store_of(store))) {
      if (chain_id && r.chain_id != chain_id) continue;
      t->items.push_back(r.target);
      c->items.push_back(r.chain_id);
    }
    if (out_targets) *out_targets = t.release();
    if (out_chain_ids) *out_chain_ids = c.release();
  });
}

ROLAYER_API int rolayer_mount_reconcile(rolayer_string_list** out_dropped, rolayer_store* store,
                                        rolayer_error** err) {
  return guard(err, [&] {
    if (out_dropped) *out_dropped = nullptr;
    auto d = std::make_unique<rolayer_string_list>();
    for (auto& r : rolayer::mount::reconcile(store_of(store))) d->items.push_back(r.target);
    if (out_dropped) *out_dropped = d.release();
  });
}

}  // extern "C"
