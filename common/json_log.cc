#include "common/json_log.h"

#include <cstdio>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

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

void Log(absl::string_view level, absl::string_view message,
         const std::vector<std::pair<std::string, std::string>>& fields) {
  JsonLine line;
  line.Add("level", level).Add("msg", message);
  for (const auto& [key, value] : fields) line.Add(key, value);
  Sink().Write(std::move(line).Finish());
}

void LogRpc(const RpcLogEntry& entry) {
  JsonLine line;
  line.Add("level", "info")
      .Add("msg", "rpc")
      .Add("method", entry.method)
      .Add("code", entry.code)
      .Add("latency_ms", absl::ToDoubleMilliseconds(entry.latency))
      .Add("principal", entry.principal)
      .Add("request_id", entry.request_id);
  if (!entry.error.empty()) line.Add("error", entry.error);
  Sink().Write(std::move(line).Finish());
}

void FlushLogs() { Sink().Flush(); }

}  // namespace custos
