#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FACTS_GRPC_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FACTS_GRPC_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/service_token.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "services/access_service/customer_facts.h"

namespace custos::access {

// Both sources over CustomerManagementService's RPCs (GetAccessContext,
// ListCustomerChanges), each call with a deadline and the service's own
// token.
class GrpcCustomerSource final : public CustomerFactsSource,
                                 public CustomerChangeSource {
 public:
  // REQUIRES: `token` outlives this object.
  GrpcCustomerSource(
      std::unique_ptr<customers::v1::CustomerManagementService::StubInterface>
          stub,
      ServiceToken* token, absl::Duration timeout)
      : stub_(std::move(stub)), token_(token), timeout_(timeout) {}

  absl::StatusOr<CustomerFacts> Get(const std::string& customer_id,
                                    const std::string& user_id) override;
  absl::StatusOr<customers::v1::ListCustomerChangesResponse> List(
      const std::string& since, int page_size) override;

 private:
  std::unique_ptr<customers::v1::CustomerManagementService::StubInterface>
      stub_;
  ServiceToken* token_;
  absl::Duration timeout_;
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FACTS_GRPC_H_
