#include "services/access_service/access_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/audit_store.h"
#include "common/consistency_token.h"
#include "common/idempotency_store.h"
#include "common/outbox.h"
#include "common/resource_name.h"
#include "common/status_macros.h"
#include "common/store_identity.h"
#include "google/protobuf/util/time_util.h"

namespace custos::access {
namespace {

using google::protobuf::util::TimeUtil;

const std::vector<Migration>& Migrations() {
  static const auto* migrations = new std::vector<Migration>{
      {1, kAuditEventsSchema},
      {2, kIdempotencyKeysSchema},
      {3, R"sql(
CREATE TABLE sites (
  id TEXT PRIMARY KEY,
  display_name TEXT NOT NULL,
  customer_id TEXT,
  version INTEGER NOT NULL,
  create_micros INTEGER NOT NULL,
  update_micros INTEGER NOT NULL
);
CREATE TABLE site_members (
  site_id TEXT NOT NULL REFERENCES sites(id),
  user_id TEXT NOT NULL,
  role INTEGER NOT NULL,
  version INTEGER NOT NULL,
  create_micros INTEGER NOT NULL,
  update_micros INTEGER NOT NULL,
  PRIMARY KEY (site_id, user_id)
);
CREATE INDEX site_members_by_role ON site_members(site_id, role);
CREATE TABLE access_requests (
  site_id TEXT NOT NULL REFERENCES sites(id),
  id TEXT NOT NULL,
  requester TEXT NOT NULL,
  requested_role INTEGER NOT NULL,
  "current_role" INTEGER NOT NULL,
  justification TEXT NOT NULL,
  state INTEGER NOT NULL,
  approver INTEGER NOT NULL,
  decided_by TEXT,
  decision_reason TEXT,
  create_micros INTEGER NOT NULL,
  decide_micros INTEGER,
  expire_micros INTEGER NOT NULL,
  PRIMARY KEY (site_id, id)
);
CREATE INDEX access_requests_by_site ON access_requests(site_id, create_micros, id);
CREATE INDEX access_requests_by_requester ON access_requests(requester, create_micros, id);
CREATE INDEX access_requests_pending ON access_requests(state, expire_micros);
CREATE TABLE pilots (
  id TEXT PRIMARY KEY,
  display_name TEXT NOT NULL,
  permissions TEXT NOT NULL,
  stage INTEGER NOT NULL,
  create_micros INTEGER NOT NULL,
  update_micros INTEGER NOT NULL
);
CREATE TABLE pilot_participants (
  pilot_id TEXT NOT NULL REFERENCES pilots(id),
  participant TEXT NOT NULL,
  PRIMARY KEY (pilot_id, participant)
);
CREATE TABLE counters (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
CREATE TABLE customer_versions (
  customer_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL
);
)sql"},
      {4, kOutboxSchema},
      {5, kOutboxByDestinationSchema},
      {6, kOutboxLeasesSchema},
      // A random id per site version, so cached answers are tagged with
      // something that never repeats (the counter repeats after a restore).
      {7,
       "ALTER TABLE sites ADD COLUMN version_id INTEGER NOT NULL DEFAULT 0;"},
      {8, kStoreIdentitySchema},
      // What each write changed, for WatchPermissionChanges: one row per
      // write sequence number, with a random id so a resume position from a
      // lost history (a restore) is recognised.
      {9, R"sql(
CREATE TABLE permission_changes (
  seq INTEGER PRIMARY KEY,
  change_id INTEGER NOT NULL,
  change_micros INTEGER NOT NULL,
  changes BLOB NOT NULL
);
CREATE INDEX permission_changes_by_time ON permission_changes(change_micros);
)sql"},
      // ListSites by customer (Customer.sites is read from here).
      {10, "CREATE INDEX sites_by_customer ON sites(customer_id, id);"},
      // Retention (PruneAuditEvents, PruneIdempotencyRecords,
      // PruneDecidedRequests) reads by time.
      {11, kAuditEventsTimeIndexSchema},
      {12, kIdempotencyKeysTimeIndexSchema},
      {13,
       "CREATE INDEX access_requests_by_decision ON "
       "access_requests(decide_micros);"},
      // FindPendingRequest: a requester's pending request on a site, without
      // reading the site's or the requester's whole history.
      {14,
       "CREATE INDEX access_requests_pending_by_requester ON "
       "access_requests(site_id, requester) WHERE state = 1;"},
      {15, kOutboxDeadLettersSchema},
      {16, kOutboxTraceSchema},
  };
  return *migrations;
}

google::protobuf::Timestamp Micros(int64_t micros) {
  return TimeUtil::MicrosecondsToTimestamp(micros);
}

v1::Site ReadSite(const Statement& row) {
  v1::Site site;
  site.set_name(absl::StrCat("sites/", row.ColumnText(0)));
  site.set_display_name(row.ColumnText(1));
  if (!row.ColumnIsNull(2)) {
    site.set_customer(absl::StrCat("customers/", row.ColumnText(2)));
  }
  site.set_etag(absl::StrCat(row.ColumnInt64(3)));
  *site.mutable_create_time() = Micros(row.ColumnInt64(4));
  *site.mutable_update_time() = Micros(row.ColumnInt64(5));
  site.set_has_administrator(row.ColumnInt64(6) != 0);
  return site;
}

constexpr char kSiteSelect[] =
    "SELECT id, display_name, customer_id, version, create_micros, "
    "update_micros, EXISTS(SELECT 1 FROM site_members m WHERE m.site_id = "
    "sites.id AND m.role = 3) FROM sites ";

v1::SiteMember ReadMember(const Statement& row) {
  v1::SiteMember member;
  member.set_name(absl::StrCat("sites/", row.ColumnText(0), "/members/",
                               row.ColumnText(1)));
  member.set_role(static_cast<v1::SiteRole>(row.ColumnInt64(2)));
  member.set_etag(absl::StrCat(row.ColumnInt64(3)));
  *member.mutable_create_time() = Micros(row.ColumnInt64(4));
  *member.mutable_update_time() = Micros(row.ColumnInt64(5));
  return member;
}

constexpr char kMemberSelect[] =
    "SELECT site_id, user_id, role, version, create_micros, update_micros "
    "FROM site_members ";

v1::AccessRequest ReadRequest(const Statement& row) {
  v1::AccessRequest request;
  request.set_name(absl::StrCat("sites/", row.ColumnText(0), "/accessRequests/",
                                row.ColumnText(1)));
  request.set_requester(UserName(row.ColumnText(2)));
  request.set_requested_role(static_cast<v1::SiteRole>(row.ColumnInt64(3)));
  request.set_current_role(static_cast<v1::SiteRole>(row.ColumnInt64(4)));
  request.set_justification(row.ColumnText(5));
  request.set_state(static_cast<v1::AccessRequest::State>(row.ColumnInt64(6)));
  request.set_approver(
      static_cast<v1::AccessRequest::Approver>(row.ColumnInt64(7)));
  if (!row.ColumnIsNull(8)) request.set_decided_by(row.ColumnText(8));
  request.set_decision_reason(row.ColumnText(9));
  *request.mutable_create_time() = Micros(row.ColumnInt64(10));
  if (!row.ColumnIsNull(11)) {
    *request.mutable_decide_time() = Micros(row.ColumnInt64(11));
  }
  *request.mutable_expire_time() = Micros(row.ColumnInt64(12));
  return request;
}

constexpr char kRequestSelect[] =
    "SELECT site_id, id, requester, requested_role, \"current_role\", "
    "justification, state, approver, decided_by, decision_reason, "
    "create_micros, decide_micros, expire_micros FROM access_requests ";

template <typename T, typename Read>
absl::StatusOr<std::optional<T>> FirstRow(Statement& statement, Read read) {
  ASSIGN_OR_RETURN(bool row, statement.Step());
  if (!row) return std::optional<T>();
  return std::optional<T>(read(statement));
}

template <typename T, typename Read>
absl::StatusOr<std::vector<T>> AllRows(Statement& statement, Read read) {
  std::vector<T> rows;
  while (true) {
    ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) return rows;
    rows.push_back(read(statement));
  }
}

// REQUIRES: `user_name` was built by UserName (logic validated it).
std::string UserIdOf(absl::string_view user_name) {
  absl::StatusOr<std::string> id = ParseUserName(user_name, "requester");
  return id.ok() ? *std::move(id) : std::string();
}

std::string CustomerIdOf(absl::string_view customer_name) {
  absl::ConsumePrefix(&customer_name, "customers/");
  return std::string(customer_name);
}

int64_t ToMicros(const google::protobuf::Timestamp& timestamp) {
  return TimeUtil::TimestampToMicroseconds(timestamp);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> AccessStore::Open(
    const std::string& database, const DatabaseOptions& options) {
  return OpenDatabase(database, Migrations(), options);
}

absl::StatusOr<VersionStamp> AccessStore::InsertSite(Connection& db,
                                                     const std::string& site_id,
                                                     const v1::Site& site,
                                                     absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO sites(id, display_name, customer_id, version, "
                 "version_id, create_micros, update_micros) VALUES (?1, ?2, "
                 "?3, 1, ?4, ?5, ?5)"));
  const VersionStamp version{1, NewVersionId()};
  RETURN_IF_ERROR(insert.Bind(1, site_id)
                      .Bind(2, site.display_name())
                      .BindOptional(3, CustomerIdOf(site.customer()))
                      .Bind(4, version.id)
                      .Bind(5, absl::ToUnixMicros(now))
                      .Run());
  return version;
}

absl::StatusOr<std::optional<v1::Site>> AccessStore::FindSite(
    Connection& db, const std::string& site_id) {
  static const std::string* sql =
      new std::string(absl::StrCat(kSiteSelect, "WHERE id = ?"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.Bind(1, site_id);
  return FirstRow<v1::Site>(select, ReadSite);
}

absl::StatusOr<std::vector<v1::Site>> AccessStore::ListSites(
    Connection& db, const std::string& customer_id, const std::string& after_id,
    int limit) {
  static const std::string* all = new std::string(
      absl::StrCat(kSiteSelect, "WHERE id > ? ORDER BY id LIMIT ?"));
  static const std::string* of_customer = new std::string(absl::StrCat(
      kSiteSelect, "WHERE customer_id = ? AND id > ? ORDER BY id LIMIT ?"));
  if (customer_id.empty()) {
    ASSIGN_OR_RETURN(Statement select, db.Prepare(*all));
    select.Bind(1, after_id).Bind(2, limit);
    return AllRows<v1::Site>(select, ReadSite);
  }
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*of_customer));
  select.Bind(1, customer_id).Bind(2, after_id).Bind(3, limit);
  return AllRows<v1::Site>(select, ReadSite);
}

absl::StatusOr<VersionStamp> AccessStore::UpdateSite(Connection& db,
                                                     const std::string& site_id,
                                                     const v1::Site& site,
                                                     absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE sites SET display_name = ?2, customer_id = ?3, "
                 "version = version + 1, version_id = ?4, update_micros = ?5 "
                 "WHERE id = ?1 RETURNING version"));
  const int64_t id = NewVersionId();
  update.Bind(1, site_id)
      .Bind(2, site.display_name())
      .BindOptional(3, CustomerIdOf(site.customer()))
      .Bind(4, id)
      .Bind(5, absl::ToUnixMicros(now));
  ASSIGN_OR_RETURN(bool row, update.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("sites/", site_id));
  const VersionStamp version{update.ColumnInt64(0), id};
  RETURN_IF_ERROR(update.Run());
  return version;
}

absl::StatusOr<VersionStamp> AccessStore::BumpSiteVersion(
    Connection& db, const std::string& site_id, absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE sites SET version = version + 1, version_id = ?3, "
                 "update_micros = ?2 WHERE id = ?1 RETURNING version"));
  const int64_t id = NewVersionId();
  update.Bind(1, site_id).Bind(2, absl::ToUnixMicros(now)).Bind(3, id);
  ASSIGN_OR_RETURN(bool row, update.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("sites/", site_id));
  const VersionStamp version{update.ColumnInt64(0), id};
  RETURN_IF_ERROR(update.Run());
  return version;
}

absl::StatusOr<VersionStamp> AccessStore::SiteVersion(
    Connection& db, const std::string& site_id) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT version, version_id FROM sites WHERE id = ?"));
  select.Bind(1, site_id);
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return VersionStamp();
  return VersionStamp{select.ColumnInt64(0), select.ColumnInt64(1)};
}

absl::StatusOr<std::optional<v1::SiteMember>> AccessStore::FindMember(
    Connection& db, const std::string& site_id, const std::string& user_id) {
  static const std::string* sql = new std::string(
      absl::StrCat(kMemberSelect, "WHERE site_id = ? AND user_id = ?"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.Bind(1, site_id).Bind(2, user_id);
  return FirstRow<v1::SiteMember>(select, ReadMember);
}

absl::StatusOr<std::vector<v1::SiteMember>> AccessStore::ListMembers(
    Connection& db, const std::string& site_id, const std::string& after_user,
    int limit) {
  static const std::string* sql = new std::string(absl::StrCat(
      kMemberSelect,
      "WHERE site_id = ? AND user_id > ? ORDER BY user_id LIMIT ?"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.Bind(1, site_id).Bind(2, after_user).Bind(3, limit);
  return AllRows<v1::SiteMember>(select, ReadMember);
}

absl::Status AccessStore::UpsertMember(Connection& db,
                                       const std::string& site_id,
                                       const std::string& user_id,
                                       v1::SiteRole role, absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement upsert,
      db.Prepare("INSERT INTO site_members(site_id, user_id, role, version, "
                 "create_micros, update_micros) VALUES (?1, ?2, ?3, 1, ?4, ?4) "
                 "ON CONFLICT(site_id, user_id) DO UPDATE SET role = ?3, "
                 "version = site_members.version + 1, update_micros = ?4"));
  return upsert.Bind(1, site_id)
      .Bind(2, user_id)
      .Bind(3, static_cast<int64_t>(role))
      .Bind(4, absl::ToUnixMicros(now))
      .Run();
}

absl::Status AccessStore::DeleteMember(Connection& db,
                                       const std::string& site_id,
                                       const std::string& user_id) {
  ASSIGN_OR_RETURN(
      Statement remove,
      db.Prepare("DELETE FROM site_members WHERE site_id = ? AND user_id = ?"));
  return remove.Bind(1, site_id).Bind(2, user_id).Run();
}

absl::StatusOr<std::vector<std::string>> AccessStore::ListAdministrators(
    Connection& db, const std::string& site_id) {
  ASSIGN_OR_RETURN(Statement select,
                   db.Prepare("SELECT user_id FROM site_members WHERE "
                              "site_id = ? AND role = 3 ORDER BY user_id"));
  select.Bind(1, site_id);
  return AllRows<std::string>(
      select, [](const Statement& row) { return row.ColumnText(0); });
}

absl::StatusOr<int64_t> AccessStore::CountAdministrators(
    Connection& db, const std::string& site_id) {
  ASSIGN_OR_RETURN(Statement count,
                   db.Prepare("SELECT COUNT(*) FROM site_members WHERE "
                              "site_id = ? AND role = 3"));
  count.Bind(1, site_id);
  ASSIGN_OR_RETURN(bool row, count.Step());
  return row ? count.ColumnInt64(0) : 0;
}

absl::Status AccessStore::InsertRequest(Connection& db,
                                        const std::string& site_id,
                                        const std::string& request_id,
                                        const v1::AccessRequest& request) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO access_requests(site_id, id, requester, "
                 "requested_role, \"current_role\", justification, state, "
                 "approver, create_micros, expire_micros) VALUES (?, ?, ?, ?, "
                 "?, ?, ?, ?, ?, ?)"));
  return insert.Bind(1, site_id)
      .Bind(2, request_id)
      .Bind(3, UserIdOf(request.requester()))
      .Bind(4, static_cast<int64_t>(request.requested_role()))
      .Bind(5, static_cast<int64_t>(request.current_role()))
      .Bind(6, request.justification())
      .Bind(7, static_cast<int64_t>(request.state()))
      .Bind(8, static_cast<int64_t>(request.approver()))
      .Bind(9, ToMicros(request.create_time()))
      .Bind(10, ToMicros(request.expire_time()))
      .Run();
}

absl::StatusOr<std::optional<v1::AccessRequest>> AccessStore::FindRequest(
    Connection& db, const std::string& site_id, const std::string& request_id) {
  static const std::string* sql = new std::string(
      absl::StrCat(kRequestSelect, "WHERE site_id = ? AND id = ?"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.Bind(1, site_id).Bind(2, request_id);
  return FirstRow<v1::AccessRequest>(select, ReadRequest);
}

absl::StatusOr<std::optional<v1::AccessRequest>>
AccessStore::FindPendingRequest(Connection& db, const std::string& site_id,
                                const std::string& requester) {
  static const std::string* sql = new std::string(absl::StrCat(
      kRequestSelect, "WHERE site_id = ? AND requester = ? AND state = 1"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.Bind(1, site_id).Bind(2, requester);
  return FirstRow<v1::AccessRequest>(select, ReadRequest);
}

absl::StatusOr<std::vector<v1::AccessRequest>> AccessStore::ListRequests(
    Connection& db, const AccessRequestFilter& filter,
    const std::optional<std::pair<int64_t, std::string>>& before, int limit) {
  // NULL parameters switch a condition off, so one cached statement serves
  // every filter combination.
  static const std::string* sql = new std::string(absl::StrCat(
      kRequestSelect,
      "WHERE (CAST(?1 AS TEXT) IS NULL OR site_id = ?1) AND (CAST(?2 AS TEXT) "
      "IS NULL OR requester = ?2) AND (CAST(?3 AS BIGINT) IS NULL OR state = "
      "?3) AND (CAST(?4 AS BIGINT) IS NULL OR approver = ?4) AND (CAST(?5 AS "
      "BIGINT) IS NULL OR (create_micros, site_id || '/' || id) < (?5, ?6)) "
      "ORDER BY create_micros DESC, site_id || '/' || id DESC LIMIT ?7"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.BindOptional(1, filter.site_id).BindOptional(2, filter.requester);
  if (filter.state) {
    select.Bind(3, static_cast<int64_t>(*filter.state));
  } else {
    select.BindNull(3);
  }
  if (filter.approver) {
    select.Bind(4, static_cast<int64_t>(*filter.approver));
  } else {
    select.BindNull(4);
  }
  if (before) {
    select.Bind(5, before->first).Bind(6, before->second);
  } else {
    select.BindNull(5).BindNull(6);
  }
  select.Bind(7, limit);
  return AllRows<v1::AccessRequest>(select, ReadRequest);
}

absl::Status AccessStore::UpdateRequest(Connection& db,
                                        const std::string& site_id,
                                        const std::string& request_id,
                                        const v1::AccessRequest& request) {
  ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE access_requests SET state = ?3, approver = ?4, "
                 "decided_by = ?5, decision_reason = ?6, decide_micros = ?7 "
                 "WHERE site_id = ?1 AND id = ?2"));
  update.Bind(1, site_id)
      .Bind(2, request_id)
      .Bind(3, static_cast<int64_t>(request.state()))
      .Bind(4, static_cast<int64_t>(request.approver()))
      .BindOptional(5, request.decided_by())
      .BindOptional(6, request.decision_reason());
  if (request.has_decide_time()) {
    update.Bind(7, ToMicros(request.decide_time()));
  } else {
    update.BindNull(7);
  }
  return update.Run();
}

absl::StatusOr<int64_t> AccessStore::MovePendingToCustomerCare(
    Connection& db, const std::string& site_id) {
  ASSIGN_OR_RETURN(Statement update,
                   db.Prepare("UPDATE access_requests SET approver = 2 WHERE "
                              "site_id = ? AND state = 1 AND approver = 1"));
  RETURN_IF_ERROR(update.Bind(1, site_id).Run());
  return db.Changes();
}

absl::StatusOr<std::vector<std::string>> AccessStore::ExpireDue(
    Connection& db, absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE access_requests SET state = 5, decide_micros = ?1 "
                 "WHERE state = 1 AND expire_micros <= ?1 RETURNING site_id, "
                 "id"));
  update.Bind(1, absl::ToUnixMicros(now));
  return AllRows<std::string>(update, [](const Statement& row) {
    return absl::StrCat("sites/", row.ColumnText(0), "/accessRequests/",
                        row.ColumnText(1));
  });
}

absl::StatusOr<int64_t> AccessStore::PruneDecidedRequests(Database& database,
                                                          absl::Time older_than,
                                                          int batch_size) {
  if (batch_size <= 0) {
    return absl::InvalidArgumentError("batch_size must be > 0");
  }
  int64_t deleted = 0;
  RETURN_IF_ERROR(database.Write([&](Connection& db) -> absl::Status {
    // State 1 is STATE_PENDING; every other state is final and has its
    // decide time (pending rows have none, so the range never meets them).
    ASSIGN_OR_RETURN(
        Statement remove,
        db.Prepare("DELETE FROM access_requests WHERE (site_id, id) IN "
                   "(SELECT site_id, id FROM access_requests WHERE state <> 1 "
                   "AND decide_micros < ? ORDER BY decide_micros LIMIT ?)"));
    RETURN_IF_ERROR(remove.Bind(1, absl::ToUnixMicros(older_than))
                        .Bind(2, batch_size)
                        .Run());
    deleted = db.Changes();
    return absl::OkStatus();
  }));
  return deleted;
}

absl::Status AccessStore::InsertPilot(Connection& db,
                                      const std::string& pilot_id,
                                      const v1::Pilot& pilot, absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO pilots(id, display_name, permissions, stage, "
                 "create_micros, update_micros) VALUES (?1, ?2, ?3, ?4, ?5, "
                 "?5)"));
  return insert.Bind(1, pilot_id)
      .Bind(2, pilot.display_name())
      .Bind(3, absl::StrJoin(pilot.permissions(), "\n"))
      .Bind(4, static_cast<int64_t>(pilot.stage()))
      .Bind(5, absl::ToUnixMicros(now))
      .Run();
}

namespace {

absl::StatusOr<std::vector<v1::Pilot>> LoadPilots(Connection& db,
                                                  const std::string& pilot_id) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare(
          "SELECT id, display_name, permissions, stage, create_micros, "
          "update_micros FROM pilots WHERE CAST(?1 AS TEXT) IS NULL OR id = ?1 "
          "ORDER BY id"));
  select.BindOptional(1, pilot_id);
  ASSIGN_OR_RETURN(
      std::vector<v1::Pilot> pilots,
      AllRows<v1::Pilot>(select, [](const Statement& row) {
        v1::Pilot pilot;
        pilot.set_name(absl::StrCat("pilots/", row.ColumnText(0)));
        pilot.set_display_name(row.ColumnText(1));
        std::string permissions = row.ColumnText(2);
        if (!permissions.empty()) {
          for (absl::string_view p : absl::StrSplit(permissions, '\n')) {
            pilot.add_permissions(std::string(p));
          }
        }
        pilot.set_stage(static_cast<v1::Pilot::Stage>(row.ColumnInt64(3)));
        *pilot.mutable_create_time() = Micros(row.ColumnInt64(4));
        *pilot.mutable_update_time() = Micros(row.ColumnInt64(5));
        return pilot;
      }));
  ASSIGN_OR_RETURN(
      Statement participants,
      db.Prepare("SELECT participant FROM pilot_participants WHERE "
                 "pilot_id = ? ORDER BY participant"));
  for (v1::Pilot& pilot : pilots) {
    participants.Bind(1, pilot.name().substr(sizeof("pilots/") - 1));
    while (true) {
      ASSIGN_OR_RETURN(bool row, participants.Step());
      if (!row) break;
      pilot.add_participants(participants.ColumnText(0));
    }
    participants.Reset();
  }
  return pilots;
}

}  // namespace

absl::StatusOr<std::optional<v1::Pilot>> AccessStore::FindPilot(
    Connection& db, const std::string& pilot_id) {
  ASSIGN_OR_RETURN(std::vector<v1::Pilot> pilots, LoadPilots(db, pilot_id));
  if (pilots.empty()) return std::optional<v1::Pilot>();
  return std::optional<v1::Pilot>(std::move(pilots.front()));
}

absl::StatusOr<std::vector<v1::Pilot>> AccessStore::ListAllPilots(
    Connection& db) {
  return LoadPilots(db, "");
}

absl::Status AccessStore::UpdatePilot(Connection& db,
                                      const std::string& pilot_id,
                                      const v1::Pilot& pilot, absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE pilots SET display_name = ?2, stage = ?3, "
                 "update_micros = ?4 WHERE id = ?1"));
  return update.Bind(1, pilot_id)
      .Bind(2, pilot.display_name())
      .Bind(3, static_cast<int64_t>(pilot.stage()))
      .Bind(4, absl::ToUnixMicros(now))
      .Run();
}

absl::StatusOr<bool> AccessStore::AddParticipant(
    Connection& db, const std::string& pilot_id,
    const std::string& participant) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO pilot_participants(pilot_id, "
                 "participant) VALUES (?, ?) ON CONFLICT(pilot_id, "
                 "participant) DO NOTHING"));
  RETURN_IF_ERROR(insert.Bind(1, pilot_id).Bind(2, participant).Run());
  return db.Changes() > 0;
}

absl::StatusOr<bool> AccessStore::RemoveParticipant(
    Connection& db, const std::string& pilot_id,
    const std::string& participant) {
  ASSIGN_OR_RETURN(Statement remove,
                   db.Prepare("DELETE FROM pilot_participants WHERE "
                              "pilot_id = ? AND participant = ?"));
  RETURN_IF_ERROR(remove.Bind(1, pilot_id).Bind(2, participant).Run());
  return db.Changes() > 0;
}

absl::StatusOr<int64_t> AccessStore::Counter(Connection& db,
                                             absl::string_view name) {
  ASSIGN_OR_RETURN(Statement select,
                   db.Prepare("SELECT value FROM counters WHERE name = ?"));
  select.Bind(1, name);
  ASSIGN_OR_RETURN(bool row, select.Step());
  return row ? select.ColumnInt64(0) : 0;
}

absl::StatusOr<int64_t> AccessStore::BumpCounter(Connection& db,
                                                 absl::string_view name) {
  ASSIGN_OR_RETURN(
      Statement upsert,
      db.Prepare(
          "INSERT INTO counters(name, value) VALUES (?, 1) ON "
          "CONFLICT(name) DO UPDATE SET value = counters.value + 1 RETURNING "
          "value"));
  upsert.Bind(1, name);
  ASSIGN_OR_RETURN(bool row, upsert.Step());
  if (!row) return absl::InternalError("counter upsert returned no row");
  int64_t value = upsert.ColumnInt64(0);
  RETURN_IF_ERROR(upsert.Run());
  return value;
}

absl::Status AccessStore::InsertPermissionChange(
    Connection& db, const PermissionChangeRow& row) {
  ASSIGN_OR_RETURN(Statement insert,
                   db.Prepare("INSERT INTO permission_changes(seq, change_id, "
                              "change_micros, changes) VALUES (?, ?, ?, ?)"));
  return insert.Bind(1, row.seq)
      .Bind(2, row.change_id)
      .Bind(3, row.change_micros)
      .BindBlob(4, row.changes)
      .Run();
}

namespace {

constexpr char kPermissionChangeColumns[] =
    "SELECT seq, change_id, change_micros, changes FROM permission_changes ";

PermissionChangeRow ReadPermissionChange(const Statement& row) {
  PermissionChangeRow change;
  change.seq = row.ColumnInt64(0);
  change.change_id = row.ColumnInt64(1);
  change.change_micros = row.ColumnInt64(2);
  change.changes = row.ColumnText(3);
  return change;
}

}  // namespace

absl::StatusOr<std::vector<PermissionChangeRow>>
AccessStore::ListPermissionChanges(Connection& db, int64_t after_seq,
                                   int limit) {
  static const std::string* sql = new std::string(absl::StrCat(
      kPermissionChangeColumns, "WHERE seq > ? ORDER BY seq LIMIT ?"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.Bind(1, after_seq).Bind(2, limit);
  return AllRows<PermissionChangeRow>(select, ReadPermissionChange);
}

absl::StatusOr<std::optional<PermissionChangeRow>>
AccessStore::FindPermissionChange(Connection& db, int64_t seq) {
  static const std::string* sql =
      new std::string(absl::StrCat(kPermissionChangeColumns, "WHERE seq = ?"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.Bind(1, seq);
  return FirstRow<PermissionChangeRow>(select, ReadPermissionChange);
}

absl::StatusOr<std::optional<PermissionChangeRow>>
AccessStore::LastPermissionChange(Connection& db) {
  static const std::string* sql = new std::string(
      absl::StrCat(kPermissionChangeColumns, "ORDER BY seq DESC LIMIT 1"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  return FirstRow<PermissionChangeRow>(select, ReadPermissionChange);
}

absl::StatusOr<int64_t> AccessStore::PrunePermissionChanges(
    Connection& db, absl::Time older_than) {
  // The newest row stays: positions are checked against it.
  ASSIGN_OR_RETURN(
      Statement remove,
      db.Prepare("DELETE FROM permission_changes WHERE change_micros < ? AND "
                 "seq < (SELECT MAX(seq) FROM permission_changes)"));
  RETURN_IF_ERROR(remove.Bind(1, absl::ToUnixMicros(older_than)).Run());
  return db.Changes();
}

absl::StatusOr<std::string> AccessStore::IdentityValue(Connection& db,
                                                       absl::string_view name) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT value FROM store_identity WHERE name = ?"));
  select.Bind(1, name);
  ASSIGN_OR_RETURN(bool row, select.Step());
  return row ? select.ColumnText(0) : "";
}

absl::Status AccessStore::SetIdentityValue(Connection& db,
                                           absl::string_view name,
                                           absl::string_view value) {
  ASSIGN_OR_RETURN(
      Statement upsert,
      db.Prepare("INSERT INTO store_identity(name, value) VALUES (?1, ?2) ON "
                 "CONFLICT(name) DO UPDATE SET value = excluded.value"));
  return upsert.Bind(1, name).Bind(2, value).Run();
}

absl::StatusOr<VersionStamp> AccessStore::BumpPilotsVersion(Connection& db) {
  ASSIGN_OR_RETURN(int64_t order, BumpCounter(db, kPilotsCounter));
  const int64_t id = NewVersionId();
  ASSIGN_OR_RETURN(
      Statement upsert,
      db.Prepare("INSERT INTO counters(name, value) VALUES (?1, ?2) ON "
                 "CONFLICT(name) DO UPDATE SET value = excluded.value"));
  RETURN_IF_ERROR(upsert.Bind(1, kPilotsIdCounter).Bind(2, id).Run());
  return VersionStamp{order, id};
}

absl::StatusOr<VersionStamp> AccessStore::PilotsVersion(Connection& db) {
  ASSIGN_OR_RETURN(int64_t order, Counter(db, kPilotsCounter));
  ASSIGN_OR_RETURN(int64_t id, Counter(db, kPilotsIdCounter));
  return VersionStamp{order, id};
}

}  // namespace custos::access
