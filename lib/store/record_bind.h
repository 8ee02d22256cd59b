// Private to lib/store: binding a layer's fidelity record to the layer (docs/record-format.md,
// "Binding to the layer"). Every 256 KiB chunk of the record, as stored in the `records` table,
// has a SHA-256 over the layer's ChainID, the chunk's number and its bytes; the list of those
// digests is kept in the layer's own row (layers.record_digests). The export checks each chunk
// before any byte decoded from it goes out, so a record swapped for another self-consistent one
// (another layer's, an older copy, a forged one) fails before its first byte, not at the DiffID
// check at the end. Rows written before the column existed (NULL) are read as before.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "store/sqlite.h"

namespace rolayer {

struct StoreState;

// Adds the column layers.record_digests when the table lacks it (idempotent; the schema
// version does not change: older libraries ignore the column and write NULL).
void ensure_record_binding_column(sql::Db& db);

// The digest of chunk `seq` of chain_id's record: 64 lowercase hex characters.
std::string record_chunk_digest(const std::string& chain_id, int64_t seq, const uint8_t* data, size_t len);

// Stores the concatenated chunk digests in chain_id's row (inside the caller's transaction).
void store_record_digests(sql::Db& db, const std::string& chain_id, const std::string& digests);

// The concatenated chunk digests of chain_id's row; nullopt when the row has none (a layer
// registered before records were bound).
std::optional<std::string> load_record_digests(StoreState& st, const std::string& chain_id);

}  // namespace rolayer
