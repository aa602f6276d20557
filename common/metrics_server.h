#ifndef CUSTOS_COMMON_METRICS_SERVER_H_
#define CUSTOS_COMMON_METRICS_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
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
// its own port, one connection at a time: scrapes are rare and small.
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
  void Serve();
  // The TLS context for the next connection, rebuilt when the files
  // changed; null when TLS is off or the files cannot be loaded now.
  std::shared_ptr<ssl_ctx_st> TlsContext();

  const int listener_;
  const int port_;
  Metrics* const metrics_;
  const MetricsTls tls_;
  // Touched only by the serving thread (and Start, before it exists).
  std::shared_ptr<ssl_ctx_st> tls_context_;
  std::string tls_version_;  // the files' mtimes tls_context_ was built from
  std::thread thread_;
};

}  // namespace custos

#endif  // CUSTOS_COMMON_METRICS_SERVER_H_
