#ifndef CUSTOS_COMMON_TRACE_CONTEXT_H_
#define CUSTOS_COMMON_TRACE_CONTEXT_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace custos {

// W3C Trace Context (https://www.w3.org/TR/trace-context/): the trace a call
// belongs to, carried from the caller through every peer call, outbox row and
// webhook POST, and written on every log line.
struct TraceContext {
  std::string trace_id;      // 32 lowercase hex digits, not all zero
  std::string span_id;       // 16 hex digits: this span
  std::string parent_id;     // 16 hex digits: the caller's span; empty: a root
  std::string flags = "01";  // trace-flags (01: sampled)
  std::string tracestate;    // passed on unchanged
  bool valid() const { return !trace_id.empty(); }
  // "00-<trace_id>-<span_id>-<flags>": the header a callee receives.
  std::string Traceparent() const;
};

// A `traceparent` header's trace; nullopt when it is not one (version 00
// or a later version's first four fields; all-zero ids are invalid).
std::optional<TraceContext> ParseTraceparent(absl::string_view header);

// The server span of a call: a child of the caller's `traceparent` when it is
// valid (`tracestate` kept, at most 512 bytes), else the root of a new trace.
TraceContext ServerSpan(absl::string_view traceparent,
                        absl::string_view tracestate);

// A new span in `parent`'s trace, for a call this process makes.
TraceContext ChildSpan(const TraceContext& parent);

// `bytes` random bytes as lowercase hex, never all zeros (span and trace
// ids, request ids). Cheap: a per-thread generator, no formatting.
std::string RandomHexId(int bytes);

// What the current thread is doing for a call: every log line written and
// every peer call made from it carries the call's trace and request id.
struct CallScope {
  TraceContext trace;
  std::string request_id;
};

// The call the current thread serves; null outside calls (background work).
const CallScope* CurrentCall();

// What an effect of the current call carries on (a peer call, an outbox
// row, a webhook POST): a child span's traceparent, the tracestate and the
// request id; all empty outside a call.
struct PropagatedCall {
  std::string traceparent;
  std::string tracestate;
  std::string request_id;
};
PropagatedCall PropagateCurrentCall();

// Makes `scope` the current thread's call until destroyed (then the previous
// one again). REQUIRES: `scope` outlives this.
class ScopedCall {
 public:
  explicit ScopedCall(const CallScope* scope);
  ~ScopedCall();
  ScopedCall(const ScopedCall&) = delete;
  ScopedCall& operator=(const ScopedCall&) = delete;

 private:
  const CallScope* previous_;
};

}  // namespace custos

#endif  // CUSTOS_COMMON_TRACE_CONTEXT_H_
