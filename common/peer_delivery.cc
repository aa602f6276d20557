#include "common/peer_delivery.h"

#include <utility>

#include "common/grpc_status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"

namespace custos {

OutboxWorker::Deliver PeerDelivery(std::shared_ptr<grpc::Channel> channel,
                                   ServiceToken* token,
                                   absl::Duration timeout) {
  auto stub = std::make_shared<grpc::GenericStub>(std::move(channel));
  return [stub, token, timeout](const OutboxMessage& message) -> absl::Status {
    grpc::Slice slice(message.payload);
    grpc::ByteBuffer request(&slice, 1);
    // Declared before the context: the call must be gone before its queue.
    grpc::CompletionQueue queue;
    grpc::ClientContext context;
    token->Prepare(&context, timeout);
    std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
        stub->PrepareUnaryCall(&context, message.method, request, &queue);
    call->StartCall();
    grpc::ByteBuffer response;
    grpc::Status status;
    call->Finish(&response, &status, &queue);
    void* tag = nullptr;
    bool ok = false;
    queue.Next(&tag, &ok);
    queue.Shutdown();
    while (queue.Next(&tag, &ok)) {
    }
    return FromGrpcStatus(status);
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
  return grpc::CreateCustomChannel(address, std::move(credentials), args);
}

}  // namespace custos
