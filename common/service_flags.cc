#include "common/service_flags.h"

#include <curl/curl.h>

#include <cstdlib>
#include <utility>

#include "absl/flags/flag.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/json_log.h"
#include "common/tls.h"

ABSL_FLAG(std::string, jwt_hs256_secret_file, "",
          "file holding the HS256 token secret");
ABSL_FLAG(std::string, jwt_rs256_public_key_file, "",
          "PEM file of the RS256 token public key");
ABSL_FLAG(std::string, jwt_jwks_file, "",
          "JWKS file of the identity provider's keys; re-read when it changes");
ABSL_FLAG(std::string, jwt_jwks_url, "",
          "https:// URL of the identity provider's JWKS");
ABSL_FLAG(std::string, jwt_oidc_issuer, "",
          "https:// OpenID Connect issuer: keys from its discovery document's "
          "jwks_uri; also the default --jwt_issuer");
ABSL_FLAG(std::string, jwt_jwks_ca_file, "",
          "CA bundle for fetching the JWKS; empty = the system's");
ABSL_FLAG(absl::Duration, jwt_jwks_refresh_interval, absl::Minutes(5),
          "how often the key set is reloaded");
ABSL_FLAG(absl::Duration, jwt_jwks_min_refresh_gap, absl::Seconds(10),
          "least time between two reloads caused by an unknown `kid`");
ABSL_FLAG(std::string, jwt_roles_claim, "roles",
          "dotted path of the claim holding staff roles, e.g. "
          "realm_access.roles (Keycloak)");
ABSL_FLAG(std::string, jwt_issuer, "custos-dev",
          "required token `iss` (default: --jwt_oidc_issuer when set)");
ABSL_FLAG(std::string, jwt_audience, "custos", "required token `aud`");
ABSL_FLAG(std::string, tls_cert_file, "", "server certificate chain (PEM)");
ABSL_FLAG(std::string, tls_key_file, "", "server private key (PEM)");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "CA for client certificates; set to require mTLS");
ABSL_FLAG(std::string, health_listen, "",
          "host:port of a plaintext listener serving only grpc.health.v1 "
          "(for probes when TLS is on); empty = none");
ABSL_FLAG(std::string, peer_tls_ca_file, "",
          "CA bundle (PEM) that peers' certificates must chain to; set = "
          "calls to peers use TLS");
ABSL_FLAG(std::string, peer_tls_cert_file, "",
          "client certificate chain (PEM) presented to peers (mTLS)");
ABSL_FLAG(std::string, peer_tls_key_file, "",
          "client private key (PEM) presented to peers (mTLS)");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Seconds(10),
          "how often TLS certificate, key and CA files are checked for "
          "rotation");
ABSL_FLAG(bool, metrics_tls, false,
          "serve /metrics over HTTPS with --tls_cert_file/--tls_key_file");
ABSL_FLAG(std::string, metrics_listen, "",
          "host:port serving Prometheus metrics at /metrics; empty = none");
ABSL_FLAG(int, shutdown_grace_seconds, 10,
          "how long SIGTERM waits for in-flight calls");
ABSL_FLAG(absl::Duration, max_connection_age, absl::Minutes(5),
          "clients' connections are ended (GOAWAY) after about this long, "
          "so that they resolve again and spread over replicas added since; "
          "inf = never");
ABSL_FLAG(absl::Duration, max_connection_age_grace, absl::Seconds(30),
          "how long calls on an aged connection may still run (streams "
          "are then ended UNAVAILABLE and resume with their token)");
ABSL_FLAG(int, outbox_max_in_flight, 64,
          "outbox messages sent to a peer at once (1 = one at a time, in "
          "order)");
ABSL_FLAG(std::string, replica_name, "",
          "this replica's name in the outbox lease table; a restart under "
          "the same name resumes delivery at once. Empty = host name and "
          "--listen (a pod's name in Kubernetes)");
ABSL_FLAG(std::string, log_level, "info",
          "lines below this level are not written: debug, info, warning or "
          "error");
ABSL_FLAG(double, access_log_sample_rate, 1.0,
          "share (0..1) of successful calls that get a log line; refused "
          "calls and server faults are always logged");
ABSL_FLAG(int, worker_threads, 8,
          "threads running handlers, SQLite work and peer calls");
ABSL_FLAG(int, database_connections, 8,
          "connections each process keeps to its database at most; with "
          "PostgreSQL, size max_connections for replicas x this, per service");
ABSL_FLAG(bool, create_database, true,
          "create the SQLite store when its file does not exist; false "
          "once the store has been initialised, so that a lost volume is "
          "refused (\"store is missing\") instead of starting empty");
ABSL_FLAG(bool, database_serialize_writes, true,
          "PostgreSQL: writers of every replica take turns (one advisory "
          "lock), so that the store's write sequence never makes concurrent "
          "writes conflict and run again; false: optimistic writers retried "
          "on conflict");
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
  KeySourceOptions keys;
  keys.jwks_file = absl::GetFlag(FLAGS_jwt_jwks_file);
  keys.jwks_url = absl::GetFlag(FLAGS_jwt_jwks_url);
  keys.oidc_issuer = absl::GetFlag(FLAGS_jwt_oidc_issuer);
  keys.ca_file = absl::GetFlag(FLAGS_jwt_jwks_ca_file);
  keys.refresh_interval = absl::GetFlag(FLAGS_jwt_jwks_refresh_interval);
  keys.min_refresh_gap = absl::GetFlag(FLAGS_jwt_jwks_min_refresh_gap);
  if (!keys.jwks_file.empty() || !keys.jwks_url.empty() ||
      !keys.oidc_issuer.empty()) {
    // libcurl's global state, set up before any thread uses it; the
    // notification service's webhooks share it.
    curl_global_init(CURL_GLOBAL_DEFAULT);
    absl::StatusOr<std::unique_ptr<KeySource>> source = KeySource::Start(keys);
    if (!source.ok()) {
      Die("cannot load the identity provider's keys: " +
          std::string(source.status().message()));
    }
    jwt.key_source = *std::move(source);
  }
  jwt.issuer = absl::GetFlag(FLAGS_jwt_issuer);
  if (!keys.oidc_issuer.empty() &&
      !absl::GetFlag(FLAGS_jwt_issuer).compare("custos-dev")) {
    jwt.issuer = keys.oidc_issuer;
  }
  jwt.roles_claim = absl::GetFlag(FLAGS_jwt_roles_claim);
  jwt.audience = absl::GetFlag(FLAGS_jwt_audience);
  absl::StatusOr<JwtVerifier> verifier =
      JwtVerifier::Create(jwt, RealClock::Get());
  if (!verifier.ok()) {
    Die("refusing to start without a usable token verification key "
        "(--jwt_jwks_file, --jwt_jwks_url, --jwt_oidc_issuer, "
        "--jwt_rs256_public_key_file or --jwt_hs256_secret_file): " +
        std::string(verifier.status().message()));
  }
  return *std::move(verifier);
}

ServerOptions ServerOptionsFromFlags(std::string listen,
                                     std::vector<std::string> health_names,
                                     const Database* store) {
  ServerOptions options;
  if (store != nullptr) options.readiness = StoreReadiness(store);
  options.listen = std::move(listen);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.shutdown_grace =
      absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.health_listen = absl::GetFlag(FLAGS_health_listen);
  options.metrics_tls = absl::GetFlag(FLAGS_metrics_tls);
  options.tls_reload_interval = absl::GetFlag(FLAGS_tls_reload_interval);
  options.max_connection_age = absl::GetFlag(FLAGS_max_connection_age);
  options.max_connection_age_grace =
      absl::GetFlag(FLAGS_max_connection_age_grace);
  options.health_service_names = std::move(health_names);
  return options;
}

std::function<absl::Status()> StoreReadiness(const Database* database) {
  return [database]() -> absl::Status {
    // A full disk still serves reads (writes fail RESOURCE_EXHAUSTED and
    // custos_store_healthy says so); a corrupt store serves nothing right.
    absl::Status health = database->Health();
    return IsStoreCorrupt(health) ? health : absl::OkStatus();
  };
}

std::shared_ptr<grpc::ChannelCredentials> PeerCredentialsFromFlags() {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      PeerCredentials({absl::GetFlag(FLAGS_peer_tls_ca_file),
                       absl::GetFlag(FLAGS_peer_tls_cert_file),
                       absl::GetFlag(FLAGS_peer_tls_key_file)},
                      absl::GetFlag(FLAGS_tls_reload_interval));
  if (!credentials.ok()) Die(std::string(credentials.status().message()));
  return *std::move(credentials);
}

OutboxOptions OutboxOptionsFromFlags(const std::string& listen) {
  OutboxOptions options;
  options.max_in_flight = absl::GetFlag(FLAGS_outbox_max_in_flight);
  if (options.max_in_flight < 1) Die("--outbox_max_in_flight must be >= 1");
  options.holder = absl::GetFlag(FLAGS_replica_name);
  if (options.holder.empty()) options.holder = ReplicaName(listen);
  return options;
}

void ApplyLogFlags() {
  if (absl::Status set = SetLogLevel(absl::GetFlag(FLAGS_log_level));
      !set.ok()) {
    Die(absl::StrCat("--log_level: ", set.message()));
  }
  const double rate = absl::GetFlag(FLAGS_access_log_sample_rate);
  if (!(rate >= 0 && rate <= 1)) Die("--access_log_sample_rate must be 0..1");
  SetRpcLogSampleRate(rate);
}

int WorkerThreadsFlag() { return absl::GetFlag(FLAGS_worker_threads); }

DatabaseOptions DatabaseOptionsFromFlags() {
  DatabaseOptions options;
  options.connections = absl::GetFlag(FLAGS_database_connections);
  if (options.connections < 1) Die("--database_connections must be at least 1");
  options.create_if_missing = absl::GetFlag(FLAGS_create_database);
  options.serialize_writes = absl::GetFlag(FLAGS_database_serialize_writes);
  return options;
}

std::string ServiceTokenFileFlag() {
  return absl::GetFlag(FLAGS_service_token_file);
}

}  // namespace custos
