// customer_management_service: partners, partner users, customers, products,
// customer users and management settings (DESIGN §1, R1-R4).
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/executor.h"
#include "common/flags.h"
#include "common/ids.h"
#include "common/json_log.h"
#include "common/metrics.h"
#include "common/outbox.h"
#include "common/peer_delivery.h"
#include "common/server.h"
#include "common/service_token.h"
#include "services/customer_management_service/customer_management.h"
#include "services/customer_management_service/customer_management_service.h"
#include "services/customer_management_service/customer_store.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50052", "host:port to serve gRPC on");
ABSL_FLAG(std::string, database, "sqlite:customers.db",
          "sqlite:PATH of the service's database");
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
ABSL_FLAG(int, worker_threads, 8, "threads running handlers and SQLite work");
ABSL_FLAG(std::string, access_address, "",
          "access_service host:port, told about customer changes through the "
          "outbox; empty = none");
ABSL_FLAG(std::string, notifications_address, "",
          "notification_service host:port, sent account alerts when "
          "management settings change, through the outbox; empty = none");
ABSL_FLAG(std::string, service_token_file, "",
          "JWT with role `service` presented to peers; re-read when it "
          "changes");
ABSL_FLAG(int, peer_timeout_ms, 1000, "deadline of calls to peer services");

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
  auto db = custos::customers::CustomerStore::Open(database.substr(7));
  if (!db.ok()) Die("cannot open database: " + db.status().ToString());

  // Outboxes to the peers (DESIGN §1), one worker per peer so that one
  // peer's outage never delays another's messages.
  custos::ServiceToken token(absl::GetFlag(FLAGS_service_token_file));
  const absl::Duration timeout =
      absl::Milliseconds(absl::GetFlag(FLAGS_peer_timeout_ms));
  auto outbox_to = [&](const std::string& destination,
                       const std::string& address) {
    std::unique_ptr<custos::OutboxWorker> worker;
    if (address.empty()) return worker;
    worker = std::make_unique<custos::OutboxWorker>(
        db->get(), custos::RealClock::Get(), destination,
        custos::OutboxOptions(),
        custos::PeerDelivery(custos::PeerChannel(address), &token, timeout));
    worker->Start();
    return worker;
  };
  std::unique_ptr<custos::OutboxWorker> access_outbox =
      outbox_to("access", absl::GetFlag(FLAGS_access_address));
  std::unique_ptr<custos::OutboxWorker> notifications_outbox =
      outbox_to("notifications", absl::GetFlag(FLAGS_notifications_address));
  std::vector<custos::OutboxWorker*> outboxes;
  for (auto* worker : {access_outbox.get(), notifications_outbox.get()}) {
    if (worker != nullptr) outboxes.push_back(worker);
  }
  custos::Metrics::Default().AddCollector(custos::OutboxMetrics(outboxes));
  custos::RandomIdGenerator ids;
  custos::customers::CustomerManagement logic(
      db->get(), custos::RealClock::Get(), &ids, access_outbox.get(),
      notifications_outbox.get());
  custos::Executor executor(absl::GetFlag(FLAGS_worker_threads));
  custos::customers::CustomerManagementService service(&logic, &*verifier,
                                                       &executor);

  custos::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.shutdown_grace =
      absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.health_service_names = {
      "custos.customers.v1.CustomerManagementService"};
  absl::Status status = custos::ServeUntilTerminated(options, {&service});
  executor.Shutdown();
  if (access_outbox) access_outbox->Stop();
  if (notifications_outbox) notifications_outbox->Stop();
  if (!status.ok()) Die(status.ToString());
  custos::FlushLogs();
  return 0;
}
