// SPDX-License-Identifier: Apache-2.0
#include "store/record_bind.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "core/error.h"
#include "digest/digest.h"
#include "record/format.h"
#include "store/state.h"

namespace rolayer {
namespace {

constexpr size_t kHex = 64;  // one SHA-256 in hex

// SHA-256 over a domain string (with its NUL), the ChainID, a NUL, u64le(index) and data, in hex.
std::string bound_sha(const char* domain, const std::string& chain_id, uint64_t index, const void* data, size_t len) {
  Hasher h;
  h.update(domain, std::strlen(domain) + 1);
  h.update(chain_id.data(), chain_id.size());
  uint8_t s[9] = {0};
  for (int i = 0; i < 8; ++i) s[1 + i] = static_cast<uint8_t>(index >> (8 * i));
  h.update(s, sizeof s);
  h.update(data, len);
  return std::string(h.finish().hex());
}

// A body block: bound over the block's own SHA-256 (hex).
std::string bind(const std::string& chain_id, uint64_t index, const std::string& block_sha) {
  return bound_sha("rolayer fidelity record body block v1", chain_id, index, block_sha.data(), block_sha.size());
}

std::string sha_hex(const uint8_t* data, size_t len) { return std::string(sha256_of(data, len).hex()); }

// Whether layers has the column (a store made by an older library and opened on a read-only
// file system has not: the column is added by the first writable open).
bool has_column(sql::Db& db, const char* name) {
  sql::Stmt c(db, "SELECT 1 FROM pragma_table_info('layers') WHERE name = ?");
  c.bind(1, std::string(name));
  return c.step();
}

// Sets a BLOB column of chain_id's row of layers (inside the caller's transaction).
void store_column(sql::Db& db, const std::string& chain_id, const char* column, const std::string& value) {
  const std::string statement = std::string("UPDATE layers SET ") + column + " = ? WHERE chain_id = ?";
  sql::Stmt(db, statement.c_str()).bind_blob(1, value.data(), value.size()).bind(2, chain_id).run();
}

// The BLOB in chain_id's row of a column of layers; nullopt when it is NULL or when the table has
// no such column (its layers have none, as before).
std::optional<std::string> load_column(StoreState& st, const std::string& chain_id, const char* column) {
  std::lock_guard<std::mutex> g(st.mu);
  st.check_open();
  if (!has_column(*st.db, column)) return std::nullopt;
  const std::string query = std::string("SELECT ") + column + " FROM layers WHERE chain_id = ?";
  sql::Stmt q(*st.db, query.c_str());
  q.bind(1, chain_id);
  if (!q.step()) throw Error(Code::Corrupt, "the database row of layer " + chain_id + " is missing");
  if (q.is_null(0)) return std::nullopt;
  return q.blob(0);
}

}  // namespace

void ensure_stream_blocks_column(sql::Db& db);

void ensure_record_binding_column(sql::Db& db) {
  ensure_stream_blocks_column(db);
  if (!has_column(db, "record_digests")) db.exec("ALTER TABLE layers ADD COLUMN record_digests BLOB");
  if (!has_column(db, "record_chunk_digests")) db.exec("ALTER TABLE layers ADD COLUMN record_chunk_digests BLOB");
}

void ensure_stream_blocks_column(sql::Db& db) {
  if (!has_column(db, "stream_blocks")) db.exec("ALTER TABLE layers ADD COLUMN stream_blocks BLOB");
}

size_t StreamBlockSums::read(uint8_t* buf, size_t cap) {
  size_t n = in_.read(buf, cap);
  if (!enabled_ || n == 0 || n > cap) return n;
  const uint8_t* p = buf;
  size_t len = n;
  while (len > 0) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(len, record::format::kBlockSize - in_block_));
    xxh_.update(p, take);
    p += take;
    len -= take;
    in_block_ += take;
    if (in_block_ == record::format::kBlockSize) {
      uint8_t le[8];
      record::format::put_u64le(le, xxh_.digest());
      out_.append(reinterpret_cast<char*>(le), 8);
      xxh_.reset();
      in_block_ = 0;
    }
  }
  return n;
}

std::string StreamBlockSums::finish() {
  if (in_block_ > 0) {
    uint8_t le[8];
    record::format::put_u64le(le, xxh_.digest());
    out_.append(reinterpret_cast<char*>(le), 8);
    in_block_ = 0;
  }
  return std::move(out_);
}

void store_stream_blocks(sql::Db& db, const std::string& chain_id, const std::string& sums) {
  store_column(db, chain_id, "stream_blocks", sums);
}

std::optional<std::string> load_stream_blocks(StoreState& st, const std::string& chain_id) {
  return load_column(st, chain_id, "stream_blocks");
}

void RecordBodyHashes::block(uint64_t, const uint8_t* data, size_t len) { sha_.push_back(sha_hex(data, len)); }

std::string RecordBodyHashes::bound(const std::string& chain_id) const {
  std::string out;
  out.reserve(sha_.size() * kHex);
  for (size_t i = 0; i < sha_.size(); ++i) out += bind(chain_id, i, sha_[i]);
  return out;
}

void store_record_digests(sql::Db& db, const std::string& chain_id, const std::string& digests) {
  store_column(db, chain_id, "record_digests", digests);
}

std::optional<std::string> load_record_digests(StoreState& st, const std::string& chain_id) {
  return load_column(st, chain_id, "record_digests");
}

void record_not_registered(const std::string& chain_id, const std::string& why) {
  throw Error(Code::Corrupt, "the fidelity record of layer " + chain_id + " is not the one registered for it (" +
                                 why + "). This may be because internal files in the layer store were modified");
}

void RecordBodyCheck::swapped(const std::string& why) const { record_not_registered(chain_id_, why); }

std::string bind_record_chunk(const std::string& chain_id, uint64_t seq, const uint8_t* data, size_t len) {
  return bound_sha("rolayer fidelity record chunk v1", chain_id, seq, data, len);  // over the chunk's bytes
}

void store_record_chunk_digests(sql::Db& db, const std::string& chain_id, const std::string& digests) {
  store_column(db, chain_id, "record_chunk_digests", digests);
}

std::optional<std::string> load_record_chunk_digests(StoreState& st, const std::string& chain_id) {
  return load_column(st, chain_id, "record_chunk_digests");
}

void RecordChunkCheck::chunk(uint64_t seq, const std::string& data) const {
  const size_t registered = digests_.size() / kHex;
  if (seq >= registered)
    record_not_registered(chain_id_, "it has more than the " + std::to_string(registered) + " chunks registered");
  if (bind_record_chunk(chain_id_, seq, reinterpret_cast<const uint8_t*>(data.data()), data.size()) !=
      std::string_view(digests_).substr(seq * kHex, kHex))
    record_not_registered(chain_id_, "chunk " + std::to_string(seq) + " differs from what was registered");
}

void RecordChunkCheck::finish(uint64_t chunks) const {
  if (chunks * kHex != digests_.size())
    record_not_registered(chain_id_, "it has " + std::to_string(chunks) + " chunks, " +
                                         std::to_string(digests_.size() / kHex) + " were registered");
}

void RecordBodyCheck::block(uint64_t index, const uint8_t* data, size_t len) {
  const size_t registered = digests_.size() / kHex;
  if (index >= registered)
    swapped("it has more than the " + std::to_string(registered) + " body blocks registered");
  if (bind(chain_id_, index, sha_hex(data, len)) != std::string_view(digests_).substr(index * kHex, kHex))
    swapped("body block " + std::to_string(index) + " differs from what was registered");
  seen_ = index + 1;
}

void RecordBodyCheck::finish() const {
  if (seen_ * kHex != digests_.size())
    swapped("it has " + std::to_string(seen_) + " body blocks, " + std::to_string(digests_.size() / kHex) +
            " were registered");
}

}  // namespace rolayer
