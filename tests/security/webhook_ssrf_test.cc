// Integration tests of the webhook target rules (R12, SSRF) against the
// real notification_service (and customer_management_service, for the
// broadcasts that trigger deliveries): an endpoint that would reach
// loopback, private, link-local or metadata addresses is refused and
// nothing is stored; a delivery connects only to what it checked, follows
// no redirect, and records errors that do not map the network.
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
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
using ::custos::testing::FreePort;
using ::custos::testing::HttpReceiver;
using ::custos::testing::LoopbackChannel;
using ::custos::testing::MakeTempDir;
using ::custos::testing::ServiceProcess;
using ::custos::testing::TestDatabase;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

constexpr char kSecret[] = "webhook-ssrf-integration-secret-0123456";
constexpr char kWebhookSecret[] = "whsec-0123456789abcdef";
constexpr char kOwner[] = "partners/northwind";
constexpr char kNotAllowed[] = "WEBHOOK_TARGET_NOT_ALLOWED";
constexpr int kMaxAttempts = 3;

std::string Token(const std::string& subject, std::vector<std::string> roles) {
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

class WebhookSsrfTest : public ::testing::Test {
 protected:
  // Starts both services; notification_service with fast retries and
  // `flags` (the target policy under test).
  void Start(const std::vector<std::string>& flags) {
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
    admin_ = Token("root", {"platform_admin"});
    ASSERT_NO_FATAL_FAILURE(StartNotifications(flags));
  }

  // (Re)starts notification_service on the same store with `flags`.
  void StartNotifications(const std::vector<std::string>& flags) {
    if (notifications_ != nullptr) notifications_->Stop();
    std::vector<std::string> args = {
        absl::StrCat("--listen=127.0.0.1:", port_),
        absl::StrCat("--database=", TestDatabase(dir_, "notifications")),
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--customers_address=127.0.0.1:", customers_port_),
        absl::StrCat("--service_token_file=", dir_, "/service-token"),
        "--webhook_initial_backoff=50ms",
        "--webhook_max_backoff=200ms",
        absl::StrCat("--webhook_max_attempts=", kMaxAttempts),
        "--webhook_timeout=2s"};
    args.insert(args.end(), flags.begin(), flags.end());
    notifications_ = std::make_unique<ServiceProcess>(
        "services/notification_service/notification_service", args);
    ASSERT_TRUE(notifications_->Start(absl::StrCat("127.0.0.1:", port_)).ok())
        << notifications_->ReadLog();
    stub_ = v1::NotificationService::NewStub(LoopbackChannel(port_));
  }

  std::unique_ptr<grpc::ClientContext> AsAdmin() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + admin_);
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(20));
    return context;
  }

  grpc::Status Create(const std::string& url, const std::string& id = "",
                      v1::WebhookEndpoint* created = nullptr) {
    v1::CreateWebhookEndpointRequest r;
    r.set_parent(kOwner);
    r.set_webhook_endpoint_id(id);
    r.mutable_webhook_endpoint()->set_url(url);
    r.mutable_webhook_endpoint()->set_secret(kWebhookSecret);
    v1::WebhookEndpoint endpoint;
    grpc::Status status =
        stub_->CreateWebhookEndpoint(AsAdmin().get(), r, &endpoint);
    if (created != nullptr) *created = endpoint;
    return status;
  }

  // Refused with INVALID_ARGUMENT on the URL (and, when `address`, because
  // of the address it names or resolves to), and nothing was stored.
  void ExpectRefused(const std::string& url, bool address) {
    const grpc::Status status = Create(url);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << url << ": " << status.error_message();
    EXPECT_EQ(FieldOf(status), "webhook_endpoint.url") << url;
    if (address) {
      EXPECT_EQ(ReasonOf(status), kNotAllowed)
          << url << ": " << status.error_message();
    }
    EXPECT_THAT(Endpoints(), IsEmpty()) << url;
  }

  std::vector<v1::WebhookEndpoint> Endpoints() {
    v1::ListWebhookEndpointsRequest r;
    r.set_parent(kOwner);
    v1::ListWebhookEndpointsResponse response;
    auto status = stub_->ListWebhookEndpoints(AsAdmin().get(), r, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.webhook_endpoints().begin(),
            response.webhook_endpoints().end()};
  }

  // A broadcast (R11) queues a delivery to every endpoint.
  void Broadcast() {
    v1::PublishBroadcastRequest r;
    r.set_kind(v1::BROADCAST_KIND_MAINTENANCE);
    r.set_title("Maintenance tonight");
    v1::Alert alert;
    auto status = stub_->PublishBroadcast(AsAdmin().get(), r, &alert);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // Waits (at most 15 s) until the endpoint's newest delivery has left
  // STATE_PENDING; returns it.
  v1::WebhookDelivery AwaitSettled(const std::string& endpoint) {
    const absl::Time give_up = absl::Now() + absl::Seconds(15);
    while (true) {
      v1::ListWebhookDeliveriesRequest r;
      r.set_parent(endpoint);
      v1::ListWebhookDeliveriesResponse response;
      auto status = stub_->ListWebhookDeliveries(AsAdmin().get(), r, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (response.webhook_deliveries_size() > 0 &&
          response.webhook_deliveries(0).state() !=
              v1::WebhookDelivery::STATE_PENDING) {
        return response.webhook_deliveries(0);
      }
      if (absl::Now() > give_up) {
        return response.webhook_deliveries_size() > 0
                   ? response.webhook_deliveries(0)
                   : v1::WebhookDelivery();
      }
      absl::SleepFor(absl::Milliseconds(25));
    }
  }

  std::string dir_;
  int customers_port_ = 0;
  int port_ = 0;
  std::string admin_;
  std::unique_ptr<ServiceProcess> customers_;
  std::unique_ptr<ServiceProcess> notifications_;
  std::unique_ptr<v1::NotificationService::Stub> stub_;
};

TEST_F(WebhookSsrfTest, R12_ByDefaultEveryInternalTargetIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Start({}));
  // A live receiver on loopback: a check that let a URL through would
  // show here as a request.
  HttpReceiver receiver;
  const std::string p = absl::StrCat(receiver.port());
  // User information: libcurl connects to the host after the "@".
  ExpectRefused("http://127.0.0.1:1@127.0.0.2:" + p + "/x", false);
  ExpectRefused("http://localhost:80@169.254.169.254/", false);
  ExpectRefused("https://a@example.com/", false);
  ExpectRefused("https://:@example.com/", false);
  ExpectRefused("https://@example.com/", false);
  // Numeric forms of 127.0.0.1: over http:// refused as not https; over
  // https:// refused by the address they mean.
  for (const std::string& host : {"2130706433:" + p, "0x7f000001:" + p,
                                  "0177.0.0.1:" + p, "127.1:" + p}) {
    ExpectRefused("http://" + host + "/", false);
    ExpectRefused("https://" + host + "/", true);
  }
  ExpectRefused("http://0177.0.0.1/", false);
  ExpectRefused("http://127.1/", false);
  // IPv6 loopback, and IPv4-mapped loopback and metadata.
  ExpectRefused("http://[::1]:" + p + "/", false);
  ExpectRefused("https://[::1]:" + p + "/", true);
  ExpectRefused("http://[::ffff:127.0.0.1]:" + p + "/", false);
  ExpectRefused("https://[::ffff:127.0.0.1]:" + p + "/", true);
  ExpectRefused("https://[::ffff:169.254.169.254]/", true);
  // The cloud metadata service.
  ExpectRefused("http://169.254.169.254/latest/meta-data/", false);
  ExpectRefused("https://169.254.169.254/latest/meta-data/", true);
  // A name that resolves to loopback (/etc/hosts), and a private address.
  ExpectRefused("https://localhost:" + p + "/", true);
  ExpectRefused("https://10.0.0.1/", true);

  EXPECT_THAT(receiver.requests(), IsEmpty());
}

TEST_F(WebhookSsrfTest, R12_AllowingLoopbackAllowsNothingElse) {
  ASSERT_NO_FATAL_FAILURE(Start({"--webhook_allow_loopback"}));
  HttpReceiver receiver;
  const std::string p = absl::StrCat(receiver.port());
  ExpectRefused("http://127.0.0.1:1@127.0.0.2:" + p + "/x", false);
  ExpectRefused("http://localhost:80@169.254.169.254/", false);
  ExpectRefused("http://a@localhost:" + p + "/", false);
  ExpectRefused("http://169.254.169.254/latest/meta-data/", false);
  ExpectRefused("https://169.254.169.254/latest/meta-data/", true);
  ExpectRefused("http://[::ffff:169.254.169.254]/", false);
  ExpectRefused("https://[::ffff:169.254.169.254]/", true);
  ExpectRefused("http://10.0.0.1/", false);
  ExpectRefused("https://10.0.0.1/", true);
  EXPECT_THAT(receiver.requests(), IsEmpty());

  // Loopback itself is allowed, stored as libcurl normalizes it.
  v1::WebhookEndpoint created;
  const grpc::Status status =
      Create("http://0x7f000001:" + p + "/hooks", "dev", &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(created.url(), "http://127.0.0.1:" + p + "/hooks");
  const std::vector<v1::WebhookEndpoint> endpoints = Endpoints();
  ASSERT_THAT(endpoints, SizeIs(1));
  EXPECT_EQ(endpoints[0].url(), "http://127.0.0.1:" + p + "/hooks");
}

TEST_F(WebhookSsrfTest, R12_PrivateNetworksNeedTheirFlagAndMetadataNever) {
  ASSERT_NO_FATAL_FAILURE(Start({"--webhook_allow_private_networks"}));
  ExpectRefused("https://169.254.169.254/latest/meta-data/", true);
  ExpectRefused("https://[::ffff:169.254.169.254]/", true);
  ExpectRefused("https://127.0.0.1/", true);
  ExpectRefused("https://localhost/", true);
  ExpectRefused("http://10.0.0.1/", false);  // https:// still required
  // No alert is published here, so nothing is sent to these.
  ASSERT_TRUE(Create("https://10.0.0.1/hooks", "in-house").ok());
  ASSERT_TRUE(Create("https://[fd00::1]/hooks", "in-house-v6").ok());
  EXPECT_THAT(Endpoints(), SizeIs(2));
}

TEST_F(WebhookSsrfTest, R12_ARedirectFailsTheDeliveryAndIsNotFollowed) {
  ASSERT_NO_FATAL_FAILURE(Start({"--webhook_allow_loopback"}));
  HttpReceiver to_metadata;
  HttpReceiver to_loopback;
  // Where the second redirect points: loopback is allowed here, so only
  // not following redirects keeps it from being contacted.
  HttpReceiver redirect_target;
  to_metadata.FailNext(1000, 302, "http://169.254.169.254/latest/meta-data/");
  to_loopback.FailNext(
      1000, 302,
      absl::StrCat("http://127.0.0.1:", redirect_target.port(), "/stolen"));
  v1::WebhookEndpoint metadata_hook;
  v1::WebhookEndpoint loopback_hook;
  ASSERT_TRUE(
      Create(absl::StrCat("http://127.0.0.1:", to_metadata.port(), "/hooks"),
             "metadata", &metadata_hook)
          .ok());
  ASSERT_TRUE(
      Create(absl::StrCat("http://127.0.0.1:", to_loopback.port(), "/hooks"),
             "loopback", &loopback_hook)
          .ok());
  ASSERT_NO_FATAL_FAILURE(Broadcast());

  for (const v1::WebhookEndpoint& hook : {metadata_hook, loopback_hook}) {
    const v1::WebhookDelivery delivery = AwaitSettled(hook.name());
    EXPECT_EQ(delivery.state(), v1::WebhookDelivery::STATE_DEAD) << hook.name();
    EXPECT_EQ(delivery.attempts(), kMaxAttempts) << hook.name();
    EXPECT_EQ(delivery.last_error(), "redirect not followed") << hook.name();
  }
  EXPECT_THAT(to_metadata.requests(), SizeIs(kMaxAttempts));
  EXPECT_THAT(to_loopback.requests(), SizeIs(kMaxAttempts));
  EXPECT_THAT(redirect_target.requests(), IsEmpty());
}

TEST_F(WebhookSsrfTest, R12_EveryDeliveryChecksItsTargetAgain) {
  ASSERT_NO_FATAL_FAILURE(Start({"--webhook_allow_loopback"}));
  HttpReceiver receiver;
  v1::WebhookEndpoint hook;
  ASSERT_TRUE(
      Create(absl::StrCat("http://127.0.0.1:", receiver.port(), "/hooks"),
             "dev", &hook)
          .ok());
  // The same store under the production policy: the stored loopback
  // endpoint must not be contacted any more.
  ASSERT_NO_FATAL_FAILURE(StartNotifications({}));
  ASSERT_NO_FATAL_FAILURE(Broadcast());
  const v1::WebhookDelivery delivery = AwaitSettled(hook.name());
  EXPECT_EQ(delivery.state(), v1::WebhookDelivery::STATE_DEAD);
  EXPECT_EQ(delivery.last_error(), "target address not allowed");
  EXPECT_THAT(receiver.requests(), IsEmpty());
}

TEST_F(WebhookSsrfTest, R12_DeliveryErrorsDoNotNameHostsOrPorts) {
  ASSERT_NO_FATAL_FAILURE(Start({"--webhook_allow_loopback"}));
  const int closed_port = FreePort();  // nothing listens there
  v1::WebhookEndpoint hook;
  ASSERT_TRUE(Create(absl::StrCat("http://127.0.0.1:", closed_port, "/hooks"),
                     "closed", &hook)
                  .ok());
  ASSERT_NO_FATAL_FAILURE(Broadcast());
  const v1::WebhookDelivery delivery = AwaitSettled(hook.name());
  EXPECT_EQ(delivery.state(), v1::WebhookDelivery::STATE_DEAD);
  EXPECT_EQ(delivery.last_error(), "connection failed");
  EXPECT_THAT(delivery.last_error(), Not(HasSubstr("127.0.0.1")));
  EXPECT_THAT(delivery.last_error(), Not(HasSubstr(absl::StrCat(closed_port))));
}

}  // namespace
}  // namespace custos::notifications
