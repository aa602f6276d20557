// Unit tests of the permission engine's layers, linked without a server:
// FactVersions (the version and generation rules), the pure evaluator
// (R1, R5-R9 decisions), AnswerCache (a real redis-server, MAC), the
// customer feed follower and the composed engine (a fake
// CustomerManagementService, a fake clock, a temporary SQLite store).
#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/redis_client.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "services/access_service/access_store.h"
#include "services/access_service/answer_cache.h"
#include "services/access_service/customer_feed.h"
#include "services/access_service/fact_versions.h"
#include "services/access_service/permission_engine.h"
#include "services/access_service/permission_evaluator.h"
#include "services/access_service/policy.h"
#include "services/access_service/site_facts_loader.h"
#include "tests/support/fake_clock.h"
#include "tests/support/fake_customer_source.h"
#include "tests/support/redis_server.h"
#include "tests/support/service_process.h"

namespace custos::access {
namespace {

namespace cv1 = ::custos::customers::v1;
using ::custos::testing::FakeClock;
using ::custos::testing::FakeCustomerSource;

std::unique_ptr<const Policy> DefaultPolicy() {
  auto policy = Policy::LoadFile(
      absl::StrCat(std::getenv("CUSTOS_SOURCE_DIR"),
                   "/deploy/base/policy/default_policy.textproto"));
  EXPECT_TRUE(policy.ok()) << policy.status();
  return *std::move(policy);
}

std::vector<std::string> Permissions(const v1::ResolvePermissionsResponse& r) {
  std::vector<std::string> names;
  for (const v1::Grant& grant : r.grants()) names.push_back(grant.permission());
  return names;
}

bool Has(const v1::ResolvePermissionsResponse& r, const std::string& p) {
  for (const v1::Grant& grant : r.grants()) {
    if (grant.permission() == p) return true;
  }
  return false;
}

// --- FactVersions: the rules that keep a stale answer from being served.

TEST(FactVersionsTest, RaisesOnlyMoveForward) {
  FactVersions versions;
  const int64_t g = versions.generations().access;
  versions.RaiseSite("s", {2, 22}, g);
  versions.RaiseSite("s", {1, 11}, g);  // an older read arriving late
  ASSERT_TRUE(versions.Site("s"));
  EXPECT_EQ(*versions.Site("s"), (VersionStamp{2, 22}));
  versions.RaiseSite("s", {3, 33}, g);
  EXPECT_EQ(*versions.Site("s"), (VersionStamp{3, 33}));
}

TEST(FactVersionsTest, AReadFromBeforeForgettingFillsNoEmptySlot) {
  FactVersions versions;
  const int64_t before = versions.generations().access;
  versions.ForgetAccessFacts();
  versions.RaiseSite("s", {5, 55}, before);
  versions.RaisePilots({1, 1}, before);
  EXPECT_FALSE(versions.Site("s"));
  EXPECT_FALSE(versions.Pilots());
}

TEST(FactVersionsTest, AReadFromBeforeForgettingStillRaisesWhatWasReadAgain) {
  FactVersions versions;
  const int64_t before = versions.generations().access;
  versions.ForgetAccessFacts();
  versions.RaiseSite("s", {4, 44}, versions.generations().access);
  versions.RaiseSite("s", {6, 66}, before);  // a write that committed later
  EXPECT_EQ(*versions.Site("s"), (VersionStamp{6, 66}));
}

TEST(FactVersionsTest, CustomersAndAccessFactsAreForgottenApart) {
  FactVersions versions;
  versions.RaiseSite("s", {1, 1}, versions.generations().access);
  versions.RaiseCustomer("c", {1, 1}, versions.generations().customers);
  versions.ForgetCustomers();
  EXPECT_TRUE(versions.Site("s"));
  EXPECT_FALSE(versions.Customer("c"));
  versions.RaiseCustomer("c", {2, 2}, versions.generations().customers);
  EXPECT_TRUE(versions.SyncTo(
      10, versions.applied_sequence()));  // another replica wrote
  EXPECT_FALSE(versions.Site("s"));
  EXPECT_TRUE(versions.Customer("c"));
}

TEST(FactVersionsTest, TwoHistoriesOfOneFactAreBothForgotten) {
  // The same number with another id: the store was restored under us.
  FactVersions versions;
  const int64_t g = versions.generations().access;
  versions.RaiseSite("s", {12, 1}, g);
  versions.RaiseSite("s", {12, 2}, g);
  EXPECT_FALSE(versions.Site("s"));
  versions.RaisePilots({3, 1}, g);
  versions.RaisePilots({3, 9}, g);
  EXPECT_FALSE(versions.Pilots());
}

TEST(FactVersionsTest, AStoreBehindWhatWasAppliedIsForgotten) {
  FactVersions versions;
  versions.WriteSequenceAdvanced(1);
  versions.WriteSequenceAdvanced(2);
  versions.RaiseSite("s", {2, 2}, versions.generations().access);
  EXPECT_TRUE(versions.SyncTo(1, 2));  // restored to an older copy
  EXPECT_FALSE(versions.Site("s"));
  EXPECT_EQ(versions.applied_sequence(), 1);
}

TEST(FactVersionsTest, ALocalWriteAppliedDuringASyncIsNotARestore) {
  // The sync read the store (1) before write 2 committed and was applied.
  FactVersions versions;
  versions.WriteSequenceAdvanced(1);
  versions.RaiseSite("s", {1, 1}, versions.generations().access);
  const int64_t applied_before = versions.applied_sequence();
  versions.WriteSequenceAdvanced(2);
  EXPECT_FALSE(versions.SyncTo(1, applied_before));
  EXPECT_TRUE(versions.Site("s"));
  EXPECT_EQ(versions.applied_sequence(), 2);
}

TEST(FactVersionsTest, R1_ANoticeRaisesOnlyAKnownCustomer) {
  // A late outbox notice is old news: it must not stand for the current
  // version of a customer this process has not read.
  FactVersions versions;
  versions.RaiseKnownCustomer("c", {5, 5});
  EXPECT_FALSE(versions.Customer("c"));
  versions.RaiseCustomer("c", {6, 6}, versions.generations().customers);
  versions.RaiseKnownCustomer("c", {5, 5});
  EXPECT_EQ(*versions.Customer("c"), (VersionStamp{6, 6}));
  versions.RaiseKnownCustomer("c", {7, 7});
  EXPECT_EQ(*versions.Customer("c"), (VersionStamp{7, 7}));
}

TEST(FactVersionsTest, WriteSequenceAppliesOnlyWithoutGaps) {
  FactVersions versions;
  versions.WriteSequenceAdvanced(2);
  EXPECT_EQ(versions.applied_sequence(), 0);  // write 1 not reflected yet
  versions.WriteSequenceAdvanced(1);
  EXPECT_EQ(versions.applied_sequence(), 2);
  EXPECT_FALSE(versions.SyncTo(2, 2));  // nothing new: nothing forgotten
  versions.RaiseSite("s", {1, 1}, versions.generations().access);
  versions.WriteSequenceAdvanced(4);
  EXPECT_TRUE(versions.SyncTo(3, 2));
  EXPECT_EQ(versions.applied_sequence(), 4);  // 4 was waiting for 3
  EXPECT_FALSE(versions.Site("s"));
}

// --- The pure evaluator.

TEST(PermissionEvaluatorTest, R5_R7_RolesGrantThePolicysPermissions) {
  auto policy = DefaultPolicy();
  Subject joan{"joan", {}};
  SiteFacts facts;
  facts.exists = true;
  facts.site = {1, 1};
  facts.member.emplace();
  facts.member->set_role(v1::SITE_ROLE_VIEW_ONLY);
  auto view_only = EvaluateSite(*policy, joan, "acme", facts);
  EXPECT_TRUE(Has(view_only, "cases.self.view"));
  EXPECT_FALSE(Has(view_only, "cases.self.create"));
  EXPECT_FALSE(Has(view_only, "site.members.list"));
  facts.member->set_role(v1::SITE_ROLE_SITE_ADMINISTRATOR);
  auto admin = EvaluateSite(*policy, joan, "acme", facts);
  EXPECT_TRUE(Has(admin, "site.requests.approve"));
  EXPECT_TRUE(Has(admin, "site.members.update_role"));
  EXPECT_FALSE(Has(admin, "site.members.remove"));  // R7: Customer Care's
  Subject carla{"carla", {"customer_care"}};
  facts.member.reset();
  auto care = EvaluateSite(*policy, carla, "acme", facts);
  EXPECT_TRUE(Has(care, "site.members.remove"));
  EXPECT_TRUE(Has(care, "site.requests.approve"));
  facts.exists = false;
  EXPECT_TRUE(Permissions(EvaluateSite(*policy, carla, "acme", facts)).empty());
}

TEST(PermissionEvaluatorTest, R9_PilotGatedPermissionsNeedAPilot) {
  auto policy = DefaultPolicy();
  Subject sally{"sally", {}};
  SiteFacts facts;
  facts.exists = true;
  facts.member.emplace();
  facts.member->set_role(v1::SITE_ROLE_SITE_MEMBER);
  EXPECT_FALSE(
      Has(EvaluateSite(*policy, sally, "acme", facts), "software.download"));
  v1::Pilot pilot;
  pilot.set_name("pilots/entitlements");
  pilot.add_permissions("software.download");
  pilot.set_stage(v1::Pilot::STAGE_PILOT);
  pilot.add_participants("sites/acme");
  facts.all_pilots = {pilot};
  auto enrolled = EvaluateSite(*policy, sally, "acme", facts);
  ASSERT_TRUE(Has(enrolled, "software.download"));
  EXPECT_FALSE(Has(enrolled, "licenses.generate"));
  EXPECT_FALSE(
      Has(EvaluateSite(*policy, sally, "other", facts), "software.download"));
  facts.all_pilots[0].clear_participants();
  facts.all_pilots[0].set_stage(v1::Pilot::STAGE_GENERAL_AVAILABILITY);
  auto ga = EvaluateSite(*policy, sally, "other", facts);
  ASSERT_TRUE(Has(ga, "software.download"));
  bool says_ga = false;
  for (const v1::Grant& grant : ga.grants()) {
    for (const std::string& reason : grant.reasons()) {
      says_ga = says_ga || reason ==
                               "pilot pilots/entitlements (general "
                               "availability)";
    }
  }
  EXPECT_TRUE(says_ga);
}

TEST(PermissionEvaluatorTest, R1_ManagementTypeDecidesWhoEnters) {
  auto policy = DefaultPolicy();
  struct Row {
    cv1::ManagementType type;
    cv1::CustomerRelation relation;
    bool login, manage, update;
  };
  for (const Row& row : std::vector<Row>{
           {cv1::MANAGEMENT_TYPE_PARTNER, cv1::CUSTOMER_RELATION_CUSTOMER_USER,
            false, false, false},
           {cv1::MANAGEMENT_TYPE_PARTNER, cv1::CUSTOMER_RELATION_PARTNER_ADMIN,
            false, true, true},
           {cv1::MANAGEMENT_TYPE_CUSTOMER, cv1::CUSTOMER_RELATION_CUSTOMER_USER,
            true, false, false},
           {cv1::MANAGEMENT_TYPE_CUSTOMER, cv1::CUSTOMER_RELATION_PARTNER_USER,
            false, false, false},
           {cv1::MANAGEMENT_TYPE_CO_MANAGED,
            cv1::CUSTOMER_RELATION_CUSTOMER_USER, true, false, false},
           {cv1::MANAGEMENT_TYPE_CO_MANAGED,
            cv1::CUSTOMER_RELATION_PARTNER_USER, false, true, false},
           {cv1::MANAGEMENT_TYPE_CO_MANAGED, cv1::CUSTOMER_RELATION_NONE, false,
            false, false},
       }) {
    SCOPED_TRACE(absl::StrCat(cv1::ManagementType_Name(row.type), " ",
                              cv1::CustomerRelation_Name(row.relation)));
    CustomerFacts facts;
    facts.exists = true;
    facts.management_type = row.type;
    facts.relation = row.relation;
    auto answer = EvaluateCustomer(*policy, facts);
    EXPECT_EQ(Has(answer, "portal.login"), row.login);
    EXPECT_EQ(Has(answer, "portal.manage_customer"), row.manage);
    EXPECT_EQ(Has(answer, "customer.update"), row.update);
  }
  CustomerFacts deleted;  // exists = false
  deleted.relation = cv1::CUSTOMER_RELATION_PARTNER_ADMIN;
  EXPECT_TRUE(Permissions(EvaluateCustomer(*policy, deleted)).empty());
}

TEST(PermissionEvaluatorTest, TagsDifferWhenOnlyTheRandomIdDiffers) {
  // A restore makes counters repeat; the ids keep the tags apart.
  EXPECT_NE(SiteVersionsTag("fp", {6, 1}, {1, 1}),
            SiteVersionsTag("fp", {6, 2}, {1, 1}));
  EXPECT_NE(CustomerVersionsTag("fp", "c1", {3, 1}),
            CustomerVersionsTag("fp", "c1", {3, 2}));
  // A customer store created afresh: its first versions are not the old
  // store's, even where the numbers are the same.
  EXPECT_NE(CustomerVersionsTag("fp", "c1", {0, 0}),
            CustomerVersionsTag("fp", "c2", {0, 0}));
}

// --- AnswerCache against a real redis-server.

class AnswerCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_server_ = std::make_unique<::custos::testing::RedisServer>(
        ::custos::testing::FreePort());
    ASSERT_TRUE(redis_server_->Start());
    RedisOptions options;
    options.address = absl::StrCat("127.0.0.1:", redis_server_->port());
    redis_ = std::make_unique<RedisClient>(options);
  }
  AnswerCacheOptions Options(const std::string& mac_key) {
    AnswerCacheOptions options;
    options.redis_prefix = "test:";
    options.mac_key = mac_key;
    return options;
  }
  static AnswerCache::Answer AnswerWith(const std::string& permission,
                                        const std::string& versions) {
    auto answer = std::make_shared<v1::ResolvePermissionsResponse>();
    answer->add_grants()->set_permission(permission);
    answer->set_versions(versions);
    return answer;
  }
  std::unique_ptr<::custos::testing::RedisServer> redis_server_;
  std::unique_ptr<RedisClient> redis_;
  FakeClock clock_;
};

TEST_F(AnswerCacheTest, ServesOnlyAuthenticValuesWithTheCurrentTag) {
  AnswerCache writer(redis_.get(), &clock_, Options("key-one"));
  writer.Remember("admin", AnswerWith("site.members.list", "v1"));
  writer.Remember("viewer", AnswerWith("cases.self.view", "v1"));
  // A fresh process (empty memory), same key: the value is served.
  AnswerCache reader(redis_.get(), &clock_, Options("key-one"));
  ASSERT_TRUE(reader.FromRedis("admin", "v1"));
  EXPECT_FALSE(reader.FromRedis("admin", "v2"));  // another tag: a miss
  // The admin's value moved under the viewer's key is a miss.
  auto admin_value = redis_->Get("test:admin");
  ASSERT_TRUE(admin_value.ok() && admin_value->has_value());
  ASSERT_TRUE(
      redis_->SetEx("test:viewer", **admin_value, absl::Minutes(1)).ok());
  AnswerCache fresh(redis_.get(), &clock_, Options("key-one"));
  EXPECT_FALSE(fresh.FromRedis("viewer", "v1"));
  EXPECT_EQ(fresh.stats().forged, 1);
  // Another store's key cannot read ours.
  AnswerCache other(redis_.get(), &clock_, Options("key-two"));
  EXPECT_FALSE(other.FromRedis("admin", "v1"));
}

TEST_F(AnswerCacheTest, ComputesOncePerKeyAtATime) {
  AnswerCache cache(redis_.get(), &clock_, Options("k"));
  std::atomic<int> computed{0};
  absl::Notification release;
  std::vector<std::thread> callers;
  for (int i = 0; i < 8; ++i) {
    callers.emplace_back([&] {
      auto answer = cache.ComputeOnce(
          "key", [&]() -> absl::StatusOr<AnswerCache::Answer> {
            ++computed;
            release.WaitForNotificationWithTimeout(absl::Seconds(5));
            return AnswerWith("p", "v");
          });
      EXPECT_TRUE(answer.ok());
    });
  }
  // Wait (bounded) until the leader computes, then let it finish.
  for (int i = 0; i < 500 && computed.load() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  absl::SleepFor(absl::Milliseconds(50));
  release.Notify();
  for (auto& caller : callers) caller.join();
  EXPECT_GE(computed.load(), 1);
  EXPECT_LE(computed.load(), 8);
  EXPECT_LT(computed.load(), 8) << "every caller computed: no single flight";
  EXPECT_TRUE(cache.FromMemory("key", "v"));
}

TEST_F(AnswerCacheTest, MemoryEntriesExpireWithTheTtl) {
  AnswerCacheOptions options = Options("k");
  options.ttl = absl::Seconds(10);
  AnswerCache cache(redis_.get(), &clock_, options);
  cache.Remember("key", AnswerWith("p", "v"));
  EXPECT_TRUE(cache.FromMemory("key", "v"));
  clock_.Advance(absl::Seconds(11));
  EXPECT_FALSE(cache.FromMemory("key", "v"));
}

// --- The customer feed follower against the fake peer.

TEST(CustomerFeedTest, R1_FreshOnlyAfterAReadAndForAtMostTheMaxLag) {
  FakeCustomerSource source;
  FactVersions versions;
  FakeClock clock;
  CustomerFeedFollower feed(&source, &versions, &clock,
                            {absl::Seconds(1), 1000});
  EXPECT_FALSE(feed.Fresh());  // catches up before serving anything cached
  ASSERT_TRUE(feed.Poll().ok());
  EXPECT_TRUE(feed.Fresh());
  clock.Advance(absl::Milliseconds(999));
  EXPECT_TRUE(feed.Fresh());
  clock.Advance(absl::Milliseconds(2));
  EXPECT_FALSE(feed.Fresh());
  source.SetAvailable(false);
  EXPECT_FALSE(feed.Poll().ok());
  EXPECT_FALSE(feed.Fresh());  // a peer down never extends the lease
}

TEST(CustomerFeedTest, R1_AppliesEveryChangeInOrderAcrossPages) {
  FakeCustomerSource source;
  FactVersions versions;
  FakeClock clock;
  CustomerFeedFollower feed(&source, &versions, &clock, {absl::Seconds(1), 2});
  ASSERT_TRUE(feed.Poll().ok());  // at the head: nothing known yet
  for (int i = 0; i < 5; ++i) {
    source.SetCustomer(absl::StrCat("c", i), cv1::MANAGEMENT_TYPE_PARTNER);
  }
  source.SetCustomer("c0", cv1::MANAGEMENT_TYPE_CUSTOMER);
  ASSERT_TRUE(feed.Poll().ok());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(versions.Customer(absl::StrCat("c", i))) << i;
  }
  EXPECT_EQ(versions.Customer("c0")->order, 6);
  EXPECT_TRUE(feed.Reflects(source.HeadToken()));
}

TEST(CustomerFeedTest, R1_AFeedThatCannotContinueForgetsEveryCustomer) {
  FakeCustomerSource source;
  FactVersions versions;
  FakeClock clock;
  CustomerFeedFollower feed(&source, &versions, &clock);
  source.SetCustomer("c", cv1::MANAGEMENT_TYPE_PARTNER);
  ASSERT_TRUE(feed.Poll().ok());
  source.SetCustomer("c", cv1::MANAGEMENT_TYPE_CUSTOMER);
  ASSERT_TRUE(feed.Poll().ok());
  ASSERT_TRUE(versions.Customer("c"));
  const ConsistencyToken old_token = source.HeadToken();
  source.NewIncarnation("00000000000000c2");  // the store was recreated
  ASSERT_TRUE(feed.Poll().ok());
  EXPECT_EQ(feed.resets(), 1);
  EXPECT_FALSE(versions.Customer("c"));
  EXPECT_EQ(feed.incarnation(), "00000000000000c2");
  EXPECT_FALSE(feed.Reflects(old_token));  // the caller reads through
}

// --- The composed engine: fakes for the peer and the clock, a temporary
// SQLite access store.

class PermissionEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policy_ = DefaultPolicy();
    auto db = AccessStore::Open(
        absl::StrCat("sqlite:", ::custos::testing::MakeTempDir(), "/a.db"));
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
    redis_ = std::make_unique<RedisClient>(RedisOptions());  // disabled
    loader_ = std::make_unique<SiteFactsLoader>(db_.get());
    feed_ = std::make_unique<CustomerFeedFollower>(&customers_, &versions_,
                                                   &clock_);
    cache_ = std::make_unique<AnswerCache>(redis_.get(), &clock_,
                                           AnswerCacheOptions());
    engine_ = std::make_unique<PermissionEngine>(policy_.get(), loader_.get(),
                                                 &customers_, feed_.get(),
                                                 &versions_, cache_.get());
  }

  bool Allowed(const std::string& user, const Resource& resource,
               const std::string& permission, Freshness freshness = {}) {
    auto answer = engine_->Resolve(Subject{user, {}}, resource, freshness);
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer.ok() && Has(**answer, permission);
  }

  // A site write as AccessLogic makes it: one transaction, then Publish.
  void AddMember(const std::string& site, const std::string& user,
                 v1::SiteRole role) {
    const auto generations = engine_->generations();
    WrittenChanges changes;
    ASSERT_TRUE(
        db_->Write([&](Connection& db) -> absl::Status {
             changes = WrittenChanges();
             ASSIGN_OR_RETURN(auto site_row, AccessStore::FindSite(db, site));
             if (!site_row) {
               v1::Site created;
               created.set_display_name(site);
               RETURN_IF_ERROR(
                   AccessStore::InsertSite(db, site, created, clock_.Now())
                       .status());
             }
             RETURN_IF_ERROR(
                 AccessStore::UpsertMember(db, site, user, role, clock_.Now()));
             ASSIGN_OR_RETURN(
                 VersionStamp version,
                 AccessStore::BumpSiteVersion(db, site, clock_.Now()));
             changes.sites.push_back({site, version});
             ASSIGN_OR_RETURN(
                 changes.seq,
                 AccessStore::BumpCounter(db, AccessStore::kWriteSequence));
             return absl::OkStatus();
           })
            .ok());
    engine_->Publish(changes, generations);
  }

  std::unique_ptr<const Policy> policy_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<RedisClient> redis_;
  FakeClock clock_;
  FakeCustomerSource customers_;
  FactVersions versions_;
  std::unique_ptr<SiteFactsLoader> loader_;
  std::unique_ptr<CustomerFeedFollower> feed_;
  std::unique_ptr<AnswerCache> cache_;
  std::unique_ptr<PermissionEngine> engine_;
};

TEST_F(PermissionEngineTest, R7_APublishedWriteIsSeenByTheNextCheck) {
  const Resource site{Resource::Kind::kSite, "acme"};
  AddMember("acme", "joan", v1::SITE_ROLE_VIEW_ONLY);
  EXPECT_FALSE(Allowed("joan", site, "site.members.list"));
  EXPECT_FALSE(Allowed("joan", site, "site.members.list"));  // cached
  AddMember("acme", "joan", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  EXPECT_TRUE(Allowed("joan", site, "site.members.list"));
  EXPECT_TRUE(engine_->ResolveFromMemory(Subject{"joan", {}}, site, {}));
}

TEST_F(PermissionEngineTest, R1_CustomerAnswersAreReadThroughUnlessFresh) {
  const Resource acme{Resource::Kind::kCustomer, "acme"};
  customers_.SetCustomer("acme", cv1::MANAGEMENT_TYPE_CUSTOMER);
  customers_.SetRelation("acme", "oscar", cv1::CUSTOMER_RELATION_CUSTOMER_USER);
  // Before the feed was read: every answer is read through.
  EXPECT_TRUE(Allowed("oscar", acme, "portal.login"));
  EXPECT_TRUE(Allowed("oscar", acme, "portal.login"));
  EXPECT_EQ(customers_.facts_reads(), 2);
  ASSERT_TRUE(feed_->Poll().ok());
  EXPECT_TRUE(Allowed("oscar", acme, "portal.login"));
  const int reads = customers_.facts_reads();
  EXPECT_TRUE(Allowed("oscar", acme, "portal.login"));  // cached now
  EXPECT_EQ(customers_.facts_reads(), reads);
  // A change the feed has not brought yet, with its token: read through.
  customers_.SetCustomer("acme", cv1::MANAGEMENT_TYPE_PARTNER);
  Freshness with_token;
  with_token.customers_token = customers_.HeadToken();
  EXPECT_FALSE(Allowed("oscar", acme, "portal.login", with_token));
  // Without one, once the lease runs out and the peer is down: never the
  // cached answer, an error instead.
  clock_.Advance(absl::Seconds(2));
  customers_.SetAvailable(false);
  auto answer = engine_->Resolve(Subject{"oscar", {}}, acme, {});
  EXPECT_TRUE(absl::IsUnavailable(answer.status())) << answer.status();
  EXPECT_FALSE(engine_->ResolveFromMemory(Subject{"oscar", {}}, acme, {}));
}

TEST_F(PermissionEngineTest, R1_ADeletedCustomerIsNeverAnsweredFromBefore) {
  const Resource acme{Resource::Kind::kCustomer, "acme"};
  customers_.SetCustomer("acme", cv1::MANAGEMENT_TYPE_PARTNER);
  customers_.SetRelation("acme", "bill", cv1::CUSTOMER_RELATION_PARTNER_ADMIN);
  ASSERT_TRUE(feed_->Poll().ok());
  EXPECT_TRUE(Allowed("bill", acme, "portal.manage_customer"));
  customers_.DeleteCustomer("acme");
  ASSERT_TRUE(feed_->Poll().ok());
  EXPECT_FALSE(Allowed("bill", acme, "portal.manage_customer"));
  customers_.SetCustomer("acme", cv1::MANAGEMENT_TYPE_CUSTOMER);
  customers_.SetRelation("acme", "bill", cv1::CUSTOMER_RELATION_PARTNER_ADMIN);
  ASSERT_TRUE(feed_->Poll().ok());
  EXPECT_FALSE(Allowed("bill", acme, "portal.manage_customer"));
  EXPECT_TRUE(Allowed("bill", acme, "customer.view"));
}

}  // namespace
}  // namespace custos::access
