// Retention pruning on the services' real schemas (their migrations, on
// SQLite, or PostgreSQL under CUSTOS_TEST_BACKEND=postgresql): rows older
// than the cutoff go in batches, everything else stays — newer rows,
// pending access requests however old, unread notifications however old.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/audit_store.h"
#include "common/database.h"
#include "common/idempotency_store.h"
#include "common/status_macros.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "services/access_service/access_store.h"
#include "services/notification_service/notification_store.h"
#include "tests/support/http_receiver.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"
#include "tests/support/test_token.h"

namespace custos {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::testing::UnorderedElementsAre;

namespace access_v1 = ::custos::access::v1;
namespace notifications_v1 = ::custos::notifications::v1;

const absl::Time kCutoff = absl::FromUnixSeconds(1'800'000'000);

google::protobuf::Timestamp ToProto(absl::Time time) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(time));
}

// Prunes until a call deletes nothing; the counts each call returned.
template <typename Prune>
std::vector<int64_t> PruneAll(Prune prune) {
  std::vector<int64_t> counts;
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<int64_t> deleted = prune();
    EXPECT_TRUE(deleted.ok()) << deleted.status();
    if (!deleted.ok()) break;
    counts.push_back(*deleted);
    if (*deleted == 0) break;
  }
  return counts;
}

// The notification service's database: it holds audit_events and
// idempotency_keys like every service's.
std::unique_ptr<Database> OpenNotificationStore() {
  auto db = notifications::NotificationStore::Open(
      testing::TestDatabase(testing::MakeTempDir(), "notifications"));
  EXPECT_TRUE(db.ok()) << db.status();
  return db.ok() ? *std::move(db) : nullptr;
}

std::unique_ptr<Database> OpenAccessStore() {
  auto db = access::AccessStore::Open(
      testing::TestDatabase(testing::MakeTempDir(), "access"));
  EXPECT_TRUE(db.ok()) << db.status();
  return db.ok() ? *std::move(db) : nullptr;
}

// ---- Idempotency records ----

IdempotencyKey KeyOf(const std::string& request_id) {
  return {"users/alice", "CreateThing", request_id};
}

absl::Status Record(Database& db, const std::string& request_id,
                    absl::Time at) {
  return db.Write([&](Connection& c) {
    access_v1::Site response;
    response.set_display_name(request_id);
    return RecordResponse(c, KeyOf(request_id), "fingerprint", response, at);
  });
}

bool Replayable(Database& db, const std::string& request_id) {
  bool found = false;
  EXPECT_TRUE(db.Read([&](Connection& c) -> absl::Status {
                  ASSIGN_OR_RETURN(auto replay, FindReplay(c, KeyOf(request_id),
                                                           "fingerprint"));
                  found = replay.has_value();
                  return absl::OkStatus();
                }).ok());
  return found;
}

TEST(RetentionTest, IdempotencyRecordsOlderThanCutoffGoInBatches) {
  std::unique_ptr<Database> db = OpenNotificationStore();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(Record(*db, "old-1", kCutoff - absl::Hours(72)).ok());
  ASSERT_TRUE(Record(*db, "old-2", kCutoff - absl::Hours(2)).ok());
  ASSERT_TRUE(Record(*db, "old-3", kCutoff - absl::Microseconds(1)).ok());
  ASSERT_TRUE(Record(*db, "at-cutoff", kCutoff).ok());
  ASSERT_TRUE(Record(*db, "new", kCutoff + absl::Hours(1)).ok());

  EXPECT_THAT(
      PruneAll([&] { return PruneIdempotencyRecords(*db, kCutoff, 2); }),
      ::testing::ElementsAre(2, 1, 0));

  EXPECT_FALSE(Replayable(*db, "old-1"));
  EXPECT_FALSE(Replayable(*db, "old-2"));
  EXPECT_FALSE(Replayable(*db, "old-3"));
  EXPECT_TRUE(Replayable(*db, "at-cutoff"));
  EXPECT_TRUE(Replayable(*db, "new"));
}

// ---- Audit events ----

absl::Status Audit(Database& db, const std::string& request_id, absl::Time at) {
  return db.Write([&](Connection& c) {
    return AppendAuditEvent(c, {"users/alice", "UpdateSite", "sites/s1", "{}",
                                "{}", at, request_id});
  });
}

std::vector<std::string> AuditedRequestIds(Database& db) {
  auto events = ListAuditEvents(db, "sites/s1", 100, "");
  EXPECT_TRUE(events.ok()) << events.status();
  std::vector<std::string> ids;
  if (!events.ok()) return ids;
  for (const auto& event : events->audit_events()) {
    ids.push_back(event.request_id());
  }
  return ids;
}

TEST(RetentionTest, AuditEventsOlderThanCutoffGoInBatches) {
  std::unique_ptr<Database> db = OpenNotificationStore();
  ASSERT_NE(db, nullptr);
  // Appended out of time order: retention goes by the event's time, not
  // by its id.
  ASSERT_TRUE(Audit(*db, "new", kCutoff + absl::Hours(1)).ok());
  ASSERT_TRUE(Audit(*db, "old-1", kCutoff - absl::Hours(24 * 400)).ok());
  ASSERT_TRUE(Audit(*db, "old-2", kCutoff - absl::Hours(1)).ok());
  ASSERT_TRUE(Audit(*db, "at-cutoff", kCutoff).ok());
  ASSERT_TRUE(Audit(*db, "old-3", kCutoff - absl::Seconds(1)).ok());

  EXPECT_THAT(PruneAll([&] { return PruneAuditEvents(*db, kCutoff, 2); }),
              ::testing::ElementsAre(2, 1, 0));

  EXPECT_THAT(AuditedRequestIds(*db), UnorderedElementsAre("new", "at-cutoff"));
}

// ---- Access requests ----

class DecidedRequestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = OpenAccessStore();
    ASSERT_NE(db_, nullptr);
    ASSERT_TRUE(db_->Write([&](Connection& c) -> absl::Status {
                     access_v1::Site site;
                     site.set_display_name("Site One");
                     return access::AccessStore::InsertSite(
                                c, "s1", site, kCutoff - absl::Hours(24 * 365))
                         .status();
                   })
                    .ok());
  }

  // A request by `requester` created at `created`; decided into `state` at
  // `decided_at` unless the state is STATE_PENDING.
  void AddRequest(const std::string& id, const std::string& requester,
                  access_v1::AccessRequest::State state, absl::Time created,
                  absl::Time decided_at) {
    access_v1::AccessRequest request;
    request.set_requester(absl::StrCat("users/", requester));
    request.set_requested_role(access_v1::SITE_ROLE_SITE_ADMINISTRATOR);
    request.set_justification("needed");
    request.set_state(access_v1::AccessRequest::STATE_PENDING);
    request.set_approver(
        access_v1::AccessRequest::APPROVER_SITE_ADMINISTRATORS);
    *request.mutable_create_time() = ToProto(created);
    *request.mutable_expire_time() = ToProto(created + absl::Hours(24 * 7));
    const absl::Status written = db_->Write([&](Connection& c) -> absl::Status {
      RETURN_IF_ERROR(access::AccessStore::InsertRequest(c, "s1", id, request));
      if (state == access_v1::AccessRequest::STATE_PENDING) {
        return absl::OkStatus();
      }
      access_v1::AccessRequest decided = request;
      decided.set_state(state);
      decided.set_decided_by("users/admin");
      *decided.mutable_decide_time() = ToProto(decided_at);
      return access::AccessStore::UpdateRequest(c, "s1", id, decided);
    });
    ASSERT_TRUE(written.ok()) << written;
  }

  bool Exists(const std::string& id) {
    bool found = false;
    EXPECT_TRUE(db_->Read([&](Connection& c) -> absl::Status {
                     ASSIGN_OR_RETURN(
                         auto request,
                         access::AccessStore::FindRequest(c, "s1", id));
                     found = request.has_value();
                     return absl::OkStatus();
                   })
                    .ok());
    return found;
  }

  std::optional<access_v1::AccessRequest> Pending(
      const std::string& requester) {
    std::optional<access_v1::AccessRequest> pending;
    EXPECT_TRUE(db_->Read([&](Connection& c) -> absl::Status {
                     ASSIGN_OR_RETURN(pending,
                                      access::AccessStore::FindPendingRequest(
                                          c, "s1", requester));
                     return absl::OkStatus();
                   })
                    .ok());
    return pending;
  }

  std::unique_ptr<Database> db_;
};

TEST_F(DecidedRequestsTest, DecidedBeforeCutoffGoInBatchesPendingStay) {
  using State = access_v1::AccessRequest;
  const absl::Time long_ago = kCutoff - absl::Hours(24 * 200);
  AddRequest("approved-old", "a", State::STATE_APPROVED, long_ago,
             kCutoff - absl::Hours(24 * 100));
  AddRequest("rejected-old", "b", State::STATE_REJECTED, long_ago,
             kCutoff - absl::Hours(1));
  AddRequest("cancelled-old", "c", State::STATE_CANCELLED, long_ago,
             kCutoff - absl::Seconds(1));
  AddRequest("expired-old", "d", State::STATE_EXPIRED, long_ago,
             kCutoff - absl::Hours(24 * 150));
  // Created long ago but decided recently: the decision time counts.
  AddRequest("approved-recently", "e", State::STATE_APPROVED, long_ago,
             kCutoff + absl::Hours(1));
  AddRequest("rejected-at-cutoff", "f", State::STATE_REJECTED, long_ago,
             kCutoff);
  // Pending, and past its expire time but not yet swept: never pruned.
  AddRequest("pending-old", "g", State::STATE_PENDING, long_ago, long_ago);
  AddRequest("pending-new", "h", State::STATE_PENDING, kCutoff, kCutoff);

  EXPECT_THAT(PruneAll([&] {
                return access::AccessStore::PruneDecidedRequests(*db_, kCutoff,
                                                                 3);
              }),
              ::testing::ElementsAre(3, 1, 0));

  EXPECT_FALSE(Exists("approved-old"));
  EXPECT_FALSE(Exists("rejected-old"));
  EXPECT_FALSE(Exists("cancelled-old"));
  EXPECT_FALSE(Exists("expired-old"));
  EXPECT_TRUE(Exists("approved-recently"));
  EXPECT_TRUE(Exists("rejected-at-cutoff"));
  EXPECT_TRUE(Exists("pending-old"));
  EXPECT_TRUE(Exists("pending-new"));

  // Pruning everything decided, however recent, still leaves the pending.
  EXPECT_THAT(PruneAll([&] {
                return access::AccessStore::PruneDecidedRequests(
                    *db_, kCutoff + absl::Hours(24 * 365), 500);
              }),
              ::testing::ElementsAre(2, 0));
  EXPECT_TRUE(Exists("pending-old"));
  EXPECT_TRUE(Exists("pending-new"));
}

TEST_F(DecidedRequestsTest, FindPendingRequestSkipsDecidedRequests) {
  using State = access_v1::AccessRequest;
  AddRequest("first", "alice", State::STATE_REJECTED, kCutoff,
             kCutoff + absl::Hours(1));
  AddRequest("second", "alice", State::STATE_PENDING, kCutoff + absl::Hours(2),
             kCutoff);
  AddRequest("other", "bob", State::STATE_APPROVED, kCutoff,
             kCutoff + absl::Hours(1));

  std::optional<access_v1::AccessRequest> pending = Pending("alice");
  ASSERT_TRUE(pending.has_value());
  EXPECT_EQ(pending->name(), "sites/s1/accessRequests/second");
  EXPECT_EQ(pending->state(), State::STATE_PENDING);
  EXPECT_FALSE(Pending("bob").has_value());
  EXPECT_FALSE(Pending("carol").has_value());
}

// ---- Read notifications ----

class ReadNotificationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = OpenNotificationStore();
    ASSERT_NE(db_, nullptr);
  }

  // Delivers alert `alert_id` to `users` at `at`.
  void Deliver(const std::string& alert_id,
               const std::vector<std::string>& users, absl::Time at) {
    ASSERT_TRUE(db_->Write([&](Connection& c) -> absl::Status {
                     notifications_v1::Alert alert;
                     alert.set_title(alert_id);
                     alert.set_body("body");
                     RETURN_IF_ERROR(
                         notifications::NotificationStore::InsertAlert(
                             c, alert_id, alert, at));
                     return notifications::NotificationStore::Deliver(
                                c, alert_id, users, at)
                         .status();
                   })
                    .ok());
  }

  void MarkRead(const std::string& user,
                const std::vector<std::string>& alert_ids) {
    ASSERT_TRUE(db_->Write([&](Connection& c) {
                     return notifications::NotificationStore::MarkRead(
                                c, user, alert_ids)
                         .status();
                   })
                    .ok());
  }

  // "alert_id:read" of every notification in the inbox.
  std::vector<std::string> Inbox(const std::string& user) {
    std::vector<std::string> items;
    EXPECT_TRUE(db_->Read([&](Connection& c) -> absl::Status {
                     ASSIGN_OR_RETURN(
                         auto rows, notifications::NotificationStore::ListInbox(
                                        c, user, false, std::nullopt, 100));
                     for (const auto& n : rows) {
                       items.push_back(
                           absl::StrCat(n.alert().substr(sizeof("alerts/") - 1),
                                        ":", n.read() ? "read" : "unread"));
                     }
                     return absl::OkStatus();
                   })
                    .ok());
    return items;
  }

  std::unique_ptr<Database> db_;
};

TEST_F(ReadNotificationsTest, ReadBeforeCutoffGoInBatchesUnreadStay) {
  Deliver("a1", {"alice", "bob"}, kCutoff - absl::Hours(24 * 60));
  Deliver("a2", {"alice", "bob"}, kCutoff - absl::Hours(1));
  Deliver("a3", {"alice", "bob"}, kCutoff);
  Deliver("a4", {"alice", "bob"}, kCutoff + absl::Hours(1));
  MarkRead("alice", {});  // every one
  MarkRead("bob", {"a2", "a4"});

  // Old and read: alice's a1 and a2, bob's a2.
  EXPECT_THAT(PruneAll([&] {
                return notifications::NotificationStore::PruneReadNotifications(
                    *db_, kCutoff, 2);
              }),
              ::testing::ElementsAre(2, 1, 0));

  EXPECT_THAT(Inbox("alice"), UnorderedElementsAre("a3:read", "a4:read"));
  EXPECT_THAT(Inbox("bob"),
              UnorderedElementsAre("a1:unread", "a3:unread", "a4:read"));
}

TEST(RetentionTest, NonPositiveBatchSizeIsInvalidArgument) {
  std::unique_ptr<Database> notifications_db = OpenNotificationStore();
  std::unique_ptr<Database> access_db = OpenAccessStore();
  ASSERT_NE(notifications_db, nullptr);
  ASSERT_NE(access_db, nullptr);
  for (int batch_size : {0, -1}) {
    EXPECT_EQ(PruneIdempotencyRecords(*notifications_db, kCutoff, batch_size)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(PruneAuditEvents(*notifications_db, kCutoff, batch_size)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(notifications::NotificationStore::PruneReadNotifications(
                  *notifications_db, kCutoff, batch_size)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(access::AccessStore::PruneDecidedRequests(*access_db, kCutoff,
                                                        batch_size)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// The flags reach the running service: with --audit_retention=2s a real
// customer_management_service prunes an expired audit event on its own
// (and counts it), while a fresh one stays.
TEST(RetentionServiceTest, ARunningServicePrunesByItsFlags) {
  constexpr char kSecret[] = "retention-integration-secret-0123456789";
  const std::string dir = ::custos::testing::MakeTempDir();
  ::custos::testing::WriteFile(dir + "/secret", kSecret);
  const int port = ::custos::testing::FreePort();
  const int metrics_port = ::custos::testing::FreePort();
  ::custos::testing::ServiceProcess service(
      "services/customer_management_service/customer_management_service",
      {absl::StrCat("--listen=127.0.0.1:", port),
       absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port),
       absl::StrCat("--jwt_hs256_secret_file=", dir, "/secret"),
       absl::StrCat("--database=",
                    ::custos::testing::TestDatabase(dir, "customers")),
       "--audit_retention=2s", "--retention_interval=200ms"});
  ASSERT_TRUE(service.Start(absl::StrCat("127.0.0.1:", port)).ok());
  auto stub = customers::v1::CustomerManagementService::NewStub(
      ::custos::testing::LoopbackChannel(port));
  const std::string admin =
      ::custos::testing::TestToken(kSecret, "root", {"platform_admin"});
  auto call = [&](auto method, const auto& request, auto* response) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + admin);
    return ((*stub).*method)(&context, request, response);
  };
  auto events = [&](const std::string& parent) {
    common::v1::ListAuditEventsRequest request;
    request.set_parent(parent);
    common::v1::ListAuditEventsResponse response;
    EXPECT_TRUE(
        call(&customers::v1::CustomerManagementService::Stub::ListAuditEvents,
             request, &response)
            .ok());
    return response.audit_events_size();
  };
  customers::v1::CreatePartnerRequest create;
  create.set_partner_id("old");
  create.mutable_partner()->set_display_name("Old");
  customers::v1::Partner partner;
  ASSERT_TRUE(
      call(&customers::v1::CustomerManagementService::Stub::CreatePartner,
           create, &partner)
          .ok());
  ASSERT_EQ(events("partners/old"), 1);
  // Pruned once older than 2 s (polled with a deadline).
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (events("partners/old") > 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(events("partners/old"), 0);
  EXPECT_THAT(::custos::testing::HttpGet(metrics_port, "/metrics"),
              ::testing::HasSubstr(
                  "custos_retention_pruned_total{what=\"audit_events\"} 1\n"));
  // A fresh event is kept until its own time comes.
  create.set_partner_id("new");
  ASSERT_TRUE(
      call(&customers::v1::CustomerManagementService::Stub::CreatePartner,
           create, &partner)
          .ok());
  EXPECT_EQ(events("partners/new"), 1);
}

}  // namespace
}  // namespace custos
