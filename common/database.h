#ifndef CUSTOS_COMMON_DATABASE_H_
#define CUSTOS_COMMON_DATABASE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics.h"

namespace custos {

// The stores' view of a SQL database, whichever backend serves it
// (`--database=sqlite:PATH` or `--database=postgresql://...`). SQL is
// written once, in the subset both SQLite and PostgreSQL read the same way:
// parameters `?` or `?N`, `ON CONFLICT ... DO NOTHING/UPDATE`, `RETURNING`,
// no rowid.

// A prepared statement of one connection: bind, Step through the rows, read
// columns. Not thread-safe; lives within one transaction.
class Statement {
 public:
  // What each backend implements.
  class Backend {
   public:
    virtual ~Backend() = default;
    virtual void Bind(int index, absl::string_view value) = 0;
    virtual void Bind(int index, int64_t value) = 0;
    virtual void BindBlob(int index, absl::string_view bytes) = 0;
    virtual void BindNull(int index) = 0;
    virtual absl::StatusOr<bool> Step() = 0;
    virtual void Reset() = 0;
    virtual std::string ColumnText(int index) const = 0;
    virtual int64_t ColumnInt64(int index) const = 0;
    virtual bool ColumnIsNull(int index) const = 0;
  };

  explicit Statement(std::unique_ptr<Backend> backend)
      : backend_(std::move(backend)) {}

  // Parameters are 1-based. Binding errors surface on Step.
  Statement& Bind(int index, absl::string_view value) {
    backend_->Bind(index, value);
    return *this;
  }
  Statement& Bind(int index, const char* value) {
    return Bind(index, absl::string_view(value));
  }
  Statement& Bind(int index, int64_t value) {
    backend_->Bind(index, value);
    return *this;
  }
  Statement& Bind(int index, int value) {
    return Bind(index, static_cast<int64_t>(value));
  }
  Statement& BindBlob(int index, absl::string_view bytes) {
    backend_->BindBlob(index, bytes);
    return *this;
  }
  Statement& BindNull(int index) {
    backend_->BindNull(index);
    return *this;
  }
  // Binds NULL when `value` is empty.
  Statement& BindOptional(int index, absl::string_view value) {
    return value.empty() ? BindNull(index) : Bind(index, value);
  }

  // true: a row is available; false: done. Errors: ALREADY_EXISTS for
  // unique/primary-key violations, FAILED_PRECONDITION for other constraint
  // violations, UNAVAILABLE when the database is busy or unreachable,
  // ABORTED when a concurrent transaction won (the database retries the
  // transaction), INTERNAL otherwise.
  absl::StatusOr<bool> Step() { return backend_->Step(); }
  // Steps to completion, ignoring rows.
  absl::Status Run();
  // Rewinds the statement and clears its bindings, to run it again.
  void Reset() { backend_->Reset(); }

  // Columns are 0-based. NULL reads as "" / 0; a boolean as 1 / 0.
  // ColumnText also returns a BLOB's bytes.
  std::string ColumnText(int index) const {
    return backend_->ColumnText(index);
  }
  int64_t ColumnInt64(int index) const { return backend_->ColumnInt64(index); }
  bool ColumnIsNull(int index) const { return backend_->ColumnIsNull(index); }

 private:
  std::unique_ptr<Backend> backend_;
};

// One connection, used by one transaction at a time. Not thread-safe.
class Connection {
 public:
  virtual ~Connection() = default;
  // Prepares `sql`, or reuses the statement prepared from the same text.
  // REQUIRES: `sql` outlives the connection's use of it (string literals or
  // strings built once).
  virtual absl::StatusOr<Statement> Prepare(absl::string_view sql) = 0;
  // Runs one or more statements without parameters or results.
  virtual absl::Status Exec(const std::string& sql) = 0;
  // Rows changed by the last statement.
  virtual int Changes() const = 0;
};

// A schema change, written in SQLite's spelling; PostgreSQL gets it with
// BIGINT for INTEGER, BYTEA for BLOB and identity columns for AUTOINCREMENT
// (PostgresSchema), or `postgres_sql` where the two must differ.
struct Migration {
  Migration(int version, std::string sql, std::string postgres_sql = "")
      : version(version),
        sql(std::move(sql)),
        postgres_sql(std::move(postgres_sql)) {}

  int version;
  std::string sql;
  std::string postgres_sql;
};

// What a database reports to the metrics (DatabaseMetrics).
struct DatabaseStats {
  const char* backend = "";  // "sqlite" or "postgresql"
  int64_t open_connections = 0;
  // Write transactions run again after losing to a concurrent one.
  int64_t conflict_retries = 0;
  // Pooled connections found dropped by the server and replaced.
  int64_t connections_replaced = 0;
};

// A service's database. Write transactions behave as if each ran alone
// (SQLite: one writer; PostgreSQL: SERIALIZABLE, retried on conflicts), so
// a read-then-write inside one Write is safe across replicas. A Write body
// may therefore run more than once: it must only read and write through the
// connection and reset what it fills.
// Thread-safe.
class Database {
 public:
  using Body = std::function<absl::Status(Connection&)>;
  virtual ~Database() = default;
  // Commits when `body` returns OK, rolls back otherwise and returns its
  // status.
  virtual absl::Status Write(const Body& body) = 0;
  // One consistent snapshot.
  virtual absl::Status Read(const Body& body) = 0;
  virtual DatabaseStats Stats() const = 0;
  // Whether a read may wait (a network round trip, a lock): then it must not
  // run on gRPC's reaction threads (Executor::inline_reads).
  virtual bool ReadsMayBlock() const { return true; }

  // What the store's own answers say about it: OK; DATA_LOSS once it
  // reported corruption (until the process restarts: an operator must
  // restore it, see docs/operations.md); RESOURCE_EXHAUSTED while its disk
  // is full (since a write failed so, until a write succeeds). Readiness
  // follows it (ServerOptions::readiness), and custos_store_healthy.
  absl::Status Health() const;

 protected:
  // Backends report every transaction's outcome. Cheap when OK.
  void Observe(const absl::Status& status, bool write);

 private:
  enum Condition { kHealthy = 0, kFull = 1, kCorrupt = 2 };
  std::atomic<int> condition_{kHealthy};
  mutable absl::Mutex health_mu_;
  std::string condition_error_ ABSL_GUARDED_BY(health_mu_);
};

struct DatabaseOptions {
  // Connections kept open at most; a transaction waits for one beyond that.
  // Default: 8.
  int connections = 8;
  // Default: true. False: an SQLite file that does not exist is refused
  // (FAILED_PRECONDITION, "store is missing") rather than created empty —
  // for stores that must have been initialised already (a lost volume must
  // not look like a first start).
  bool create_if_missing = true;
  // PostgreSQL: writers take turns (PostgresOptions::serialize_writes).
  // Default: true.
  bool serialize_writes = true;
};

// Opens `spec` — "sqlite:PATH" or "postgresql://..." (also "postgres://")
// — and applies every migration above the stored version, exactly once even
// when several replicas start at once. INVALID_ARGUMENT for any other spec.
absl::StatusOr<std::unique_ptr<Database>> OpenDatabase(
    const std::string& spec, const std::vector<Migration>& migrations,
    const DatabaseOptions& options = {});

// A backend's report that the store is corrupt (DATA_LOSS) or its disk full
// (RESOURCE_EXHAUSTED: the caller may retry once an operator made room),
// marked so that Database::Health can tell them from a body's own errors.
absl::Status StoreCorruptError(absl::string_view message);
absl::Status StoreFullError(absl::string_view message);
bool IsStoreCorrupt(const absl::Status& status);
bool IsStoreFull(const absl::Status& status);

// custos_database_* and custos_store_healthy for `database`, at every
// scrape.
// REQUIRES: `database` outlives the collector's registration.
Metrics::Collector DatabaseMetrics(const Database* database);

}  // namespace custos

#endif  // CUSTOS_COMMON_DATABASE_H_
