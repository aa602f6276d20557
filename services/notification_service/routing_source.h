#ifndef CUSTOS_SERVICES_NOTIFICATION_SERVICE_ROUTING_SOURCE_H_
#define CUSTOS_SERVICES_NOTIFICATION_SERVICE_ROUTING_SOURCE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/service_token.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"

namespace custos::notifications {

// Who a customer's alerts may go to, from the owner of that data
// (CustomerManagementService), or a fake of it in unit tests. Thread-safe.
class RoutingSource {
 public:
  virtual ~RoutingSource() = default;
  // NOT_FOUND for an unknown customer; UNAVAILABLE when the owner cannot
  // answer in time.
  virtual absl::StatusOr<customers::v1::CommunicationRouting> Get(
      const std::string& customer_id) = 0;
  // One page of every customer's and partner's users (R11).
  virtual absl::StatusOr<customers::v1::ListBroadcastRecipientsResponse>
  ListRecipients(const std::string& page_token, int page_size) = 0;
};

// Calls GetCommunicationRouting with a deadline and the service's token.
class GrpcRoutingSource final : public RoutingSource {
 public:
  // REQUIRES: `token` outlives this object.
  GrpcRoutingSource(
      std::unique_ptr<customers::v1::CustomerManagementService::StubInterface>
          stub,
      ServiceToken* token, absl::Duration timeout)
      : stub_(std::move(stub)), token_(token), timeout_(timeout) {}

  absl::StatusOr<customers::v1::CommunicationRouting> Get(
      const std::string& customer_id) override;
  absl::StatusOr<customers::v1::ListBroadcastRecipientsResponse> ListRecipients(
      const std::string& page_token, int page_size) override;

 private:
  std::unique_ptr<customers::v1::CustomerManagementService::StubInterface>
      stub_;
  ServiceToken* token_;
  absl::Duration timeout_;
};

}  // namespace custos::notifications

#endif  // CUSTOS_SERVICES_NOTIFICATION_SERVICE_ROUTING_SOURCE_H_
