#ifndef CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_SITE_DIRECTORY_H_
#define CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_SITE_DIRECTORY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/service_token.h"
#include "custos/access/v1/access_service.grpc.pb.h"

namespace custos::customers {

// Which sites are linked to a customer: AccessService owns that link
// (Site.customer); Customer.sites is read from it. Thread-safe.
class SiteDirectory {
 public:
  virtual ~SiteDirectory() = default;
  // `sites/{sid}` names, ordered. UNAVAILABLE when the owner cannot answer.
  virtual absl::StatusOr<std::vector<std::string>> SitesOf(
      const std::string& customer_id) = 0;
};

// AccessService.ListSites filtered by customer, with a deadline and the
// service's own token.
class GrpcSiteDirectory final : public SiteDirectory {
 public:
  // REQUIRES: `token` outlives this object.
  GrpcSiteDirectory(
      std::unique_ptr<access::v1::AccessService::StubInterface> stub,
      ServiceToken* token, absl::Duration timeout)
      : stub_(std::move(stub)), token_(token), timeout_(timeout) {}

  absl::StatusOr<std::vector<std::string>> SitesOf(
      const std::string& customer_id) override;

 private:
  std::unique_ptr<access::v1::AccessService::StubInterface> stub_;
  ServiceToken* token_;
  absl::Duration timeout_;
};

}  // namespace custos::customers

#endif  // CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_SITE_DIRECTORY_H_
