#include "services/access_service/customer_facts_grpc.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace custos::access {

absl::StatusOr<CustomerFacts> GrpcCustomerSource::Get(
    const std::string& customer_id, const std::string& user_id) {
  customers::v1::GetAccessContextRequest request;
  request.set_customer(absl::StrCat("customers/", customer_id));
  request.set_user(user_id);
  request.set_include_missing(true);
  customers::v1::AccessContext context;
  grpc::ClientContext call;
  token_->Prepare(&call, timeout_);
  grpc::Status status = stub_->GetAccessContext(&call, request, &context);
  if (!status.ok()) {
    // Whatever the peer said, to our caller it is a dependency that could
    // not answer (§3: a dependency down is UNAVAILABLE).
    return absl::UnavailableError(absl::StrCat(
        "customer_management_service could not answer GetAccessContext for "
        "customers/",
        customer_id, ": ", status.error_message()));
  }
  CustomerFacts facts;
  facts.exists = context.exists();
  facts.management_type = context.management_type();
  facts.relation = context.relation();
  facts.version = {context.change_sequence(), context.change_id()};
  facts.incarnation = context.incarnation();
  return facts;
}

absl::StatusOr<customers::v1::ListCustomerChangesResponse>
GrpcCustomerSource::List(const std::string& since, int page_size) {
  customers::v1::ListCustomerChangesRequest request;
  request.set_since(since);
  request.set_page_size(page_size);
  customers::v1::ListCustomerChangesResponse response;
  grpc::ClientContext call;
  token_->Prepare(&call, timeout_);
  grpc::Status status = stub_->ListCustomerChanges(&call, request, &response);
  if (status.error_code() == grpc::StatusCode::OUT_OF_RANGE) {
    return absl::OutOfRangeError(status.error_message());
  }
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    return absl::InternalError(absl::StrCat(
        "customer_management_service refused a change-feed position: ",
        status.error_message()));
  }
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "customer_management_service could not answer ListCustomerChanges: ",
        status.error_message()));
  }
  return response;
}

}  // namespace custos::access
