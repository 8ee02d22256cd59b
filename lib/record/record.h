/* SPDX-License-Identifier: Apache-2.0 */
// The fidelity record: what a layer's tar stream holds besides file payloads, so that the
// stream can be rebuilt byte for byte from the record plus the payloads a driver stores.
// On-disk format: docs/record-format.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/io.h"
#include "record/xxh3.h"
#include "tar/scanner.h"

namespace rolayer::record {

// One item of a record, in stream order.
struct Item {
  enum class Type { Raw, File } type = Type::Raw;
  // Raw: the stream bytes themselves.
  std::string raw;
  // File: the payload of a regular or sparse entry, read back from the driver.
  std::string path;             // cleaned relative path, as the driver applied it
  uint64_t size = 0;            // payload bytes in the stream
  uint64_t xxh3 = 0;            // XXH3-64 of those payload bytes
  std::vector<tar::SparseFragment> fragments;  // empty: one fragment (0, size)
  // XXH3-64 of each kBlockSize (1 MiB) block of the payload bytes, in order; empty when the
  // record has none for this File (payloads up to 1 MiB, records before format version 2).
  // Otherwise exactly format::blocks_for(size) values.
  std::vector<uint64_t> blocks;
};

// Per-block XXH3-64 of a payload as its bytes go by (for Item::blocks).
class BlockSums {
 public:
  // A new payload of `size` bytes; sums are kept only when it has more than one block and at
  // most format::kMaxBlocks.
  void start(uint64_t size);
  void update(const uint8_t* data, size_t len);
  // The sums (empty when none are kept); the payload must have had exactly `size` bytes.
  std::vector<uint64_t> finish();

 private:
  bool keep_ = false;
  uint64_t in_block_ = 0;
  Xxh3 xxh_;
  std::vector<uint64_t> sums_;
};

struct Summary {
  uint64_t stream_size = 0;     // total bytes of the stream
  uint64_t raw_bytes = 0;       // bytes kept in Raw items
  uint64_t payload_bytes = 0;   // bytes in File items
  uint64_t files = 0;           // number of File items
};

// Sees the record's decompressed body in blocks of format::kBodyBlock bytes (the last one
// shorter), in order: the writer shows each block once it is complete; the reader shows each
// block before it decodes any item from it (so a check that throws stops the reader before a
// byte of that block is returned). Lets the store bind a record to its layer.
class BodyBlocks {
 public:
  virtual ~BodyBlocks() = default;
  virtual void block(uint64_t index, const uint8_t* data, size_t len) = 0;
};

// Writes a record to a sink as items arrive (streaming; bounded memory).
class Writer {
 public:
  explicit Writer(ByteSink& out, BodyBlocks* observer = nullptr);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  void add_raw(const uint8_t* data, size_t len);   // consecutive raw bytes may be coalesced
  void add_file(const Item& file);                 // type must be File
  void finish();                                   // writes the trailer (Summary); flushes
  const Summary& summary() const;

 private:
  struct Impl;
  Impl* impl_;
};

// Reads a record back. Every malformed, truncated or inconsistent record throws
// Error(Code::Corrupt); it never crashes or allocates without bound.
class Reader {
 public:
  explicit Reader(ByteSource& in, BodyBlocks* check = nullptr);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;
  // Next item; false at the end (after the trailer was checked).
  // Raw items come in pieces of at most 1 MiB.
  bool next(Item& item);
  const Summary& summary() const;  // valid once next() returned false

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace rolayer::record
