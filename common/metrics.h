#ifndef CUSTOS_COMMON_METRICS_H_
#define CUSTOS_COMMON_METRICS_H_

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/metric_family.h"

namespace custos {

// Families a collector reports at a scrape, as prometheus-cpp's
// MetricFamily (serialized by its TextSerializer, format 0.0.4).
class MetricsText {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // Starts a family. `type`: counter or gauge.
  void Family(absl::string_view name, absl::string_view type,
              absl::string_view help);
  // One sample of the family started last.
  void Sample(absl::string_view name, const Labels& labels, double value);

  std::vector<prometheus::MetricFamily>& families() { return families_; }

 private:
  std::vector<prometheus::MetricFamily> families_;
};

// The kind of a gRPC method, as go-grpc-prometheus labels it (grpc_type).
enum class RpcType { kUnary, kServerStream };

// The process's metrics: the gRPC server metrics stock dashboards expect
// (go-grpc-prometheus names: grpc_server_started_total,
// grpc_server_handled_total, grpc_server_handling_seconds, labelled
// grpc_service, grpc_method, grpc_type and grpc_code spelled OK, NotFound,
// ...), process_* metrics, and collectors that components register to
// report their own state when scraped. Thread-safe.
class Metrics {
 public:
  // Latency histogram bounds, in seconds.
  static constexpr std::array<double, 14> kLatencyBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,  0.5,    1,     2.5,  5,     10};

  // One method's counts; lock-free once found: this is on every RPC.
  struct MethodStats {
    std::string service;  // fully qualified, custos.access.v1.AccessService
    std::string method;   // CheckPermission
    RpcType type = RpcType::kUnary;
    std::atomic<int64_t> started{0};
    std::array<std::atomic<int64_t>, kLatencyBuckets.size() + 1> buckets{};
    std::atomic<int64_t> micros_sum{0};
    // Indexed by absl::StatusCode (0 OK … 16 UNAUTHENTICATED).
    std::array<std::atomic<int64_t>, 17> by_code{};
  };

  static Metrics& Default();

  // The stats of one method (created on first use); keep the pointer.
  MethodStats* Method(absl::string_view service, absl::string_view method,
                      RpcType type = RpcType::kUnary);
  // A call began (grpc_server_started_total).
  static void Started(MethodStats* stats);
  // A call finished (grpc_server_handled_total and
  // grpc_server_handling_seconds).
  static void Handled(MethodStats* stats, absl::StatusCode code,
                      absl::Duration latency);

  // Called at every scrape to add families of its own.
  using Collector = std::function<void(MetricsText&)>;
  void AddCollector(Collector collector);

  // Every family, in Prometheus text format 0.0.4.
  std::string Render();

 private:
  absl::Mutex mu_;
  // By service, then method: found without building a key (every call).
  absl::flat_hash_map<
      std::string,
      absl::flat_hash_map<std::string, std::unique_ptr<MethodStats>>>
      methods_ ABSL_GUARDED_BY(mu_);
  std::vector<Collector> collectors_ ABSL_GUARDED_BY(mu_);
};

// grpc_code as go-grpc-prometheus spells it (codes.Code.String()).
absl::string_view GrpcCodeLabel(absl::StatusCode code);

}  // namespace custos

#endif  // CUSTOS_COMMON_METRICS_H_
