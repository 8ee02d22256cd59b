/* SPDX-License-Identifier: Apache-2.0 */
// The opaque C handles (defined only here, in lib/capi).
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "rolayer.h"
#include "store/store.h"

constexpr uint32_t kStoreMagic = 0x524c5354;   // "RLST"
constexpr uint32_t kLayerMagic = 0x524c4c59;   // "RLLY"
constexpr uint32_t kStreamMagic = 0x524c5453;  // "RLTS"

struct rolayer_store {
  explicit rolayer_store(std::unique_ptr<rolayer::Store> s) : store(std::move(s)), driver_name(store->driver_name()) {}
  uint32_t magic = kStoreMagic;
  std::unique_ptr<rolayer::Store> store;
  std::string driver_name;
};

struct rolayer_layer {
  explicit rolayer_layer(std::unique_ptr<rolayer::LayerRef> r) : ref(std::move(r)) {}
  uint32_t magic = kLayerMagic;
  std::unique_ptr<rolayer::LayerRef> ref;
};

struct rolayer_tar_stream {
  explicit rolayer_tar_stream(std::unique_ptr<rolayer::ByteSource> s) : src(std::move(s)) {}
  uint32_t magic = kStreamMagic;
  std::unique_ptr<rolayer::ByteSource> src;
  std::exception_ptr deferred;  // an error met after some bytes were already returned
};

// Shared by every shim file (capi.cpp, mount_capi.cpp).
struct rolayer_error {
  int code = 0;
  std::string message;
  int err_no = 0;
  int user_code = 0;
  std::string diff_id, path;
};

struct rolayer_string_list {
  std::vector<std::string> items;
};

// lib/drivers/user: a caller's rolayer_driver_ops as a rolayer::Driver.
#include "drivers/user/user_driver.h"
using rolayer::make_user_driver;

// For the shim files besides capi.cpp (docker_capi.cpp): capi.cpp's exception-to-status
// mapping and its string-list constructor.
#include <functional>
#include <vector>
int capi_guard(rolayer_error** err, const std::function<void()>& f) noexcept;
rolayer_string_list* capi_new_string_list(std::vector<std::string> items);
// The store behind a handle; Error(Inval) for NULL or a handle that is not a store.
rolayer::Store& capi_store_of(rolayer_store* s);
// capi.cpp's reading of rolayer_register_options (validated), for the staging shims.
rolayer::Descriptor capi_descriptor_of(const rolayer_register_options* o);
