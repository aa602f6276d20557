#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_SERVICE_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_SERVICE_H_

#include "common/rpc.h"
#include "custos/access/v1/access_service.grpc.pb.h"
#include "services/access_service/access_logic.h"
#include "services/access_service/watch_stream.h"

namespace custos::access {

// gRPC edge of custos.access.v1.AccessService: each method authenticates,
// runs AccessLogic and maps its status. Writes and anything that may wait on
// Redis, SQLite's write lock or CustomerManagementService run on the
// executor; a CheckPermission answered from memory completes on gRPC's
// thread (see RpcRunner::UnaryFastOrBlocking). Every method that changes
// state goes through RpcRunner::Write (rate-limited per caller); each caller
// holds at most --max_streams_per_user watch streams (WatchHub::quota).
// Thread-safe.
class AccessService final : public v1::AccessService::CallbackService {
 public:
  // REQUIRES: all outlive the service.
  AccessService(AccessLogic* logic, WatchHub* watch_hub,
                const JwtVerifier* verifier, Executor* executor)
      : logic_(logic),
        watch_hub_(watch_hub),
        runner_("custos.access.v1.AccessService", verifier, executor) {}

  grpc::ServerWriteReactor<v1::WatchPermissionChangesResponse>*
  WatchPermissionChanges(
      grpc::CallbackServerContext* context,
      const v1::WatchPermissionChangesRequest* request) override;

  grpc::ServerUnaryReactor* CreateSite(grpc::CallbackServerContext* context,
                                       const v1::CreateSiteRequest* request,
                                       v1::Site* response) override;
  grpc::ServerUnaryReactor* GetSite(grpc::CallbackServerContext* context,
                                    const v1::GetSiteRequest* request,
                                    v1::Site* response) override;
  grpc::ServerUnaryReactor* ListSites(grpc::CallbackServerContext* context,
                                      const v1::ListSitesRequest* request,
                                      v1::ListSitesResponse* response) override;
  grpc::ServerUnaryReactor* UpdateSite(grpc::CallbackServerContext* context,
                                       const v1::UpdateSiteRequest* request,
                                       v1::Site* response) override;
  grpc::ServerUnaryReactor* ListSiteMembers(
      grpc::CallbackServerContext* context,
      const v1::ListSiteMembersRequest* request,
      v1::ListSiteMembersResponse* response) override;
  grpc::ServerUnaryReactor* GetSiteMember(
      grpc::CallbackServerContext* context,
      const v1::GetSiteMemberRequest* request,
      v1::SiteMember* response) override;
  grpc::ServerUnaryReactor* UpdateSiteMember(
      grpc::CallbackServerContext* context,
      const v1::UpdateSiteMemberRequest* request,
      v1::SiteMember* response) override;
  grpc::ServerUnaryReactor* DeleteSiteMember(
      grpc::CallbackServerContext* context,
      const v1::DeleteSiteMemberRequest* request,
      v1::DeleteSiteMemberResponse* response) override;
  grpc::ServerUnaryReactor* CreateAccessRequest(
      grpc::CallbackServerContext* context,
      const v1::CreateAccessRequestRequest* request,
      v1::AccessRequest* response) override;
  grpc::ServerUnaryReactor* GetAccessRequest(
      grpc::CallbackServerContext* context,
      const v1::GetAccessRequestRequest* request,
      v1::AccessRequest* response) override;
  grpc::ServerUnaryReactor* ListAccessRequests(
      grpc::CallbackServerContext* context,
      const v1::ListAccessRequestsRequest* request,
      v1::ListAccessRequestsResponse* response) override;
  grpc::ServerUnaryReactor* ApproveAccessRequest(
      grpc::CallbackServerContext* context,
      const v1::ApproveAccessRequestRequest* request,
      v1::AccessRequest* response) override;
  grpc::ServerUnaryReactor* RejectAccessRequest(
      grpc::CallbackServerContext* context,
      const v1::RejectAccessRequestRequest* request,
      v1::AccessRequest* response) override;
  grpc::ServerUnaryReactor* CancelAccessRequest(
      grpc::CallbackServerContext* context,
      const v1::CancelAccessRequestRequest* request,
      v1::AccessRequest* response) override;
  grpc::ServerUnaryReactor* CreatePilot(grpc::CallbackServerContext* context,
                                        const v1::CreatePilotRequest* request,
                                        v1::Pilot* response) override;
  grpc::ServerUnaryReactor* AddPilotParticipant(
      grpc::CallbackServerContext* context,
      const v1::AddPilotParticipantRequest* request,
      v1::Pilot* response) override;
  grpc::ServerUnaryReactor* RemovePilotParticipant(
      grpc::CallbackServerContext* context,
      const v1::RemovePilotParticipantRequest* request,
      v1::Pilot* response) override;
  grpc::ServerUnaryReactor* UpdatePilot(grpc::CallbackServerContext* context,
                                        const v1::UpdatePilotRequest* request,
                                        v1::Pilot* response) override;
  grpc::ServerUnaryReactor* CheckPermission(
      grpc::CallbackServerContext* context,
      const v1::CheckPermissionRequest* request,
      v1::CheckPermissionResponse* response) override;
  grpc::ServerUnaryReactor* BatchCheckPermissions(
      grpc::CallbackServerContext* context,
      const v1::BatchCheckPermissionsRequest* request,
      v1::BatchCheckPermissionsResponse* response) override;
  grpc::ServerUnaryReactor* ResolvePermissions(
      grpc::CallbackServerContext* context,
      const v1::ResolvePermissionsRequest* request,
      v1::ResolvePermissionsResponse* response) override;
  grpc::ServerUnaryReactor* ListRoles(grpc::CallbackServerContext* context,
                                      const v1::ListRolesRequest* request,
                                      v1::ListRolesResponse* response) override;
  grpc::ServerUnaryReactor* NotifyCustomerChanged(
      grpc::CallbackServerContext* context,
      const v1::NotifyCustomerChangedRequest* request,
      v1::NotifyCustomerChangedResponse* response) override;
  grpc::ServerUnaryReactor* ListAuditEvents(
      grpc::CallbackServerContext* context,
      const custos::common::v1::ListAuditEventsRequest* request,
      custos::common::v1::ListAuditEventsResponse* response) override;

 private:
  AccessLogic* logic_;
  WatchHub* watch_hub_;
  RpcRunner runner_;
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_SERVICE_H_
