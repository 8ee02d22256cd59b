/* SPDX-License-Identifier: Apache-2.0 */
// Shared helpers of the fuzz targets (tests/fuzz/*.cpp). Each target defines
// LLVMFuzzerTestOneInput; it is linked either with libFuzzer (ROLAYER_BUILD_FUZZ=ON, clang) or
// with replay_main.cpp (every build: the corpora and regressions replay under ctest).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace rolayer::fuzz {

// A broken invariant: print what and where, then abort (libFuzzer and the replay test both
// report an abort as a failure, with the input that caused it).
[[noreturn]] inline void fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "\n*** fuzz invariant broken at %s:%d: %s\n", file, line, what.c_str());
  std::fflush(stderr);
  std::abort();
}

// Deterministic pseudo-random numbers (splitmix64), seeded from the input, so that a crash
// replays identically.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // A chunk length for feeding a stream: mostly small and odd, sometimes block-sized or large.
  size_t chunk() {
    switch (next() % 8) {
      case 0: return 1;
      case 1: return 1 + next() % 7;
      case 2: return 1 + next() % 100;
      case 3: return 511 + next() % 3;
      case 4: return 1 + next() % 1024;
      case 5: return 1 + next() % 8192;
      case 6: return 1024 * (1 + next() % 64);
      default: return 1 + next() % 600;
    }
  }

 private:
  uint64_t s_;
};

// FNV-1a over the input: the seed of the chunkings.
inline uint64_t seed_of(const uint8_t* data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull ^ size;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace rolayer::fuzz

#define FUZZ_CHECK(cond, what)                                           \
  do {                                                                   \
    if (!(cond)) ::rolayer::fuzz::fail(__FILE__, __LINE__, (what));      \
  } while (0)
