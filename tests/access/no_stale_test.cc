// DESIGN "No stale answer, ever": the real access_service and
// customer_management_service with a real redis-server, on loopback, driven
// through the faults that used to yield stale answers — a peer down, a
// process killed right after acknowledging, Redis restored or edited, the
// access store restored from a backup, a customer deleted and re-created.
// Every answer is compared with what the facts say (R1, R5-R7).
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "custos/access/v1/access_service.grpc.pb.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/support/redis_server.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"
#include "tests/support/test_token.h"

namespace custos::access {
namespace {

namespace v1 = ::custos::access::v1;
namespace cv1 = ::custos::customers::v1;
using ::custos::testing::FreePort;
using ::custos::testing::LoopbackChannel;
using ::custos::testing::MakeTempDir;
using ::custos::testing::RedisServer;
using ::custos::testing::ServiceProcess;
using ::custos::testing::TestDatabase;

constexpr char kSecret[] = "no-stale-integration-secret-0123456789";
constexpr char kAccessBinary[] = "services/access_service/access_service";
constexpr char kCustomersBinary[] =
    "services/customer_management_service/customer_management_service";
// The documented bound for a check without a token (--customer_feed_max_lag
// and --version_sync_interval default to 1 s); the margin covers one call.
constexpr absl::Duration kBound = absl::Seconds(1);
constexpr absl::Duration kCallMargin = absl::Milliseconds(250);

std::string Token(const std::string& subject,
                  std::vector<std::string> roles = {}) {
  return ::custos::testing::TestToken(kSecret, subject, std::move(roles));
}

// A raw Redis connection, for what an operator or a bug does to Redis.
class RawRedis {
 public:
  explicit RawRedis(int port) : context_(redisConnect("127.0.0.1", port)) {}
  ~RawRedis() {
    if (context_ != nullptr) redisFree(context_);
  }
  // Every key starting with `prefix`, with its value.
  std::vector<std::pair<std::string, std::string>> Dump(
      const std::string& prefix) {
    std::vector<std::pair<std::string, std::string>> out;
    auto* keys = static_cast<redisReply*>(
        redisCommand(context_, "KEYS %b*", prefix.data(), prefix.size()));
    if (keys == nullptr) return out;
    for (size_t i = 0; i < keys->elements; ++i) {
      std::string key(keys->element[i]->str, keys->element[i]->len);
      auto* value = static_cast<redisReply*>(
          redisCommand(context_, "GET %b", key.data(), key.size()));
      if (value != nullptr && value->type == REDIS_REPLY_STRING) {
        out.emplace_back(key, std::string(value->str, value->len));
      }
      if (value != nullptr) freeReplyObject(value);
    }
    freeReplyObject(keys);
    return out;
  }
  void Set(const std::string& key, const std::string& value) {
    auto* reply = static_cast<redisReply*>(
        redisCommand(context_, "SET %b %b", key.data(), key.size(),
                     value.data(), value.size()));
    if (reply != nullptr) freeReplyObject(reply);
  }

 private:
  redisContext* context_;
};

class NoStaleTest : public ::testing::Test {
 public:
  void SetUp() override {
    dir_ = MakeTempDir();
    ::custos::testing::WriteFile(dir_ + "/secret", kSecret);
    ::custos::testing::WriteFile(dir_ + "/service-token",
                                 Token("access-service", {"service"}));
    redis_ = std::make_unique<RedisServer>(FreePort());
    ASSERT_TRUE(redis_->Start());
    customers_port_ = FreePort();
    access_port_ = FreePort();
    StartCustomers(absl::StrCat("127.0.0.1:", access_port_));
    StartAccess();
    admin_ = Token("root", {"platform_admin"});
    care_ = Token("carla", {"customer_care"});
    service_ = Token("portal-backend", {"service"});
  }

  // `access_address` is where its outbox delivers; a dead port leaves only
  // the change feed to tell AccessService.
  void StartCustomers(const std::string& access_address) {
    customers_ = std::make_unique<ServiceProcess>(
        kCustomersBinary,
        std::vector<std::string>{
            absl::StrCat("--listen=127.0.0.1:", customers_port_),
            absl::StrCat("--database=", TestDatabase(dir_, "customers")),
            absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
            absl::StrCat("--access_address=", access_address),
            absl::StrCat("--service_token_file=", dir_, "/service-token")});
    ASSERT_TRUE(
        customers_->Start(absl::StrCat("127.0.0.1:", customers_port_)).ok());
    customers_stub_ = cv1::CustomerManagementService::NewStub(
        LoopbackChannel(customers_port_));
  }

  void StartAccess(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args{
        absl::StrCat("--listen=127.0.0.1:", access_port_),
        absl::StrCat("--database=", TestDatabase(dir_, "access")),
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--redis=127.0.0.1:", redis_->port()),
        absl::StrCat("--customers_address=127.0.0.1:", customers_port_),
        absl::StrCat("--service_token_file=", dir_, "/service-token"),
        absl::StrCat("--policy_file=", std::getenv("CUSTOS_SOURCE_DIR"),
                     "/deploy/base/policy/default_policy.textproto"),
        // Peer calls wait for a connection within their deadline; while
        // the schedule keeps customer_management_service down, each
        // customer check costs that deadline (500 ms by default).
        "--peer_timeout_ms=250"};
    args.insert(args.end(), extra.begin(), extra.end());
    access_ = std::make_unique<ServiceProcess>(kAccessBinary, args);
    ASSERT_TRUE(access_->Start(absl::StrCat("127.0.0.1:", access_port_)).ok());
    stub_ = v1::AccessService::NewStub(LoopbackChannel(access_port_));
  }

  void StopAccess() {
    access_->Signal(SIGTERM);
    ASSERT_EQ(access_->WaitForExit(absl::Seconds(20)), 0);
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + token);
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(10));
    return context;
  }

  // The answer for `user`, asked by a backend; `token` in
  // Consistency.at_least_as_fresh when given. Not OK when it could not be
  // answered (a peer down is UNAVAILABLE, never a guess).
  grpc::Status Check(const std::string& user, const std::string& resource,
                     const std::string& permission, bool* allowed,
                     const std::string& token = "",
                     v1::AccessService::StubInterface* stub = nullptr) {
    v1::CheckPermissionRequest request;
    request.set_principal("users/" + user);
    request.set_resource(resource);
    request.set_permission(permission);
    if (!token.empty()) {
      request.mutable_consistency()->set_at_least_as_fresh(token);
    }
    v1::CheckPermissionResponse response;
    grpc::Status status =
        (stub != nullptr ? stub : stub_.get())
            ->CheckPermission(As(service_).get(), request, &response);
    *allowed = response.allowed();
    return status;
  }
  bool Allowed(const std::string& user, const std::string& resource,
               const std::string& permission, const std::string& token = "") {
    bool allowed = false;
    grpc::Status status = Check(user, resource, permission, &allowed, token);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return allowed;
  }

  void CreatePartnerWithAdmin(const std::string& partner,
                              const std::string& admin) {
    cv1::CreatePartnerRequest create;
    create.set_partner_id(partner);
    create.mutable_partner()->set_display_name(partner);
    cv1::Partner created;
    ASSERT_TRUE(
        customers_stub_->CreatePartner(As(admin_).get(), create, &created)
            .ok());
    cv1::CreatePartnerUserRequest user;
    user.set_parent("partners/" + partner);
    user.set_user_id(admin);
    user.mutable_partner_user()->set_role(cv1::PARTNER_ROLE_PARTNER_ADMIN);
    cv1::PartnerUser partner_user;
    ASSERT_TRUE(customers_stub_
                    ->CreatePartnerUser(As(admin_).get(), user, &partner_user)
                    .ok());
  }

  // A customer of `partner` with one customer user per entry of `users`.
  cv1::Customer CreateCustomer(const std::string& id,
                               const std::string& partner,
                               cv1::ManagementType type,
                               const std::vector<std::string>& users) {
    cv1::CreateCustomerRequest create;
    create.set_customer_id(id);
    create.mutable_customer()->set_display_name(id);
    create.mutable_customer()->set_partner("partners/" + partner);
    create.mutable_customer()->set_management_type(type);
    create.mutable_customer()->set_communications(cv1::COMMUNICATIONS_SHARED);
    cv1::Customer customer;
    grpc::Status status =
        customers_stub_->CreateCustomer(As(admin_).get(), create, &customer);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_FALSE(customer.consistency_token().empty());
    for (const std::string& user : users) {
      cv1::CreateCustomerUserRequest add;
      add.set_parent("customers/" + id);
      add.set_user_id(user);
      cv1::CustomerUser created;
      status =
          customers_stub_->CreateCustomerUser(As(admin_).get(), add, &created);
      EXPECT_TRUE(status.ok()) << status.error_message();
      EXPECT_FALSE(created.consistency_token().empty());
    }
    cv1::GetCustomerRequest get;
    get.set_name("customers/" + id);
    EXPECT_TRUE(
        customers_stub_->GetCustomer(As(admin_).get(), get, &customer).ok());
    return customer;
  }

  // R1's switch, by the partner admin; returns the write's token.
  std::string SetManagement(const std::string& partner_admin,
                            const std::string& customer,
                            cv1::ManagementType type) {
    cv1::GetCustomerRequest get;
    get.set_name("customers/" + customer);
    cv1::Customer current;
    EXPECT_TRUE(
        customers_stub_->GetCustomer(As(admin_).get(), get, &current).ok());
    cv1::SetManagementSettingsRequest set;
    set.set_customer("customers/" + customer);
    set.mutable_settings()->set_management_type(type);
    set.mutable_settings()->set_communications(cv1::COMMUNICATIONS_SHARED);
    set.set_etag(current.etag());
    cv1::Customer updated;
    grpc::Status status = customers_stub_->SetManagementSettings(
        As(Token(partner_admin)).get(), set, &updated);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_FALSE(updated.consistency_token().empty());
    return updated.consistency_token();
  }

  void CreateSite(const std::string& id) {
    v1::CreateSiteRequest request;
    request.set_site_id(id);
    request.mutable_site()->set_display_name("Site " + id);
    v1::Site site;
    ASSERT_TRUE(stub_->CreateSite(As(care_).get(), request, &site).ok());
  }

  // Makes `user` a member with `role` as the product does (a request
  // approved by Customer Care) and returns the approval's token.
  std::string Join(const std::string& user, const std::string& site,
                   v1::SiteRole role) {
    v1::CreateAccessRequestRequest request;
    request.set_parent("sites/" + site);
    request.mutable_access_request()->set_requested_role(role);
    request.mutable_access_request()->set_justification("I work there");
    v1::AccessRequest created;
    grpc::Status status =
        stub_->CreateAccessRequest(As(Token(user)).get(), request, &created);
    EXPECT_TRUE(status.ok()) << status.error_message();
    v1::ApproveAccessRequestRequest approve;
    approve.set_name(created.name());
    v1::AccessRequest decided;
    status = stub_->ApproveAccessRequest(As(care_).get(), approve, &decided);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return decided.consistency_token();
  }

  std::string SetRole(const std::string& site, const std::string& user,
                      v1::SiteRole role) {
    v1::UpdateSiteMemberRequest request;
    request.mutable_site_member()->set_name(
        absl::StrCat("sites/", site, "/members/", user));
    request.mutable_site_member()->set_role(role);
    request.mutable_update_mask()->add_paths("role");
    v1::SiteMember updated;
    grpc::Status status =
        stub_->UpdateSiteMember(As(care_).get(), request, &updated);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return updated.consistency_token();
  }

  std::string dir_;
  int customers_port_ = 0;
  int access_port_ = 0;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<ServiceProcess> customers_;
  std::unique_ptr<ServiceProcess> access_;
  std::unique_ptr<v1::AccessService::Stub> stub_;
  std::unique_ptr<cv1::CustomerManagementService::Stub> customers_stub_;
  std::string admin_, care_, service_;
};

// Asks until `deadline` and returns the last time `user` was still allowed
// (absl::InfinitePast() when never); an answer that could not be given
// (UNAVAILABLE) is not stale.
absl::Time LastStaleAnswer(NoStaleTest* test, const std::string& user,
                           const std::string& resource,
                           const std::string& permission, absl::Time deadline) {
  absl::Time last = absl::InfinitePast();
  while (absl::Now() < deadline) {
    bool allowed = false;
    const absl::Time asked = absl::Now();
    grpc::Status status = test->Check(user, resource, permission, &allowed);
    if (status.ok() && allowed) last = asked;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return last;
}

class AccessOutageTest : public NoStaleTest,
                         public ::testing::WithParamInterface<int> {};

// The drill: a CUSTOMER-managed customer's users log in (cached);
// access_service stops; the partner switches it to PARTNER; access_service
// starts again on the same store and Redis. With the write's token the very
// first answer is right; without it, no stale answer after the bound.
TEST_P(AccessOutageTest, R1_NoStaleAnswerAfterAccessComesBack) {
  CreatePartnerWithAdmin("northwind", "bill");
  CreateCustomer("outageco", "northwind", cv1::MANAGEMENT_TYPE_CUSTOMER,
                 {"oscar", "olga"});
  for (int i = 0; i < 3; ++i) {  // cached in memory and in Redis
    ASSERT_TRUE(Allowed("oscar", "customers/outageco", "portal.login"));
    ASSERT_TRUE(Allowed("olga", "customers/outageco", "portal.login"));
  }
  StopAccess();
  const std::string token =
      SetManagement("bill", "outageco", cv1::MANAGEMENT_TYPE_PARTNER);
  absl::SleepFor(absl::Seconds(GetParam()));  // the outage itself
  StartAccess();
  const absl::Time serving = absl::Now();
  EXPECT_FALSE(Allowed("oscar", "customers/outageco", "portal.login", token))
      << "the first answer with the write's token is stale";
  const absl::Time last_stale =
      LastStaleAnswer(this, "olga", "customers/outageco", "portal.login",
                      serving + kBound + absl::Seconds(1));
  EXPECT_LE(last_stale, serving + kBound + kCallMargin)
      << "stale " << (last_stale - serving) << " after SERVING";
  std::printf("[ figure ] %ds outage: last stale answer %s\n", GetParam(),
              last_stale == absl::InfinitePast()
                  ? "none (the first answer after SERVING was right)"
                  : absl::FormatDuration(last_stale - serving).c_str());
  EXPECT_TRUE(Allowed("bill", "customers/outageco", "portal.manage_customer"));
}

INSTANTIATE_TEST_SUITE_P(Outages, AccessOutageTest, ::testing::Values(2, 15),
                         [](const auto& info) {
                           return absl::StrCat(info.param, "s");
                         });

// customer_management_service killed (-9) right after it acknowledged a
// change: tokens are honoured (answer right, or UNAVAILABLE while the owner
// is down), and without one nothing stale outlives the bound.
TEST_F(NoStaleTest, R1_CustomersKilledRightAfterAcknowledging) {
  CreatePartnerWithAdmin("northwind", "bill");
  CreateCustomer("killco", "northwind", cv1::MANAGEMENT_TYPE_CUSTOMER,
                 {"kate", "kim"});
  ASSERT_TRUE(Allowed("kate", "customers/killco", "portal.login"));
  ASSERT_TRUE(Allowed("kim", "customers/killco", "portal.login"));
  const std::string token =
      SetManagement("bill", "killco", cv1::MANAGEMENT_TYPE_PARTNER);
  const absl::Time acknowledged = absl::Now();
  customers_->Signal(SIGKILL);
  customers_->WaitForExit(absl::Seconds(5));
  bool allowed = true;
  grpc::Status status =
      Check("kate", "customers/killco", "portal.login", &allowed, token);
  EXPECT_FALSE(status.ok() && allowed) << "stale answer with the token";
  const absl::Time last_stale =
      LastStaleAnswer(this, "kim", "customers/killco", "portal.login",
                      acknowledged + kBound + absl::Seconds(1));
  EXPECT_LE(last_stale, acknowledged + kBound + kCallMargin);

  StartCustomers(absl::StrCat("127.0.0.1:", access_port_));
  // Answered again once access_service has dialled it back; never stale.
  const absl::Time back = absl::Now();
  grpc::Status answered;
  do {
    answered =
        Check("kate", "customers/killco", "portal.login", &allowed, token);
    EXPECT_FALSE(answered.ok() && allowed) << "stale answer with the token";
  } while (!answered.ok() && absl::Now() < back + absl::Seconds(10));
  EXPECT_TRUE(answered.ok()) << answered.error_message();
  EXPECT_LE(LastStaleAnswer(this, "kim", "customers/killco", "portal.login",
                            absl::Now() + absl::Seconds(1)),
            absl::InfinitePast());
}

// With an outbox that cannot deliver at all, the change feed alone brings
// every change within the bound (measured from the acknowledgement).
TEST_F(NoStaleTest, R1_TheChangeFeedAloneBoundsStaleness) {
  StartCustomers(absl::StrCat("127.0.0.1:", FreePort()));  // outbox: nobody
  CreatePartnerWithAdmin("northwind", "bill");
  CreateCustomer("feedco", "northwind", cv1::MANAGEMENT_TYPE_CUSTOMER, {"fay"});
  for (const auto& [type, fay_logs_in] :
       std::vector<std::pair<cv1::ManagementType, bool>>{
           {cv1::MANAGEMENT_TYPE_PARTNER, false},
           {cv1::MANAGEMENT_TYPE_CO_MANAGED, true},
           {cv1::MANAGEMENT_TYPE_PARTNER, false}}) {
    ASSERT_EQ(Allowed("fay", "customers/feedco", "portal.login"), !fay_logs_in);
    const std::string token = SetManagement("bill", "feedco", type);
    const absl::Time acknowledged = absl::Now();
    absl::Time caught_up = absl::InfiniteFuture();
    while (absl::Now() < acknowledged + absl::Seconds(5)) {
      if (Allowed("fay", "customers/feedco", "portal.login") == fay_logs_in) {
        caught_up = absl::Now();
        break;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_LE(caught_up - acknowledged, kBound + kCallMargin);
    std::printf("[ figure ] feed caught up %s after the acknowledgement\n",
                absl::FormatDuration(caught_up - acknowledged).c_str());
    EXPECT_EQ(Allowed("fay", "customers/feedco", "portal.login", token),
              fay_logs_in);
  }
}

// A customer deleted and re-created with the other management type: its
// versions move on, so nothing from the first one is ever answered.
TEST_F(NoStaleTest, R1_DeletedAndRecreatedCustomerIsANewCustomer) {
  CreatePartnerWithAdmin("northwind", "bill");
  CreateCustomer("phoenix", "northwind", cv1::MANAGEMENT_TYPE_PARTNER, {"pat"});
  ASSERT_TRUE(Allowed("bill", "customers/phoenix", "portal.manage_customer"));
  ASSERT_FALSE(Allowed("pat", "customers/phoenix", "portal.login"));

  cv1::DeleteCustomerRequest remove;
  remove.set_name("customers/phoenix");
  cv1::DeleteCustomerResponse removed;
  ASSERT_TRUE(
      customers_stub_->DeleteCustomer(As(admin_).get(), remove, &removed).ok());
  ASSERT_FALSE(removed.consistency_token().empty());
  EXPECT_FALSE(Allowed("bill", "customers/phoenix", "portal.manage_customer",
                       removed.consistency_token()));
  EXPECT_FALSE(Allowed("bill", "customers/phoenix", "portal.manage_customer"));
  EXPECT_FALSE(Allowed("bill", "customers/phoenix", "customer.view"));

  CreateCustomer("phoenix", "northwind", cv1::MANAGEMENT_TYPE_CUSTOMER,
                 {"pat"});
  EXPECT_FALSE(Allowed("bill", "customers/phoenix", "portal.manage_customer"));
  EXPECT_TRUE(Allowed("pat", "customers/phoenix", "portal.login"));
  // Also from a fresh process that only has Redis and the store.
  StopAccess();
  StartAccess();
  EXPECT_FALSE(Allowed("bill", "customers/phoenix", "portal.manage_customer"));
  EXPECT_TRUE(Allowed("pat", "customers/phoenix", "portal.login"));
}

// Redis restored from an old snapshot (old values under current keys) while
// checks run: every answer still follows the facts.
TEST_F(NoStaleTest, R7_RedisRestoredFromAnOldSnapshotUnderLoad) {
  CreateSite("snap");
  Join("vera", "snap", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  Join("walt", "snap", v1::SITE_ROLE_VIEW_ONLY);
  ASSERT_TRUE(Allowed("vera", "sites/snap", "site.members.list"));
  ASSERT_FALSE(Allowed("walt", "sites/snap", "site.members.list"));
  RawRedis raw(redis_->port());
  const auto snapshot = raw.Dump("custos:perm:");
  ASSERT_FALSE(snapshot.empty());
  // The roles swap; the snapshot now holds the opposite answers.
  SetRole("snap", "walt", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  SetRole("snap", "vera", v1::SITE_ROLE_VIEW_ONLY);

  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0}, asked{0};
  std::thread load([&] {
    // Its own channel: the fixture's stub is replaced on every restart.
    auto stub = v1::AccessService::NewStub(LoopbackChannel(access_port_));
    while (!stop.load() && asked.load() < 5000) {
      bool vera = true, walt = false;
      if (Check("vera", "sites/snap", "site.members.list", &vera, "",
                stub.get())
              .ok() &&
          vera) {
        ++wrong;
      }
      if (Check("walt", "sites/snap", "site.members.list", &walt, "",
                stub.get())
              .ok() &&
          !walt) {
        ++wrong;
      }
      asked += 2;
    }
  });
  for (int round = 0; round < 5; ++round) {
    for (const auto& [key, value] : snapshot) raw.Set(key, value);
    // A fresh process reads Redis first: nothing in its memory yet.
    StopAccess();
    StartAccess();
  }
  stop = true;
  load.join();
  EXPECT_EQ(wrong.load(), 0) << "of " << asked.load();
  EXPECT_FALSE(Allowed("vera", "sites/snap", "site.members.list"));
  EXPECT_TRUE(Allowed("walt", "sites/snap", "site.members.list"));
}

// A value changed in Redis (by hand, another tenant, a bug): an
// administrator's cached answer copied under a view-only member's key, and
// a byte flipped, are misses, never answers.
TEST_F(NoStaleTest, R7_AValueEditedInRedisIsAMiss) {
  CreateSite("edit");
  Join("ada", "edit", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  Join("vic", "edit", v1::SITE_ROLE_VIEW_ONLY);
  Join("zed", "edit", v1::SITE_ROLE_VIEW_ONLY);
  ASSERT_TRUE(Allowed("ada", "sites/edit", "site.members.list"));
  ASSERT_FALSE(Allowed("vic", "sites/edit", "site.members.list"));
  ASSERT_FALSE(Allowed("zed", "sites/edit", "site.members.list"));
  RawRedis raw(redis_->port());
  std::string admin_value, vic_key, zed_key;
  for (const auto& [key, value] : raw.Dump("custos:perm:")) {
    if (absl::StrContains(key, "sites/edit|ada|")) admin_value = value;
    if (absl::StrContains(key, "sites/edit|vic|")) vic_key = key;
    if (absl::StrContains(key, "sites/edit|zed|")) zed_key = key;
  }
  ASSERT_FALSE(admin_value.empty());
  ASSERT_FALSE(vic_key.empty());
  ASSERT_FALSE(zed_key.empty());
  raw.Set(vic_key, admin_value);  // same versions, someone else's grants
  std::string flipped = admin_value;
  flipped[flipped.size() / 2] ^= 0x01;
  raw.Set(zed_key, flipped);
  StopAccess();  // the new process has nothing in memory: Redis is asked
  StartAccess();
  EXPECT_FALSE(Allowed("vic", "sites/edit", "site.members.list"));
  EXPECT_FALSE(Allowed("zed", "sites/edit", "site.members.list"));
  EXPECT_TRUE(Allowed("ada", "sites/edit", "site.members.list"));
}

// The access store restored from an earlier copy while Redis keeps its
// entries: site versions repeat in the store, but cached answers are tagged
// with ids that never do, and no token is issued twice.
TEST_F(NoStaleTest, R7_AccessStoreRestoredFromABackupWithRedisUntouched) {
  CreateSite("restore");
  Join("val", "restore", v1::SITE_ROLE_VIEW_ONLY);
  ASSERT_FALSE(Allowed("val", "sites/restore", "site.members.list"));
  StopAccess();
  std::string error;
  ASSERT_TRUE(
      ::custos::testing::SnapshotTestDatabase(dir_, "access", "backup", &error))
      << error;
  StartAccess();
  // After the backup: val becomes an administrator (cached in Redis).
  const std::string lost_token =
      SetRole("restore", "val", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  ASSERT_TRUE(Allowed("val", "sites/restore", "site.members.list"));
  StopAccess();
  ASSERT_TRUE(
      ::custos::testing::RestoreTestDatabase(dir_, "access", "backup", &error))
      << error;
  StartAccess();
  // Another change takes the same site version number the lost one had.
  const std::string new_token = Join("una", "restore", v1::SITE_ROLE_VIEW_ONLY);
  EXPECT_NE(new_token, lost_token);
  EXPECT_FALSE(Allowed("val", "sites/restore", "site.members.list"));
  EXPECT_FALSE(Allowed("val", "sites/restore", "site.members.list", new_token));
  EXPECT_FALSE(Allowed("una", "sites/restore", "site.members.list"));
  EXPECT_TRUE(Allowed("val", "sites/restore", "cases.self.view"));
}

// Writes a site link the way customer_management_service stored them
// before AccessService owned the link (its customers.sites column).
bool WriteLegacySiteLink(const std::string& database,
                         const std::string& customer, const std::string& site,
                         std::string* error) {
  const std::string sql = absl::StrCat("UPDATE customers SET sites = '", site,
                                       "' WHERE id = '", customer, "'");
  if (absl::StartsWith(database, "sqlite:")) {
    sqlite3* db = nullptr;
    if (sqlite3_open(database.substr(7).c_str(), &db) != SQLITE_OK) {
      *error = "cannot open the SQLite file";
      sqlite3_close(db);
      return false;
    }
    const bool ok =
        sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK &&
        sqlite3_changes(db) == 1;
    if (!ok) *error = sqlite3_errmsg(db);
    sqlite3_close(db);
    return ok;
  }
  PGconn* conn = PQconnectdb(database.c_str());
  PGresult* result = PQexec(conn, sql.c_str());
  const bool ok = PQresultStatus(result) == PGRES_COMMAND_OK &&
                  std::string(PQcmdTuples(result)) == "1";
  if (!ok) *error = PQerrorMessage(conn);
  PQclear(result);
  PQfinish(conn);
  return ok;
}

// One owner for the site <-> customer link: AccessService. A link to a
// customer that does not exist is refused; Customer.sites reads the links
// from AccessService; links stored by customer_management_service before
// are handed over when it starts.
TEST_F(NoStaleTest, SiteCustomerLinkHasOneOwner) {
  CreatePartnerWithAdmin("northwind", "bill");
  CreateCustomer("linked", "northwind", cv1::MANAGEMENT_TYPE_PARTNER, {});
  v1::CreateSiteRequest create;
  create.set_site_id("m-sid");
  create.mutable_site()->set_display_name("M");
  create.mutable_site()->set_customer("customers/nope");
  v1::Site site;
  grpc::Status status = stub_->CreateSite(As(care_).get(), create, &site);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "does not exist"));
  create.mutable_site()->set_customer("customers/linked");
  ASSERT_TRUE(stub_->CreateSite(As(care_).get(), create, &site).ok());

  auto sites_of = [&](const std::string& customer) {
    cv1::GetCustomerRequest get;
    get.set_name("customers/" + customer);
    cv1::Customer read;
    grpc::Status got =
        customers_stub_->GetCustomer(As(Token("bill")).get(), get, &read);
    EXPECT_TRUE(got.ok()) << got.error_message();
    return std::vector<std::string>(read.sites().begin(), read.sites().end());
  };
  EXPECT_EQ(sites_of("linked"), std::vector<std::string>{"sites/m-sid"});

  v1::UpdateSiteRequest update;
  update.mutable_site()->set_name("sites/m-sid");
  update.mutable_site()->set_customer("customers/nope");
  update.mutable_update_mask()->add_paths("customer");
  status = stub_->UpdateSite(As(care_).get(), update, &site);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  update.mutable_site()->clear_customer();  // unlinked
  ASSERT_TRUE(stub_->UpdateSite(As(care_).get(), update, &site).ok());
  EXPECT_TRUE(sites_of("linked").empty());

  // A link stored the old way moves to AccessService at the next start.
  customers_->Signal(SIGTERM);
  ASSERT_EQ(customers_->WaitForExit(absl::Seconds(20)), 0);
  // Meanwhile nobody can say whether a customer exists: a link is refused
  // UNAVAILABLE and nothing is written, never linked unchecked.
  v1::CreateSiteRequest unchecked;
  unchecked.set_site_id("while-down");
  unchecked.mutable_site()->set_display_name("W");
  unchecked.mutable_site()->set_customer("customers/linked");
  status = stub_->CreateSite(As(care_).get(), unchecked, &site);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  v1::GetSiteRequest absent;
  absent.set_name("sites/while-down");
  EXPECT_EQ(stub_->GetSite(As(care_).get(), absent, &site).error_code(),
            grpc::StatusCode::NOT_FOUND);
  std::string error;
  ASSERT_TRUE(WriteLegacySiteLink(TestDatabase(dir_, "customers"), "linked",
                                  "sites/legacy-sid", &error))
      << error;
  StartCustomers(absl::StrCat("127.0.0.1:", access_port_));
  std::vector<std::string> linked;
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  while ((linked = sites_of("linked")).empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(linked, std::vector<std::string>{"sites/legacy-sid"});
  // AccessService down: the customer stays readable, saying its sites are
  // missing rather than that it has none.
  StopAccess();
  cv1::GetCustomerRequest read;
  read.set_name("customers/linked");
  cv1::Customer without_sites;
  ASSERT_TRUE(
      customers_stub_->GetCustomer(As(admin_).get(), read, &without_sites)
          .ok());
  EXPECT_TRUE(without_sites.sites_unavailable());
  EXPECT_TRUE(without_sites.sites().empty());
  StartAccess();
  v1::GetSiteRequest get;
  get.set_name("sites/legacy-sid");
  ASSERT_TRUE(stub_->GetSite(As(care_).get(), get, &site).ok());
  EXPECT_EQ(site.customer(), "customers/linked");
}

// What a watcher saw: each change as "KIND resource", and the last token.
struct Watched {
  std::vector<std::string> changes;
  std::string resume_token;
  grpc::Status status;
};

// Watches from `resume_token` until `count` changes arrived (or the stream
// ended, or 20 s passed), then hangs up.
Watched Watch(NoStaleTest* test, v1::AccessService::Stub* stub,
              const std::string& service_token, const std::string& resume_token,
              size_t count) {
  Watched watched;
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + service_token);
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(20));
  v1::WatchPermissionChangesRequest request;
  request.set_resume_token(resume_token);
  auto reader = stub->WatchPermissionChanges(&context, request);
  v1::WatchPermissionChangesResponse response;
  // The first response only carries where the stream starts.
  bool ended = false;
  while (watched.resume_token.empty() || watched.changes.size() < count) {
    if (!reader->Read(&response)) {
      ended = true;
      break;
    }
    for (const v1::PermissionChange& change : response.changes()) {
      watched.changes.push_back(
          absl::StrCat(v1::PermissionChange::Kind_Name(change.kind()), " ",
                       change.resource()));
    }
    watched.resume_token = response.resume_token();
  }
  if (!ended) context.TryCancel();
  watched.status = reader->Finish();
  (void)test;
  return watched;
}

// WatchPermissionChanges: a client that hangs up mid-stream and resumes
// with its last resume token sees every change once, in order — the same
// list an uninterrupted watcher sees.
TEST_F(NoStaleTest, R7_R1_WatchResumedMidStreamMissesNothingAndRepeatsNothing) {
  Watched start = Watch(this, stub_.get(), service_, "", 0);
  ASSERT_FALSE(start.resume_token.empty()) << start.status.error_message();
  CreatePartnerWithAdmin("northwind", "bill");
  std::vector<std::string> sites;
  for (int i = 0; i < 6; ++i) {
    const std::string site = absl::StrCat("w", i);
    CreateSite(site);
    Join(absl::StrCat("u", i), site, v1::SITE_ROLE_SITE_MEMBER);
    CreateCustomer(absl::StrCat("c", i), "northwind",
                   cv1::MANAGEMENT_TYPE_CUSTOMER, {});
    SetManagement("bill", absl::StrCat("c", i), cv1::MANAGEMENT_TYPE_PARTNER);
  }
  // Every access write and customer change since `start`, read in one go.
  Watched all = Watch(this, stub_.get(), service_, start.resume_token, 24);
  ASSERT_GE(all.changes.size(), 24u) << all.status.error_message();
  const size_t total = all.changes.size();
  // The same history in four pieces, hanging up after each.
  std::vector<std::string> pieced;
  std::string token = start.resume_token;
  for (int piece = 0; piece < 20 && pieced.size() < total; ++piece) {
    Watched part = Watch(this, stub_.get(), service_, token, 7);
    ASSERT_FALSE(part.resume_token.empty()) << part.status.error_message();
    pieced.insert(pieced.end(), part.changes.begin(), part.changes.end());
    token = part.resume_token;
  }
  EXPECT_EQ(pieced, all.changes);
  // In order within each service: sites as written, customers as changed.
  std::vector<std::string> site_order, customer_order;
  for (const std::string& change : all.changes) {
    if (absl::StartsWith(change, "KIND_SITE sites/w") &&
        (site_order.empty() || site_order.back() != change)) {
      site_order.push_back(change);
    }
    if (absl::StartsWith(change, "KIND_CUSTOMER customers/c") &&
        (customer_order.empty() || customer_order.back() != change)) {
      customer_order.push_back(change);
    }
  }
  std::vector<std::string> expected_sites, expected_customers;
  for (int i = 0; i < 6; ++i) {
    expected_sites.push_back(absl::StrCat("KIND_SITE sites/w", i));
    expected_customers.push_back(absl::StrCat("KIND_CUSTOMER customers/c", i));
  }
  EXPECT_EQ(site_order, expected_sites);
  EXPECT_EQ(customer_order, expected_customers);
  // A restart loses nothing either.
  StopAccess();
  StartAccess();
  Join("late", "w0", v1::SITE_ROLE_VIEW_ONLY);
  Watched after_restart = Watch(this, stub_.get(), service_, token, 1);
  ASSERT_EQ(after_restart.changes.size(), 1u)
      << after_restart.status.error_message();
  EXPECT_EQ(after_restart.changes[0], "KIND_SITE sites/w0");
}

// A resume token older than the retained history is OUT_OF_RANGE, with a
// message saying what to do; a token that is not one is INVALID_ARGUMENT.
TEST_F(NoStaleTest, R7_WatchFromAnExpiredTokenIsOutOfRange) {
  StopAccess();
  StartAccess({"--watch_retention=1s"});
  CreateSite("old");
  Watched start = Watch(this, stub_.get(), service_, "", 0);
  ASSERT_FALSE(start.resume_token.empty()) << start.status.error_message();
  Join("ann", "old", v1::SITE_ROLE_VIEW_ONLY);
  Watched first = Watch(this, stub_.get(), service_, start.resume_token, 1);
  ASSERT_EQ(first.changes.size(), 1u) << first.status.error_message();
  CreateSite("newer");  // so the token's entry is not the newest
  grpc::Status status;
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  do {
    absl::SleepFor(absl::Milliseconds(200));
    status = Watch(this, stub_.get(), service_, first.resume_token, 1).status;
  } while (status.error_code() != grpc::StatusCode::OUT_OF_RANGE &&
           absl::Now() < deadline);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "retained history"))
      << status.error_message();
  EXPECT_EQ(
      Watch(this, stub_.get(), service_, "not-a-token", 1).status.error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  // A token whose customer half was tampered with is refused at once.
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(first.resume_token, &raw));
  raw = raw.substr(0, raw.rfind('|') + 1) + "garbage";
  EXPECT_EQ(
      Watch(this, stub_.get(), service_, absl::WebSafeBase64Escape(raw), 1)
          .status.error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      Watch(this, stub_.get(), Token("mallory"), "", 1).status.error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
}

// The reference model for the schedule below: R1 (customers) and R5-R9
// (sites, roles, pilots), written from DESIGN's tables, not from the engine.
class ReferenceModel {
 public:
  // Site side.
  std::map<std::pair<std::string, std::string>, v1::SiteRole> roles;
  // Pilot participants ("users/u", "sites/s") per gated permission, and
  // whether that permission's pilot is generally available.
  std::map<std::string, std::set<std::string>> participants;
  std::set<std::string> generally_available;
  // Customer side: management type, customer users, partner admins/users.
  std::map<std::string, cv1::ManagementType> management;
  std::map<std::string, std::set<std::string>> customer_users;
  std::set<std::string> partner_admins, partner_users;

  bool SiteAllows(const std::string& site, const std::string& user,
                  const std::string& permission) const {
    auto it = roles.find({site, user});
    if (it == roles.end()) return false;
    const v1::SiteRole role = it->second;
    const bool member = role == v1::SITE_ROLE_SITE_MEMBER ||
                        role == v1::SITE_ROLE_SITE_ADMINISTRATOR;
    const bool admin = role == v1::SITE_ROLE_SITE_ADMINISTRATOR;
    if (permission == "cases.self.view") return true;
    if (permission == "cases.self.create") return member;
    if (permission == "site.members.list") return admin;
    // R9: pilot-gated, granted by every role.
    if (generally_available.count(permission) > 0) return true;
    auto enrolled = participants.find(permission);
    return enrolled != participants.end() &&
           (enrolled->second.count("users/" + user) > 0 ||
            enrolled->second.count("sites/" + site) > 0);
  }

  bool CustomerAllows(const std::string& customer, const std::string& user,
                      const std::string& permission) const {
    const cv1::ManagementType type = management.at(customer);
    const bool partner = partner_admins.count(user) + partner_users.count(user);
    const bool customer_user = !partner && customer_users.count(customer) > 0 &&
                               customer_users.at(customer).count(user) > 0;
    if (permission == "portal.login") {
      return customer_user && type != cv1::MANAGEMENT_TYPE_PARTNER;
    }
    if (permission == "portal.manage_customer") {
      return partner && type != cv1::MANAGEMENT_TYPE_CUSTOMER;
    }
    if (permission == "customer.view") return partner;
    if (permission == "customer.update") return partner_admins.count(user) > 0;
    return false;
  }
};

// A seeded, randomized schedule of 10,000 steps — role changes, approvals,
// removals, pilot changes, management changes, customer users coming and
// going, checks with and without tokens, restarts of both services and of
// Redis — with every answer compared to the reference model: none may
// differ with a token, none without one once the change is older than the
// bound. CUSTOS_SCHEDULE_SEED replays a schedule; CUSTOS_SCHEDULE_STEPS
// sets its length. The PostgreSQL variant runs 3,000 steps: the schedule's
// breadth is the SQLite run's, the variant checks the backend under it, and
// the whole suite must stay well within CI's budget.
TEST_F(NoStaleTest, R1_R5_R9_RandomizedScheduleMatchesTheModel) {
  int steps = ::custos::testing::TestingPostgres() ? 3000 : 10000;
  if (const char* given = std::getenv("CUSTOS_SCHEDULE_STEPS")) {
    steps = std::atoi(given);
  }
  uint64_t seed = absl::ToUnixNanos(absl::Now());
  if (const char* given = std::getenv("CUSTOS_SCHEDULE_SEED")) {
    seed = std::strtoull(given, nullptr, 10);
  }
  SCOPED_TRACE(absl::StrCat("replay with CUSTOS_SCHEDULE_SEED=", seed));
  std::printf("[ seed ] CUSTOS_SCHEDULE_SEED=%llu\n",
              static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  auto pick = [&](const auto& items) -> const auto& {
    return items[std::uniform_int_distribution<size_t>(0,
                                                       items.size() - 1)(rng)];
  };
  auto chance = [&](double p) {
    return std::uniform_real_distribution<double>(0, 1)(rng) < p;
  };

  ReferenceModel model;
  const std::vector<std::string> sites{"s1", "s2", "s3"};
  const std::vector<std::string> users{"u1", "u2", "u3", "u4", "u5", "u6"};
  const std::vector<std::string> customers{"k1", "k2"};
  const std::vector<std::string> customer_people{"u1", "u2", "u3", "pam"};
  const std::vector<std::string> site_permissions{
      "cases.self.view", "cases.self.create", "site.members.list",
      "software.download", "licenses.generate"};
  const std::vector<std::string> customer_permissions{
      "portal.login", "portal.manage_customer", "customer.view",
      "customer.update"};
  const std::vector<v1::SiteRole> site_roles{v1::SITE_ROLE_VIEW_ONLY,
                                             v1::SITE_ROLE_SITE_MEMBER,
                                             v1::SITE_ROLE_SITE_ADMINISTRATOR};
  const std::vector<cv1::ManagementType> types{cv1::MANAGEMENT_TYPE_PARTNER,
                                               cv1::MANAGEMENT_TYPE_CUSTOMER,
                                               cv1::MANAGEMENT_TYPE_CO_MANAGED};
  // Set-up: sites, two pilots, a partner with an admin and a user, and two
  // customers.
  for (const std::string& site : sites) CreateSite(site);
  const std::map<std::string, std::string> pilot_of{
      {"software.download", "downloads"}, {"licenses.generate", "licences"}};
  for (const auto& [permission, pilot] : pilot_of) {
    v1::CreatePilotRequest create;
    create.set_pilot_id(pilot);
    create.mutable_pilot()->set_display_name(pilot);
    create.mutable_pilot()->add_permissions(permission);
    create.mutable_pilot()->set_stage(v1::Pilot::STAGE_PILOT);
    v1::Pilot created;
    ASSERT_TRUE(stub_->CreatePilot(As(admin_).get(), create, &created).ok());
  }
  CreatePartnerWithAdmin("northwind", "bill");
  model.partner_admins.insert("bill");
  {
    cv1::CreatePartnerUserRequest pam;
    pam.set_parent("partners/northwind");
    pam.set_user_id("pam");
    pam.mutable_partner_user()->set_role(cv1::PARTNER_ROLE_PARTNER_USER);
    cv1::PartnerUser created;
    ASSERT_TRUE(
        customers_stub_->CreatePartnerUser(As(admin_).get(), pam, &created)
            .ok());
    model.partner_users.insert("pam");
  }
  for (const std::string& customer : customers) {
    CreateCustomer(customer, "northwind", cv1::MANAGEMENT_TYPE_CO_MANAGED, {});
    model.management[customer] = cv1::MANAGEMENT_TYPE_CO_MANAGED;
  }

  // When each resource last changed, and the token of that change.
  std::map<std::string, absl::Time> changed_at;
  std::map<std::string, std::string> token_of;
  auto changed = [&](const std::string& resource, const std::string& token) {
    changed_at[resource] = absl::Now();
    token_of[resource] = token;
  };
  bool customers_up = true;
  bool redis_up = true;
  // Outages last a few dozen steps: long enough to matter, short enough
  // that customer checks (UNAVAILABLE after a peer timeout) stay cheap.
  int customers_back_at = -1, redis_back_at = -1;
  int checks = 0, with_token = 0, unavailable = 0, mismatches = 0;
  int restarts = 0;

  for (int step = 0; step < steps; ++step) {
    if (step == customers_back_at) {
      StartCustomers(absl::StrCat("127.0.0.1:", access_port_));
      customers_up = true;
    }
    if (step == redis_back_at) {
      ASSERT_TRUE(redis_->Start());
      redis_up = true;
    }
    const double roll = std::uniform_real_distribution<double>(0, 1)(rng);
    if (roll < 0.08) {  // R5/R6: a join or role request, approved by Care
      const std::string& site = pick(sites);
      const std::string& user = pick(users);
      const v1::SiteRole role = pick(site_roles);
      auto current = model.roles.find({site, user});
      if (current != model.roles.end() && current->second == role) continue;
      v1::CreateAccessRequestRequest request;
      request.set_parent("sites/" + site);
      request.mutable_access_request()->set_requested_role(role);
      request.mutable_access_request()->set_justification("schedule");
      v1::AccessRequest created;
      grpc::Status status =
          stub_->CreateAccessRequest(As(Token(user)).get(), request, &created);
      ASSERT_TRUE(status.ok()) << status.error_message();
      v1::ApproveAccessRequestRequest approve;
      approve.set_name(created.name());
      v1::AccessRequest decided;
      status = stub_->ApproveAccessRequest(As(care_).get(), approve, &decided);
      ASSERT_TRUE(status.ok()) << status.error_message();
      model.roles[{site, user}] = role;
      changed("sites/" + site, decided.consistency_token());
    } else if (roll < 0.14) {  // R7: a role changed directly, or a removal
      const std::string& site = pick(sites);
      const std::string& user = pick(users);
      if (model.roles.count({site, user}) == 0) continue;
      if (chance(0.3)) {
        v1::DeleteSiteMemberRequest remove;
        remove.set_name(absl::StrCat("sites/", site, "/members/", user));
        v1::DeleteSiteMemberResponse removed;
        grpc::Status status =
            stub_->DeleteSiteMember(As(care_).get(), remove, &removed);
        ASSERT_TRUE(status.ok()) << status.error_message();
        model.roles.erase({site, user});
        changed("sites/" + site, removed.consistency_token());
      } else {
        const v1::SiteRole role = pick(site_roles);
        changed("sites/" + site, SetRole(site, user, role));
        model.roles[{site, user}] = role;
      }
    } else if (roll < 0.18) {  // R9: pilot participants and stages
      const auto& [permission, pilot] = *std::next(
          pilot_of.begin(), std::uniform_int_distribution<int>(0, 1)(rng));
      std::string token;
      if (chance(0.02) && model.generally_available.count(permission) == 0) {
        v1::UpdatePilotRequest update;
        update.mutable_pilot()->set_name("pilots/" + pilot);
        update.mutable_pilot()->set_stage(
            v1::Pilot::STAGE_GENERAL_AVAILABILITY);
        update.mutable_update_mask()->add_paths("stage");
        v1::Pilot updated;
        ASSERT_TRUE(
            stub_->UpdatePilot(As(admin_).get(), update, &updated).ok());
        model.generally_available.insert(permission);
        token = updated.consistency_token();
      } else {
        const std::string participant =
            chance(0.5) ? "users/" + pick(users) : "sites/" + pick(sites);
        v1::Pilot updated;
        grpc::Status status;
        if (model.participants[permission].count(participant) > 0) {
          v1::RemovePilotParticipantRequest remove;
          remove.set_pilot("pilots/" + pilot);
          remove.set_participant(participant);
          status =
              stub_->RemovePilotParticipant(As(admin_).get(), remove, &updated);
          model.participants[permission].erase(participant);
        } else {
          v1::AddPilotParticipantRequest add;
          add.set_pilot("pilots/" + pilot);
          add.set_participant(participant);
          status = stub_->AddPilotParticipant(As(admin_).get(), add, &updated);
          model.participants[permission].insert(participant);
        }
        ASSERT_TRUE(status.ok()) << status.error_message();
        token = updated.consistency_token();
      }
      for (const std::string& site : sites) changed("sites/" + site, token);
    } else if (roll < 0.22 && customers_up) {  // R1: management type
      const std::string& customer = pick(customers);
      const cv1::ManagementType type = pick(types);
      if (model.management[customer] == type) continue;
      changed("customers/" + customer, SetManagement("bill", customer, type));
      model.management[customer] = type;
    } else if (roll < 0.25 && customers_up) {  // customer users
      const std::string& customer = pick(customers);
      const std::string& user = pick(customer_people);
      if (user == "pam") continue;
      std::string token;
      if (model.customer_users[customer].count(user) > 0) {
        cv1::DeleteCustomerUserRequest remove;
        remove.set_name(absl::StrCat("customers/", customer, "/users/", user));
        cv1::DeleteCustomerUserResponse removed;
        ASSERT_TRUE(customers_stub_
                        ->DeleteCustomerUser(As(admin_).get(), remove, &removed)
                        .ok());
        model.customer_users[customer].erase(user);
        token = removed.consistency_token();
      } else {
        cv1::CreateCustomerUserRequest add;
        add.set_parent("customers/" + customer);
        add.set_user_id(user);
        cv1::CustomerUser created;
        ASSERT_TRUE(
            customers_stub_->CreateCustomerUser(As(admin_).get(), add, &created)
                .ok());
        model.customer_users[customer].insert(user);
        token = created.consistency_token();
      }
      changed("customers/" + customer, token);
    } else if (roll < 0.2508) {  // access_service restarts (or is killed)
      ++restarts;
      if (chance(0.5)) {
        StopAccess();
      } else {
        access_->Signal(SIGKILL);
        access_->WaitForExit(absl::Seconds(10));
      }
      StartAccess();
    } else if (roll < 0.2516 && customers_up) {  // customers go down
      ++restarts;
      customers_->Signal(chance(0.5) ? SIGKILL : SIGTERM);
      customers_->WaitForExit(absl::Seconds(10));
      customers_up = false;
      customers_back_at = step + 10 + static_cast<int>(rng() % 30);
    } else if (roll < 0.2524 && redis_up) {  // Redis killed
      ++restarts;
      redis_->Kill();
      redis_up = false;
      redis_back_at = step + 10 + static_cast<int>(rng() % 200);
    } else {  // a check, compared with the model
      const bool on_site = chance(0.6);
      const std::string resource =
          on_site ? "sites/" + pick(sites) : "customers/" + pick(customers);
      const std::string user =
          on_site ? pick(users)
                  : pick(std::vector<std::string>{"u1", "u2", "u3", "bill",
                                                  "pam", "u6"});
      const std::string permission =
          on_site ? pick(site_permissions) : pick(customer_permissions);
      const bool use_token = token_of.count(resource) > 0 && chance(0.3);
      const std::string id = resource.substr(resource.find('/') + 1);
      const bool expected = on_site
                                ? model.SiteAllows(id, user, permission)
                                : model.CustomerAllows(id, user, permission);
      bool allowed = false;
      const absl::Time asked = absl::Now();
      grpc::Status status = Check(user, resource, permission, &allowed,
                                  use_token ? token_of[resource] : "");
      ++checks;
      if (use_token) ++with_token;
      if (!status.ok()) {
        // Only a peer that is down may leave a check unanswered.
        EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
            << status.error_message() << " at step " << step;
        ++unavailable;
        continue;
      }
      if (allowed == expected) continue;
      const bool within_bound =
          !use_token && changed_at.count(resource) > 0 &&
          asked - changed_at[resource] <= kBound + kCallMargin;
      if (within_bound) continue;
      ++mismatches;
      ADD_FAILURE() << "step " << step << ": " << user << " " << permission
                    << " on " << resource << " answered " << allowed
                    << ", the model says " << expected
                    << (use_token ? " (with the write's token)" : "");
      if (mismatches > 10) return;
    }
  }
  if (!customers_up) StartCustomers(absl::StrCat("127.0.0.1:", access_port_));
  std::printf(
      "[ schedule ] %d checks (%d with a token, %d unavailable), %d "
      "restarts, %d mismatches\n",
      checks, with_token, unavailable, restarts, mismatches);
  EXPECT_EQ(mismatches, 0);
}

}  // namespace
}  // namespace custos::access
