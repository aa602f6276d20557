#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FACTS_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FACTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "custos/customers/v1/customers_service.pb.h"
#include "services/access_service/fact_versions.h"

namespace custos::access {

// What a permission check on `customers/{c}` needs to know (R1).
struct CustomerFacts {
  bool exists = false;
  customers::v1::ManagementType management_type =
      customers::v1::MANAGEMENT_TYPE_UNSPECIFIED;
  customers::v1::CustomerRelation relation =
      customers::v1::CUSTOMER_RELATION_NONE;
  // The customer's last change these facts include (its sequence in the
  // change feed and random id); zero when it never changed.
  VersionStamp version;
  // The customer store's incarnation `version` belongs to.
  std::string incarnation;
};

// Where customer facts come from: CustomerManagementService in production
// (customer_facts_grpc.h), an in-process fake of it in unit tests.
// Thread-safe.
class CustomerFactsSource {
 public:
  virtual ~CustomerFactsSource() = default;
  // UNAVAILABLE when the owner cannot answer in time.
  virtual absl::StatusOr<CustomerFacts> Get(const std::string& customer_id,
                                            const std::string& user_id) = 0;
};

// CustomerManagementService's change feed (ListCustomerChanges).
// Thread-safe.
class CustomerChangeSource {
 public:
  virtual ~CustomerChangeSource() = default;
  // OUT_OF_RANGE when `since` cannot be continued; UNAVAILABLE when the
  // owner cannot answer in time.
  virtual absl::StatusOr<customers::v1::ListCustomerChangesResponse> List(
      const std::string& since, int page_size) = 0;
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FACTS_H_
