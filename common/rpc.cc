#include "common/rpc.h"

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/grpc_status.h"
#include "common/json_log.h"
#include "common/metrics.h"

namespace custos {
namespace {

std::string MetadataValue(const grpc::CallbackServerContext* context,
                          absl::string_view key) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  if (it == metadata.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

// Keeps caller-supplied ids printable and bounded before they reach logs.
bool IsUsableRequestId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

RpcRunner::CallStart RpcRunner::Begin(grpc::CallbackServerContext* context,
                                      absl::string_view method,
                                      RpcType type) const {
  CallStart start;
  start.time = absl::Now();
  start.stats = Metrics::Default().Method(service_, method, type);
  Metrics::Started(start.stats);
  start.token = MetadataValue(context, "authorization");
  start.scope.request_id = MetadataValue(context, "x-request-id");
  if (!IsUsableRequestId(start.scope.request_id)) {
    start.scope.request_id = RandomHexId(8);
  }
  start.scope.trace = ServerSpan(MetadataValue(context, "traceparent"),
                                 MetadataValue(context, "tracestate"));
  return start;
}

absl::Status RpcRunner::Authenticate(const CallStart& start, CallContext* call,
                                     bool may_wait) const {
  call->request_id = start.scope.request_id;
  absl::string_view token = start.token;
  if (token.empty()) {
    return absl::UnauthenticatedError(
        "missing \"authorization: Bearer <token>\" metadata");
  }
  if (!absl::ConsumePrefix(&token, "Bearer ") &&
      !absl::ConsumePrefix(&token, "bearer ")) {
    return absl::UnauthenticatedError(
        "authorization metadata must be \"Bearer <token>\"");
  }
  absl::StatusOr<Principal> principal =
      may_wait ? verifier_->Verify(token)
               : verifier_->VerifyWithoutWaiting(token);
  if (!principal.ok()) return principal.status();
  call->principal = *std::move(principal);
  return absl::OkStatus();
}

absl::Status RpcRunner::AdmitWrite(const CallContext& call) const {
  if (call.principal.HasRole(kRoleService)) return absl::OkStatus();
  return write_limiter_->Acquire(call.principal.subject);
}

void RpcRunner::Finish(grpc::CallbackServerContext* context,
                       grpc::ServerUnaryReactor* reactor,
                       absl::string_view method, const CallStart& start,
                       const CallContext& call, const absl::Status& status) {
  context->AddInitialMetadata("x-request-id", start.scope.request_id);
  grpc::Status result = ToGrpcStatus(status);
  RpcLogEntry entry;
  entry.method = method;
  entry.latency = absl::Now() - start.time;
  entry.principal = call.principal.subject;
  entry.request_id = start.scope.request_id;
  entry.trace_id = start.scope.trace.trace_id;
  entry.span_id = start.scope.trace.span_id;
  entry.error = status.message();
  LogRpc(entry, status.code());
  Metrics::Handled(start.stats, status.code(), entry.latency);
  reactor->Finish(result);
}

absl::Status RpcRunner::AuthenticateStream(grpc::CallbackServerContext* context,
                                           absl::string_view method,
                                           CallContext* call) const {
  CallStart start = Begin(context, method, RpcType::kServerStream);
  context->AddInitialMetadata("x-request-id", start.scope.request_id);
  call->trace = start.scope.trace;
  return Authenticate(start, call);
}

void RpcRunner::LogStream(absl::string_view method, absl::Time start,
                          const CallContext& call,
                          const absl::Status& status) const {
  RpcLogEntry entry;
  entry.method = method;
  entry.latency = absl::Now() - start;
  entry.principal = call.principal.subject;
  entry.request_id = call.request_id;
  entry.trace_id = call.trace.trace_id;
  entry.span_id = call.trace.span_id;
  entry.error = status.message();
  LogRpc(entry, status.code());
  Metrics::Handled(
      Metrics::Default().Method(service_, method, RpcType::kServerStream),
      status.code(), entry.latency);
}

}  // namespace custos
