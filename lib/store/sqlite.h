/* SPDX-License-Identifier: Apache-2.0 */
// A thin RAII layer over SQLite: a connection, prepared statements and transactions.
// Every SQLite failure becomes rolayer::Error (Code::Busy for SQLITE_BUSY/LOCKED, Code::Corrupt
// for SQLITE_CORRUPT/NOTADB, Code::Io otherwise).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace rolayer::sql {

struct DbOptions {
  bool read_only = false;   // SQLITE_OPEN_READONLY
  bool immutable = false;   // a read-only file system: no -wal/-shm can be made, nothing changes
  int busy_timeout_ms = 0;  // how long a statement waits for another connection's lock
};

class Db {
 public:
  Db() = default;
  Db(const std::string& path, const DbOptions& opts);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  void exec(const char* sql);
  sqlite3* raw() const { return db_; }
  const std::string& path() const { return path_; }
  [[noreturn]] void fail(int rc, const std::string& what) const;

 private:
  friend class Stmt;
  // Prepared statements kept for reuse, by SQL text: preparing (parsing) is most of the cost
  // of the store's short statements. Guarded like the connection itself (the store's mutex).
  sqlite3_stmt* take(const char* sql);
  void give_back(const char* sql, sqlite3_stmt* st);

  sqlite3* db_ = nullptr;
  std::string path_;
  int busy_ms_ = 0;
  std::unordered_map<std::string, std::vector<sqlite3_stmt*>> idle_;
};

class Stmt {
 public:
  Stmt(Db& db, const char* sql);
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& bind(int i, std::string_view text);   // 1-based
  Stmt& bind(int i, int64_t v);
  Stmt& bind_blob(int i, const void* data, size_t len);
  Stmt& bind_null(int i);
  // Steps once: true when a row is available, false when done.
  bool step();
  void run() { while (step()) {} }
  void reset();
  bool is_null(int col) const;
  int64_t int64(int col) const;
  std::string text(int col) const;
  std::string blob(int col) const;

 private:
  Db& db_;
  const char* sql_;
  sqlite3_stmt* st_ = nullptr;
};

// BEGIN IMMEDIATE … COMMIT; rolls back in the destructor unless committed.
class Transaction {
 public:
  explicit Transaction(Db& db);
  ~Transaction();
  void commit();

 private:
  Db& db_;
  bool done_ = false;
};

}  // namespace rolayer::sql
