#include "services/access_service/customer_facts.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace custos::access {

absl::StatusOr<CustomerFacts> GrpcCustomerFactsSource::Get(
    const std::string& customer_id, const std::string& user_id) {
  customers::v1::GetAccessContextRequest request;
  request.set_customer(absl::StrCat("customers/", customer_id));
  request.set_user(user_id);
  customers::v1::AccessContext context;
  grpc::ClientContext call;
  token_->Prepare(&call, timeout_);
  grpc::Status status = stub_->GetAccessContext(&call, request, &context);
  CustomerFacts facts;
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) return facts;
  if (!status.ok()) {
    // Whatever the peer said, to our caller it is a dependency that could
    // not answer (§3: a dependency down is UNAVAILABLE).
    return absl::UnavailableError(absl::StrCat(
        "customer_management_service could not answer GetAccessContext for "
        "customers/",
        customer_id, ": ", status.error_message()));
  }
  facts.exists = true;
  facts.management_type = context.management_type();
  facts.relation = context.relation();
  facts.version = context.customer_version();
  return facts;
}

}  // namespace custos::access
