#include "common/sqlite.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/json_log.h"
#include "common/status_macros.h"

namespace custos {
namespace {

absl::Status RunCached(SqliteConnection& connection, const char* sql) {
  absl::StatusOr<Statement> statement = connection.Prepare(sql);
  if (!statement.ok()) return statement.status();
  return statement->Run();
}

absl::Status SqliteError(sqlite3* db, int code, absl::string_view what) {
  std::string message = absl::StrCat(
      what, ": ", db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(code));
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
      return absl::UnavailableError(message);
    case SQLITE_FULL:
      return StoreFullError(absl::StrCat("store is full: ", message));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return StoreCorruptError(absl::StrCat("store is corrupt: ", message));
    case SQLITE_CONSTRAINT:
      if (code == SQLITE_CONSTRAINT_PRIMARYKEY ||
          code == SQLITE_CONSTRAINT_UNIQUE) {
        return absl::AlreadyExistsError(message);
      }
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

// Owner read/write only: the store holds audit logs and webhook secrets.
constexpr mode_t kFileMode = 0600;

// Removes group and other access from an existing `path` (to kFileMode),
// with a warning; OK when `path` does not exist. By path, never through an
// open descriptor: closing a descriptor would drop the POSIX locks this
// process's SQLite connections may hold on the same file.
absl::Status TightenExisting(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::InternalError(
        absl::StrCat("stat ", path, ": ", std::strerror(errno)));
  }
  const mode_t was = st.st_mode & 07777;
  if ((was & 077) == 0) return absl::OkStatus();
  if (chmod(path.c_str(), kFileMode) != 0) {
    return absl::InternalError(absl::StrFormat(
        "%s is accessible to others (mode %04o) and cannot be restricted to "
        "%04o: %s",
        path, was, kFileMode, std::strerror(errno)));
  }
  Log("warning", "database file was accessible to others; restricted it",
      {{"path", path},
       {"was", absl::StrFormat("%04o", was)},
       {"now", absl::StrFormat("%04o", kFileMode)}});
  return absl::OkStatus();
}

// Creates the database file with kFileMode before SQLite would (0644 less
// the umask), or tightens an existing one. What SQLite's unix VFS creates
// next to it (-wal, -shm, -journal) takes the database file's permissions
// regardless of the umask; such files left by an earlier run are tightened
// here too. Errors: INTERNAL when a file cannot be created or restricted
// (e.g. it belongs to another user).
absl::Status RestrictToOwner(const std::string& path) {
  // In-memory databases and URI filenames have no file of that name.
  if (path == ":memory:" || absl::StartsWith(path, "file:")) {
    return absl::OkStatus();
  }
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kFileMode);
  if (fd >= 0) {
    // The umask may have taken more than group and other bits away.
    const int rc = fchmod(fd, kFileMode);
    const int error = errno;
    close(fd);
    if (rc != 0) {
      return absl::InternalError(
          absl::StrCat("chmod ", path, ": ", std::strerror(error)));
    }
  } else if (errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat("create ", path, ": ", std::strerror(errno)));
  } else {
    RETURN_IF_ERROR(TightenExisting(path));
  }
  for (const char* suffix : {"-wal", "-shm", "-journal"}) {
    RETURN_IF_ERROR(TightenExisting(absl::StrCat(path, suffix)));
  }
  return absl::OkStatus();
}

}  // namespace

SqliteStatement::~SqliteStatement() { Reset(); }

void SqliteStatement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_error_ = 0;
}

void SqliteStatement::Record(int rc) {
  if (rc != SQLITE_OK && bind_error_ == 0) bind_error_ = rc;
}

void SqliteStatement::Bind(int index, absl::string_view value) {
  Record(sqlite3_bind_text(stmt_, index, value.data(),
                           static_cast<int>(value.size()), SQLITE_TRANSIENT));
}

void SqliteStatement::Bind(int index, int64_t value) {
  Record(sqlite3_bind_int64(stmt_, index, value));
}

void SqliteStatement::BindBlob(int index, absl::string_view bytes) {
  Record(sqlite3_bind_blob(stmt_, index, bytes.data(),
                           static_cast<int>(bytes.size()), SQLITE_TRANSIENT));
}

void SqliteStatement::BindNull(int index) {
  Record(sqlite3_bind_null(stmt_, index));
}

absl::StatusOr<bool> SqliteStatement::Step() {
  if (bind_error_ != 0) return SqliteError(db_, bind_error_, "bind");
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db_, sqlite3_extended_errcode(db_), "step");
}

std::string SqliteStatement::ColumnText(int index) const {
  if (sqlite3_column_type(stmt_, index) == SQLITE_BLOB) {
    const void* blob = sqlite3_column_blob(stmt_, index);
    return std::string(static_cast<const char*>(blob),
                       sqlite3_column_bytes(stmt_, index));
  }
  const unsigned char* text = sqlite3_column_text(stmt_, index);
  if (text == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(text),
                     sqlite3_column_bytes(stmt_, index));
}

int64_t SqliteStatement::ColumnInt64(int index) const {
  return sqlite3_column_int64(stmt_, index);
}

bool SqliteStatement::ColumnIsNull(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

absl::StatusOr<std::unique_ptr<SqliteConnection>> SqliteConnection::Open(
    const std::string& path, int busy_timeout_ms, bool create) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE |
                               (create ? SQLITE_OPEN_CREATE : 0) |
                               SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(db, rc, absl::StrCat("open ", path));
    sqlite3_close(db);
    return status;
  }
  std::unique_ptr<SqliteConnection> connection(new SqliteConnection(db));
  sqlite3_busy_timeout(db, busy_timeout_ms);
  // WAL: readers see a snapshot and never block the writer. synchronous=FULL:
  // an acknowledged write survives a power loss, not just a process crash.
  RETURN_IF_ERROR(
      connection->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                       "PRAGMA foreign_keys=ON;"));
  return connection;
}

SqliteConnection::~SqliteConnection() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

absl::StatusOr<Statement> SqliteConnection::Prepare(absl::string_view sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
      // Every statement was prepared against the migrated schema; a table
      // gone since the start means the file was replaced or damaged under
      // the process.
      if (rc == SQLITE_ERROR &&
          absl::StartsWith(sqlite3_errmsg(db_), "no such table")) {
        return StoreCorruptError(
            absl::StrCat("store is corrupt: its schema is gone (",
                         sqlite3_errmsg(db_), ")"));
      }
      return SqliteError(db_, rc, absl::StrCat("prepare \"", sql, "\""));
    }
    it = statements_.emplace(std::string(sql), stmt).first;
  }
  return Statement(std::make_unique<SqliteStatement>(it->second, db_));
}

absl::Status SqliteConnection::Exec(const std::string& sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string message = error != nullptr ? error : "";
  sqlite3_free(error);
  return SqliteError(nullptr, sqlite3_extended_errcode(db_),
                     absl::StrCat("exec: ", message));
}

bool SqliteConnection::InTransaction() const {
  return sqlite3_get_autocommit(db_) == 0;
}

int SqliteConnection::Changes() const { return sqlite3_changes(db_); }

absl::StatusOr<std::unique_ptr<SqliteDatabase>> SqliteDatabase::Open(
    const SqliteOptions& options, const std::vector<Migration>& migrations) {
  struct stat existing;
  if (!options.create_if_missing &&
      stat(options.path.c_str(), &existing) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("store is missing: ", options.path,
                     " does not exist and is not created outside a first start "
                     "(--create_database=false)"));
  }
  RETURN_IF_ERROR(RestrictToOwner(options.path));
  std::unique_ptr<SqliteDatabase> database(new SqliteDatabase);
  for (int i = 0; i < std::max(1, options.pool_size); ++i) {
    ASSIGN_OR_RETURN(auto connection, SqliteConnection::Open(
                                          options.path, options.busy_timeout_ms,
                                          options.create_if_missing));
    database->idle_.push_back(connection.get());
    database->all_.push_back(std::move(connection));
  }
  // A damaged file is refused before anything is migrated or written:
  // never patched over, never replaced by an empty store.
  RETURN_IF_ERROR(database->Read([](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(Statement check, db.Prepare("PRAGMA quick_check"));
    ASSIGN_OR_RETURN(bool row, check.Step());
    if (row && check.ColumnText(0) == "ok") return absl::OkStatus();
    return StoreCorruptError(
        absl::StrCat("store is corrupt: quick_check: ",
                     row ? check.ColumnText(0) : "no answer"));
  }));
  RETURN_IF_ERROR(database->Write([](Connection& db) {
    return db.Exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL"
        " DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))");
  }));
  for (const Migration& migration : migrations) {
    absl::Status status = database->Write([&](Connection& db) {
      ASSIGN_OR_RETURN(
          Statement applied,
          db.Prepare("SELECT 1 FROM schema_migrations WHERE version = ?"));
      applied.Bind(1, migration.version);
      ASSIGN_OR_RETURN(bool done, applied.Step());
      if (done) return absl::OkStatus();
      RETURN_IF_ERROR(db.Exec(migration.sql));
      ASSIGN_OR_RETURN(
          Statement record,
          db.Prepare("INSERT INTO schema_migrations(version) VALUES (?)"));
      return record.Bind(1, migration.version).Run();
    });
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("migration ", migration.version, ": ",
                                       status.message()));
    }
  }
  return database;
}

SqliteConnection* SqliteDatabase::Acquire() {
  absl::MutexLock lock(&pool_mu_);
  pool_mu_.Await(absl::Condition(
      +[](std::vector<SqliteConnection*>* idle) { return !idle->empty(); },
      &idle_));
  SqliteConnection* connection = idle_.back();
  idle_.pop_back();
  return connection;
}

void SqliteDatabase::Release(SqliteConnection* connection) {
  absl::MutexLock lock(&pool_mu_);
  idle_.push_back(connection);
}

absl::Status SqliteDatabase::Transaction(bool write, const Body& body) {
  const char* begin = write ? "BEGIN IMMEDIATE" : "BEGIN";
  SqliteConnection* connection = Acquire();
  // Cached statements: BEGIN and COMMIT run on every call, and re-parsing
  // them showed up in GetCustomer's profile.
  absl::Status status = RunCached(*connection, begin);
  if (status.ok()) {
    status = body(*connection);
    if (status.ok()) status = RunCached(*connection, "COMMIT");
    if (!status.ok()) RunCached(*connection, "ROLLBACK").IgnoreError();
  }
  Release(connection);
  Observe(status, write);
  return status;
}

absl::Status SqliteDatabase::Write(const Body& body) {
  // At most this many bodies share a transaction, so one group's commit
  // latency stays bounded.
  constexpr size_t kMaxGroup = 64;
  PendingWrite me{&body};
  absl::MutexLock lock(&group_mu_);
  waiting_.push_back(&me);
  auto done_or_free = [this, &me]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(group_mu_) {
    return me.done || !leading_;
  };
  // Whoever finds no group under way runs the oldest waiting writes; a
  // leader whose own write was not among them (more than kMaxGroup were
  // waiting) leads again.
  while (true) {
    group_mu_.Await(absl::Condition(&done_or_free));
    if (me.done) return me.status;
    leading_ = true;
    std::vector<PendingWrite*> group;
    while (!waiting_.empty() && group.size() < kMaxGroup) {
      group.push_back(waiting_.front());
      waiting_.pop_front();
    }
    group_mu_.Unlock();
    {
      absl::MutexLock write_lock(&write_mu_);
      if (group.size() == 1 || !CommitGroup(group)) {
        for (PendingWrite* write : group) {
          write->status = Transaction(/*write=*/true, *write->body);
        }
      }
    }
    group_mu_.Lock();
    for (PendingWrite* write : group) write->done = true;
    leading_ = false;
  }
}

bool SqliteDatabase::CommitGroup(const std::vector<PendingWrite*>& group) {
  SqliteConnection* connection = Acquire();
  bool committed = RunCached(*connection, "BEGIN IMMEDIATE").ok();
  for (size_t i = 0; committed && i < group.size(); ++i) {
    committed = RunCached(*connection, "SAVEPOINT grouped_write").ok();
    if (!committed) break;
    absl::Status status = (*group[i]->body)(*connection);
    // SQLite may have ended the whole transaction (SQLITE_FULL, an I/O
    // error): then every body of the group runs again alone.
    committed = connection->InTransaction();
    if (!committed) break;
    if (!status.ok()) {
      committed =
          RunCached(*connection, "ROLLBACK TO SAVEPOINT grouped_write").ok();
    }
    committed = committed &&
                RunCached(*connection, "RELEASE SAVEPOINT grouped_write").ok();
    group[i]->status = status;
  }
  if (committed) committed = RunCached(*connection, "COMMIT").ok();
  if (committed) {
    for (PendingWrite* write : group) Observe(write->status, /*write=*/true);
  }
  if (!committed && connection->InTransaction()) {
    RunCached(*connection, "ROLLBACK").IgnoreError();
  }
  Release(connection);
  return committed;
}

DatabaseStats SqliteDatabase::Stats() const {
  DatabaseStats stats;
  stats.backend = "sqlite";
  stats.open_connections = static_cast<int64_t>(all_.size());
  return stats;
}

absl::Status SqliteDatabase::Read(const Body& body) {
  return Transaction(/*write=*/false, body);
}

}  // namespace custos
