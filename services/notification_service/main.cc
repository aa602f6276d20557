// notification_service: alerts routed by communications settings, inboxes
// and preferences (DESIGN §1, R2, R3, R10, R13).
#include <curl/curl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/executor.h"
#include "common/flags.h"
#include "common/ids.h"
#include "common/json_log.h"
#include "common/metrics.h"
#include "common/peer_delivery.h"
#include "common/retention.h"
#include "common/server.h"
#include "common/service_flags.h"
#include "common/service_token.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "services/notification_service/broadcast_fanout.h"
#include "services/notification_service/notification_logic.h"
#include "services/notification_service/notification_service.h"
#include "services/notification_service/notification_store.h"
#include "services/notification_service/routing_source.h"
#include "services/notification_service/webhook_dispatcher.h"
#include "services/notification_service/webhook_logic.h"

ABSL_FLAG(absl::Duration, read_notification_retention, absl::Hours(24 * 30),
          "how long read inbox notifications are kept after delivery; unread "
          "ones are kept; inf = forever");
ABSL_FLAG(std::string, listen, "0.0.0.0:50053", "host:port to serve gRPC on");
ABSL_FLAG(std::string, database, "sqlite:notifications.db",
          "the service's database: sqlite:PATH or postgresql://...");
ABSL_FLAG(std::string, customers_address, "127.0.0.1:50052",
          "customer_management_service, for alert routing");
ABSL_FLAG(int, peer_timeout_ms, 1000, "deadline of calls to peer services");
ABSL_FLAG(int, broadcast_page_size, 5000,
          "broadcast recipients fetched and delivered per transaction");

ABSL_FLAG(int, webhook_max_attempts, 8,
          "attempts per webhook delivery before it is dead");
ABSL_FLAG(absl::Duration, webhook_initial_backoff, absl::Seconds(1),
          "bound of the first retry's jittered backoff; doubles per failure");
ABSL_FLAG(absl::Duration, webhook_max_backoff, absl::Minutes(10),
          "largest backoff bound between webhook attempts");
ABSL_FLAG(absl::Duration, webhook_timeout, absl::Seconds(5),
          "deadline of one webhook POST");
ABSL_FLAG(int, webhook_threads, 4, "webhook POSTs in flight at once");
ABSL_FLAG(bool, webhook_allow_loopback, false,
          "let webhook endpoints be loopback hosts, and http:// to them "
          "(dev stack and tests only)");
ABSL_FLAG(bool, webhook_allow_private_networks, false,
          "let webhook endpoints be on private networks (RFC 1918, "
          "100.64/10, fc00::/7); link-local and metadata never are");

using custos::Die;

int main(int argc, char** argv) {
  custos::BlockTerminationSignals();
  custos::ParseFlagsWithEnvironment(argc, argv);
  custos::ApplyLogFlags();

  const custos::JwtVerifier verifier = custos::VerifierFromFlags();

  auto db = custos::notifications::NotificationStore::Open(
      absl::GetFlag(FLAGS_database), custos::DatabaseOptionsFromFlags());
  if (!db.ok()) Die("cannot open database: " + db.status().ToString());
  custos::Metrics::Default().AddCollector(custos::DatabaseMetrics(db->get()));

  custos::ServiceToken token(custos::ServiceTokenFileFlag());
  custos::notifications::GrpcRoutingSource routing(
      custos::customers::v1::CustomerManagementService::NewStub(
          custos::PeerChannel(absl::GetFlag(FLAGS_customers_address),
                              custos::PeerCredentialsFromFlags())),
      &token, absl::Milliseconds(absl::GetFlag(FLAGS_peer_timeout_ms)));
  custos::notifications::BroadcastFanoutOptions fanout_options;
  fanout_options.page_size = absl::GetFlag(FLAGS_broadcast_page_size);
  custos::notifications::InboxHub hub;
  custos::notifications::BroadcastFanout fanout(
      db->get(), &routing, &hub, custos::RealClock::Get(), fanout_options);
  fanout.Start();  // resumes broadcasts a crash interrupted
  // Webhooks (R12): libcurl is set up once, before any thread uses it.
  curl_global_init(CURL_GLOBAL_DEFAULT);
  custos::notifications::WebhookDispatcherOptions webhook_options;
  webhook_options.max_attempts = absl::GetFlag(FLAGS_webhook_max_attempts);
  webhook_options.initial_backoff =
      absl::GetFlag(FLAGS_webhook_initial_backoff);
  webhook_options.max_backoff = absl::GetFlag(FLAGS_webhook_max_backoff);
  webhook_options.timeout = absl::GetFlag(FLAGS_webhook_timeout);
  webhook_options.threads = absl::GetFlag(FLAGS_webhook_threads);
  webhook_options.target_policy.allow_loopback =
      absl::GetFlag(FLAGS_webhook_allow_loopback);
  webhook_options.target_policy.allow_private =
      absl::GetFlag(FLAGS_webhook_allow_private_networks);
  custos::notifications::WebhookDispatcher webhooks(
      db->get(), custos::RealClock::Get(), webhook_options);
  webhooks.Start();  // resumes deliveries a restart interrupted
  custos::RandomIdGenerator ids;
  custos::notifications::NotificationLogic logic(
      db->get(), &routing, &fanout, &hub, &webhooks, custos::RealClock::Get(),
      &ids, custos::notifications::NotificationLogicOptions());
  custos::notifications::WebhookLogic webhook_logic(
      db->get(), custos::RealClock::Get(), &ids, webhook_options.target_policy);
  custos::Metrics::Default().AddCollector(
      [&fanout, &webhooks](custos::MetricsText& out) {
        out.Family("custos_broadcast_recipients_total", "counter",
                   "Broadcast recipients handled by the fan-out (a page "
                   "redone after a crash counts again).");
        out.Sample("custos_broadcast_recipients_total", {},
                   static_cast<double>(fanout.recipients_delivered()));
        out.Family("custos_broadcast_fanouts_pending", "gauge",
                   "Broadcasts whose fan-out has not finished.");
        out.Sample("custos_broadcast_fanouts_pending", {},
                   static_cast<double>(fanout.fanouts_pending()));
        out.Family("custos_webhook_attempts_total", "counter",
                   "Webhook POSTs, by result.");
        out.Sample("custos_webhook_attempts_total", {{"result", "delivered"}},
                   static_cast<double>(webhooks.delivered()));
        out.Sample("custos_webhook_attempts_total", {{"result", "failed"}},
                   static_cast<double>(webhooks.failed()));
        out.Family("custos_webhook_dead_total", "counter",
                   "Webhook deliveries that used up their attempts.");
        out.Sample("custos_webhook_dead_total", {},
                   static_cast<double>(webhooks.dead()));
      });
  std::vector<custos::RetentionRule> retention =
      custos::SharedRetentionRules(db->get());
  retention.push_back(
      {"read_notifications", absl::GetFlag(FLAGS_read_notification_retention),
       [database = db->get()](absl::Time older_than, int batch) {
         return custos::notifications::NotificationStore::
             PruneReadNotifications(*database, older_than, batch);
       }});
  auto retention_pruner = std::make_unique<custos::RetentionPruner>(
      std::move(retention), custos::RealClock::Get());
  custos::Executor executor(custos::WorkerThreadsFlag(),
                            /*inline_reads=*/!(*db)->ReadsMayBlock());
  custos::notifications::NotificationService service(
      &logic, &webhook_logic, &verifier, &executor, db->get(), &hub);

  custos::ServerOptions options = custos::ServerOptionsFromFlags(
      absl::GetFlag(FLAGS_listen),
      {"custos.notifications.v1.NotificationService"}, db->get());
  // Open streams end when the drain starts, telling clients to reconnect.
  options.on_shutdown = [&hub] { hub.Shutdown(); };
  absl::Status status = custos::ServeUntilTerminated(options, {&service});
  executor.Shutdown();
  retention_pruner.reset();
  fanout.Stop();
  webhooks.Stop();
  curl_global_cleanup();
  if (!status.ok()) Die(status.ToString());
  custos::FlushLogs();
  return 0;
}
