// How fast an outbox drains into a real NotificationService
// (docs/benchmarks.md, "Outbox drain"): a fresh store holding --messages
// queued Notify calls (as AccessService queues R8 notices), delivered by the
// real OutboxWorker and PeerDelivery to --target, once per --in_flight value
// in one run (1 is how the outbox sent before issue 13). Prints messages/s
// and the time to an empty outbox.
//   tools/bench-outbox   (starts the NotificationService and runs this)
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/database.h"
#include "common/outbox.h"
#include "common/peer_delivery.h"
#include "common/service_token.h"
#include "custos/notifications/v1/notifications_service.pb.h"
#include "grpcpp/security/credentials.h"

ABSL_FLAG(std::string, target, "", "NotificationService host:port");
ABSL_FLAG(std::string, token_file, "", "service token (role service)");
ABSL_FLAG(std::string, database, "",
          "store to queue in; empty: a fresh SQLite file per round");
ABSL_FLAG(int, messages, 10000, "notices queued per round");
ABSL_FLAG(std::string, in_flight, "1,64",
          "comma-separated OutboxOptions::max_in_flight values, one round "
          "each");
ABSL_FLAG(absl::Duration, give_up, absl::Seconds(120),
          "a round stops after this long");

namespace {

const std::vector<custos::Migration>& Migrations() {
  static const auto* migrations = new std::vector<custos::Migration>{
      {1, custos::kOutboxSchema},
      {2, custos::kOutboxByDestinationSchema},
      {3, custos::kOutboxLeasesSchema},
      {4, custos::kOutboxDeadLettersSchema},
      {5, custos::kOutboxTraceSchema}};
  return *migrations;
}

absl::Status Queue(custos::Database& db, int messages, const std::string& run) {
  constexpr int kPerTransaction = 500;
  for (int first = 0; first < messages; first += kPerTransaction) {
    absl::Status status = db.Write([&](custos::Connection& c) {
      for (int i = first; i < std::min(messages, first + kPerTransaction);
           ++i) {
        custos::notifications::v1::NotifyRequest notice;
        notice.add_recipients(absl::StrCat("users/bench-", i % 100));
        notice.set_category(custos::notifications::v1::CATEGORY_ACCOUNT);
        notice.set_severity(custos::notifications::v1::SEVERITY_INFO);
        notice.set_title("Access request approved");
        notice.set_body("Your access request for sites/acme was approved.");
        notice.set_subject("sites/acme");
        notice.set_request_id(absl::StrCat("bench-", run, "-", i));
        absl::Status queued = custos::EnqueueOutbox(
            c, "notifications",
            "/custos.notifications.v1.NotificationService/Notify", notice,
            absl::Now());
        if (!queued.ok()) return queued;
      }
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string target = absl::GetFlag(FLAGS_target);
  if (target.empty()) {
    std::fprintf(stderr, "--target is required\n");
    return 2;
  }
  custos::ServiceToken token(absl::GetFlag(FLAGS_token_file));
  auto channel =
      custos::PeerChannel(target, grpc::InsecureChannelCredentials());
  const int messages = absl::GetFlag(FLAGS_messages);
  std::printf("%-22s %10s %12s %10s\n", "outbox_max_in_flight", "messages",
              "drained_s", "msgs_per_s");
  int round = 0;
  for (absl::string_view value :
       absl::StrSplit(absl::GetFlag(FLAGS_in_flight), ',')) {
    int in_flight = 0;
    if (!absl::SimpleAtoi(value, &in_flight) || in_flight < 1) {
      std::fprintf(stderr, "bad --in_flight value %s\n",
                   std::string(value).c_str());
      return 2;
    }
    std::string spec = absl::GetFlag(FLAGS_database);
    if (spec.empty()) {
      char dir[] = "/tmp/custos-bench-outbox-XXXXXX";
      if (mkdtemp(dir) == nullptr) return 1;
      spec = absl::StrCat("sqlite:", dir, "/outbox.db");
    }
    auto db = custos::OpenDatabase(spec, Migrations());
    if (!db.ok()) {
      std::fprintf(stderr, "%s\n", db.status().ToString().c_str());
      return 1;
    }
    const std::string run =
        absl::StrCat(absl::ToUnixMicros(absl::Now()), "-", ++round);
    if (absl::Status queued = Queue(**db, messages, run); !queued.ok()) {
      std::fprintf(stderr, "%s\n", queued.ToString().c_str());
      return 1;
    }
    custos::OutboxOptions options;
    options.max_in_flight = in_flight;
    options.holder = "bench";
    custos::OutboxWorker worker(
        db->get(), custos::RealClock::Get(), "notifications", options,
        custos::PeerDelivery(channel, &token, absl::Seconds(5)));
    const absl::Time start = absl::Now();
    const absl::Time give_up = start + absl::GetFlag(FLAGS_give_up);
    int64_t left = messages;
    while (left > 0 && absl::Now() < give_up) {
      absl::Status status = worker.DeliverPending(give_up - absl::Now());
      if (!status.ok()) absl::SleepFor(absl::Milliseconds(10));
      left = worker.Depth().value_or(left);
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    std::printf("%-22d %10d %12.2f %10.0f%s\n", in_flight, messages, seconds,
                (messages - left) / seconds,
                left > 0 ? absl::StrCat("  (", left, " left)").c_str() : "");
    if (worker.failed_attempts() > 0 || worker.dead_lettered() > 0) {
      std::printf("  failed attempts %lld, dead letters %lld\n",
                  static_cast<long long>(worker.failed_attempts()),
                  static_cast<long long>(worker.dead_lettered()));
    }
  }
  return 0;
}
