#ifndef CUSTOS_COMMON_JSON_LOG_H_
#define CUSTOS_COMMON_JSON_LOG_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

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

// Writes a line with "time", "level", "msg" and the given string fields.
void Log(absl::string_view level, absl::string_view message,
         const std::vector<std::pair<std::string, std::string>>& fields = {});

struct RpcLogEntry {
  absl::string_view method;
  absl::string_view code;
  absl::Duration latency;
  absl::string_view principal;
  absl::string_view request_id;
  absl::string_view error;  // The status message for failed calls.
};
void LogRpc(const RpcLogEntry& entry);

// Writes out whatever is buffered. Call before exit.
void FlushLogs();

}  // namespace custos

#endif  // CUSTOS_COMMON_JSON_LOG_H_
