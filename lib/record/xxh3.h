// Incremental XXH3-64 (seed 0), the payload checksum of File items in the fidelity record.
// Link with libxxhash. Xxh3::hash(p, n) == XXH3_64bits(p, n) == the digest after update(p, n).
#pragma once

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"

namespace rolayer::record {

class Xxh3 {
 public:
  Xxh3() : state_(XXH3_createState()) {
    if (!state_) throw Error(Code::NoMem, "xxh3: cannot allocate a hash state");
    reset();
  }
  Xxh3(const Xxh3& o) : state_(XXH3_createState()) {
    if (!state_) throw Error(Code::NoMem, "xxh3: cannot allocate a hash state");
    XXH3_copyState(state_, o.state_);
  }
  Xxh3& operator=(const Xxh3& o) {
    if (this != &o) XXH3_copyState(state_, o.state_);
    return *this;
  }
  ~Xxh3() { XXH3_freeState(state_); }

  // Start over (as if newly constructed).
  void reset() { XXH3_64bits_reset(state_); }

  void update(const void* data, size_t len) {
    if (len == 0) return;  // data may be null then
    XXH3_64bits_update(state_, data, len);
  }
  void update(std::string_view s) { update(s.data(), s.size()); }

  // The hash of everything given so far; the state is unchanged (more updates may follow).
  uint64_t digest() const { return XXH3_64bits_digest(state_); }

  // One shot.
  static uint64_t hash(const void* data, size_t len) { return XXH3_64bits(data, len); }

 private:
  XXH3_state_t* state_;
};

}  // namespace rolayer::record
