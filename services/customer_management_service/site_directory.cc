#include "services/customer_management_service/site_directory.h"

#include "absl/strings/str_cat.h"

namespace custos::customers {

absl::StatusOr<std::vector<std::string>> GrpcSiteDirectory::SitesOf(
    const std::string& customer_id) {
  std::vector<std::string> sites;
  access::v1::ListSitesRequest request;
  request.set_customer(absl::StrCat("customers/", customer_id));
  request.set_page_size(1000);
  // A customer has few sites; the pages are bounded all the same.
  for (int page = 0; page < 100; ++page) {
    access::v1::ListSitesResponse response;
    grpc::ClientContext call;
    token_->Prepare(&call, timeout_);
    grpc::Status status = stub_->ListSites(&call, request, &response);
    if (!status.ok()) {
      return absl::UnavailableError(
          absl::StrCat("access_service could not list the sites of customers/",
                       customer_id, ": ", status.error_message()));
    }
    for (const access::v1::Site& site : response.sites()) {
      sites.push_back(site.name());
    }
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  return sites;
}

}  // namespace custos::customers
