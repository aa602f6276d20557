#include "common/metrics.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace custos {
namespace {

std::string Escape(absl::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string Number(double value) {
  if (value == static_cast<double>(static_cast<int64_t>(value)) &&
      value < 1e15 && value > -1e15) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  return absl::StrFormat("%.17g", value);
}

}  // namespace

void MetricsText::Family(absl::string_view name, absl::string_view type,
                         absl::string_view help) {
  absl::StrAppend(&text_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ",
                  type, "\n");
}

void MetricsText::Sample(absl::string_view name, const Labels& labels,
                         double value) {
  absl::StrAppend(&text_, name);
  if (!labels.empty()) {
    text_ += "{";
    for (size_t i = 0; i < labels.size(); ++i) {
      absl::StrAppend(&text_, i ? "," : "", labels[i].first, "=\"",
                      Escape(labels[i].second), "\"");
    }
    text_ += "}";
  }
  absl::StrAppend(&text_, " ", Number(value), "\n");
}

Metrics& Metrics::Default() {
  static Metrics* metrics = new Metrics();
  return *metrics;
}

Metrics::MethodStats* Metrics::Stats(absl::string_view method) {
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = methods_.find(method);
    if (it != methods_.end()) return it->second.get();
  }
  absl::MutexLock lock(&mu_);
  auto& stats = methods_[method];
  if (!stats) stats = std::make_unique<MethodStats>();
  return stats.get();
}

void Metrics::ObserveRpc(absl::string_view method, absl::StatusCode code,
                         absl::Duration latency) {
  MethodStats* stats = Stats(method);
  const double seconds = absl::ToDoubleSeconds(latency);
  const size_t bucket = std::lower_bound(kLatencyBuckets.begin(),
                                         kLatencyBuckets.end(), seconds) -
                        kLatencyBuckets.begin();
  stats->buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  stats->micros_sum.fetch_add(absl::ToInt64Microseconds(latency),
                              std::memory_order_relaxed);
  const size_t index = static_cast<size_t>(code);
  if (index < stats->by_code.size()) {
    stats->by_code[index].fetch_add(1, std::memory_order_relaxed);
  }
}

void Metrics::AddCollector(Collector collector) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

std::string Metrics::Render() {
  MetricsText out;
  std::vector<Collector> collectors;
  // Sorted, so that scrapes list methods in a stable order.
  std::map<std::string, MethodStats*> methods;
  {
    absl::ReaderMutexLock lock(&mu_);
    collectors = collectors_;
    for (const auto& [name, stats] : methods_) methods[name] = stats.get();
  }
  out.Family("grpc_server_handled_total", "counter",
             "RPCs completed on the server, by method and status code.");
  for (const auto& [method, stats] : methods) {
    for (size_t code = 0; code < stats->by_code.size(); ++code) {
      const int64_t count = stats->by_code[code].load();
      if (count == 0) continue;
      out.Sample("grpc_server_handled_total",
                 {{"grpc_method", method},
                  {"grpc_code", absl::StatusCodeToString(
                                    static_cast<absl::StatusCode>(code))}},
                 static_cast<double>(count));
    }
  }
  out.Family("grpc_server_handling_seconds", "histogram",
             "Time from receiving an RPC to sending its status.");
  for (const auto& [method, stats] : methods) {
    int64_t cumulative = 0;
    for (size_t i = 0; i <= kLatencyBuckets.size(); ++i) {
      cumulative += stats->buckets[i].load(std::memory_order_relaxed);
      out.Sample(
          "grpc_server_handling_seconds_bucket",
          {{"grpc_method", method},
           {"le", i < kLatencyBuckets.size() ? absl::StrCat(kLatencyBuckets[i])
                                             : std::string("+Inf")}},
          static_cast<double>(cumulative));
    }
    out.Sample("grpc_server_handling_seconds_sum", {{"grpc_method", method}},
               static_cast<double>(stats->micros_sum.load()) / 1e6);
    out.Sample("grpc_server_handling_seconds_count", {{"grpc_method", method}},
               static_cast<double>(cumulative));
  }
  for (const Collector& collect : collectors) collect(out);
  return out.text();
}

}  // namespace custos
