// SPDX-License-Identifier: Apache-2.0
// XXH3 built for AVX2 (this file alone gets -mavx2, see CMakeLists.txt); used only when the
// CPU has it (xxh3.cpp). No C++ library headers here: see xxh3_ops.h.
#include "record/xxh3_ops.h"

#if defined(ROLAYER_XXH3_AVX2) && defined(__AVX2__)
#include "record/xxh3_kernels.inc"
const rolayer::record::detail::Xxh3Ops* rolayer::record::detail::xxh3_ops_avx2() { return &kOps; }
#else
const rolayer::record::detail::Xxh3Ops* rolayer::record::detail::xxh3_ops_avx2() { return nullptr; }
#endif
