#include "common/audit_store.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/pagination.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace custos {

const char kAuditEventsSchema[] = R"sql(
CREATE TABLE audit_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  resource TEXT NOT NULL,
  before_json TEXT NOT NULL,
  after_json TEXT NOT NULL,
  time_micros INTEGER NOT NULL,
  request_id TEXT NOT NULL
);
CREATE INDEX audit_events_by_resource ON audit_events(resource, id);
)sql";

const char kAuditEventsTimeIndexSchema[] =
    "CREATE INDEX audit_events_by_time ON audit_events(time_micros);";

absl::Status AppendAuditEvent(Connection& db, const AuditRecord& record) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO audit_events(actor, action, resource, "
                 "before_json, after_json, time_micros, request_id) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)"));
  return insert.Bind(1, record.actor)
      .Bind(2, record.action)
      .Bind(3, record.resource)
      .Bind(4, record.before)
      .Bind(5, record.after)
      .Bind(6, absl::ToUnixMicros(record.time))
      .Bind(7, record.request_id)
      .Run();
}

absl::StatusOr<custos::common::v1::ListAuditEventsResponse> ListAuditEvents(
    Database& database, const std::string& parent, int page_size,
    const std::string& page_token) {
  const std::string query = absl::StrCat("audit:", parent);
  int64_t before_id = INT64_MAX;
  if (!page_token.empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> key,
                     DecodePageToken(page_token, query, 1));
    if (!absl::SimpleAtoi(key[0], &before_id)) {
      return InvalidField("page_token", "is corrupt");
    }
  }
  custos::common::v1::ListAuditEventsResponse response;
  RETURN_IF_ERROR(database.Read([&](Connection& db) {
    // "parent/" <= resource < "parent0" selects every descendant: '0'
    // follows '/' in ASCII.
    ASSIGN_OR_RETURN(
        Statement select,
        db.Prepare("SELECT id, actor, action, resource, before_json, "
                   "after_json, time_micros, request_id FROM audit_events "
                   "WHERE (resource = ?1 OR (resource >= ?1 || '/' AND "
                   "resource < ?1 || '0')) AND id < ?2 "
                   "ORDER BY id DESC LIMIT ?3"));
    select.Bind(1, parent).Bind(2, before_id).Bind(3, page_size + 1);
    while (true) {
      ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) break;
      if (response.audit_events_size() == page_size) {
        const auto& last = response.audit_events(page_size - 1);
        response.set_next_page_token(
            EncodePageToken(query, {absl::StrCat(last.id())}));
        break;
      }
      auto* event = response.add_audit_events();
      event->set_id(select.ColumnInt64(0));
      event->set_actor(select.ColumnText(1));
      event->set_action(select.ColumnText(2));
      event->set_resource(select.ColumnText(3));
      event->set_before(select.ColumnText(4));
      event->set_after(select.ColumnText(5));
      *event->mutable_time() =
          google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
              select.ColumnInt64(6));
      event->set_request_id(select.ColumnText(7));
    }
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<int64_t> PruneAuditEvents(Database& database,
                                         absl::Time older_than,
                                         int batch_size) {
  if (batch_size <= 0) {
    return absl::InvalidArgumentError("batch_size must be > 0");
  }
  int64_t deleted = 0;
  RETURN_IF_ERROR(database.Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(
        Statement remove,
        db.Prepare("DELETE FROM audit_events WHERE id IN (SELECT id FROM "
                   "audit_events WHERE time_micros < ? ORDER BY time_micros "
                   "LIMIT ?)"));
    RETURN_IF_ERROR(remove.Bind(1, absl::ToUnixMicros(older_than))
                        .Bind(2, batch_size)
                        .Run());
    deleted = db.Changes();
    return absl::OkStatus();
  }));
  return deleted;
}

}  // namespace custos
