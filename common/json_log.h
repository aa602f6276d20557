#ifndef CUSTOS_COMMON_JSON_LOG_H_
#define CUSTOS_COMMON_JSON_LOG_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace custos {

// Structured logs: one JSON object per line on stdout. Lines are buffered and
// flushed by a background thread every 100 ms (and on FlushLogs), so logging
// an RPC costs a string append, not a syscall.
// Thread-safe.

// Builds one JSON object; values are escaped.
class JsonLine {
 public:
  JsonLine();
  JsonLine& Add(absl::string_view key, absl::string_view value);
  JsonLine& Add(absl::string_view key, const char* value) {
    return Add(key, absl::string_view(value));
  }
  JsonLine& Add(absl::string_view key, int64_t value);
  JsonLine& Add(absl::string_view key, double value);
  // Returns the finished line, without a trailing newline.
  std::string Finish() &&;

 private:
  std::string out_;
};

// Appends `"` + escaped `value` + `"` to `out`.
void AppendJsonString(std::string* out, absl::string_view value);

// Writes a line with "time", "level", "msg", the given string fields and,
// on a thread serving a call (CurrentCall), its "trace_id", "span_id" and
// "request_id" — unless `level` is below the log level.
// Levels: "debug" < "info" < "warning" < "error".
void Log(absl::string_view level, absl::string_view message,
         const std::vector<std::pair<std::string, std::string>>& fields = {});

// Lines below `level` are dropped (--log_level). INVALID_ARGUMENT for an
// unknown level. Default: "info".
absl::Status SetLogLevel(absl::string_view level);

// One line per finished call ("msg":"rpc"), at a level chosen by its code:
// "info" for OK and answers about the request (NOT_FOUND, INVALID_ARGUMENT,
// ...), "warning" for refused callers (UNAUTHENTICATED, PERMISSION_DENIED,
// RESOURCE_EXHAUSTED), "error" for the server's own faults (INTERNAL,
// UNAVAILABLE, DATA_LOSS, DEADLINE_EXCEEDED, UNKNOWN, UNIMPLEMENTED).
// "info" lines are sampled (SetRpcLogSampleRate); the others never are.
struct RpcLogEntry {
  absl::string_view method;
  absl::Duration latency;
  absl::string_view principal;
  absl::string_view request_id;
  absl::string_view trace_id;
  absl::string_view span_id;
  absl::string_view error;  // The status message for failed calls.
};
// `code` is written as "code" (e.g. "PERMISSION_DENIED").
void LogRpc(const RpcLogEntry& entry, absl::StatusCode code);

// The share of "info" call lines written, 0..1 (--access_log_sample_rate).
// Default: 1 (every call).
void SetRpcLogSampleRate(double rate);

// Writes out whatever is buffered. Call before exit.
void FlushLogs();

}  // namespace custos

#endif  // CUSTOS_COMMON_JSON_LOG_H_
