// The three real services (and redis-server) on loopback: R8 notices from
// AccessService, settings-change alerts from CustomerManagementService, both
// through their transactional outboxes into NotificationService. Test names
// carry the DESIGN rule they check.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/auth.h"
#include "common/database.h"
#include "common/status_macros.h"
#include "common/trace_context.h"
#include "custos/access/v1/access_service.grpc.pb.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "custos/notifications/v1/notifications_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "tests/support/http_receiver.h"
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kSecret[] = "cross-service-integration-secret-0123";
constexpr char kQueue[] = "queues/customer-care";

std::string Token(const std::string& subject,
                  std::vector<std::string> roles = {}) {
  return ::custos::testing::TestToken(kSecret, subject, std::move(roles));
}

std::string FieldOf(const grpc::Status& status) {
  google::rpc::Status details;
  details.ParseFromString(status.error_details());
  for (const auto& any : details.details()) {
    google::rpc::BadRequest bad_request;
    if (any.UnpackTo(&bad_request) && bad_request.field_violations_size() > 0) {
      return bad_request.field_violations(0).field();
    }
  }
  return "";
}

class CrossServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ::custos::testing::WriteFile(dir_ + "/secret", kSecret);
    ::custos::testing::WriteFile(dir_ + "/service-token",
                                 Token("custos-peer", {"service"}));
    redis_ = std::make_unique<RedisServer>(FreePort());
    ASSERT_TRUE(redis_->Start());
    customers_port_ = FreePort();
    access_port_ = FreePort();
    notifications_port_ = FreePort();
    for (int& port : metrics_ports_) port = FreePort();
    const std::vector<std::string> common = {
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--service_token_file=", dir_, "/service-token")};
    customers_ = Process(
        "services/customer_management_service/customer_management_service",
        common,
        {absl::StrCat("--listen=127.0.0.1:", customers_port_),
         absl::StrCat("--metrics_listen=127.0.0.1:", metrics_ports_[0]),
         absl::StrCat("--database=", TestDatabase(dir_, "customers")),
         absl::StrCat("--access_address=127.0.0.1:", access_port_),
         absl::StrCat("--notifications_address=127.0.0.1:",
                      notifications_port_)});
    {
      absl::Status started =
          customers_->Start(absl::StrCat("127.0.0.1:", customers_port_));
      ASSERT_TRUE(started.ok()) << started;
    }
    std::vector<std::string> access_common = common;
    access_common.insert(access_common.end(), access_extra_.begin(),
                         access_extra_.end());
    access_args_ = access_common;
    access_args_.insert(
        access_args_.end(),
        {absl::StrCat("--listen=127.0.0.1:", access_port_),
         absl::StrCat("--metrics_listen=127.0.0.1:", metrics_ports_[1]),
         absl::StrCat("--database=", TestDatabase(dir_, "access")),
         absl::StrCat("--redis=127.0.0.1:", redis_->port()),
         absl::StrCat("--customers_address=127.0.0.1:", customers_port_),
         absl::StrCat("--notifications_address=127.0.0.1:",
                      notifications_port_),
         absl::StrCat("--policy_file=", std::getenv("CUSTOS_SOURCE_DIR"),
                      "/deploy/base/policy/default_policy.textproto")});
    StartAccess();
    StartNotifications();
    customers_stub_ = cv1::CustomerManagementService::NewStub(
        LoopbackChannel(customers_port_));
    access_stub_ = av1::AccessService::NewStub(LoopbackChannel(access_port_));
    stub_ =
        nv1::NotificationService::NewStub(LoopbackChannel(notifications_port_));
  }

  std::unique_ptr<ServiceProcess> Process(
      const std::string& binary, std::vector<std::string> args,
      const std::vector<std::string>& more) {
    args.insert(args.end(), more.begin(), more.end());
    return std::make_unique<ServiceProcess>(binary, args);
  }

  void StartAccess() {
    access_ =
        Process("services/access_service/access_service", access_args_, {});
    absl::Status started =
        access_->Start(absl::StrCat("127.0.0.1:", access_port_));
    ASSERT_TRUE(started.ok()) << started;
  }

  void StartNotifications() {
    std::vector<std::string> args = {
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--service_token_file=", dir_, "/service-token")};
    args.insert(args.end(), notifications_extra_.begin(),
                notifications_extra_.end());
    notifications_ = Process(
        "services/notification_service/notification_service", args,
        {absl::StrCat("--listen=127.0.0.1:", notifications_port_),
         absl::StrCat("--metrics_listen=127.0.0.1:", metrics_ports_[2]),
         absl::StrCat("--database=", TestDatabase(dir_, "notifications")),
         absl::StrCat("--customers_address=127.0.0.1:", customers_port_)});
    {
      absl::Status started = notifications_->Start(
          absl::StrCat("127.0.0.1:", notifications_port_));
      ASSERT_TRUE(started.ok()) << started;
    }
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + token);
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(20));
    return context;
  }

  void CreateSite(const std::string& id) {
    av1::CreateSiteRequest request;
    request.set_site_id(id);
    request.mutable_site()->set_display_name("Site " + id);
    av1::Site site;
    auto status = access_stub_->CreateSite(As(care_).get(), request, &site);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  av1::AccessRequest Request(const std::string& user, const std::string& site,
                             av1::SiteRole role) {
    av1::CreateAccessRequestRequest request;
    request.set_parent("sites/" + site);
    request.mutable_access_request()->set_requested_role(role);
    request.mutable_access_request()->set_justification("I work there");
    av1::AccessRequest created;
    auto status = access_stub_->CreateAccessRequest(As(Token(user)).get(),
                                                    request, &created);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return created;
  }

  av1::AccessRequest Approve(const std::string& token,
                             const std::string& name) {
    av1::ApproveAccessRequestRequest request;
    request.set_name(name);
    av1::AccessRequest decided;
    auto status =
        access_stub_->ApproveAccessRequest(As(token).get(), request, &decided);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return decided;
  }

  // The notifications of an inbox (`users/{u}` or the queue), newest first,
  // read with `token`.
  std::vector<nv1::Notification> Inbox(const std::string& parent,
                                       const std::string& token) {
    nv1::ListNotificationsRequest request;
    request.set_parent(parent);
    request.set_page_size(1000);
    nv1::ListNotificationsResponse response;
    auto status = stub_->ListNotifications(As(token).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.notifications().begin(), response.notifications().end()};
  }

  // Waits (at most 15 s) until the inbox holds `count` notifications about
  // `subject_prefix`; returns them.
  std::vector<nv1::Notification> AwaitInbox(const std::string& parent,
                                            const std::string& token,
                                            const std::string& subject_prefix,
                                            size_t count) {
    std::vector<nv1::Notification> found;
    const absl::Time give_up = absl::Now() + absl::Seconds(15);
    while (true) {
      found.clear();
      for (const nv1::Notification& n : Inbox(parent, token)) {
        if (absl::StartsWith(n.subject(), subject_prefix)) found.push_back(n);
      }
      if (found.size() >= count || absl::Now() > give_up) return found;
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  // Acme's site with Bill as its administrator (approved by Customer Care).
  void SeedAcmeWithBill() {
    CreateSite("acme-sid");
    Approve(
        care_,
        Request("bill", "acme-sid", av1::SITE_ROLE_SITE_ADMINISTRATOR).name());
  }

  // Acme with Bill, Bill's own notice delivered, then NotificationService
  // stopped and `count` users (`user_prefix`0, 1, ...) asking to join: the
  // requests' names, whose notices wait in AccessService's outbox.
  std::set<std::string> RequestsWhileNotificationsIsDown(
      const std::string& user_prefix, int count) {
    SeedAcmeWithBill();
    AwaitInbox("users/bill", Token("bill"), "sites/acme-sid/", 1);
    EXPECT_EQ(notifications_->Stop(), 0);
    std::set<std::string> requests;
    for (int i = 0; i < count; ++i) {
      requests.insert(Request(absl::StrCat(user_prefix, i), "acme-sid",
                              av1::SITE_ROLE_VIEW_ONLY)
                          .name());
    }
    return requests;
  }

  // More access_service flags, set before SetUp.
  std::vector<std::string> access_extra_;
  std::vector<std::string> access_args_;
  // More notification_service flags, set before SetUp.
  std::vector<std::string> notifications_extra_;
  std::string dir_;
  int customers_port_ = 0;
  int access_port_ = 0;
  int notifications_port_ = 0;
  // customers, access, notifications.
  int metrics_ports_[3] = {0, 0, 0};
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<ServiceProcess> customers_;
  std::unique_ptr<ServiceProcess> access_;
  std::unique_ptr<ServiceProcess> notifications_;
  std::unique_ptr<cv1::CustomerManagementService::Stub> customers_stub_;
  std::unique_ptr<av1::AccessService::Stub> access_stub_;
  std::unique_ptr<nv1::NotificationService::Stub> stub_;
  const std::string admin_ = Token("root", {"platform_admin"});
  const std::string care_ = Token("carla", {"customer_care"});
};

TEST_F(CrossServiceTest, R8_AJoinRequestNotifiesTheSiteAdministrators) {
  SeedAcmeWithBill();
  const av1::AccessRequest gina =
      Request("gina", "acme-sid", av1::SITE_ROLE_SITE_MEMBER);
  auto notices = AwaitInbox("users/bill", Token("bill"), gina.name(), 1);
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(notices[0].title(), "Access request for sites/acme-sid");
  EXPECT_THAT(notices[0].body(), HasSubstr("users/gina asks to join"));
  EXPECT_EQ(notices[0].category(), nv1::CATEGORY_ACCOUNT);
  EXPECT_EQ(notices[0].name(), absl::StrCat("users/bill/notifications/",
                                            notices[0].alert().substr(7)));
  // Customer Care decides nothing here, so its queue does not hear of it.
  EXPECT_THAT(AwaitInbox(kQueue, care_, gina.name(), 0), IsEmpty());
}

TEST_F(CrossServiceTest,
       R8_ARequestToASiteWithoutAdministratorGoesToTheCustomerCareQueue) {
  CreateSite("initech-sid");
  const av1::AccessRequest peter =
      Request("peter", "initech-sid", av1::SITE_ROLE_SITE_MEMBER);
  auto queued = AwaitInbox(kQueue, care_, peter.name(), 1);
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].name(), absl::StrCat(kQueue, "/notifications/",
                                           queued[0].alert().substr(7)));
  EXPECT_THAT(queued[0].body(), HasSubstr("Customer Care decides"));
  // The queue is Customer Care's alone.
  nv1::ListNotificationsRequest request;
  request.set_parent(kQueue);
  nv1::ListNotificationsResponse response;
  EXPECT_EQ(
      stub_->ListNotifications(As(Token("peter")).get(), request, &response)
          .error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  // Customer Care marks it handled.
  nv1::MarkNotificationsReadRequest mark;
  mark.set_parent(kQueue);
  mark.add_names(queued[0].name());
  nv1::MarkNotificationsReadResponse marked;
  ASSERT_TRUE(
      stub_->MarkNotificationsRead(As(care_).get(), mark, &marked).ok());
  EXPECT_EQ(marked.marked(), 1);
}

TEST_F(CrossServiceTest, R8_TheRequesterHearsTheDecision) {
  SeedAcmeWithBill();
  // Bill heard Customer Care's approval of his own request.
  auto bills = AwaitInbox("users/bill", Token("bill"), "sites/acme-sid/", 1);
  ASSERT_EQ(bills.size(), 1u);
  EXPECT_EQ(bills[0].title(),
            "Your access request for sites/acme-sid: APPROVED");

  const av1::AccessRequest gina =
      Request("gina", "acme-sid", av1::SITE_ROLE_SITE_MEMBER);
  Approve(Token("bill"), gina.name());
  auto approved = AwaitInbox("users/gina", Token("gina"), gina.name(), 1);
  ASSERT_EQ(approved.size(), 1u);
  EXPECT_THAT(approved[0].body(), HasSubstr("was approved by users/bill"));

  const av1::AccessRequest hank =
      Request("hank", "acme-sid", av1::SITE_ROLE_SITE_ADMINISTRATOR);
  av1::RejectAccessRequestRequest reject;
  reject.set_name(hank.name());
  reject.set_reason("Contractors get SITE_MEMBER");
  av1::AccessRequest rejected;
  ASSERT_TRUE(
      access_stub_
          ->RejectAccessRequest(As(Token("bill")).get(), reject, &rejected)
          .ok());
  auto told = AwaitInbox("users/hank", Token("hank"), hank.name(), 1);
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].title(),
            "Your access request for sites/acme-sid: REJECTED");
  EXPECT_THAT(told[0].body(), HasSubstr("Contractors get SITE_MEMBER"));
  // Approving twice is a no-op (R6) and tells nobody again.
  Approve(Token("bill"), gina.name());
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(AwaitInbox("users/gina", Token("gina"), gina.name(), 1).size(), 1u);
}

TEST_F(CrossServiceTest,
       R8_NoticesWaitInTheOutboxWhileNotificationServiceIsDown) {
  const std::set<std::string> requests =
      RequestsWhileNotificationsIsDown("user", 20);
  StartNotifications();
  auto notices = AwaitInbox("users/bill", Token("bill"),
                            "sites/acme-sid/accessRequests/", 21);
  std::set<std::string> heard;
  for (const auto& n : notices) {
    if (absl::StartsWith(n.title(), "Access request"))
      heard.insert(n.subject());
  }
  EXPECT_EQ(heard, requests);
  // Each once: 20 requests and Bill's own approval, nothing twice.
  EXPECT_EQ(notices.size(), 21u);
}

// Issue 13: a process killed mid-delivery leaves its outbox lease behind;
// restarted under the same replica name (host and listen address) it takes
// the lease at once instead of waiting it out, so notices move right after
// the restart.
TEST_F(CrossServiceTest, R8_AfterAKillTheRestartedProcessDeliversAtOnce) {
  const std::set<std::string> requests =
      RequestsWhileNotificationsIsDown("kim", 3);
  access_->Signal(SIGKILL);
  access_->WaitForExit(absl::Seconds(10));
  // As it lay dead: holding the lease of a pass under way for a minute
  // more (a lease outlives a peer call's deadline).
  {
    auto db = OpenDatabase(TestDatabase(dir_, "access"), {});
    ASSERT_TRUE(db.ok()) << db.status();
    char host[256] = {};
    ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
    ASSERT_TRUE(
        (*db)
            ->Write([&](Connection& c) -> absl::Status {
              auto lease = c.Prepare(
                  "UPDATE outbox_leases SET holder = ?1, "
                  "expire_micros = ?2 WHERE destination = "
                  "'notifications'");
              if (!lease.ok()) return lease.status();
              RETURN_IF_ERROR(
                  lease
                      ->Bind(1, absl::StrCat(host, "/127.0.0.1:", access_port_))
                      .Bind(2,
                            absl::ToUnixMicros(absl::Now() + absl::Minutes(1)))
                      .Run());
              return c.Changes() == 1 ? absl::OkStatus()
                                      : absl::NotFoundError("no lease row");
            })
            .ok());
  }
  StartNotifications();
  StartAccess();
  const absl::Time restarted = absl::Now();
  // Bill's own approval and the three requests.
  auto notices = AwaitInbox("users/bill", Token("bill"),
                            "sites/acme-sid/accessRequests/", 4);
  const absl::Duration took = absl::Now() - restarted;
  std::printf("[ figure ] notices moved %s after the restart\n",
              absl::FormatDuration(took).c_str());
  std::set<std::string> heard;
  for (const auto& n : notices) {
    if (requests.count(n.subject()) > 0) heard.insert(n.subject());
  }
  EXPECT_EQ(heard, requests);
  // Waiting the lease out would take a minute; the goal is 2 s, the bound
  // leaves room for a loaded machine.
  EXPECT_LT(took, absl::Seconds(15));
}

// Issue 13: one W3C trace from the caller to the last effect. A settings
// change made with a caller's traceparent and x-request-id is logged under
// that trace by all three services (CMS serving it, AccessService hearing
// NotifyCustomerChanged and NotificationService PublishAlert through the
// outboxes), and the webhook POST of the alert carries it.
class TracingTest : public CrossServiceTest {
 protected:
  void SetUp() override {
    notifications_extra_ = {"--webhook_allow_loopback"};
    CrossServiceTest::SetUp();
  }
  ::custos::testing::HttpReceiver receiver_;
};

TEST_F(TracingTest, OneTraceFromTheCallerToTheWebhook) {
  cv1::CreatePartnerRequest partner;
  partner.set_partner_id("northwind");
  partner.mutable_partner()->set_display_name("Northwind");
  cv1::Partner p;
  ASSERT_TRUE(
      customers_stub_->CreatePartner(As(admin_).get(), partner, &p).ok());
  cv1::CreateCustomerRequest create;
  create.set_customer_id("acme");
  create.mutable_customer()->set_display_name("Acme");
  create.mutable_customer()->set_partner("partners/northwind");
  cv1::Customer acme;
  ASSERT_TRUE(
      customers_stub_->CreateCustomer(As(admin_).get(), create, &acme).ok());
  nv1::CreateWebhookEndpointRequest hook;
  hook.set_parent("partners/northwind");
  hook.set_webhook_endpoint_id("console");
  hook.mutable_webhook_endpoint()->set_url(
      absl::StrCat("http://127.0.0.1:", receiver_.port(), "/hooks/console"));
  hook.mutable_webhook_endpoint()->set_secret(
      "webhook-secret-for-tracing-0123456789");
  nv1::WebhookEndpoint endpoint;
  {
    auto status =
        stub_->CreateWebhookEndpoint(As(admin_).get(), hook, &endpoint);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string request_id = "trace-test-request-1";
  cv1::SetManagementSettingsRequest change;
  change.set_customer("customers/acme");
  change.mutable_settings()->set_management_type(cv1::MANAGEMENT_TYPE_PARTNER);
  change.mutable_settings()->set_communications(cv1::COMMUNICATIONS_SHARED);
  change.set_etag(acme.etag());
  auto context = As(admin_);
  context->AddMetadata("traceparent",
                       absl::StrCat("00-", trace_id, "-00f067aa0ba902b7-01"));
  context->AddMetadata("x-request-id", request_id);
  {
    auto status =
        customers_stub_->SetManagementSettings(context.get(), change, &acme);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  ASSERT_TRUE(receiver_.AwaitRequests(1, absl::Seconds(15)));
  const auto posted = receiver_.requests()[0];
  ASSERT_EQ(posted.headers.count("traceparent"), 1u);
  const auto parent = ParseTraceparent(posted.headers.at("traceparent"));
  ASSERT_TRUE(parent.has_value()) << posted.headers.at("traceparent");
  EXPECT_EQ(parent->trace_id, trace_id);
  EXPECT_NE(parent->span_id, "00f067aa0ba902b7");  // a span of our own
  ASSERT_EQ(posted.headers.count("x-request-id"), 1u);
  EXPECT_EQ(posted.headers.at("x-request-id"), request_id);

  // Each service's log has lines of that trace with the caller's request
  // id (logs are flushed every 100 ms, so wait for them).
  const std::string trace_field =
      absl::StrCat("\"trace_id\":\"", trace_id, "\"");
  const std::string request_field =
      absl::StrCat("\"request_id\":\"", request_id, "\"");
  auto traced = [&](const ServiceProcess& process, const std::string& method) {
    for (absl::string_view line : absl::StrSplit(process.ReadLog(), '\n')) {
      if (absl::StrContains(line, trace_field) &&
          absl::StrContains(line, request_field) &&
          absl::StrContains(line,
                            absl::StrCat("\"method\":\"", method, "\""))) {
        return true;
      }
    }
    return false;
  };
  const absl::Time by = absl::Now() + absl::Seconds(10);
  bool all = false;
  while (!all && absl::Now() < by) {
    absl::SleepFor(absl::Milliseconds(100));
    all = traced(*customers_, "SetManagementSettings") &&
          traced(*access_, "NotifyCustomerChanged") &&
          traced(*notifications_, "PublishAlert") &&
          traced(*customers_, "GetCommunicationRouting");
  }
  EXPECT_TRUE(traced(*customers_, "SetManagementSettings"));
  EXPECT_TRUE(traced(*access_, "NotifyCustomerChanged"));
  EXPECT_TRUE(traced(*notifications_, "PublishAlert"));
  // NotificationService's own peer call continues the trace too.
  EXPECT_TRUE(traced(*customers_, "GetCommunicationRouting"));
}

// Requests expire after 2 s here, swept every 100 ms.
class ExpiryTest : public CrossServiceTest {
 protected:
  void SetUp() override {
    access_extra_ = {"--access_request_ttl=2s",
                     "--expiry_sweep_interval=100ms"};
    CrossServiceTest::SetUp();
  }
};

TEST_F(ExpiryTest, R6_R8_TheRequesterHearsTheRequestExpired) {
  CreateSite("initech-sid");
  const av1::AccessRequest peter =
      Request("peter", "initech-sid", av1::SITE_ROLE_SITE_MEMBER);
  auto told = AwaitInbox("users/peter", Token("peter"), peter.name(), 1);
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].title(),
            "Your access request for sites/initech-sid: EXPIRED");
  EXPECT_THAT(told[0].body(), HasSubstr("expired before anyone decided it"));
}

TEST_F(CrossServiceTest,
       R6_R8_CustomerCareIsToldWhenTheLastAdministratorLeaves) {
  SeedAcmeWithBill();
  const av1::AccessRequest gina =
      Request("gina", "acme-sid", av1::SITE_ROLE_SITE_MEMBER);
  av1::UpdateSiteMemberRequest demote;
  demote.mutable_site_member()->set_name("sites/acme-sid/members/bill");
  demote.mutable_site_member()->set_role(av1::SITE_ROLE_SITE_MEMBER);
  demote.mutable_update_mask()->add_paths("role");
  av1::SiteMember member;
  ASSERT_TRUE(
      access_stub_->UpdateSiteMember(As(care_).get(), demote, &member).ok());
  // The queue already holds Bill's own request; then the hand-over.
  auto queued = AwaitInbox(kQueue, care_, "sites/acme-sid", 2);
  std::vector<std::string> handovers;
  for (const auto& n : queued) {
    if (n.subject() == "sites/acme-sid") handovers.push_back(n.title());
  }
  EXPECT_THAT(handovers,
              ElementsAre("1 access request(s) of sites/acme-sid moved to "
                          "Customer Care"));
}

TEST_F(CrossServiceTest,
       R2_ASettingsChangeIsAnnouncedToTheCustomersRecipients) {
  cv1::CreatePartnerRequest partner;
  partner.set_partner_id("northwind");
  partner.mutable_partner()->set_display_name("Northwind");
  cv1::Partner p;
  ASSERT_TRUE(
      customers_stub_->CreatePartner(As(admin_).get(), partner, &p).ok());
  cv1::CreatePartnerUserRequest bill;
  bill.set_parent("partners/northwind");
  bill.set_user_id("bill");
  bill.mutable_partner_user()->set_role(cv1::PARTNER_ROLE_PARTNER_ADMIN);
  cv1::PartnerUser partner_user;
  ASSERT_TRUE(
      customers_stub_->CreatePartnerUser(As(admin_).get(), bill, &partner_user)
          .ok());
  cv1::CreateCustomerRequest create;
  create.set_customer_id("acme");
  create.mutable_customer()->set_display_name("Acme");
  create.mutable_customer()->set_partner("partners/northwind");
  create.mutable_customer()->set_account_manager(
      "partners/northwind/users/bill");
  cv1::Customer acme;
  ASSERT_TRUE(
      customers_stub_->CreateCustomer(As(admin_).get(), create, &acme).ok());
  cv1::CreateCustomerUserRequest joan;
  joan.set_parent("customers/acme");
  joan.set_user_id("joan");
  cv1::CustomerUser customer_user;
  ASSERT_TRUE(customers_stub_
                  ->CreateCustomerUser(As(admin_).get(), joan, &customer_user)
                  .ok());
  cv1::GetCustomerRequest get;
  get.set_name("customers/acme");
  ASSERT_TRUE(customers_stub_->GetCustomer(As(admin_).get(), get, &acme).ok());

  // CO_MANAGED + SHARED → PARTNER + SHARED: told to both sides (R2).
  cv1::SetManagementSettingsRequest change;
  change.set_customer("customers/acme");
  change.mutable_settings()->set_management_type(cv1::MANAGEMENT_TYPE_PARTNER);
  change.mutable_settings()->set_communications(cv1::COMMUNICATIONS_SHARED);
  change.set_etag(acme.etag());
  ASSERT_TRUE(
      customers_stub_
          ->SetManagementSettings(As(Token("bill")).get(), change, &acme)
          .ok());
  auto is_settings = [](const nv1::Notification& n) {
    return n.title() == "Management settings of Acme changed";
  };
  for (const std::string user : {"bill", "joan"}) {
    std::vector<nv1::Notification> told;
    for (int i = 0; i < 300 && told.empty(); ++i) {
      for (const auto& n : Inbox("users/" + user, Token(user))) {
        if (is_settings(n)) told.push_back(n);
      }
      if (told.empty()) absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_EQ(told.size(), 1u) << user;
    EXPECT_EQ(told[0].customer(), "customers/acme");
    EXPECT_THAT(
        told[0].body(),
        HasSubstr("MANAGEMENT_TYPE_CO_MANAGED -> MANAGEMENT_TYPE_PARTNER"));
  }

  // → PARTNER_ONLY: from now on only the partner hears (R2), this change
  // included.
  change.mutable_settings()->set_communications(
      cv1::COMMUNICATIONS_PARTNER_ONLY);
  change.set_etag(acme.etag());
  ASSERT_TRUE(
      customers_stub_
          ->SetManagementSettings(As(Token("bill")).get(), change, &acme)
          .ok());
  size_t bills = 0;
  for (int i = 0; i < 300 && bills < 2; ++i) {
    bills = 0;
    for (const auto& n : Inbox("users/bill", Token("bill"))) {
      bills += is_settings(n);
    }
    if (bills < 2) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(bills, 2u);
  size_t joans = 0;
  for (const auto& n : Inbox("users/joan", Token("joan"))) {
    joans += is_settings(n);
  }
  EXPECT_EQ(joans, 1u);
}

TEST_F(CrossServiceTest, R8_NotifyIsForServicesAndChecksEveryField) {
  const std::string service = Token("access-service", {"service"});
  auto notify = [&](const std::string& token,
                    const std::function<void(nv1::NotifyRequest&)>& edit,
                    nv1::Alert* alert) {
    nv1::NotifyRequest request;
    request.add_recipients("users/gina");
    request.add_recipients(kQueue);
    request.add_recipients("users/gina");  // repeats are ignored
    request.set_category(nv1::CATEGORY_ACCOUNT);
    request.set_severity(nv1::SEVERITY_INFO);
    request.set_title("Hello");
    request.set_subject("sites/acme-sid");
    request.set_request_id("notify-1");
    edit(request);
    return stub_->Notify(As(token).get(), request, alert);
  };
  nv1::Alert alert;
  EXPECT_EQ(notify(
                admin_, [](auto&) {}, &alert)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  const std::vector<
      std::pair<std::string, std::function<void(nv1::NotifyRequest&)>>>
      malformed = {
          {"recipients", [](auto& r) { r.clear_recipients(); }},
          {"recipients", [](auto& r) { r.add_recipients("partners/x"); }},
          {"category",
           [](auto& r) { r.set_category(nv1::CATEGORY_UNSPECIFIED); }},
          {"severity", [](auto& r) { r.set_severity(nv1::Severity(42)); }},
          {"title", [](auto& r) { r.clear_title(); }},
          {"body", [](auto& r) { r.set_body(std::string(10001, 'x')); }},
          {"subject", [](auto& r) { r.set_subject(std::string(501, 'x')); }},
          {"request_id", [](auto& r) { r.clear_request_id(); }},
      };
  for (const auto& [field, edit] : malformed) {
    auto status = notify(service, edit, &alert);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_EQ(FieldOf(status), field) << status.error_message();
  }
  ASSERT_TRUE(notify(
                  service, [](auto&) {}, &alert)
                  .ok());
  EXPECT_EQ(alert.recipient_count(), 2);
  EXPECT_EQ(alert.subject(), "sites/acme-sid");
  // A retried delivery (same request_id) is the same alert, delivered once.
  nv1::Alert again;
  ASSERT_TRUE(notify(
                  service, [](auto&) {}, &again)
                  .ok());
  EXPECT_EQ(again.name(), alert.name());
  EXPECT_EQ(Inbox("users/gina", Token("gina")).size(), 1u);
  EXPECT_EQ(Inbox(kQueue, care_).size(), 1u);
}

// Issue 5's metrics: each service serves Prometheus text on its own port.
TEST_F(CrossServiceTest, MetricsAreScrapedFromEveryService) {
  SeedAcmeWithBill();
  AwaitInbox("users/bill", Token("bill"), "sites/acme-sid/", 1);
  av1::CheckPermissionRequest check;
  check.set_resource("sites/acme-sid");
  check.set_permission("site.members.list");
  av1::CheckPermissionResponse allowed;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        access_stub_->CheckPermission(As(Token("bill")).get(), check, &allowed)
            .ok());
  }
  EXPECT_TRUE(allowed.allowed());
  using ::custos::testing::HttpGet;
  const std::string access = HttpGet(metrics_ports_[1], "/metrics");
  EXPECT_THAT(access, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_THAT(access, HasSubstr("text/plain; version=0.0.4"));
  const std::string check_labels =
      "grpc_service=\"custos.access.v1.AccessService\",grpc_method="
      "\"CheckPermission\",grpc_type=\"unary\"";
  EXPECT_THAT(access,
              HasSubstr(absl::StrCat("grpc_server_handled_total{", check_labels,
                                     ",grpc_code=\"OK\"} 3\n")));
  EXPECT_THAT(access,
              HasSubstr(absl::StrCat("grpc_server_handling_seconds_count{",
                                     check_labels, "} 3\n")));
  EXPECT_THAT(access,
              HasSubstr(absl::StrCat("grpc_server_handling_seconds_bucket{",
                                     check_labels, ",le=\"+Inf\"} 3")));
  EXPECT_THAT(access, HasSubstr("custos_permission_cache_lookups_total{"
                                "result=\"memory_hit\"}"));
  EXPECT_THAT(access, HasSubstr("custos_redis_degraded 0\n"));
  EXPECT_THAT(access, HasSubstr("# TYPE custos_customer_feed_fresh gauge\n"));
  EXPECT_THAT(access, HasSubstr("custos_customer_feed_resets_total 0\n"));
  EXPECT_THAT(access, HasSubstr("custos_permission_cache_forged_total 0\n"));
  EXPECT_THAT(access, HasSubstr("custos_outbox_depth{destination="
                                "\"notifications\"} 0\n"));
  EXPECT_THAT(access, HasSubstr("custos_outbox_deliveries_total{destination="
                                "\"notifications\",result=\"ok\"} 2\n"));

  // The store behind each service, and how it copes.
  EXPECT_THAT(access, HasSubstr(::custos::testing::TestingPostgres()
                                    ? "custos_database_backend{backend="
                                      "\"postgresql\"} 1\n"
                                    : "custos_database_backend{backend="
                                      "\"sqlite\"} 1\n"));
  EXPECT_THAT(access, HasSubstr("custos_database_conflict_retries_total "));
  EXPECT_THAT(access, HasSubstr("custos_database_connections_open "));

  const std::string customers = HttpGet(metrics_ports_[0], "/metrics");
  EXPECT_THAT(customers,
              HasSubstr("custos_outbox_depth{destination=\"access\"} 0\n"));
  EXPECT_THAT(customers, HasSubstr("custos_outbox_oldest_age_seconds{"
                                   "destination=\"notifications\"} 0\n"));

  const std::string notifications = HttpGet(metrics_ports_[2], "/metrics");
  EXPECT_THAT(notifications,
              HasSubstr("grpc_server_handled_total{grpc_service=\"custos."
                        "notifications.v1.NotificationService\",grpc_method="
                        "\"Notify\",grpc_type=\"unary\",grpc_code=\"OK\"} "
                        "2\n"));
  EXPECT_THAT(notifications, HasSubstr("custos_broadcast_fanouts_pending 0\n"));
  EXPECT_THAT(
      notifications,
      HasSubstr("custos_webhook_attempts_total{result=\"failed\"} 0\n"));
  EXPECT_THAT(HttpGet(metrics_ports_[2], "/other"), HasSubstr("HTTP/1.1 404"));
  // Every endpoint as Prometheus reads it (promtool check metrics).
  for (const std::string* scrape : {&access, &customers, &notifications}) {
    EXPECT_EQ(::custos::testing::PromtoolCheckMetrics(*scrape), "");
  }
}

}  // namespace
}  // namespace custos
