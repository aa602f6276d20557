// Integration tests of notification_service with the real
// customer_management_service on loopback. Test names carry the DESIGN rule
// they check.
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/auth.h"
#include "common/database.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "custos/notifications/v1/notifications_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "tests/support/http_receiver.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"
#include "tests/support/test_token.h"

namespace custos::notifications {
namespace {

namespace v1 = ::custos::notifications::v1;
namespace cv1 = ::custos::customers::v1;
using ::custos::testing::FreePort;
using ::custos::testing::LoopbackChannel;
using ::custos::testing::MakeTempDir;
using ::custos::testing::ServiceProcess;
using ::custos::testing::TestDatabase;
using ::custos::testing::TestingPostgres;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr char kSecret[] = "notification-integration-secret-012345";

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

std::string ReasonOf(const grpc::Status& status) {
  google::rpc::Status details;
  details.ParseFromString(status.error_details());
  for (const auto& any : details.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) return info.reason();
  }
  return "";
}

class NotificationServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartAll({}); }

  void StartAll(std::vector<std::string> extra) {
    dir_ = MakeTempDir();
    ::custos::testing::WriteFile(dir_ + "/secret", kSecret);
    ::custos::testing::WriteFile(dir_ + "/service-token",
                                 Token("notifications", {"service"}));
    customers_port_ = FreePort();
    customers_ = std::make_unique<ServiceProcess>(
        "services/customer_management_service/customer_management_service",
        std::vector<std::string>{
            absl::StrCat("--listen=127.0.0.1:", customers_port_),
            absl::StrCat("--database=", TestDatabase(dir_, "customers")),
            absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret")});
    ASSERT_TRUE(
        customers_->Start(absl::StrCat("127.0.0.1:", customers_port_)).ok());
    port_ = FreePort();
    notification_args_ = {
        absl::StrCat("--listen=127.0.0.1:", port_),
        absl::StrCat("--database=", TestDatabase(dir_, "notifications")),
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--customers_address=127.0.0.1:", customers_port_),
        absl::StrCat("--service_token_file=", dir_, "/service-token")};
    notification_args_.insert(notification_args_.end(), extra.begin(),
                              extra.end());
    StartNotifications();
    customers_stub_ = cv1::CustomerManagementService::NewStub(
        LoopbackChannel(customers_port_));
    stub_ = v1::NotificationService::NewStub(LoopbackChannel(port_));
    admin_ = Token("root", {"platform_admin"});
    pipeline_ = Token("alerting-pipeline", {"service"});
    Seed();
  }

  void StartNotifications() {
    notifications_ = std::make_unique<ServiceProcess>(
        "services/notification_service/notification_service",
        notification_args_);
    ASSERT_TRUE(notifications_->Start(absl::StrCat("127.0.0.1:", port_)).ok());
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + token);
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(20));
    return context;
  }

  // Northwind (bill, sally) resells to acme (PARTNER_ONLY, account manager
  // bill, user joan) and initech (SHARED, account manager sally, user
  // peter); umbrella has no partner (user alice).
  void Seed() {
    cv1::CreatePartnerRequest partner;
    partner.set_partner_id("northwind");
    partner.mutable_partner()->set_display_name("Northwind");
    cv1::Partner p;
    ASSERT_TRUE(
        customers_stub_->CreatePartner(As(admin_).get(), partner, &p).ok());
    for (const char* user : {"bill", "sally"}) {
      cv1::CreatePartnerUserRequest r;
      r.set_parent("partners/northwind");
      r.set_user_id(user);
      r.mutable_partner_user()->set_role(cv1::PARTNER_ROLE_PARTNER_ADMIN);
      cv1::PartnerUser out;
      ASSERT_TRUE(
          customers_stub_->CreatePartnerUser(As(admin_).get(), r, &out).ok());
    }
    Customer("acme", "northwind", cv1::COMMUNICATIONS_PARTNER_ONLY, "bill",
             "joan");
    Customer("initech", "northwind", cv1::COMMUNICATIONS_SHARED, "sally",
             "peter");
    Customer("umbrella", "", cv1::COMMUNICATIONS_SHARED, "", "alice");
  }

  void Customer(const std::string& id, const std::string& partner,
                cv1::Communications communications, const std::string& manager,
                const std::string& user) {
    cv1::CreateCustomerRequest r;
    r.set_customer_id(id);
    r.mutable_customer()->set_display_name(id);
    if (!partner.empty()) {
      r.mutable_customer()->set_partner("partners/" + partner);
      r.mutable_customer()->set_management_type(
          cv1::MANAGEMENT_TYPE_CO_MANAGED);
      r.mutable_customer()->set_communications(communications);
      r.mutable_customer()->set_account_manager(
          absl::StrCat("partners/", partner, "/users/", manager));
    }
    cv1::Customer out;
    auto status = customers_stub_->CreateCustomer(As(admin_).get(), r, &out);
    ASSERT_TRUE(status.ok()) << status.error_message();
    cv1::CreateCustomerUserRequest u;
    u.set_parent("customers/" + id);
    u.set_user_id(user);
    cv1::CustomerUser cu;
    ASSERT_TRUE(
        customers_stub_->CreateCustomerUser(As(admin_).get(), u, &cu).ok());
  }

  grpc::Status Publish(const std::string& customer, v1::Category category,
                       v1::Alert* alert, const std::string& request_id = "") {
    v1::PublishAlertRequest r;
    r.set_customer("customers/" + customer);
    r.set_category(category);
    r.set_severity(v1::SEVERITY_WARNING);
    r.set_title("Licence expires in 30 days");
    r.set_body("Renew it from the partner console.");
    r.set_request_id(request_id);
    return stub_->PublishAlert(As(pipeline_).get(), r, alert);
  }

  // The alerts in `user`'s inbox, by alert name.
  std::vector<std::string> Inbox(const std::string& user,
                                 bool unread_only = false) {
    v1::ListNotificationsRequest r;
    r.set_parent("users/" + user);
    r.set_unread_only(unread_only);
    v1::ListNotificationsResponse response;
    auto status = stub_->ListNotifications(As(Token(user)).get(), r, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<std::string> alerts;
    for (const auto& n : response.notifications()) alerts.push_back(n.alert());
    return alerts;
  }

  void Mute(const std::string& user, std::vector<v1::Category> categories,
            grpc::Status* status_out = nullptr) {
    v1::UpdateNotificationPreferencesRequest r;
    r.mutable_notification_preferences()->set_name(
        absl::StrCat("users/", user, "/notificationPreferences"));
    for (auto c : categories) {
      r.mutable_notification_preferences()->add_muted_categories(c);
    }
    r.mutable_update_mask()->add_paths("muted_categories");
    v1::NotificationPreferences out;
    auto status =
        stub_->UpdateNotificationPreferences(As(Token(user)).get(), r, &out);
    if (status_out != nullptr) {
      *status_out = status;
    } else {
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
  }

  v1::Alert WaitForFanOut(const std::string& name) {
    v1::GetAlertRequest get;
    get.set_name(name);
    v1::Alert alert;
    for (int i = 0; i < 600; ++i) {
      auto status = stub_->GetAlert(As(admin_).get(), get, &alert);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (alert.fan_out_complete()) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return alert;
  }

  std::vector<std::string> notification_args_;
  std::string dir_;
  int customers_port_ = 0;
  int port_ = 0;
  std::unique_ptr<ServiceProcess> customers_;
  std::unique_ptr<ServiceProcess> notifications_;
  std::unique_ptr<cv1::CustomerManagementService::Stub> customers_stub_;
  std::unique_ptr<v1::NotificationService::Stub> stub_;
  std::string admin_, pipeline_;
};

TEST_F(NotificationServiceTest, R2_PartnerOnlyAlertsGoToTheAccountManagerOnly) {
  v1::Alert alert;
  ASSERT_TRUE(Publish("acme", v1::CATEGORY_LICENSING, &alert).ok());
  EXPECT_EQ(alert.recipient_count(), 1);
  EXPECT_THAT(Inbox("bill"), ElementsAre(alert.name()));
  EXPECT_THAT(Inbox("joan"), IsEmpty());
}

TEST_F(NotificationServiceTest,
       R2_SharedAlertsGoToCustomerUsersAndAccountManager) {
  v1::Alert alert;
  ASSERT_TRUE(Publish("initech", v1::CATEGORY_PRODUCT, &alert).ok());
  EXPECT_EQ(alert.recipient_count(), 2);
  EXPECT_THAT(Inbox("sally"), ElementsAre(alert.name()));
  EXPECT_THAT(Inbox("peter"), ElementsAre(alert.name()));
}

TEST_F(NotificationServiceTest, R3_CustomerWithoutPartnerHearsEverything) {
  v1::Alert alert;
  ASSERT_TRUE(Publish("umbrella", v1::CATEGORY_ACCOUNT, &alert).ok());
  EXPECT_EQ(alert.recipient_count(), 1);
  EXPECT_THAT(Inbox("alice"), ElementsAre(alert.name()));
}

TEST_F(NotificationServiceTest,
       R10_MutedCategoriesAreSkippedButMandatoryOnesNot) {
  Mute("peter", {v1::CATEGORY_LICENSING});
  v1::Alert licensing;
  ASSERT_TRUE(Publish("initech", v1::CATEGORY_LICENSING, &licensing).ok());
  EXPECT_EQ(licensing.recipient_count(), 1);
  EXPECT_THAT(Inbox("peter"), IsEmpty());
  EXPECT_THAT(Inbox("sally"), ElementsAre(licensing.name()));
  v1::Alert security;
  ASSERT_TRUE(Publish("initech", v1::CATEGORY_SECURITY, &security).ok());
  EXPECT_THAT(Inbox("peter"), ElementsAre(security.name()));

  grpc::Status status;
  Mute("peter", {v1::CATEGORY_SECURITY}, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ReasonOf(status), "MANDATORY_CATEGORY");
  EXPECT_EQ(FieldOf(status), "notification_preferences.muted_categories");

  v1::GetNotificationPreferencesRequest get;
  get.set_name("users/peter/notificationPreferences");
  v1::NotificationPreferences preferences;
  ASSERT_TRUE(stub_
                  ->GetNotificationPreferences(As(Token("peter")).get(), get,
                                               &preferences)
                  .ok());
  EXPECT_THAT(preferences.muted_categories(),
              ElementsAre(v1::CATEGORY_LICENSING));
  EXPECT_THAT(preferences.mandatory_categories(),
              ElementsAre(v1::CATEGORY_SECURITY));
}

TEST_F(NotificationServiceTest, R13_PreviewSaysWhoReceivesAndWhyOthersDoNot) {
  v1::PreviewRoutingRequest r;
  r.set_customer("customers/acme");
  r.set_category(v1::CATEGORY_LICENSING);
  v1::PreviewRoutingResponse preview;
  ASSERT_TRUE(stub_->PreviewRouting(As(pipeline_).get(), r, &preview).ok());
  ASSERT_EQ(preview.recipients_size(), 1);
  EXPECT_EQ(preview.recipients(0).user(), "users/bill");
  ASSERT_EQ(preview.excluded_size(), 1);
  EXPECT_EQ(preview.excluded(0).user(), "users/joan");
  EXPECT_EQ(preview.excluded(0).reason(),
            v1::EXCLUSION_REASON_PARTNER_ONLY_COMMUNICATIONS);

  Mute("peter", {v1::CATEGORY_PRODUCT});
  r.set_customer("customers/initech");
  r.set_category(v1::CATEGORY_PRODUCT);
  ASSERT_TRUE(stub_->PreviewRouting(As(pipeline_).get(), r, &preview).ok());
  ASSERT_EQ(preview.excluded_size(), 1);
  EXPECT_EQ(preview.excluded(0).user(), "users/peter");
  EXPECT_EQ(preview.excluded(0).reason(), v1::EXCLUSION_REASON_MUTED_CATEGORY);
  // Previewing writes nothing.
  EXPECT_THAT(Inbox("sally"), IsEmpty());
  // Customers' own users do not preview routing.
  EXPECT_EQ(
      stub_->PreviewRouting(As(Token("peter")).get(), r, &preview).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(NotificationServiceTest, R12_RequestIdMakesARepeatedPublishANoOp) {
  v1::Alert first;
  v1::Alert second;
  ASSERT_TRUE(Publish("initech", v1::CATEGORY_PRODUCT, &first, "evt-1").ok());
  ASSERT_TRUE(Publish("initech", v1::CATEGORY_PRODUCT, &second, "evt-1").ok());
  EXPECT_EQ(first.name(), second.name());
  EXPECT_THAT(Inbox("peter"), ElementsAre(first.name()));
}

TEST_F(NotificationServiceTest, InboxPagesWithoutDuplicatesAndMarksRead) {
  std::set<std::string> published;
  for (int i = 0; i < 5; ++i) {
    v1::Alert alert;
    ASSERT_TRUE(Publish("umbrella", v1::CATEGORY_PRODUCT, &alert).ok());
    published.insert(alert.name());
  }
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    v1::ListNotificationsRequest r;
    r.set_parent("users/alice");
    r.set_page_size(2);
    r.set_page_token(token);
    v1::ListNotificationsResponse page;
    ASSERT_TRUE(
        stub_->ListNotifications(As(Token("alice")).get(), r, &page).ok());
    for (const auto& n : page.notifications()) {
      EXPECT_TRUE(seen.insert(n.alert()).second) << "duplicate " << n.alert();
    }
    token = page.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(seen, published);
  EXPECT_EQ(pages, 3);

  const std::vector<std::string> inbox = Inbox("alice");
  v1::MarkNotificationsReadRequest mark;
  mark.set_parent("users/alice");
  for (int i = 0; i < 2; ++i) {
    mark.add_names("users/alice/notifications/" +
                   inbox[i].substr(sizeof("alerts/") - 1));
  }
  v1::MarkNotificationsReadResponse marked;
  ASSERT_TRUE(
      stub_->MarkNotificationsRead(As(Token("alice")).get(), mark, &marked)
          .ok());
  EXPECT_EQ(marked.marked(), 2);
  EXPECT_EQ(Inbox("alice", /*unread_only=*/true).size(), 3u);
  mark.clear_names();
  mark.set_all(true);
  ASSERT_TRUE(
      stub_->MarkNotificationsRead(As(Token("alice")).get(), mark, &marked)
          .ok());
  EXPECT_EQ(marked.marked(), 3);
  EXPECT_THAT(Inbox("alice", true), IsEmpty());

  // Nobody else reads or marks Alice's inbox.
  v1::ListNotificationsRequest other;
  other.set_parent("users/alice");
  v1::ListNotificationsResponse response;
  EXPECT_EQ(stub_->ListNotifications(As(Token("peter")).get(), other, &response)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(
      stub_->MarkNotificationsRead(As(Token("peter")).get(), mark, &marked)
          .error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(NotificationServiceTest, MalformedInputIsInvalidArgumentNamingTheField) {
  v1::Alert alert;
  struct Case {
    std::string what;
    std::function<void(v1::PublishAlertRequest*)> spoil;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"customer", [](auto* r) { r->set_customer("acme"); }, "customer"},
      {"category", [](auto* r) { r->set_category(v1::CATEGORY_UNSPECIFIED); },
       "category"},
      {"severity", [](auto* r) { r->set_severity(v1::SEVERITY_UNSPECIFIED); },
       "severity"},
      {"title", [](auto* r) { r->set_title(""); }, "title"},
      {"body", [](auto* r) { r->set_body(std::string(10001, 'x')); }, "body"},
      {"request_id", [](auto* r) { r->set_request_id("a b"); }, "request_id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::PublishAlertRequest r;
    r.set_customer("customers/acme");
    r.set_category(v1::CATEGORY_PRODUCT);
    r.set_severity(v1::SEVERITY_INFO);
    r.set_title("t");
    c.spoil(&r);
    grpc::Status status = stub_->PublishAlert(As(pipeline_).get(), r, &alert);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(FieldOf(status), c.field);
  }
  EXPECT_THAT(Inbox("bill"), IsEmpty());
  // Only services and platform admins publish.
  v1::PublishAlertRequest r;
  r.set_customer("customers/acme");
  EXPECT_EQ(
      stub_->PublishAlert(As(Token("bill")).get(), r, &alert).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(NotificationServiceTest, CustomerServiceDownMeansUnavailableAndNoAlert) {
  customers_->Signal(SIGKILL);
  customers_->WaitForExit(absl::Seconds(5));
  v1::Alert alert;
  grpc::Status status = Publish("acme", v1::CATEGORY_PRODUCT, &alert);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(Inbox("bill"), IsEmpty());
}

TEST_F(NotificationServiceTest,
       R11_BroadcastReachesEveryUserWhateverTheirSettings) {
  Mute("peter",
       {v1::CATEGORY_LICENSING, v1::CATEGORY_PRODUCT, v1::CATEGORY_ACCOUNT});
  v1::PublishBroadcastRequest r;
  r.set_kind(v1::BROADCAST_KIND_OUTAGE);
  r.set_title("Worldwide outage");
  r.set_body("We are on it.");
  v1::Alert broadcast;
  ASSERT_TRUE(stub_->PublishBroadcast(As(admin_).get(), r, &broadcast).ok());
  const v1::Alert done = WaitForFanOut(broadcast.name());
  EXPECT_TRUE(done.fan_out_complete());
  // bill and sally (partner users), joan (PARTNER_ONLY customer), peter
  // (muted everything), alice (no partner).
  EXPECT_EQ(done.recipient_count(), 5);
  for (const char* user : {"bill", "sally", "joan", "peter", "alice"}) {
    SCOPED_TRACE(user);
    EXPECT_THAT(Inbox(user), ElementsAre(broadcast.name()));
  }
  // Customers' users do not broadcast.
  EXPECT_EQ(stub_->PublishBroadcast(As(Token("bill")).get(), r, &broadcast)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  r.set_kind(v1::BROADCAST_KIND_UNSPECIFIED);
  auto status = stub_->PublishBroadcast(As(admin_).get(), r, &broadcast);
  EXPECT_EQ(FieldOf(status), "kind");
}

TEST_F(NotificationServiceTest,
       R12_StreamDeliversLiveAndResumesWithoutGapsOrDuplicates) {
  v1::StreamNotificationsRequest r;
  r.set_parent("users/alice");
  auto context = As(Token("alice"));
  auto reader = stub_->StreamNotifications(context.get(), r);
  reader->WaitForInitialMetadata();  // the stream is live
  std::vector<std::string> published;
  for (int i = 0; i < 3; ++i) {
    v1::Alert alert;
    ASSERT_TRUE(Publish("umbrella", v1::CATEGORY_PRODUCT, &alert).ok());
    published.push_back(alert.name());
  }
  std::vector<std::string> received;
  std::string cursor;
  v1::StreamNotificationsResponse item;
  while (received.size() < 3 && reader->Read(&item)) {
    received.push_back(item.notification().alert());
    cursor = item.cursor();
  }
  EXPECT_EQ(received, published);
  // Disconnect, miss three, reconnect with the last cursor.
  context->TryCancel();
  reader->Finish().IgnoreError();
  std::vector<std::string> missed;
  for (int i = 0; i < 3; ++i) {
    v1::Alert alert;
    ASSERT_TRUE(Publish("umbrella", v1::CATEGORY_ACCOUNT, &alert).ok());
    missed.push_back(alert.name());
  }
  r.set_resume_cursor(cursor);
  auto again_context = As(Token("alice"));
  auto again = stub_->StreamNotifications(again_context.get(), r);
  received.clear();
  while (received.size() < 3 && again->Read(&item)) {
    received.push_back(item.notification().alert());
  }
  EXPECT_EQ(received, missed);
  again_context->TryCancel();
  again->Finish().IgnoreError();

  // Only the owner streams an inbox; a bad cursor names the field.
  auto other_context = As(Token("peter"));
  auto other = stub_->StreamNotifications(other_context.get(), r);
  EXPECT_FALSE(other->Read(&item));
  EXPECT_EQ(other->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  r.set_resume_cursor("later");
  auto bad_context = As(Token("alice"));
  auto bad = stub_->StreamNotifications(bad_context.get(), r);
  EXPECT_FALSE(bad->Read(&item));
  EXPECT_EQ(FieldOf(bad->Finish()), "resume_cursor");
}

// kill -9 in the middle of a 100,000-recipient broadcast; after a restart
// every recipient has it exactly once.
class BroadcastCrashTest : public NotificationServiceTest {
 protected:
  void SetUp() override { StartAll({"--broadcast_page_size=200"}); }
};

TEST_F(BroadcastCrashTest,
       R11_R12_KilledMidBroadcastDeliversEveryoneExactlyOnce) {
  // 100,000 more customer users, written straight into the customer
  // service's database (its API would take minutes).
  auto customers = custos::OpenDatabase(TestDatabase(dir_, "customers"), {});
  ASSERT_TRUE(customers.ok()) << customers.status();
  absl::Status filled = (*customers)->Write([](custos::Connection& db) {
    return db.Exec(
        TestingPostgres()
            ? "INSERT INTO customer_users(customer_id, user_id, display_name, "
              "email, create_micros) SELECT 'umbrella', 'u' || lpad(i::text, "
              "6, '0'), '', '', 0 FROM generate_series(1, 100000) AS i"
            : "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
              "WHERE i < 100000) INSERT INTO customer_users(customer_id, "
              "user_id, display_name, email, create_micros) SELECT "
              "'umbrella', printf('u%06d', i), '', '', 0 FROM n");
  });
  ASSERT_TRUE(filled.ok()) << filled;
  constexpr int64_t kRecipients = 100005;

  v1::PublishBroadcastRequest r;
  r.set_kind(v1::BROADCAST_KIND_MAINTENANCE);
  r.set_title("Planned maintenance");
  v1::Alert broadcast;
  ASSERT_TRUE(stub_->PublishBroadcast(As(admin_).get(), r, &broadcast).ok());
  v1::GetAlertRequest get;
  get.set_name(broadcast.name());
  v1::Alert progress;
  // Killed as soon as the first pages are in: far from the 500th.
  for (int i = 0; i < 2000 && progress.recipient_count() < 1000; ++i) {
    ASSERT_TRUE(stub_->GetAlert(As(admin_).get(), get, &progress).ok());
    absl::SleepFor(absl::Milliseconds(2));
  }
  notifications_->Signal(SIGKILL);
  notifications_->WaitForExit(absl::Seconds(5));
  EXPECT_FALSE(progress.fan_out_complete()) << "killed too late to matter";

  StartNotifications();
  const v1::Alert done = WaitForFanOut(broadcast.name());
  ASSERT_TRUE(done.fan_out_complete());
  EXPECT_EQ(done.recipient_count(), kRecipients);
  // Exactly once per inbox, counted in the store itself.
  auto notifications =
      custos::OpenDatabase(TestDatabase(dir_, "notifications"), {});
  ASSERT_TRUE(notifications.ok()) << notifications.status();
  const std::string alert_id = broadcast.name().substr(sizeof("alerts/") - 1);
  int64_t rows = 0;
  int64_t users = 0;
  absl::Status counted = (*notifications)->Read([&](custos::Connection& db) {
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
  EXPECT_THAT(Inbox("u054321"), ElementsAre(broadcast.name()));
}

// Webhooks (R12) against a real HTTP server on loopback, which the service
// refuses unless told otherwise. Retries are fast here: 50 ms initial
// backoff, 4 attempts.
class WebhookTest : public NotificationServiceTest {
 protected:
  void SetUp() override {
    StartAll({"--webhook_initial_backoff=50ms", "--webhook_max_backoff=200ms",
              "--webhook_max_attempts=4", "--webhook_timeout=2s",
              "--webhook_allow_loopback"});
  }

  v1::WebhookEndpoint CreateEndpoint(const std::string& parent,
                                     const std::string& id) {
    v1::CreateWebhookEndpointRequest r;
    r.set_parent(parent);
    r.set_webhook_endpoint_id(id);
    r.mutable_webhook_endpoint()->set_url(
        absl::StrCat("http://127.0.0.1:", receiver_.port(), "/hooks/", id));
    r.mutable_webhook_endpoint()->set_secret(kWebhookSecret);
    v1::WebhookEndpoint endpoint;
    auto status = stub_->CreateWebhookEndpoint(As(admin_).get(), r, &endpoint);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return endpoint;
  }

  std::vector<v1::WebhookDelivery> Deliveries(const std::string& endpoint) {
    v1::ListWebhookDeliveriesRequest r;
    r.set_parent(endpoint);
    v1::ListWebhookDeliveriesResponse response;
    auto status = stub_->ListWebhookDeliveries(As(admin_).get(), r, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.webhook_deliveries().begin(),
            response.webhook_deliveries().end()};
  }

  // Waits (at most 15 s) until the endpoint's newest delivery has left
  // STATE_PENDING; returns it.
  v1::WebhookDelivery AwaitSettled(const std::string& endpoint) {
    const absl::Time give_up = absl::Now() + absl::Seconds(15);
    while (true) {
      auto deliveries = Deliveries(endpoint);
      if (!deliveries.empty() &&
          deliveries[0].state() != v1::WebhookDelivery::STATE_PENDING) {
        return deliveries[0];
      }
      if (absl::Now() > give_up) {
        return deliveries.empty() ? v1::WebhookDelivery() : deliveries[0];
      }
      absl::SleepFor(absl::Milliseconds(25));
    }
  }

  // Verifies X-Custos-Signature the way a receiver would.
  static bool SignatureValid(const ::custos::testing::HttpReceiver::Request& r,
                             const std::string& secret) {
    auto header = r.headers.find("x-custos-signature");
    if (header == r.headers.end()) return false;
    std::string t;
    std::string v1;
    for (absl::string_view part : absl::StrSplit(header->second, ',')) {
      if (absl::ConsumePrefix(&part, "t=")) t = std::string(part);
      if (absl::ConsumePrefix(&part, "v1=")) v1 = std::string(part);
    }
    const std::string text = absl::StrCat(t, ".", r.body);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(text.data()), text.size(), mac,
         &size);
    return !t.empty() && v1 == absl::BytesToHexString(absl::string_view(
                                   reinterpret_cast<const char*>(mac), size));
  }

  static constexpr char kWebhookSecret[] = "whsec-0123456789abcdef";
  ::custos::testing::HttpReceiver receiver_;
};

TEST_F(WebhookTest, R12_AFailingReceiverGetsTheAlertOnceItRecovers) {
  const auto partner_hook = CreateEndpoint("partners/northwind", "ops");
  const auto acme_hook = CreateEndpoint("customers/acme", "acme-it");
  receiver_.FailNext(2);
  v1::Alert alert;
  ASSERT_TRUE(Publish("acme", v1::CATEGORY_LICENSING, &alert).ok());

  const v1::WebhookDelivery delivery = AwaitSettled(partner_hook.name());
  EXPECT_EQ(delivery.state(), v1::WebhookDelivery::STATE_DELIVERED);
  EXPECT_EQ(delivery.attempts(), 3);  // two 503s, then 204
  EXPECT_EQ(delivery.last_error(), "HTTP 503");
  EXPECT_EQ(delivery.alert(), alert.name());
  EXPECT_EQ(delivery.name(), absl::StrCat(partner_hook.name(), "/deliveries/",
                                          alert.name().substr(7)));
  auto requests = receiver_.requests();
  ASSERT_EQ(requests.size(), 3u);
  for (const auto& request : requests) {
    EXPECT_EQ(request.path, "/hooks/ops");
    EXPECT_TRUE(SignatureValid(request, kWebhookSecret));
    EXPECT_FALSE(SignatureValid(request, "another-secret-0123456"));
    EXPECT_THAT(request.body, ::testing::HasSubstr(alert.name()));
    EXPECT_EQ(request.headers.at("x-custos-delivery"), delivery.name());
  }
  // A tampered body fails verification.
  auto tampered = requests.back();
  tampered.body += " ";
  EXPECT_FALSE(SignatureValid(tampered, kWebhookSecret));
  // PARTNER_ONLY (R2): the customer's own endpoint is not sent the alert.
  EXPECT_THAT(Deliveries(acme_hook.name()), IsEmpty());
}

TEST_F(WebhookTest, R12_ADeliveryIsDeadAfterTheAttemptLimit) {
  const auto hook = CreateEndpoint("customers/initech", "initech-it");
  receiver_.FailNext(1000, 500);
  v1::Alert alert;
  ASSERT_TRUE(Publish("initech", v1::CATEGORY_PRODUCT, &alert).ok());
  const v1::WebhookDelivery delivery = AwaitSettled(hook.name());
  EXPECT_EQ(delivery.state(), v1::WebhookDelivery::STATE_DEAD);
  EXPECT_EQ(delivery.attempts(), 4);
  EXPECT_EQ(delivery.last_error(), "HTTP 500");
  // No attempt after the last one.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(receiver_.requests().size(), 4u);
}

TEST_F(WebhookTest, R11_R12_BroadcastsReachEveryEndpoint) {
  const auto partner_hook = CreateEndpoint("partners/northwind", "ops");
  const auto acme_hook = CreateEndpoint("customers/acme", "acme-it");
  v1::PublishBroadcastRequest r;
  r.set_kind(v1::BROADCAST_KIND_OUTAGE);
  r.set_title("Service outage");
  v1::Alert broadcast;
  ASSERT_TRUE(stub_->PublishBroadcast(As(admin_).get(), r, &broadcast).ok());
  for (const auto& hook : {partner_hook, acme_hook}) {
    const v1::WebhookDelivery delivery = AwaitSettled(hook.name());
    EXPECT_EQ(delivery.state(), v1::WebhookDelivery::STATE_DELIVERED)
        << hook.name();
    EXPECT_EQ(delivery.alert(), broadcast.name());
  }
  EXPECT_EQ(receiver_.requests().size(), 2u);
}

TEST_F(WebhookTest, R12_EndpointsAreCheckedListedWithoutSecretsAndDeleted) {
  auto create =
      [&](const std::string& token,
          const std::function<void(v1::CreateWebhookEndpointRequest&)>& edit) {
        v1::CreateWebhookEndpointRequest r;
        r.set_parent("partners/northwind");
        r.mutable_webhook_endpoint()->set_url(
            "https://hooks.example.com/custos");
        r.mutable_webhook_endpoint()->set_secret(kWebhookSecret);
        edit(r);
        v1::WebhookEndpoint endpoint;
        return stub_->CreateWebhookEndpoint(As(token).get(), r, &endpoint);
      };
  EXPECT_EQ(create(Token("bill"), [](auto&) {}).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  const std::vector<std::pair<
      std::string, std::function<void(v1::CreateWebhookEndpointRequest&)>>>
      malformed = {
          {"parent", [](auto& r) { r.set_parent("sites/acme-sid"); }},
          {"webhook_endpoint_id",
           [](auto& r) { r.set_webhook_endpoint_id("Not An Id"); }},
          {"webhook_endpoint.url",
           [](auto& r) { r.mutable_webhook_endpoint()->clear_url(); }},
          {"webhook_endpoint.url",
           [](auto& r) {
             r.mutable_webhook_endpoint()->set_url("http://example.com/x");
           }},
          {"webhook_endpoint.url",
           [](auto& r) {
             r.mutable_webhook_endpoint()->set_url("ftp://example.com/x");
           }},
          {"webhook_endpoint.secret",
           [](auto& r) { r.mutable_webhook_endpoint()->set_secret("short"); }},
      };
  for (const auto& [field, edit] : malformed) {
    auto status = create(admin_, edit);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_EQ(FieldOf(status), field) << status.error_message();
  }
  ASSERT_TRUE(
      create(admin_, [](auto& r) { r.set_webhook_endpoint_id("ops"); }).ok());
  EXPECT_EQ(create(admin_, [](auto& r) { r.set_webhook_endpoint_id("ops"); })
                .error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  v1::ListWebhookEndpointsRequest list;
  list.set_parent("partners/northwind");
  v1::ListWebhookEndpointsResponse listed;
  ASSERT_TRUE(
      stub_->ListWebhookEndpoints(As(admin_).get(), list, &listed).ok());
  ASSERT_EQ(listed.webhook_endpoints_size(), 1);
  EXPECT_EQ(listed.webhook_endpoints(0).name(),
            "partners/northwind/webhookEndpoints/ops");
  EXPECT_EQ(listed.webhook_endpoints(0).secret(), "");

  v1::DeleteWebhookEndpointRequest remove;
  remove.set_name("partners/northwind/webhookEndpoints/ops");
  google::protobuf::Empty empty;
  ASSERT_TRUE(
      stub_->DeleteWebhookEndpoint(As(admin_).get(), remove, &empty).ok());
  EXPECT_EQ(stub_->DeleteWebhookEndpoint(As(admin_).get(), remove, &empty)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::ListWebhookDeliveriesRequest deliveries;
  deliveries.set_parent(remove.name());
  v1::ListWebhookDeliveriesResponse none;
  EXPECT_EQ(stub_->ListWebhookDeliveries(As(admin_).get(), deliveries, &none)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace custos::notifications
