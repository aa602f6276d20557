// The hostile suite, abuse by signed-in callers: one user looping writes is
// rate-limited (RESOURCE_EXHAUSTED + RetryInfo) without slowing anyone else
// or the services' own calls; one pending access request per user and site;
// live streams capped per user. Real binaries on loopback, real tokens.
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "custos/access/v1/access_service.grpc.pb.h"
#include "custos/common/v1/audit.pb.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "custos/notifications/v1/notifications_service.grpc.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"
#include "tests/support/test_token.h"

namespace custos {
namespace {

namespace av1 = ::custos::access::v1;
namespace nv1 = ::custos::notifications::v1;
using ::custos::testing::FreePort;
using ::custos::testing::LoopbackChannel;
using ::custos::testing::MakeTempDir;
using ::custos::testing::ServiceProcess;
using ::custos::testing::TestDatabase;

constexpr char kSecret[] = "abuse-integration-secret-0123456789ab";
constexpr char kAccessBinary[] = "services/access_service/access_service";
constexpr char kCustomersBinary[] =
    "services/customer_management_service/customer_management_service";
constexpr char kNotificationsBinary[] =
    "services/notification_service/notification_service";

std::string Token(const std::string& subject,
                  std::vector<std::string> roles = {}) {
  return ::custos::testing::TestToken(kSecret, subject, std::move(roles));
}

std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", "Bearer " + token);
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(30));
  return context;
}

google::rpc::Status DetailsOf(const grpc::Status& status) {
  google::rpc::Status details;
  details.ParseFromString(status.error_details());
  return details;
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

std::optional<absl::Duration> RetryDelayOf(const grpc::Status& status) {
  // Held in a local: a range-for over a temporary's member dangles.
  const google::rpc::Status details = DetailsOf(status);
  for (const auto& any : details.details()) {
    google::rpc::RetryInfo retry;
    if (any.UnpackTo(&retry)) {
      return absl::Seconds(retry.retry_delay().seconds()) +
             absl::Nanoseconds(retry.retry_delay().nanos());
    }
  }
  return std::nullopt;
}

class AbuseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ::custos::testing::WriteFile(dir_ + "/secret", kSecret);
    admin_ = Token("root", {"platform_admin"});
    care_ = Token("carla", {"customer_care"});
    service_ = Token("portal-backend", {"service"});
  }

  // `extra` flags go to every service started.
  void StartCustomers(const std::vector<std::string>& extra) {
    ::custos::testing::WriteFile(dir_ + "/customers-token",
                                 Token("customer-management", {"service"}));
    customers_port_ = FreePort();
    std::vector<std::string> args{
        absl::StrCat("--listen=127.0.0.1:", customers_port_),
        absl::StrCat("--database=", TestDatabase(dir_, "customers")),
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--service_token_file=", dir_, "/customers-token")};
    args.insert(args.end(), extra.begin(), extra.end());
    customers_ = std::make_unique<ServiceProcess>(kCustomersBinary, args);
    ASSERT_TRUE(
        customers_->Start(absl::StrCat("127.0.0.1:", customers_port_)).ok());
  }

  void StartAccess(const std::vector<std::string>& extra) {
    StartCustomers({});
    ::custos::testing::WriteFile(dir_ + "/access-token",
                                 Token("access-service", {"service"}));
    access_port_ = FreePort();
    std::vector<std::string> args{
        absl::StrCat("--listen=127.0.0.1:", access_port_),
        absl::StrCat("--database=", TestDatabase(dir_, "access")),
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--customers_address=127.0.0.1:", customers_port_),
        absl::StrCat("--service_token_file=", dir_, "/access-token"),
        absl::StrCat("--policy_file=", std::getenv("CUSTOS_SOURCE_DIR"),
                     "/deploy/base/policy/default_policy.textproto")};
    args.insert(args.end(), extra.begin(), extra.end());
    access_ = std::make_unique<ServiceProcess>(kAccessBinary, args);
    ASSERT_TRUE(access_->Start(absl::StrCat("127.0.0.1:", access_port_)).ok())
        << access_->ReadLog();
    access_stub_ = av1::AccessService::NewStub(LoopbackChannel(access_port_));
  }

  void StartNotifications(const std::vector<std::string>& extra) {
    StartCustomers({});
    ::custos::testing::WriteFile(dir_ + "/notifications-token",
                                 Token("notifications", {"service"}));
    notifications_port_ = FreePort();
    std::vector<std::string> args{
        absl::StrCat("--listen=127.0.0.1:", notifications_port_),
        absl::StrCat("--database=", TestDatabase(dir_, "notifications")),
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--customers_address=127.0.0.1:", customers_port_),
        absl::StrCat("--service_token_file=", dir_, "/notifications-token")};
    args.insert(args.end(), extra.begin(), extra.end());
    notifications_ =
        std::make_unique<ServiceProcess>(kNotificationsBinary, args);
    ASSERT_TRUE(
        notifications_->Start(absl::StrCat("127.0.0.1:", notifications_port_))
            .ok())
        << notifications_->ReadLog();
    notifications_stub_ =
        nv1::NotificationService::NewStub(LoopbackChannel(notifications_port_));
  }

  void CreateSite(const std::string& id) {
    av1::CreateSiteRequest request;
    request.set_site_id(id);
    request.mutable_site()->set_display_name("Site " + id);
    av1::Site site;
    auto status = access_stub_->CreateSite(As(care_).get(), request, &site);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  grpc::Status CreateRequest(const std::string& user, const std::string& site,
                             av1::SiteRole role, av1::AccessRequest* created) {
    av1::CreateAccessRequestRequest request;
    request.set_parent("sites/" + site);
    request.mutable_access_request()->set_requested_role(role);
    request.mutable_access_request()->set_justification("I work there");
    return access_stub_->CreateAccessRequest(As(Token(user)).get(), request,
                                             created);
  }

  grpc::Status CancelRequest(const std::string& user, const std::string& name) {
    av1::CancelAccessRequestRequest request;
    request.set_name(name);
    av1::AccessRequest cancelled;
    return access_stub_->CancelAccessRequest(As(Token(user)).get(), request,
                                             &cancelled);
  }

  // Every access request `user` made on `site`, as `user` lists them.
  std::vector<av1::AccessRequest> RequestsOf(const std::string& user,
                                             const std::string& site) {
    std::vector<av1::AccessRequest> found;
    av1::ListAccessRequestsRequest request;
    request.set_parent("sites/" + site);
    request.set_requester("users/me");
    request.set_page_size(1000);
    do {
      av1::ListAccessRequestsResponse page;
      auto status = access_stub_->ListAccessRequests(As(Token(user)).get(),
                                                     request, &page);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      for (const auto& r : page.access_requests()) found.push_back(r);
      request.set_page_token(page.next_page_token());
    } while (!request.page_token().empty());
    return found;
  }

  // Audit events on `site` and below made by `actor`.
  int AuditEventsBy(const std::string& actor, const std::string& site) {
    int count = 0;
    custos::common::v1::ListAuditEventsRequest request;
    request.set_parent("sites/" + site);
    request.set_page_size(1000);
    do {
      custos::common::v1::ListAuditEventsResponse page;
      auto status =
          access_stub_->ListAuditEvents(As(admin_).get(), request, &page);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      for (const auto& event : page.audit_events()) {
        if (event.actor() == actor) ++count;
      }
      request.set_page_token(page.next_page_token());
    } while (!request.page_token().empty());
    return count;
  }

  static int Cancelled(const std::vector<av1::AccessRequest>& requests) {
    int cancelled = 0;
    for (const auto& r : requests) {
      if (r.state() == av1::AccessRequest::STATE_CANCELLED) ++cancelled;
    }
    return cancelled;
  }

  std::string dir_;
  std::string admin_, care_, service_;
  int customers_port_ = 0, access_port_ = 0, notifications_port_ = 0;
  std::unique_ptr<ServiceProcess> customers_, access_, notifications_;
  std::unique_ptr<av1::AccessService::Stub> access_stub_;
  std::unique_ptr<nv1::NotificationService::Stub> notifications_stub_;
};

// Finding: a signed-in user looping CreateAccessRequest + CancelAccessRequest
// was never slowed down.
TEST_F(AbuseTest, WritesAreRateLimitedPerCallerWithRetryInfo) {
  StartAccess({"--write_rate_per_second=5", "--write_burst=5"});
  CreateSite("acme");

  // joan loops create + cancel until refused; every answer is either done
  // or RESOURCE_EXHAUSTED.
  int created = 0, cancelled = 0;
  grpc::Status refused;
  std::string pending;  // a request joan created and has not cancelled yet
  for (int i = 0; i < 1000 && refused.ok(); ++i) {
    if (pending.empty()) {
      av1::AccessRequest request;
      grpc::Status status =
          CreateRequest("joan", "acme", av1::SITE_ROLE_VIEW_ONLY, &request);
      if (!status.ok()) {
        refused = status;
        break;
      }
      ++created;
      pending = request.name();
    }
    grpc::Status status = CancelRequest("joan", pending);
    if (!status.ok()) {
      refused = status;
      break;
    }
    ++cancelled;
    pending.clear();
  }
  ASSERT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  EXPECT_EQ(ReasonOf(refused), "WRITE_RATE_LIMITED");
  std::optional<absl::Duration> delay = RetryDelayOf(refused);
  ASSERT_TRUE(delay.has_value()) << "no google.rpc.RetryInfo detail";
  EXPECT_GT(*delay, absl::ZeroDuration());
  EXPECT_LE(*delay, absl::Seconds(1));
  // The burst of 5 went through before the refusal.
  EXPECT_GE(created + cancelled, 5);

  // The refused call wrote nothing: joan's requests and audit events are
  // exactly the calls that succeeded.
  std::vector<av1::AccessRequest> requests = RequestsOf("joan", "acme");
  EXPECT_EQ(static_cast<int>(requests.size()), created);
  EXPECT_EQ(Cancelled(requests), cancelled);
  EXPECT_EQ(AuditEventsBy("joan", "acme"), created + cancelled);

  // The refusal is logged like any other call (the log is flushed in the
  // background: wait for it).
  const absl::Time log_deadline = absl::Now() + absl::Seconds(10);
  bool logged = false;
  while (!logged && absl::Now() < log_deadline) {
    for (absl::string_view line : absl::StrSplit(access_->ReadLog(), '\n')) {
      if (absl::StrContains(line, "\"code\":\"RESOURCE_EXHAUSTED\"") &&
          absl::StrContains(line, "\"principal\":\"joan\"")) {
        logged = true;
      }
    }
    if (!logged) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(logged) << access_->ReadLog();

  // Another user is not slowed down by joan.
  av1::AccessRequest peters;
  grpc::Status status =
      CreateRequest("peter", "acme", av1::SITE_ROLE_VIEW_ONLY, &peters);
  EXPECT_TRUE(status.ok()) << status.error_message();

  // A peer (role `service`) is never limited: far more writes than the
  // burst, at once.
  for (int i = 0; i < 30; ++i) {
    av1::NotifyCustomerChangedRequest notice;
    notice.set_customer("customers/c1");
    notice.set_version(1);
    av1::NotifyCustomerChangedResponse response;
    status = access_stub_->NotifyCustomerChanged(As(service_).get(), notice,
                                                 &response);
    ASSERT_TRUE(status.ok()) << "call " << i << ": " << status.error_message();
  }

  // After the delay joan may write again: the refused call, retried, works.
  absl::SleepFor(*delay);
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  int retried_create = 0, retried_cancel = 0;
  while (true) {
    if (pending.empty()) {
      av1::AccessRequest request;
      status =
          CreateRequest("joan", "acme", av1::SITE_ROLE_VIEW_ONLY, &request);
      if (status.ok()) {
        retried_create = 1;
        break;
      }
    } else {
      status = CancelRequest("joan", pending);
      if (status.ok()) {
        retried_cancel = 1;
        break;
      }
    }
    ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << status.error_message();
    ASSERT_LT(absl::Now(), give_up)
        << "still refused: " << status.error_message();
    std::optional<absl::Duration> again = RetryDelayOf(status);
    ASSERT_TRUE(again.has_value());
    absl::SleepFor(*again);
  }
  requests = RequestsOf("joan", "acme");
  EXPECT_EQ(static_cast<int>(requests.size()), created + retried_create);
  EXPECT_EQ(Cancelled(requests), cancelled + retried_cancel);
  EXPECT_EQ(AuditEventsBy("joan", "acme"),
            created + cancelled + retried_create + retried_cancel);
}

// At most one pending request per user and site, whatever role it asks for:
// the second is FAILED_PRECONDITION (REQUEST_PENDING) and stores nothing.
TEST_F(AbuseTest, SecondPendingRequestForTheSameSiteIsRefusedAndStoresNothing) {
  StartAccess({});
  CreateSite("acme");
  av1::AccessRequest first;
  grpc::Status status =
      CreateRequest("joan", "acme", av1::SITE_ROLE_VIEW_ONLY, &first);
  ASSERT_TRUE(status.ok()) << status.error_message();
  for (av1::SiteRole role :
       {av1::SITE_ROLE_VIEW_ONLY, av1::SITE_ROLE_SITE_MEMBER}) {
    av1::AccessRequest second;
    status = CreateRequest("joan", "acme", role, &second);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
        << status.error_message();
    EXPECT_EQ(ReasonOf(status), "REQUEST_PENDING");
    EXPECT_TRUE(absl::StrContains(status.error_message(), first.name()))
        << status.error_message();
  }
  std::vector<av1::AccessRequest> requests = RequestsOf("joan", "acme");
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].name(), first.name());
  EXPECT_EQ(requests[0].state(), av1::AccessRequest::STATE_PENDING);
  EXPECT_EQ(AuditEventsBy("joan", "acme"), 1);
}

// A live WatchPermissionChanges call: open until Cancel.
struct Watch {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReader<av1::WatchPermissionChangesResponse>>
      reader;
  // The first response (where the stream starts), if the stream was served.
  std::optional<av1::WatchPermissionChangesResponse> first;
  grpc::Status status;  // set once the stream ended

  void Cancel() {
    context->TryCancel();
    status = reader->Finish();
  }
};

// Opens a watch and reads its first response; a refused watch has none and
// carries its status.
Watch OpenWatch(av1::AccessService::Stub* stub, const std::string& token) {
  Watch watch;
  watch.context = As(token);
  av1::WatchPermissionChangesRequest request;
  watch.reader = stub->WatchPermissionChanges(watch.context.get(), request);
  av1::WatchPermissionChangesResponse response;
  if (watch.reader->Read(&response)) {
    watch.first = std::move(response);
  } else {
    watch.status = watch.reader->Finish();
  }
  return watch;
}

// Finding: 500 live streams from one user were all served.
TEST_F(AbuseTest, WatchStreamsAreCappedPerUser) {
  StartAccess({"--max_streams_per_user=3"});
  std::vector<Watch> roots;
  for (int i = 0; i < 3; ++i) {
    roots.push_back(OpenWatch(access_stub_.get(), admin_));
    ASSERT_TRUE(roots.back().first.has_value())
        << "watch " << i << ": " << roots.back().status.error_message();
    EXPECT_FALSE(roots.back().first->resume_token().empty());
  }
  // The 4th from the same user is refused before it reads anything: no
  // response, not even where it would have started.
  Watch fourth = OpenWatch(access_stub_.get(), admin_);
  EXPECT_FALSE(fourth.first.has_value());
  EXPECT_EQ(fourth.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << fourth.status.error_message();
  EXPECT_EQ(ReasonOf(fourth.status), "TOO_MANY_STREAMS");
  EXPECT_TRUE(
      absl::StrContains(fourth.status.error_message(), "max_streams_per_user"))
      << fourth.status.error_message();
  EXPECT_TRUE(absl::StrContains(fourth.status.error_message(), "3"));

  // Another user is served meanwhile.
  Watch other = OpenWatch(access_stub_.get(), Token("ops", {"platform_admin"}));
  EXPECT_TRUE(other.first.has_value()) << other.status.error_message();

  // Once one of root's streams ends, root may open another (the server
  // gives the slot back when it is done with the call: wait for that).
  roots.front().Cancel();
  EXPECT_EQ(roots.front().status.error_code(), grpc::StatusCode::CANCELLED);
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  Watch again = OpenWatch(access_stub_.get(), admin_);
  while (!again.first.has_value() && absl::Now() < give_up) {
    ASSERT_EQ(again.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << again.status.error_message();
    absl::SleepFor(absl::Milliseconds(20));
    again = OpenWatch(access_stub_.get(), admin_);
  }
  EXPECT_TRUE(again.first.has_value()) << again.status.error_message();
  // And the cap still holds: root has 3 live again.
  Watch over = OpenWatch(access_stub_.get(), admin_);
  EXPECT_EQ(over.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_FALSE(over.first.has_value());

  // Backends watch with the shared service token from many pods: role
  // `service` is not capped (as it is not rate-limited).
  const std::string backend = Token("portal-backend", {"service"});
  std::vector<Watch> backends;
  for (int i = 0; i < 5; ++i) {
    backends.push_back(OpenWatch(access_stub_.get(), backend));
    EXPECT_TRUE(backends.back().first.has_value())
        << i << ": " << backends.back().status.error_message();
  }

  for (Watch* watch : {&roots[1], &roots[2], &other, &again}) {
    if (watch->first.has_value()) watch->Cancel();
  }
  for (Watch& watch : backends) {
    if (watch.first.has_value()) watch.Cancel();
  }
}

// A live StreamNotifications call on users/{user}.
struct Inbox {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReader<nv1::StreamNotificationsResponse>> reader;

  void Cancel() {
    context->TryCancel();
    reader->Finish().IgnoreError();
  }
};

Inbox OpenInbox(nv1::NotificationService::Stub* stub, const std::string& user) {
  Inbox inbox;
  inbox.context = As(Token(user));
  nv1::StreamNotificationsRequest request;
  request.set_parent("users/" + user);
  inbox.reader = stub->StreamNotifications(inbox.context.get(), request);
  // Served streams send their metadata once live; refused ones with their
  // status.
  inbox.reader->WaitForInitialMetadata();
  return inbox;
}

TEST_F(AbuseTest, InboxStreamsAreCappedPerUser) {
  StartNotifications({"--max_streams_per_user=3"});
  // Notices sent, per user, by a backend (role `service`).
  std::map<std::string, int> sent;
  auto notify = [&](const std::string& user) {
    nv1::NotifyRequest request;
    request.add_recipients("users/" + user);
    request.set_category(nv1::CATEGORY_ACCOUNT);
    request.set_severity(nv1::SEVERITY_INFO);
    request.set_title("Your invoice is ready");
    request.set_request_id(absl::StrCat(user, "-", ++sent[user]));
    nv1::Alert alert;
    grpc::Status status =
        notifications_stub_->Notify(As(service_).get(), request, &alert);
    EXPECT_TRUE(status.ok()) << status.error_message();
  };
  // Notifies `user` and reads it from `inbox`: proof that the stream is
  // served. False when the stream ended instead (its status in `ended`).
  auto delivers = [&](Inbox& inbox, const std::string& user,
                      grpc::Status* ended) {
    notify(user);
    nv1::StreamNotificationsResponse item;
    if (inbox.reader->Read(&item)) return true;
    *ended = inbox.reader->Finish();
    return false;
  };

  std::vector<Inbox> alices;
  for (int i = 0; i < 3; ++i) {
    alices.push_back(OpenInbox(notifications_stub_.get(), "alice"));
  }
  // All three are live: one notice reaches each.
  notify("alice");
  for (Inbox& inbox : alices) {
    nv1::StreamNotificationsResponse item;
    ASSERT_TRUE(inbox.reader->Read(&item))
        << inbox.reader->Finish().error_message();
    EXPECT_EQ(item.notification().title(), "Your invoice is ready");
  }

  // The 4th is refused: it ends at once with nothing sent.
  Inbox fourth = OpenInbox(notifications_stub_.get(), "alice");
  nv1::StreamNotificationsResponse item;
  EXPECT_FALSE(fourth.reader->Read(&item));
  grpc::Status status = fourth.reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_EQ(ReasonOf(status), "TOO_MANY_STREAMS");
  EXPECT_TRUE(absl::StrContains(status.error_message(), "max_streams_per_user"))
      << status.error_message();

  // Another user is served meanwhile.
  Inbox peters = OpenInbox(notifications_stub_.get(), "peter");
  grpc::Status ended;
  EXPECT_TRUE(delivers(peters, "peter", &ended)) << ended.error_message();

  // Once one of alice's streams ends, she may open another.
  alices.front().Cancel();
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  Inbox again = OpenInbox(notifications_stub_.get(), "alice");
  bool served = delivers(again, "alice", &ended);
  while (!served && absl::Now() < give_up) {
    ASSERT_EQ(ended.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << ended.error_message();
    absl::SleepFor(absl::Milliseconds(20));
    again = OpenInbox(notifications_stub_.get(), "alice");
    served = delivers(again, "alice", &ended);
  }
  EXPECT_TRUE(served) << ended.error_message();

  // The refused streams wrote nothing: alice's inbox holds exactly the
  // notices sent to her.
  nv1::ListNotificationsRequest list;
  list.set_parent("users/alice");
  list.set_page_size(1000);
  nv1::ListNotificationsResponse listed;
  status = notifications_stub_->ListNotifications(As(Token("alice")).get(),
                                                  list, &listed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(listed.notifications_size(), sent["alice"]);

  for (Inbox* inbox : {&alices[1], &alices[2], &peters}) inbox->Cancel();
  if (served) again.Cancel();
}

}  // namespace
}  // namespace custos
