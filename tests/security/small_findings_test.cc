// Integration tests of three small findings of the hostile suite, against
// the real customer_management_service:
//  - the SQLite store's files (.db, -wal, -shm: audit logs, webhook secrets)
//    are owner-only, and an existing looser file is tightened at start;
//  - a string field holding invalid UTF-8 is INVALID_ARGUMENT naming the
//    field (not UNIMPLEMENTED), writes nothing, and leaves only JSON lines
//    in the log, with or without a token;
//  - CreateCustomer with another partner's customer id is PERMISSION_DENIED
//    like any create the caller may not make, not ALREADY_EXISTS.
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/proto_input_guard.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"
#include "tests/support/test_token.h"

namespace custos::security {
namespace {

namespace v1 = ::custos::customers::v1;
using ::custos::testing::FreePort;
using ::custos::testing::LoopbackChannel;
using ::custos::testing::MakeTempDir;
using ::custos::testing::ServiceProcess;
using ::custos::testing::TestDatabase;
using ::custos::testing::TestingPostgres;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "small-findings-integration-secret-0123456";
constexpr char kBinary[] =
    "services/customer_management_service/customer_management_service";
constexpr char kCreateCustomer[] =
    "/custos.customers.v1.CustomerManagementService/CreateCustomer";

std::string Token(const std::string& subject,
                  std::vector<std::string> roles = {}) {
  return ::custos::testing::TestToken(kSecret, subject, std::move(roles));
}

google::rpc::Status DetailsOf(const grpc::Status& status) {
  google::rpc::Status details;
  details.ParseFromString(status.error_details());
  return details;
}

std::string FieldOf(const grpc::Status& status) {
  // Held in a local: a range-for over a temporary's member dangles.
  const google::rpc::Status details = DetailsOf(status);
  for (const auto& any : details.details()) {
    google::rpc::BadRequest bad_request;
    if (any.UnpackTo(&bad_request) && bad_request.field_violations_size() > 0) {
      return bad_request.field_violations(0).field();
    }
  }
  return "";
}

std::string ReasonOf(const grpc::Status& status) {
  // Held in a local: a range-for over a temporary's member dangles.
  const google::rpc::Status details = DetailsOf(status);
  for (const auto& any : details.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) return info.reason();
  }
  return "";
}

// -1 when `path` does not exist.
int ModeOf(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

std::vector<std::string> LogLines(const ServiceProcess& process) {
  return absl::StrSplit(process.ReadLog(), '\n', absl::SkipEmpty());
}

// The service flushes its log every 100 ms: waits (at most 20 s) for a line
// containing `needle`.
bool WaitForLogLine(const ServiceProcess& process, absl::string_view needle) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    for (const std::string& line : LogLines(process)) {
      if (absl::StrContains(line, needle)) return true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

class SmallFindingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ::custos::testing::WriteFile(dir_ + "/secret", kSecret);
    admin_ = Token("root", {"platform_admin"});
    StartService();
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
    const absl::Status started =
        process_->Start(absl::StrCat("127.0.0.1:", port_));
    ASSERT_TRUE(started.ok()) << started;
    channel_ = LoopbackChannel(port_);
    stub_ = v1::CustomerManagementService::NewStub(channel_);
  }

  std::string DbPath() const { return dir_ + "/customers.db"; }

  std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) {
      context->AddMetadata("authorization", "Bearer " + token);
    }
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(20));
    return context;
  }

  void CreatePartner(const std::string& id) {
    v1::CreatePartnerRequest request;
    request.set_partner_id(id);
    request.mutable_partner()->set_display_name("Partner " + id);
    v1::Partner partner;
    auto status = stub_->CreatePartner(As(admin_).get(), request, &partner);
    ASSERT_TRUE(status.ok()) << status.error_message();
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

  grpc::Status CreateCustomer(const std::string& token,
                              const std::string& partner, const std::string& id,
                              const std::string& display_name,
                              v1::Customer* created = nullptr) {
    v1::CreateCustomerRequest request;
    request.set_customer_id(id);
    request.mutable_customer()->set_display_name(display_name);
    request.mutable_customer()->set_partner("partners/" + partner);
    v1::Customer response;
    auto status = stub_->CreateCustomer(As(token).get(), request, &response);
    if (created != nullptr) *created = response;
    return status;
  }

  grpc::Status GetCustomer(const std::string& token, const std::string& id,
                           v1::Customer* customer) {
    v1::GetCustomerRequest request;
    request.set_name("customers/" + id);
    return stub_->GetCustomer(As(token).get(), request, customer);
  }

  int CountCustomers() {
    v1::ListCustomersRequest request;
    request.set_page_size(1000);
    v1::ListCustomersResponse page;
    auto status = stub_->ListCustomers(As(admin_).get(), request, &page);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return page.customers_size();
  }

  // Calls CreateCustomer with `bytes` as the serialized request, bypassing
  // the client's own serialization.
  grpc::Status CallRaw(const std::string& token, const std::string& bytes) {
    grpc::GenericStub generic(channel_);
    grpc::Slice slice(bytes.data(), bytes.size());
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    auto context = As(token);
    std::promise<grpc::Status> done;
    generic.UnaryCall(context.get(), kCreateCustomer, grpc::StubOptions(),
                      &request, &response,
                      [&done](grpc::Status status) { done.set_value(status); });
    return done.get_future().get();
  }

  std::string dir_;
  int port_ = 0;
  std::unique_ptr<ServiceProcess> process_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::CustomerManagementService::Stub> stub_;
  std::string admin_;
};

// The store holds audit logs and webhook secrets: group and others get
// nothing, whatever the umask.
TEST_F(SmallFindingsTest, StoreFilesAreOwnerOnly) {
  if (TestingPostgres()) GTEST_SKIP() << "SQLite files only";
  CreatePartner("acme-partner");  // a write: the WAL has content
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string path = DbPath() + suffix;
    EXPECT_EQ(ModeOf(path), 0600) << path;
  }
}

TEST_F(SmallFindingsTest, LooserExistingStoreFilesAreTightenedAtStart) {
  if (TestingPostgres()) GTEST_SKIP() << "SQLite files only";
  CreatePartner("acme-partner");
  ASSERT_EQ(process_->Stop(), 0);
  // As an older version (or a restored backup) left them. An empty -wal or
  // -shm is what SQLite finds after a clean close that kept the files.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string path = DbPath() + suffix;
    if (ModeOf(path) < 0) ::custos::testing::WriteFile(path, "");
    ASSERT_EQ(chmod(path.c_str(), 0644), 0) << path;
  }
  StartService();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string path = DbPath() + suffix;
    EXPECT_EQ(ModeOf(path), 0600) << path;
  }
  EXPECT_TRUE(WaitForLogLine(*process_, "accessible to others"))
      << process_->ReadLog();
  // The data survived.
  v1::GetPartnerRequest request;
  request.set_name("partners/acme-partner");
  v1::Partner partner;
  EXPECT_TRUE(stub_->GetPartner(As(admin_).get(), request, &partner).ok());
}

// Invalid UTF-8 in a string field: protobuf refuses to parse the request,
// so no handler runs — the interceptor answers for the service. The answer
// does not depend on the token: the request is refused before
// authentication (which runs in the handler), and describing the caller's
// own bytes tells an anonymous caller nothing the published schema does not.
TEST_F(SmallFindingsTest, InvalidUtf8IsInvalidArgumentNamingTheField) {
  CreatePartner("acme-partner");
  const int customers_before = CountCustomers();
  v1::CreateCustomerRequest request;
  request.set_customer_id("utf8-victim");
  request.mutable_customer()->set_display_name("XY");
  request.mutable_customer()->set_partner("partners/acme-partner");
  std::string bytes = request.SerializeAsString();
  // Same length, so no length prefix changes.
  ASSERT_EQ(absl::StrReplaceAll({{"XY", "\xff\xfe"}}, &bytes), 1);

  for (const std::string& token : {admin_, std::string()}) {
    SCOPED_TRACE(token.empty() ? "no token" : "platform admin");
    grpc::Status status = CallRaw(token, bytes);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_code() << " " << status.error_message();
    EXPECT_EQ(FieldOf(status), "customer.display_name");
    EXPECT_EQ(ReasonOf(status), "INVALID_FIELD");
    EXPECT_THAT(status.error_message(), HasSubstr("customer.display_name"));
    EXPECT_THAT(status.error_message(), HasSubstr("UTF-8"));
  }

  // Nothing was written.
  v1::Customer customer;
  EXPECT_EQ(GetCustomer(admin_, "utf8-victim", &customer).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(CountCustomers(), customers_before);
  // The same request, valid, still works: the refusals left nothing behind.
  EXPECT_TRUE(CreateCustomer(admin_, "acme-partner", "utf8-victim", "XY").ok());

  // Both refusals are logged, like any RPC (once the buffer is flushed)...
  auto refusals = [this] {
    int count = 0;
    for (const std::string& line : LogLines(*process_)) {
      if (absl::StrContains(line, "\"code\":\"INVALID_ARGUMENT\"") &&
          absl::StrContains(line, "customer.display_name")) {
        ++count;
      }
    }
    return count;
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (refusals() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(refusals(), 2) << process_->ReadLog();
  // ... and every line of the log (stdout and stderr) is one JSON object,
  // protobuf's own complaint about the field included.
  bool protobuf_line = false;
  for (const std::string& line : LogLines(*process_)) {
    google::protobuf::Struct parsed;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok())
        << "not JSON: " << line;
    protobuf_line =
        protobuf_line ||
        absl::StrContains(line, "custos.customers.v1.Customer.display_name");
  }
  EXPECT_TRUE(protobuf_line) << process_->ReadLog();
}

TEST(FieldPathInRequestTest, NamesTheFieldByItsPathFromTheRequest) {
  EXPECT_EQ(FieldPathInRequest("custos.customers.v1.CreateCustomerRequest",
                               "custos.customers.v1.Customer.display_name"),
            "customer.display_name");
  EXPECT_EQ(FieldPathInRequest(
                "custos.customers.v1.CreateCustomerRequest",
                "custos.customers.v1.CreateCustomerRequest.request_id"),
            "request_id");
  // Not inside that request (or no such request type): the field's name.
  EXPECT_EQ(FieldPathInRequest("custos.customers.v1.GetCustomerRequest",
                               "custos.customers.v1.Customer.display_name"),
            "display_name");
  EXPECT_EQ(FieldPathInRequest("no.such.Request",
                               "custos.customers.v1.Customer.display_name"),
            "display_name");
  EXPECT_EQ(FieldPathInRequest("custos.customers.v1.CreateCustomerRequest", ""),
            "");
}

// Customer ids are global. A create colliding with a customer the caller
// may not see is refused exactly as a create the caller may not make, so it
// does not reveal that the customer exists; one the caller may see is
// ALREADY_EXISTS.
TEST_F(SmallFindingsTest, CreateWithAnotherPartnersCustomerIdIsDenied) {
  CreatePartner("acme-partner");
  AddPartnerUser("acme-partner", "bill", v1::PARTNER_ROLE_PARTNER_ADMIN);
  CreatePartner("rival");
  AddPartnerUser("rival", "eve", v1::PARTNER_ROLE_PARTNER_ADMIN);
  const std::string bill = Token("bill");
  const std::string eve = Token("eve");
  v1::Customer globex;
  ASSERT_TRUE(
      CreateCustomer(bill, "acme-partner", "globex", "Globex", &globex).ok());

  // Eve may create customers of rival, but not one with globex's id.
  grpc::Status collision = CreateCustomer(eve, "rival", "globex", "Mine now");
  EXPECT_EQ(collision.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << collision.error_code() << " " << collision.error_message();
  // The same request under a partner she has no standing in.
  grpc::Status no_standing =
      CreateCustomer(eve, "acme-partner", "globex", "Mine now");
  EXPECT_EQ(no_standing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(collision.error_message(), no_standing.error_message());
  // A fresh id she may not create: the same answer but for the id asked.
  grpc::Status fresh =
      CreateCustomer(eve, "acme-partner", "initech", "Mine now");
  EXPECT_EQ(fresh.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(absl::StrReplaceAll(fresh.error_message(), {{"initech", "globex"}}),
            collision.error_message());
  EXPECT_EQ(ReasonOf(collision), ReasonOf(fresh));
  EXPECT_EQ(FieldOf(collision), FieldOf(fresh));
  EXPECT_THAT(collision.error_message(), Not(HasSubstr("exist")));

  // Acme's customer is untouched, and still acme's.
  v1::Customer after;
  ASSERT_TRUE(GetCustomer(bill, "globex", &after).ok());
  EXPECT_EQ(after.display_name(), "Globex");
  EXPECT_EQ(after.partner(), "partners/acme-partner");
  EXPECT_EQ(after.etag(), globex.etag());
  EXPECT_EQ(GetCustomer(eve, "globex", &after).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Those who may see globex are told it exists.
  EXPECT_EQ(
      CreateCustomer(bill, "acme-partner", "globex", "Again").error_code(),
      grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(CreateCustomer(admin_, "rival", "globex", "Again").error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
}

}  // namespace
}  // namespace custos::security
