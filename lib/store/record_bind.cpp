#include "store/record_bind.h"

#include <mutex>

#include "core/error.h"
#include "digest/digest.h"
#include "store/state.h"

namespace rolayer {

void ensure_record_binding_column(sql::Db& db) {
  {
    sql::Stmt q(db, "SELECT 1 FROM pragma_table_info('layers') WHERE name = 'record_digests'");
    if (q.step()) return;
  }
  db.exec("ALTER TABLE layers ADD COLUMN record_digests BLOB");
}

std::string record_chunk_digest(const std::string& chain_id, int64_t seq, const uint8_t* data, size_t len) {
  Hasher h;
  static const char kDomain[] = "rolayer fidelity record chunk v1";
  h.update(kDomain, sizeof kDomain);  // with its NUL
  h.update(chain_id.data(), chain_id.size());
  uint8_t s[8];
  for (int i = 0; i < 8; ++i) s[i] = static_cast<uint8_t>(static_cast<uint64_t>(seq) >> (8 * i));
  h.update("\0", 1);
  h.update(s, sizeof s);
  h.update(data, len);
  return std::string(h.finish().hex());
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
  sql::Stmt q(*st.db, "SELECT record_digests FROM layers WHERE chain_id = ?");
  q.bind(1, chain_id);
  if (!q.step()) throw Error(Code::Corrupt, "the database row of layer " + chain_id + " is missing");
  if (q.is_null(0)) return std::nullopt;
  return q.blob(0);
}

}  // namespace rolayer
