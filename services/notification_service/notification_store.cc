#include "services/notification_service/notification_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/audit_store.h"
#include "common/idempotency_store.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace custos::notifications {
namespace {

using google::protobuf::util::TimeUtil;

const std::vector<Migration>& Migrations() {
  static const auto* migrations = new std::vector<Migration>{
      {1, kAuditEventsSchema},
      {2, kIdempotencyKeysSchema},
      {3, R"sql(
CREATE TABLE alerts (
  id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  category INTEGER NOT NULL,
  severity INTEGER NOT NULL,
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  recipient_count INTEGER NOT NULL DEFAULT 0,
  create_micros INTEGER NOT NULL
);
CREATE TABLE inbox (
  user_id TEXT NOT NULL,
  alert_id TEXT NOT NULL REFERENCES alerts(id),
  read INTEGER NOT NULL DEFAULT 0,
  create_micros INTEGER NOT NULL,
  PRIMARY KEY (user_id, alert_id)
);
CREATE INDEX inbox_newest ON inbox(user_id, create_micros, alert_id);
CREATE TABLE muted_categories (
  user_id TEXT NOT NULL,
  category INTEGER NOT NULL,
  PRIMARY KEY (user_id, category)
);
)sql"},
      {4, R"sql(
ALTER TABLE alerts ADD COLUMN broadcast_kind INTEGER NOT NULL DEFAULT 0;
CREATE TABLE fanouts (
  alert_id TEXT PRIMARY KEY REFERENCES alerts(id),
  page_token TEXT NOT NULL DEFAULT '',
  done INTEGER NOT NULL DEFAULT 0
);
)sql"},
      // Superseded by migration 8's arrival numbers.
      {5, "CREATE INDEX inbox_arrival ON inbox(user_id);"},
      {6, "ALTER TABLE alerts ADD COLUMN subject TEXT NOT NULL DEFAULT '';"},
      // Webhooks (R12): one delivery row per endpoint × alert.
      {7, R"sql(
CREATE TABLE webhook_endpoints (
  owner TEXT NOT NULL,
  id TEXT NOT NULL,
  url TEXT NOT NULL,
  secret TEXT NOT NULL,
  create_micros INTEGER NOT NULL,
  PRIMARY KEY (owner, id)
);
CREATE TABLE webhook_deliveries (
  owner TEXT NOT NULL,
  endpoint_id TEXT NOT NULL,
  alert_id TEXT NOT NULL REFERENCES alerts(id),
  state INTEGER NOT NULL DEFAULT 1,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  create_micros INTEGER NOT NULL,
  next_attempt_micros INTEGER NOT NULL,
  deliver_micros INTEGER,
  PRIMARY KEY (owner, endpoint_id, alert_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state,
  next_attempt_micros);
CREATE INDEX webhook_deliveries_newest ON webhook_deliveries(owner,
  endpoint_id, create_micros, alert_id);
)sql"},
      // The stream cursor: inbox rows are numbered in commit order. Deliver
      // takes a block of numbers from the one inbox_arrivals row inside its
      // write transaction, so inbox writers follow one another (SQLite: one
      // writer; PostgreSQL: the row's lock, a concurrent writer retries) and
      // a row never commits behind a cursor already handed out. SQLite's
      // rowid served before and is kept, so resume cursors stay valid;
      // PostgreSQL has no rowid.
      {8, R"sql(
ALTER TABLE inbox ADD COLUMN arrival INTEGER NOT NULL DEFAULT 0;
UPDATE inbox SET arrival = rowid;
CREATE TABLE inbox_arrivals (last INTEGER NOT NULL);
INSERT INTO inbox_arrivals SELECT COALESCE(MAX(arrival), 0) FROM inbox;
DROP INDEX inbox_arrival;
CREATE INDEX inbox_by_arrival ON inbox(user_id, arrival);
)sql",
       R"sql(
ALTER TABLE inbox ADD COLUMN arrival BIGINT NOT NULL DEFAULT 0;
UPDATE inbox SET arrival = r.n FROM (SELECT user_id, alert_id, ROW_NUMBER()
  OVER (ORDER BY create_micros, alert_id) AS n FROM inbox) r
  WHERE inbox.user_id = r.user_id AND inbox.alert_id = r.alert_id;
CREATE TABLE inbox_arrivals (last BIGINT NOT NULL);
INSERT INTO inbox_arrivals SELECT COALESCE(MAX(arrival), 0) FROM inbox;
DROP INDEX inbox_arrival;
CREATE INDEX inbox_by_arrival ON inbox(user_id, arrival);
)sql"},
      // Retention (PruneAuditEvents, PruneIdempotencyRecords,
      // PruneReadNotifications) reads by time.
      {9, kAuditEventsTimeIndexSchema},
      {10, kIdempotencyKeysTimeIndexSchema},
      {11, "CREATE INDEX inbox_read_by_time ON inbox(read, create_micros);"},
      // Webhook POSTs carry the publishing call's trace and request id.
      {12,
       "ALTER TABLE webhook_deliveries ADD COLUMN trace_parent TEXT NOT NULL "
       "DEFAULT ''; ALTER TABLE webhook_deliveries ADD COLUMN request_id TEXT "
       "NOT NULL DEFAULT '';"},
  };
  return *migrations;
}

// The notification columns every inbox listing selects, after any leading
// columns of its own.
constexpr char kNotificationColumns[] =
    "i.alert_id, a.customer_id, a.category, a.severity, a.title, a.body, "
    "i.read, i.create_micros, a.broadcast_kind, a.subject";

// Built once: prepared statements are cached by their SQL text, which must
// outlive the connection.
const std::string* const kListInboxSql = new std::string(absl::StrCat(
    "SELECT ", kNotificationColumns,
    " FROM inbox i JOIN alerts a ON a.id = i.alert_id WHERE i.user_id = ?1 "
    "AND (?2 = 0 OR i.read = 0) AND (CAST(?3 AS BIGINT) IS NULL OR "
    "(i.create_micros, i.alert_id) < (?3, ?4)) ORDER BY i.create_micros DESC, "
    "i.alert_id DESC LIMIT ?5"));
const std::string* const kListArrivedSql = new std::string(absl::StrCat(
    "SELECT i.arrival, ", kNotificationColumns,
    " FROM inbox i JOIN alerts a ON a.id = i.alert_id WHERE i.user_id = ?1 "
    "AND i.arrival > ?2 ORDER BY i.arrival LIMIT ?3"));

// Reads kNotificationColumns starting at column `first`.
v1::Notification ReadNotification(Statement& row, int first,
                                  const std::string& inbox) {
  v1::Notification n;
  const std::string alert_id = row.ColumnText(first);
  n.set_name(absl::StrCat(NotificationStore::InboxName(inbox),
                          "/notifications/", alert_id));
  n.set_alert(absl::StrCat("alerts/", alert_id));
  if (const std::string customer = row.ColumnText(first + 1);
      !customer.empty()) {
    n.set_customer(absl::StrCat("customers/", customer));
  }
  n.set_category(static_cast<v1::Category>(row.ColumnInt64(first + 2)));
  n.set_severity(static_cast<v1::Severity>(row.ColumnInt64(first + 3)));
  n.set_title(row.ColumnText(first + 4));
  n.set_body(row.ColumnText(first + 5));
  n.set_read(row.ColumnInt64(first + 6) != 0);
  *n.mutable_create_time() =
      TimeUtil::MicrosecondsToTimestamp(row.ColumnInt64(first + 7));
  n.set_broadcast_kind(
      static_cast<v1::BroadcastKind>(row.ColumnInt64(first + 8)));
  n.set_subject(row.ColumnText(first + 9));
  return n;
}

}  // namespace

std::string NotificationStore::InboxName(const std::string& inbox) {
  // Queue inboxes are stored under their resource name; a user id never
  // contains a slash.
  if (inbox.find('/') != std::string::npos) return inbox;
  return absl::StrCat("users/", inbox);
}

absl::StatusOr<std::unique_ptr<Database>> NotificationStore::Open(
    const std::string& database, const DatabaseOptions& options) {
  return OpenDatabase(database, Migrations(), options);
}

absl::Status NotificationStore::InsertAlert(Connection& db,
                                            const std::string& alert_id,
                                            const v1::Alert& alert,
                                            absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO alerts(id, customer_id, category, severity, "
                 "title, body, recipient_count, create_micros, "
                 "broadcast_kind, subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                 "?)"));
  absl::string_view customer = alert.customer();
  absl::ConsumePrefix(&customer, "customers/");
  return insert.Bind(1, alert_id)
      .Bind(2, customer)
      .Bind(3, static_cast<int64_t>(alert.category()))
      .Bind(4, static_cast<int64_t>(alert.severity()))
      .Bind(5, alert.title())
      .Bind(6, alert.body())
      .Bind(7, alert.recipient_count())
      .Bind(8, absl::ToUnixMicros(now))
      .Bind(9, static_cast<int64_t>(alert.broadcast_kind()))
      .Bind(10, alert.subject())
      .Run();
}

absl::StatusOr<std::optional<v1::Alert>> NotificationStore::FindAlert(
    Connection& db, const std::string& alert_id) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT a.customer_id, a.category, a.severity, a.title, "
                 "a.body, a.recipient_count, a.create_micros, "
                 "a.broadcast_kind, COALESCE(f.done, 1), a.subject FROM "
                 "alerts a LEFT "
                 "JOIN fanouts f ON f.alert_id = a.id WHERE a.id = ?"));
  select.Bind(1, alert_id);
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::optional<v1::Alert>();
  v1::Alert alert;
  alert.set_name(absl::StrCat("alerts/", alert_id));
  if (!select.ColumnText(0).empty()) {
    alert.set_customer(absl::StrCat("customers/", select.ColumnText(0)));
  }
  alert.set_category(static_cast<v1::Category>(select.ColumnInt64(1)));
  alert.set_severity(static_cast<v1::Severity>(select.ColumnInt64(2)));
  alert.set_title(select.ColumnText(3));
  alert.set_body(select.ColumnText(4));
  alert.set_recipient_count(select.ColumnInt64(5));
  *alert.mutable_create_time() =
      TimeUtil::MicrosecondsToTimestamp(select.ColumnInt64(6));
  alert.set_broadcast_kind(
      static_cast<v1::BroadcastKind>(select.ColumnInt64(7)));
  alert.set_fan_out_complete(select.ColumnInt64(8) != 0);
  alert.set_subject(select.ColumnText(9));
  return std::optional<v1::Alert>(std::move(alert));
}

absl::Status NotificationStore::StartFanout(Connection& db,
                                            const std::string& alert_id) {
  ASSIGN_OR_RETURN(Statement insert,
                   db.Prepare("INSERT INTO fanouts(alert_id) VALUES (?)"));
  return insert.Bind(1, alert_id).Run();
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
NotificationStore::PendingFanouts(Connection& db) {
  ASSIGN_OR_RETURN(Statement select,
                   db.Prepare("SELECT alert_id, page_token FROM fanouts WHERE "
                              "done = 0 ORDER BY alert_id"));
  std::vector<std::pair<std::string, std::string>> pending;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return pending;
    pending.emplace_back(select.ColumnText(0), select.ColumnText(1));
  }
}

absl::StatusOr<bool> NotificationStore::AdvanceFanout(
    Connection& db, const std::string& alert_id, const std::string& from_token,
    const std::string& next_token) {
  ASSIGN_OR_RETURN(Statement fanout,
                   db.Prepare("UPDATE fanouts SET page_token = ?2, done = ?3 "
                              "WHERE alert_id = ?1 AND page_token = ?4 AND "
                              "done = 0"));
  RETURN_IF_ERROR(fanout.Bind(1, alert_id)
                      .Bind(2, next_token)
                      .Bind(3, next_token.empty() ? 1 : 0)
                      .Bind(4, from_token)
                      .Run());
  return db.Changes() > 0;
}

absl::Status NotificationStore::AddRecipients(Connection& db,
                                              const std::string& alert_id,
                                              int64_t delivered) {
  ASSIGN_OR_RETURN(Statement count,
                   db.Prepare("UPDATE alerts SET recipient_count = "
                              "recipient_count + ?2 WHERE id = ?1"));
  return count.Bind(1, alert_id).Bind(2, delivered).Run();
}

absl::StatusOr<int64_t> NotificationStore::Deliver(
    Connection& db, const std::string& alert_id,
    const std::vector<std::string>& users, absl::Time now) {
  if (users.empty()) return 0;
  ASSIGN_OR_RETURN(Statement take,
                   db.Prepare("UPDATE inbox_arrivals SET last = last + ? "
                              "RETURNING last"));
  ASSIGN_OR_RETURN(bool row,
                   take.Bind(1, static_cast<int64_t>(users.size())).Step());
  if (!row) return absl::InternalError("inbox_arrivals has no row");
  // Numbers of rows ignored as repeats are simply not used.
  int64_t arrival = take.ColumnInt64(0) - static_cast<int64_t>(users.size());
  RETURN_IF_ERROR(take.Run());
  ASSIGN_OR_RETURN(Statement insert,
                   db.Prepare("INSERT INTO inbox(user_id, alert_id, "
                              "create_micros, arrival) VALUES (?, ?, ?, ?) ON "
                              "CONFLICT(user_id, alert_id) DO NOTHING"));
  int64_t delivered = 0;
  for (const std::string& user : users) {
    RETURN_IF_ERROR(insert.Bind(1, user)
                        .Bind(2, alert_id)
                        .Bind(3, absl::ToUnixMicros(now))
                        .Bind(4, ++arrival)
                        .Run());
    delivered += db.Changes();
    insert.Reset();
  }
  return delivered;
}

absl::StatusOr<std::vector<v1::Notification>> NotificationStore::ListInbox(
    Connection& db, const std::string& user_id, bool unread_only,
    const std::optional<std::pair<int64_t, std::string>>& before, int limit) {
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*kListInboxSql));
  select.Bind(1, user_id).Bind(2, unread_only ? 1 : 0);
  if (before) {
    select.Bind(3, before->first).Bind(4, before->second);
  } else {
    select.BindNull(3).BindNull(4);
  }
  select.Bind(5, limit);
  std::vector<v1::Notification> rows;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return rows;
    rows.push_back(ReadNotification(select, 0, user_id));
  }
}

absl::StatusOr<std::vector<std::pair<int64_t, v1::Notification>>>
NotificationStore::ListArrivedAfter(Connection& db, const std::string& user_id,
                                    int64_t after, int limit) {
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*kListArrivedSql));
  select.Bind(1, user_id).Bind(2, after).Bind(3, limit);
  std::vector<std::pair<int64_t, v1::Notification>> rows;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return rows;
    rows.emplace_back(select.ColumnInt64(0),
                      ReadNotification(select, 1, user_id));
  }
}

absl::StatusOr<int64_t> NotificationStore::LastArrival(
    Connection& db, const std::string& user_id) {
  ASSIGN_OR_RETURN(Statement select,
                   db.Prepare("SELECT COALESCE(MAX(arrival), 0) FROM inbox "
                              "WHERE user_id = ?"));
  select.Bind(1, user_id);
  ASSIGN_OR_RETURN(bool row, select.Step());
  return row ? select.ColumnInt64(0) : 0;
}

absl::StatusOr<int64_t> NotificationStore::MarkRead(
    Connection& db, const std::string& user_id,
    const std::vector<std::string>& alert_ids) {
  if (alert_ids.empty()) {
    ASSIGN_OR_RETURN(Statement all,
                     db.Prepare("UPDATE inbox SET read = 1 WHERE user_id = ? "
                                "AND read = 0"));
    RETURN_IF_ERROR(all.Bind(1, user_id).Run());
    return db.Changes();
  }
  ASSIGN_OR_RETURN(Statement one,
                   db.Prepare("UPDATE inbox SET read = 1 WHERE user_id = ? "
                              "AND alert_id = ? AND read = 0"));
  int64_t marked = 0;
  for (const std::string& alert_id : alert_ids) {
    RETURN_IF_ERROR(one.Bind(1, user_id).Bind(2, alert_id).Run());
    marked += db.Changes();
    one.Reset();
  }
  return marked;
}

absl::StatusOr<int64_t> NotificationStore::PruneReadNotifications(
    Database& database, absl::Time older_than, int batch_size) {
  if (batch_size <= 0) {
    return absl::InvalidArgumentError("batch_size must be > 0");
  }
  int64_t deleted = 0;
  RETURN_IF_ERROR(database.Write([&](Connection& db) -> absl::Status {
    // Stream cursors stay valid: arrival numbers come from inbox_arrivals,
    // never from the rows left.
    ASSIGN_OR_RETURN(
        Statement remove,
        db.Prepare("DELETE FROM inbox WHERE (user_id, alert_id) IN (SELECT "
                   "user_id, alert_id FROM inbox WHERE read = 1 AND "
                   "create_micros < ? ORDER BY create_micros LIMIT ?)"));
    RETURN_IF_ERROR(remove.Bind(1, absl::ToUnixMicros(older_than))
                        .Bind(2, batch_size)
                        .Run());
    deleted = db.Changes();
    return absl::OkStatus();
  }));
  return deleted;
}

absl::StatusOr<absl::flat_hash_set<int>> NotificationStore::MutedCategories(
    Connection& db, const std::string& user_id) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT category FROM muted_categories WHERE user_id = ?"));
  select.Bind(1, user_id);
  absl::flat_hash_set<int> muted;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return muted;
    muted.insert(static_cast<int>(select.ColumnInt64(0)));
  }
}

absl::Status NotificationStore::SetMutedCategories(
    Connection& db, const std::string& user_id,
    const std::vector<int>& categories) {
  ASSIGN_OR_RETURN(
      Statement clear,
      db.Prepare("DELETE FROM muted_categories WHERE user_id = ?"));
  RETURN_IF_ERROR(clear.Bind(1, user_id).Run());
  ASSIGN_OR_RETURN(Statement insert,
                   db.Prepare("INSERT INTO muted_categories(user_id, "
                              "category) VALUES (?, ?) ON CONFLICT(user_id, "
                              "category) DO NOTHING"));
  for (int category : categories) {
    RETURN_IF_ERROR(insert.Bind(1, user_id).Bind(2, category).Run());
    insert.Reset();
  }
  return absl::OkStatus();
}

}  // namespace custos::notifications
