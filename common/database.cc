#include "common/database.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
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
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteDatabase> database,
                   SqliteDatabase::Open(sqlite, migrations));
  return std::unique_ptr<Database>(std::move(database));
}

Metrics::Collector DatabaseMetrics(const Database* database) {
  return [database](MetricsText& out) {
    const DatabaseStats stats = database->Stats();
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
