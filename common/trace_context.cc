#include "common/trace_context.h"

#include <cstdint>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace custos {
namespace {

thread_local const CallScope* current_call = nullptr;

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool AllZero(absl::string_view s) { return s.find_first_not_of('0') == s.npos; }

}  // namespace

std::string RandomHexId(int bytes) {
  // One generator per thread: no lock on the per-call path.
  thread_local absl::InsecureBitGen gen;
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * bytes, '0');
  for (int i = 0; i < 2 * bytes; i += 16) {
    uint64_t bits = absl::Uniform<uint64_t>(gen);
    for (int j = 0; j < 16 && i + j < 2 * bytes; ++j, bits >>= 4) {
      out[i + j] = kDigits[bits & 0xf];
    }
  }
  if (AllZero(out)) out.back() = '1';
  return out;
}

std::string TraceContext::Traceparent() const {
  return absl::StrCat("00-", trace_id, "-", span_id, "-", flags);
}

std::optional<TraceContext> ParseTraceparent(absl::string_view header) {
  header = absl::StripAsciiWhitespace(header);
  // version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55.
  if (header.size() < 55) return std::nullopt;
  const absl::string_view version = header.substr(0, 2);
  if (!IsLowerHex(version) || version == "ff") return std::nullopt;
  if (version == "00" && header.size() != 55) return std::nullopt;
  if (header.size() > 55 && header[55] != '-') return std::nullopt;
  if (header[2] != '-' || header[35] != '-' || header[52] != '-') {
    return std::nullopt;
  }
  const absl::string_view trace_id = header.substr(3, 32);
  const absl::string_view parent_id = header.substr(36, 16);
  const absl::string_view flags = header.substr(53, 2);
  if (!IsLowerHex(trace_id) || !IsLowerHex(parent_id) || !IsLowerHex(flags) ||
      AllZero(trace_id) || AllZero(parent_id)) {
    return std::nullopt;
  }
  TraceContext trace;
  trace.trace_id = std::string(trace_id);
  trace.span_id = std::string(parent_id);
  trace.flags = std::string(flags);
  return trace;
}

TraceContext ServerSpan(absl::string_view traceparent,
                        absl::string_view tracestate) {
  TraceContext span;
  if (std::optional<TraceContext> caller = ParseTraceparent(traceparent)) {
    span.trace_id = std::move(caller->trace_id);
    span.parent_id = std::move(caller->span_id);
    span.flags = std::move(caller->flags);
    if (tracestate.size() <= 512) span.tracestate = std::string(tracestate);
  } else {
    span.trace_id = RandomHexId(16);
  }
  span.span_id = RandomHexId(8);
  return span;
}

TraceContext ChildSpan(const TraceContext& parent) {
  TraceContext child;
  child.trace_id = parent.trace_id;
  child.parent_id = parent.span_id;
  child.flags = parent.flags;
  child.tracestate = parent.tracestate;
  child.span_id = RandomHexId(8);
  return child;
}

const CallScope* CurrentCall() { return current_call; }

PropagatedCall PropagateCurrentCall() {
  PropagatedCall propagated;
  if (const CallScope* call = CurrentCall(); call != nullptr) {
    propagated.traceparent = ChildSpan(call->trace).Traceparent();
    propagated.tracestate = call->trace.tracestate;
    propagated.request_id = call->request_id;
  }
  return propagated;
}

ScopedCall::ScopedCall(const CallScope* scope) : previous_(current_call) {
  current_call = scope;
}

ScopedCall::~ScopedCall() { current_call = previous_; }

}  // namespace custos
