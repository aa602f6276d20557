#include "common/database.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/json_log.h"
#include "common/postgres.h"
#include "common/sqlite.h"
#include "common/status_macros.h"

namespace custos {

absl::Status Statement::Run() {
  while (true) {
    ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return absl::OkStatus();
  }
}

namespace {

bool IsPostgresSpec(absl::string_view spec) {
  return absl::StartsWith(spec, "postgresql://") ||
         absl::StartsWith(spec, "postgres://");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> OpenDatabase(
    const std::string& spec, const std::vector<Migration>& migrations,
    const DatabaseOptions& options) {
  if (options.connections < 1) {
    return absl::InvalidArgumentError("connections must be at least 1");
  }
  if (IsPostgresSpec(spec)) {
    PostgresOptions postgres;
    postgres.url = spec;
    postgres.pool_size = options.connections;
    postgres.serialize_writes = options.serialize_writes;
    ASSIGN_OR_RETURN(std::unique_ptr<PostgresDatabase> database,
                     PostgresDatabase::Open(postgres, migrations));
    return std::unique_ptr<Database>(std::move(database));
  }
  absl::string_view path = spec;
  if (!absl::ConsumePrefix(&path, "sqlite:") || path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("database must be sqlite:PATH or postgresql://..., got \"",
                     spec, "\""));
  }
  SqliteOptions sqlite;
  sqlite.path = std::string(path);
  sqlite.pool_size = options.connections;
  sqlite.create_if_missing = options.create_if_missing;
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteDatabase> database,
                   SqliteDatabase::Open(sqlite, migrations));
  return std::unique_ptr<Database>(std::move(database));
}

namespace {
constexpr char kStoreConditionPayload[] = "type.custos.dev/store-condition";
}  // namespace

absl::Status StoreCorruptError(absl::string_view message) {
  absl::Status status = absl::DataLossError(message);
  status.SetPayload(kStoreConditionPayload, absl::Cord("corrupt"));
  return status;
}

absl::Status StoreFullError(absl::string_view message) {
  absl::Status status = absl::ResourceExhaustedError(message);
  status.SetPayload(kStoreConditionPayload, absl::Cord("full"));
  return status;
}

bool IsStoreCorrupt(const absl::Status& status) {
  return absl::IsDataLoss(status) &&
         status.GetPayload(kStoreConditionPayload) == absl::Cord("corrupt");
}

bool IsStoreFull(const absl::Status& status) {
  return absl::IsResourceExhausted(status) &&
         status.GetPayload(kStoreConditionPayload) == absl::Cord("full");
}

absl::Status Database::Health() const {
  const int condition = condition_.load(std::memory_order_relaxed);
  if (condition == kHealthy) return absl::OkStatus();
  absl::MutexLock lock(&health_mu_);
  return condition == kCorrupt ? StoreCorruptError(condition_error_)
                               : StoreFullError(condition_error_);
}

void Database::Observe(const absl::Status& status, bool write) {
  const int condition = condition_.load(std::memory_order_relaxed);
  if (status.ok()) {
    // A write that went through: the disk has room again.
    if (write && condition == kFull) {
      int full = kFull;
      if (condition_.compare_exchange_strong(full, kHealthy)) {
        Log("info", "store accepts writes again");
      }
    }
    return;
  }
  const bool corrupt = IsStoreCorrupt(status);
  if (!corrupt && !IsStoreFull(status)) return;
  if (condition == kCorrupt || (!corrupt && condition == kFull)) return;
  {
    absl::MutexLock lock(&health_mu_);
    condition_error_ = std::string(status.message());
  }
  condition_.store(corrupt ? kCorrupt : kFull);
  Log("error",
      corrupt ? "store is corrupt: not ready until it is restored"
              : "store is full: writes fail RESOURCE_EXHAUSTED until there "
                "is room",
      {{"error", status.ToString()}});
}

Metrics::Collector DatabaseMetrics(const Database* database) {
  return [database](MetricsText& out) {
    const DatabaseStats stats = database->Stats();
    out.Family("custos_store_healthy", "gauge",
               "1 while the store answers normally; 0 when it reported "
               "corruption (not ready) or a full disk.");
    out.Sample("custos_store_healthy", {}, database->Health().ok() ? 1 : 0);
    out.Family("custos_database_backend", "gauge",
               "1, labelled with the store this process uses.");
    out.Sample("custos_database_backend", {{"backend", stats.backend}}, 1);
    out.Family("custos_database_connections_open", "gauge",
               "Connections to the store open now, idle or in use.");
    out.Sample("custos_database_connections_open", {},
               static_cast<double>(stats.open_connections));
    out.Family("custos_database_conflict_retries_total", "counter",
               "Write transactions run again after a concurrent one won "
               "(PostgreSQL serialization failures and deadlocks).");
    out.Sample("custos_database_conflict_retries_total", {},
               static_cast<double>(stats.conflict_retries));
    out.Family("custos_database_connections_replaced_total", "counter",
               "Pooled connections the server had dropped, replaced on use.");
    out.Sample("custos_database_connections_replaced_total", {},
               static_cast<double>(stats.connections_replaced));
  };
}

}  // namespace custos
