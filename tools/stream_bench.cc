// Opens N StreamNotifications subscribers, publishes one courtesy broadcast,
// and reports how long each subscriber waited for it (publish → received):
// p50, p99, max. Subscribers are users bench-000100, bench-000200, ... (see
// fill_customer_users), spread over the whole audience, so the last one waits
// for nearly the whole fan-out. Used by tools/bench-broadcast.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/auth.h"
#include "custos/notifications/v1/notifications_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50053", "notification_service");
ABSL_FLAG(std::string, secret_file, "", "HS256 secret to mint tokens with");
ABSL_FLAG(int, subscribers, 1000, "concurrent streams");
ABSL_FLAG(int, spacing, 100, "subscriber i is user bench-(i+1)*spacing");
ABSL_FLAG(int, channels, 8, "connections the streams are spread over");

namespace {

namespace v1 = custos::notifications::v1;

std::string Mint(const std::string& secret, const std::string& subject,
                 std::vector<std::string> roles) {
  custos::JwtClaims claims;
  claims.subject = subject;
  claims.roles = std::move(roles);
  claims.issued_at = absl::Now();
  claims.expires_at = absl::Now() + absl::Minutes(10);
  return custos::SignJwtHs256(claims, secret);
}

class Subscriber
    : public grpc::ClientReadReactor<v1::StreamNotificationsResponse> {
 public:
  Subscriber(v1::NotificationService::Stub* stub, const std::string& user,
             const std::string& token, std::atomic<int>* ready,
             std::atomic<int>* received)
      : ready_(ready), received_(received) {
    context_.AddMetadata("authorization", "Bearer " + token);
    context_.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(120));
    request_.set_parent("users/" + user);
    stub->async()->StreamNotifications(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }
  void OnReadInitialMetadataDone(bool ok) override {
    if (ok) ready_->fetch_add(1);
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    absl::MutexLock lock(&mu_);
    if (!got_) {
      got_ = true;
      at_ = absl::Now();
      received_->fetch_add(1);
    }
  }
  void OnDone(const grpc::Status&) override { done_.Notify(); }
  void Cancel() { context_.TryCancel(); }
  void WaitDone() { done_.WaitForNotification(); }
  std::optional<absl::Time> at() {
    absl::MutexLock lock(&mu_);
    return got_ ? std::optional<absl::Time>(at_) : std::nullopt;
  }

 private:
  grpc::ClientContext context_;
  v1::StreamNotificationsRequest request_;
  v1::StreamNotificationsResponse response_;
  std::atomic<int>* ready_;
  std::atomic<int>* received_;
  absl::Mutex mu_;
  bool got_ = false;
  absl::Time at_;
  absl::Notification done_;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::ifstream in(absl::GetFlag(FLAGS_secret_file));
  std::stringstream secret;
  secret << in.rdbuf();
  const int n = absl::GetFlag(FLAGS_subscribers);
  std::vector<std::unique_ptr<v1::NotificationService::Stub>> stubs;
  for (int i = 0; i < absl::GetFlag(FLAGS_channels); ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(v1::NotificationService::NewStub(
        grpc::CreateCustomChannel(absl::GetFlag(FLAGS_target),
                                  grpc::InsecureChannelCredentials(), args)));
  }
  std::atomic<int> ready{0};
  std::atomic<int> received{0};
  std::vector<std::unique_ptr<Subscriber>> subscribers;
  for (int i = 0; i < n; ++i) {
    const std::string user =
        absl::StrFormat("bench-%06d", (i + 1) * absl::GetFlag(FLAGS_spacing));
    subscribers.push_back(std::make_unique<Subscriber>(
        stubs[i % stubs.size()].get(), user, Mint(secret.str(), user, {}),
        &ready, &received));
  }
  const absl::Time open_deadline = absl::Now() + absl::Seconds(60);
  while (ready.load() < n && absl::Now() < open_deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (ready.load() < n) {
    std::fprintf(stderr, "only %d of %d streams opened\n", ready.load(), n);
    return 1;
  }
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + Mint(secret.str(), "bench",
                                                        {"platform_admin"}));
  v1::PublishBroadcastRequest publish;
  publish.set_kind(v1::BROADCAST_KIND_OUTAGE);
  publish.set_title("Stream benchmark");
  v1::Alert alert;
  const absl::Time start = absl::Now();
  grpc::Status status = stubs[0]->PublishBroadcast(&context, publish, &alert);
  if (!status.ok()) {
    std::fprintf(stderr, "publish: %s\n", status.error_message().c_str());
    return 1;
  }
  const absl::Time wait_deadline = absl::Now() + absl::Seconds(60);
  while (received.load() < n && absl::Now() < wait_deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  std::vector<double> ms;
  for (auto& s : subscribers) {
    if (auto at = s->at())
      ms.push_back(absl::ToDoubleMilliseconds(*at - start));
  }
  for (auto& s : subscribers) s->Cancel();
  for (auto& s : subscribers) s->WaitDone();
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) {
    return ms.empty() ? 0.0
                      : ms[std::min(ms.size() - 1,
                                    static_cast<size_t>(p * ms.size()))];
  };
  std::printf(
      "%d subscribers, %zu received; publish→received ms: p50 %.1f  p99 %.1f  "
      "max %.1f\n",
      n, ms.size(), pct(0.50), pct(0.99), ms.empty() ? 0.0 : ms.back());
  return ms.size() == static_cast<size_t>(n) ? 0 : 1;
}
