// SPDX-License-Identifier: Apache-2.0
// XXH3 kernel selection: the baseline build (SSE2 on x86-64, NEON on arm64, scalar elsewhere)
// and, on x86-64, an AVX2 build picked when the CPU and the OS support it.
#include "record/xxh3_ops.h"
#include "record/xxh3_kernels.inc"

namespace rolayer::record::detail {

const Xxh3Ops* xxh3_ops_baseline() { return &kOps; }

const Xxh3Ops& xxh3_ops() {
  static const Xxh3Ops* ops = [] {
#if defined(__x86_64__) || defined(__i386__)
    const Xxh3Ops* avx2 = xxh3_ops_avx2();
    if (avx2 && __builtin_cpu_supports("avx2")) return avx2;
#endif
    return xxh3_ops_baseline();
  }();
  return *ops;
}

}  // namespace rolayer::record::detail
