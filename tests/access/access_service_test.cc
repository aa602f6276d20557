// Integration tests of access_service: the real binary with a real
// redis-server and the real customer_management_service, on loopback, called
// over gRPC with real tokens. Test names carry the DESIGN rule they check.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/auth.h"
#include "custos/access/v1/access_service.grpc.pb.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
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
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr char kSecret[] = "access-integration-secret-0123456789";
constexpr char kAccessBinary[] = "services/access_service/access_service";
constexpr char kCustomersBinary[] =
    "services/customer_management_service/customer_management_service";

std::string ReasonOf(const grpc::Status& status) {
  google::rpc::Status details;
  details.ParseFromString(status.error_details());
  for (const auto& any : details.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) return info.reason();
  }
  return "";
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

std::string Token(const std::string& subject,
                  std::vector<std::string> roles = {}) {
  return ::custos::testing::TestToken(kSecret, subject, std::move(roles));
}

class AccessServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ::custos::testing::WriteFile(dir_ + "/secret", kSecret);
    ::custos::testing::WriteFile(dir_ + "/service-token",
                                 Token("access-service", {"service"}));
    redis_ = std::make_unique<RedisServer>(FreePort());
    ASSERT_TRUE(redis_->Start());
    customers_port_ = FreePort();
    access_port_ = FreePort();
    customers_ = std::make_unique<ServiceProcess>(
        kCustomersBinary,
        std::vector<std::string>{
            absl::StrCat("--listen=127.0.0.1:", customers_port_),
            absl::StrCat("--database=", TestDatabase(dir_, "customers")),
            absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
            absl::StrCat("--access_address=127.0.0.1:", access_port_),
            absl::StrCat("--service_token_file=", dir_, "/service-token")});
    ASSERT_TRUE(
        customers_->Start(absl::StrCat("127.0.0.1:", customers_port_)).ok());
    StartAccess({});
    customers_stub_ = cv1::CustomerManagementService::NewStub(
        LoopbackChannel(customers_port_));
    admin_ = Token("root", {"platform_admin"});
    care_ = Token("carla", {"customer_care"});
    service_ = Token("portal-backend", {"service"});
  }

  void StartAccess(std::vector<std::string> extra,
                   const std::string& database = "access") {
    std::vector<std::string> args{
        absl::StrCat("--listen=127.0.0.1:", access_port_),
        absl::StrCat("--database=", TestDatabase(dir_, database)),
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--redis=127.0.0.1:", redis_->port()),
        absl::StrCat("--customers_address=127.0.0.1:", customers_port_),
        absl::StrCat("--service_token_file=", dir_, "/service-token"),
        absl::StrCat("--policy_file=", std::getenv("CUSTOS_SOURCE_DIR"),
                     "/deploy/base/policy/default_policy.textproto")};
    args.insert(args.end(), extra.begin(), extra.end());
    access_ = std::make_unique<ServiceProcess>(kAccessBinary, args);
    ASSERT_TRUE(access_->Start(absl::StrCat("127.0.0.1:", access_port_)).ok());
    stub_ = v1::AccessService::NewStub(LoopbackChannel(access_port_));
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + token);
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(20));
    return context;
  }

  void CreateSite(const std::string& id, const std::string& customer = "") {
    v1::CreateSiteRequest request;
    request.set_site_id(id);
    request.mutable_site()->set_display_name("Site " + id);
    request.mutable_site()->set_customer(customer);
    v1::Site site;
    auto status = stub_->CreateSite(As(care_).get(), request, &site);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  grpc::Status Request(const std::string& user, const std::string& site,
                       v1::SiteRole role, v1::AccessRequest* created) {
    v1::CreateAccessRequestRequest request;
    request.set_parent("sites/" + site);
    request.mutable_access_request()->set_requested_role(role);
    request.mutable_access_request()->set_justification("I work there");
    return stub_->CreateAccessRequest(As(Token(user)).get(), request, created);
  }

  grpc::Status Approve(const std::string& token, const std::string& name,
                       v1::AccessRequest* decided) {
    v1::ApproveAccessRequestRequest request;
    request.set_name(name);
    return stub_->ApproveAccessRequest(As(token).get(), request, decided);
  }

  // Makes `user` a member with `role` the way the product does: a request,
  // approved by Customer Care.
  void Join(const std::string& user, const std::string& site,
            v1::SiteRole role) {
    v1::AccessRequest created;
    auto status = Request(user, site, role, &created);
    ASSERT_TRUE(status.ok()) << status.error_message();
    v1::AccessRequest decided;
    status = Approve(care_, created.name(), &decided);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  grpc::Status SetRole(const std::string& token, const std::string& site,
                       const std::string& user, v1::SiteRole role,
                       v1::SiteMember* updated) {
    v1::UpdateSiteMemberRequest request;
    request.mutable_site_member()->set_name(
        absl::StrCat("sites/", site, "/members/", user));
    request.mutable_site_member()->set_role(role);
    request.mutable_update_mask()->add_paths("role");
    return stub_->UpdateSiteMember(As(token).get(), request, updated);
  }

  // Whether `user` (with staff `roles`) holds `permission` on `resource`,
  // asked by a backend with role `service`.
  bool Allowed(const std::string& user, const std::string& resource,
               const std::string& permission,
               std::vector<std::string> roles = {}) {
    v1::CheckPermissionRequest request;
    request.set_principal("users/" + user);
    for (const auto& role : roles) request.add_principal_roles(role);
    request.set_resource(resource);
    request.set_permission(permission);
    v1::CheckPermissionResponse response;
    auto status =
        stub_->CheckPermission(As(service_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.allowed();
  }

  void CreatePilot(const std::string& id, v1::Pilot::Stage stage) {
    v1::CreatePilotRequest request;
    request.set_pilot_id(id);
    request.mutable_pilot()->set_display_name("Entitlement view");
    request.mutable_pilot()->add_permissions("software.download");
    request.mutable_pilot()->add_permissions("licenses.generate");
    request.mutable_pilot()->set_stage(stage);
    v1::Pilot pilot;
    auto status = stub_->CreatePilot(As(admin_).get(), request, &pilot);
    ASSERT_TRUE(status.ok()) << status.error_message();
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

TEST_F(AccessServiceTest, R5_R6_JoinRequestWaitsForTheSiteAdministrators) {
  CreateSite("acme");
  Join("bill", "acme", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  v1::AccessRequest created;
  ASSERT_TRUE(
      Request("sally", "acme", v1::SITE_ROLE_SITE_MEMBER, &created).ok());
  EXPECT_EQ(created.state(), v1::AccessRequest::STATE_PENDING);
  EXPECT_EQ(created.approver(),
            v1::AccessRequest::APPROVER_SITE_ADMINISTRATORS);
  EXPECT_EQ(created.requester(), "users/sally");

  // Bill sees it among the site's requests and approves it.
  v1::ListAccessRequestsRequest list;
  list.set_parent("sites/acme");
  list.set_state(v1::AccessRequest::STATE_PENDING);
  v1::ListAccessRequestsResponse pending;
  ASSERT_TRUE(
      stub_->ListAccessRequests(As(Token("bill")).get(), list, &pending).ok());
  ASSERT_EQ(pending.access_requests_size(), 1);
  EXPECT_EQ(pending.access_requests(0).name(), created.name());

  v1::AccessRequest decided;
  ASSERT_TRUE(Approve(Token("bill"), created.name(), &decided).ok());
  EXPECT_EQ(decided.state(), v1::AccessRequest::STATE_APPROVED);
  EXPECT_EQ(decided.decided_by(), "users/bill");
  EXPECT_TRUE(Allowed("sally", "sites/acme", "cases.self.create"));

  // R5: a member asking for another role is a role-change request.
  v1::AccessRequest change;
  ASSERT_TRUE(
      Request("sally", "acme", v1::SITE_ROLE_SITE_ADMINISTRATOR, &change).ok());
  EXPECT_EQ(change.current_role(), v1::SITE_ROLE_SITE_MEMBER);
  // ... and asking for the role one already has is refused.
  v1::AccessRequest same;
  auto status =
      Request("bill", "acme", v1::SITE_ROLE_SITE_ADMINISTRATOR, &same);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ReasonOf(status), "ALREADY_HAS_ROLE");
}

TEST_F(AccessServiceTest,
       R6_SiteWithoutAdministratorSendsRequestsToCustomerCare) {
  CreateSite("lonely");
  v1::AccessRequest created;
  ASSERT_TRUE(
      Request("joan", "lonely", v1::SITE_ROLE_VIEW_ONLY, &created).ok());
  EXPECT_EQ(created.approver(), v1::AccessRequest::APPROVER_CUSTOMER_CARE);

  v1::ListAccessRequestsRequest queue;
  queue.set_parent("sites/-");
  queue.set_customer_care_queue(true);
  v1::ListAccessRequestsResponse listed;
  ASSERT_TRUE(stub_->ListAccessRequests(As(care_).get(), queue, &listed).ok());
  ASSERT_EQ(listed.access_requests_size(), 1);
  EXPECT_EQ(listed.access_requests(0).name(), created.name());
  // Only Customer Care reads its queue.
  auto status =
      stub_->ListAccessRequests(As(Token("joan")).get(), queue, &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  v1::AccessRequest decided;
  ASSERT_TRUE(Approve(care_, created.name(), &decided).ok());
  EXPECT_TRUE(Allowed("joan", "sites/lonely", "cases.self.view"));
}

TEST_F(AccessServiceTest, R6_NobodyApprovesTheirOwnRequest) {
  CreateSite("acme");
  Join("bill", "acme", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  Join("ann", "acme", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  // Bill, an administrator, asks to step down: Ann decides, not Bill.
  v1::AccessRequest created;
  ASSERT_TRUE(
      Request("bill", "acme", v1::SITE_ROLE_SITE_MEMBER, &created).ok());
  EXPECT_EQ(created.approver(),
            v1::AccessRequest::APPROVER_SITE_ADMINISTRATORS);
  v1::AccessRequest decided;
  auto status = Approve(Token("bill"), created.name(), &decided);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ReasonOf(status), "SELF_APPROVAL");
  // Customer Care cannot approve its own request either.
  CreateSite("other");
  v1::AccessRequest carla;
  ASSERT_TRUE(Request("carla", "other", v1::SITE_ROLE_VIEW_ONLY, &carla).ok());
  status = Approve(care_, carla.name(), &decided);
  EXPECT_EQ(ReasonOf(status), "SELF_APPROVAL");
  ASSERT_TRUE(Approve(Token("ann"), created.name(), &decided).ok());
}

TEST_F(AccessServiceTest, R6_SoleAdministratorsOwnRequestGoesToCustomerCare) {
  CreateSite("acme");
  Join("bill", "acme", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  v1::AccessRequest created;
  ASSERT_TRUE(Request("bill", "acme", v1::SITE_ROLE_VIEW_ONLY, &created).ok());
  EXPECT_EQ(created.approver(), v1::AccessRequest::APPROVER_CUSTOMER_CARE);
}

TEST_F(AccessServiceTest,
       R6_DecidingTwiceIsANoOpAndDecidedRequestsStayDecided) {
  CreateSite("acme");
  v1::AccessRequest first;
  ASSERT_TRUE(Request("joan", "acme", v1::SITE_ROLE_VIEW_ONLY, &first).ok());
  v1::AccessRequest approved;
  ASSERT_TRUE(Approve(care_, first.name(), &approved).ok());
  v1::AccessRequest again;
  ASSERT_TRUE(Approve(care_, first.name(), &again).ok());
  EXPECT_EQ(again.state(), v1::AccessRequest::STATE_APPROVED);
  EXPECT_EQ(again.decide_time().seconds(), approved.decide_time().seconds());
  v1::RejectAccessRequestRequest reject;
  reject.set_name(first.name());
  reject.set_reason("changed my mind");
  v1::AccessRequest rejected;
  auto status = stub_->RejectAccessRequest(As(care_).get(), reject, &rejected);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ReasonOf(status), "REQUEST_DECIDED");

  v1::AccessRequest second;
  ASSERT_TRUE(Request("joan", "acme", v1::SITE_ROLE_SITE_MEMBER, &second).ok());
  reject.set_name(second.name());
  ASSERT_TRUE(
      stub_->RejectAccessRequest(As(care_).get(), reject, &rejected).ok());
  EXPECT_EQ(rejected.decision_reason(), "changed my mind");
  status = Approve(care_, second.name(), &approved);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_FALSE(Allowed("joan", "sites/acme", "cases.self.create"));

  // The requester cancels a pending request; nobody else can.
  v1::AccessRequest third;
  ASSERT_TRUE(Request("joan", "acme", v1::SITE_ROLE_SITE_MEMBER, &third).ok());
  v1::CancelAccessRequestRequest cancel;
  cancel.set_name(third.name());
  v1::AccessRequest cancelled;
  EXPECT_EQ(stub_->CancelAccessRequest(As(care_).get(), cancel, &cancelled)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(
      stub_->CancelAccessRequest(As(Token("joan")).get(), cancel, &cancelled)
          .ok());
  EXPECT_EQ(cancelled.state(), v1::AccessRequest::STATE_CANCELLED);
}

TEST_F(AccessServiceTest,
       R6_LastAdministratorLeavingHandsPendingToCustomerCare) {
  CreateSite("acme");
  Join("bill", "acme", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  v1::AccessRequest waiting;
  ASSERT_TRUE(
      Request("sally", "acme", v1::SITE_ROLE_SITE_MEMBER, &waiting).ok());
  ASSERT_EQ(waiting.approver(),
            v1::AccessRequest::APPROVER_SITE_ADMINISTRATORS);
  // Customer Care removes Bill, the last administrator.
  v1::DeleteSiteMemberRequest remove;
  remove.set_name("sites/acme/members/bill");
  v1::DeleteSiteMemberResponse removed;
  ASSERT_TRUE(stub_->DeleteSiteMember(As(care_).get(), remove, &removed).ok());

  v1::GetAccessRequestRequest get;
  get.set_name(waiting.name());
  v1::AccessRequest now;
  ASSERT_TRUE(stub_->GetAccessRequest(As(care_).get(), get, &now).ok());
  EXPECT_EQ(now.approver(), v1::AccessRequest::APPROVER_CUSTOMER_CARE);
  v1::ListAccessRequestsRequest queue;
  queue.set_parent("sites/-");
  queue.set_customer_care_queue(true);
  v1::ListAccessRequestsResponse listed;
  ASSERT_TRUE(stub_->ListAccessRequests(As(care_).get(), queue, &listed).ok());
  ASSERT_EQ(listed.access_requests_size(), 1);
  EXPECT_EQ(listed.access_requests(0).name(), waiting.name());
}

TEST_F(AccessServiceTest, R6_UnansweredRequestsExpire) {
  access_.reset();
  StartAccess({"--access_request_ttl=1s", "--expiry_sweep_interval=200ms"},
              "expiring");
  CreateSite("acme");
  v1::AccessRequest created;
  ASSERT_TRUE(Request("joan", "acme", v1::SITE_ROLE_VIEW_ONLY, &created).ok());
  v1::GetAccessRequestRequest get;
  get.set_name(created.name());
  v1::AccessRequest seen;
  // Bounded wait for the expiry (1 s) and the sweep (200 ms).
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(stub_->GetAccessRequest(As(care_).get(), get, &seen).ok());
    if (seen.state() == v1::AccessRequest::STATE_EXPIRED) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(seen.state(), v1::AccessRequest::STATE_EXPIRED);
  v1::AccessRequest decided;
  auto status = Approve(care_, created.name(), &decided);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ReasonOf(status), "REQUEST_EXPIRED");
  // An expired request does not block a new one.
  v1::AccessRequest again;
  EXPECT_TRUE(Request("joan", "acme", v1::SITE_ROLE_VIEW_ONLY, &again).ok());
}

TEST_F(AccessServiceTest,
       R7_SeedStoryBillManagesRolesButOnlyCustomerCareRemoves) {
  CreateSite("acme");
  Join("bill", "acme", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  Join("sally", "acme", v1::SITE_ROLE_SITE_MEMBER);
  Join("joan", "acme", v1::SITE_ROLE_VIEW_ONLY);
  const std::string bill = Token("bill");

  // The "User's Access" tab: Bill sees Sally and Joan with their roles.
  v1::ListSiteMembersRequest list;
  list.set_parent("sites/acme");
  v1::ListSiteMembersResponse members;
  ASSERT_TRUE(stub_->ListSiteMembers(As(bill).get(), list, &members).ok());
  std::map<std::string, v1::SiteRole> roles;
  for (const auto& m : members.site_members()) roles[m.name()] = m.role();
  EXPECT_EQ(roles["sites/acme/members/sally"], v1::SITE_ROLE_SITE_MEMBER);
  EXPECT_EQ(roles["sites/acme/members/joan"], v1::SITE_ROLE_VIEW_ONLY);
  EXPECT_EQ(roles.size(), 3u);
  // Sally, a member, cannot see the tab.
  EXPECT_EQ(stub_->ListSiteMembers(As(Token("sally")).get(), list, &members)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Bill changes Joan's role.
  v1::SiteMember joan;
  ASSERT_TRUE(
      SetRole(bill, "acme", "joan", v1::SITE_ROLE_SITE_MEMBER, &joan).ok());
  EXPECT_EQ(joan.role(), v1::SITE_ROLE_SITE_MEMBER);
  EXPECT_TRUE(Allowed("joan", "sites/acme", "cases.self.create"));
  // Sally cannot.
  EXPECT_EQ(
      SetRole(Token("sally"), "acme", "joan", v1::SITE_ROLE_VIEW_ONLY, &joan)
          .error_code(),
      grpc::StatusCode::PERMISSION_DENIED);

  // Bill cannot remove Joan; Customer Care can.
  v1::DeleteSiteMemberRequest remove;
  remove.set_name("sites/acme/members/joan");
  v1::DeleteSiteMemberResponse removed;
  EXPECT_EQ(
      stub_->DeleteSiteMember(As(bill).get(), remove, &removed).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(stub_->DeleteSiteMember(As(care_).get(), remove, &removed).ok());
  EXPECT_FALSE(Allowed("joan", "sites/acme", "cases.self.view"));

  // Every change is in the site's audit log.
  custos::common::v1::ListAuditEventsRequest audit;
  audit.set_parent("sites/acme");
  custos::common::v1::ListAuditEventsResponse events;
  ASSERT_TRUE(stub_->ListAuditEvents(As(care_).get(), audit, &events).ok());
  std::vector<std::string> actions;
  for (const auto& e : events.audit_events()) actions.push_back(e.action());
  EXPECT_THAT(actions, ::testing::Contains("DeleteSiteMember"));
  EXPECT_THAT(actions, ::testing::Contains("UpdateSiteMember"));
}

// The permission table of DESIGN, row by row (pilot permissions generally
// available, so only the roles decide).
TEST_F(AccessServiceTest, PermissionTableRowByRow) {
  CreateSite("acme");
  CreatePilot("entitlements", v1::Pilot::STAGE_GENERAL_AVAILABILITY);
  Join("viewer", "acme", v1::SITE_ROLE_VIEW_ONLY);
  Join("member", "acme", v1::SITE_ROLE_SITE_MEMBER);
  Join("admin", "acme", v1::SITE_ROLE_SITE_ADMINISTRATOR);
  struct Row {
    std::string permission;
    bool view_only, site_member, site_admin, customer_care;
  };
  const std::vector<Row> table = {
      {"cases.self.view", true, true, true, false},
      {"cases.self.create", false, true, true, false},
      {"cases.account.view", false, false, true, false},
      {"cases.account.create", false, false, true, false},
      {"software.download", true, true, true, false},
      {"licenses.generate", true, true, true, false},
      {"site.requests.approve", false, false, true, true},
      {"site.members.list", false, false, true, true},
      {"site.members.update_role", false, false, true, true},
      {"site.members.remove", false, false, false, true},
  };
  for (const Row& row : table) {
    SCOPED_TRACE(row.permission);
    EXPECT_EQ(Allowed("viewer", "sites/acme", row.permission), row.view_only);
    EXPECT_EQ(Allowed("member", "sites/acme", row.permission), row.site_member);
    EXPECT_EQ(Allowed("admin", "sites/acme", row.permission), row.site_admin);
    EXPECT_EQ(Allowed("carla", "sites/acme", row.permission, {"customer_care"}),
              row.customer_care);
    EXPECT_FALSE(Allowed("stranger", "sites/acme", row.permission));
  }
}

TEST_F(AccessServiceTest, R9_PilotGatesPermissionsUntilGeneralAvailability) {
  CreateSite("acme");
  CreateSite("globex");
  Join("viewer", "acme", v1::SITE_ROLE_VIEW_ONLY);
  Join("pat", "acme", v1::SITE_ROLE_VIEW_ONLY);
  Join("gus", "globex", v1::SITE_ROLE_SITE_MEMBER);
  // No pilot covers them yet: nobody downloads.
  EXPECT_FALSE(Allowed("viewer", "sites/acme", "software.download"));
  CreatePilot("entitlements", v1::Pilot::STAGE_PILOT);
  EXPECT_FALSE(Allowed("viewer", "sites/acme", "software.download"));

  // A user participant gets them on their sites; a site participant for
  // all its members.
  v1::AddPilotParticipantRequest add;
  add.set_pilot("pilots/entitlements");
  add.set_participant("users/pat");
  v1::Pilot pilot;
  ASSERT_TRUE(stub_->AddPilotParticipant(As(admin_).get(), add, &pilot).ok());
  EXPECT_TRUE(Allowed("pat", "sites/acme", "software.download"));
  EXPECT_FALSE(Allowed("viewer", "sites/acme", "software.download"));
  add.set_participant("sites/globex");
  ASSERT_TRUE(stub_->AddPilotParticipant(As(admin_).get(), add, &pilot).ok());
  EXPECT_TRUE(Allowed("gus", "sites/globex", "licenses.generate"));
  EXPECT_THAT(pilot.participants(),
              UnorderedElementsAre("users/pat", "sites/globex"));

  v1::ResolvePermissionsRequest resolve;
  resolve.set_principal("users/pat");
  resolve.set_resource("sites/acme");
  v1::ResolvePermissionsResponse resolved;
  ASSERT_TRUE(
      stub_->ResolvePermissions(As(service_).get(), resolve, &resolved).ok());
  bool explained = false;
  for (const auto& grant : resolved.grants()) {
    if (grant.permission() == "software.download") {
      EXPECT_THAT(grant.reasons(),
                  ElementsAre("role SITE_ROLE_VIEW_ONLY",
                              "pilot pilots/entitlements (user participant)"));
      explained = true;
    }
  }
  EXPECT_TRUE(explained);

  // Removing the participant takes them away again.
  v1::RemovePilotParticipantRequest remove;
  remove.set_pilot("pilots/entitlements");
  remove.set_participant("users/pat");
  ASSERT_TRUE(
      stub_->RemovePilotParticipant(As(admin_).get(), remove, &pilot).ok());
  EXPECT_FALSE(Allowed("pat", "sites/acme", "software.download"));

  // GA: everyone whose role grants them.
  v1::UpdatePilotRequest ga;
  ga.mutable_pilot()->set_name("pilots/entitlements");
  ga.mutable_pilot()->set_stage(v1::Pilot::STAGE_GENERAL_AVAILABILITY);
  ga.mutable_update_mask()->add_paths("stage");
  ASSERT_TRUE(stub_->UpdatePilot(As(admin_).get(), ga, &pilot).ok());
  EXPECT_TRUE(Allowed("viewer", "sites/acme", "software.download"));
  EXPECT_TRUE(Allowed("pat", "sites/acme", "software.download"));
  EXPECT_FALSE(Allowed("stranger", "sites/acme", "software.download"));
  // And no way back.
  ga.mutable_pilot()->set_stage(v1::Pilot::STAGE_PILOT);
  auto status = stub_->UpdatePilot(As(admin_).get(), ga, &pilot);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(AccessServiceTest, R1_CustomerPermissionsFollowTheManagementType) {
  // The customer, its partner and users live in CustomerManagementService.
  cv1::CreatePartnerRequest partner;
  partner.set_partner_id("northwind");
  partner.mutable_partner()->set_display_name("Northwind");
  cv1::Partner created_partner;
  ASSERT_TRUE(customers_stub_
                  ->CreatePartner(As(admin_).get(), partner, &created_partner)
                  .ok());
  cv1::CreatePartnerUserRequest bill;
  bill.set_parent("partners/northwind");
  bill.set_user_id("bill");
  bill.mutable_partner_user()->set_role(cv1::PARTNER_ROLE_PARTNER_ADMIN);
  cv1::PartnerUser partner_user;
  ASSERT_TRUE(
      customers_stub_->CreatePartnerUser(As(admin_).get(), bill, &partner_user)
          .ok());
  cv1::CreateCustomerRequest customer;
  customer.set_customer_id("acme");
  customer.mutable_customer()->set_display_name("Acme");
  customer.mutable_customer()->set_partner("partners/northwind");
  customer.mutable_customer()->set_management_type(
      cv1::MANAGEMENT_TYPE_PARTNER);
  customer.mutable_customer()->set_communications(cv1::COMMUNICATIONS_SHARED);
  cv1::Customer acme;
  ASSERT_TRUE(
      customers_stub_->CreateCustomer(As(admin_).get(), customer, &acme).ok());
  cv1::CreateCustomerUserRequest joan;
  joan.set_parent("customers/acme");
  joan.set_user_id("joan");
  cv1::CustomerUser customer_user;
  ASSERT_TRUE(customers_stub_
                  ->CreateCustomerUser(As(admin_).get(), joan, &customer_user)
                  .ok());
  ASSERT_TRUE(customers_stub_
                  ->GetCustomer(
                      As(admin_).get(),
                      [] {
                        cv1::GetCustomerRequest r;
                        r.set_name("customers/acme");
                        return r;
                      }(),
                      &acme)
                  .ok());

  struct Expectation {
    cv1::ManagementType type;
    bool joan_logs_in;
    bool bill_manages;
  };
  for (const Expectation& e : std::vector<Expectation>{
           {cv1::MANAGEMENT_TYPE_PARTNER, false, true},
           {cv1::MANAGEMENT_TYPE_CUSTOMER, true, false},
           {cv1::MANAGEMENT_TYPE_CO_MANAGED, true, true}}) {
    SCOPED_TRACE(cv1::ManagementType_Name(e.type));
    cv1::SetManagementSettingsRequest set;
    set.set_customer("customers/acme");
    set.mutable_settings()->set_management_type(e.type);
    set.mutable_settings()->set_communications(cv1::COMMUNICATIONS_SHARED);
    set.set_etag(acme.etag());
    ASSERT_TRUE(customers_stub_
                    ->SetManagementSettings(As(Token("bill")).get(), set, &acme)
                    .ok());
    // Checked at once after the change is acknowledged.
    EXPECT_EQ(Allowed("joan", "customers/acme", "portal.login"),
              e.joan_logs_in);
    EXPECT_EQ(Allowed("bill", "customers/acme", "portal.manage_customer"),
              e.bill_manages);
    EXPECT_TRUE(Allowed("bill", "customers/acme", "customer.update"));
    EXPECT_FALSE(Allowed("joan", "customers/acme", "portal.manage_customer"));
    EXPECT_FALSE(Allowed("stranger", "customers/acme", "portal.login"));
  }
}

// DESIGN §1: a change made while AccessService is down reaches it through
// CustomerManagementService's outbox once it is back; nothing is lost.
TEST_F(AccessServiceTest,
       R1_OutboxDeliversCustomerChangesMadeWhileAccessWasDown) {
  cv1::CreateCustomerRequest customer;
  customer.set_customer_id("solo");
  customer.mutable_customer()->set_display_name("Solo");
  cv1::Customer solo;
  ASSERT_TRUE(
      customers_stub_->CreateCustomer(As(admin_).get(), customer, &solo).ok());
  cv1::CreateCustomerUserRequest user;
  user.set_parent("customers/solo");
  user.set_user_id("sam");
  cv1::CustomerUser created;
  ASSERT_TRUE(
      customers_stub_->CreateCustomerUser(As(admin_).get(), user, &created)
          .ok());
  // R3: no partner, so Sam logs in; the answer is now cached.
  EXPECT_TRUE(Allowed("sam", "customers/solo", "portal.login"));

  access_->Signal(SIGKILL);
  access_->WaitForExit(absl::Seconds(5));
  cv1::DeleteCustomerUserRequest remove;
  remove.set_name("customers/solo/users/sam");
  cv1::DeleteCustomerUserResponse empty;
  ASSERT_TRUE(
      customers_stub_->DeleteCustomerUser(As(admin_).get(), remove, &empty)
          .ok());
  StartAccess({});
  // The outbox retries with backoff (at most seconds here); bounded wait.
  bool revoked = false;
  for (int i = 0; i < 100 && !revoked; ++i) {
    revoked = !Allowed("sam", "customers/solo", "portal.login");
    if (!revoked) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(revoked);
}

TEST_F(AccessServiceTest, BatchCheckKeepsOrderWithAStatusPerBadItem) {
  CreateSite("acme");
  Join("joan", "acme", v1::SITE_ROLE_VIEW_ONLY);
  v1::BatchCheckPermissionsRequest batch;
  auto add = [&](const std::string& resource, const std::string& permission) {
    auto* check = batch.add_checks();
    check->set_principal("users/joan");
    check->set_resource(resource);
    check->set_permission(permission);
  };
  add("sites/acme", "cases.self.view");
  add("sites/acme", "cases.self.create");
  add("sites/acme", "no.such.permission");
  add("printers/1", "cases.self.view");
  v1::BatchCheckPermissionsResponse response;
  ASSERT_TRUE(
      stub_->BatchCheckPermissions(As(service_).get(), batch, &response).ok());
  ASSERT_EQ(response.results_size(), 4);
  EXPECT_TRUE(response.results(0).allowed());
  EXPECT_FALSE(response.results(1).allowed());
  EXPECT_TRUE(response.results(1).has_allowed());
  EXPECT_EQ(response.results(2).status().code(),
            static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(response.results(2).status().message(),
              ::testing::HasSubstr("no.such.permission"));
  EXPECT_EQ(response.results(3).status().code(),
            static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));

  v1::BatchCheckPermissionsRequest too_many;
  for (int i = 0; i < 101; ++i) *too_many.add_checks() = batch.checks(0);
  auto status =
      stub_->BatchCheckPermissions(As(service_).get(), too_many, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "checks");
}

TEST_F(AccessServiceTest, MalformedInputIsInvalidArgumentNamingTheField) {
  CreateSite("acme");
  struct Case {
    std::string what;
    std::function<grpc::Status()> call;
    std::string field;
  };
  v1::CheckPermissionResponse checked;
  v1::Site site;
  v1::AccessRequest request_out;
  v1::SiteMember member;
  v1::Pilot pilot;
  std::vector<Case> cases = {
      {"check: bad resource",
       [&] {
         v1::CheckPermissionRequest r;
         r.set_resource("sites/");
         r.set_permission("cases.self.view");
         return stub_->CheckPermission(As(Token("joan")).get(), r, &checked);
       },
       "resource"},
      {"check: unknown permission",
       [&] {
         v1::CheckPermissionRequest r;
         r.set_resource("sites/acme");
         r.set_permission("cases.everything");
         return stub_->CheckPermission(As(Token("joan")).get(), r, &checked);
       },
       "permission"},
      {"check: bad principal",
       [&] {
         v1::CheckPermissionRequest r;
         r.set_principal("people/joan");
         r.set_resource("sites/acme");
         r.set_permission("cases.self.view");
         return stub_->CheckPermission(As(service_).get(), r, &checked);
       },
       "principal"},
      {"check: bad consistency token",
       [&] {
         v1::CheckPermissionRequest r;
         r.set_resource("sites/acme");
         r.set_permission("cases.self.view");
         r.mutable_consistency()->set_at_least_as_fresh("yesterday");
         return stub_->CheckPermission(As(Token("joan")).get(), r, &checked);
       },
       "consistency.at_least_as_fresh"},
      {"create site: bad id",
       [&] {
         v1::CreateSiteRequest r;
         r.set_site_id("Not An Id!");
         r.mutable_site()->set_display_name("x");
         return stub_->CreateSite(As(care_).get(), r, &site);
       },
       "site_id"},
      {"create site: no display name",
       [&] {
         v1::CreateSiteRequest r;
         r.set_site_id("fresh");
         return stub_->CreateSite(As(care_).get(), r, &site);
       },
       "site.display_name"},
      {"create site: bad customer",
       [&] {
         v1::CreateSiteRequest r;
         r.set_site_id("fresh");
         r.mutable_site()->set_display_name("x");
         r.mutable_site()->set_customer("acme");
         return stub_->CreateSite(As(care_).get(), r, &site);
       },
       "site.customer"},
      {"request: no role",
       [&] {
         v1::CreateAccessRequestRequest r;
         r.set_parent("sites/acme");
         return stub_->CreateAccessRequest(As(Token("joan")).get(), r,
                                           &request_out);
       },
       "access_request.requested_role"},
      {"request: bad parent",
       [&] {
         v1::CreateAccessRequestRequest r;
         r.set_parent("acme");
         r.mutable_access_request()->set_requested_role(
             v1::SITE_ROLE_VIEW_ONLY);
         return stub_->CreateAccessRequest(As(Token("joan")).get(), r,
                                           &request_out);
       },
       "parent"},
      {"reject: no reason",
       [&] {
         v1::RejectAccessRequestRequest r;
         r.set_name("sites/acme/accessRequests/x");
         return stub_->RejectAccessRequest(As(care_).get(), r, &request_out);
       },
       "reason"},
      {"member: bad mask",
       [&] {
         v1::UpdateSiteMemberRequest r;
         r.mutable_site_member()->set_name("sites/acme/members/joan");
         r.mutable_site_member()->set_role(v1::SITE_ROLE_VIEW_ONLY);
         r.mutable_update_mask()->add_paths("name");
         return stub_->UpdateSiteMember(As(care_).get(), r, &member);
       },
       "update_mask"},
      {"member: no role",
       [&] {
         v1::UpdateSiteMemberRequest r;
         r.mutable_site_member()->set_name("sites/acme/members/joan");
         r.mutable_update_mask()->add_paths("role");
         return stub_->UpdateSiteMember(As(care_).get(), r, &member);
       },
       "site_member.role"},
      {"pilot: ungated permission",
       [&] {
         v1::CreatePilotRequest r;
         r.set_pilot_id("p");
         r.mutable_pilot()->set_display_name("P");
         r.mutable_pilot()->add_permissions("cases.self.view");
         return stub_->CreatePilot(As(admin_).get(), r, &pilot);
       },
       "pilot.permissions"},
      {"participant: bad name",
       [&] {
         v1::AddPilotParticipantRequest r;
         r.set_pilot("pilots/p");
         r.set_participant("joan");
         return stub_->AddPilotParticipant(As(admin_).get(), r, &pilot);
       },
       "participant"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    grpc::Status status = c.call();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
    EXPECT_EQ(FieldOf(status), c.field);
  }
}

TEST_F(AccessServiceTest,
       R4_OutsidersGetPermissionDeniedWhetherOrNotTheSiteExists) {
  CreateSite("acme");
  v1::ListSiteMembersRequest list;
  v1::ListSiteMembersResponse members;
  list.set_parent("sites/acme");
  EXPECT_EQ(stub_->ListSiteMembers(As(Token("eve")).get(), list, &members)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  list.set_parent("sites/nowhere");
  EXPECT_EQ(stub_->ListSiteMembers(As(Token("eve")).get(), list, &members)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Staff learn that it does not exist.
  EXPECT_EQ(
      stub_->ListSiteMembers(As(care_).get(), list, &members).error_code(),
      grpc::StatusCode::NOT_FOUND);
  // Only a service checks someone else.
  v1::CheckPermissionRequest check;
  check.set_principal("users/bill");
  check.set_resource("sites/acme");
  check.set_permission("cases.self.view");
  v1::CheckPermissionResponse checked;
  EXPECT_EQ(stub_->CheckPermission(As(Token("eve")).get(), check, &checked)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

// The "no new enemy" guarantee: every acknowledged change is visible to the
// very next check, with the cache warm, 10,000 times.
TEST_F(AccessServiceTest, CacheNeverAnswersStaleAfterARoleChange) {
  CreateSite("acme");
  Join("joan", "acme", v1::SITE_ROLE_VIEW_ONLY);
  const std::string care = care_;
  int stale = 0;
  for (int i = 0; i < 10000; ++i) {
    const bool member = i % 2 == 0;
    v1::SiteMember updated;
    auto status = SetRole(
        care, "acme", "joan",
        member ? v1::SITE_ROLE_SITE_MEMBER : v1::SITE_ROLE_VIEW_ONLY, &updated);
    ASSERT_TRUE(status.ok()) << status.error_message();
    if (Allowed("joan", "sites/acme", "cases.self.create") != member) ++stale;
  }
  EXPECT_EQ(stale, 0);
}

TEST_F(AccessServiceTest, RedisKilledMidRunNeverYieldsAWrongAnswer) {
  CreateSite("acme");
  Join("joan", "acme", v1::SITE_ROLE_VIEW_ONLY);
  int wrong = 0;
  for (int i = 0; i < 10000; ++i) {
    if (i == 3000) redis_->Kill();
    if (i == 7000) {
      ASSERT_TRUE(redis_->Start());  // back, on the same port
    }
    const bool member = i % 2 == 0;
    v1::SiteMember updated;
    auto status = SetRole(
        care_, "acme", "joan",
        member ? v1::SITE_ROLE_SITE_MEMBER : v1::SITE_ROLE_VIEW_ONLY, &updated);
    ASSERT_TRUE(status.ok()) << status.error_message();
    if (Allowed("joan", "sites/acme", "cases.self.create") != member) ++wrong;
  }
  EXPECT_EQ(wrong, 0);
}

TEST_F(AccessServiceTest, ABadPolicyFileStopsStartUpNamingTheLine) {
  ::custos::testing::WriteFile(dir_ + "/bad.textproto",
                               "permissions { name: \"cases.self.view\" }\n"
                               "roles {\n"
                               "  name: \"SITE_ROLE_VIEW_ONLY\"\n"
                               "  permissions: \"cases.nothing\"\n"
                               "}\n");
  ServiceProcess bad(kAccessBinary,
                     {absl::StrCat("--listen=127.0.0.1:", FreePort()),
                      absl::StrCat("--database=", TestDatabase(dir_, "bad")),
                      absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
                      absl::StrCat("--policy_file=", dir_, "/bad.textproto")});
  EXPECT_FALSE(bad.Start("127.0.0.1:1", absl::Seconds(5)).ok());
  EXPECT_THAT(bad.ReadLog(), ::testing::HasSubstr("bad.textproto:"));
}

}  // namespace
}  // namespace custos::access
