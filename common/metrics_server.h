#ifndef CUSTOS_COMMON_METRICS_SERVER_H_
#define CUSTOS_COMMON_METRICS_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/metrics.h"

namespace custos {

// Serves `GET /metrics` (Prometheus text format) over plain HTTP/1.1 on its
// own port, one connection at a time: scrapes are rare and small. Anything
// else gets 404. Stops when destroyed.
class MetricsServer {
 public:
  // `listen` is host:port (port 0 picks a free one).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, Metrics* metrics);
  ~MetricsServer();

  int port() const { return port_; }

 private:
  MetricsServer(int listener, int port, Metrics* metrics);
  void Serve();

  const int listener_;
  const int port_;
  Metrics* const metrics_;
  std::thread thread_;
};

}  // namespace custos

#endif  // CUSTOS_COMMON_METRICS_SERVER_H_
