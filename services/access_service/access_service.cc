#include "services/access_service/access_service.h"

#include <memory>
#include <utility>

#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace custos::access {
namespace {

// A stream refused before it started (bad token, bad resume_token).
class RefusedWatch final
    : public grpc::ServerWriteReactor<v1::WatchPermissionChangesResponse> {
 public:
  explicit RefusedWatch(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<v1::WatchPermissionChangesResponse>*
AccessService::WatchPermissionChanges(
    grpc::CallbackServerContext* context,
    const v1::WatchPermissionChangesRequest* request) {
  const absl::Time start = absl::Now();
  CallContext call;
  absl::StatusOr<StreamQuota::Lease> lease;
  absl::StatusOr<std::optional<WatchPosition>> from;
  absl::Status status =
      runner_.AuthenticateStream(context, "WatchPermissionChanges", &call);
  if (status.ok()) {
    // The caller's stream cap, before anything is read.
    lease = watch_hub_->quota()->Acquire(call.principal);
    status = lease.status();
  }
  if (status.ok()) {
    from = logic_->PrepareWatch(call, *request);
    status = from.status();
  }
  if (!status.ok()) {
    runner_.LogStream("WatchPermissionChanges", start, call, status);
    return new RefusedWatch(ToGrpcStatus(status));  // `lease` given back
  }
  auto stream = std::make_shared<WatchStream>(
      watch_hub_, *std::move(from),
      [this, call, start](const grpc::Status& done) {
        runner_.LogStream("WatchPermissionChanges", start, call,
                          FromGrpcStatus(done));
      },
      *std::move(lease));
  return WatchStream::Start(std::move(stream));  // reads on the hub's thread
}

grpc::ServerUnaryReactor* AccessService::CreateSite(
    grpc::CallbackServerContext* context, const v1::CreateSiteRequest* request,
    v1::Site* response) {
  return runner_.Write(
      context, "CreateSite", request, response,
      [this](const CallContext& call, const v1::CreateSiteRequest& req,
             v1::Site* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->CreateSite(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::GetSite(
    grpc::CallbackServerContext* context, const v1::GetSiteRequest* request,
    v1::Site* response) {
  return runner_.Unary(
      context, "GetSite", request, response,
      [this](const CallContext& call, const v1::GetSiteRequest& req,
             v1::Site* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->GetSite(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::ListSites(
    grpc::CallbackServerContext* context, const v1::ListSitesRequest* request,
    v1::ListSitesResponse* response) {
  return runner_.Unary(
      context, "ListSites", request, response,
      [this](const CallContext& call, const v1::ListSitesRequest& req,
             v1::ListSitesResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListSites(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::UpdateSite(
    grpc::CallbackServerContext* context, const v1::UpdateSiteRequest* request,
    v1::Site* response) {
  return runner_.Write(
      context, "UpdateSite", request, response,
      [this](const CallContext& call, const v1::UpdateSiteRequest& req,
             v1::Site* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->UpdateSite(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::ListSiteMembers(
    grpc::CallbackServerContext* context,
    const v1::ListSiteMembersRequest* request,
    v1::ListSiteMembersResponse* response) {
  return runner_.Unary(
      context, "ListSiteMembers", request, response,
      [this](const CallContext& call, const v1::ListSiteMembersRequest& req,
             v1::ListSiteMembersResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListSiteMembers(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::GetSiteMember(
    grpc::CallbackServerContext* context,
    const v1::GetSiteMemberRequest* request, v1::SiteMember* response) {
  return runner_.Unary(
      context, "GetSiteMember", request, response,
      [this](const CallContext& call, const v1::GetSiteMemberRequest& req,
             v1::SiteMember* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->GetSiteMember(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::UpdateSiteMember(
    grpc::CallbackServerContext* context,
    const v1::UpdateSiteMemberRequest* request, v1::SiteMember* response) {
  return runner_.Write(
      context, "UpdateSiteMember", request, response,
      [this](const CallContext& call, const v1::UpdateSiteMemberRequest& req,
             v1::SiteMember* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->UpdateSiteMember(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::DeleteSiteMember(
    grpc::CallbackServerContext* context,
    const v1::DeleteSiteMemberRequest* request,
    v1::DeleteSiteMemberResponse* response) {
  return runner_.Write(
      context, "DeleteSiteMember", request, response,
      [this](const CallContext& call, const v1::DeleteSiteMemberRequest& req,
             v1::DeleteSiteMemberResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->DeleteSiteMember(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::CreateAccessRequest(
    grpc::CallbackServerContext* context,
    const v1::CreateAccessRequestRequest* request,
    v1::AccessRequest* response) {
  return runner_.Write(
      context, "CreateAccessRequest", request, response,
      [this](const CallContext& call, const v1::CreateAccessRequestRequest& req,
             v1::AccessRequest* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->CreateAccessRequest(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::GetAccessRequest(
    grpc::CallbackServerContext* context,
    const v1::GetAccessRequestRequest* request, v1::AccessRequest* response) {
  return runner_.Unary(
      context, "GetAccessRequest", request, response,
      [this](const CallContext& call, const v1::GetAccessRequestRequest& req,
             v1::AccessRequest* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->GetAccessRequest(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::ListAccessRequests(
    grpc::CallbackServerContext* context,
    const v1::ListAccessRequestsRequest* request,
    v1::ListAccessRequestsResponse* response) {
  return runner_.Unary(
      context, "ListAccessRequests", request, response,
      [this](const CallContext& call, const v1::ListAccessRequestsRequest& req,
             v1::ListAccessRequestsResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListAccessRequests(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::ApproveAccessRequest(
    grpc::CallbackServerContext* context,
    const v1::ApproveAccessRequestRequest* request,
    v1::AccessRequest* response) {
  return runner_.Write(context, "ApproveAccessRequest", request, response,
                       [this](const CallContext& call,
                              const v1::ApproveAccessRequestRequest& req,
                              v1::AccessRequest* resp) -> absl::Status {
                         ASSIGN_OR_RETURN(
                             *resp, logic_->ApproveAccessRequest(call, req));
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* AccessService::RejectAccessRequest(
    grpc::CallbackServerContext* context,
    const v1::RejectAccessRequestRequest* request,
    v1::AccessRequest* response) {
  return runner_.Write(
      context, "RejectAccessRequest", request, response,
      [this](const CallContext& call, const v1::RejectAccessRequestRequest& req,
             v1::AccessRequest* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->RejectAccessRequest(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::CancelAccessRequest(
    grpc::CallbackServerContext* context,
    const v1::CancelAccessRequestRequest* request,
    v1::AccessRequest* response) {
  return runner_.Write(
      context, "CancelAccessRequest", request, response,
      [this](const CallContext& call, const v1::CancelAccessRequestRequest& req,
             v1::AccessRequest* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->CancelAccessRequest(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::CreatePilot(
    grpc::CallbackServerContext* context, const v1::CreatePilotRequest* request,
    v1::Pilot* response) {
  return runner_.Write(
      context, "CreatePilot", request, response,
      [this](const CallContext& call, const v1::CreatePilotRequest& req,
             v1::Pilot* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->CreatePilot(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::AddPilotParticipant(
    grpc::CallbackServerContext* context,
    const v1::AddPilotParticipantRequest* request, v1::Pilot* response) {
  return runner_.Write(
      context, "AddPilotParticipant", request, response,
      [this](const CallContext& call, const v1::AddPilotParticipantRequest& req,
             v1::Pilot* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->AddPilotParticipant(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::RemovePilotParticipant(
    grpc::CallbackServerContext* context,
    const v1::RemovePilotParticipantRequest* request, v1::Pilot* response) {
  return runner_.Write(context, "RemovePilotParticipant", request, response,
                       [this](const CallContext& call,
                              const v1::RemovePilotParticipantRequest& req,
                              v1::Pilot* resp) -> absl::Status {
                         ASSIGN_OR_RETURN(
                             *resp, logic_->RemovePilotParticipant(call, req));
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* AccessService::UpdatePilot(
    grpc::CallbackServerContext* context, const v1::UpdatePilotRequest* request,
    v1::Pilot* response) {
  return runner_.Write(
      context, "UpdatePilot", request, response,
      [this](const CallContext& call, const v1::UpdatePilotRequest& req,
             v1::Pilot* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->UpdatePilot(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::CheckPermission(
    grpc::CallbackServerContext* context,
    const v1::CheckPermissionRequest* request,
    v1::CheckPermissionResponse* response) {
  return runner_.UnaryFastOrBlocking(
      context, "CheckPermission", request, response,
      [this](const CallContext& call, const v1::CheckPermissionRequest& req,
             v1::CheckPermissionResponse* resp) -> std::optional<absl::Status> {
        std::optional<absl::StatusOr<v1::CheckPermissionResponse>> answer =
            logic_->CheckPermissionFromMemory(call, req);
        if (!answer) return std::nullopt;
        if (!answer->ok()) return answer->status();
        *resp = **std::move(answer);
        return absl::OkStatus();
      },
      [this](const CallContext& call, const v1::CheckPermissionRequest& req,
             v1::CheckPermissionResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->CheckPermission(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::BatchCheckPermissions(
    grpc::CallbackServerContext* context,
    const v1::BatchCheckPermissionsRequest* request,
    v1::BatchCheckPermissionsResponse* response) {
  return runner_.Unary(
      context, "BatchCheckPermissions", request, response,
      [this](const CallContext& call,
             const v1::BatchCheckPermissionsRequest& req,
             v1::BatchCheckPermissionsResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->BatchCheckPermissions(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::ResolvePermissions(
    grpc::CallbackServerContext* context,
    const v1::ResolvePermissionsRequest* request,
    v1::ResolvePermissionsResponse* response) {
  return runner_.Unary(
      context, "ResolvePermissions", request, response,
      [this](const CallContext& call, const v1::ResolvePermissionsRequest& req,
             v1::ResolvePermissionsResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ResolvePermissions(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::ListRoles(
    grpc::CallbackServerContext* context, const v1::ListRolesRequest* request,
    v1::ListRolesResponse* response) {
  return runner_.UnaryRead(
      context, "ListRoles", request, response,
      [this](const CallContext& call, const v1::ListRolesRequest& req,
             v1::ListRolesResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListRoles(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::NotifyCustomerChanged(
    grpc::CallbackServerContext* context,
    const v1::NotifyCustomerChangedRequest* request,
    v1::NotifyCustomerChangedResponse* response) {
  return runner_.Write(
      context, "NotifyCustomerChanged", request, response,
      [this](const CallContext& call,
             const v1::NotifyCustomerChangedRequest& req,
             v1::NotifyCustomerChangedResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->NotifyCustomerChanged(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessService::ListAuditEvents(
    grpc::CallbackServerContext* context,
    const custos::common::v1::ListAuditEventsRequest* request,
    custos::common::v1::ListAuditEventsResponse* response) {
  return runner_.Unary(
      context, "ListAuditEvents", request, response,
      [this](
          const CallContext& call,
          const custos::common::v1::ListAuditEventsRequest& req,
          custos::common::v1::ListAuditEventsResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListAuditEvents(call, req));
        return absl::OkStatus();
      });
}

}  // namespace custos::access
