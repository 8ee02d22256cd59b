// SPDX-License-Identifier: Apache-2.0
// C shims for rolayer/stage.h (Store::stage / commit_staged). Same rule as capi.cpp: one
// try/catch per entry point maps exceptions to status codes; nothing unwinds into C.
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <utility>

#include "rolayer.h"
#include "capi/handles.h"
#include "capi/sources.h"
#include "core/error.h"

using rolayer::Code;
using rolayer::Error;

constexpr uint32_t kStagedMagic = 0x524c5347;  // "RLSG"

struct rolayer_staged {
  explicit rolayer_staged(std::unique_ptr<rolayer::StagedLayer> l)
      : layer(std::move(l)), diff_id(layer->diff_id().str()) {}
  uint32_t magic = kStagedMagic;
  std::unique_ptr<rolayer::StagedLayer> layer;
  std::string diff_id;
};

namespace {

using rolayer::capi::BorrowedFdSource;
using rolayer::capi::CallbackSource;

template <class F>
int guard(rolayer_error** err, F&& f) noexcept {
  return capi_guard(err, std::forward<F>(f));
}

int do_stage(rolayer_staged** out, rolayer_store* store, rolayer::ByteSource& src,
             const rolayer_register_options* opts, rolayer_error** err) {
  if (out) *out = nullptr;
  return guard(err, [&] {
    if (!out) throw Error(Code::Inval, "out must not be NULL");
    auto& s = capi_store_of(store);
    auto d = capi_descriptor_of(opts);
    auto staged = s.stage(src, d);
    *out = new rolayer_staged(std::move(staged));
  });
}

}  // namespace

extern "C" {

ROLAYER_API int rolayer_stage(rolayer_staged** out, rolayer_store* store, rolayer_read_fn read, void* user_data,
                              const rolayer_register_options* opts, rolayer_error** err) {
  if (!read) {
    if (out) *out = nullptr;
    return guard(err, [] { throw Error(Code::Inval, "read callback must not be NULL"); });
  }
  CallbackSource src(read, user_data);
  return do_stage(out, store, src, opts, err);
}

ROLAYER_API int rolayer_stage_fd(rolayer_staged** out, rolayer_store* store, int fd,
                                 const rolayer_register_options* opts, rolayer_error** err) {
  if (fd < 0) {
    if (out) *out = nullptr;
    return guard(err, [] { throw Error(Code::Inval, "fd must be an open file descriptor"); });
  }
  BorrowedFdSource src(fd);
  return do_stage(out, store, src, opts, err);
}

ROLAYER_API int rolayer_stage_commit(rolayer_layer** out, rolayer_store* store, rolayer_staged* staged,
                                     const char* parent, rolayer_error** err) {
  if (out) *out = nullptr;
  return guard(err, [&] {
    if (!out) throw Error(Code::Inval, "out must not be NULL");
    if (!staged || staged->magic != kStagedMagic) throw Error(Code::Inval, "invalid staged layer handle");
    auto& s = capi_store_of(store);
    auto ref = s.commit_staged(*staged->layer, parent ? std::string(parent) : std::string());
    *out = new rolayer_layer(std::move(ref));
  });
}

ROLAYER_API const char* rolayer_staged_diff_id(const rolayer_staged* staged) {
  return staged && staged->magic == kStagedMagic ? staged->diff_id.c_str() : nullptr;
}

ROLAYER_API int64_t rolayer_staged_stream_size(const rolayer_staged* staged) {
  return staged && staged->magic == kStagedMagic ? staged->layer->stream_size() : -1;
}

ROLAYER_API int rolayer_staged_deferred(const rolayer_staged* staged) {
  return staged && staged->magic == kStagedMagic ? (staged->layer->deferred() ? 1 : 0) : -1;
}

ROLAYER_API void rolayer_stage_free(rolayer_staged* staged) {
  if (!staged || staged->magic != kStagedMagic) return;
  staged->magic = 0;
  delete staged;  // discards an uncommitted layer (rolayer::StagedLayer's destructor)
}

}  // extern "C"
