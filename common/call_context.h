#ifndef CUSTOS_COMMON_CALL_CONTEXT_H_
#define CUSTOS_COMMON_CALL_CONTEXT_H_

#include <string>

#include "common/auth.h"
#include "common/trace_context.h"

namespace custos {

// What domain logic knows about a call besides its request; free of gRPC
// types so logic can be tested without a server.
struct CallContext {
  Principal principal;
  // From the caller's `x-request-id` metadata, else generated; echoed back
  // in the response's initial metadata, logged and audited.
  std::string request_id;
  // The call's W3C trace (set for streams, whose reactors log themselves;
  // unary handlers find it in CurrentCall()).
  TraceContext trace;
};

}  // namespace custos

#endif  // CUSTOS_COMMON_CALL_CONTEXT_H_
