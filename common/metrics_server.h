#ifndef CUSTOS_COMMON_METRICS_SERVER_H_
#define CUSTOS_COMMON_METRICS_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics.h"

// OpenSSL's SSL_CTX, declared here so the header does not pull in OpenSSL.
struct ssl_ctx_st;

namespace custos {

// Where metrics are served over HTTPS: the listener's certificate and key,
// re-read when their files change (both empty: plain HTTP).
struct MetricsTls {
  std::string cert_file;
  std::string key_file;
};

// Serves `GET /metrics` (Prometheus text format) over HTTP/1.1 or HTTPS on
// its own port (IPv4, or IPv6 as "[::]:9090"), each connection on its own
// thread with 2 s for its request, so a slow or idle client never delays
// another scrape (at most 64 connections at once; more are closed).
// Anything else gets 404. Stops when destroyed.
class MetricsServer {
 public:
  // `listen` is host:port (port 0 picks a free one).
  // INVALID_ARGUMENT when the TLS files cannot be loaded.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, Metrics* metrics, MetricsTls tls = {});
  ~MetricsServer();

  int port() const { return port_; }

 private:
  MetricsServer(int listener, int port, Metrics* metrics, MetricsTls tls);
  static constexpr int kMaxConnections = 64;
  void Serve();
  // Reads one request from `connection`, answers it and closes it.
  void Answer(int connection);
  // The TLS context for the next connection, rebuilt when the files
  // changed; null when TLS is off or the files cannot be loaded now.
  std::shared_ptr<ssl_ctx_st> TlsContext();

  const int listener_;
  const int port_;
  Metrics* const metrics_;
  const MetricsTls tls_;
  // Guarded by tls_mu_: connections are answered on their own threads.
  absl::Mutex tls_mu_;
  std::shared_ptr<ssl_ctx_st> tls_context_ ABSL_GUARDED_BY(tls_mu_);
  // The files' mtimes tls_context_ was built from.
  std::string tls_version_ ABSL_GUARDED_BY(tls_mu_);
  std::thread thread_;
  absl::Mutex mu_;
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace custos

#endif  // CUSTOS_COMMON_METRICS_SERVER_H_
