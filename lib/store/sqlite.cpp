// SPDX-License-Identifier: Apache-2.0
#include "store/sqlite.h"

#include <sqlite3.h>

#include <cstdio>

#include "core/error.h"

namespace rolayer::sql {

Db::Db(const std::string& path, const DbOptions& o) : path_(path), busy_ms_(o.busy_timeout_ms) {
  // NOFOLLOW: the database file itself must not be a symbolic link (the store checks the
  // directory and the -wal/-shm files before opening).
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_URI;
  flags |= o.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  // A URI, so that an immutable (read-only file system) database can be asked for; the path is
  // percent-encoded where it has to be.
  std::string uri = "file:";
  for (unsigned char c : path) {
    if (c == '%' || c == '?' || c == '#' || c < 0x21 || c >= 0x7f) {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", c);
      uri += b;
    } else {
      uri += static_cast<char>(c);
    }
  }
  if (o.immutable) uri += "?immutable=1";
  int rc = sqlite3_open_v2(uri.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    Code code = (rc == SQLITE_CANTOPEN || rc == SQLITE_PERM || rc == SQLITE_READONLY) ? Code::Io : Code::Corrupt;
    throw Error(code, "cannot open the store database " + path + ": " + msg);
  }
  sqlite3_extended_result_codes(db_, 0);
  if (busy_ms_ > 0) sqlite3_busy_timeout(db_, busy_ms_);
}

Db::~Db() {
  for (auto& kv : idle_)
    for (sqlite3_stmt* st : kv.second) sqlite3_finalize(st);
  if (db_) sqlite3_close_v2(db_);
}

sqlite3_stmt* Db::take(const char* sql) {
  auto it = idle_.find(sql);
  if (it != idle_.end() && !it->second.empty()) {
    sqlite3_stmt* st = it->second.back();
    it->second.pop_back();
    return st;
  }
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(st);
    fail(rc, "preparing a statement");
  }
  return st;
}

void Db::give_back(const char* sql, sqlite3_stmt* st) {
  constexpr size_t kKeepPerStatement = 2;
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  auto& v = idle_[sql];
  if (v.size() >= kKeepPerStatement) {
    sqlite3_finalize(st);
    return;
  }
  try {
    v.push_back(st);
  } catch (...) {
    sqlite3_finalize(st);
  }
}

void Db::fail(int rc, const std::string& what) const {
  std::string msg = path_ + ": " + what + ": " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
  int sys = db_ ? sqlite3_system_errno(db_) : 0;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      throw Error(Code::Busy, "store is busy: " + msg + " (another process, or another open of this store in this "
                              "process, kept the database's write lock for longer than the busy timeout of " +
                              std::to_string(busy_ms_) + " ms)");
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: throw Error(Code::Corrupt, "store database is damaged: " + msg);
    case SQLITE_NOMEM: throw Error(Code::NoMem, msg);
    case SQLITE_FULL: throw Error(Code::Io, "store database error: " + msg).with_errno(sys ? sys : ENOSPC);
    case SQLITE_READONLY:
      throw Error(Code::Io, "store database error: " + msg).with_errno(sys ? sys : EACCES);
    default: throw Error(Code::Io, "store database error: " + msg).with_errno(sys);
  }
}

void Db::exec(const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    sqlite3_free(err);
    fail(rc, std::string("executing ") + std::string(sql).substr(0, 60));
  }
}

Stmt::Stmt(Db& db, const char* sql) : db_(db), sql_(sql), st_(db.take(sql)) {}

Stmt::~Stmt() {
  try {
    db_.give_back(sql_, st_);
  } catch (...) {
    sqlite3_finalize(st_);
  }
}

Stmt& Stmt::bind(int i, std::string_view text) {
  int rc = sqlite3_bind_text(st_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_.fail(rc, "binding");
  return *this;
}
Stmt& Stmt::bind(int i, int64_t v) {
  int rc = sqlite3_bind_int64(st_, i, v);
  if (rc != SQLITE_OK) db_.fail(rc, "binding");
  return *this;
}
Stmt& Stmt::bind_blob(int i, const void* data, size_t len) {
  int rc = sqlite3_bind_blob64(st_, i, data ? data : "", len, SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_.fail(rc, "binding");
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  int rc = sqlite3_bind_null(st_, i);
  if (rc != SQLITE_OK) db_.fail(rc, "binding");
  return *this;
}

bool Stmt::step() {
  int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3_reset(st_);
  db_.fail(rc, "running a statement");
}

void Stmt::reset() {
  sqlite3_reset(st_);
  sqlite3_clear_bindings(st_);
}

bool Stmt::is_null(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
int64_t Stmt::int64(int col) const { return sqlite3_column_int64(st_, col); }
std::string Stmt::text(int col) const {
  const unsigned char* p = sqlite3_column_text(st_, col);
  int n = sqlite3_column_bytes(st_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), n) : std::string();
}
std::string Stmt::blob(int col) const {
  const void* p = sqlite3_column_blob(st_, col);
  int n = sqlite3_column_bytes(st_, col);
  return p ? std::string(static_cast<const char*>(p), n) : std::string();
}

Transaction::Transaction(Db& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }
Transaction::~Transaction() {
  if (!done_) sqlite3_exec(db_.raw(), "ROLLBACK", nullptr, nullptr, nullptr);
}
void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

}  // namespace rolayer::sql
