// Loads the dev stack's demo data through the public API, so the demo
// exercises the same paths as real callers. Idempotent: fixed ids, and
// ALREADY_EXISTS counts as done.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "common/auth.h"
#include "custos/access/v1/access_service.grpc.pb.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, customers_address, "127.0.0.1:50052",
          "CustomerManagementService address");
ABSL_FLAG(std::string, access_address, "",
          "AccessService address; empty: seed customers only");
ABSL_FLAG(
    std::string, tls_ca_file, "",
    "CA of the services' certificates; set = TLS (tools/dev-stack --tls)");
ABSL_FLAG(std::string, tls_cert_file, "", "client certificate (mTLS)");
ABSL_FLAG(std::string, tls_key_file, "", "client key (mTLS)");
ABSL_FLAG(std::string, secret_file, ".custos/dev/jwt-hs256.secret",
          "HS256 secret the stack verifies tokens with");

namespace {

namespace v1 = custos::customers::v1;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

class Seeder {
 public:
  Seeder(std::shared_ptr<grpc::Channel> channel, std::string secret)
      : stub_(v1::CustomerManagementService::NewStub(channel)),
        secret_(std::move(secret)) {}

  std::unique_ptr<grpc::ClientContext> As(const std::string& subject,
                                          std::vector<std::string> roles) {
    custos::JwtClaims claims;
    claims.subject = subject;
    claims.roles = std::move(roles);
    claims.issued_at = absl::Now();
    claims.expires_at = absl::Now() + absl::Minutes(5);
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization",
                         "Bearer " + custos::SignJwtHs256(claims, secret_));
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(10));
    return context;
  }

  // Exits on anything but success or ALREADY_EXISTS.
  void Check(const grpc::Status& status, const std::string& what) {
    if (status.ok() || status.error_code() == grpc::ALREADY_EXISTS) return;
    std::fprintf(stderr, "seed: %s failed: %s\n", what.c_str(),
                 status.error_message().c_str());
    std::exit(1);
  }

  void Partner(const std::string& id, const std::string& display_name) {
    v1::CreatePartnerRequest request;
    request.set_partner_id(id);
    request.mutable_partner()->set_display_name(display_name);
    v1::Partner out;
    Check(stub_->CreatePartner(As("dev-admin", {"platform_admin"}).get(),
                               request, &out),
          "partner " + id);
  }

  void PartnerUser(const std::string& partner, const std::string& user,
                   v1::PartnerRole role, const std::string& display_name) {
    v1::CreatePartnerUserRequest request;
    request.set_parent("partners/" + partner);
    request.set_user_id(user);
    request.mutable_partner_user()->set_role(role);
    request.mutable_partner_user()->set_display_name(display_name);
    request.mutable_partner_user()->set_email(user + "@" + partner +
                                              ".example");
    v1::PartnerUser out;
    Check(stub_->CreatePartnerUser(As("dev-admin", {"platform_admin"}).get(),
                                   request, &out),
          "partner user " + user);
  }

  void Customer(const std::string& partner_admin, const std::string& partner,
                const std::string& id, const std::string& display_name,
                v1::ManagementType type, v1::Communications communications,
                const std::string& account_manager) {
    v1::CreateCustomerRequest request;
    request.set_customer_id(id);
    auto* customer = request.mutable_customer();
    customer->set_display_name(display_name);
    if (!partner.empty()) customer->set_partner("partners/" + partner);
    customer->set_management_type(type);
    customer->set_communications(communications);
    if (!account_manager.empty()) {
      customer->set_account_manager("partners/" + partner + "/users/" +
                                    account_manager);
    }
    v1::Customer out;
    auto roles = partner.empty() ? std::vector<std::string>{"platform_admin"}
                                 : std::vector<std::string>{};
    Check(stub_->CreateCustomer(As(partner_admin, roles).get(), request, &out),
          "customer " + id);
  }

  void CustomerUser(const std::string& customer, const std::string& user,
                    const std::string& display_name) {
    v1::CreateCustomerUserRequest request;
    request.set_parent("customers/" + customer);
    request.set_user_id(user);
    request.mutable_customer_user()->set_display_name(display_name);
    request.mutable_customer_user()->set_email(user + "@" + customer +
                                               ".example");
    v1::CustomerUser out;
    Check(stub_->CreateCustomerUser(As("dev-admin", {"platform_admin"}).get(),
                                    request, &out),
          "customer user " + user);
  }

  void Product(const std::string& customer, const std::string& id,
               const std::string& code, int seats) {
    v1::CreateProductRequest request;
    request.set_parent("customers/" + customer);
    request.set_product_id(id);
    request.mutable_product()->set_product_code(code);
    request.mutable_product()->set_seats(seats);
    v1::Product out;
    Check(stub_->CreateProduct(As("dev-admin", {"platform_admin"}).get(),
                               request, &out),
          "product " + id);
  }

 private:
  std::unique_ptr<v1::CustomerManagementService::Stub> stub_;
  std::string secret_;
};

// Sites, members, a pending request and a pilot in AccessService, made the
// way the product makes them: requests, approved by whoever R6 says.
class AccessSeeder {
 public:
  AccessSeeder(std::shared_ptr<grpc::Channel> channel, Seeder* tokens)
      : stub_(custos::access::v1::AccessService::NewStub(channel)),
        tokens_(tokens) {}

  void Site(const std::string& id, const std::string& display_name,
            const std::string& customer) {
    custos::access::v1::CreateSiteRequest request;
    request.set_site_id(id);
    request.mutable_site()->set_display_name(display_name);
    request.mutable_site()->set_customer(customer);
    custos::access::v1::Site out;
    tokens_->Check(
        stub_->CreateSite(tokens_->As("carla", {"customer_care"}).get(),
                          request, &out),
        "site " + id);
  }

  // A request by `user`; approved by `approver` unless that is empty. The
  // request_id makes a second seeding return the first request.
  void Request(const std::string& user, const std::string& site,
               custos::access::v1::SiteRole role, const std::string& approver,
               std::vector<std::string> approver_roles = {}) {
    custos::access::v1::CreateAccessRequestRequest request;
    request.set_parent("sites/" + site);
    request.set_request_id("seed-" + user + "-" + site);
    request.mutable_access_request()->set_requested_role(role);
    request.mutable_access_request()->set_justification(
        "I look after our support cases");
    custos::access::v1::AccessRequest created;
    tokens_->Check(stub_->CreateAccessRequest(tokens_->As(user, {}).get(),
                                              request, &created),
                   "access request of " + user);
    if (approver.empty()) return;
    custos::access::v1::ApproveAccessRequestRequest approve;
    approve.set_name(created.name());
    custos::access::v1::AccessRequest decided;
    tokens_->Check(stub_->ApproveAccessRequest(
                       tokens_->As(approver, std::move(approver_roles)).get(),
                       approve, &decided),
                   "approval of " + created.name());
  }

  void Pilot(const std::string& id, const std::string& participant) {
    custos::access::v1::CreatePilotRequest request;
    request.set_pilot_id(id);
    request.mutable_pilot()->set_display_name("Entitlement view (My Products)");
    request.mutable_pilot()->add_permissions("software.download");
    request.mutable_pilot()->add_permissions("licenses.generate");
    custos::access::v1::Pilot out;
    tokens_->Check(
        stub_->CreatePilot(tokens_->As("dev-admin", {"platform_admin"}).get(),
                           request, &out),
        "pilot " + id);
    custos::access::v1::AddPilotParticipantRequest add;
    add.set_pilot("pilots/" + id);
    add.set_participant(participant);
    tokens_->Check(
        stub_->AddPilotParticipant(
            tokens_->As("dev-admin", {"platform_admin"}).get(), add, &out),
        "pilot participant " + participant);
  }

 private:
  std::unique_ptr<custos::access::v1::AccessService::Stub> stub_;
  Seeder* tokens_;
};

}  // namespace

// Plaintext, or TLS with a client certificate when --tls_ca_file is set.
std::shared_ptr<grpc::ChannelCredentials> Credentials() {
  if (absl::GetFlag(FLAGS_tls_ca_file).empty()) {
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(absl::GetFlag(FLAGS_tls_ca_file));
  if (!absl::GetFlag(FLAGS_tls_cert_file).empty()) {
    ssl.pem_cert_chain = ReadFile(absl::GetFlag(FLAGS_tls_cert_file));
    ssl.pem_private_key = ReadFile(absl::GetFlag(FLAGS_tls_key_file));
  }
  return grpc::SslCredentials(ssl);
}

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  Seeder seed(grpc::CreateChannel(absl::GetFlag(FLAGS_customers_address),
                                  Credentials()),
              ReadFile(absl::GetFlag(FLAGS_secret_file)));
  // A reseller with an admin (bill) and a user (sally).
  seed.Partner("northwind", "Northwind Resellers");
  seed.PartnerUser("northwind", "bill", v1::PARTNER_ROLE_PARTNER_ADMIN,
                   "Bill Admin");
  seed.PartnerUser("northwind", "sally", v1::PARTNER_ROLE_PARTNER_USER,
                   "Sally User");
  // One customer per management type (R1) ...
  seed.Customer("bill", "northwind", "acme", "Acme Inc",
                v1::MANAGEMENT_TYPE_PARTNER, v1::COMMUNICATIONS_PARTNER_ONLY,
                "bill");
  seed.Customer("bill", "northwind", "globex", "Globex",
                v1::MANAGEMENT_TYPE_CUSTOMER, v1::COMMUNICATIONS_SHARED,
                "bill");
  seed.Customer("bill", "northwind", "initech", "Initech",
                v1::MANAGEMENT_TYPE_CO_MANAGED, v1::COMMUNICATIONS_SHARED,
                "sally");
  // ... and one with no partner at all (R3).
  seed.Customer("dev-admin", "", "umbrella", "Umbrella Corp",
                v1::MANAGEMENT_TYPE_CUSTOMER, v1::COMMUNICATIONS_SHARED, "");
  seed.CustomerUser("acme", "joan", "Joan Customer");
  seed.CustomerUser("globex", "gina", "Gina Globex");
  seed.CustomerUser("initech", "peter", "Peter Initech");
  seed.CustomerUser("umbrella", "alice", "Alice Umbrella");
  seed.Product("acme", "endpoint", "SEP-SBE", 50);
  seed.Product("globex", "endpoint", "SEP-SBE", 10);
  seed.Product("initech", "endpoint", "SEP-SBE", 120);
  if (const std::string address = absl::GetFlag(FLAGS_access_address);
      !address.empty()) {
    namespace av1 = custos::access::v1;
    AccessSeeder access(grpc::CreateChannel(address, Credentials()), &seed);
    // The seed's story: Bill administers Acme's site (Customer Care approved
    // him, as the site had no administrator); he approved Sally and Joan.
    access.Site("acme-sid", "Acme Inc", "customers/acme");
    access.Request("bill", "acme-sid", av1::SITE_ROLE_SITE_ADMINISTRATOR,
                   "carla", {"customer_care"});
    access.Request("sally", "acme-sid", av1::SITE_ROLE_SITE_MEMBER, "bill");
    access.Request("joan", "acme-sid", av1::SITE_ROLE_VIEW_ONLY, "bill");
    // Gina waits for Bill; Peter's site has no administrator, so his request
    // waits in the Customer Care queue (R6).
    access.Request("gina", "acme-sid", av1::SITE_ROLE_VIEW_ONLY, "");
    access.Site("initech-sid", "Initech", "customers/initech");
    access.Request("peter", "initech-sid", av1::SITE_ROLE_SITE_ADMINISTRATOR,
                   "");
    // R9: Acme's site is in the entitlement pilot.
    access.Pilot("entitlements", "sites/acme-sid");
  }
  std::printf("seeded demo data\n");
  return 0;
}
