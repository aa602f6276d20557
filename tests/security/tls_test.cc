// TLS and mTLS on every hop (DESIGN §3, issue 12): the three real services
// and redis-server on loopback, each listener requiring client certificates
// from the test CA, each service calling its peers with its own certificate.
// Every pair of services is exercised while the whole stack serves; then the
// ways a caller without the right certificate is refused, the plaintext
// health listener for probes, and a certificate rotated without a restart.
#include <curl/curl.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "custos/access/v1/access_service.grpc.pb.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "custos/notifications/v1/notifications_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/support/http_receiver.h"
#include "tests/support/redis_server.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"
#include "tests/support/test_pki.h"
#include "tests/support/test_token.h"

namespace custos {
namespace {

namespace av1 = ::custos::access::v1;
namespace cv1 = ::custos::customers::v1;
namespace nv1 = ::custos::notifications::v1;
using ::custos::testing::FreePort;
using ::custos::testing::HttpGet;
using ::custos::testing::MakeTempDir;
using ::custos::testing::ReadWholeFile;
using ::custos::testing::RedisServer;
using ::custos::testing::ServiceProcess;
using ::custos::testing::TestDatabase;
using ::custos::testing::TestPki;
using ::testing::HasSubstr;

constexpr char kSecret[] = "tls-integration-secret-0123456789abcdef";

std::string Token(const std::string& subject,
                  std::vector<std::string> roles = {}) {
  return ::custos::testing::TestToken(kSecret, subject, std::move(roles));
}

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

// One service of the stack: its gRPC port (TLS), its plaintext health port
// and its metrics port.
struct Node {
  int port = 0;
  int health_port = 0;
  int metrics_port = 0;
  std::unique_ptr<ServiceProcess> process;
};

class TlsStackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    pki_ = std::make_unique<TestPki>(dir_);
    ASSERT_TRUE(pki_->CreateCa().ok());
    ASSERT_TRUE(pki_->CreateCa("rogue-ca").ok());
    for (const char* leaf :
         {"customers", "access", "notifications", "client"}) {
      ASSERT_TRUE(pki_->IssueLeaf(leaf).ok()) << leaf;
    }
    ASSERT_TRUE(pki_->IssueLeaf("rogue", "rogue-ca").ok());
    ::custos::testing::WriteFile(dir_ + "/secret", kSecret);
    ::custos::testing::WriteFile(dir_ + "/service-token",
                                 Token("custos-peer", {"service"}));
    redis_ = std::make_unique<RedisServer>(FreePort());
    ASSERT_TRUE(redis_->Start());
    for (Node* node : {&customers_, &access_, &notifications_}) {
      node->port = FreePort();
      node->health_port = FreePort();
      node->metrics_port = FreePort();
    }
    Launch(&customers_, "customers",
           "services/customer_management_service/customer_management_service",
           {absl::StrCat("--database=", TestDatabase(dir_, "customers")),
            "--access_address=" + Loopback(access_.port),
            "--notifications_address=" + Loopback(notifications_.port)});
    Launch(&access_, "access", "services/access_service/access_service",
           {absl::StrCat("--database=", TestDatabase(dir_, "access")),
            absl::StrCat("--redis=127.0.0.1:", redis_->port()),
            "--customers_address=" + Loopback(customers_.port),
            "--notifications_address=" + Loopback(notifications_.port),
            absl::StrCat("--policy_file=", std::getenv("CUSTOS_SOURCE_DIR"),
                         "/deploy/base/policy/default_policy.textproto")});
    Launch(&notifications_, "notifications",
           "services/notification_service/notification_service",
           {absl::StrCat("--database=", TestDatabase(dir_, "notifications")),
            "--customers_address=" + Loopback(customers_.port)});
    customers_stub_ = cv1::CustomerManagementService::NewStub(
        Channel(customers_.port, Client("client")));
    access_stub_ =
        av1::AccessService::NewStub(Channel(access_.port, Client("client")));
    notifications_stub_ = nv1::NotificationService::NewStub(
        Channel(notifications_.port, Client("client")));
  }

  // Starts `binary` serving mTLS with certificate `leaf`, calling its peers
  // with the same certificate.
  void Launch(Node* node, const std::string& leaf, const std::string& binary,
              std::vector<std::string> args) {
    const std::vector<std::string> tls = {
        "--listen=" + Loopback(node->port),
        "--health_listen=" + Loopback(node->health_port),
        "--metrics_listen=" + Loopback(node->metrics_port),
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--service_token_file=", dir_, "/service-token"),
        "--tls_cert_file=" + pki_->Cert(leaf),
        "--tls_key_file=" + pki_->Key(leaf),
        "--tls_client_ca_file=" + pki_->Cert("ca"),
        "--peer_tls_ca_file=" + pki_->Cert("ca"),
        "--peer_tls_cert_file=" + pki_->Cert(leaf),
        "--peer_tls_key_file=" + pki_->Key(leaf),
        "--tls_reload_interval=1s",
        "--metrics_tls"};
    args.insert(args.end(), tls.begin(), tls.end());
    node->process = std::make_unique<ServiceProcess>(binary, args);
    // Readiness is asked on the plaintext health listener, as a Kubernetes
    // gRPC probe does.
    absl::Status started = node->process->Start(Loopback(node->health_port));
    ASSERT_TRUE(started.ok()) << started << node->process->ReadLog();
  }

  // TLS client credentials trusting the test CA, presenting `leaf` ("" for
  // no client certificate).
  std::shared_ptr<grpc::ChannelCredentials> Client(
      const std::string& leaf, const std::string& ca = "ca") {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadWholeFile(pki_->Cert(ca));
    if (!leaf.empty()) {
      ssl.pem_cert_chain = ReadWholeFile(pki_->Cert(leaf));
      ssl.pem_private_key = ReadWholeFile(pki_->Key(leaf));
    }
    return grpc::SslCredentials(ssl);
  }

  // A fresh connection each time (no subchannel sharing), so a handshake
  // really happens with these credentials.
  std::shared_ptr<grpc::Channel> Channel(
      int port, std::shared_ptr<grpc::ChannelCredentials> credentials) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(Loopback(port), std::move(credentials),
                                     args);
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + token);
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(10));
    return context;
  }

  // Health of `port` over `credentials`: the status code of a Check.
  grpc::StatusCode HealthCode(
      int port, std::shared_ptr<grpc::ChannelCredentials> credentials) {
    auto stub = grpc::health::v1::Health::NewStub(
        Channel(port, std::move(credentials)));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    return stub->Check(&context, request, &response).error_code();
  }

  // Northwind (partner admin Bill) manages Acme (customer user Joan); Acme's
  // site has Bill as its administrator.
  void SeedAcme() {
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
    ASSERT_TRUE(customers_stub_
                    ->CreatePartnerUser(As(admin_).get(), bill, &partner_user)
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
    av1::CreateSiteRequest site;
    site.set_site_id("acme-sid");
    site.mutable_site()->set_display_name("Acme HQ");
    site.mutable_site()->set_customer("customers/acme");
    av1::Site created;
    grpc::Status status =
        access_stub_->CreateSite(As(care_).get(), site, &created);
    ASSERT_TRUE(status.ok()) << status.error_message();
    av1::AccessRequest request =
        Request("bill", av1::SITE_ROLE_SITE_ADMINISTRATOR);
    av1::ApproveAccessRequestRequest approve;
    approve.set_name(request.name());
    av1::AccessRequest decided;
    status =
        access_stub_->ApproveAccessRequest(As(care_).get(), approve, &decided);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  av1::AccessRequest Request(const std::string& user, av1::SiteRole role) {
    av1::CreateAccessRequestRequest request;
    request.set_parent("sites/acme-sid");
    request.mutable_access_request()->set_requested_role(role);
    request.mutable_access_request()->set_justification("I work there");
    av1::AccessRequest created;
    grpc::Status status = access_stub_->CreateAccessRequest(
        As(Token(user)).get(), request, &created);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return created;
  }

  // Waits (at most 15 s) for a notification in `user`'s inbox whose title
  // contains `title`.
  bool AwaitNotice(const std::string& user, const std::string& title) {
    const absl::Time give_up = absl::Now() + absl::Seconds(15);
    while (absl::Now() < give_up) {
      nv1::ListNotificationsRequest request;
      request.set_parent("users/" + user);
      request.set_page_size(100);
      nv1::ListNotificationsResponse response;
      if (notifications_stub_
              ->ListNotifications(As(Token(user)).get(), request, &response)
              .ok()) {
        for (const nv1::Notification& n : response.notifications()) {
          if (absl::StrContains(n.title(), title)) return true;
        }
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  // GET https://127.0.0.1:port/metrics trusting the test CA; the body, or
  // "" when the request failed.
  std::string HttpsMetrics(int port) {
    std::string body;
    CURL* curl = curl_easy_init();
    const std::string url =
        absl::StrCat("https://127.0.0.1:", port, "/metrics");
    const std::string ca = pki_->Cert("ca");
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_CAINFO, ca.c_str());
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION,
        +[](char* data, size_t size, size_t count, void* out) -> size_t {
          static_cast<std::string*>(out)->append(data, size * count);
          return size * count;
        });
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    const CURLcode result = curl_easy_perform(curl);
    curl_easy_cleanup(curl);
    return result == CURLE_OK ? body : "";
  }

  // Waits (at most 15 s) until `node`'s metrics (over HTTPS) contain
  // `sample`.
  bool AwaitMetric(const Node& node, const std::string& sample) {
    const absl::Time give_up = absl::Now() + absl::Seconds(15);
    while (absl::Now() < give_up) {
      if (absl::StrContains(HttpsMetrics(node.metrics_port), sample)) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  std::string dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<RedisServer> redis_;
  Node customers_;
  Node access_;
  Node notifications_;
  std::unique_ptr<cv1::CustomerManagementService::Stub> customers_stub_;
  std::unique_ptr<av1::AccessService::Stub> access_stub_;
  std::unique_ptr<nv1::NotificationService::Stub> notifications_stub_;
  const std::string admin_ = Token("root", {"platform_admin"});
  const std::string care_ = Token("carla", {"customer_care"});
};

TEST_F(TlsStackTest, EveryPairOfServicesTalksOverMutualTls) {
  SeedAcme();

  // customers → access: the site link is read from AccessService.
  cv1::GetCustomerRequest get;
  get.set_name("customers/acme");
  cv1::Customer acme;
  ASSERT_TRUE(customers_stub_->GetCustomer(As(admin_).get(), get, &acme).ok());
  EXPECT_FALSE(acme.sites_unavailable());
  EXPECT_THAT(acme.sites(), ::testing::ElementsAre("sites/acme-sid"));
  // customers → access: the outbox announces customer changes.
  EXPECT_TRUE(AwaitMetric(customers_,
                          "custos_outbox_depth{destination="
                          "\"access\"} 0\n"));
  EXPECT_THAT(HttpsMetrics(customers_.metrics_port),
              ::testing::Not(HasSubstr("custos_outbox_deliveries_total{"
                                       "destination=\"access\",result="
                                       "\"ok\"} 0\n")));

  // access → customers: a customer check reads the customer's facts.
  av1::CheckPermissionRequest check;
  check.set_resource("customers/acme");
  check.set_permission("portal.login");
  av1::CheckPermissionResponse allowed;
  grpc::Status status =
      access_stub_->CheckPermission(As(Token("joan")).get(), check, &allowed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(allowed.allowed());

  // access → notifications: R8, a join request reaches the administrator.
  Request("gina", av1::SITE_ROLE_SITE_MEMBER);
  EXPECT_TRUE(AwaitNotice("bill", "Access request for sites/acme-sid"));

  // customers → notifications: R2, a settings change is announced.
  ASSERT_TRUE(customers_stub_->GetCustomer(As(admin_).get(), get, &acme).ok());
  cv1::SetManagementSettingsRequest change;
  change.set_customer("customers/acme");
  change.mutable_settings()->set_management_type(cv1::MANAGEMENT_TYPE_PARTNER);
  change.mutable_settings()->set_communications(cv1::COMMUNICATIONS_SHARED);
  change.set_etag(acme.etag());
  status = customers_stub_->SetManagementSettings(As(Token("bill")).get(),
                                                  change, &acme);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(AwaitNotice("joan", "Management settings of Acme changed"));

  // notifications → customers: R10, an alert is routed by the customer.
  nv1::PublishAlertRequest alert;
  alert.set_customer("customers/acme");
  alert.set_category(nv1::CATEGORY_SECURITY);
  alert.set_severity(nv1::SEVERITY_CRITICAL);
  alert.set_title("Certificate test alert");
  alert.set_body("sent over mTLS");
  nv1::Alert published;
  status = notifications_stub_->PublishAlert(
      As(Token("alerting", {"service"})).get(), alert, &published);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_GE(published.recipient_count(), 2);
  EXPECT_TRUE(AwaitNotice("joan", "Certificate test alert"));
}

TEST_F(TlsStackTest, CallersWithoutTheRightCertificateAreRefused) {
  for (const Node* node : {&customers_, &access_, &notifications_}) {
    // The right certificate is served.
    EXPECT_EQ(HealthCode(node->port, Client("client")), grpc::StatusCode::OK);
    // Plaintext to a TLS listener.
    EXPECT_EQ(HealthCode(node->port, grpc::InsecureChannelCredentials()),
              grpc::StatusCode::UNAVAILABLE);
    // TLS without a client certificate to an mTLS listener.
    EXPECT_EQ(HealthCode(node->port, Client("")),
              grpc::StatusCode::UNAVAILABLE);
    // A client certificate from a CA the service does not trust.
    EXPECT_EQ(HealthCode(node->port, Client("rogue")),
              grpc::StatusCode::UNAVAILABLE);
    // A server the client cannot verify: trusting only the rogue CA.
    EXPECT_EQ(HealthCode(node->port, Client("client", "rogue-ca")),
              grpc::StatusCode::UNAVAILABLE);
  }
  // The refused handshakes are logged as JSON like everything else.
  for (const Node* node : {&customers_, &access_, &notifications_}) {
    for (absl::string_view line :
         absl::StrSplit(node->process->ReadLog(), '\n', absl::SkipEmpty())) {
      google::protobuf::Struct parsed;
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(std::string(line),
                                                              &parsed)
                      .ok())
          << line;
    }
  }
  // Nothing got in: a refused caller wrote nothing.
  cv1::ListPartnersRequest list;
  cv1::ListPartnersResponse partners;
  ASSERT_TRUE(
      customers_stub_->ListPartners(As(admin_).get(), list, &partners).ok());
  EXPECT_EQ(partners.partners_size(), 0);
}

// Metrics carry tenant-shaped names and counts: with --metrics_tls they are
// served over HTTPS only.
TEST_F(TlsStackTest, MetricsAreServedOverTlsOnly) {
  for (const Node* node : {&customers_, &access_, &notifications_}) {
    EXPECT_THAT(HttpsMetrics(node->metrics_port),
                HasSubstr("custos_database_backend"));
    EXPECT_THAT(HttpGet(node->metrics_port, "/metrics"),
                ::testing::Not(HasSubstr("custos_database_backend")));
  }
}

TEST_F(TlsStackTest, ProbesUseAPlaintextListenerThatServesOnlyHealth) {
  for (const Node* node : {&customers_, &access_, &notifications_}) {
    EXPECT_EQ(HealthCode(node->health_port, grpc::InsecureChannelCredentials()),
              grpc::StatusCode::OK);
  }
  // The health listener carries no service: no way around mTLS through it.
  auto stub = cv1::CustomerManagementService::NewStub(
      Channel(customers_.health_port, grpc::InsecureChannelCredentials()));
  cv1::CreatePartnerRequest partner;
  partner.set_partner_id("sneaky");
  partner.mutable_partner()->set_display_name("Sneaky");
  cv1::Partner p;
  EXPECT_EQ(stub->CreatePartner(As(admin_).get(), partner, &p).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  cv1::ListPartnersRequest list;
  cv1::ListPartnersResponse partners;
  ASSERT_TRUE(
      customers_stub_->ListPartners(As(admin_).get(), list, &partners).ok());
  EXPECT_EQ(partners.partners_size(), 0);
}

TEST_F(TlsStackTest, ARotatedCertificateIsServedWithoutARestart) {
  const std::string before = ReadWholeFile(pki_->Cert("access"));
  ASSERT_TRUE(pki_->IssueLeaf("access").ok());
  const std::string after = ReadWholeFile(pki_->Cert("access"));
  ASSERT_NE(before, after);
  // Each probe opens a new connection and reads the certificate the
  // handshake presented; within the reload interval the new one appears,
  // and every call on the way succeeds.
  std::string served;
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (served != after && absl::Now() < give_up) {
    auto stub = grpc::health::v1::Health::NewStub(
        Channel(access_.port, Client("client")));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(stub->Check(&context, request, &response).ok());
    auto pems = context.auth_context()->FindPropertyValues("x509_pem_cert");
    ASSERT_EQ(pems.size(), 1u);
    served = std::string(pems[0].data(), pems[0].size());
    if (served != after) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(served, after);
  EXPECT_TRUE(access_.process->running());
}

// A service given unusable TLS files refuses to start, naming the flag,
// instead of failing every handshake later.
TEST(TlsConfigTest, UnusableFilesStopTheServiceAtStart) {
  const std::string dir = MakeTempDir();
  ::custos::testing::WriteFile(dir + "/secret", kSecret);
  ::custos::testing::WriteFile(dir + "/not-pem", "hello");
  const int port = FreePort();
  for (const std::vector<std::string>& bad :
       std::vector<std::vector<std::string>>{
           {"--peer_tls_ca_file=" + dir + "/missing.pem"},
           {"--peer_tls_ca_file=" + dir + "/not-pem"},
           {"--tls_cert_file=" + dir + "/not-pem",
            "--tls_key_file=" + dir + "/not-pem"},
           {"--tls_client_ca_file=" + dir + "/not-pem"},
           // Metrics over TLS without a certificate would be plain HTTP.
           {"--metrics_tls",
            "--metrics_listen=" + Loopback(::custos::testing::FreePort())}}) {
    std::vector<std::string> args = {
        "--listen=" + Loopback(port),
        absl::StrCat("--jwt_hs256_secret_file=", dir, "/secret"),
        absl::StrCat("--database=", TestDatabase(dir, "customers"))};
    args.insert(args.end(), bad.begin(), bad.end());
    ServiceProcess process(
        "services/customer_management_service/customer_management_service",
        args);
    const absl::Status started = process.Start(Loopback(port));
    EXPECT_THAT(std::string(started.message()), HasSubstr("exited at start"))
        << bad[0];
    const std::string flag = bad[0].substr(2, bad[0].find('=') - 2);
    EXPECT_THAT(process.ReadLog(), HasSubstr(flag)) << process.ReadLog();
  }
}

}  // namespace
}  // namespace custos
