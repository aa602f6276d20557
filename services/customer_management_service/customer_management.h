#ifndef CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_CUSTOMER_MANAGEMENT_H_
#define CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_CUSTOMER_MANAGEMENT_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "common/call_context.h"
#include "common/clock.h"
#include "common/database.h"
#include "common/ids.h"
#include "common/outbox.h"
#include "custos/common/v1/audit.pb.h"
#include "custos/customers/v1/customers_service.pb.h"
#include "services/customer_management_service/site_directory.h"

namespace custos::customers {

namespace v1 = ::custos::customers::v1;

// The partner console's rules (DESIGN R1-R4, §3), free of gRPC: validates
// input (INVALID_ARGUMENT naming the field), authorizes the caller against
// partner and customer membership looked up in the store (deny by default;
// PERMISSION_DENIED whether or not the resource exists, except for
// `platform_admin`, who sees NOT_FOUND), and runs each operation as one
// transaction that also writes its audit event and request_id record.
//
// Who may do what: `platform_admin` everything; a PARTNER_ADMIN changes its own
// partner's users, customers, settings, products and customer users; a
// PARTNER_USER reads them; a customer's own users read their customer, its
// products and users; role `service` reads access contexts and routing.
// Thread-safe.
class CustomerManagement {
 public:
  // REQUIRES: all outlive this object. `access_outbox`, when given, carries
  // every change that can change a permission answer to AccessService
  // (custos.access.v1.AccessService/NotifyCustomerChanged): written in the
  // change's transaction and delivered before the change is acknowledged
  // when AccessService answers in time, retried by the outbox otherwise.
  // `notifications_outbox`, when given, carries management-settings changes
  // to NotificationService as account alerts for the customer (routed by
  // R2 like any alert), delivered in the background.
  // `incarnation` is the store's (StoreIdentity): part of every
  // consistency token and change-feed position this service hands out.
  // `sites`, when given, is where Customer.sites is read (AccessService owns
  // the link).
  CustomerManagement(Database* database, const Clock* clock, IdGenerator* ids,
                     std::string incarnation,
                     OutboxWorker* access_outbox = nullptr,
                     OutboxWorker* notifications_outbox = nullptr,
                     SiteDirectory* sites = nullptr)
      : db_(database),
        clock_(clock),
        ids_(ids),
        incarnation_(std::move(incarnation)),
        sites_(sites),
        outbox_(access_outbox),
        notifications_outbox_(notifications_outbox) {}

  absl::StatusOr<v1::Partner> CreatePartner(
      const CallContext& call, const v1::CreatePartnerRequest& request);
  absl::StatusOr<v1::Partner> GetPartner(const CallContext& call,
                                         const v1::GetPartnerRequest& request);
  absl::StatusOr<v1::ListPartnersResponse> ListPartners(
      const CallContext& call, const v1::ListPartnersRequest& request);

  absl::StatusOr<v1::PartnerUser> CreatePartnerUser(
      const CallContext& call, const v1::CreatePartnerUserRequest& request);
  absl::StatusOr<v1::ListPartnerUsersResponse> ListPartnerUsers(
      const CallContext& call, const v1::ListPartnerUsersRequest& request);
  // FAILED_PRECONDITION when the user is an account manager
  // (ACCOUNT_MANAGER_IN_USE) or the partner's last admin (LAST_PARTNER_ADMIN).
  absl::StatusOr<v1::DeletePartnerUserResponse> DeletePartnerUser(
      const CallContext& call, const v1::DeletePartnerUserRequest& request);

  absl::StatusOr<v1::Customer> CreateCustomer(
      const CallContext& call, const v1::CreateCustomerRequest& request);
  absl::StatusOr<v1::Customer> GetCustomer(
      const CallContext& call, const v1::GetCustomerRequest& request);
  absl::StatusOr<v1::ListCustomersResponse> ListCustomers(
      const CallContext& call, const v1::ListCustomersRequest& request);
  // ABORTED (STALE_ETAG) when an etag is given and is not current.
  absl::StatusOr<v1::Customer> UpdateCustomer(
      const CallContext& call, const v1::UpdateCustomerRequest& request);
  absl::StatusOr<v1::DeleteCustomerResponse> DeleteCustomer(
      const CallContext& call, const v1::DeleteCustomerRequest& request);
  // R1/R2. The etag is required. FAILED_PRECONDITION
  // (CUSTOMER_HAS_NO_PARTNER) for partner management of a customer without a
  // partner (R3).
  absl::StatusOr<v1::Customer> SetManagementSettings(
      const CallContext& call, const v1::SetManagementSettingsRequest& request);
  absl::StatusOr<v1::PreviewManagementChangeResponse> PreviewManagementChange(
      const CallContext& call,
      const v1::PreviewManagementChangeRequest& request);

  absl::StatusOr<v1::Product> CreateProduct(
      const CallContext& call, const v1::CreateProductRequest& request);
  absl::StatusOr<v1::ListProductsResponse> ListProducts(
      const CallContext& call, const v1::ListProductsRequest& request);
  absl::StatusOr<v1::Product> UpdateProduct(
      const CallContext& call, const v1::UpdateProductRequest& request);

  absl::StatusOr<v1::CustomerUser> CreateCustomerUser(
      const CallContext& call, const v1::CreateCustomerUserRequest& request);
  absl::StatusOr<v1::ListCustomerUsersResponse> ListCustomerUsers(
      const CallContext& call, const v1::ListCustomerUsersRequest& request);
  absl::StatusOr<v1::DeleteCustomerUserResponse> DeleteCustomerUser(
      const CallContext& call, const v1::DeleteCustomerUserRequest& request);

  absl::StatusOr<v1::AccessContext> GetAccessContext(
      const CallContext& call, const v1::GetAccessContextRequest& request);
  absl::StatusOr<v1::CommunicationRouting> GetCommunicationRouting(
      const CallContext& call,
      const v1::GetCommunicationRoutingRequest& request);

  absl::StatusOr<v1::ListBroadcastRecipientsResponse> ListBroadcastRecipients(
      const CallContext& call,
      const v1::ListBroadcastRecipientsRequest& request);
  // The change feed, for AccessService (role `service`).
  absl::StatusOr<v1::ListCustomerChangesResponse> ListCustomerChanges(
      const CallContext& call, const v1::ListCustomerChangesRequest& request);
  // Hands site links stored here before AccessService owned them over to
  // AccessService (UpdateSite, allow_missing, through the outbox) and
  // clears them here, in one transaction. Returns how many; 0 without an
  // access outbox (they wait until one is configured).
  absl::StatusOr<int> MigrateSiteLinks();
  // Gives every customer created before the change feed existed a first
  // change, so its facts carry a random id like every other's. Returns how
  // many.
  absl::StatusOr<int> RecordUnnumberedCustomers();
  // Drops feed entries older than `retention` (the newest always stays).
  absl::Status PruneChanges(absl::Duration retention);

  absl::StatusOr<custos::common::v1::ListAuditEventsResponse> ListAuditEvents(
      const CallContext& call,
      const custos::common::v1::ListAuditEventsRequest& request);

 private:
  // A consistency token / feed position for change `sequence`.
  std::string TokenOf(int64_t sequence, int64_t change_id) const;
  // The token of the newest change.
  absl::StatusOr<std::string> HeadToken(Connection& db);
  // Inside a write: appends the customer's change to the feed and tells
  // AccessService through the outbox. Returns the change's token.
  absl::StatusOr<std::string> AnnounceCustomer(Connection& db,
                                               const std::string& customer_id,
                                               bool deleted, absl::Time now);
  // Inside a write: announces every customer of the partner; returns the
  // token of the last change.
  absl::StatusOr<std::string> AnnouncePartner(Connection& db,
                                              const std::string& partner_id,
                                              absl::Time now);
  // Inside a write: an account alert telling the customer's recipients
  // (R2) that its management settings changed from `before` to `after`.
  absl::Status AnnounceSettingsChange(Connection& db,
                                      const v1::Customer& before,
                                      const v1::Customer& after,
                                      const std::string& actor, absl::Time now);
  // After a write committed: tries to deliver what it announced.
  void DeliverAnnouncements();

  Database* db_;
  const Clock* clock_;
  IdGenerator* ids_;
  const std::string incarnation_;
  SiteDirectory* sites_;
  OutboxWorker* outbox_;
  OutboxWorker* notifications_outbox_;
};

}  // namespace custos::customers

#endif  // CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_CUSTOMER_MANAGEMENT_H_
