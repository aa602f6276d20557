#ifndef CUSTOS_COMMON_SQLITE_H_
#define CUSTOS_COMMON_SQLITE_H_

#include <cstdint>
#include <deque>
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
#include "common/database.h"

struct sqlite3;
struct sqlite3_stmt;

namespace custos {

// A prepared statement borrowed from a connection's cache. Resets itself
// (bindings included) when destroyed, so the cached statement can be reused.
// Not thread-safe; lives within one transaction.
class SqliteStatement : public Statement::Backend {
 public:
  SqliteStatement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;
  ~SqliteStatement() override;

  void Bind(int index, absl::string_view value) override;
  void Bind(int index, int64_t value) override;
  void BindBlob(int index, absl::string_view bytes) override;
  void BindNull(int index) override;
  // Also UNAVAILABLE when the database stayed busy past the timeout.
  absl::StatusOr<bool> Step() override;
  void Reset() override;
  std::string ColumnText(int index) const override;
  int64_t ColumnInt64(int index) const override;
  bool ColumnIsNull(int index) const override;

 private:
  void Record(int rc);

  sqlite3_stmt* stmt_;
  sqlite3* db_;
  int bind_error_ = 0;
};

// One SQLite connection with a prepared-statement cache.
// Not thread-safe: used by one transaction at a time (SqliteDatabase hands
// connections out exclusively).
class SqliteConnection : public Connection {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteConnection>> Open(
      const std::string& path, int busy_timeout_ms, bool create = true);
  ~SqliteConnection() override;

  absl::StatusOr<Statement> Prepare(absl::string_view sql) override;
  absl::Status Exec(const std::string& sql) override;
  int Changes() const override;
  // Whether a transaction is open (SQLite ends one by itself on some
  // errors: a full disk, an I/O error).
  bool InTransaction() const;

 private:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  // Keyed by SQL text (looked up without copying).
  absl::flat_hash_map<std::string, sqlite3_stmt*> statements_;
};

struct SqliteOptions {
  std::string path;
  // Default: 5 s. How long a transaction waits for another process's lock.
  int busy_timeout_ms = 5000;
  // Default: 8. Connections for concurrent readers.
  int pool_size = 8;
  // Default: true. False: a missing file is FAILED_PRECONDITION ("store is
  // missing") instead of a new empty store.
  bool create_if_missing = true;
};

// An SQLite database in WAL mode (readers never block the writer), with
// versioned migrations and one transaction per operation.
// Thread-safe.
class SqliteDatabase : public Database {
 public:
  // Opens (creating if needed) and applies every migration with a version
  // above the stored one, each in its own IMMEDIATE transaction, so several
  // processes starting at once apply each migration exactly once.
  // The file and its -wal/-shm are owner-only (0600): created so, or
  // tightened to 0600 with a warning log line when an existing one allowed
  // group or other access. Errors: INTERNAL when that is not possible (e.g.
  // another user owns the file); then nothing is opened.
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> Open(
      const SqliteOptions& options, const std::vector<Migration>& migrations);

  // Runs `body` in a write transaction (BEGIN IMMEDIATE). Commits when it
  // returns OK, rolls back otherwise and returns its status. Writers inside
  // this process are serialized here rather than by SQLite's busy polling,
  // and committed in groups: writers that arrive while a commit is under way
  // run next in one transaction, each body inside its own savepoint (rolled
  // back alone when it fails), so a burst of writes shares one fsync. The
  // result is as if they had run one after another. Should the transaction
  // itself fail (SQLite ends it on a full disk or an I/O error, or COMMIT
  // fails), each body of the group runs again alone, so one write's trouble
  // never becomes another's: bodies are re-runnable, as on PostgreSQL.
  absl::Status Write(const Body& body) override;
  // Runs `body` in a read transaction: one consistent snapshot.
  absl::Status Read(const Body& body) override;
  DatabaseStats Stats() const override;
  // WAL readers take no lock a writer holds, and the file is local.
  bool ReadsMayBlock() const override { return false; }

 private:
  SqliteDatabase() = default;
  absl::Status Transaction(bool write, const Body& body);
  SqliteConnection* Acquire();
  void Release(SqliteConnection* connection);

  struct PendingWrite {
    const Body* body;
    absl::Status status;
    bool done = false;
  };
  // Runs `group` in one transaction; false when the transaction failed as a
  // whole (then nothing of it was committed).
  bool CommitGroup(const std::vector<PendingWrite*>& group);

  absl::Mutex write_mu_;
  // Writers waiting for the next group, oldest first; one leader at a time
  // runs a group.
  absl::Mutex group_mu_;
  std::deque<PendingWrite*> waiting_ ABSL_GUARDED_BY(group_mu_);
  bool leading_ ABSL_GUARDED_BY(group_mu_) = false;
  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<SqliteConnection>> all_;
  std::vector<SqliteConnection*> idle_ ABSL_GUARDED_BY(pool_mu_);
};

}  // namespace custos

#endif  // CUSTOS_COMMON_SQLITE_H_
