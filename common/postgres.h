#ifndef CUSTOS_COMMON_POSTGRES_H_
#define CUSTOS_COMMON_POSTGRES_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/database.h"

struct pg_conn;
struct pg_result;

namespace custos {

// PostgreSQL's text of a statement written with SQLite-style parameters:
// `?N` becomes `$N`, and each bare `?` takes the next number. Quoted strings
// are left alone. The stores' SQL keeps one spelling for both backends; a
// parameter whose first use gives PostgreSQL no type (`?1 IS NULL`) takes a
// CAST, which SQLite reads the same way.
std::string PostgresParameters(absl::string_view sql);

// PostgreSQL's text of a migration written for SQLite: INTEGER becomes
// BIGINT (SQLite's integers are 64-bit), BLOB becomes BYTEA, TEXT compares
// bytes (COLLATE "C", as SQLite does) and `INTEGER PRIMARY KEY
// AUTOINCREMENT` an identity column.
std::string PostgresSchema(absl::string_view sql);

// What a connection remembers of its last statement.
struct PostgresSession {
  // Rows changed by the last statement.
  int changes = 0;
  // A statement of the current transaction failed because a concurrent one
  // won (serialization failure or deadlock): the transaction is retried.
  bool conflict = false;
};

// A statement of one PostgreSQL connection, with the same surface as
// SqliteStatement: bind, Step through the rows, read columns. It runs when
// first stepped. Not thread-safe; lives within one transaction.
class PostgresStatement : public Statement::Backend {
 public:
  PostgresStatement(pg_conn* conn, std::string name, PostgresSession* session)
      : conn_(conn), name_(std::move(name)), session_(session) {}
  PostgresStatement(const PostgresStatement&) = delete;
  PostgresStatement& operator=(const PostgresStatement&) = delete;
  ~PostgresStatement() override;

  void Bind(int index, absl::string_view value) override;
  void Bind(int index, int64_t value) override;
  void BindBlob(int index, absl::string_view bytes) override;
  void BindNull(int index) override;
  // Also ABORTED for serialization failures and deadlocks (recorded in the
  // session, so the transaction is retried), and INVALID_ARGUMENT for text
  // holding a NUL character (PostgreSQL's text cannot).
  absl::StatusOr<bool> Step() override;
  void Reset() override;
  std::string ColumnText(int index) const override;
  int64_t ColumnInt64(int index) const override;
  bool ColumnIsNull(int index) const override;

 private:
  struct Parameter {
    std::optional<std::string> value;
    bool binary = false;
  };

  pg_conn* conn_;
  std::string name_;
  PostgresSession* session_;
  std::vector<Parameter> parameters_;
  pg_result* result_ = nullptr;
  int row_ = -1;
  // A text parameter held a NUL, which PostgreSQL's text cannot store.
  bool nul_in_text_ = false;
};

// One connection, with its statements prepared once by SQL text.
// Not thread-safe: used by one transaction at a time.
class PostgresConnection : public Connection {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresConnection>> Open(
      const std::string& url);
  ~PostgresConnection() override;

  absl::StatusOr<Statement> Prepare(absl::string_view sql) override;
  absl::Status Exec(const std::string& sql) override;
  int Changes() const override { return session_.changes; }
  // Connected and outside any transaction: fit to go back to the pool.
  bool Reusable() const;
  PostgresSession& session() { return session_; }

 private:
  explicit PostgresConnection(pg_conn* conn) : conn_(conn) {}
  pg_conn* conn_;
  PostgresSession session_;
  absl::flat_hash_map<std::string, std::string> statements_;  // sql → name
};

struct PostgresOptions {
  // postgresql://user:password@host:port/database?...
  std::string url;
  // Connections a process keeps open at most; a transaction waits for one
  // beyond that (as with SQLite's pool). Default: 8, the worker threads.
  int pool_size = 8;
  // Serialization failures retried per write. Default: 20.
  int max_retries = 20;
  // Writers of every replica take one PostgreSQL advisory lock (session
  // level, before BEGIN, so each transaction's snapshot is taken after the
  // previous writer committed): the stores' write sequences (one counter row
  // per store, which orders Watch history and change feeds) then never make
  // concurrent writes fail and run again. Default: true. False: optimistic
  // SERIALIZABLE writers, retried on conflict.
  bool serialize_writes = true;
};

// A PostgreSQL database shared by every replica of a service. Writes are
// SERIALIZABLE transactions, one at a time across replicas
// (PostgresOptions::serialize_writes), retried when PostgreSQL reports a
// serialization failure, so each behaves as if it ran alone — what the
// stores assume of SQLite's single writer. Reads see one snapshot and never
// wait for writers.
// Thread-safe.
class PostgresDatabase : public Database {
 public:
  // Applies every migration above the stored version (its `postgres_sql`,
  // or PostgresSchema of its `sql`), each in its own transaction under an
  // advisory lock: replicas starting at once apply each exactly once.
  static absl::StatusOr<std::unique_ptr<PostgresDatabase>> Open(
      const PostgresOptions& options, const std::vector<Migration>& migrations);

  // `body` may run more than once (after a serialization failure).
  absl::Status Write(const Body& body) override;
  absl::Status Read(const Body& body) override;
  DatabaseStats Stats() const override;

 private:
  explicit PostgresDatabase(PostgresOptions options)
      : options_(std::move(options)) {}
  absl::Status Transaction(bool write, const Body& body);
  absl::StatusOr<std::unique_ptr<PostgresConnection>> Acquire();
  // Pools the connection, or closes it when it is broken or mid-transaction.
  void Release(std::unique_ptr<PostgresConnection> connection);
  bool CanAcquire() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_ < options_.pool_size;
  }

  const PostgresOptions options_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<PostgresConnection>> idle_ ABSL_GUARDED_BY(mu_);
  // Connections open, idle or in use.
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> conflict_retries_{0};
  std::atomic<int64_t> connections_replaced_{0};
};

}  // namespace custos

#endif  // CUSTOS_COMMON_POSTGRES_H_
