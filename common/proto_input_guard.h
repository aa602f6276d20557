#ifndef CUSTOS_COMMON_PROTO_INPUT_GUARD_H_
#define CUSTOS_COMMON_PROTO_INPUT_GUARD_H_

#include <memory>
#include <string>

#include "grpcpp/support/server_interceptor.h"

namespace custos {

// Requests that protobuf cannot parse — most often a proto3 `string` field
// holding invalid UTF-8 — never reach a handler: gRPC's callback API answers
// them UNIMPLEMENTED with no message, and protobuf prints a plain-text line
// on stderr. These two pieces make them malformed input like any other
// (DESIGN §3): INVALID_ARGUMENT naming the field, logged as JSON.

// Routes every libprotobuf log line into the JSON log (common/json_log.h)
// instead of stderr, and remembers, per thread, which string field held
// invalid UTF-8 when a parse failed (for the interceptor below).
// Call once in main before serving; later calls are harmless.
// Thread-safe.
void InstallProtobufLogHandler();

// A server interceptor for every method: when the request of a unary or
// server-streaming call could not be parsed, the call ends INVALID_ARGUMENT
// instead of the UNIMPLEMENTED (callback API) or INTERNAL (sync API) that
// gRPC answers, with an ErrorInfo and, when the cause was invalid UTF-8 in a
// string field, a google.rpc.BadRequest naming it by its path from the
// request (e.g. "customer.display_name"; only the field's own name when the
// path is ambiguous). The call is logged like any other RPC (LogRpc, no
// principal: it is refused before authentication, which needs the request)
// and counted in the RPC metrics. Other calls pass untouched.
// REQUIRES: InstallProtobufLogHandler() was called, or no field is named.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
InvalidInputInterceptorFactory();

// The field path of the string field named `full_field_name` (e.g.
// "custos.customers.v1.Customer.display_name") inside messages of type
// `request_type` (e.g. "custos.customers.v1.CreateCustomerRequest"), by
// proto field names: "customer.display_name". When the field occurs at
// several paths, or none, the field's own name ("display_name"); "" when
// `full_field_name` is empty. Exposed for tests.
std::string FieldPathInRequest(const std::string& request_type,
                               const std::string& full_field_name);

}  // namespace custos

#endif  // CUSTOS_COMMON_PROTO_INPUT_GUARD_H_
