/* SPDX-License-Identifier: Apache-2.0 */
// Private to lib/record (and its tests): the constants and primitives of the fidelity record's
// on-disk format. docs/record-format.md is the normative description; keep the two in step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rolayer::record::format {

// File header, stored uncompressed: 6 magic bytes, version, flags.
inline constexpr uint8_t kMagic[6] = {0x89, 'R', 'L', 'F', 'R', '\n'};
// The version the writer writes. Version 2 adds the Blocks item; a version 1 record is a
// valid version 2 record without Blocks items, and the reader reads both.
inline constexpr uint8_t kVersion = 2;
inline constexpr uint8_t kMinVersion = 1;
inline constexpr size_t kHeaderSize = 8;

// Item tags inside the compressed body.
inline constexpr uint8_t kTagRaw = 0x01;
inline constexpr uint8_t kTagFile = 0x02;
inline constexpr uint8_t kTagEnd = 0x03;
inline constexpr uint8_t kTagBlocks = 0x05;  // version 2: per-block XXH3 of the File before it

// zstd parameters. The reader refuses frames whose window is larger than 1 << kMaxWindowLog.
inline constexpr int kZstdLevel = 3;
inline constexpr int kWindowLog = 19;  // 512 KiB: each reader holds the window (was 21: 2 MiB)
inline constexpr int kMaxWindowLog = 23;

// Limits.
inline constexpr size_t kRawCoalesce = 64 * 1024;     // writer: largest Raw item it emits
inline constexpr size_t kMaxRawPiece = 1024 * 1024;   // reader: largest Raw piece it returns
inline constexpr size_t kMaxPath = 64 * 1024;         // bytes of a File path
inline constexpr uint64_t kMaxFragments = 1u << 20;   // fragments of one File
inline constexpr size_t kMaxVarint = 10;              // bytes of one varint (LEB128, 64 bits)
inline constexpr size_t kBodyBlock = 256 * 1024;     // decompressed body bytes per BodyBlocks call
inline constexpr uint64_t kBlockSize = 1u << 20;      // payload bytes per block of a Blocks item
inline constexpr uint64_t kMaxBlocks = 1u << 20;      // blocks of one File (payloads up to 1 TiB)

// Blocks a File of `size` payload bytes has in a Blocks item: 0 up to one block (the whole
// payload's XXH3 covers it), else ceil(size / kBlockSize).
inline constexpr uint64_t blocks_for(uint64_t size) {
  return size <= kBlockSize ? 0 : size / kBlockSize + (size % kBlockSize ? 1 : 0);
}

// Unsigned LEB128: 7 bits a byte, least significant group first, high bit = more bytes follow.
// Writes at most kMaxVarint bytes to p; returns how many.
inline size_t put_varint(uint8_t* p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = static_cast<uint8_t>(v) | 0x80;
    v >>= 7;
  }
  p[n++] = static_cast<uint8_t>(v);
  return n;
}

inline void append_varint(std::string& s, uint64_t v) {
  uint8_t buf[kMaxVarint];
  s.append(reinterpret_cast<const char*>(buf), put_varint(buf, v));
}

inline void put_u64le(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// A File path must be a cleaned relative path (what tar::clean_path returns for anything but
// the root): non-empty, at most kMaxPath bytes, no NUL, no leading or trailing '/', no empty,
// "." or ".." component. Returns nullptr when p is fine, else what is wrong with it.
inline const char* path_problem(std::string_view p) {
  if (p.empty()) return "empty file path";
  if (p.size() > kMaxPath) return "file path too long";
  if (p.find('\0') != std::string_view::npos) return "NUL byte in file path";
  size_t start = 0;
  while (true) {
    size_t slash = p.find('/', start);
    std::string_view comp = p.substr(start, slash == std::string_view::npos ? p.npos : slash - start);
    if (comp.empty() || comp == "." || comp == "..") return "file path is not a clean relative path";
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return nullptr;
}

}  // namespace rolayer::record::format
