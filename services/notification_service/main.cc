// notification_service: alerts routed by communications settings, inboxes
// and preferences (DESIGN §1, R2, R3, R10, R13).
#include <curl/curl.h>

#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/executor.h"
#include "common/flags.h"
#include "common/ids.h"
#include "common/json_log.h"
#include "common/metrics.h"
#include "common/server.h"
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

ABSL_FLAG(std::string, listen, "0.0.0.0:50053", "host:port to serve gRPC on");
ABSL_FLAG(std::string, database, "sqlite:notifications.db",
          "sqlite:PATH of the service's database");
ABSL_FLAG(std::string, customers_address, "127.0.0.1:50052",
          "customer_management_service, for alert routing");
ABSL_FLAG(int, peer_timeout_ms, 1000, "deadline of calls to peer services");
ABSL_FLAG(std::string, service_token_file, "",
          "JWT with role `service` presented to peers; re-read when it "
          "changes");
ABSL_FLAG(int, broadcast_page_size, 5000,
          "broadcast recipients fetched and delivered per transaction");
ABSL_FLAG(std::string, jwt_hs256_secret_file, "",
          "file holding the HS256 token secret");
ABSL_FLAG(std::string, jwt_rs256_public_key_file, "",
          "PEM file of the RS256 token public key");
ABSL_FLAG(std::string, jwt_issuer, "custos-dev", "required token `iss`");
ABSL_FLAG(std::string, jwt_audience, "custos", "required token `aud`");
ABSL_FLAG(std::string, tls_cert_file, "", "server certificate chain (PEM)");
ABSL_FLAG(std::string, tls_key_file, "", "server private key (PEM)");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "CA for client certificates; set to require mTLS");
ABSL_FLAG(std::string, metrics_listen, "",
          "host:port serving Prometheus metrics at /metrics; empty = none");
ABSL_FLAG(int, shutdown_grace_seconds, 10,
          "how long SIGTERM waits for in-flight calls");
ABSL_FLAG(int, worker_threads, 8,
          "threads running handlers, SQLite work and peer calls");

ABSL_FLAG(int, webhook_max_attempts, 8,
          "attempts per webhook delivery before it is dead");
ABSL_FLAG(absl::Duration, webhook_initial_backoff, absl::Seconds(1),
          "bound of the first retry's jittered backoff; doubles per failure");
ABSL_FLAG(absl::Duration, webhook_max_backoff, absl::Minutes(10),
          "largest backoff bound between webhook attempts");
ABSL_FLAG(absl::Duration, webhook_timeout, absl::Seconds(5),
          "deadline of one webhook POST");
ABSL_FLAG(int, webhook_threads, 4, "webhook POSTs in flight at once");

namespace {

[[noreturn]] void Die(const std::string& message) {
  custos::Log("error", message);
  custos::FlushLogs();
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  custos::BlockTerminationSignals();
  custos::ParseFlagsWithEnvironment(argc, argv);

  custos::JwtVerifierOptions jwt;
  if (auto path = absl::GetFlag(FLAGS_jwt_hs256_secret_file); !path.empty()) {
    jwt.hs256_secret = custos::ReadFileOrDie(path, "jwt_hs256_secret_file");
  }
  if (auto path = absl::GetFlag(FLAGS_jwt_rs256_public_key_file);
      !path.empty()) {
    jwt.rs256_public_key_pem =
        custos::ReadFileOrDie(path, "jwt_rs256_public_key_file");
  }
  jwt.issuer = absl::GetFlag(FLAGS_jwt_issuer);
  jwt.audience = absl::GetFlag(FLAGS_jwt_audience);
  auto verifier = custos::JwtVerifier::Create(jwt, custos::RealClock::Get());
  if (!verifier.ok()) {
    Die("refusing to start without a token verification key "
        "(--jwt_hs256_secret_file or --jwt_rs256_public_key_file): " +
        std::string(verifier.status().message()));
  }

  const std::string database = absl::GetFlag(FLAGS_database);
  if (database.rfind("sqlite:", 0) != 0) {
    Die("--database must be sqlite:PATH, got " + database);
  }
  auto db = custos::notifications::NotificationStore::Open(database.substr(7));
  if (!db.ok()) Die("cannot open database: " + db.status().ToString());

  custos::ServiceToken token(absl::GetFlag(FLAGS_service_token_file));
  custos::notifications::GrpcRoutingSource routing(
      custos::customers::v1::CustomerManagementService::NewStub(
          grpc::CreateChannel(absl::GetFlag(FLAGS_customers_address),
                              grpc::InsecureChannelCredentials())),
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
  custos::notifications::WebhookDispatcher webhooks(
      db->get(), custos::RealClock::Get(), webhook_options);
  webhooks.Start();  // resumes deliveries a restart interrupted
  custos::RandomIdGenerator ids;
  custos::notifications::NotificationLogic logic(
      db->get(), &routing, &fanout, &hub, &webhooks, custos::RealClock::Get(),
      &ids, custos::notifications::NotificationLogicOptions());
  custos::notifications::WebhookLogic webhook_logic(
      db->get(), custos::RealClock::Get(), &ids);
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
  custos::Executor executor(absl::GetFlag(FLAGS_worker_threads));
  custos::notifications::NotificationService service(
      &logic, &webhook_logic, &*verifier, &executor, db->get(), &hub);

  custos::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.shutdown_grace =
      absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.health_service_names = {
      "custos.notifications.v1.NotificationService"};
  // Open streams end when the drain starts, telling clients to reconnect.
  options.on_shutdown = [&hub] { hub.Shutdown(); };
  absl::Status status = custos::ServeUntilTerminated(options, {&service});
  executor.Shutdown();
  fanout.Stop();
  webhooks.Stop();
  curl_global_cleanup();
  if (!status.ok()) Die(status.ToString());
  custos::FlushLogs();
  return 0;
}
