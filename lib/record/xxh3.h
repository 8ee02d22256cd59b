/* SPDX-License-Identifier: Apache-2.0 */
// Incremental XXH3-64 (seed 0), the payload checksum of File items in the fidelity record.
// Xxh3::hash(p, n) == XXH3_64bits(p, n) == the digest after update(p, n). The kernels are
// xxHash's own, built inline (lib/record/xxh3.cpp) with an AVX2 build chosen at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "record/xxh3_ops.h"

namespace rolayer::record {

class Xxh3 {
 public:
  Xxh3() : ops_(detail::xxh3_ops()), state_(ops_.create()) {
    if (!state_) throw Error(Code::NoMem, "xxh3: cannot allocate a hash state");
  }
  Xxh3(const Xxh3& o) : ops_(o.ops_), state_(ops_.create()) {
    if (!state_) throw Error(Code::NoMem, "xxh3: cannot allocate a hash state");
    ops_.copy(state_, o.state_);
  }
  Xxh3& operator=(const Xxh3& o) {
    if (this != &o) ops_.copy(state_, o.state_);
    return *this;
  }
  ~Xxh3() { ops_.destroy(state_); }

  // Start over (as if newly constructed).
  void reset() { ops_.reset(state_); }

  void update(const void* data, size_t len) {
    if (len == 0) return;  // data may be null then
    ops_.update(state_, data, len);
  }
  void update(std::string_view s) { update(s.data(), s.size()); }

  // The hash of everything given so far; the state is unchanged (more updates may follow).
  uint64_t digest() const { return ops_.digest(state_); }

  // One shot.
  static uint64_t hash(const void* data, size_t len) { return detail::xxh3_ops().hash(data, len); }

 private:
  const detail::Xxh3Ops& ops_;
  void* state_;
};

}  // namespace rolayer::record
