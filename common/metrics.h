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

namespace custos {

// Writes Prometheus text exposition format (version 0.0.4).
class MetricsText {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // `type`: counter, gauge or histogram.
  void Family(absl::string_view name, absl::string_view type,
              absl::string_view help);
  void Sample(absl::string_view name, const Labels& labels, double value);
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// The process's metrics: gRPC server counts and latency histograms by
// method (filled by RpcRunner), plus collectors that components register to
// report their own state when scraped. Thread-safe.
class Metrics {
 public:
  // Latency histogram bounds, in seconds.
  static constexpr std::array<double, 14> kLatencyBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,  0.5,    1,     2.5,  5,     10};

  static Metrics& Default();

  // One finished RPC: grpc_server_handled_total{grpc_method, grpc_code} and
  // grpc_server_handling_seconds{grpc_method}.
  void ObserveRpc(absl::string_view method, absl::StatusCode code,
                  absl::Duration latency);

  // Called at every scrape to write families of its own.
  using Collector = std::function<void(MetricsText&)>;
  void AddCollector(Collector collector);

  std::string Render();

 private:
  // Lock-free once the method is known: this is on every RPC.
  struct MethodStats {
    std::array<std::atomic<int64_t>, kLatencyBuckets.size() + 1> buckets{};
    std::atomic<int64_t> micros_sum{0};
    // Indexed by absl::StatusCode (0 OK … 16 UNAUTHENTICATED).
    std::array<std::atomic<int64_t>, 17> by_code{};
  };
  MethodStats* Stats(absl::string_view method);

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<MethodStats>> methods_
      ABSL_GUARDED_BY(mu_);
  std::vector<Collector> collectors_ ABSL_GUARDED_BY(mu_);
};

}  // namespace custos

#endif  // CUSTOS_COMMON_METRICS_H_
