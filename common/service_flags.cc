#include "common/service_flags.h"

#include <cstdlib>
#include <utility>

#include "absl/flags/flag.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/json_log.h"

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
ABSL_FLAG(int, database_connections, 8,
          "connections each process keeps to its database at most; with "
          "PostgreSQL, size max_connections for replicas x this, per service");
ABSL_FLAG(std::string, service_token_file, "",
          "JWT with role `service` presented to peers; re-read when it "
          "changes");

namespace custos {

void Die(const std::string& message) {
  Log("error", message);
  FlushLogs();
  std::exit(1);
}

JwtVerifier VerifierFromFlags() {
  JwtVerifierOptions jwt;
  if (auto path = absl::GetFlag(FLAGS_jwt_hs256_secret_file); !path.empty()) {
    jwt.hs256_secret = ReadFileOrDie(path, "jwt_hs256_secret_file");
  }
  if (auto path = absl::GetFlag(FLAGS_jwt_rs256_public_key_file);
      !path.empty()) {
    jwt.rs256_public_key_pem = ReadFileOrDie(path, "jwt_rs256_public_key_file");
  }
  jwt.issuer = absl::GetFlag(FLAGS_jwt_issuer);
  jwt.audience = absl::GetFlag(FLAGS_jwt_audience);
  absl::StatusOr<JwtVerifier> verifier =
      JwtVerifier::Create(jwt, RealClock::Get());
  if (!verifier.ok()) {
    Die("refusing to start without a token verification key "
        "(--jwt_hs256_secret_file or --jwt_rs256_public_key_file): " +
        std::string(verifier.status().message()));
  }
  return *std::move(verifier);
}

ServerOptions ServerOptionsFromFlags(std::string listen,
                                     std::vector<std::string> health_names) {
  ServerOptions options;
  options.listen = std::move(listen);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.shutdown_grace =
      absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.health_service_names = std::move(health_names);
  return options;
}

int WorkerThreadsFlag() { return absl::GetFlag(FLAGS_worker_threads); }

DatabaseOptions DatabaseOptionsFromFlags() {
  DatabaseOptions options;
  options.connections = absl::GetFlag(FLAGS_database_connections);
  if (options.connections < 1) Die("--database_connections must be at least 1");
  return options;
}

std::string ServiceTokenFileFlag() {
  return absl::GetFlag(FLAGS_service_token_file);
}

}  // namespace custos
