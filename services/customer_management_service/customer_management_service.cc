#include "services/customer_management_service/customer_management_service.h"

#include "common/status_macros.h"

namespace custos::customers {

grpc::ServerUnaryReactor* CustomerManagementService::CreatePartner(
    grpc::CallbackServerContext* context,
    const v1::CreatePartnerRequest* request, v1::Partner* response) {
  return runner_.Write(
      context, "CreatePartner", request, response,
      [this](const CallContext& call, const v1::CreatePartnerRequest& req,
             v1::Partner* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->CreatePartner(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::GetPartner(
    grpc::CallbackServerContext* context, const v1::GetPartnerRequest* request,
    v1::Partner* response) {
  return runner_.UnaryRead(
      context, "GetPartner", request, response,
      [this](const CallContext& call, const v1::GetPartnerRequest& req,
             v1::Partner* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->GetPartner(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::ListPartners(
    grpc::CallbackServerContext* context,
    const v1::ListPartnersRequest* request,
    v1::ListPartnersResponse* response) {
  return runner_.UnaryRead(
      context, "ListPartners", request, response,
      [this](const CallContext& call, const v1::ListPartnersRequest& req,
             v1::ListPartnersResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListPartners(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::CreatePartnerUser(
    grpc::CallbackServerContext* context,
    const v1::CreatePartnerUserRequest* request, v1::PartnerUser* response) {
  return runner_.Write(
      context, "CreatePartnerUser", request, response,
      [this](const CallContext& call, const v1::CreatePartnerUserRequest& req,
             v1::PartnerUser* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->CreatePartnerUser(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::ListPartnerUsers(
    grpc::CallbackServerContext* context,
    const v1::ListPartnerUsersRequest* request,
    v1::ListPartnerUsersResponse* response) {
  return runner_.UnaryRead(
      context, "ListPartnerUsers", request, response,
      [this](const CallContext& call, const v1::ListPartnerUsersRequest& req,
             v1::ListPartnerUsersResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListPartnerUsers(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::DeletePartnerUser(
    grpc::CallbackServerContext* context,
    const v1::DeletePartnerUserRequest* request,
    v1::DeletePartnerUserResponse* response) {
  return runner_.Write(
      context, "DeletePartnerUser", request, response,
      [this](const CallContext& call, const v1::DeletePartnerUserRequest& req,
             v1::DeletePartnerUserResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->DeletePartnerUser(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::CreateCustomer(
    grpc::CallbackServerContext* context,
    const v1::CreateCustomerRequest* request, v1::Customer* response) {
  return runner_.Write(
      context, "CreateCustomer", request, response,
      [this](const CallContext& call, const v1::CreateCustomerRequest& req,
             v1::Customer* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->CreateCustomer(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::GetCustomer(
    grpc::CallbackServerContext* context, const v1::GetCustomerRequest* request,
    v1::Customer* response) {
  return runner_.UnaryRead(
      context, "GetCustomer", request, response,
      [this](const CallContext& call, const v1::GetCustomerRequest& req,
             v1::Customer* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->GetCustomer(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::ListCustomers(
    grpc::CallbackServerContext* context,
    const v1::ListCustomersRequest* request,
    v1::ListCustomersResponse* response) {
  return runner_.UnaryRead(
      context, "ListCustomers", request, response,
      [this](const CallContext& call, const v1::ListCustomersRequest& req,
             v1::ListCustomersResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListCustomers(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::UpdateCustomer(
    grpc::CallbackServerContext* context,
    const v1::UpdateCustomerRequest* request, v1::Customer* response) {
  return runner_.Write(
      context, "UpdateCustomer", request, response,
      [this](const CallContext& call, const v1::UpdateCustomerRequest& req,
             v1::Customer* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->UpdateCustomer(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::DeleteCustomer(
    grpc::CallbackServerContext* context,
    const v1::DeleteCustomerRequest* request,
    v1::DeleteCustomerResponse* response) {
  return runner_.Write(
      context, "DeleteCustomer", request, response,
      [this](const CallContext& call, const v1::DeleteCustomerRequest& req,
             v1::DeleteCustomerResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->DeleteCustomer(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::SetManagementSettings(
    grpc::CallbackServerContext* context,
    const v1::SetManagementSettingsRequest* request, v1::Customer* response) {
  return runner_.Write(context, "SetManagementSettings", request, response,
                       [this](const CallContext& call,
                              const v1::SetManagementSettingsRequest& req,
                              v1::Customer* resp) -> absl::Status {
                         ASSIGN_OR_RETURN(
                             *resp, logic_->SetManagementSettings(call, req));
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* CustomerManagementService::PreviewManagementChange(
    grpc::CallbackServerContext* context,
    const v1::PreviewManagementChangeRequest* request,
    v1::PreviewManagementChangeResponse* response) {
  return runner_.UnaryRead(
      context, "PreviewManagementChange", request, response,
      [this](const CallContext& call,
             const v1::PreviewManagementChangeRequest& req,
             v1::PreviewManagementChangeResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->PreviewManagementChange(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::CreateProduct(
    grpc::CallbackServerContext* context,
    const v1::CreateProductRequest* request, v1::Product* response) {
  return runner_.Write(
      context, "CreateProduct", request, response,
      [this](const CallContext& call, const v1::CreateProductRequest& req,
             v1::Product* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->CreateProduct(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::ListProducts(
    grpc::CallbackServerContext* context,
    const v1::ListProductsRequest* request,
    v1::ListProductsResponse* response) {
  return runner_.UnaryRead(
      context, "ListProducts", request, response,
      [this](const CallContext& call, const v1::ListProductsRequest& req,
             v1::ListProductsResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListProducts(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::UpdateProduct(
    grpc::CallbackServerContext* context,
    const v1::UpdateProductRequest* request, v1::Product* response) {
  return runner_.Write(
      context, "UpdateProduct", request, response,
      [this](const CallContext& call, const v1::UpdateProductRequest& req,
             v1::Product* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->UpdateProduct(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::CreateCustomerUser(
    grpc::CallbackServerContext* context,
    const v1::CreateCustomerUserRequest* request, v1::CustomerUser* response) {
  return runner_.Write(
      context, "CreateCustomerUser", request, response,
      [this](const CallContext& call, const v1::CreateCustomerUserRequest& req,
             v1::CustomerUser* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->CreateCustomerUser(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::ListCustomerUsers(
    grpc::CallbackServerContext* context,
    const v1::ListCustomerUsersRequest* request,
    v1::ListCustomerUsersResponse* response) {
  return runner_.UnaryRead(
      context, "ListCustomerUsers", request, response,
      [this](const CallContext& call, const v1::ListCustomerUsersRequest& req,
             v1::ListCustomerUsersResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListCustomerUsers(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::DeleteCustomerUser(
    grpc::CallbackServerContext* context,
    const v1::DeleteCustomerUserRequest* request,
    v1::DeleteCustomerUserResponse* response) {
  return runner_.Write(
      context, "DeleteCustomerUser", request, response,
      [this](const CallContext& call, const v1::DeleteCustomerUserRequest& req,
             v1::DeleteCustomerUserResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->DeleteCustomerUser(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::ListCustomerChanges(
    grpc::CallbackServerContext* context,
    const v1::ListCustomerChangesRequest* request,
    v1::ListCustomerChangesResponse* response) {
  return runner_.UnaryRead(
      context, "ListCustomerChanges", request, response,
      [this](const CallContext& call, const v1::ListCustomerChangesRequest& req,
             v1::ListCustomerChangesResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListCustomerChanges(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::GetAccessContext(
    grpc::CallbackServerContext* context,
    const v1::GetAccessContextRequest* request, v1::AccessContext* response) {
  return runner_.UnaryRead(
      context, "GetAccessContext", request, response,
      [this](const CallContext& call, const v1::GetAccessContextRequest& req,
             v1::AccessContext* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->GetAccessContext(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::GetCommunicationRouting(
    grpc::CallbackServerContext* context,
    const v1::GetCommunicationRoutingRequest* request,
    v1::CommunicationRouting* response) {
  return runner_.UnaryRead(
      context, "GetCommunicationRouting", request, response,
      [this](const CallContext& call,
             const v1::GetCommunicationRoutingRequest& req,
             v1::CommunicationRouting* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->GetCommunicationRouting(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::ListAuditEvents(
    grpc::CallbackServerContext* context,
    const custos::common::v1::ListAuditEventsRequest* request,
    custos::common::v1::ListAuditEventsResponse* response) {
  return runner_.UnaryRead(
      context, "ListAuditEvents", request, response,
      [this](
          const CallContext& call,
          const custos::common::v1::ListAuditEventsRequest& req,
          custos::common::v1::ListAuditEventsResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListAuditEvents(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* CustomerManagementService::ListBroadcastRecipients(
    grpc::CallbackServerContext* context,
    const v1::ListBroadcastRecipientsRequest* request,
    v1::ListBroadcastRecipientsResponse* response) {
  return runner_.UnaryRead(
      context, "ListBroadcastRecipients", request, response,
      [this](const CallContext& call,
             const v1::ListBroadcastRecipientsRequest& req,
             v1::ListBroadcastRecipientsResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListBroadcastRecipients(call, req));
        return absl::OkStatus();
      });
}

}  // namespace custos::customers
