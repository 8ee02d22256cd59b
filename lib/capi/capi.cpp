// SPDX-License-Identifier: Apache-2.0
// The C ABI: extern "C" shims over the C++ core. The only place where C++ meets C: every entry
// point is one try/catch that maps exceptions to status codes; nothing unwinds into C.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "rolayer.h"
#include "capi/handles.h"
#include "capi/sources.h"
#include "core/error.h"
#include "core/fs.h"
#include "store/store.h"

using rolayer::Code;
using rolayer::Error;

struct rolayer_removed {
  std::vector<rolayer::Removed> items;
};
struct rolayer_layer_list {
  std::vector<rolayer::LayerInfo> items;
};

namespace {

using rolayer::capi::BorrowedFdSource;
using rolayer::capi::CallbackSource;

void set_error(rolayer_error** err, int code, std::string message, int err_no = 0, int user_code = 0,
               std::string diff_id = {}, std::string path = {}) {
  if (!err) return;
  auto* e = new (std::nothrow) rolayer_error;
  if (!e) {
    *err = nullptr;
    return;
  }
  e->code = code;
  e->message = std::move(message);
  e->err_no = err_no;
  e->user_code = user_code;
  e->diff_id = std::move(diff_id);
  e->path = std::move(path);
  *err = e;
}

template <class F>
int guard(rolayer_error** err, F&& f) noexcept {
  try {
    f();
    return ROLAYER_OK;
  } catch (const Error& e) {
    int code = static_cast<int>(e.code());
    set_error(err, code, e.what(), e.sys_errno(), e.user_code(), e.diff_id(), e.path());
    return code;
  } catch (const std::bad_alloc&) {
    set_error(err, ROLAYER_ENOMEM, "out of memory");
    return ROLAYER_ENOMEM;
  } catch (const std::system_error& e) {
    set_error(err, ROLAYER_EIO, e.what(), e.code().value());
    return ROLAYER_EIO;
  } catch (const std::exception& e) {
    set_error(err, ROLAYER_EIO, std::string("internal error: ") + e.what());
    return ROLAYER_EIO;
  } catch (...) {
    set_error(err, ROLAYER_EIO, "internal error: unknown exception");
    return ROLAYER_EIO;
  }
}

[[noreturn]] void invalid(const char* what) { throw Error(Code::Inval, what); }

rolayer::Store& store_of(rolayer_store* s) {
  if (!s || s->magic != kStoreMagic) invalid("invalid store handle");
  return *s->store;
}

rolayer::LayerRef& layer_of(const rolayer_layer* l) {
  if (!l || l->magic != kLayerMagic) invalid("invalid layer handle");
  if (l->ref->released()) throw Error(Code::NotRetained, "layer not retained: the handle was released");
  return *l->ref;
}

std::string opt_str(const char* s) { return s ? std::string(s) : std::string(); }

class MemorySource : public rolayer::ByteSource {
 public:
  MemorySource(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  size_t read(uint8_t* buf, size_t cap) override {
    size_t k = std::min(cap, n_ - pos_);
    if (k) std::memcpy(buf, p_ + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  const uint8_t* p_;
  size_t n_, pos_ = 0;
};

rolayer::Descriptor descriptor_of(const rolayer_register_options* o) {
  rolayer::Descriptor d;
  if (!o) return d;
  if (o->version < 1) invalid("rolayer_register_options.version must be ROLAYER_REGISTER_OPTIONS_VERSION");
  if (o->version > ROLAYER_REGISTER_OPTIONS_VERSION)
    throw Error(Code::Unsupported, "rolayer_register_options.version " + std::to_string(o->version) +
                                       " is not supported (this library speaks version " +
                                       std::to_string(ROLAYER_REGISTER_OPTIONS_VERSION) + ")");
  d.media_type = opt_str(o->descriptor_media_type);
  d.digest = opt_str(o->descriptor_digest);
  d.size = (o->descriptor_digest || o->descriptor_media_type) ? o->descriptor_size : -1;
  // A media type is a short printable token (RFC 6838): control characters (a terminal escape
  // sequence, a newline that forges a line of output) are refused, not stored.
  for (unsigned char c : d.media_type)
    if (c < 0x20 || c == 0x7f)
      invalid("descriptor_media_type must not contain control characters");
  // -1 is the documented "size unknown" sentinel (what rolayer_layer_descriptor_size returns
  // for none); any other negative size is a caller's mistake.
  if (d.size < -1) invalid("descriptor_size must be >= 0, or -1 for an unknown size");
  return d;
}

int do_register(rolayer_layer** out, rolayer_store* store, const char* parent, rolayer::ByteSource& src,
                const rolayer_register_options* opts, rolayer_error** err) {
  if (out) *out = nullptr;
  return guard(err, [&] {
    if (!out) invalid("out must not be NULL");
    auto& s = store_of(store);
    auto d = descriptor_of(opts);
    auto ref = s.register_layer(opt_str(parent), src, d);
    *out = new rolayer_layer(std::move(ref));
  });
}

int do_release(rolayer_layer* layer, rolayer_removed** out_removed, rolayer_error** err) {
  if (out_removed) *out_removed = nullptr;
  int rc = guard(err, [&] {
    if (!layer || layer->magic != kLayerMagic) invalid("invalid layer handle");
    auto removed = rolayer::Store::release_ref(*layer->ref);
    if (out_removed) *out_removed = new rolayer_removed{std::move(removed)};
  });
  if (layer && layer->magic == kLayerMagic) {
    layer->magic = 0;
    delete layer;
  }
  return rc;
}

}  // namespace

extern "C" {

/* --- errors and lists --- */
ROLAYER_API int rolayer_error_code(const rolayer_error* e) { return e ? e->code : ROLAYER_OK; }
ROLAYER_API const char* rolayer_error_message(const rolayer_error* e) { return e ? e->message.c_str() : nullptr; }
ROLAYER_API int rolayer_error_errno(const rolayer_error* e) { return e ? e->err_no : 0; }
ROLAYER_API int rolayer_error_user_code(const rolayer_error* e) { return e ? e->user_code : 0; }
ROLAYER_API const char* rolayer_error_diff_id(const rolayer_error* e) {
  return e && !e->diff_id.empty() ? e->diff_id.c_str() : nullptr;
}
ROLAYER_API const char* rolayer_error_path(const rolayer_error* e) {
  return e && !e->path.empty() ? e->path.c_str() : nullptr;
}
ROLAYER_API void rolayer_error_free(rolayer_error* e) { delete e; }

ROLAYER_API const char* rolayer_strerror(int code) {
  switch (code) {
    case ROLAYER_OK: return "success";
    case ROLAYER_EINVAL: return "invalid argument";
    case ROLAYER_ENOTFOUND: return "layer does not exist";
    case ROLAYER_EEXISTS: return "already exists";
    case ROLAYER_ENOTRETAINED: return "layer not retained";
    case ROLAYER_EMAXDEPTH: return "max depth exceeded";
    case ROLAYER_ENOTANCESTOR: return "not an ancestor of the layer";
    case ROLAYER_EDIGEST: return "layer data does not match its DiffID";
    case ROLAYER_ECORRUPT: return "stored layer data or record is damaged";
    case ROLAYER_EARCHIVE: return "malformed or unsupported tar archive";
    case ROLAYER_EUNSAFE: return "archive path escapes the layer";
    case ROLAYER_EIO: return "I/O error";
    case ROLAYER_ENOMEM: return "out of memory";
    case ROLAYER_EUSER: return "a callback aborted the operation";
    case ROLAYER_EBUSY: return "store is busy";
    case ROLAYER_EUNSUPPORTED: return "operation not supported";
    default: return "unknown error";
  }
}

ROLAYER_API size_t rolayer_string_list_count(const rolayer_string_list* l) { return l ? l->items.size() : 0; }
ROLAYER_API const char* rolayer_string_list_get(const rolayer_string_list* l, size_t i) {
  return l && i < l->items.size() ? l->items[i].c_str() : nullptr;
}
ROLAYER_API void rolayer_string_list_free(rolayer_string_list* l) { delete l; }

ROLAYER_API int rolayer_version(void) { return ROLAYER_VERSION_NUMBER; }
ROLAYER_API const char* rolayer_version_string(void) { return ROLAYER_VERSION_STRING; }

/* --- store --- */
ROLAYER_API int rolayer_store_open(rolayer_store** out, const char* root, const char* driver, rolayer_error** err) {
  rolayer_store_options o = ROLAYER_STORE_OPTIONS_INIT;
  o.driver = driver;
  return rolayer_store_open_ext(out, root, &o, err);
}

ROLAYER_API int rolayer_store_open_ext(rolayer_store** out, const char* root, const rolayer_store_options* opts,
                                       rolayer_error** err) {
  if (out) *out = nullptr;
  // A caller's driver is destroyed exactly once: by the driver object once it owns the user
  // data, or here when the open fails before that.
  const rolayer_driver_ops* ops = opts && opts->version >= 1 ? opts->driver_ops : nullptr;
  bool destroy_owed = ops && ops->version >= 1 && ops->destroy;
  int rc = guard(err, [&] {
    if (!out) invalid("out must not be NULL");
    if (!root || !*root) invalid("root must be a directory path");
    rolayer::StoreOptions so;
    if (opts) {
      if (opts->version < 1) invalid("rolayer_store_options.version must be ROLAYER_STORE_OPTIONS_VERSION");
      // A newer header's struct may carry fields this library would silently ignore.
      if (opts->version > ROLAYER_STORE_OPTIONS_VERSION)
        throw Error(Code::Unsupported, "rolayer_store_options.version " + std::to_string(opts->version) +
                                           " is not supported (this library speaks version " +
                                           std::to_string(ROLAYER_STORE_OPTIONS_VERSION) + ")");
      so.driver_name = opt_str(opts->driver);
      so.busy_timeout_ms = opts->busy_timeout_ms;
      if (opts->version >= 2) so.read_only = opts->read_only != 0;
      if (opts->version >= 3) so.payload_pack_max = opts->payload_pack_max;
      if (ops) {
        so.driver = make_user_driver(ops, opts->driver_user_data);
        destroy_owed = false;  // the driver object calls destroy when it goes, open or not
      }
    }
    auto s = rolayer::Store::open(root, std::move(so));
    *out = new rolayer_store(std::move(s));
  });
  if (rc != 0 && destroy_owed) ops->destroy(opts->driver_user_data);
  return rc;
}

ROLAYER_API void rolayer_store_free(rolayer_store* store) {
  if (!store || store->magic != kStoreMagic) return;
  store->magic = 0;
  delete store;
}

ROLAYER_API const char* rolayer_store_root(const rolayer_store* s) {
  return s && s->magic == kStoreMagic ? s->store->root().c_str() : nullptr;
}
ROLAYER_API const char* rolayer_store_driver(const rolayer_store* s) {
  return s && s->magic == kStoreMagic ? s->driver_name.c_str() : nullptr;
}
ROLAYER_API int64_t rolayer_store_payload_pack_max(const rolayer_store* s) {
  return s && s->magic == kStoreMagic ? s->store->payload_pack_max() : 0;
}

ROLAYER_API int rolayer_register(rolayer_layer** out, rolayer_store* store, const char* parent, rolayer_read_fn read,
                                 void* user_data, rolayer_error** err) {
  return rolayer_register_ext(out, store, parent, read, user_data, nullptr, err);
}

ROLAYER_API int rolayer_register_ext(rolayer_layer** out, rolayer_store* store, const char* parent,
                                     rolayer_read_fn read, void* user_data, const rolayer_register_options* opts,
                                     rolayer_error** err) {
  if (!read) {
    if (out) *out = nullptr;
    return guard(err, [] { invalid("read callback must not be NULL"); });
  }
  CallbackSource src(read, user_data);
  return do_register(out, store, parent, src, opts, err);
}

ROLAYER_API int rolayer_register_fd(rolayer_layer** out, rolayer_store* store, const char* parent, int fd,
                                    const rolayer_register_options* opts, rolayer_error** err) {
  if (fd < 0) {
    if (out) *out = nullptr;
    return guard(err, [] { invalid("fd must be an open file descriptor"); });
  }
  BorrowedFdSource src(fd);
  return do_register(out, store, parent, src, opts, err);
}

ROLAYER_API int rolayer_register_memory(rolayer_layer** out, rolayer_store* store, const char* parent,
                                        const uint8_t* data, size_t len, const rolayer_register_options* opts,
                                        rolayer_error** err) {
  if (!data && len) {
    if (out) *out = nullptr;
    return guard(err, [] { invalid("data must not be NULL"); });
  }
  MemorySource src(data, len);
  return do_register(out, store, parent, src, opts, err);
}

ROLAYER_API int rolayer_open(rolayer_layer** out, rolayer_store* store, const char* chain_id, rolayer_error** err) {
  if (out) *out = nullptr;
  return guard(err, [&] {
    if (!out) invalid("out must not be NULL");
    if (!chain_id) invalid("chain_id must not be NULL");
    auto& s = store_of(store);
    *out = new rolayer_layer(s.get(chain_id));
  });
}

ROLAYER_API int rolayer_release(rolayer_layer* layer, rolayer_error** err) { return do_release(layer, nullptr, err); }
ROLAYER_API void rolayer_layer_close(rolayer_layer* layer) {
  if (!layer || layer->magic != kLayerMagic) return;
  rolayer::Store::close_ref(*layer->ref);
  layer->magic = 0;
  delete layer;
}
ROLAYER_API int rolayer_release_ext(rolayer_removed** out_removed, rolayer_layer* layer, rolayer_error** err) {
  return do_release(layer, out_removed, err);
}

ROLAYER_API size_t rolayer_removed_count(const rolayer_removed* r) { return r ? r->items.size() : 0; }
ROLAYER_API const char* rolayer_removed_chain_id(const rolayer_removed* r, size_t i) {
  return r && i < r->items.size() ? r->items[i].chain_id.c_str() : nullptr;
}
ROLAYER_API const char* rolayer_removed_diff_id(const rolayer_removed* r, size_t i) {
  return r && i < r->items.size() ? r->items[i].diff_id.c_str() : nullptr;
}
ROLAYER_API int64_t rolayer_removed_size(const rolayer_removed* r, size_t i) {
  return r && i < r->items.size() ? r->items[i].size : -1;
}
ROLAYER_API int64_t rolayer_removed_diff_size(const rolayer_removed* r, size_t i) {
  return r && i < r->items.size() ? r->items[i].diff_size : -1;
}
ROLAYER_API void rolayer_removed_free(rolayer_removed* r) { delete r; }

ROLAYER_API int rolayer_store_list(rolayer_string_list** out, rolayer_store* store, rolayer_error** err) {
  if (out) *out = nullptr;
  return guard(err, [&] {
    if (!out) invalid("out must not be NULL");
    auto ids = store_of(store).list();
    *out = new rolayer_string_list{std::move(ids)};
  });
}

ROLAYER_API int rolayer_store_layers(rolayer_layer_list** out, rolayer_store* store, rolayer_error** err) {
  if (out) *out = nullptr;
  return guard(err, [&] {
    if (!out) invalid("out must not be NULL");
    auto infos = store_of(store).layer_infos();
    *out = new rolayer_layer_list{std::move(infos)};
  });
}
ROLAYER_API size_t rolayer_layer_list_count(const rolayer_layer_list* l) { return l ? l->items.size() : 0; }
ROLAYER_API const char* rolayer_layer_list_chain_id(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() ? l->items[i].chain_id.c_str() : nullptr;
}
ROLAYER_API const char* rolayer_layer_list_diff_id(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() ? l->items[i].diff_id.c_str() : nullptr;
}
ROLAYER_API const char* rolayer_layer_list_cache_id(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() ? l->items[i].cache_id.c_str() : nullptr;
}
ROLAYER_API const char* rolayer_layer_list_parent(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() && !l->items[i].parent.empty() ? l->items[i].parent.c_str() : nullptr;
}
ROLAYER_API int rolayer_layer_list_depth(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() ? l->items[i].depth : 0;
}
ROLAYER_API int64_t rolayer_layer_list_size(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() ? l->items[i].size : -1;
}
ROLAYER_API int64_t rolayer_layer_list_diff_size(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() ? l->items[i].diff_size : -1;
}
ROLAYER_API int64_t rolayer_layer_list_stream_size(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() ? l->items[i].stream_size : -1;
}
ROLAYER_API int64_t rolayer_layer_list_retained(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() ? l->items[i].retained : -1;
}
ROLAYER_API const char* rolayer_layer_list_descriptor_media_type(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() && !l->items[i].media_type.empty() ? l->items[i].media_type.c_str() : nullptr;
}
ROLAYER_API const char* rolayer_layer_list_descriptor_digest(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() && !l->items[i].digest.empty() ? l->items[i].digest.c_str() : nullptr;
}
ROLAYER_API int64_t rolayer_layer_list_descriptor_size(const rolayer_layer_list* l, size_t i) {
  return l && i < l->items.size() ? l->items[i].desc_size : -1;
}
ROLAYER_API void rolayer_layer_list_free(rolayer_layer_list* l) { delete l; }

ROLAYER_API int rolayer_store_retain(rolayer_store* store, const char* chain_id, rolayer_error** err) {
  return guard(err, [&] {
    if (!chain_id) invalid("chain_id must not be NULL");
    store_of(store).retain(chain_id);
  });
}

ROLAYER_API int rolayer_store_unretain(rolayer_removed** out_removed, rolayer_store* store, const char* chain_id,
                                       rolayer_error** err) {
  if (out_removed) *out_removed = nullptr;
  return guard(err, [&] {
    if (!chain_id) invalid("chain_id must not be NULL");
    auto removed = store_of(store).unretain(chain_id);
    if (out_removed) *out_removed = new rolayer_removed{std::move(removed)};
  });
}

ROLAYER_API int rolayer_store_gc(rolayer_removed** out_removed, rolayer_store* store, rolayer_error** err) {
  if (out_removed) *out_removed = nullptr;
  return guard(err, [&] {
    auto removed = store_of(store).gc();
    if (out_removed) *out_removed = new rolayer_removed{std::move(removed)};
  });
}

ROLAYER_API int rolayer_store_retained(int64_t* out, rolayer_store* store, const char* chain_id, rolayer_error** err) {
  return guard(err, [&] {
    if (!chain_id || !out) invalid("chain_id and out must not be NULL");
    *out = store_of(store).retained(chain_id);
  });
}

/* --- layer getters --- */
ROLAYER_API const char* rolayer_layer_chain_id(const rolayer_layer* l) {
  return l && l->magic == kLayerMagic ? l->ref->node().chain_id.str().c_str() : nullptr;
}
ROLAYER_API const char* rolayer_layer_diff_id(const rolayer_layer* l) {
  return l && l->magic == kLayerMagic ? l->ref->node().diff_id.str().c_str() : nullptr;
}
ROLAYER_API const char* rolayer_layer_cache_id(const rolayer_layer* l) {
  return l && l->magic == kLayerMagic ? l->ref->node().cache_id.c_str() : nullptr;
}
ROLAYER_API const char* rolayer_layer_parent(const rolayer_layer* l) {
  if (!l || l->magic != kLayerMagic || !l->ref->node().parent) return nullptr;
  return l->ref->node().parent->chain_id.str().c_str();
}
ROLAYER_API int rolayer_layer_depth(const rolayer_layer* l) {
  return l && l->magic == kLayerMagic ? l->ref->node().depth : 0;
}
ROLAYER_API int rolayer_layer_size(int64_t* out, const rolayer_layer* l, rolayer_error** err) {
  return guard(err, [&] {
    if (!out) invalid("out must not be NULL");
    *out = rolayer::Store::size(layer_of(l));
  });
}
ROLAYER_API int rolayer_layer_diff_size(int64_t* out, const rolayer_layer* l, rolayer_error** err) {
  return guard(err, [&] {
    if (!out) invalid("out must not be NULL");
    *out = layer_of(l).node().diff_size;
  });
}
ROLAYER_API int rolayer_layer_stream_size(int64_t* out, const rolayer_layer* l, rolayer_error** err) {
  return guard(err, [&] {
    if (!out) invalid("out must not be NULL");
    *out = layer_of(l).node().stream_size;
  });
}
ROLAYER_API const char* rolayer_layer_descriptor_media_type(const rolayer_layer* l) {
  if (!l || l->magic != kLayerMagic) return nullptr;
  const auto& d = l->ref->node().descriptor;
  return d.media_type.empty() ? nullptr : d.media_type.c_str();
}
ROLAYER_API const char* rolayer_layer_descriptor_digest(const rolayer_layer* l) {
  if (!l || l->magic != kLayerMagic) return nullptr;
  const auto& d = l->ref->node().descriptor;
  return d.digest.empty() ? nullptr : d.digest.c_str();
}
ROLAYER_API int64_t rolayer_layer_descriptor_size(const rolayer_layer* l) {
  if (!l || l->magic != kLayerMagic) return -1;
  return l->ref->node().descriptor.size;
}
ROLAYER_API int rolayer_layer_metadata(rolayer_string_list** out, const rolayer_layer* l, rolayer_error** err) {
  if (out) *out = nullptr;
  return guard(err, [&] {
    if (!out) invalid("out must not be NULL");
    auto& ref = layer_of(l);
    auto kv = rolayer::Store::metadata(ref);
    auto* list = new rolayer_string_list;
    for (auto& p : kv) {
      list->items.push_back(std::move(p.first));
      list->items.push_back(std::move(p.second));
    }
    *out = list;
  });
}
ROLAYER_API int rolayer_layer_verify(rolayer_layer* l, rolayer_error** err) {
  return guard(err, [&] {
    auto& ref = layer_of(l);
    auto s = rolayer::Store::verify_stream(ref);  // the tree as mounts see it, any pack checked against it
    // Page-aligned: payloads are read into it at their file offsets modulo a page (a payload
    // after a 512-byte header, a 1 MiB block at its start), never at the skew of 1 to 63 bytes
    // that makes the stream copy them through a bounce buffer (lib/store/stream.cpp read_at).
    constexpr size_t kBuf = size_t{1} << 20;
    std::unique_ptr<uint8_t, decltype(&std::free)> buf(static_cast<uint8_t*>(std::aligned_alloc(4096, kBuf)), &std::free);
    if (!buf) throw rolayer::Error(rolayer::Code::NoMem, "cannot allocate a read buffer");
    while (s->read(buf.get(), kBuf) > 0) {
    }
  });
}

/* --- streams --- */
ROLAYER_API int rolayer_tar_stream_open(rolayer_tar_stream** out, rolayer_layer* l, rolayer_error** err) {
  if (out) *out = nullptr;
  return guard(err, [&] {
    if (!out) invalid("out must not be NULL");
    auto& ref = layer_of(l);
    *out = new rolayer_tar_stream(rolayer::Store::tar_stream(ref));
  });
}
ROLAYER_API int rolayer_tar_stream_open_from(rolayer_tar_stream** out, rolayer_layer* l, const char* ancestor,
                                             rolayer_error** err) {
  if (out) *out = nullptr;
  return guard(err, [&] {
    if (!out) invalid("out must not be NULL");
    auto& ref = layer_of(l);
    *out = new rolayer_tar_stream(rolayer::Store::tar_stream_from(ref, opt_str(ancestor)));
  });
}
ROLAYER_API int rolayer_tar_stream_read(rolayer_tar_stream* s, void* buf, size_t cap, size_t* n_read,
                                        rolayer_error** err) {
  if (n_read) *n_read = 0;
  return guard(err, [&] {
    if (!s || s->magic != kStreamMagic) invalid("invalid stream handle");
    if (!n_read || (!buf && cap)) invalid("buf and n_read must not be NULL");
    // 0 bytes with status 0 means the end of the stream: a read of nothing must not say that.
    if (cap == 0) invalid("cap must be greater than 0 (a read of 0 bytes would look like the end of the stream)");
    if (s->deferred) std::rethrow_exception(s->deferred);
    size_t got = 0;
    auto* p = static_cast<uint8_t*>(buf);
    // Fill the caller's buffer (fewer calls across the ABI). An error met after some bytes
    // were read is reported by the next call, so no byte that was read is lost.
    try {
      while (got < cap) {
        size_t n = s->src->read(p + got, cap - got);
        if (n == 0) break;
        got += n;
      }
    } catch (...) {
      if (got == 0) throw;
      s->deferred = std::current_exception();
    }
    *n_read = got;
  });
}
ROLAYER_API void rolayer_tar_stream_free(rolayer_tar_stream* s) {
  if (!s || s->magic != kStreamMagic) return;
  s->magic = 0;
  delete s;
}

}  // extern "C"

// For the other shim files (declared in handles.h).
int capi_guard(rolayer_error** err, const std::function<void()>& f) noexcept { return guard(err, f); }
rolayer::Store& capi_store_of(rolayer_store* s) { return store_of(s); }
rolayer::Descriptor capi_descriptor_of(const rolayer_register_options* o) { return descriptor_of(o); }
rolayer_string_list* capi_new_string_list(std::vector<std::string> items) {
  return new rolayer_string_list{std::move(items)};
}
#include "capi/image_shims.inc"  // rolayer/image.h
