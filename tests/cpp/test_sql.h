// SPDX-License-Identifier: Apache-2.0
// A store's metadata.db opened directly by tests that tamper with it or read it back.
#ifndef ROLAYER_TEST_SQL_H
#define ROLAYER_TEST_SQL_H

#include <sqlite3.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace rolayer {

struct Sql {
  Sql(const Sql&) = delete;
  Sql& operator=(const Sql&) = delete;
  sqlite3* db = nullptr;
  explicit Sql(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
      throw std::runtime_error("sqlite open " + path);
  }
  ~Sql() { sqlite3_close(db); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string m = err ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error(sql + ": " + m);
    }
  }
  std::string text(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      if (t) out = reinterpret_cast<const char*>(t);
    }
    sqlite3_finalize(st);
    return out;
  }
  std::vector<std::pair<int64_t, std::string>> blobs(const std::string& chain) {
    std::vector<std::pair<int64_t, std::string>> out;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT seq, data FROM records WHERE chain_id = ? ORDER BY seq", -1, &st, nullptr);
    sqlite3_bind_text(st, 1, chain.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
      const char* p = static_cast<const char*>(sqlite3_column_blob(st, 1));
      out.emplace_back(sqlite3_column_int64(st, 0), std::string(p, p + sqlite3_column_bytes(st, 1)));
    }
    sqlite3_finalize(st);
    return out;
  }
  void set_blob(const std::string& chain, int64_t seq, const std::string& data) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "UPDATE records SET data = ? WHERE chain_id = ? AND seq = ?", -1, &st, nullptr);
    sqlite3_bind_blob(st, 1, data.data(), static_cast<int>(data.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, chain.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, seq);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) throw std::runtime_error("update records failed");
  }
};

}  // namespace rolayer

#endif
