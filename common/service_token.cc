#include "common/service_token.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/json_log.h"
#include "common/trace_context.h"

namespace custos {

std::string ServiceToken::Get() {
  absl::MutexLock lock(&mu_);
  if (path_.empty()) return "";
  const absl::Time now = absl::Now();
  if (now - checked_ < absl::Seconds(1)) return token_;
  checked_ = now;
  struct stat info;
  if (stat(path_.c_str(), &info) != 0) {
    Log("warning", "service token file is unreadable", {{"path", path_}});
    return token_;
  }
  if (info.st_mtim.tv_sec == modified_.tv_sec &&
      info.st_mtim.tv_nsec == modified_.tv_nsec) {
    return token_;
  }
  std::ifstream in(path_);
  std::stringstream content;
  content << in.rdbuf();
  token_ = std::string(absl::StripAsciiWhitespace(content.str()));
  modified_ = info.st_mtim;
  return token_;
}

void ServiceToken::Prepare(grpc::ClientContext* context,
                           absl::Duration timeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  // Within the deadline, a call waits for a connection rather than failing
  // at once: a round-robin channel whose only replica is reconnecting (a
  // peer restart) fails calls fast otherwise, though the peer is back
  // within the backoff.
  context->set_wait_for_ready(true);
  // The call this thread serves continues into the peer: same trace (a new
  // span) and the same request id.
  const PropagatedCall call = PropagateCurrentCall();
  if (!call.traceparent.empty()) {
    context->AddMetadata("traceparent", call.traceparent);
    if (!call.tracestate.empty()) {
      context->AddMetadata("tracestate", call.tracestate);
    }
    context->AddMetadata("x-request-id", call.request_id);
  }
  std::string token = Get();
  if (!token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
  }
}

}  // namespace custos
