// Two replicas of each service on loopback ports, sharing one PostgreSQL
// cluster (one database per service) and one Redis: what a client sees when
// its calls land on different replicas. Test names carry the DESIGN rule
// they check ("Resolution" is DESIGN's permission resolution and
// consistency tokens). Always runs on PostgreSQL, the store replicas are
// deployed with (ctest sets CUSTOS_TEST_BACKEND=postgresql).
#include <signal.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/database.h"
#include "common/peer_delivery.h"
#include "custos/access/v1/access_service.grpc.pb.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "custos/notifications/v1/notifications_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/support/redis_server.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"
#include "tests/support/test_token.h"

namespace custos {
namespace {

namespace av1 = ::custos::access::v1;
namespace cv1 = ::custos::customers::v1;
namespace nv1 = ::custos::notifications::v1;
using ::custos::testing::FreePort;
using ::custos::testing::LoopbackChannel;
using ::custos::testing::MakeTempDir;
using ::custos::testing::RedisServer;
using ::custos::testing::ServiceProcess;
using ::custos::testing::TestDatabase;
using ::custos::testing::TestingPostgres;
using ::testing::ElementsAre;

constexpr char kSecret[] = "replica-integration-secret-0123456789";
constexpr char kCustomersBinary[] =
    "services/customer_management_service/customer_management_service";
constexpr char kAccessBinary[] = "services/access_service/access_service";
constexpr char kNotificationsBinary[] =
    "services/notification_service/notification_service";
// How often each access replica reads the store's write sequence: the
// documented staleness bound of checks made without a consistency token.
constexpr absl::Duration kVersionSyncInterval = absl::Milliseconds(300);
// Pending access requests expire this soon (R6); every request the other
// tests make is decided at once.
constexpr absl::Duration kRequestTtl = absl::Seconds(3);
// Replica A is [0], replica B is [1].
constexpr int kA = 0;
constexpr int kB = 1;

std::string Token(const std::string& subject,
                  std::vector<std::string> roles = {}) {
  return ::custos::testing::TestToken(kSecret, subject, std::move(roles));
}

class ReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(TestingPostgres()) << "replicas share their stores: run with "
                                      "CUSTOS_TEST_BACKEND=postgresql";
    dir_ = MakeTempDir();
    ::custos::testing::WriteFile(dir_ + "/secret", kSecret);
    ::custos::testing::WriteFile(dir_ + "/service-token",
                                 Token("custos-peer", {"service"}));
    redis_ = std::make_unique<RedisServer>(FreePort());
    ASSERT_TRUE(redis_->Start());
    for (int i : {kA, kB}) {
      customers_port_[i] = FreePort();
      access_port_[i] = FreePort();
      notifications_port_[i] = FreePort();
    }
    const std::vector<std::string> common = {
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--service_token_file=", dir_, "/service-token")};
    // Replica i of each service talks to replica i of its peers; all
    // replicas of a service share its database.
    for (int i : {kA, kB}) {
      customers_[i] =
          Start(kCustomersBinary, common, customers_port_[i],
                {absl::StrCat("--database=", TestDatabase(dir_, "customers")),
                 absl::StrCat("--access_address=127.0.0.1:", access_port_[i]),
                 absl::StrCat("--notifications_address=127.0.0.1:",
                              notifications_port_[i])});
      ASSERT_NE(customers_[i], nullptr);
    }
    for (int i : {kA, kB}) {
      access_[i] = Start(
          kAccessBinary, common, access_port_[i],
          {absl::StrCat("--database=", TestDatabase(dir_, "access")),
           absl::StrCat("--redis=127.0.0.1:", redis_->port()),
           absl::StrCat("--customers_address=127.0.0.1:", customers_port_[i]),
           absl::StrCat("--notifications_address=127.0.0.1:",
                        notifications_port_[i]),
           absl::StrCat("--policy_file=", std::getenv("CUSTOS_SOURCE_DIR"),
                        "/deploy/base/policy/default_policy.textproto"),
           absl::StrCat("--version_sync_interval=",
                        absl::FormatDuration(kVersionSyncInterval)),
           // Both replicas sweep often, so that they race to expire.
           absl::StrCat("--access_request_ttl=",
                        absl::FormatDuration(kRequestTtl)),
           "--expiry_sweep_interval=20ms"});
      ASSERT_NE(access_[i], nullptr);
    }
    for (int i : {kA, kB}) {
      notifications_[i] = Start(
          kNotificationsBinary, common, notifications_port_[i],
          {absl::StrCat("--database=", TestDatabase(dir_, "notifications")),
           absl::StrCat("--customers_address=127.0.0.1:", customers_port_[i]),
           "--broadcast_page_size=200"});
      ASSERT_NE(notifications_[i], nullptr);
    }
    for (int i : {kA, kB}) {
      customers_stub_[i] = cv1::CustomerManagementService::NewStub(
          LoopbackChannel(customers_port_[i]));
      access_stub_[i] =
          av1::AccessService::NewStub(LoopbackChannel(access_port_[i]));
      notifications_stub_[i] = nv1::NotificationService::NewStub(
          LoopbackChannel(notifications_port_[i]));
    }
  }

  // Starts `binary` listening on 127.0.0.1:port; null (with a test failure)
  // when it does not serve.
  std::unique_ptr<ServiceProcess> Start(const std::string& binary,
                                        std::vector<std::string> args, int port,
                                        const std::vector<std::string>& more) {
    args.push_back(absl::StrCat("--listen=127.0.0.1:", port));
    args.insert(args.end(), more.begin(), more.end());
    auto process = std::make_unique<ServiceProcess>(binary, args);
    absl::Status started = process->Start(absl::StrCat("127.0.0.1:", port));
    EXPECT_TRUE(started.ok()) << started;
    if (!started.ok()) return nullptr;
    return process;
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + token);
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(10));
    return context;
  }

  // sites/acme (created through replica A) with bill as its administrator
  // and gina as a SITE_MEMBER; the token of the last write.
  std::string SeedAcme() {
    av1::CreateSiteRequest site;
    site.set_site_id("acme");
    site.mutable_site()->set_display_name("Acme");
    av1::Site created;
    auto status = access_stub_[kA]->CreateSite(As(care_).get(), site, &created);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::string token;
    for (const auto& [user, role] :
         {std::pair{"bill", av1::SITE_ROLE_SITE_ADMINISTRATOR},
          std::pair{"gina", av1::SITE_ROLE_SITE_MEMBER}}) {
      av1::CreateAccessRequestRequest request;
      request.set_parent("sites/acme");
      request.mutable_access_request()->set_requested_role(role);
      request.mutable_access_request()->set_justification("I work there");
      av1::AccessRequest asked;
      status = access_stub_[kA]->CreateAccessRequest(As(Token(user)).get(),
                                                     request, &asked);
      EXPECT_TRUE(status.ok()) << status.error_message();
      av1::ApproveAccessRequestRequest approve;
      approve.set_name(asked.name());
      av1::AccessRequest decided;
      status = access_stub_[kA]->ApproveAccessRequest(As(care_).get(), approve,
                                                      &decided);
      EXPECT_TRUE(status.ok()) << status.error_message();
      EXPECT_FALSE(decided.consistency_token().empty());
      token = decided.consistency_token();
    }
    return token;
  }

  // Bill sets gina's role on sites/acme through `replica`; the write's
  // consistency token.
  std::string SetGinasRole(int replica, av1::SiteRole role) {
    av1::UpdateSiteMemberRequest request;
    request.mutable_site_member()->set_name("sites/acme/members/gina");
    request.mutable_site_member()->set_role(role);
    request.mutable_update_mask()->add_paths("role");
    av1::SiteMember member;
    auto status = access_stub_[replica]->UpdateSiteMember(
        As(Token("bill")).get(), request, &member);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(member.role(), role);
    EXPECT_FALSE(member.consistency_token().empty());
    return member.consistency_token();
  }

  // Whether gina may view the whole account's cases on sites/acme (only
  // SITE_ADMINISTRATOR may), asked of `replica` by a backend; with
  // `consistency_token` as Consistency.at_least_as_fresh unless empty.
  bool GinaSeesAccountCases(int replica,
                            const std::string& consistency_token = "") {
    av1::CheckPermissionRequest request;
    request.set_principal("users/gina");
    request.set_resource("sites/acme");
    request.set_permission("cases.account.view");
    if (!consistency_token.empty()) {
      request.mutable_consistency()->set_at_least_as_fresh(consistency_token);
    }
    av1::CheckPermissionResponse response;
    auto status = access_stub_[replica]->CheckPermission(As(backend_).get(),
                                                         request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.allowed();
  }

  nv1::Alert GetAlert(int replica, const std::string& name) {
    nv1::GetAlertRequest get;
    get.set_name(name);
    nv1::Alert alert;
    auto status =
        notifications_stub_[replica]->GetAlert(As(admin_).get(), get, &alert);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return alert;
  }

  std::string dir_;
  std::unique_ptr<RedisServer> redis_;
  std::array<int, 2> customers_port_{};
  std::array<int, 2> access_port_{};
  std::array<int, 2> notifications_port_{};
  std::array<std::unique_ptr<ServiceProcess>, 2> customers_;
  std::array<std::unique_ptr<ServiceProcess>, 2> access_;
  std::array<std::unique_ptr<ServiceProcess>, 2> notifications_;
  std::array<std::unique_ptr<cv1::CustomerManagementService::Stub>, 2>
      customers_stub_;
  std::array<std::unique_ptr<av1::AccessService::Stub>, 2> access_stub_;
  std::array<std::unique_ptr<nv1::NotificationService::Stub>, 2>
      notifications_stub_;
  const std::string admin_ = Token("root", {"platform_admin"});
  const std::string care_ = Token("carla", {"customer_care"});
  const std::string backend_ = Token("portal-backend", {"service"});
};

TEST_F(ReplicaTest, Resolution_TokenFromOneReplicaIsNeverStaleOnTheOther) {
  const std::string seeded = SeedAcme();
  ASSERT_FALSE(HasFailure());
  // Replica B answers (and caches) gina's SITE_MEMBER permissions.
  ASSERT_FALSE(GinaSeesAccountCases(kB, seeded));
  ASSERT_FALSE(GinaSeesAccountCases(kB));

  // Each role change is written through A and checked through B right
  // away with the write's token: B's cached answer is the previous role's.
  constexpr int kRounds = 20;
  for (int i = 0; i < kRounds; ++i) {
    const bool admin = i % 2 == 0;
    const std::string token =
        SetGinasRole(kA, admin ? av1::SITE_ROLE_SITE_ADMINISTRATOR
                               : av1::SITE_ROLE_SITE_MEMBER);
    EXPECT_EQ(GinaSeesAccountCases(kB, token), admin)
        << "round " << i << ": replica B answered older than token " << token;
  }

  // The same writes checked through B without the token may be answered
  // from B's cache until B reads the write sequence: this is what the
  // token above saved each check from (so the loop above tested something).
  int stale = 0;
  constexpr int kProbes = 5;
  for (int i = 0; i < kProbes; ++i) {
    const bool admin = i % 2 == 0;
    SetGinasRole(kA, admin ? av1::SITE_ROLE_SITE_ADMINISTRATOR
                           : av1::SITE_ROLE_SITE_MEMBER);
    if (GinaSeesAccountCases(kB) != admin) ++stale;
    // Let B catch up so the next probe starts from a cached current answer.
    absl::SleepFor(kVersionSyncInterval * 2);
    ASSERT_EQ(GinaSeesAccountCases(kB), admin);
  }
  std::printf("replica B answered %d of %d probes without a token stale\n",
              stale, kProbes);
  EXPECT_GT(stale, 0) << "replica B never answered from its cache right "
                         "after a write through A; the token checks above "
                         "prove nothing";
}

TEST_F(ReplicaTest,
       Resolution_WithoutTokenOtherReplicaCatchesUpWithinSyncInterval) {
  const std::string seeded = SeedAcme();
  ASSERT_FALSE(HasFailure());
  ASSERT_FALSE(GinaSeesAccountCases(kB, seeded));
  // The documented bound is the sync interval; the slack covers a loaded
  // machine (process scheduling, PostgreSQL commits).
  const absl::Duration bound = kVersionSyncInterval + absl::Seconds(2);
  absl::Duration slowest;
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const bool admin = round % 2 == 0;
    // Warm B's cache with the current answer first.
    ASSERT_EQ(GinaSeesAccountCases(kB), !admin);
    SetGinasRole(kA, admin ? av1::SITE_ROLE_SITE_ADMINISTRATOR
                           : av1::SITE_ROLE_SITE_MEMBER);
    const absl::Time written = absl::Now();
    bool caught_up = false;
    absl::Duration took;
    while (absl::Now() - written < bound + absl::Seconds(1)) {
      if (GinaSeesAccountCases(kB) == admin) {
        took = absl::Now() - written;
        caught_up = true;
        break;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_TRUE(caught_up) << "replica B still answered the old role after "
                           << absl::Now() - written;
    EXPECT_LE(took, bound);
    std::printf("round %d: replica B current %s after the write\n", round,
                absl::FormatDuration(took).c_str());
    slowest = std::max(slowest, took);
    // Once current, B stays current: no answer goes back to the old role.
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(GinaSeesAccountCases(kB), admin) << "check " << i;
      absl::SleepFor(kVersionSyncInterval / 3);
    }
  }
  std::printf("slowest catch-up of replica B without a token: %s\n",
              absl::FormatDuration(slowest).c_str());
}

TEST_F(ReplicaTest, R11_R12_BroadcastReachesEveryoneOnceWhenAReplicaIsKilled) {
  // Northwind (partner user bill) and umbrella (customer user alice),
  // through customer replica A ...
  cv1::CreatePartnerRequest partner;
  partner.set_partner_id("northwind");
  partner.mutable_partner()->set_display_name("Northwind");
  cv1::Partner p;
  auto status =
      customers_stub_[kA]->CreatePartner(As(admin_).get(), partner, &p);
  ASSERT_TRUE(status.ok()) << status.error_message();
  cv1::CreatePartnerUserRequest bill;
  bill.set_parent("partners/northwind");
  bill.set_user_id("bill");
  bill.mutable_partner_user()->set_role(cv1::PARTNER_ROLE_PARTNER_ADMIN);
  cv1::PartnerUser partner_user;
  status = customers_stub_[kA]->CreatePartnerUser(As(admin_).get(), bill,
                                                  &partner_user);
  ASSERT_TRUE(status.ok()) << status.error_message();
  cv1::CreateCustomerRequest umbrella;
  umbrella.set_customer_id("umbrella");
  umbrella.mutable_customer()->set_display_name("Umbrella");
  cv1::Customer customer;
  status = customers_stub_[kA]->CreateCustomer(As(admin_).get(), umbrella,
                                               &customer);
  ASSERT_TRUE(status.ok()) << status.error_message();
  cv1::CreateCustomerUserRequest alice;
  alice.set_parent("customers/umbrella");
  alice.set_user_id("alice");
  cv1::CustomerUser customer_user;
  status = customers_stub_[kA]->CreateCustomerUser(As(admin_).get(), alice,
                                                   &customer_user);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // ... and 20,000 more customer users written straight into the shared
  // customers database (the API would take minutes).
  constexpr int kBulkUsers = 20000;
  auto customers = OpenDatabase(TestDatabase(dir_, "customers"), {});
  ASSERT_TRUE(customers.ok()) << customers.status();
  absl::Status filled = (*customers)->Write([](Connection& db) {
    return db.Exec(absl::StrCat(
        "INSERT INTO customer_users(customer_id, user_id, display_name, "
        "email, create_micros) SELECT 'umbrella', 'u' || lpad(i::text, 6, "
        "'0'), '', '', 0 FROM generate_series(1, ",
        kBulkUsers, ") AS i"));
  });
  ASSERT_TRUE(filled.ok()) << filled;
  constexpr int64_t kRecipients = kBulkUsers + 2;  // + bill and alice

  // Published on notification replica B, which starts the fan-out (200
  // recipients a page) at once; B is killed once the first pages are in.
  nv1::PublishBroadcastRequest publish;
  publish.set_kind(nv1::BROADCAST_KIND_MAINTENANCE);
  publish.set_title("Planned maintenance");
  publish.set_body("Saturday 02:00-04:00 UTC.");
  nv1::Alert broadcast;
  status = notifications_stub_[kB]->PublishBroadcast(As(admin_).get(), publish,
                                                     &broadcast);
  ASSERT_TRUE(status.ok()) << status.error_message();
  nv1::Alert progress;
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (progress.recipient_count() == 0 && absl::Now() < give_up) {
    progress = GetAlert(kA, broadcast.name());
    absl::SleepFor(absl::Milliseconds(2));
  }
  notifications_[kB]->Signal(SIGKILL);
  notifications_[kB]->WaitForExit(absl::Seconds(5));
  ASSERT_GT(progress.recipient_count(), 0) << "the fan-out never started";
  ASSERT_FALSE(progress.fan_out_complete()) << "killed too late to matter";
  std::printf("replica B killed with %lld of %lld recipients delivered\n",
              static_cast<long long>(progress.recipient_count()),
              static_cast<long long>(kRecipients));

  // Replica A finishes it (its fan-out loop looks every second).
  const absl::Time killed = absl::Now();
  nv1::Alert done = progress;
  while (!done.fan_out_complete() && absl::Now() - killed < absl::Seconds(60)) {
    absl::SleepFor(absl::Milliseconds(100));
    done = GetAlert(kA, broadcast.name());
  }
  ASSERT_TRUE(done.fan_out_complete())
      << "replica A did not finish the fan-out within 60 s; "
      << done.recipient_count() << " recipients so far";
  std::printf("replica A completed the fan-out %s after the kill\n",
              absl::FormatDuration(absl::Now() - killed).c_str());
  EXPECT_EQ(done.recipient_count(), kRecipients);

  // Exactly once per inbox, counted in the shared store itself.
  auto notifications = OpenDatabase(TestDatabase(dir_, "notifications"), {});
  ASSERT_TRUE(notifications.ok()) << notifications.status();
  const std::string alert_id = broadcast.name().substr(sizeof("alerts/") - 1);
  int64_t rows = 0;
  int64_t users = 0;
  absl::Status counted = (*notifications)->Read([&](Connection& db) {
    auto count = db.Prepare(
        "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM inbox WHERE "
        "alert_id = ?");
    if (!count.ok()) return count.status();
    auto row = count->Bind(1, alert_id).Step();
    if (!row.ok()) return row.status();
    rows = count->ColumnInt64(0);
    users = count->ColumnInt64(1);
    return absl::OkStatus();
  });
  ASSERT_TRUE(counted.ok()) << counted;
  EXPECT_EQ(rows, kRecipients);
  EXPECT_EQ(users, kRecipients);

  // And as users see it through the surviving replica.
  for (const char* user : {"bill", "alice", "u000001", "u012345", "u020000"}) {
    SCOPED_TRACE(user);
    nv1::ListNotificationsRequest list;
    list.set_parent(absl::StrCat("users/", user));
    nv1::ListNotificationsResponse inbox;
    status = notifications_stub_[kA]->ListNotifications(As(Token(user)).get(),
                                                        list, &inbox);
    ASSERT_TRUE(status.ok()) << status.error_message();
    std::vector<std::string> alerts;
    for (const auto& n : inbox.notifications()) alerts.push_back(n.alert());
    EXPECT_THAT(alerts, ElementsAre(broadcast.name()));
  }
}

TEST_F(ReplicaTest, R6_R8_BothReplicasSweepingExpireARequestOnce) {
  SeedAcme();
  ASSERT_FALSE(HasFailure());
  av1::CreateAccessRequestRequest ask;
  ask.set_parent("sites/acme");
  ask.mutable_access_request()->set_requested_role(av1::SITE_ROLE_VIEW_ONLY);
  ask.mutable_access_request()->set_justification("New starter");
  av1::AccessRequest pending;
  auto status = access_stub_[kA]->CreateAccessRequest(As(Token("henry")).get(),
                                                      ask, &pending);
  ASSERT_TRUE(status.ok()) << status.error_message();

  // Both replicas sweep every 20 ms; one of them expires it.
  av1::GetAccessRequestRequest get;
  get.set_name(pending.name());
  av1::AccessRequest seen;
  const absl::Time give_up = absl::Now() + kRequestTtl + absl::Seconds(10);
  while (seen.state() != av1::AccessRequest::STATE_EXPIRED &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(50));
    status = access_stub_[kB]->GetAccessRequest(As(care_).get(), get, &seen);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  ASSERT_EQ(seen.state(), av1::AccessRequest::STATE_EXPIRED);
  absl::SleepFor(absl::Milliseconds(500));  // many more sweeps by both

  // Expired once: one audit event, written in the expiring transaction.
  custos::common::v1::ListAuditEventsRequest audit;
  audit.set_parent(pending.name());
  custos::common::v1::ListAuditEventsResponse events;
  status = access_stub_[kA]->ListAuditEvents(As(care_).get(), audit, &events);
  ASSERT_TRUE(status.ok()) << status.error_message();
  int expirations = 0;
  for (const auto& event : events.audit_events()) {
    if (event.action() == "ExpireAccessRequest") ++expirations;
  }
  EXPECT_EQ(expirations, 1);

  // R8: henry is told once, through the outbox of whichever replica it was.
  nv1::ListNotificationsRequest list;
  list.set_parent("users/henry");
  nv1::ListNotificationsResponse inbox;
  const absl::Time told_by = absl::Now() + absl::Seconds(10);
  while (inbox.notifications_size() == 0 && absl::Now() < told_by) {
    absl::SleepFor(absl::Milliseconds(50));
    status = notifications_stub_[kA]->ListNotifications(
        As(Token("henry")).get(), list, &inbox);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  absl::SleepFor(absl::Milliseconds(500));
  status = notifications_stub_[kA]->ListNotifications(As(Token("henry")).get(),
                                                      list, &inbox);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(inbox.notifications_size(), 1);
}

// How many calls of `method` replica `process` has logged (its log is
// flushed in the background, so callers wait for a count).
int CallsLogged(const ServiceProcess& process, const std::string& method) {
  const std::string log = process.ReadLog();
  const std::string needle = absl::StrCat("\"method\":\"", method, "\"");
  int count = 0;
  for (size_t at = log.find(needle); at != std::string::npos;
       at = log.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

TEST_F(ReplicaTest, LoadSpreads_PeerChannelCallsEveryReplicaOfATarget) {
  // One target naming both customer replicas, as a headless Service's DNS
  // name resolves to every ready pod; dialled the way every peer dials.
  auto channel =
      PeerChannel(absl::StrCat("ipv4:127.0.0.1:", customers_port_[kA],
                               ",127.0.0.1:", customers_port_[kB]),
                  grpc::InsecureChannelCredentials());
  auto stub = cv1::CustomerManagementService::NewStub(channel);
  constexpr int kCalls = 40;
  for (int i = 0; i < kCalls; ++i) {
    cv1::ListCustomersRequest request;
    cv1::ListCustomersResponse response;
    auto status = stub->ListCustomers(As(admin_).get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  // Round robin: each replica serves half (give or take the first calls
  // made while the second connection was still being dialled).
  std::array<int, 2> served{};
  const absl::Time by = absl::Now() + absl::Seconds(10);
  do {
    absl::SleepFor(absl::Milliseconds(50));
    for (int i : {kA, kB}) {
      served[i] = CallsLogged(*customers_[i], "ListCustomers");
    }
  } while (served[kA] + served[kB] < kCalls && absl::Now() < by);
  EXPECT_EQ(served[kA] + served[kB], kCalls);
  EXPECT_GE(served[kA], kCalls / 4) << "replica A served " << served[kA];
  EXPECT_GE(served[kB], kCalls / 4) << "replica B served " << served[kB];

  // A replica dies (a node lost): the same channel keeps answering from
  // the one left, without an error reaching the caller.
  customers_[kB]->Signal(SIGKILL);
  customers_[kB]->WaitForExit(absl::Seconds(10));
  for (int i = 0; i < kCalls; ++i) {
    auto context = As(admin_);
    context->set_wait_for_ready(true);  // as every peer call (ServiceToken)
    cv1::ListCustomersRequest request;
    cv1::ListCustomersResponse response;
    auto status = stub->ListCustomers(context.get(), request, &response);
    EXPECT_TRUE(status.ok())
        << "call " << i << " after replica B died: " << status.error_message();
  }
  const absl::Time by_a = absl::Now() + absl::Seconds(10);
  int served_by_a = 0;
  do {
    absl::SleepFor(absl::Milliseconds(50));
    served_by_a = CallsLogged(*customers_[kA], "ListCustomers");
  } while (served_by_a < served[kA] + kCalls && absl::Now() < by_a);
  EXPECT_EQ(served_by_a, served[kA] + kCalls);
}

TEST_F(ReplicaTest, LoadSpreads_ServerEndsConnectionsAfterMaxConnectionAge) {
  // A third customers replica that ages connections out after a second: a
  // client holding one connection (pick_first) is sent away and dials
  // again, which is what lets it find replicas added since.
  const int port = FreePort();
  auto aging =
      Start(kCustomersBinary,
            {absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
             absl::StrCat("--service_token_file=", dir_, "/service-token")},
            port,
            {absl::StrCat("--database=", TestDatabase(dir_, "customers")),
             "--max_connection_age=1s", "--max_connection_age_grace=1s"});
  ASSERT_NE(aging, nullptr);
  auto channel = LoopbackChannel(port);
  auto stub = cv1::CustomerManagementService::NewStub(channel);
  cv1::ListCustomersRequest request;
  cv1::ListCustomersResponse response;
  ASSERT_TRUE(stub->ListCustomers(As(admin_).get(), request, &response).ok());
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  const absl::Time by = absl::Now() + absl::Seconds(15);
  while (channel->GetState(false) == GRPC_CHANNEL_READY && absl::Now() < by) {
    channel->WaitForStateChange(
        GRPC_CHANNEL_READY,
        std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  }
  EXPECT_NE(channel->GetState(false), GRPC_CHANNEL_READY)
      << "the connection outlived --max_connection_age=1s";
  // And the client carries on over a new connection.
  EXPECT_TRUE(stub->ListCustomers(As(admin_).get(), request, &response).ok());
}

}  // namespace
}  // namespace custos
