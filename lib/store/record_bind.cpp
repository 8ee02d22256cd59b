// SPDX-License-Identifier: Apache-2.0
#include "store/record_bind.h"

#include <algorithm>
#include <mutex>

#include "core/error.h"
#include "digest/digest.h"
#include "record/format.h"
#include "store/state.h"

namespace rolayer {
namespace {

constexpr size_t kHex = 64;  // one SHA-256 in hex

// SHA-256 over a domain string, the ChainID, the block number and the block's own SHA-256.
std::string bind(const std::string& chain_id, uint64_t index, const std::string& block_sha) {
  Hasher h;
  static const char kDomain[] = "rolayer fidelity record body block v1";
  h.update(kDomain, sizeof kDomain);  // with its NUL
  h.update(chain_id.data(), chain_id.size());
  uint8_t s[9] = {0};
  for (int i = 0; i < 8; ++i) s[1 + i] = static_cast<uint8_t>(index >> (8 * i));
  h.update(s, sizeof s);
  h.update(block_sha.data(), block_sha.size());
  return std::string(h.finish().hex());
}

std::string sha_hex(const uint8_t* data, size_t len) { return std::string(sha256_of(data, len).hex()); }

}  // namespace

void ensure_stream_blocks_column(sql::Db& db);

void ensure_record_binding_column(sql::Db& db) {
  ensure_stream_blocks_column(db);
  {
    sql::Stmt q(db, "SELECT 1 FROM pragma_table_info('layers') WHERE name = 'record_digests'");
    if (q.step()) return;
  }
  db.exec("ALTER TABLE layers ADD COLUMN record_digests BLOB");
}

void ensure_stream_blocks_column(sql::Db& db) {
  {
    sql::Stmt q(db, "SELECT 1 FROM pragma_table_info('layers') WHERE name = 'stream_blocks'");
    if (q.step()) return;
  }
  db.exec("ALTER TABLE layers ADD COLUMN stream_blocks BLOB");
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
  sql::Stmt(db, "UPDATE layers SET stream_blocks = ? WHERE chain_id = ?")
      .bind_blob(1, sums.data(), sums.size())
      .bind(2, chain_id)
      .run();
}

std::optional<std::string> load_stream_blocks(StoreState& st, const std::string& chain_id) {
  std::lock_guard<std::mutex> g(st.mu);
  st.check_open();
  {
    // A store made by an older library and opened on a read-only file system has no such
    // column (it is added by the first writable open): its layers have no sums, as before.
    sql::Stmt c(*st.db, "SELECT 1 FROM pragma_table_info('layers') WHERE name = 'stream_blocks'");
    if (!c.step()) return std::nullopt;
  }
  sql::Stmt q(*st.db, "SELECT stream_blocks FROM layers WHERE chain_id = ?");
  q.bind(1, chain_id);
  if (!q.step()) throw Error(Code::Corrupt, "the database row of layer " + chain_id + " is missing");
  if (q.is_null(0)) return std::nullopt;
  return q.blob(0);
}

void RecordBodyHashes::block(uint64_t, const uint8_t* data, size_t len) { sha_.push_back(sha_hex(data, len)); }

std::string RecordBodyHashes::bound(const std::string& chain_id) const {
  std::string out;
  out.reserve(sha_.size() * kHex);
  for (size_t i = 0; i < sha_.size(); ++i) out += bind(chain_id, i, sha_[i]);
  return out;
}

void store_record_digests(sql::Db& db, const std::string& chain_id, const std::string& digests) {
  sql::Stmt(db, "UPDATE layers SET record_digests = ? WHERE chain_id = ?")
      .bind_blob(1, digests.data(), digests.size())
      .bind(2, chain_id)
      .run();
}

std::optional<std::string> load_record_digests(StoreState& st, const std::string& chain_id) {
  std::lock_guard<std::mutex> g(st.mu);
  st.check_open();
  {
    // A store made by an older library and opened on a read-only file system has no such
    // column (it is added by the first writable open): its layers have no sums, as before.
    sql::Stmt c(*st.db, "SELECT 1 FROM pragma_table_info('layers') WHERE name = 'record_digests'");
    if (!c.step()) return std::nullopt;
  }
  sql::Stmt q(*st.db, "SELECT record_digests FROM layers WHERE chain_id = ?");
  q.bind(1, chain_id);
  if (!q.step()) throw Error(Code::Corrupt, "the database row of layer " + chain_id + " is missing");
  if (q.is_null(0)) return std::nullopt;
  return q.blob(0);
}

void RecordBodyCheck::swapped(const std::string& why) const {
  throw Error(Code::Corrupt, "the fidelity record of layer " + chain_id_ + " is not the one registered for it (" +
                                 why + "). This may be because internal files in the layer store were modified");
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
