#ifndef CUSTOS_COMMON_PEER_DELIVERY_H_
#define CUSTOS_COMMON_PEER_DELIVERY_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/outbox.h"
#include "common/service_token.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"

namespace custos {

// Delivers outbox messages to a peer service: each is sent as a unary call
// of its recorded method with its recorded request bytes, so one delivery
// serves every method a service sends to that peer; a group's calls are all
// in flight at once. Each call carries the service token and a deadline of
// `timeout`; OK means acknowledged.
// REQUIRES: `token` outlives the returned function.
OutboxWorker::DeliverBatch PeerDelivery(std::shared_ptr<grpc::Channel> channel,
                                        ServiceToken* token,
                                        absl::Duration timeout);

// A channel to `address` (any gRPC target: host:port, dns:///name:port,
// ipv4:a:p,b:p) with `credentials` (plaintext, TLS or mTLS:
// PeerCredentialsFromFlags), redialled quickly after a peer restart, with
// calls spread round-robin over every address the target resolves to and
// retried (at most 3 attempts) when they fail UNAVAILABLE.
std::shared_ptr<grpc::Channel> PeerChannel(
    const std::string& address,
    std::shared_ptr<grpc::ChannelCredentials> credentials);

}  // namespace custos

#endif  // CUSTOS_COMMON_PEER_DELIVERY_H_
