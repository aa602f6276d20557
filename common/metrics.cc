#include "common/metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/grpc_code_names.h"
#include "prometheus/text_serializer.h"

namespace custos {
namespace {

prometheus::MetricType TypeOf(absl::string_view type) {
  if (type == "counter") return prometheus::MetricType::Counter;
  if (type == "gauge") return prometheus::MetricType::Gauge;
  if (type == "histogram") return prometheus::MetricType::Histogram;
  return prometheus::MetricType::Untyped;
}

prometheus::ClientMetric WithLabels(const MetricsText::Labels& labels) {
  prometheus::ClientMetric metric;
  for (const auto& [name, value] : labels) {
    metric.label.push_back(prometheus::ClientMetric::Label{name, value});
  }
  return metric;
}

// process_* as the Prometheus client libraries report them, from /proc.
void ProcessFamilies(MetricsText& out) {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), {});
  // Fields after the command name (which may hold spaces), from field 3.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return;
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(close + 2), ' ', absl::SkipEmpty());
  if (fields.size() < 22) return;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // Fields are 1-based in proc(5); fields[0] is field 3.
  auto field = [&](int number) { return std::stod(fields[number - 3]); };
  out.Family("process_cpu_seconds_total", "counter",
             "Total user and system CPU time spent in seconds.");
  out.Sample("process_cpu_seconds_total", {}, (field(14) + field(15)) / ticks);
  out.Family("process_virtual_memory_bytes", "gauge",
             "Virtual memory size in bytes.");
  out.Sample("process_virtual_memory_bytes", {}, field(23));
  out.Family("process_resident_memory_bytes", "gauge",
             "Resident memory size in bytes.");
  out.Sample("process_resident_memory_bytes", {}, field(24) * page);
  double boot_time = 0;
  std::ifstream proc_stat("/proc/stat");
  for (std::string line; std::getline(proc_stat, line);) {
    if (line.rfind("btime ", 0) == 0) boot_time = std::stod(line.substr(6));
  }
  out.Family("process_start_time_seconds", "gauge",
             "Start time of the process since unix epoch in seconds.");
  out.Sample("process_start_time_seconds", {}, boot_time + field(22) / ticks);
  std::error_code error;
  int64_t open_fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", error);
       !error && it != std::filesystem::directory_iterator();
       it.increment(error)) {
    ++open_fds;
  }
  out.Family("process_open_fds", "gauge", "Number of open file descriptors.");
  out.Sample("process_open_fds", {}, static_cast<double>(open_fds));
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    out.Family("process_max_fds", "gauge",
               "Maximum number of open file descriptors.");
    out.Sample("process_max_fds", {}, static_cast<double>(limit.rlim_cur));
  }
}

const char* TypeLabel(RpcType type) {
  return type == RpcType::kServerStream ? "server_stream" : "unary";
}

}  // namespace

absl::string_view GrpcCodeLabel(absl::StatusCode code) {
  return GoCodeName(static_cast<int>(code)).value_or("Unknown");
}

void MetricsText::Family(absl::string_view name, absl::string_view type,
                         absl::string_view help) {
  prometheus::MetricFamily family;
  family.name = std::string(name);
  family.help = std::string(help);
  family.type = TypeOf(type);
  families_.push_back(std::move(family));
}

void MetricsText::Sample(absl::string_view name, const Labels& labels,
                         double value) {
  if (families_.empty() || families_.back().name != name) {
    Family(name, "untyped", "");
  }
  prometheus::MetricFamily& family = families_.back();
  prometheus::ClientMetric metric = WithLabels(labels);
  switch (family.type) {
    case prometheus::MetricType::Counter:
      metric.counter.value = value;
      break;
    case prometheus::MetricType::Gauge:
      metric.gauge.value = value;
      break;
    default:
      metric.untyped.value = value;
      break;
  }
  family.metric.push_back(std::move(metric));
}

Metrics& Metrics::Default() {
  static Metrics* metrics = new Metrics();
  return *metrics;
}

Metrics::MethodStats* Metrics::Method(absl::string_view service,
                                      absl::string_view method, RpcType type) {
  {
    absl::ReaderMutexLock lock(&mu_);
    auto by_service = methods_.find(service);
    if (by_service != methods_.end()) {
      auto it = by_service->second.find(method);
      if (it != by_service->second.end()) return it->second.get();
    }
  }
  absl::MutexLock lock(&mu_);
  auto& stats = methods_[service][method];
  if (!stats) {
    stats = std::make_unique<MethodStats>();
    stats->service = std::string(service);
    stats->method = std::string(method);
    stats->type = type;
  }
  return stats.get();
}

void Metrics::Started(MethodStats* stats) {
  stats->started.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::Handled(MethodStats* stats, absl::StatusCode code,
                      absl::Duration latency) {
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
  std::vector<Collector> collectors;
  // Sorted, so that scrapes list methods in a stable order.
  std::map<std::string, MethodStats*> methods;
  {
    absl::ReaderMutexLock lock(&mu_);
    collectors = collectors_;
    for (const auto& [service, by_method] : methods_) {
      for (const auto& [method, stats] : by_method) {
        methods[absl::StrCat(service, "/", method)] = stats.get();
      }
    }
  }
  MetricsText out;
  auto rpc_labels = [](const MethodStats& stats) {
    return MetricsText::Labels{{"grpc_service", stats.service},
                               {"grpc_method", stats.method},
                               {"grpc_type", TypeLabel(stats.type)}};
  };
  out.Family("grpc_server_started_total", "counter",
             "Total number of RPCs started on the server.");
  for (const auto& [key, stats] : methods) {
    out.Sample("grpc_server_started_total", rpc_labels(*stats),
               static_cast<double>(stats->started.load()));
  }
  out.Family("grpc_server_handled_total", "counter",
             "Total number of RPCs completed on the server, regardless of "
             "success or failure.");
  for (const auto& [key, stats] : methods) {
    for (size_t code = 0; code < stats->by_code.size(); ++code) {
      const int64_t count = stats->by_code[code].load();
      if (count == 0) continue;
      MetricsText::Labels labels = rpc_labels(*stats);
      labels.emplace_back(
          "grpc_code",
          std::string(GrpcCodeLabel(static_cast<absl::StatusCode>(code))));
      out.Sample("grpc_server_handled_total", labels,
                 static_cast<double>(count));
    }
  }
  std::vector<prometheus::MetricFamily> families = std::move(out.families());
  prometheus::MetricFamily latency;
  latency.name = "grpc_server_handling_seconds";
  latency.help =
      "Histogram of response latency (seconds) of gRPC that had been "
      "application-level handled by the server.";
  latency.type = prometheus::MetricType::Histogram;
  for (const auto& [key, stats] : methods) {
    prometheus::ClientMetric metric = WithLabels(rpc_labels(*stats));
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= kLatencyBuckets.size(); ++i) {
      cumulative += static_cast<uint64_t>(
          stats->buckets[i].load(std::memory_order_relaxed));
      metric.histogram.bucket.push_back(prometheus::ClientMetric::Bucket{
          cumulative, i < kLatencyBuckets.size()
                          ? kLatencyBuckets[i]
                          : std::numeric_limits<double>::infinity()});
    }
    metric.histogram.sample_count = cumulative;
    metric.histogram.sample_sum =
        static_cast<double>(stats->micros_sum.load()) / 1e6;
    latency.metric.push_back(std::move(metric));
  }
  families.push_back(std::move(latency));
  MetricsText more;
  for (const Collector& collect : collectors) collect(more);
  ProcessFamilies(more);
  for (auto& family : more.families()) families.push_back(std::move(family));
  // One family per name: a collector registered twice (two outboxes in one
  // process) must not repeat a name, which Prometheus rejects.
  std::vector<prometheus::MetricFamily> merged;
  std::map<std::string, size_t> index;
  for (auto& family : families) {
    auto [it, fresh] = index.emplace(family.name, merged.size());
    if (fresh) {
      merged.push_back(std::move(family));
    } else {
      auto& into = merged[it->second].metric;
      into.insert(into.end(), family.metric.begin(), family.metric.end());
    }
  }
  return prometheus::TextSerializer().Serialize(merged);
}

}  // namespace custos
