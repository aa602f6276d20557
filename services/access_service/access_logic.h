#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_LOGIC_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_LOGIC_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/call_context.h"
#include "common/clock.h"
#include "common/database.h"
#include "common/ids.h"
#include "custos/access/v1/access_service.pb.h"
#include "custos/common/v1/audit.pb.h"
#include "services/access_service/access_notices.h"
#include "services/access_service/permission_change_log.h"
#include "services/access_service/permission_engine.h"
#include "services/access_service/policy.h"

namespace custos::access {

struct AccessLogicOptions {
  // How long a pending access request waits before it expires (R6).
  // Default: 30 days.
  absl::Duration request_ttl = absl::Hours(24 * 30);
  // The access store's incarnation (StoreIdentity), in every token.
  std::string incarnation;
};

// Site management rules (DESIGN R5-R9, §3), free of gRPC: validates input
// (INVALID_ARGUMENT naming the field), authorizes the caller through the
// permission engine itself (the policy's `site.*` permissions), runs each
// write as one transaction that also bumps the versions the permission cache
// depends on, writes its audit event, and tells the engine the new versions
// before returning, so the write is acknowledged only once no check can
// answer from the old facts.
//
// Thread-safe.
class AccessLogic {
 public:
  // REQUIRES: all outlive this object. `notifications_outbox` (may be
  // null) delivers R8 notices to NotificationService.
  // `change_log` is the Watch log every write records into; `customers`
  // says whether a customer a site is linked to exists.
  AccessLogic(Database* db, const Policy* policy, PermissionEngine* engine,
              PermissionChangeLog* change_log, CustomerFactsSource* customers,
              const Clock* clock, IdGenerator* ids, AccessLogicOptions options,
              OutboxWorker* notifications_outbox = nullptr);

  // Records a policy change for watchers, and loads what the engine must
  // know before the first check.
  absl::Status Start();

  // WatchPermissionChanges: who may watch, and from where (nullopt: from
  // the head). Reads nothing: the stream checks the position when it starts
  // (WatchStream), off gRPC's threads.
  absl::StatusOr<std::optional<WatchPosition>> PrepareWatch(
      const CallContext& call,
      const v1::WatchPermissionChangesRequest& request);

  absl::StatusOr<v1::Site> CreateSite(const CallContext& call,
                                      const v1::CreateSiteRequest& request);
  absl::StatusOr<v1::Site> GetSite(const CallContext& call,
                                   const v1::GetSiteRequest& request);
  absl::StatusOr<v1::ListSitesResponse> ListSites(
      const CallContext& call, const v1::ListSitesRequest& request);
  absl::StatusOr<v1::Site> UpdateSite(const CallContext& call,
                                      const v1::UpdateSiteRequest& request);

  absl::StatusOr<v1::ListSiteMembersResponse> ListSiteMembers(
      const CallContext& call, const v1::ListSiteMembersRequest& request);
  absl::StatusOr<v1::SiteMember> GetSiteMember(
      const CallContext& call, const v1::GetSiteMemberRequest& request);
  // R7. When the site's last administrator stops being one, its pending
  // requests move to Customer Care (R6).
  absl::StatusOr<v1::SiteMember> UpdateSiteMember(
      const CallContext& call, const v1::UpdateSiteMemberRequest& request);
  absl::StatusOr<v1::DeleteSiteMemberResponse> DeleteSiteMember(
      const CallContext& call, const v1::DeleteSiteMemberRequest& request);

  // R5/R6. NOT_FOUND (SITE_NOT_FOUND) for an unknown Support ID;
  // FAILED_PRECONDITION when the caller already has the role
  // (ALREADY_HAS_ROLE) or has a pending request there (REQUEST_PENDING).
  absl::StatusOr<v1::AccessRequest> CreateAccessRequest(
      const CallContext& call, const v1::CreateAccessRequestRequest& request);
  absl::StatusOr<v1::AccessRequest> GetAccessRequest(
      const CallContext& call, const v1::GetAccessRequestRequest& request);
  absl::StatusOr<v1::ListAccessRequestsResponse> ListAccessRequests(
      const CallContext& call, const v1::ListAccessRequestsRequest& request);
  // R6. PERMISSION_DENIED (SELF_APPROVAL) for the requester; approving an
  // approved request returns it unchanged; FAILED_PRECONDITION
  // (REQUEST_DECIDED / REQUEST_EXPIRED) for other decided requests.
  absl::StatusOr<v1::AccessRequest> ApproveAccessRequest(
      const CallContext& call, const v1::ApproveAccessRequestRequest& request);
  absl::StatusOr<v1::AccessRequest> RejectAccessRequest(
      const CallContext& call, const v1::RejectAccessRequestRequest& request);
  absl::StatusOr<v1::AccessRequest> CancelAccessRequest(
      const CallContext& call, const v1::CancelAccessRequestRequest& request);
  // Marks every pending request past its expire time EXPIRED; returns how
  // many. Run periodically; reads also treat such requests as expired.
  absl::StatusOr<int> ExpireRequests();

  absl::StatusOr<v1::Pilot> CreatePilot(const CallContext& call,
                                        const v1::CreatePilotRequest& request);
  absl::StatusOr<v1::Pilot> AddPilotParticipant(
      const CallContext& call, const v1::AddPilotParticipantRequest& request);
  absl::StatusOr<v1::Pilot> RemovePilotParticipant(
      const CallContext& call,
      const v1::RemovePilotParticipantRequest& request);
  absl::StatusOr<v1::Pilot> UpdatePilot(const CallContext& call,
                                        const v1::UpdatePilotRequest& request);

  absl::StatusOr<v1::CheckPermissionResponse> CheckPermission(
      const CallContext& call, const v1::CheckPermissionRequest& request);
  // CheckPermission when it can be answered without waiting (bad input, or a
  // current answer in memory); nullopt otherwise.
  std::optional<absl::StatusOr<v1::CheckPermissionResponse>>
  CheckPermissionFromMemory(const CallContext& call,
                            const v1::CheckPermissionRequest& request);
  absl::StatusOr<v1::BatchCheckPermissionsResponse> BatchCheckPermissions(
      const CallContext& call, const v1::BatchCheckPermissionsRequest& request);
  absl::StatusOr<v1::ResolvePermissionsResponse> ResolvePermissions(
      const CallContext& call, const v1::ResolvePermissionsRequest& request);
  absl::StatusOr<v1::ListRolesResponse> ListRoles(
      const CallContext& call, const v1::ListRolesRequest& request);

  absl::StatusOr<v1::NotifyCustomerChangedResponse> NotifyCustomerChanged(
      const CallContext& call, const v1::NotifyCustomerChangedRequest& request);

  absl::StatusOr<custos::common::v1::ListAuditEventsResponse> ListAuditEvents(
      const CallContext& call,
      const custos::common::v1::ListAuditEventsRequest& request);

 private:
  // INVALID_ARGUMENT naming `field` unless `customer` (customers/{c})
  // exists in CustomerManagementService; UNAVAILABLE when it cannot say.
  absl::Status RequireCustomer(absl::string_view field,
                               const std::string& customer);
  // The consistency token of access write `seq`.
  std::string TokenOf(int64_t seq) const;
  // Inside a write: marks overdue pending requests expired, audits them and
  // tells their requesters (R6, R8). Returns how many expired.
  absl::StatusOr<int> ExpireDue(Connection& db, absl::Time now);
  // Whether the caller holds `permission` on the site (cached resolution).
  absl::StatusOr<bool> CallerMay(const CallContext& call,
                                 const std::string& site_id,
                                 absl::string_view permission);
  absl::StatusOr<v1::AccessRequest> Decide(const CallContext& call,
                                           absl::string_view name,
                                           v1::AccessRequest::State decision,
                                           absl::string_view reason);
  absl::StatusOr<v1::Pilot> ChangeParticipants(const CallContext& call,
                                               absl::string_view pilot_name,
                                               absl::string_view participant,
                                               bool add);

  Database* const db_;
  const Policy* const policy_;
  PermissionEngine* const engine_;
  PermissionChangeLog* const change_log_;
  CustomerFactsSource* const customers_;
  const Clock* const clock_;
  IdGenerator* const ids_;
  const AccessLogicOptions options_;
  AccessNotices notices_;
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_LOGIC_H_
