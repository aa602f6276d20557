#ifndef CUSTOS_COMMON_SERVER_H_
#define CUSTOS_COMMON_SERVER_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/impl/service_type.h"

namespace custos {

struct ServerOptions {
  // host:port. Port 0 picks a free port (logged).
  std::string listen;
  // TLS when both are set; mTLS (client certificates required and verified)
  // when a client CA is set too.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // How often the TLS files are checked for a rotation.
  absl::Duration tls_reload_interval = absl::Seconds(10);
  // host:port of a plaintext listener serving only grpc.health.v1, for
  // probes that cannot speak TLS; empty: none.
  std::string health_listen;
  // Connections are ended (GOAWAY) after about this long, with calls on
  // them given `max_connection_age_grace` more: long-lived clients then
  // resolve the name again and rebalance over the replicas there are now.
  absl::Duration max_connection_age = absl::Minutes(5);
  absl::Duration max_connection_age_grace = absl::Seconds(30);
  // How long SIGTERM waits for in-flight calls before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // Fully-qualified gRPC service names, reported by grpc.health.v1.
  std::vector<std::string> health_service_names;
  // Called when the drain starts, after health says NOT_SERVING: ends
  // long-lived calls (streams) that would otherwise hold the drain open.
  std::function<void()> on_shutdown;
  // Asked every second once serving: not OK turns every health status
  // NOT_SERVING (logged with the reason) until it is OK again. Empty: ready
  // while serving.
  std::function<absl::Status()> readiness;
  // host:port serving Prometheus metrics (Metrics::Default()) at /metrics;
  // empty: none.
  std::string metrics_listen;
  // Metrics over HTTPS with the listener's certificate (tls_cert_file).
  bool metrics_tls = false;
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts
// later, so that ServeUntilTerminated can wait for them, and sends gRPC
// core's log lines into the JSON log. Call first in main.
void BlockTerminationSignals();

// Serves `services` plus grpc.health.v1 and server reflection, with
// keepalive, until SIGTERM/SIGINT. Then: health goes NOT_SERVING, new calls
// are refused, in-flight calls get up to `shutdown_grace` to finish, and it
// returns OK. Errors: INVALID_ARGUMENT for unreadable TLS files, UNAVAILABLE
// when the address cannot be bound.
// REQUIRES: BlockTerminationSignals() was called before any thread started.
absl::Status ServeUntilTerminated(const ServerOptions& options,
                                  const std::vector<grpc::Service*>& services);

}  // namespace custos

#endif  // CUSTOS_COMMON_SERVER_H_
