#ifndef CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_CUSTOMER_MANAGEMENT_SERVICE_H_
#define CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_CUSTOMER_MANAGEMENT_SERVICE_H_

#include "common/rpc.h"
#include "custos/customers/v1/customers_service.grpc.pb.h"
#include "services/customer_management_service/customer_management.h"

namespace custos::customers {

// gRPC edge of custos.customers.v1.CustomerManagementService: each method
// authenticates, runs CustomerManagement on the executor and maps its status.
// Every method that changes state goes through RpcRunner::Write
// (rate-limited per caller).
// Thread-safe.
class CustomerManagementService final
    : public v1::CustomerManagementService::CallbackService {
 public:
  // REQUIRES: all outlive the service.
  CustomerManagementService(CustomerManagement* logic,
                            const JwtVerifier* verifier, Executor* executor)
      : logic_(logic),
        runner_("custos.customers.v1.CustomerManagementService", verifier,
                executor) {}

  grpc::ServerUnaryReactor* CreatePartner(
      grpc::CallbackServerContext* context,
      const v1::CreatePartnerRequest* request, v1::Partner* response) override;
  grpc::ServerUnaryReactor* GetPartner(grpc::CallbackServerContext* context,
                                       const v1::GetPartnerRequest* request,
                                       v1::Partner* response) override;
  grpc::ServerUnaryReactor* ListPartners(
      grpc::CallbackServerContext* context,
      const v1::ListPartnersRequest* request,
      v1::ListPartnersResponse* response) override;
  grpc::ServerUnaryReactor* CreatePartnerUser(
      grpc::CallbackServerContext* context,
      const v1::CreatePartnerUserRequest* request,
      v1::PartnerUser* response) override;
  grpc::ServerUnaryReactor* ListPartnerUsers(
      grpc::CallbackServerContext* context,
      const v1::ListPartnerUsersRequest* request,
      v1::ListPartnerUsersResponse* response) override;
  grpc::ServerUnaryReactor* DeletePartnerUser(
      grpc::CallbackServerContext* context,
      const v1::DeletePartnerUserRequest* request,
      v1::DeletePartnerUserResponse* response) override;
  grpc::ServerUnaryReactor* CreateCustomer(
      grpc::CallbackServerContext* context,
      const v1::CreateCustomerRequest* request,
      v1::Customer* response) override;
  grpc::ServerUnaryReactor* GetCustomer(grpc::CallbackServerContext* context,
                                        const v1::GetCustomerRequest* request,
                                        v1::Customer* response) override;
  grpc::ServerUnaryReactor* ListCustomers(
      grpc::CallbackServerContext* context,
      const v1::ListCustomersRequest* request,
      v1::ListCustomersResponse* response) override;
  grpc::ServerUnaryReactor* UpdateCustomer(
      grpc::CallbackServerContext* context,
      const v1::UpdateCustomerRequest* request,
      v1::Customer* response) override;
  grpc::ServerUnaryReactor* DeleteCustomer(
      grpc::CallbackServerContext* context,
      const v1::DeleteCustomerRequest* request,
      v1::DeleteCustomerResponse* response) override;
  grpc::ServerUnaryReactor* SetManagementSettings(
      grpc::CallbackServerContext* context,
      const v1::SetManagementSettingsRequest* request,
      v1::Customer* response) override;
  grpc::ServerUnaryReactor* PreviewManagementChange(
      grpc::CallbackServerContext* context,
      const v1::PreviewManagementChangeRequest* request,
      v1::PreviewManagementChangeResponse* response) override;
  grpc::ServerUnaryReactor* CreateProduct(
      grpc::CallbackServerContext* context,
      const v1::CreateProductRequest* request, v1::Product* response) override;
  grpc::ServerUnaryReactor* ListProducts(
      grpc::CallbackServerContext* context,
      const v1::ListProductsRequest* request,
      v1::ListProductsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateProduct(
      grpc::CallbackServerContext* context,
      const v1::UpdateProductRequest* request, v1::Product* response) override;
  grpc::ServerUnaryReactor* CreateCustomerUser(
      grpc::CallbackServerContext* context,
      const v1::CreateCustomerUserRequest* request,
      v1::CustomerUser* response) override;
  grpc::ServerUnaryReactor* ListCustomerUsers(
      grpc::CallbackServerContext* context,
      const v1::ListCustomerUsersRequest* request,
      v1::ListCustomerUsersResponse* response) override;
  grpc::ServerUnaryReactor* DeleteCustomerUser(
      grpc::CallbackServerContext* context,
      const v1::DeleteCustomerUserRequest* request,
      v1::DeleteCustomerUserResponse* response) override;
  grpc::ServerUnaryReactor* ListCustomerChanges(
      grpc::CallbackServerContext* context,
      const v1::ListCustomerChangesRequest* request,
      v1::ListCustomerChangesResponse* response) override;
  grpc::ServerUnaryReactor* GetAccessContext(
      grpc::CallbackServerContext* context,
      const v1::GetAccessContextRequest* request,
      v1::AccessContext* response) override;
  grpc::ServerUnaryReactor* GetCommunicationRouting(
      grpc::CallbackServerContext* context,
      const v1::GetCommunicationRoutingRequest* request,
      v1::CommunicationRouting* response) override;
  grpc::ServerUnaryReactor* ListBroadcastRecipients(
      grpc::CallbackServerContext* context,
      const v1::ListBroadcastRecipientsRequest* request,
      v1::ListBroadcastRecipientsResponse* response) override;
  grpc::ServerUnaryReactor* ListAuditEvents(
      grpc::CallbackServerContext* context,
      const custos::common::v1::ListAuditEventsRequest* request,
      custos::common::v1::ListAuditEventsResponse* response) override;

 private:
  CustomerManagement* logic_;
  RpcRunner runner_;
};

}  // namespace custos::customers

#endif  // CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_CUSTOMER_MANAGEMENT_SERVICE_H_
