#include "services/notification_service/notification_service.h"

#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace custos::notifications {
namespace {

// A stream refused before it started: finishes at once, frees itself.
class RefusedStream final
    : public grpc::ServerWriteReactor<v1::StreamNotificationsResponse> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<v1::StreamNotificationsResponse>*
NotificationService::StreamNotifications(
    grpc::CallbackServerContext* context,
    const v1::StreamNotificationsRequest* request) {
  const absl::Time start = absl::Now();
  CallContext call;
  std::string user_id;
  int64_t cursor = 0;
  absl::StatusOr<StreamQuota::Lease> lease;
  absl::Status status =
      runner_.AuthenticateStream(context, "StreamNotifications", &call);
  if (status.ok()) {
    // The caller's stream cap, before PrepareStream reads the inbox.
    lease = hub_->quota()->Acquire(call.principal);
    status = lease.status();
  }
  if (status.ok()) {
    status = logic_->PrepareStream(call, *request, &user_id, &cursor);
  }
  if (!status.ok()) {
    runner_.LogStream("StreamNotifications", start, call, status);
    return new RefusedStream(ToGrpcStatus(status));  // `lease` given back
  }
  auto stream = std::make_shared<InboxStream>(
      db_, hub_, user_id, cursor,
      [this, call, start](const grpc::Status& done) {
        runner_.LogStream("StreamNotifications", start, call,
                          FromGrpcStatus(done));
      },
      *std::move(lease));
  return InboxStream::Start(std::move(stream));
}

grpc::ServerUnaryReactor* NotificationService::PublishAlert(
    grpc::CallbackServerContext* context,
    const v1::PublishAlertRequest* request, v1::Alert* response) {
  return runner_.Write(
      context, "PublishAlert", request, response,
      [this](const CallContext& call, const v1::PublishAlertRequest& req,
             v1::Alert* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->PublishAlert(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::PreviewRouting(
    grpc::CallbackServerContext* context,
    const v1::PreviewRoutingRequest* request,
    v1::PreviewRoutingResponse* response) {
  return runner_.Unary(
      context, "PreviewRouting", request, response,
      [this](const CallContext& call, const v1::PreviewRoutingRequest& req,
             v1::PreviewRoutingResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->PreviewRouting(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::ListNotifications(
    grpc::CallbackServerContext* context,
    const v1::ListNotificationsRequest* request,
    v1::ListNotificationsResponse* response) {
  return runner_.UnaryRead(
      context, "ListNotifications", request, response,
      [this](const CallContext& call, const v1::ListNotificationsRequest& req,
             v1::ListNotificationsResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->ListNotifications(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::MarkNotificationsRead(
    grpc::CallbackServerContext* context,
    const v1::MarkNotificationsReadRequest* request,
    v1::MarkNotificationsReadResponse* response) {
  return runner_.Write(
      context, "MarkNotificationsRead", request, response,
      [this](const CallContext& call,
             const v1::MarkNotificationsReadRequest& req,
             v1::MarkNotificationsReadResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->MarkNotificationsRead(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::GetNotificationPreferences(
    grpc::CallbackServerContext* context,
    const v1::GetNotificationPreferencesRequest* request,
    v1::NotificationPreferences* response) {
  return runner_.UnaryRead(
      context, "GetNotificationPreferences", request, response,
      [this](const CallContext& call,
             const v1::GetNotificationPreferencesRequest& req,
             v1::NotificationPreferences* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->GetNotificationPreferences(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::UpdateNotificationPreferences(
    grpc::CallbackServerContext* context,
    const v1::UpdateNotificationPreferencesRequest* request,
    v1::NotificationPreferences* response) {
  return runner_.Write(
      context, "UpdateNotificationPreferences", request, response,
      [this](const CallContext& call,
             const v1::UpdateNotificationPreferencesRequest& req,
             v1::NotificationPreferences* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp,
                         logic_->UpdateNotificationPreferences(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::ListAuditEvents(
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

grpc::ServerUnaryReactor* NotificationService::PublishBroadcast(
    grpc::CallbackServerContext* context,
    const v1::PublishBroadcastRequest* request, v1::Alert* response) {
  return runner_.Write(
      context, "PublishBroadcast", request, response,
      [this](const CallContext& call, const v1::PublishBroadcastRequest& req,
             v1::Alert* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->PublishBroadcast(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::Notify(
    grpc::CallbackServerContext* context, const v1::NotifyRequest* request,
    v1::Alert* response) {
  return runner_.Write(
      context, "Notify", request, response,
      [this](const CallContext& call, const v1::NotifyRequest& req,
             v1::Alert* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->Notify(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::CreateWebhookEndpoint(
    grpc::CallbackServerContext* context,
    const v1::CreateWebhookEndpointRequest* request,
    v1::WebhookEndpoint* response) {
  return runner_.Write(
      context, "CreateWebhookEndpoint", request, response,
      [this](const CallContext& call,
             const v1::CreateWebhookEndpointRequest& req,
             v1::WebhookEndpoint* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, webhooks_->CreateWebhookEndpoint(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::ListWebhookEndpoints(
    grpc::CallbackServerContext* context,
    const v1::ListWebhookEndpointsRequest* request,
    v1::ListWebhookEndpointsResponse* response) {
  return runner_.UnaryRead(
      context, "ListWebhookEndpoints", request, response,
      [this](const CallContext& call,
             const v1::ListWebhookEndpointsRequest& req,
             v1::ListWebhookEndpointsResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, webhooks_->ListWebhookEndpoints(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::DeleteWebhookEndpoint(
    grpc::CallbackServerContext* context,
    const v1::DeleteWebhookEndpointRequest* request,
    google::protobuf::Empty* response) {
  return runner_.Write(
      context, "DeleteWebhookEndpoint", request, response,
      [this](const CallContext& call,
             const v1::DeleteWebhookEndpointRequest& req,
             google::protobuf::Empty* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, webhooks_->DeleteWebhookEndpoint(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::ListWebhookDeliveries(
    grpc::CallbackServerContext* context,
    const v1::ListWebhookDeliveriesRequest* request,
    v1::ListWebhookDeliveriesResponse* response) {
  return runner_.UnaryRead(
      context, "ListWebhookDeliveries", request, response,
      [this](const CallContext& call,
             const v1::ListWebhookDeliveriesRequest& req,
             v1::ListWebhookDeliveriesResponse* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, webhooks_->ListWebhookDeliveries(call, req));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* NotificationService::GetAlert(
    grpc::CallbackServerContext* context, const v1::GetAlertRequest* request,
    v1::Alert* response) {
  return runner_.UnaryRead(
      context, "GetAlert", request, response,
      [this](const CallContext& call, const v1::GetAlertRequest& req,
             v1::Alert* resp) -> absl::Status {
        ASSIGN_OR_RETURN(*resp, logic_->GetAlert(call, req));
        return absl::OkStatus();
      });
}

}  // namespace custos::notifications
