#include "services/notification_service/routing_source.h"

#include "absl/strings/str_cat.h"

namespace custos::notifications {

absl::StatusOr<customers::v1::CommunicationRouting> GrpcRoutingSource::Get(
    const std::string& customer_id) {
  customers::v1::GetCommunicationRoutingRequest request;
  request.set_customer(absl::StrCat("customers/", customer_id));
  customers::v1::CommunicationRouting routing;
  grpc::ClientContext context;
  token_->Prepare(&context, timeout_);
  grpc::Status status =
      stub_->GetCommunicationRouting(&context, request, &routing);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    return absl::NotFoundError(
        absl::StrCat("customers/", customer_id, " does not exist"));
  }
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("customer_management_service could not answer "
                     "GetCommunicationRouting for customers/",
                     customer_id, ": ", status.error_message()));
  }
  return routing;
}

absl::StatusOr<customers::v1::ListBroadcastRecipientsResponse>
GrpcRoutingSource::ListRecipients(const std::string& page_token,
                                  int page_size) {
  customers::v1::ListBroadcastRecipientsRequest request;
  request.set_page_token(page_token);
  request.set_page_size(page_size);
  customers::v1::ListBroadcastRecipientsResponse page;
  grpc::ClientContext context;
  token_->Prepare(&context, timeout_);
  grpc::Status status =
      stub_->ListBroadcastRecipients(&context, request, &page);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "customer_management_service could not list broadcast recipients: ",
        status.error_message()));
  }
  return page;
}

}  // namespace custos::notifications
