#include "common/json_log.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/trace_context.h"

namespace custos {
namespace {

constexpr size_t kFlushThresholdBytes = 64 * 1024;

class LogSink {
 public:
  LogSink() {
    std::thread([this] {
      while (true) {
        absl::SleepFor(absl::Milliseconds(100));
        Flush();
      }
    }).detach();
  }

  void Write(std::string line) {
    absl::MutexLock lock(&mu_);
    buffer_.append(line);
    buffer_.push_back('\n');
    if (buffer_.size() >= kFlushThresholdBytes) FlushLocked();
  }

  void Flush() {
    absl::MutexLock lock(&mu_);
    FlushLocked();
  }

 private:
  void FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (buffer_.empty()) return;
    std::fwrite(buffer_.data(), 1, buffer_.size(), stdout);
    std::fflush(stdout);
    buffer_.clear();
  }

  absl::Mutex mu_;
  std::string buffer_ ABSL_GUARDED_BY(mu_);
};

LogSink& Sink() {
  static LogSink* sink = new LogSink;
  return *sink;
}

}  // namespace

void AppendJsonString(std::string* out, absl::string_view value) {
  out->push_back('"');
  for (unsigned char c : value) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

namespace {

// RFC 3339 UTC with milliseconds. The seconds part is formatted once per
// second per thread: absl::FormatTime on every line showed in RPC profiles.
void AppendTimestamp(std::string* out, absl::Time now) {
  thread_local int64_t cached_second = -1;
  thread_local std::string cached_prefix;
  const int64_t micros = absl::ToUnixMicros(now);
  const int64_t second = micros / 1000000;
  if (second != cached_second) {
    cached_second = second;
    cached_prefix =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S", now, absl::UTCTimeZone());
  }
  absl::StrAppendFormat(out, "\"%s.%03dZ\"", cached_prefix,
                        static_cast<int>(micros / 1000 % 1000));
}

}  // namespace

JsonLine::JsonLine() {
  out_ = "{\"time\":";
  AppendTimestamp(&out_, absl::Now());
}

JsonLine& JsonLine::Add(absl::string_view key, absl::string_view value) {
  out_.push_back(',');
  AppendJsonString(&out_, key);
  out_.push_back(':');
  AppendJsonString(&out_, value);
  return *this;
}

JsonLine& JsonLine::Add(absl::string_view key, int64_t value) {
  out_.push_back(',');
  AppendJsonString(&out_, key);
  absl::StrAppend(&out_, ":", value);
  return *this;
}

JsonLine& JsonLine::Add(absl::string_view key, double value) {
  out_.push_back(',');
  AppendJsonString(&out_, key);
  absl::StrAppendFormat(&out_, ":%.3f", value);
  return *this;
}

std::string JsonLine::Finish() && {
  out_.push_back('}');
  return std::move(out_);
}

namespace {

int LevelRank(absl::string_view level) {
  if (level == "debug") return 0;
  if (level == "info") return 1;
  if (level == "warning") return 2;
  if (level == "error") return 3;
  return -1;
}

std::atomic<int> min_level{1};
// The sampling threshold over 2^32: a line is kept when a uniform 32-bit
// draw is below it.
std::atomic<uint64_t> info_rpc_threshold{uint64_t{1} << 32};

const char* RpcLevel(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kResourceExhausted:
      return "warning";
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kUnimplemented:
      return "error";
    default:
      return "info";
  }
}

}  // namespace

absl::Status SetLogLevel(absl::string_view level) {
  const int rank = LevelRank(level);
  if (rank < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("log level must be debug, info, warning or error, got \"",
                     level, "\""));
  }
  min_level.store(rank);
  return absl::OkStatus();
}

void SetRpcLogSampleRate(double rate) {
  rate = std::clamp(rate, 0.0, 1.0);
  info_rpc_threshold.store(
      static_cast<uint64_t>(rate * static_cast<double>(uint64_t{1} << 32)));
}

void Log(absl::string_view level, absl::string_view message,
         const std::vector<std::pair<std::string, std::string>>& fields) {
  if (LevelRank(level) < min_level.load(std::memory_order_relaxed)) return;
  JsonLine line;
  line.Add("level", level).Add("msg", message);
  bool has_request_id = false;
  for (const auto& [key, value] : fields) {
    line.Add(key, value);
    has_request_id = has_request_id || key == "request_id";
  }
  if (const CallScope* call = CurrentCall(); call != nullptr) {
    line.Add("trace_id", call->trace.trace_id)
        .Add("span_id", call->trace.span_id);
    if (!has_request_id) line.Add("request_id", call->request_id);
  }
  Sink().Write(std::move(line).Finish());
}

void LogRpc(const RpcLogEntry& entry, absl::StatusCode code) {
  const char* level = RpcLevel(code);
  if (LevelRank(level) < min_level.load(std::memory_order_relaxed)) return;
  if (level[0] == 'i') {
    const uint64_t threshold =
        info_rpc_threshold.load(std::memory_order_relaxed);
    if (threshold < (uint64_t{1} << 32)) {
      thread_local absl::InsecureBitGen gen;
      if (absl::Uniform<uint32_t>(gen) >= threshold) return;
    }
  }
  JsonLine line;
  line.Add("level", level)
      .Add("msg", "rpc")
      .Add("method", entry.method)
      .Add("code", absl::StatusCodeToString(code))
      .Add("latency_ms", absl::ToDoubleMilliseconds(entry.latency))
      .Add("principal", entry.principal)
      .Add("request_id", entry.request_id);
  if (!entry.trace_id.empty()) {
    line.Add("trace_id", entry.trace_id).Add("span_id", entry.span_id);
  }
  if (!entry.error.empty()) line.Add("error", entry.error);
  Sink().Write(std::move(line).Finish());
}

void FlushLogs() { Sink().Flush(); }

}  // namespace custos
