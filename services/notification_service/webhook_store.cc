#include "services/notification_service/webhook_store.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/trace_context.h"
#include "google/protobuf/util/time_util.h"

namespace custos::notifications {
namespace {

using google::protobuf::util::TimeUtil;

}  // namespace

absl::Status WebhookStore::InsertEndpoint(Connection& db,
                                          const std::string& owner,
                                          const std::string& id,
                                          const Endpoint& endpoint) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO webhook_endpoints(owner, id, url, secret, "
                 "create_micros) VALUES (?, ?, ?, ?, ?)"));
  return insert.Bind(1, owner)
      .Bind(2, id)
      .Bind(3, endpoint.url)
      .Bind(4, endpoint.secret)
      .Bind(5, absl::ToUnixMicros(endpoint.create_time))
      .Run();
}

absl::StatusOr<std::optional<WebhookStore::Endpoint>>
WebhookStore::FindEndpoint(Connection& db, const std::string& owner,
                           const std::string& id) {
  ASSIGN_OR_RETURN(Statement select,
                   db.Prepare("SELECT url, secret, create_micros FROM "
                              "webhook_endpoints WHERE owner = ? AND id = ?"));
  select.Bind(1, owner).Bind(2, id);
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::optional<Endpoint>();
  return Endpoint{select.ColumnText(0), select.ColumnText(1),
                  absl::FromUnixMicros(select.ColumnInt64(2))};
}

absl::StatusOr<std::vector<v1::WebhookEndpoint>> WebhookStore::ListEndpoints(
    Connection& db, const std::string& owner, const std::string& after_id,
    int limit) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT id, url, create_micros FROM webhook_endpoints WHERE "
                 "owner = ? AND id > ? ORDER BY id LIMIT ?"));
  select.Bind(1, owner).Bind(2, after_id).Bind(3, limit);
  std::vector<v1::WebhookEndpoint> rows;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return rows;
    v1::WebhookEndpoint endpoint;
    endpoint.set_name(
        absl::StrCat(owner, "/webhookEndpoints/", select.ColumnText(0)));
    endpoint.set_url(select.ColumnText(1));
    *endpoint.mutable_create_time() =
        TimeUtil::MicrosecondsToTimestamp(select.ColumnInt64(2));
    rows.push_back(std::move(endpoint));
  }
}

absl::StatusOr<bool> WebhookStore::DeleteEndpoint(Connection& db,
                                                  const std::string& owner,
                                                  const std::string& id) {
  ASSIGN_OR_RETURN(Statement deliveries,
                   db.Prepare("DELETE FROM webhook_deliveries WHERE owner = ? "
                              "AND endpoint_id = ?"));
  RETURN_IF_ERROR(deliveries.Bind(1, owner).Bind(2, id).Run());
  ASSIGN_OR_RETURN(Statement endpoint,
                   db.Prepare("DELETE FROM webhook_endpoints WHERE owner = ? "
                              "AND id = ?"));
  RETURN_IF_ERROR(endpoint.Bind(1, owner).Bind(2, id).Run());
  return db.Changes() > 0;
}

absl::StatusOr<int64_t> WebhookStore::QueueAlert(
    Connection& db, const std::string& alert_id,
    const std::vector<std::string>& owners, bool all, absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO webhook_deliveries(owner, endpoint_id, "
                 "alert_id, create_micros, next_attempt_micros, trace_parent, "
                 "request_id) SELECT owner, id, ?1, ?2, ?2, ?5, ?6 FROM "
                 "webhook_endpoints WHERE ?3 = 1 OR owner = ?4 ON "
                 "CONFLICT(owner, endpoint_id, alert_id) DO NOTHING"));
  int64_t queued = 0;
  const int64_t micros = absl::ToUnixMicros(now);
  // The POST continues the trace of the call that published the alert.
  const PropagatedCall call = PropagateCurrentCall();
  if (all) {
    RETURN_IF_ERROR(insert.Bind(1, alert_id)
                        .Bind(2, micros)
                        .Bind(3, 1)
                        .Bind(4, "")
                        .Bind(5, call.traceparent)
                        .Bind(6, call.request_id)
                        .Run());
    return db.Changes();
  }
  for (const std::string& owner : owners) {
    RETURN_IF_ERROR(insert.Bind(1, alert_id)
                        .Bind(2, micros)
                        .Bind(3, 0)
                        .Bind(4, owner)
                        .Bind(5, call.traceparent)
                        .Bind(6, call.request_id)
                        .Run());
    queued += db.Changes();
    insert.Reset();
  }
  return queued;
}

absl::StatusOr<std::optional<WebhookStore::DueDelivery>> WebhookStore::ClaimDue(
    Connection& db, absl::Time now, absl::Duration lease) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT d.owner, d.endpoint_id, d.alert_id, d.attempts, "
                 "e.url, e.secret, d.trace_parent, d.request_id FROM "
                 "webhook_deliveries d JOIN "
                 "webhook_endpoints e ON e.owner = d.owner AND e.id = "
                 "d.endpoint_id WHERE d.state = 1 AND d.next_attempt_micros "
                 "<= ? ORDER BY d.next_attempt_micros LIMIT 1"));
  select.Bind(1, absl::ToUnixMicros(now));
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::optional<DueDelivery>();
  DueDelivery due{
      {select.ColumnText(0), select.ColumnText(1), select.ColumnText(2)},
      select.ColumnInt64(3),
      select.ColumnText(4),
      select.ColumnText(5),
      select.ColumnText(6),
      select.ColumnText(7)};
  ASSIGN_OR_RETURN(
      Statement lease_it,
      db.Prepare("UPDATE webhook_deliveries SET next_attempt_micros = ? "
                 "WHERE owner = ? AND endpoint_id = ? AND alert_id = ?"));
  RETURN_IF_ERROR(lease_it.Bind(1, absl::ToUnixMicros(now + lease))
                      .Bind(2, due.key.owner)
                      .Bind(3, due.key.endpoint_id)
                      .Bind(4, due.key.alert_id)
                      .Run());
  return std::optional<DueDelivery>(std::move(due));
}

absl::StatusOr<std::optional<absl::Time>> WebhookStore::NextDue(
    Connection& db) {
  ASSIGN_OR_RETURN(Statement select,
                   db.Prepare("SELECT MIN(next_attempt_micros) FROM "
                              "webhook_deliveries WHERE state = 1"));
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row || select.ColumnIsNull(0)) return std::optional<absl::Time>();
  return std::optional<absl::Time>(absl::FromUnixMicros(select.ColumnInt64(0)));
}

absl::Status WebhookStore::RecordDelivered(Connection& db,
                                           const DeliveryKey& key,
                                           absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE webhook_deliveries SET state = 2, attempts = "
                 "attempts + 1, deliver_micros = ? WHERE owner = ? AND "
                 "endpoint_id = ? AND alert_id = ?"));
  return update.Bind(1, absl::ToUnixMicros(now))
      .Bind(2, key.owner)
      .Bind(3, key.endpoint_id)
      .Bind(4, key.alert_id)
      .Run();
}

absl::Status WebhookStore::RecordFailure(Connection& db, const DeliveryKey& key,
                                         const std::string& error,
                                         std::optional<absl::Time> retry_at) {
  ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE webhook_deliveries SET state = ?1, attempts = "
                 "attempts + 1, last_error = ?2, next_attempt_micros = "
                 "COALESCE(?3, next_attempt_micros) WHERE owner = ?4 AND "
                 "endpoint_id = ?5 AND alert_id = ?6"));
  update.Bind(1, retry_at ? 1 : 3).Bind(2, error);
  if (retry_at) {
    update.Bind(3, absl::ToUnixMicros(*retry_at));
  } else {
    update.BindNull(3);
  }
  return update.Bind(4, key.owner)
      .Bind(5, key.endpoint_id)
      .Bind(6, key.alert_id)
      .Run();
}

absl::StatusOr<std::vector<v1::WebhookDelivery>> WebhookStore::ListDeliveries(
    Connection& db, const std::string& owner, const std::string& endpoint_id,
    const std::string& endpoint_name,
    const std::optional<std::pair<int64_t, std::string>>& before, int limit) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT alert_id, state, attempts, last_error, "
                 "create_micros, next_attempt_micros, deliver_micros FROM "
                 "webhook_deliveries WHERE owner = ?1 AND endpoint_id = ?2 "
                 "AND (CAST(?3 AS BIGINT) IS NULL OR (create_micros, alert_id) "
                 "< (?3, ?4)) "
                 "ORDER BY create_micros DESC, alert_id DESC LIMIT ?5"));
  select.Bind(1, owner).Bind(2, endpoint_id);
  if (before) {
    select.Bind(3, before->first).Bind(4, before->second);
  } else {
    select.BindNull(3).BindNull(4);
  }
  select.Bind(5, limit);
  std::vector<v1::WebhookDelivery> rows;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return rows;
    v1::WebhookDelivery d;
    d.set_name(
        absl::StrCat(endpoint_name, "/deliveries/", select.ColumnText(0)));
    d.set_alert(absl::StrCat("alerts/", select.ColumnText(0)));
    d.set_state(static_cast<v1::WebhookDelivery::State>(select.ColumnInt64(1)));
    d.set_attempts(static_cast<int32_t>(select.ColumnInt64(2)));
    d.set_last_error(select.ColumnText(3));
    *d.mutable_create_time() =
        TimeUtil::MicrosecondsToTimestamp(select.ColumnInt64(4));
    if (d.state() == v1::WebhookDelivery::STATE_PENDING) {
      *d.mutable_next_attempt_time() =
          TimeUtil::MicrosecondsToTimestamp(select.ColumnInt64(5));
    }
    if (!select.ColumnIsNull(6)) {
      *d.mutable_deliver_time() =
          TimeUtil::MicrosecondsToTimestamp(select.ColumnInt64(6));
    }
    rows.push_back(std::move(d));
  }
}

}  // namespace custos::notifications
