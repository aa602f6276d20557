#include "common/peer_delivery.h"

#include <memory>
#include <utility>
#include <vector>

#include "common/grpc_status.h"
#include "common/trace_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"

namespace custos {

OutboxWorker::DeliverBatch PeerDelivery(std::shared_ptr<grpc::Channel> channel,
                                        ServiceToken* token,
                                        absl::Duration timeout) {
  auto stub = std::make_shared<grpc::GenericStub>(std::move(channel));
  return [stub, token, timeout](const std::vector<OutboxMessage>& group) {
    // Every call of the group is in flight at once on one queue: a group
    // costs about one round trip, not one per message.
    struct Call {
      grpc::ClientContext context;
      std::unique_ptr<grpc::GenericClientAsyncResponseReader> reader;
      grpc::ByteBuffer response;
      grpc::Status status;
    };
    // Each message carries the trace of the call that wrote it, not of a
    // call this thread may be serving (DeliverPending right after a write).
    ScopedCall outside_any_call(nullptr);
    // Declared before the calls: each call must be gone before its queue.
    grpc::CompletionQueue queue;
    std::vector<std::unique_ptr<Call>> calls;
    calls.reserve(group.size());
    for (size_t i = 0; i < group.size(); ++i) {
      auto call = std::make_unique<Call>();
      token->Prepare(&call->context, timeout);
      // The trace and request id of the call that wrote the message.
      if (!group[i].trace_parent.empty()) {
        call->context.AddMetadata("traceparent", group[i].trace_parent);
      }
      if (!group[i].request_id.empty()) {
        call->context.AddMetadata("x-request-id", group[i].request_id);
      }
      grpc::Slice slice(group[i].payload);
      grpc::ByteBuffer request(&slice, 1);
      call->reader = stub->PrepareUnaryCall(&call->context, group[i].method,
                                            request, &queue);
      call->reader->StartCall();
      call->reader->Finish(&call->response, &call->status,
                           reinterpret_cast<void*>(i));
      calls.push_back(std::move(call));
    }
    for (size_t done = 0; done < group.size(); ++done) {
      void* tag = nullptr;
      bool ok = false;
      if (!queue.Next(&tag, &ok)) break;
    }
    queue.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (queue.Next(&tag, &ok)) {
    }
    std::vector<absl::Status> results;
    results.reserve(calls.size());
    for (const auto& call : calls)
      results.push_back(FromGrpcStatus(call->status));
    return results;
  };
}

std::shared_ptr<grpc::Channel> PeerChannel(
    const std::string& address,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  // A peer that restarts is dialled again within a second, not after
  // gRPC's default backoff of up to two minutes: calls made meanwhile fail
  // UNAVAILABLE, and the change feed and outboxes wait on it.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Every address the name resolves to gets calls in turn (a headless
  // Service's DNS name resolves to every ready replica), instead of
  // pick_first's one connection for the channel's life. The name is
  // resolved again whenever a connection ends; servers end each after
  // --max_connection_age, so replicas added later get their share.
  // A call that fails UNAVAILABLE (a replica killed under it, before the
  // channel saw the connection go) is tried again, on another replica: every
  // peer call is a read or an idempotent delivery (receivers dedupe by
  // request_id), so a repeat is harmless.
  args.SetServiceConfigJSON(R"json({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
      "name": [{}],
      "retryPolicy": {
        "maxAttempts": 3,
        "initialBackoff": "0.05s",
        "maxBackoff": "0.5s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]
      }
    }]
  })json");
  return grpc::CreateCustomChannel(address, std::move(credentials), args);
}

}  // namespace custos
