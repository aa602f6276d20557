#ifndef CUSTOS_COMMON_RPC_H_
#define CUSTOS_COMMON_RPC_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/call_context.h"
#include "common/executor.h"
#include "common/metrics.h"
#include "common/rate_limiter.h"
#include "common/trace_context.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"

namespace custos {

// The edge of every service: authenticates the bearer token, runs the handler
// on the service's executor (never on gRPC's reaction threads), maps
// absl::Status to grpc::Status with ErrorInfo, and logs one JSON line.
// Writes (Write) are rate-limited per caller.
// Thread-safe.
class RpcRunner {
 public:
  // REQUIRES: both outlive the runner. `write_limit`: the per-caller limit on
  // Write calls; by default from --write_rate_per_second / --write_burst, so
  // construct the runner after the flags are parsed.
  // `service`: the fully qualified gRPC service name (grpc_service in the
  // metrics).
  RpcRunner(std::string service, const JwtVerifier* verifier,
            Executor* executor,
            RateLimiterOptions write_limit = RateLimiterOptionsFromFlags())
      : service_(std::move(service)),
        verifier_(verifier),
        executor_(executor),
        write_limiter_(std::make_unique<RateLimiter>(write_limit)) {}

  // Runs `handler` on the executor: for reads that may wait (calls to
  // peers, Redis). Calls that change state use Write instead. `handler`:
  // absl::Status(const CallContext&, const Request&, Response*).
  template <typename Request, typename Response, typename Handler>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context,
                                  absl::string_view method,
                                  const Request* request, Response* response,
                                  Handler handler) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    RunOnExecutor(context, reactor, method, Begin(context, method), request,
                  response, std::move(handler), /*write=*/false);
    return reactor;
  }

  // As Unary (on the executor: a write may wait for the database's write
  // lock), for every call that changes state. After authentication and
  // before `handler` runs, the caller's write rate is checked (AdmitWrite):
  // beyond it the call ends RESOURCE_EXHAUSTED with a RetryInfo, is logged
  // like any other, and writes nothing.
  template <typename Request, typename Response, typename Handler>
  grpc::ServerUnaryReactor* Write(grpc::CallbackServerContext* context,
                                  absl::string_view method,
                                  const Request* request, Response* response,
                                  Handler handler) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    RunOnExecutor(context, reactor, method, Begin(context, method), request,
                  response, std::move(handler), /*write=*/true);
    return reactor;
  }

  // For handlers that only read the store: at once on gRPC's thread when
  // the store's reads never wait (SQLite WAL readers take no lock a writer
  // holds: Executor::inline_reads), which saves a thread hop per call — most
  // of a fast read's cost; on the executor otherwise (a PostgreSQL read is a
  // network round trip and must not hold a reaction thread).
  template <typename Request, typename Response, typename Handler>
  grpc::ServerUnaryReactor* UnaryRead(grpc::CallbackServerContext* context,
                                      absl::string_view method,
                                      const Request* request,
                                      Response* response, Handler handler) {
    if (!executor_->inline_reads()) {
      return Unary(context, method, request, response, std::move(handler));
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    CallStart start = Begin(context, method);
    // A token whose key must be fetched first is checked (and the call
    // served) on the executor: gRPC's thread does not wait.
    if (!Run(context, reactor, method, start, *request, response, handler,
             /*write=*/false, /*may_wait=*/false)) {
      RunOnExecutor(context, reactor, method, std::move(start), request,
                    response, std::move(handler), /*write=*/false);
    }
    return reactor;
  }

  // Tries `fast` at once on gRPC's thread; when it returns nullopt (it would
  // have to wait), runs `blocking` on the executor instead. For checks that
  // are usually answered from memory. `fast`: std::optional<absl::Status>(
  // const CallContext&, const Request&, Response*); `blocking` as in Unary.
  template <typename Request, typename Response, typename Fast,
            typename Blocking>
  grpc::ServerUnaryReactor* UnaryFastOrBlocking(
      grpc::CallbackServerContext* context, absl::string_view method,
      const Request* request, Response* response, Fast fast,
      Blocking blocking) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    CallStart start = Begin(context, method);
    CallContext call;
    absl::Status status = Authenticate(start, &call, /*may_wait=*/false);
    if (NeedsKeyRefresh(status)) {
      // The token's key must be fetched first: verified, then served, on
      // the executor.
      RunOnExecutor(context, reactor, method, std::move(start), request,
                    response, std::move(blocking), /*write=*/false);
      return reactor;
    }
    if (status.ok()) {
      std::optional<absl::Status> answered;
      {
        ScopedCall in_call(&start.scope);
        answered = fast(call, *request, response);
      }
      if (!answered) {
        executor_->Schedule([this, context, reactor, method, request, response,
                             start = std::move(start), call = std::move(call),
                             blocking = std::move(blocking)]() mutable {
          absl::Status result;
          {
            ScopedCall in_call(&start.scope);
            result = blocking(call, *request, response);
          }
          Finish(context, reactor, method, start, call, result);
        });
        return reactor;
      }
      status = *answered;
    }
    Finish(context, reactor, method, start, call, status);
    return reactor;
  }

  // For streaming methods, which drive their own reactor: authenticates the
  // call and sends back its x-request-id. The request id and trace are in
  // the returned context either way.
  absl::Status AuthenticateStream(grpc::CallbackServerContext* context,
                                  absl::string_view method,
                                  CallContext* call) const;
  // One log line and the metrics of a finished streaming call.
  void LogStream(absl::string_view method, absl::Time start,
                 const CallContext& call, const absl::Status& status) const;

 private:
  struct CallStart {
    absl::Time time;
    std::string token;
    // The call's trace (W3C traceparent, continued or started) and request
    // id, current on the thread while the handler runs.
    CallScope scope;
    Metrics::MethodStats* stats;
  };
  // Reads the call's metadata and counts it started.
  CallStart Begin(grpc::CallbackServerContext* context,
                  absl::string_view method,
                  RpcType type = RpcType::kUnary) const;
  // Authenticates, admits a write, runs `handler` and finishes the call.
  // With `may_wait` false (on gRPC's thread) it does nothing and returns
  // false when the token can only be verified after fetching keys.
  template <typename Request, typename Response, typename Handler>
  bool Run(grpc::CallbackServerContext* context,
           grpc::ServerUnaryReactor* reactor, absl::string_view method,
           const CallStart& start, const Request& request, Response* response,
           Handler& handler, bool write, bool may_wait = true) const {
    CallContext call;
    absl::Status status = Authenticate(start, &call, may_wait);
    if (NeedsKeyRefresh(status)) return false;
    if (status.ok() && write) status = AdmitWrite(call);
    // A write still queued when its call ended (the caller's deadline, or
    // the drain's grace at shutdown) does not start: the caller was told it
    // failed, so nothing may be written. (One already in its transaction
    // commits; the caller's retry with the same request_id is answered from
    // the record it left.)
    if (status.ok() && write && context->IsCancelled()) {
      status = absl::UnavailableError(
          "the call ended before its write began; nothing was written");
    }
    if (status.ok()) {
      ScopedCall in_call(&start.scope);
      status = handler(call, request, response);
    }
    Finish(context, reactor, method, start, call, status);
    return true;
  }
  // Run on the executor, where waiting is allowed.
  template <typename Request, typename Response, typename Handler>
  void RunOnExecutor(grpc::CallbackServerContext* context,
                     grpc::ServerUnaryReactor* reactor,
                     absl::string_view method, CallStart start,
                     const Request* request, Response* response,
                     Handler handler, bool write) const {
    executor_->Schedule([this, context, reactor, method, request, response,
                         write, start = std::move(start),
                         handler = std::move(handler)]() mutable {
      Run(context, reactor, method, start, *request, response, handler, write);
    });
  }
  // `may_wait`: false on gRPC's threads (a status with NeedsKeyRefresh
  // then asks to authenticate again on the executor).
  absl::Status Authenticate(const CallStart& start, CallContext* call,
                            bool may_wait = true) const;
  // The write rate limit, per principal subject. Role `service` is exempt:
  // peers deliver whole outbox batches as fast as they can.
  absl::Status AdmitWrite(const CallContext& call) const;
  static void Finish(grpc::CallbackServerContext* context,
                     grpc::ServerUnaryReactor* reactor,
                     absl::string_view method, const CallStart& start,
                     const CallContext& call, const absl::Status& status);

  const std::string service_;
  const JwtVerifier* verifier_;
  Executor* executor_;
  // Behind a pointer: thread-safe itself, used from const methods.
  std::unique_ptr<RateLimiter> write_limiter_;
};

}  // namespace custos

#endif  // CUSTOS_COMMON_RPC_H_
