#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FACTS_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FACTS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/service_token.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"

namespace custos::access {

// What a permission check on `customers/{c}` needs to know (R1).
struct CustomerFacts {
  bool exists = false;
  customers::v1::ManagementType management_type =
      customers::v1::MANAGEMENT_TYPE_UNSPECIFIED;
  customers::v1::CustomerRelation relation =
      customers::v1::CUSTOMER_RELATION_NONE;
  // The customer's version these facts are from; 0 when it does not exist.
  int64_t version = 0;
};

// Where customer facts come from: CustomerManagementService in production,
// an in-process fake of it in unit tests. Thread-safe.
class CustomerFactsSource {
 public:
  virtual ~CustomerFactsSource() = default;
  // UNAVAILABLE when the owner cannot answer in time.
  virtual absl::StatusOr<CustomerFacts> Get(const std::string& customer_id,
                                            const std::string& user_id) = 0;
};

// Calls CustomerManagementService.GetAccessContext with a deadline and the
// service's own token.
class GrpcCustomerFactsSource final : public CustomerFactsSource {
 public:
  // REQUIRES: `token` outlives this object.
  GrpcCustomerFactsSource(
      std::unique_ptr<customers::v1::CustomerManagementService::StubInterface>
          stub,
      ServiceToken* token, absl::Duration timeout)
      : stub_(std::move(stub)), token_(token), timeout_(timeout) {}

  absl::StatusOr<CustomerFacts> Get(const std::string& customer_id,
                                    const std::string& user_id) override;

 private:
  std::unique_ptr<customers::v1::CustomerManagementService::StubInterface>
      stub_;
  ServiceToken* token_;
  absl::Duration timeout_;
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FACTS_H_
