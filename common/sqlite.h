#ifndef CUSTOS_COMMON_SQLITE_H_
#define CUSTOS_COMMON_SQLITE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

struct sqlite3;
struct sqlite3_stmt;

namespace custos {

// A prepared statement borrowed from a connection's cache. Resets itself
// (bindings included) when destroyed, so the cached statement can be reused.
// Not thread-safe; lives within one transaction.
class SqliteStatement {
 public:
  SqliteStatement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;
  ~SqliteStatement();

  // Parameters are 1-based, as in SQLite. Binding errors surface on Step.
  SqliteStatement& Bind(int index, absl::string_view value);
  SqliteStatement& Bind(int index, const char* value) {
    return Bind(index, absl::string_view(value));
  }
  SqliteStatement& Bind(int index, int64_t value);
  SqliteStatement& Bind(int index, int value) {
    return Bind(index, static_cast<int64_t>(value));
  }
  SqliteStatement& BindBlob(int index, absl::string_view bytes);
  SqliteStatement& BindNull(int index);
  // Binds NULL when `value` is empty.
  SqliteStatement& BindOptional(int index, absl::string_view value);

  // true: a row is available; false: done. Errors: ALREADY_EXISTS for
  // unique/primary-key violations, UNAVAILABLE when the database stayed
  // busy past the timeout, INTERNAL otherwise.
  absl::StatusOr<bool> Step();
  // Steps to completion, ignoring rows.
  absl::Status Run();
  // Rewinds the statement and clears its bindings, to run it again.
  void Reset();

  // Columns are 0-based. NULL reads as "" / 0. ColumnText also returns a
  // BLOB's bytes.
  std::string ColumnText(int index) const;
  int64_t ColumnInt64(int index) const;
  bool ColumnIsNull(int index) const;

 private:
  sqlite3_stmt* stmt_;
  sqlite3* db_;
  int bind_error_ = 0;
};

// One SQLite connection with a prepared-statement cache.
// Not thread-safe: used by one transaction at a time (SqliteDatabase hands
// connections out exclusively).
class SqliteConnection {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteConnection>> Open(
      const std::string& path, int busy_timeout_ms);
  ~SqliteConnection();

  // Prepares `sql`, or reuses the statement prepared from the same text.
  absl::StatusOr<SqliteStatement> Prepare(absl::string_view sql);
  // Runs one or more statements without results.
  absl::Status Exec(const std::string& sql);
  int64_t LastInsertRowId() const;
  // Rows changed by the last statement.
  int Changes() const;

 private:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  // Keyed by SQL text (looked up without copying).
  absl::flat_hash_map<std::string, sqlite3_stmt*> statements_;
};

struct SqliteMigration {
  int version;
  std::string sql;
};

struct SqliteOptions {
  std::string path;
  // Default: 5 s. How long a transaction waits for another process's lock.
  int busy_timeout_ms = 5000;
  // Default: 8. Connections for concurrent readers.
  int pool_size = 8;
};

// An SQLite database in WAL mode (readers never block the writer), with
// versioned migrations and one transaction per operation.
// Thread-safe.
class SqliteDatabase {
 public:
  // Opens (creating if needed) and applies every migration with a version
  // above the stored one, each in its own IMMEDIATE transaction, so several
  // processes starting at once apply each migration exactly once.
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> Open(
      const SqliteOptions& options,
      const std::vector<SqliteMigration>& migrations);

  using Body = std::function<absl::Status(SqliteConnection&)>;

  // Runs `body` in a write transaction (BEGIN IMMEDIATE). Commits when it
  // returns OK, rolls back otherwise and returns its status. Writers inside
  // this process are serialized here rather than by SQLite's busy polling.
  absl::Status Write(const Body& body);
  // Runs `body` in a read transaction: one consistent snapshot.
  absl::Status Read(const Body& body);

 private:
  SqliteDatabase() = default;
  absl::Status Transaction(const char* begin, const Body& body);
  SqliteConnection* Acquire();
  void Release(SqliteConnection* connection);

  absl::Mutex write_mu_;
  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<SqliteConnection>> all_;
  std::vector<SqliteConnection*> idle_ ABSL_GUARDED_BY(pool_mu_);
};

}  // namespace custos

#endif  // CUSTOS_COMMON_SQLITE_H_
