#include "common/postgres.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace custos {
namespace {

// pg_type.h: bytea columns come back hex-escaped in text results.
constexpr unsigned kByteaOid = 17;

absl::Status ResultError(pg_conn* conn, const pg_result* result,
                         absl::string_view what,
                         PostgresSession* session = nullptr) {
  const char* state = result != nullptr
                          ? PQresultErrorField(result, PG_DIAG_SQLSTATE)
                          : nullptr;
  std::string message = absl::StrCat(what, ": ", PQerrorMessage(conn));
  const std::string code = state != nullptr ? state : "";
  if (code == "23505") return absl::AlreadyExistsError(message);
  if (code == "40001" || code == "40P01") {
    if (session != nullptr) session->conflict = true;
    return absl::AbortedError(message);
  }
  if (code.rfind("23", 0) == 0) return absl::FailedPreconditionError(message);
  if (PQstatus(conn) != CONNECTION_OK || code.rfind("08", 0) == 0 ||
      code.rfind("57P", 0) == 0) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

}  // namespace

std::string PostgresParameters(absl::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 8);
  int next = 0;
  char quote = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote != 0) {
      out.push_back(c);
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out.push_back(c);
      continue;
    }
    if (c != '?') {
      out.push_back(c);
      continue;
    }
    size_t end = i + 1;
    while (end < sql.size() &&
           std::isdigit(static_cast<unsigned char>(sql[end]))) {
      ++end;
    }
    if (end == i + 1) {
      absl::StrAppend(&out, "$", ++next);
    } else {
      int number = 0;
      (void)absl::SimpleAtoi(sql.substr(i + 1, end - i - 1), &number);
      next = std::max(next, number);
      absl::StrAppend(&out, "$", sql.substr(i + 1, end - i - 1));
    }
    i = end - 1;
  }
  return out;
}

// ---- PostgresStatement ----

PostgresStatement::PostgresStatement(PostgresStatement&& other) noexcept
    : conn_(other.conn_),
      name_(std::move(other.name_)),
      session_(other.session_),
      parameters_(std::move(other.parameters_)),
      result_(std::exchange(other.result_, nullptr)),
      row_(other.row_) {}

PostgresStatement::~PostgresStatement() { Reset(); }

void PostgresStatement::Reset() {
  if (result_ != nullptr) PQclear(result_);
  result_ = nullptr;
  row_ = -1;
  parameters_.clear();
}

PostgresStatement& PostgresStatement::Bind(int index, absl::string_view value) {
  if (static_cast<int>(parameters_.size()) < index) parameters_.resize(index);
  parameters_[index - 1] = {std::string(value), false};
  return *this;
}

PostgresStatement& PostgresStatement::Bind(int index, int64_t value) {
  return Bind(index, absl::string_view(absl::StrCat(value)));
}

PostgresStatement& PostgresStatement::BindBlob(int index,
                                               absl::string_view bytes) {
  if (static_cast<int>(parameters_.size()) < index) parameters_.resize(index);
  parameters_[index - 1] = {std::string(bytes), true};
  return *this;
}

PostgresStatement& PostgresStatement::BindNull(int index) {
  if (static_cast<int>(parameters_.size()) < index) parameters_.resize(index);
  parameters_[index - 1] = {std::nullopt, false};
  return *this;
}

absl::StatusOr<bool> PostgresStatement::Step() {
  if (result_ == nullptr) {
    std::vector<const char*> values;
    std::vector<int> lengths;
    std::vector<int> formats;
    for (const Parameter& p : parameters_) {
      values.push_back(p.value ? p.value->data() : nullptr);
      lengths.push_back(p.value ? static_cast<int>(p.value->size()) : 0);
      formats.push_back(p.binary ? 1 : 0);
    }
    result_ = PQexecPrepared(conn_, name_.c_str(),
                             static_cast<int>(parameters_.size()),
                             values.data(), lengths.data(), formats.data(), 0);
    const ExecStatusType status = PQresultStatus(result_);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
      absl::Status error =
          ResultError(conn_, result_, "statement failed", session_);
      PQclear(result_);
      result_ = nullptr;
      return error;
    }
    int changed = 0;
    (void)absl::SimpleAtoi(PQcmdTuples(result_), &changed);
    session_->changes = changed;
  }
  ++row_;
  return row_ < PQntuples(result_);
}

absl::Status PostgresStatement::Run() {
  while (true) {
    ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return absl::OkStatus();
  }
}

std::string PostgresStatement::ColumnText(int index) const {
  if (PQgetisnull(result_, row_, index)) return "";
  const char* value = PQgetvalue(result_, row_, index);
  if (PQftype(result_, index) == kByteaOid) {
    size_t size = 0;
    unsigned char* bytes =
        PQunescapeBytea(reinterpret_cast<const unsigned char*>(value), &size);
    std::string out(reinterpret_cast<const char*>(bytes), size);
    PQfreemem(bytes);
    return out;
  }
  return std::string(value, PQgetlength(result_, row_, index));
}

int64_t PostgresStatement::ColumnInt64(int index) const {
  if (PQgetisnull(result_, row_, index)) return 0;
  int64_t value = 0;
  absl::string_view text = PQgetvalue(result_, row_, index);
  if (text == "t") return 1;  // booleans, as SQLite reads them
  if (text == "f") return 0;
  (void)absl::SimpleAtoi(text, &value);
  return value;
}

bool PostgresStatement::ColumnIsNull(int index) const {
  return PQgetisnull(result_, row_, index) != 0;
}

// ---- PostgresConnection ----

absl::StatusOr<std::unique_ptr<PostgresConnection>> PostgresConnection::Open(
    const std::string& url) {
  pg_conn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL: ", message));
  }
  return std::unique_ptr<PostgresConnection>(new PostgresConnection(conn));
}

PostgresConnection::~PostgresConnection() { PQfinish(conn_); }

absl::StatusOr<PostgresStatement> PostgresConnection::Prepare(
    absl::string_view sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    std::string name = absl::StrCat("s", statements_.size() + 1);
    const std::string text = PostgresParameters(sql);
    pg_result* result =
        PQprepare(conn_, name.c_str(), text.c_str(), 0, nullptr);
    if (PQresultStatus(result) != PGRES_COMMAND_OK) {
      absl::Status error =
          ResultError(conn_, result, absl::StrCat("cannot prepare ", sql));
      PQclear(result);
      return error;
    }
    PQclear(result);
    it = statements_.emplace(std::string(sql), std::move(name)).first;
  }
  return PostgresStatement(conn_, it->second, &session_);
}

absl::Status PostgresConnection::Exec(const std::string& sql) {
  pg_result* result = PQexec(conn_, sql.c_str());
  const ExecStatusType status = PQresultStatus(result);
  absl::Status error = absl::OkStatus();
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    error = ResultError(conn_, result, "statement failed", &session_);
  }
  PQclear(result);
  return error;
}

// ---- PostgresDatabase ----

absl::StatusOr<std::unique_ptr<PostgresDatabase>> PostgresDatabase::Open(
    const PostgresOptions& options,
    const std::vector<PostgresMigration>& migrations) {
  std::unique_ptr<PostgresDatabase> database(new PostgresDatabase(options));
  // Replicas starting at once queue on a session-level advisory lock taken
  // before any transaction, so each sees the migrations the others applied
  // (a lock taken inside a snapshot transaction would not).
  ASSIGN_OR_RETURN(std::unique_ptr<PostgresConnection> db,
                   PostgresConnection::Open(options.url));
  RETURN_IF_ERROR(db->Exec("SELECT pg_advisory_lock(7411001)"));
  absl::Status migrated = [&]() -> absl::Status {
    RETURN_IF_ERROR(
        db->Exec("CREATE TABLE IF NOT EXISTS schema_migrations (version "
                 "BIGINT PRIMARY KEY)"));
    for (const PostgresMigration& migration : migrations) {
      ASSIGN_OR_RETURN(
          PostgresStatement applied,
          db->Prepare("SELECT 1 FROM schema_migrations WHERE version = ?"));
      applied.Bind(1, static_cast<int64_t>(migration.version));
      ASSIGN_OR_RETURN(bool done, applied.Step());
      if (done) continue;
      RETURN_IF_ERROR(db->Exec("BEGIN"));
      absl::Status status = db->Exec(migration.sql);
      if (status.ok()) {
        ASSIGN_OR_RETURN(
            PostgresStatement record,
            db->Prepare("INSERT INTO schema_migrations(version) VALUES (?)"));
        status = record.Bind(1, static_cast<int64_t>(migration.version)).Run();
      }
      if (!status.ok()) {
        db->Exec("ROLLBACK").IgnoreError();
        return absl::Status(status.code(),
                            absl::StrCat("migration ", migration.version, ": ",
                                         status.message()));
      }
      RETURN_IF_ERROR(db->Exec("COMMIT"));
    }
    return absl::OkStatus();
  }();
  db->Exec("SELECT pg_advisory_unlock(7411001)").IgnoreError();
  RETURN_IF_ERROR(migrated);
  return database;
}

absl::StatusOr<std::unique_ptr<PostgresConnection>>
PostgresDatabase::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      auto connection = std::move(idle_.back());
      idle_.pop_back();
      return connection;
    }
  }
  return PostgresConnection::Open(options_.url);
}

void PostgresDatabase::Release(std::unique_ptr<PostgresConnection> connection) {
  absl::MutexLock lock(&mu_);
  if (static_cast<int>(idle_.size()) < options_.pool_size) {
    idle_.push_back(std::move(connection));
  }
}

absl::Status PostgresDatabase::Transaction(const char* begin,
                                           const Body& body) {
  for (int attempt = 0;; ++attempt) {
    ASSIGN_OR_RETURN(std::unique_ptr<PostgresConnection> connection, Acquire());
    connection->session().conflict = false;
    absl::Status status = connection->Exec(begin);
    if (status.ok()) status = body(*connection);
    if (status.ok()) {
      status = connection->Exec("COMMIT");
    } else {
      connection->Exec("ROLLBACK").IgnoreError();
    }
    // Only PostgreSQL's own conflicts are retried: a body may return
    // ABORTED for reasons of its own (a stale etag).
    const bool conflict = connection->session().conflict;
    if (!absl::IsUnavailable(status)) Release(std::move(connection));
    if (!conflict || attempt >= options_.max_retries) return status;
    // Another transaction won: run again after a jittered pause, so that
    // the losers do not collide in lockstep.
    thread_local absl::InsecureBitGen jitter;
    absl::SleepFor(absl::Microseconds(
        absl::Uniform<int64_t>(jitter, 0, 1000 << std::min(attempt, 6))));
  }
}

absl::Status PostgresDatabase::Write(const Body& body) {
  return Transaction("BEGIN ISOLATION LEVEL SERIALIZABLE", body);
}

absl::Status PostgresDatabase::Read(const Body& body) {
  return Transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", body);
}

}  // namespace custos
