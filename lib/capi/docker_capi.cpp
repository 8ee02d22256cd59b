// SPDX-License-Identifier: Apache-2.0
// The C ABI of lib/dockerdb (include/rolayer/docker.h): extern "C" shims, each one guard.
#include <memory>
#include <string>
#include <vector>

#include "capi/handles.h"
#include "core/error.h"
#include "dockerdb/dockerdb.h"
#include "rolayer.h"

using rolayer::Code;
using rolayer::Error;
using rolayer::dockerdb::DataRoot;
using rolayer::dockerdb::LayerInfo;

namespace {
constexpr uint32_t kDockerRootMagic = 0x524c4452;    // "RLDR"
constexpr uint32_t kDockerLayersMagic = 0x524c444c;  // "RLDL"
}  // namespace

struct rolayer_docker_root {
  uint32_t magic = kDockerRootMagic;
  std::shared_ptr<DataRoot> root;
};

struct rolayer_docker_layers {
  uint32_t magic = kDockerLayersMagic;
  std::vector<LayerInfo> items;
  std::vector<std::string> errors;  // per item: why its metadata could not be read, or ""
};

namespace {

DataRoot& root_of(rolayer_docker_root* r) {
  if (!r || r->magic != kDockerRootMagic) throw Error(Code::Inval, "invalid Docker data root handle");
  return *r->root;
}

const LayerInfo* at(const rolayer_docker_layers* l, size_t i) {
  if (!l || l->magic != kDockerLayersMagic || i >= l->items.size()) return nullptr;
  return &l->items[i];
}

const char* opt(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }

std::string need(const char* s, const char* what) {
  if (!s) throw Error(Code::Inval, std::string(what) + " must not be NULL");
  return s;
}

}  // namespace

extern "C" {

ROLAYER_API int rolayer_docker_root_open(rolayer_docker_root** out, const char* data_root, const char* driver,
                                         rolayer_error** err) {
  if (out) *out = nullptr;
  return capi_guard(err, [&] {
    if (!out) throw Error(Code::Inval, "out must not be NULL");
    auto r = DataRoot::open(need(data_root, "data_root"), driver ? driver : "");
    auto* h = new rolayer_docker_root;
    h->root = std::move(r);
    *out = h;
  });
}

ROLAYER_API void rolayer_docker_root_free(rolayer_docker_root* r) {
  if (!r || r->magic != kDockerRootMagic) return;
  r->magic = 0;
  delete r;
}

ROLAYER_API const char* rolayer_docker_root_driver(const rolayer_docker_root* r) {
  if (!r || r->magic != kDockerRootMagic) return nullptr;
  return r->root->driver().c_str();
}

ROLAYER_API int rolayer_docker_layers_list(rolayer_docker_layers** out, rolayer_docker_root* r, rolayer_error** err) {
  if (out) *out = nullptr;
  return capi_guard(err, [&] {
    if (!out) throw Error(Code::Inval, "out must not be NULL");
    std::vector<std::string> skipped;
    auto items = root_of(r).layers(&skipped);
    auto l = std::make_unique<rolayer_docker_layers>();
    l->items = std::move(items);
    l->errors.resize(l->items.size());
    for (const auto& s : skipped) {  // "sha256:<hex>: why"
      LayerInfo li;
      li.chain_id = s.substr(0, 71);
      l->items.push_back(std::move(li));
      l->errors.push_back(s.size() > 73 ? s.substr(73) : s);
    }
    *out = l.release();
  });
}

ROLAYER_API int rolayer_docker_layers_get(rolayer_docker_layers** out, rolayer_docker_root* r, const char* chain_id,
                                          rolayer_error** err) {
  if (out) *out = nullptr;
  return capi_guard(err, [&] {
    if (!out) throw Error(Code::Inval, "out must not be NULL");
    auto li = root_of(r).layer(need(chain_id, "chain_id"));
    auto* l = new rolayer_docker_layers;
    l->items.push_back(std::move(li));
    l->errors.emplace_back();
    *out = l;
  });
}

ROLAYER_API size_t rolayer_docker_layers_count(const rolayer_docker_layers* l) {
  return l && l->magic == kDockerLayersMagic ? l->items.size() : 0;
}
ROLAYER_API const char* rolayer_docker_layers_chain_id(const rolayer_docker_layers* l, size_t i) {
  auto* p = at(l, i);
  return p ? p->chain_id.c_str() : nullptr;
}
ROLAYER_API const char* rolayer_docker_layers_diff_id(const rolayer_docker_layers* l, size_t i) {
  auto* p = at(l, i);
  return p ? p->diff_id.c_str() : nullptr;
}
ROLAYER_API const char* rolayer_docker_layers_parent(const rolayer_docker_layers* l, size_t i) {
  auto* p = at(l, i);
  return p ? opt(p->parent) : nullptr;
}
ROLAYER_API const char* rolayer_docker_layers_cache_id(const rolayer_docker_layers* l, size_t i) {
  auto* p = at(l, i);
  return p ? p->cache_id.c_str() : nullptr;
}
ROLAYER_API const char* rolayer_docker_layers_descriptor_media_type(const rolayer_docker_layers* l, size_t i) {
  auto* p = at(l, i);
  return p ? opt(p->descriptor_media_type) : nullptr;
}
ROLAYER_API const char* rolayer_docker_layers_descriptor_digest(const rolayer_docker_layers* l, size_t i) {
  auto* p = at(l, i);
  return p ? opt(p->descriptor_digest) : nullptr;
}
ROLAYER_API int64_t rolayer_docker_layers_descriptor_size(const rolayer_docker_layers* l, size_t i) {
  auto* p = at(l, i);
  return p && !p->descriptor_digest.empty() ? p->descriptor_size : -1;
}
ROLAYER_API int64_t rolayer_docker_layers_size(const rolayer_docker_layers* l, size_t i) {
  auto* p = at(l, i);
  return p ? p->size : -1;
}
ROLAYER_API const char* rolayer_docker_layers_error(const rolayer_docker_layers* l, size_t i) {
  if (!at(l, i)) return nullptr;
  return opt(l->errors[i]);
}
ROLAYER_API void rolayer_docker_layers_free(rolayer_docker_layers* l) {
  if (!l || l->magic != kDockerLayersMagic) return;
  l->magic = 0;
  delete l;
}

ROLAYER_API int rolayer_docker_resolve(rolayer_string_list** out, rolayer_docker_root* r, const char* ref,
                                       rolayer_error** err) {
  if (out) *out = nullptr;
  return capi_guard(err, [&] {
    if (!out) throw Error(Code::Inval, "out must not be NULL");
    *out = capi_new_string_list(root_of(r).resolve(need(ref, "ref")));
  });
}

ROLAYER_API int rolayer_docker_stream_open(rolayer_tar_stream** out, rolayer_docker_root* r, const char* chain_id,
                                           rolayer_error** err) {
  if (out) *out = nullptr;
  return capi_guard(err, [&] {
    if (!out) throw Error(Code::Inval, "out must not be NULL");
    *out = new rolayer_tar_stream(root_of(r).open_stream(need(chain_id, "chain_id")));
  });
}

ROLAYER_API int rolayer_docker_verify(int64_t* out_stream_size, rolayer_docker_root* r, const char* chain_id,
                                      rolayer_error** err) {
  if (out_stream_size) *out_stream_size = 0;
  return capi_guard(err, [&] {
    int64_t n = root_of(r).verify(need(chain_id, "chain_id"));
    if (out_stream_size) *out_stream_size = n;
  });
}

}  // extern "C"
