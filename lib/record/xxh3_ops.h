/* SPDX-License-Identifier: Apache-2.0 */
// The XXH3 kernels behind record::Xxh3: one set per instruction-set build, chosen at run time.
// Kept free of C++ library headers: xxh3_avx2.cpp is compiled with -mavx2, and any inline
// library function it emitted could be picked by the linker for the whole program.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace rolayer::record::detail {

struct Xxh3Ops {
  void* (*create)();  // a reset state, or null when out of memory
  void (*destroy)(void*);
  void (*copy)(void* dst, const void* src);
  void (*reset)(void*);
  void (*update)(void*, const void*, size_t);
  uint64_t (*digest)(const void*);
  uint64_t (*hash)(const void*, size_t);
};

// The kernels for this machine (AVX2 when the CPU and the OS support it, else the baseline).
const Xxh3Ops& xxh3_ops();

// Per build; xxh3_ops_avx2() returns null where no AVX2 build exists.
const Xxh3Ops* xxh3_ops_baseline();
const Xxh3Ops* xxh3_ops_avx2();

}  // namespace rolayer::record::detail
