#ifndef CUSTOS_COMMON_SERVICE_FLAGS_H_
#define CUSTOS_COMMON_SERVICE_FLAGS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/auth.h"
#include "common/database.h"
#include "common/outbox.h"
#include "common/server.h"
#include "grpcpp/security/credentials.h"

namespace custos {

// The flags every service binary takes, defined once here:
// --jwt_hs256_secret_file, --jwt_rs256_public_key_file, --jwt_issuer,
// --jwt_audience, --tls_cert_file, --tls_key_file, --tls_client_ca_file,
// --metrics_listen, --shutdown_grace_seconds, --worker_threads,
// --database_connections and --service_token_file. Each binary adds its own
// (--listen, --database, peers, ...). Call after ParseFlagsWithEnvironment.

// Logs the message and exits 1.
[[noreturn]] void Die(const std::string& message);

// The bearer-token verifier; exits when no key is configured (a service never
// runs unauthenticated).
JwtVerifier VerifierFromFlags();

// TLS, drain deadline and metrics from the flags, serving on `listen`;
// ready while `store` (unless null) is (StoreReadiness).
// REQUIRES: `store` outlives the server.
ServerOptions ServerOptionsFromFlags(std::string listen,
                                     std::vector<std::string> health_names,
                                     const Database* store);

// Readiness from the store's health: NOT_SERVING once it reported
// corruption.
// REQUIRES: `database` outlives the server.
std::function<absl::Status()> StoreReadiness(const Database* database);

// Credentials for calls to peers (--peer_tls_*): TLS, mTLS or plaintext;
// exits when the files are unusable.
std::shared_ptr<grpc::ChannelCredentials> PeerCredentialsFromFlags();

// The outbox workers' options (--outbox_max_in_flight, --replica_name; the
// replica's name defaults to ReplicaName(listen)).
OutboxOptions OutboxOptionsFromFlags(const std::string& listen);

// --log_level and --access_log_sample_rate; exits when they are invalid.
// Call right after ParseFlagsWithEnvironment.
void ApplyLogFlags();

int WorkerThreadsFlag();
// --database_connections; exits when it is below 1.
DatabaseOptions DatabaseOptionsFromFlags();
std::string ServiceTokenFileFlag();

}  // namespace custos

#endif  // CUSTOS_COMMON_SERVICE_FLAGS_H_
