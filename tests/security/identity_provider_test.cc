// Keys from the identity provider (DESIGN §3, issue 12): a real
// customer_management_service verifying tokens against a local HTTPS OpenID
// Connect provider (tests/support/https_idp.py) that serves discovery and a
// JWKS, Keycloak-shaped tokens (roles in `realm_access.roles`), keys rotated
// while calls keep coming, the provider going away, and the hostile tokens a
// key set must not let through. Plus the strict `sub` (a user id, never a
// path) checked at the edge of AccessService.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/jwks.h"
#include "custos/access/v1/access_service.grpc.pb.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/redis_server.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"
#include "tests/support/test_pki.h"
#include "tests/support/test_token.h"

namespace custos {
namespace {

namespace av1 = ::custos::access::v1;
namespace cv1 = ::custos::customers::v1;
using ::custos::testing::FreePort;
using ::custos::testing::LoopbackChannel;
using ::custos::testing::MakeTempDir;
using ::custos::testing::ReadWholeFile;
using ::custos::testing::ServiceProcess;
using ::custos::testing::TestDatabase;
using ::custos::testing::TestPki;
using ::custos::testing::WriteFile;
using ::testing::HasSubstr;

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

// A signing key of the provider: its private PEM and kid.
struct SigningKey {
  std::string alg;
  std::string kid;
  std::string private_pem;
};

absl::StatusOr<SigningKey> NewKey(const std::string& dir,
                                  const std::string& alg,
                                  const std::string& kid) {
  const std::string path = absl::StrCat(dir, "/", kid, ".key");
  const std::string command =
      alg == "ES256" ? absl::StrCat(
                           "openssl genpkey -algorithm EC -pkeyopt "
                           "ec_paramgen_curve:P-256 -out ",
                           path, " >/dev/null 2>&1")
                     : absl::StrCat(
                           "openssl genpkey -algorithm RSA -pkeyopt "
                           "rsa_keygen_bits:2048 -out ",
                           path, " >/dev/null 2>&1");
  if (std::system(command.c_str()) != 0) {
    return absl::InternalError("openssl genpkey failed");
  }
  return SigningKey{alg, kid, ReadWholeFile(path)};
}

// A Keycloak-shaped access token: staff roles under realm_access.roles.
std::string KeycloakToken(const SigningKey& key, const std::string& issuer,
                          const std::string& subject,
                          const std::vector<std::string>& roles,
                          std::string alg = "") {
  if (alg.empty()) alg = key.alg;
  const std::string header = absl::StrCat(R"({"alg":")", alg, R"(","kid":")",
                                          key.kid, R"(","typ":"JWT"})");
  std::vector<std::string> quoted;
  for (const std::string& role : roles) quoted.push_back("\"" + role + "\"");
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  const std::string payload = absl::StrCat(
      R"({"iss":")", issuer, R"(","aud":"custos","sub":")", subject,
      R"(","iat":)", now, R"(,"exp":)", now + 3600,
      R"(,"realm_access":{"roles":[)", absl::StrJoin(quoted, ","), "]}}");
  const std::string input = absl::StrCat(absl::WebSafeBase64Escape(header), ".",
                                         absl::WebSafeBase64Escape(payload));
  absl::StatusOr<std::string> signature =
      SignJws(key.alg, key.private_pem, input);
  if (!signature.ok()) return "";
  return absl::StrCat(input, ".", absl::WebSafeBase64Escape(*signature));
}

// tests/support/https_idp.py as a child process, stopped by the destructor.
class IdentityProvider {
 public:
  IdentityProvider(std::string dir, const TestPki& pki) : dir_(std::move(dir)) {
    const std::string script = absl::StrCat(std::getenv("CUSTOS_SOURCE_DIR"),
                                            "/tests/support/https_idp.py");
    const std::string port_file = dir_ + "/port";
    std::vector<std::string> args = {"python3",
                                     script,
                                     "--dir=" + dir_,
                                     "--cert=" + pki.Cert("idp"),
                                     "--key=" + pki.Key("idp"),
                                     "--port-file=" + port_file};
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (std::string& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      execvp("python3", argv.data());
      _exit(127);
    }
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (absl::Now() < give_up) {
      const std::string port = ReadWholeFile(port_file);
      if (!port.empty()) {
        port_ = std::stoi(port);
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  ~IdentityProvider() { Stop(); }

  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  // Publishes the public halves of `keys` (atomically, by rename).
  void Publish(const std::vector<SigningKey>& keys) {
    std::vector<std::string> jwks;
    for (const SigningKey& key : keys) {
      jwks.push_back(*PemToPublicJwk(key.private_pem, key.kid));
    }
    WriteFile(dir_ + "/jwks.next",
              absl::StrCat(R"({"keys":[)", absl::StrJoin(jwks, ","), "]}"));
    std::rename((dir_ + "/jwks.next").c_str(), (dir_ + "/jwks.json").c_str());
  }
  int fetches() const {
    const std::string text = ReadWholeFile(dir_ + "/fetches");
    return text.empty() ? 0 : std::stoi(text);
  }
  int port() const { return port_; }
  std::string issuer() const {
    return absl::StrCat("https://127.0.0.1:", port_);
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

class IdentityProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    pki_ = std::make_unique<TestPki>(dir_);
    ASSERT_TRUE(pki_->CreateCa().ok());
    ASSERT_TRUE(pki_->IssueLeaf("idp").ok());
    for (const auto& [alg, kid] :
         std::vector<std::pair<std::string, std::string>>{
             {"ES256", "key-1"}, {"ES256", "key-2"}, {"RS256", "key-3"}}) {
      absl::StatusOr<SigningKey> key = NewKey(dir_, alg, kid);
      ASSERT_TRUE(key.ok());
      keys_.push_back(*key);
    }
    idp_ = std::make_unique<IdentityProvider>(dir_, *pki_);
    idp_->Publish({keys_[0]});
    ASSERT_GT(idp_->port(), 0) << "identity provider did not start";
    port_ = FreePort();
  }

  // customer_management_service trusting the provider, with `extra` flags.
  void StartService(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {
        "--listen=" + Loopback(port_), "--jwt_oidc_issuer=" + idp_->issuer(),
        "--jwt_jwks_ca_file=" + pki_->Cert("ca"),
        "--jwt_roles_claim=realm_access.roles",
        // Only an unknown kid refreshes the set during a test.
        "--jwt_jwks_refresh_interval=1h",
        absl::StrCat("--database=", TestDatabase(dir_, "customers"))};
    args.insert(args.end(), extra.begin(), extra.end());
    service_ = std::make_unique<ServiceProcess>(
        "services/customer_management_service/customer_management_service",
        args);
    absl::Status started = service_->Start(Loopback(port_));
    ASSERT_TRUE(started.ok()) << started;
    stub_ = cv1::CustomerManagementService::NewStub(LoopbackChannel(port_));
  }

  // ListPartners as `token`: the status code.
  grpc::StatusCode List(const std::string& token,
                        std::string* error = nullptr) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    cv1::ListPartnersRequest request;
    cv1::ListPartnersResponse response;
    grpc::Status status = stub_->ListPartners(&context, request, &response);
    if (error != nullptr) *error = status.error_message();
    return status.error_code();
  }

  // CreatePartner as `token`: the status code.
  grpc::StatusCode Create(const std::string& token, const std::string& id) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    cv1::CreatePartnerRequest request;
    request.set_partner_id(id);
    request.mutable_partner()->set_display_name("Partner " + id);
    cv1::Partner partner;
    return stub_->CreatePartner(&context, request, &partner).error_code();
  }

  int PartnerCount(const std::string& token) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    cv1::ListPartnersRequest request;
    request.set_page_size(1000);
    cv1::ListPartnersResponse response;
    EXPECT_TRUE(stub_->ListPartners(&context, request, &response).ok());
    return response.partners_size();
  }

  std::string Admin(const SigningKey& key) {
    return KeycloakToken(key, idp_->issuer(), "root", {"platform_admin"});
  }

  std::string dir_;
  std::unique_ptr<TestPki> pki_;
  std::vector<SigningKey> keys_;
  std::unique_ptr<IdentityProvider> idp_;
  int port_ = 0;
  std::unique_ptr<ServiceProcess> service_;
  std::unique_ptr<cv1::CustomerManagementService::Stub> stub_;
};

TEST_F(IdentityProviderTest, KeycloakShapedTokensCarryTheirRealmRoles) {
  StartService({});
  // Staff roles come from realm_access.roles: an administrator may create.
  EXPECT_EQ(Create(Admin(keys_[0]), "northwind"), grpc::StatusCode::OK);
  // The same user without the role may not.
  EXPECT_EQ(
      Create(KeycloakToken(keys_[0], idp_->issuer(), "root", {}), "contoso"),
      grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(PartnerCount(Admin(keys_[0])), 1);
}

// The provider rotates twice while four callers keep calling: each new key
// is published and used at once; no valid token is ever refused, and a
// withdrawn key stops working.
TEST_F(IdentityProviderTest, KeysRotateUnderLoadWithoutRefusingValidTokens) {
  StartService({"--jwt_jwks_min_refresh_gap=0s"});
  std::atomic<int> current{0};  // index into keys_ of the signing key
  std::atomic<bool> stop{false};
  std::atomic<int> ok_calls{0};
  std::atomic<int> refused{0};
  std::vector<std::string> tokens;
  for (const SigningKey& key : keys_) tokens.push_back(Admin(key));
  std::vector<std::thread> callers;
  std::mutex errors_mu;
  std::vector<std::string> errors;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      // Bounded: at most 20,000 calls or 60 s per caller.
      const absl::Time give_up = absl::Now() + absl::Seconds(60);
      for (int i = 0; i < 20000 && !stop && absl::Now() < give_up; ++i) {
        std::string error;
        if (List(tokens[current.load()], &error) == grpc::StatusCode::OK) {
          ++ok_calls;
        } else {
          ++refused;
          std::lock_guard<std::mutex> lock(errors_mu);
          errors.push_back(error);
        }
      }
    });
  }
  auto await_calls = [&](int more) {
    const int target = ok_calls + more;
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (ok_calls < target && refused == 0 && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(5));
    }
  };
  await_calls(200);
  // Rotation 1: key-2 (ES256) published beside key-1, then signed with.
  idp_->Publish({keys_[0], keys_[1]});
  current = 1;
  await_calls(200);
  // Rotation 2: key-1 withdrawn, key-3 (RS256) added and signed with.
  idp_->Publish({keys_[1], keys_[2]});
  current = 2;
  await_calls(200);
  stop = true;
  for (std::thread& caller : callers) caller.join();
  EXPECT_EQ(refused, 0) << (errors.empty() ? "" : errors[0]);
  EXPECT_GE(ok_calls, 600);
  // key-1 was withdrawn: its tokens no longer pass, even ones verified
  // (and cached) before.
  std::string error;
  EXPECT_EQ(List(tokens[0], &error), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(error, HasSubstr("unknown key id"));
}

TEST_F(IdentityProviderTest, TheLastGoodKeysServeWhileTheProviderIsDown) {
  StartService({"--jwt_jwks_min_refresh_gap=0s"});
  ASSERT_EQ(List(Admin(keys_[0])), grpc::StatusCode::OK);
  idp_->Stop();
  // An unknown kid asks the (gone) provider and is refused ...
  EXPECT_EQ(List(Admin(keys_[1])), grpc::StatusCode::UNAUTHENTICATED);
  // ... while the keys already known keep working.
  EXPECT_EQ(List(Admin(keys_[0])), grpc::StatusCode::OK);
  EXPECT_EQ(Create(Admin(keys_[0]), "northwind"), grpc::StatusCode::OK);
  EXPECT_TRUE(service_->running());
}

TEST_F(IdentityProviderTest, MadeUpKeyIdsCannotHammerTheProvider) {
  StartService({"--jwt_jwks_min_refresh_gap=1h"});
  ASSERT_EQ(List(Admin(keys_[0])), grpc::StatusCode::OK);
  const int fetches = idp_->fetches();
  // 200 tokens naming kids the set does not hold: each refused at once,
  // and the provider is asked at most once (the rate limit).
  for (int i = 0; i < 200; ++i) {
    SigningKey made_up = keys_[1];
    made_up.kid = absl::StrCat("made-up-", i);
    std::string error;
    EXPECT_EQ(List(Admin(made_up), &error), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_LE(idp_->fetches(), fetches + 1);
}

TEST_F(IdentityProviderTest, HostileTokensAreRefusedAndWriteNothing) {
  StartService({});
  const std::string issuer = idp_->issuer();
  std::vector<std::pair<std::string, std::string>> hostile = {
      // A key the provider never published, under a published kid.
      {"foreign key, known kid",
       [&] {
         SigningKey forged = keys_[1];
         forged.kid = keys_[0].kid;
         return Admin(forged);
       }()},
      // The algorithm named by the token does not fit the key's.
      {"alg mismatch",
       KeycloakToken(keys_[0], issuer, "root", {"platform_admin"}, "RS256")},
      // HS256 is not enabled when keys come from a provider.
      {"hs256", ::custos::testing::TestToken("0123456789abcdef0123456789abcdef",
                                             "root", {"platform_admin"})},
      {"wrong issuer", KeycloakToken(keys_[0], "https://evil.example", "root",
                                     {"platform_admin"})},
      {"alg none",
       absl::StrCat(
           absl::WebSafeBase64Escape(R"({"alg":"none","kid":"key-1"})"), ".",
           absl::WebSafeBase64Escape(absl::StrCat(
               R"({"iss":")", issuer, R"(","aud":"custos","sub":"root","exp":)",
               absl::ToUnixSeconds(absl::Now()) + 600,
               R"(,"realm_access":{"roles":["platform_admin"]}})")),
           ".")},
      // A subject that would name someone else as users/{sub}.
      {"sub with slash",
       KeycloakToken(keys_[0], issuer, "x/../root", {"platform_admin"})},
  };
  for (const auto& [what, token] : hostile) {
    EXPECT_EQ(Create(token, "evil"), grpc::StatusCode::UNAUTHENTICATED) << what;
  }
  EXPECT_EQ(PartnerCount(Admin(keys_[0])), 0);
}

// R5/R6: a token `sub` outside the user-id syntax could, as `users/{sub}`,
// land a role on someone else or pass the self-approval check; it is
// UNAUTHENTICATED and nothing is written.
TEST(SubjectTest, SubjectsOutsideTheUserIdSyntaxAreUnauthenticated) {
  constexpr char kSecret[] = "subject-integration-secret-0123456789ab";
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/secret", kSecret);
  auto redis = std::make_unique<::custos::testing::RedisServer>(FreePort());
  ASSERT_TRUE(redis->Start());
  const int port = FreePort();
  ServiceProcess access(
      "services/access_service/access_service",
      {"--listen=" + Loopback(port),
       absl::StrCat("--jwt_hs256_secret_file=", dir, "/secret"),
       absl::StrCat("--database=", TestDatabase(dir, "access")),
       absl::StrCat("--redis=127.0.0.1:", redis->port()),
       "--customers_address=" + Loopback(FreePort()),
       absl::StrCat("--policy_file=", std::getenv("CUSTOS_SOURCE_DIR"),
                    "/deploy/base/policy/default_policy.textproto")});
  ASSERT_TRUE(access.Start(Loopback(port)).ok());
  auto stub = av1::AccessService::NewStub(LoopbackChannel(port));
  auto as = [&](const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + token);
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(10));
    return context;
  };
  const std::string care =
      ::custos::testing::TestToken(kSecret, "carla", {"customer_care"});
  av1::CreateSiteRequest site;
  site.set_site_id("acme-sid");
  site.mutable_site()->set_display_name("Acme");
  av1::Site created;
  ASSERT_TRUE(stub->CreateSite(as(care).get(), site, &created).ok());
  for (const std::string& subject : std::vector<std::string>{
           "x/../vic", "vic/", "/vic", "users/vic", "..", "Vic", "vic ",
           "vic\n", "-vic", std::string(64, 'v'), "vic%2f"}) {
    av1::CreateAccessRequestRequest request;
    request.set_parent("sites/acme-sid");
    request.mutable_access_request()->set_requested_role(
        av1::SITE_ROLE_SITE_ADMINISTRATOR);
    request.mutable_access_request()->set_justification("let me in");
    av1::AccessRequest made;
    grpc::Status status = stub->CreateAccessRequest(
        as(::custos::testing::TestToken(kSecret, subject)).get(), request,
        &made);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << subject;
    EXPECT_THAT(status.error_message(), HasSubstr("not a valid user id"));
  }
  av1::ListAccessRequestsRequest list;
  list.set_parent("sites/acme-sid");
  av1::ListAccessRequestsResponse requests;
  ASSERT_TRUE(stub->ListAccessRequests(as(care).get(), list, &requests).ok());
  EXPECT_EQ(requests.access_requests_size(), 0);
}

}  // namespace
}  // namespace custos
