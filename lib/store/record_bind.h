/* SPDX-License-Identifier: Apache-2.0 */
// Private to lib/store: binding a layer's fidelity record to the layer (docs/record-format.md,
// "Binding a record to its layer"). The record's decompressed body is cut in blocks of
// record::format::kBodyBlock bytes; each block has a SHA-256 bound to the layer's ChainID and
// the block's number, and the list of those digests is kept in the layer's own row
// (layers.record_digests). The export checks each block before any item is decoded from it,
// so a record swapped for another self-consistent one (another layer's, an older copy, a
// forged one) fails before its first byte goes out, not at the DiffID check at the end.
// Rows written before the column existed (NULL) are read as before.
//
// Rows written since session 8 also bind the record's stored chunks (the records table's rows
// as they are, layers.record_chunk_digests): each chunk is checked as it is read from the
// database, before the decoder sees it, and the body is then not hashed a second time (the
// body's SHA-256 was 3-5 % of an export's CPU). Such a row's body digests are still written,
// for older libraries; a row without chunk digests is checked by its body digests as before.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/io.h"
#include "record/record.h"
#include "record/xxh3.h"
#include "store/sqlite.h"

namespace rolayer {

struct StoreState;

// Adds the columns layers.record_digests, layers.record_chunk_digests and layers.stream_blocks
// when the table lacks them (idempotent; the schema version does not change: older libraries
// ignore the columns and write NULL).
void ensure_record_binding_column(sql::Db& db);

// Drivers with exact diffs keep no record: their stored stream is checked per 1 MiB block
// (record::format::kBlockSize) against XXH3-64 sums taken at register and kept in the layer's
// row (layers.stream_blocks, 8 bytes little endian per block).
class StreamBlockSums : public ByteSource {
 public:
  StreamBlockSums(ByteSource& in, bool enabled) : in_(in), enabled_(enabled) {}
  size_t read(uint8_t* buf, size_t cap) override;
  // The sums of every byte read, the last block shorter (call once, at the end of input).
  std::string finish();

 private:
  ByteSource& in_;
  bool enabled_;
  std::string out_;
  uint64_t in_block_ = 0;
  record::Xxh3 xxh_;
};
void store_stream_blocks(sql::Db& db, const std::string& chain_id, const std::string& sums);
std::optional<std::string> load_stream_blocks(StoreState& st, const std::string& chain_id);

// At register: the SHA-256 of each body block as the record is written.
class RecordBodyHashes : public record::BodyBlocks {
 public:
  void block(uint64_t index, const uint8_t* data, size_t len) override;
  // The bound digests for the row of chain_id (64 hex characters per block).
  std::string bound(const std::string& chain_id) const;

 private:
  std::vector<std::string> sha_;  // hex SHA-256 of each block
};

// Stores the bound digests in chain_id's row (inside the caller's transaction).
void store_record_digests(sql::Db& db, const std::string& chain_id, const std::string& digests);

// The bound digests of chain_id's row; nullopt when the row has none (a layer registered
// before records were bound).
std::optional<std::string> load_record_digests(StoreState& st, const std::string& chain_id);

// At register and at export: the bound SHA-256 of the stored chunk number seq of chain_id's
// record (64 hex characters).
std::string bind_record_chunk(const std::string& chain_id, uint64_t seq, const uint8_t* data, size_t len);

// Stores the bound chunk digests in chain_id's row (inside the caller's transaction).
void store_record_chunk_digests(sql::Db& db, const std::string& chain_id, const std::string& digests);

// The bound chunk digests of chain_id's row; nullopt when the row has none (registered before
// chunks were bound, or by an older library).
std::optional<std::string> load_record_chunk_digests(StoreState& st, const std::string& chain_id);

// At export: checks each stored chunk of the record, as it is read, against the row's chunk
// digests (Error(Code::Corrupt) when it differs or when there are more chunks than registered);
// finish(n) checks that n chunks were read.
class RecordChunkCheck {
 public:
  RecordChunkCheck(std::string chain_id, std::string digests)
      : chain_id_(std::move(chain_id)), digests_(std::move(digests)) {}
  void chunk(uint64_t seq, const std::string& data) const;
  void finish(uint64_t chunks) const;

 private:
  std::string chain_id_, digests_;
};

// The error of a record that is not the one bound to chain_id's row.
[[noreturn]] void record_not_registered(const std::string& chain_id, const std::string& why);

// At export: checks each body block against the row's digests (Error(Code::Corrupt) when it
// differs or when there are more blocks than registered); finish() checks the count.
class RecordBodyCheck : public record::BodyBlocks {
 public:
  RecordBodyCheck(std::string chain_id, std::string digests)
      : chain_id_(std::move(chain_id)), digests_(std::move(digests)) {}
  void block(uint64_t index, const uint8_t* data, size_t len) override;
  void finish() const;

 private:
  [[noreturn]] void swapped(const std::string& why) const;
  std::string chain_id_, digests_;
  uint64_t seen_ = 0;
};

}  // namespace rolayer
