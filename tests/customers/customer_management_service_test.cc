// Integration tests of customer_management_service: the real binary on
// loopback with a real SQLite file, called over gRPC with real tokens. Test
// names carry the DESIGN rule they check.
#include <signal.h>

#include <algorithm>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/auth.h"
#include "common/database.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"
#include "tests/support/test_token.h"

namespace custos::customers {
namespace {

namespace v1 = ::custos::customers::v1;
using ::custos::testing::FreePort;
using ::custos::testing::LoopbackChannel;
using ::custos::testing::MakeTempDir;
using ::custos::testing::ServiceProcess;
using ::custos::testing::TestDatabase;
using ::custos::testing::TestingPostgres;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr char kSecret[] = "integration-test-secret-0123456789";
constexpr char kBinary[] =
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
                  std::vector<std::string> roles = {},
                  absl::Duration ttl = absl::Hours(1),
                  const std::string& secret = kSecret) {
  return ::custos::testing::TestToken(secret, subject, std::move(roles), ttl);
}

class CustomerManagementServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ::custos::testing::WriteFile(dir_ + "/secret", kSecret);
    StartService();
    admin_ = Token("root", {"platform_admin"});
    service_token_ = Token("access-service", {"service"});
  }

  void StartService() {
    port_ = FreePort();
    process_ = std::make_unique<ServiceProcess>(
        kBinary,
        std::vector<std::string>{
            absl::StrCat("--listen=127.0.0.1:", port_),
            absl::StrCat("--database=", TestDatabase(dir_, "customers")),
            absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
            "--shutdown_grace_seconds=10"});
    ASSERT_TRUE(process_->Start(absl::StrCat("127.0.0.1:", port_)).ok());
    stub_ = v1::CustomerManagementService::NewStub(LoopbackChannel(port_));
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + token);
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(20));
    return context;
  }

  void CreatePartner(const std::string& id) {
    v1::CreatePartnerRequest request;
    request.set_partner_id(id);
    request.mutable_partner()->set_display_name("Partner " + id);
    v1::Partner partner;
    ASSERT_TRUE(stub_->CreatePartner(As(admin_).get(), request, &partner).ok());
  }

  void AddPartnerUser(const std::string& partner, const std::string& user,
                      v1::PartnerRole role) {
    v1::CreatePartnerUserRequest request;
    request.set_parent("partners/" + partner);
    request.set_user_id(user);
    request.mutable_partner_user()->set_role(role);
    v1::PartnerUser created;
    auto status = stub_->CreatePartnerUser(As(admin_).get(), request, &created);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  v1::Customer CreateCustomer(
      const std::string& token, const std::string& partner,
      const std::string& id, const std::string& display_name,
      v1::ManagementType type = v1::MANAGEMENT_TYPE_CO_MANAGED,
      v1::Communications communications = v1::COMMUNICATIONS_SHARED,
      const std::string& account_manager = "") {
    v1::CreateCustomerRequest request;
    request.set_customer_id(id);
    auto* customer = request.mutable_customer();
    customer->set_display_name(display_name);
    if (!partner.empty()) customer->set_partner("partners/" + partner);
    customer->set_management_type(type);
    customer->set_communications(communications);
    customer->set_account_manager(account_manager);
    v1::Customer created;
    auto status = stub_->CreateCustomer(As(token).get(), request, &created);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return created;
  }

  void AddCustomerUser(const std::string& customer, const std::string& user) {
    v1::CreateCustomerUserRequest request;
    request.set_parent("customers/" + customer);
    request.set_user_id(user);
    v1::CustomerUser created;
    auto status =
        stub_->CreateCustomerUser(As(admin_).get(), request, &created);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  grpc::Status Get(const std::string& token, const std::string& name,
                   v1::Customer* customer) {
    v1::GetCustomerRequest request;
    request.set_name(name);
    return stub_->GetCustomer(As(token).get(), request, customer);
  }

  // The common cast: partner "acme-partner" with admin bill, user ann and
  // account manager bill; customer "globex" with customer user carol;
  // a rival partner "rival" with admin eve.
  void CreateCast() {
    CreatePartner("acme-partner");
    AddPartnerUser("acme-partner", "bill", v1::PARTNER_ROLE_PARTNER_ADMIN);
    AddPartnerUser("acme-partner", "ann", v1::PARTNER_ROLE_PARTNER_USER);
    CreatePartner("rival");
    AddPartnerUser("rival", "eve", v1::PARTNER_ROLE_PARTNER_ADMIN);
    bill_ = Token("bill");
    ann_ = Token("ann");
    eve_ = Token("eve");
    carol_ = Token("carol");
    CreateCustomer(bill_, "acme-partner", "globex", "Globex",
                   v1::MANAGEMENT_TYPE_CO_MANAGED, v1::COMMUNICATIONS_SHARED,
                   "partners/acme-partner/users/bill");
    AddCustomerUser("globex", "carol");
  }

  v1::AccessContext AccessContext(const std::string& customer,
                                  const std::string& user) {
    v1::GetAccessContextRequest request;
    request.set_customer("customers/" + customer);
    request.set_user(user);
    v1::AccessContext context;
    auto status =
        stub_->GetAccessContext(As(service_token_).get(), request, &context);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return context;
  }

  std::string dir_;
  int port_ = 0;
  std::unique_ptr<ServiceProcess> process_;
  std::unique_ptr<v1::CustomerManagementService::Stub> stub_;
  std::string admin_, service_token_, bill_, ann_, eve_, carol_;
};

TEST_F(CustomerManagementServiceTest,
       R1_ManagementTypeDecidesWhoTheAccessContextReports) {
  CreateCast();
  v1::Customer globex;
  ASSERT_TRUE(Get(bill_, "customers/globex", &globex).ok());
  EXPECT_EQ(globex.management_type(), v1::MANAGEMENT_TYPE_CO_MANAGED);

  v1::AccessContext carol = AccessContext("globex", "carol");
  EXPECT_EQ(carol.relation(), v1::CUSTOMER_RELATION_CUSTOMER_USER);
  EXPECT_EQ(carol.management_type(), v1::MANAGEMENT_TYPE_CO_MANAGED);
  EXPECT_EQ(AccessContext("globex", "bill").relation(),
            v1::CUSTOMER_RELATION_PARTNER_ADMIN);
  EXPECT_EQ(AccessContext("globex", "ann").relation(),
            v1::CUSTOMER_RELATION_PARTNER_USER);
  EXPECT_EQ(AccessContext("globex", "eve").relation(),
            v1::CUSTOMER_RELATION_NONE);

  v1::SetManagementSettingsRequest set;
  set.set_customer("customers/globex");
  set.mutable_settings()->set_management_type(v1::MANAGEMENT_TYPE_PARTNER);
  set.mutable_settings()->set_communications(v1::COMMUNICATIONS_SHARED);
  set.set_etag(globex.etag());
  v1::Customer changed;
  ASSERT_TRUE(
      stub_->SetManagementSettings(As(bill_).get(), set, &changed).ok());
  EXPECT_EQ(changed.management_type(), v1::MANAGEMENT_TYPE_PARTNER);
  EXPECT_GT(changed.version(), globex.version());
  EXPECT_NE(changed.etag(), globex.etag());
  v1::AccessContext after = AccessContext("globex", "carol");
  EXPECT_EQ(after.management_type(), v1::MANAGEMENT_TYPE_PARTNER);
  EXPECT_EQ(after.customer_version(), changed.version());
}

TEST_F(CustomerManagementServiceTest,
       R2_CommunicationRoutingFollowsTheCommunicationsSetting) {
  CreateCast();
  v1::Customer globex;
  ASSERT_TRUE(Get(bill_, "customers/globex", &globex).ok());
  v1::SetManagementSettingsRequest set;
  set.set_customer("customers/globex");
  set.mutable_settings()->set_management_type(v1::MANAGEMENT_TYPE_CO_MANAGED);
  set.mutable_settings()->set_communications(v1::COMMUNICATIONS_PARTNER_ONLY);
  set.set_etag(globex.etag());
  v1::Customer changed;
  ASSERT_TRUE(
      stub_->SetManagementSettings(As(bill_).get(), set, &changed).ok());

  v1::GetCommunicationRoutingRequest request;
  request.set_customer("customers/globex");
  v1::CommunicationRouting routing;
  ASSERT_TRUE(
      stub_
          ->GetCommunicationRouting(As(service_token_).get(), request, &routing)
          .ok());
  EXPECT_EQ(routing.communications(), v1::COMMUNICATIONS_PARTNER_ONLY);
  EXPECT_EQ(routing.partner(), "partners/acme-partner");
  EXPECT_EQ(routing.account_manager(), "partners/acme-partner/users/bill");
  EXPECT_THAT(routing.customer_users(),
              ElementsAre("customers/globex/users/carol"));

  // Only services (and platform admins) may ask.
  EXPECT_EQ(stub_->GetCommunicationRouting(As(bill_).get(), request, &routing)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(CustomerManagementServiceTest,
       R3_CustomerWithoutPartnerManagesItselfAndHearsEverything) {
  v1::Customer solo = CreateCustomer(admin_, "", "solo", "Solo Inc",
                                     v1::MANAGEMENT_TYPE_UNSPECIFIED,
                                     v1::COMMUNICATIONS_UNSPECIFIED);
  EXPECT_EQ(solo.management_type(), v1::MANAGEMENT_TYPE_CUSTOMER);
  EXPECT_EQ(solo.communications(), v1::COMMUNICATIONS_SHARED);
  AddCustomerUser("solo", "dora");
  v1::AccessContext context = AccessContext("solo", "dora");
  EXPECT_EQ(context.management_type(), v1::MANAGEMENT_TYPE_CUSTOMER);
  EXPECT_EQ(context.communications(), v1::COMMUNICATIONS_SHARED);
  EXPECT_EQ(context.partner(), "");

  ASSERT_TRUE(Get(admin_, "customers/solo", &solo).ok());
  v1::SetManagementSettingsRequest set;
  set.set_customer("customers/solo");
  set.mutable_settings()->set_management_type(v1::MANAGEMENT_TYPE_PARTNER);
  set.mutable_settings()->set_communications(v1::COMMUNICATIONS_SHARED);
  set.set_etag(solo.etag());
  v1::Customer unchanged;
  grpc::Status status =
      stub_->SetManagementSettings(As(admin_).get(), set, &unchanged);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ReasonOf(status), "CUSTOMER_HAS_NO_PARTNER");
}

TEST_F(CustomerManagementServiceTest,
       R4_AnotherPartnersUserIsDeniedWhetherOrNotTheCustomerExists) {
  CreateCast();
  v1::Customer customer;
  EXPECT_EQ(Get(eve_, "customers/globex", &customer).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Get(eve_, "customers/no-such-customer", &customer).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // A customer user of another customer is an outsider too.
  EXPECT_EQ(Get(Token("nobody"), "customers/globex", &customer).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Staff see the truth.
  EXPECT_EQ(Get(admin_, "customers/no-such-customer", &customer).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::UpdateCustomerRequest update;
  update.mutable_customer()->set_name("customers/globex");
  update.mutable_customer()->set_display_name("Hijacked");
  update.mutable_update_mask()->add_paths("display_name");
  EXPECT_EQ(
      stub_->UpdateCustomer(As(eve_).get(), update, &customer).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  v1::ListCustomersRequest list;
  list.set_partner("partners/acme-partner");
  v1::ListCustomersResponse page;
  EXPECT_EQ(stub_->ListCustomers(As(eve_).get(), list, &page).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::CreateCustomerRequest create;
  create.mutable_customer()->set_display_name("Planted");
  create.mutable_customer()->set_partner("partners/acme-partner");
  EXPECT_EQ(
      stub_->CreateCustomer(As(eve_).get(), create, &customer).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(CustomerManagementServiceTest,
       R4_PartnerUserReadsButOnlyPartnerAdminChanges) {
  CreateCast();
  v1::Customer customer;
  ASSERT_TRUE(Get(ann_, "customers/globex", &customer).ok());
  ASSERT_TRUE(Get(carol_, "customers/globex", &customer).ok());
  v1::UpdateCustomerRequest update;
  update.mutable_customer()->set_name("customers/globex");
  update.mutable_customer()->set_display_name("Globex Corp");
  update.mutable_update_mask()->add_paths("display_name");
  EXPECT_EQ(
      stub_->UpdateCustomer(As(ann_).get(), update, &customer).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(
      stub_->UpdateCustomer(As(carol_).get(), update, &customer).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(stub_->UpdateCustomer(As(bill_).get(), update, &customer).ok());
  EXPECT_EQ(customer.display_name(), "Globex Corp");
  v1::CreatePartnerRequest partner;
  partner.mutable_partner()->set_display_name("Mine");
  v1::Partner created;
  EXPECT_EQ(
      stub_->CreatePartner(As(bill_).get(), partner, &created).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(CustomerManagementServiceTest,
       R4_SwitchCustomerListPagesOver1000CustomersSortedWithoutGapsOrRepeats) {
  CreateCast();
  std::vector<std::string> expected_names;
  for (int i = 0; i < 1000; ++i) {
    // Names out of id order, with ties, so the sort and tie-break matter.
    std::string name = absl::StrFormat("Customer %03d", (i * 7919) % 500);
    CreateCustomer(bill_, "acme-partner", absl::StrFormat("c%04d", i), name);
  }
  CreateCustomer(eve_, "rival", "rival-customer", "AAA first of rival");
  std::vector<std::pair<std::string, std::string>> seen;
  std::string token;
  int pages = 0;
  do {
    v1::ListCustomersRequest request;
    request.set_partner("partners/acme-partner");
    request.set_page_size(37);
    request.set_page_token(token);
    v1::ListCustomersResponse page;
    auto status = stub_->ListCustomers(As(ann_).get(), request, &page);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const auto& c : page.customers()) {
      seen.emplace_back(c.display_name(), c.name());
    }
    token = page.next_page_token();
    ASSERT_LT(++pages, 100);
  } while (!token.empty());
  EXPECT_EQ(seen.size(), 1001u);  // 1000 + globex.
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  std::set<std::string> unique;
  for (const auto& [display, name] : seen) unique.insert(name);
  EXPECT_EQ(unique.size(), seen.size());
  EXPECT_FALSE(unique.count("customers/rival-customer"));
}

TEST_F(CustomerManagementServiceTest, StaleEtagIsAborted) {
  CreateCast();
  v1::Customer first;
  ASSERT_TRUE(Get(bill_, "customers/globex", &first).ok());
  v1::UpdateCustomerRequest update;
  update.mutable_customer()->set_name("customers/globex");
  update.mutable_customer()->set_display_name("Globex 2");
  update.mutable_customer()->set_etag(first.etag());
  update.mutable_update_mask()->add_paths("display_name");
  v1::Customer second;
  ASSERT_TRUE(stub_->UpdateCustomer(As(bill_).get(), update, &second).ok());
  // The same etag again is now stale.
  update.mutable_customer()->set_display_name("Globex 3");
  grpc::Status status = stub_->UpdateCustomer(As(bill_).get(), update, &second);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(ReasonOf(status), "STALE_ETAG");

  v1::SetManagementSettingsRequest set;
  set.set_customer("customers/globex");
  set.mutable_settings()->set_management_type(v1::MANAGEMENT_TYPE_CUSTOMER);
  set.mutable_settings()->set_communications(v1::COMMUNICATIONS_SHARED);
  set.set_etag(first.etag());
  EXPECT_EQ(
      stub_->SetManagementSettings(As(bill_).get(), set, &second).error_code(),
      grpc::StatusCode::ABORTED);
  v1::Customer now;
  ASSERT_TRUE(Get(bill_, "customers/globex", &now).ok());
  EXPECT_EQ(now.display_name(), "Globex 2");
  EXPECT_EQ(now.management_type(), v1::MANAGEMENT_TYPE_CO_MANAGED);
}

TEST_F(CustomerManagementServiceTest, FieldMaskChangesOnlyTheNamedFields) {
  CreateCast();
  v1::UpdateCustomerRequest update;
  auto* patch = update.mutable_customer();
  patch->set_name("customers/globex");
  patch->set_account_manager("partners/acme-partner/users/ann");
  patch->set_display_name("Ignored, not in the mask");
  update.mutable_update_mask()->add_paths("account_manager");
  v1::Customer updated;
  ASSERT_TRUE(stub_->UpdateCustomer(As(bill_).get(), update, &updated).ok());
  EXPECT_EQ(updated.account_manager(), "partners/acme-partner/users/ann");
  EXPECT_EQ(updated.display_name(), "Globex");

  // The site links are AccessService's: `sites` is output only here.
  v1::UpdateCustomerRequest sites;
  sites.mutable_customer()->set_name("customers/globex");
  sites.mutable_customer()->add_sites("sites/sid-100");
  sites.mutable_update_mask()->add_paths("sites");
  grpc::Status refused =
      stub_->UpdateCustomer(As(bill_).get(), sites, &updated);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(refused), "update_mask");

  update.mutable_update_mask()->add_paths("management_type");
  grpc::Status status =
      stub_->UpdateCustomer(As(bill_).get(), update, &updated);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "update_mask");
}

TEST_F(CustomerManagementServiceTest, RequestIdReplayReturnsTheFirstResult) {
  CreateCast();
  v1::CreateCustomerRequest request;
  request.set_request_id("7d1c9a52-create-once");
  request.mutable_customer()->set_display_name("Initech");
  request.mutable_customer()->set_partner("partners/acme-partner");
  v1::Customer first, second;
  ASSERT_TRUE(stub_->CreateCustomer(As(bill_).get(), request, &first).ok());
  ASSERT_TRUE(stub_->CreateCustomer(As(bill_).get(), request, &second).ok());
  EXPECT_EQ(first.name(),
            second.name());  // Server-generated id, not a new one.
  EXPECT_EQ(first.SerializeAsString(), second.SerializeAsString());
  v1::ListCustomersRequest list;
  list.set_partner("partners/acme-partner");
  v1::ListCustomersResponse page;
  ASSERT_TRUE(stub_->ListCustomers(As(bill_).get(), list, &page).ok());
  EXPECT_EQ(page.customers_size(), 2);  // globex + one Initech.

  request.mutable_customer()->set_display_name("Initrode");
  grpc::Status status =
      stub_->CreateCustomer(As(bill_).get(), request, &second);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "request_id");
}

struct BadInput {
  std::string description;
  std::function<grpc::Status(v1::CustomerManagementService::Stub&,
                             grpc::ClientContext*)>
      call;
  std::string field;
};

TEST_F(CustomerManagementServiceTest,
       MalformedInputIsInvalidArgumentNamingTheField) {
  CreateCast();
  using Stub = v1::CustomerManagementService::Stub;
  std::vector<BadInput> cases = {
      {"customer name",
       [](Stub& s, grpc::ClientContext* c) {
         v1::GetCustomerRequest r;
         r.set_name("globex");
         v1::Customer out;
         return s.GetCustomer(c, r, &out);
       },
       "name"},
      {"missing display name",
       [](Stub& s, grpc::ClientContext* c) {
         v1::CreateCustomerRequest r;
         r.mutable_customer()->set_partner("partners/acme-partner");
         v1::Customer out;
         return s.CreateCustomer(c, r, &out);
       },
       "customer.display_name"},
      {"bad customer id",
       [](Stub& s, grpc::ClientContext* c) {
         v1::CreateCustomerRequest r;
         r.set_customer_id("Not_Valid!");
         r.mutable_customer()->set_display_name("X");
         r.mutable_customer()->set_partner("partners/acme-partner");
         v1::Customer out;
         return s.CreateCustomer(c, r, &out);
       },
       "customer_id"},
      {"bad partner name",
       [](Stub& s, grpc::ClientContext* c) {
         v1::CreateCustomerRequest r;
         r.mutable_customer()->set_display_name("X");
         r.mutable_customer()->set_partner("acme-partner");
         v1::Customer out;
         return s.CreateCustomer(c, r, &out);
       },
       "customer.partner"},
      {"sites are output only (AccessService owns the link)",
       [](Stub& s, grpc::ClientContext* c) {
         v1::CreateCustomerRequest r;
         r.mutable_customer()->set_display_name("X");
         r.mutable_customer()->set_partner("partners/acme-partner");
         r.mutable_customer()->add_sites("sites/sid-1");
         v1::Customer out;
         return s.CreateCustomer(c, r, &out);
       },
       "customer.sites"},
      {"unknown management type",
       [](Stub& s, grpc::ClientContext* c) {
         v1::CreateCustomerRequest r;
         r.mutable_customer()->set_display_name("X");
         r.mutable_customer()->set_partner("partners/acme-partner");
         r.mutable_customer()->set_management_type(
             static_cast<v1::ManagementType>(42));
         v1::Customer out;
         return s.CreateCustomer(c, r, &out);
       },
       "customer.management_type"},
      {"account manager of another partner",
       [](Stub& s, grpc::ClientContext* c) {
         v1::CreateCustomerRequest r;
         r.mutable_customer()->set_display_name("X");
         r.mutable_customer()->set_partner("partners/acme-partner");
         r.mutable_customer()->set_account_manager("partners/rival/users/eve");
         v1::Customer out;
         return s.CreateCustomer(c, r, &out);
       },
       "customer.account_manager"},
      {"negative page size",
       [](Stub& s, grpc::ClientContext* c) {
         v1::ListCustomersRequest r;
         r.set_partner("partners/acme-partner");
         r.set_page_size(-1);
         v1::ListCustomersResponse out;
         return s.ListCustomers(c, r, &out);
       },
       "page_size"},
      {"forged page token",
       [](Stub& s, grpc::ClientContext* c) {
         v1::ListCustomersRequest r;
         r.set_partner("partners/acme-partner");
         r.set_page_token("not-a-token");
         v1::ListCustomersResponse out;
         return s.ListCustomers(c, r, &out);
       },
       "page_token"},
      {"missing etag",
       [](Stub& s, grpc::ClientContext* c) {
         v1::SetManagementSettingsRequest r;
         r.set_customer("customers/globex");
         r.mutable_settings()->set_management_type(v1::MANAGEMENT_TYPE_PARTNER);
         r.mutable_settings()->set_communications(v1::COMMUNICATIONS_SHARED);
         v1::Customer out;
         return s.SetManagementSettings(c, r, &out);
       },
       "etag"},
      {"missing communications",
       [](Stub& s, grpc::ClientContext* c) {
         v1::SetManagementSettingsRequest r;
         r.set_customer("customers/globex");
         r.mutable_settings()->set_management_type(v1::MANAGEMENT_TYPE_PARTNER);
         r.set_etag("1");
         v1::Customer out;
         return s.SetManagementSettings(c, r, &out);
       },
       "settings.communications"},
      {"missing update mask",
       [](Stub& s, grpc::ClientContext* c) {
         v1::UpdateCustomerRequest r;
         r.mutable_customer()->set_name("customers/globex");
         v1::Customer out;
         return s.UpdateCustomer(c, r, &out);
       },
       "update_mask"},
      {"missing user id",
       [](Stub& s, grpc::ClientContext* c) {
         v1::CreatePartnerUserRequest r;
         r.set_parent("partners/acme-partner");
         r.mutable_partner_user()->set_role(v1::PARTNER_ROLE_PARTNER_USER);
         v1::PartnerUser out;
         return s.CreatePartnerUser(c, r, &out);
       },
       "user_id"},
      {"missing partner role",
       [](Stub& s, grpc::ClientContext* c) {
         v1::CreatePartnerUserRequest r;
         r.set_parent("partners/acme-partner");
         r.set_user_id("zed");
         v1::PartnerUser out;
         return s.CreatePartnerUser(c, r, &out);
       },
       "partner_user.role"},
      {"bad email",
       [](Stub& s, grpc::ClientContext* c) {
         v1::CreateCustomerUserRequest r;
         r.set_parent("customers/globex");
         r.set_user_id("zed");
         r.mutable_customer_user()->set_email("not an email");
         v1::CustomerUser out;
         return s.CreateCustomerUser(c, r, &out);
       },
       "customer_user.email"},
      {"negative seats",
       [](Stub& s, grpc::ClientContext* c) {
         v1::CreateProductRequest r;
         r.set_parent("customers/globex");
         r.mutable_product()->set_product_code("SEP-SBE");
         r.mutable_product()->set_seats(-5);
         v1::Product out;
         return s.CreateProduct(c, r, &out);
       },
       "product.seats"},
      {"missing product code",
       [](Stub& s, grpc::ClientContext* c) {
         v1::CreateProductRequest r;
         r.set_parent("customers/globex");
         v1::Product out;
         return s.CreateProduct(c, r, &out);
       },
       "product.product_code"},
      {"access context user (empty asks for the customer's facts only)",
       [](Stub& s, grpc::ClientContext* c) {
         v1::GetAccessContextRequest r;
         r.set_customer("customers/globex");
         r.set_user("not/a-user");
         v1::AccessContext out;
         return s.GetAccessContext(c, r, &out);
       },
       "user"},
      {"audit parent",
       [](Stub& s, grpc::ClientContext* c) {
         custos::common::v1::ListAuditEventsRequest r;
         r.set_parent("sites/x");
         custos::common::v1::ListAuditEventsResponse out;
         return s.ListAuditEvents(c, r, &out);
       },
       "parent"},
  };
  for (const BadInput& bad : cases) {
    // Platform admins pass every authorization check, so only validation
    // can fail.
    grpc::Status status = bad.call(*stub_, As(admin_).get());
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << bad.description << ": " << status.error_message();
    EXPECT_EQ(FieldOf(status), bad.field) << bad.description;
    EXPECT_THAT(status.error_message(), ::testing::HasSubstr(bad.field))
        << bad.description;
  }
  // Nothing was half-written: globex still has its single user.
  v1::ListCustomerUsersRequest users;
  users.set_parent("customers/globex");
  v1::ListCustomerUsersResponse listed;
  ASSERT_TRUE(stub_->ListCustomerUsers(As(admin_).get(), users, &listed).ok());
  EXPECT_EQ(listed.customer_users_size(), 1);
}

TEST_F(CustomerManagementServiceTest,
       MissingExpiredOrForgedTokensAreUnauthenticated) {
  CreateCast();
  v1::GetCustomerRequest request;
  request.set_name("customers/globex");
  v1::Customer customer;
  {
    grpc::ClientContext context;
    EXPECT_EQ(stub_->GetCustomer(&context, request, &customer).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(stub_
                ->GetCustomer(As(Token("bill", {}, -absl::Minutes(10))).get(),
                              request, &customer)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      stub_
          ->GetCustomer(As(Token("bill", {"platform_admin"}, absl::Hours(1),
                                 "a-different-secret-of-an-attacker"))
                            .get(),
                        request, &customer)
          .error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(stub_->GetCustomer(As("not.a.jwt").get(), request, &customer)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(stub_->GetCustomer(As(bill_).get(), request, &customer).ok());
}

TEST_F(CustomerManagementServiceTest, EveryMutationWritesAnAuditEvent) {
  CreateCast();
  v1::UpdateCustomerRequest update;
  update.mutable_customer()->set_name("customers/globex");
  update.mutable_customer()->set_display_name("Globex Corporation");
  update.mutable_update_mask()->add_paths("display_name");
  v1::Customer updated;
  auto context = As(bill_);
  context->AddMetadata("x-request-id", "trace-42");
  ASSERT_TRUE(stub_->UpdateCustomer(context.get(), update, &updated).ok());

  custos::common::v1::ListAuditEventsRequest request;
  request.set_parent("customers/globex");
  custos::common::v1::ListAuditEventsResponse events;
  ASSERT_TRUE(stub_->ListAuditEvents(As(ann_).get(), request, &events).ok());
  std::vector<std::string> actions;
  for (const auto& event : events.audit_events()) {
    actions.push_back(event.action());
  }
  // Newest first; the customer user's creation is below the customer.
  EXPECT_THAT(actions, ElementsAre("UpdateCustomer", "CreateCustomerUser",
                                   "CreateCustomer"));
  const auto& last = events.audit_events(0);
  EXPECT_EQ(last.actor(), "bill");
  EXPECT_EQ(last.resource(), "customers/globex");
  EXPECT_EQ(last.request_id(), "trace-42");
  EXPECT_THAT(last.before(), ::testing::HasSubstr("\"Globex\""));
  EXPECT_THAT(last.after(), ::testing::HasSubstr("Globex Corporation"));
  // Outsiders cannot read it.
  EXPECT_EQ(
      stub_->ListAuditEvents(As(eve_).get(), request, &events).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(CustomerManagementServiceTest,
       PreviewManagementChangeListsGainsAndLossesWithoutChangingAnything) {
  CreateCast();
  v1::PreviewManagementChangeRequest request;
  request.set_customer("customers/globex");
  request.mutable_settings()->set_management_type(v1::MANAGEMENT_TYPE_PARTNER);
  request.mutable_settings()->set_communications(
      v1::COMMUNICATIONS_PARTNER_ONLY);
  v1::PreviewManagementChangeResponse preview;
  ASSERT_TRUE(
      stub_->PreviewManagementChange(As(bill_).get(), request, &preview).ok());
  ASSERT_EQ(preview.permission_changes_size(), 1);
  EXPECT_EQ(preview.permission_changes(0).user(),
            "customers/globex/users/carol");
  EXPECT_EQ(preview.permission_changes(0).permission(), "portal.login");
  EXPECT_EQ(preview.permission_changes(0).kind(), v1::CHANGE_KIND_LOST);
  ASSERT_EQ(preview.alert_recipient_changes_size(), 1);
  EXPECT_EQ(preview.alert_recipient_changes(0).user(),
            "customers/globex/users/carol");
  EXPECT_EQ(preview.alert_recipient_changes(0).kind(), v1::CHANGE_KIND_LOST);

  request.mutable_settings()->set_management_type(v1::MANAGEMENT_TYPE_CUSTOMER);
  request.mutable_settings()->set_communications(v1::COMMUNICATIONS_SHARED);
  ASSERT_TRUE(
      stub_->PreviewManagementChange(As(bill_).get(), request, &preview).ok());
  std::vector<std::string> lost;
  for (const auto& change : preview.permission_changes()) {
    EXPECT_EQ(change.permission(), "portal.manage_customer");
    EXPECT_EQ(change.kind(), v1::CHANGE_KIND_LOST);
    lost.push_back(change.user());
  }
  EXPECT_THAT(lost, UnorderedElementsAre("partners/acme-partner/users/ann",
                                         "partners/acme-partner/users/bill"));
  EXPECT_EQ(preview.alert_recipient_changes_size(), 0);

  v1::Customer globex;
  ASSERT_TRUE(Get(bill_, "customers/globex", &globex).ok());
  EXPECT_EQ(globex.management_type(), v1::MANAGEMENT_TYPE_CO_MANAGED);
  EXPECT_EQ(globex.version(), 2);  // Created, then its user was added.
}

TEST_F(CustomerManagementServiceTest,
       ProductsAreCreatedListedAndUpdatedWithEtags) {
  CreateCast();
  v1::CreateProductRequest create;
  create.set_parent("customers/globex");
  create.set_product_id("endpoint");
  create.mutable_product()->set_product_code("SEP-SBE");
  create.mutable_product()->set_seats(25);
  v1::Product product;
  ASSERT_TRUE(stub_->CreateProduct(As(bill_).get(), create, &product).ok());
  EXPECT_EQ(product.status(), v1::PRODUCT_STATUS_ACTIVE);
  EXPECT_EQ(stub_->CreateProduct(As(ann_).get(), create, &product).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  v1::UpdateProductRequest update;
  *update.mutable_product() = product;
  update.mutable_product()->set_seats(50);
  update.mutable_product()->set_product_code("ignored");
  update.mutable_update_mask()->add_paths("seats");
  v1::Product updated;
  ASSERT_TRUE(stub_->UpdateProduct(As(bill_).get(), update, &updated).ok());
  EXPECT_EQ(updated.seats(), 50);
  EXPECT_EQ(updated.product_code(), "SEP-SBE");
  EXPECT_EQ(
      stub_->UpdateProduct(As(bill_).get(), update, &updated).error_code(),
      grpc::StatusCode::ABORTED);

  v1::ListProductsRequest list;
  list.set_parent("customers/globex");
  v1::ListProductsResponse listed;
  ASSERT_TRUE(stub_->ListProducts(As(carol_).get(), list, &listed).ok());
  ASSERT_EQ(listed.products_size(), 1);
  EXPECT_EQ(listed.products(0).seats(), 50);
}

TEST_F(CustomerManagementServiceTest,
       PartnerAndCustomerUsersChangeTheAccessContextAndVersion) {
  CreateCast();
  v1::AccessContext before = AccessContext("globex", "carol");
  v1::DeleteCustomerUserRequest remove;
  remove.set_name("customers/globex/users/carol");
  v1::DeleteCustomerUserResponse empty;
  EXPECT_EQ(
      stub_->DeleteCustomerUser(As(ann_).get(), remove, &empty).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(stub_->DeleteCustomerUser(As(bill_).get(), remove, &empty).ok());
  v1::AccessContext after = AccessContext("globex", "carol");
  EXPECT_EQ(after.relation(), v1::CUSTOMER_RELATION_NONE);
  EXPECT_GT(after.customer_version(), before.customer_version());

  // bill manages globex's account: he cannot be removed until replaced.
  v1::DeletePartnerUserRequest remove_bill;
  remove_bill.set_name("partners/acme-partner/users/bill");
  v1::DeletePartnerUserResponse removed_partner_user;
  grpc::Status status = stub_->DeletePartnerUser(As(admin_).get(), remove_bill,
                                                 &removed_partner_user);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ReasonOf(status), "ACCOUNT_MANAGER_IN_USE");
  v1::DeletePartnerUserRequest remove_ann;
  remove_ann.set_name("partners/acme-partner/users/ann");
  ASSERT_TRUE(stub_
                  ->DeletePartnerUser(As(bill_).get(), remove_ann,
                                      &removed_partner_user)
                  .ok());
  EXPECT_EQ(AccessContext("globex", "ann").relation(),
            v1::CUSTOMER_RELATION_NONE);
  v1::Customer customer;
  EXPECT_EQ(Get(ann_, "customers/globex", &customer).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(CustomerManagementServiceTest,
       DeleteCustomerRemovesItsProductsAndUsers) {
  CreateCast();
  v1::DeleteCustomerRequest request;
  request.set_name("customers/globex");
  v1::DeleteCustomerResponse empty;
  EXPECT_EQ(stub_->DeleteCustomer(As(ann_).get(), request, &empty).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  request.set_etag("999");
  EXPECT_EQ(
      stub_->DeleteCustomer(As(bill_).get(), request, &empty).error_code(),
      grpc::StatusCode::ABORTED);
  request.clear_etag();
  ASSERT_TRUE(stub_->DeleteCustomer(As(bill_).get(), request, &empty).ok());
  v1::Customer customer;
  EXPECT_EQ(Get(admin_, "customers/globex", &customer).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Get(carol_, "customers/globex", &customer).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(CustomerManagementServiceTest, DataSurvivesARestart) {
  CreateCast();
  EXPECT_EQ(process_->Stop(), 0);
  StartService();
  v1::Customer customer;
  ASSERT_TRUE(Get(bill_, "customers/globex", &customer).ok());
  EXPECT_EQ(customer.display_name(), "Globex");
  EXPECT_EQ(AccessContext("globex", "carol").relation(),
            v1::CUSTOMER_RELATION_CUSTOMER_USER);
}

TEST_F(CustomerManagementServiceTest, SigtermDrainsAnInFlightCallAndExitsZero) {
  CreateCast();
  // Hold the partners table's write lock from outside (SQLite: a write
  // transaction; PostgreSQL: LOCK TABLE), so the next write is in flight
  // (waiting on the lock) when SIGTERM arrives.
  auto outside = custos::OpenDatabase(TestDatabase(dir_, "customers"), {});
  ASSERT_TRUE(outside.ok()) << outside.status();
  absl::Notification locked;
  absl::Notification release;
  std::thread holder([&] {
    absl::Status held = (*outside)->Write([&](custos::Connection& db) {
      absl::Status lock = TestingPostgres()
                              ? db.Exec("LOCK TABLE partners IN EXCLUSIVE MODE")
                              : absl::OkStatus();
      locked.Notify();
      release.WaitForNotification();
      return lock;
    });
    EXPECT_TRUE(held.ok()) << held;
  });
  locked.WaitForNotification();
  auto in_flight = std::async(std::launch::async, [&] {
    v1::CreatePartnerRequest request;
    request.set_partner_id("late-partner");
    request.mutable_partner()->set_display_name("Late");
    v1::Partner partner;
    return stub_->CreatePartner(As(admin_).get(), request, &partner);
  });
  absl::SleepFor(absl::Milliseconds(500));
  process_->Signal(SIGTERM);
  absl::SleepFor(absl::Milliseconds(500));
  // Draining: still running, and new calls are refused.
  EXPECT_EQ(in_flight.wait_for(std::chrono::seconds(0)),
            std::future_status::timeout);
  v1::Customer customer;
  EXPECT_FALSE(Get(bill_, "customers/globex", &customer).ok());
  release.Notify();
  holder.join();
  grpc::Status status = in_flight.get();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(process_->WaitForExit(absl::Seconds(15)), 0);
  // The drained write was committed.
  StartService();
  v1::GetPartnerRequest get;
  get.set_name("partners/late-partner");
  v1::Partner partner;
  EXPECT_TRUE(stub_->GetPartner(As(admin_).get(), get, &partner).ok());
}

}  // namespace
}  // namespace custos::customers
