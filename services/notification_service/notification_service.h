#ifndef CUSTOS_SERVICES_NOTIFICATION_SERVICE_NOTIFICATION_SERVICE_H_
#define CUSTOS_SERVICES_NOTIFICATION_SERVICE_NOTIFICATION_SERVICE_H_

#include "common/rpc.h"
#include "custos/notifications/v1/notifications_service.grpc.pb.h"
#include "services/notification_service/inbox_stream.h"
#include "services/notification_service/notification_logic.h"
#include "services/notification_service/webhook_logic.h"

namespace custos::notifications {

// gRPC edge of custos.notifications.v1.NotificationService: authenticates,
// runs NotificationLogic and maps its status. Calls that ask
// CustomerManagementService or write run on the executor; inbox and
// preference reads (SQLite WAL reads) run inline. Every method that changes
// state goes through RpcRunner::Write (rate-limited per caller); each caller
// holds at most --max_streams_per_user inbox streams (InboxHub::quota).
// Thread-safe.
class NotificationService final
    : public v1::NotificationService::CallbackService {
 public:
  // REQUIRES: all outlive the service.
  NotificationService(NotificationLogic* logic, WebhookLogic* webhooks,
                      const JwtVerifier* verifier, Executor* executor,
                      Database* db, InboxHub* hub)
      : logic_(logic),
        webhooks_(webhooks),
        runner_("custos.notifications.v1.NotificationService", verifier,
                executor),
        db_(db),
        hub_(hub) {}

  grpc::ServerWriteReactor<v1::StreamNotificationsResponse>*
  StreamNotifications(grpc::CallbackServerContext* context,
                      const v1::StreamNotificationsRequest* request) override;

  grpc::ServerUnaryReactor* PublishAlert(grpc::CallbackServerContext* context,
                                         const v1::PublishAlertRequest* request,
                                         v1::Alert* response) override;
  grpc::ServerUnaryReactor* PublishBroadcast(
      grpc::CallbackServerContext* context,
      const v1::PublishBroadcastRequest* request, v1::Alert* response) override;
  grpc::ServerUnaryReactor* Notify(grpc::CallbackServerContext* context,
                                   const v1::NotifyRequest* request,
                                   v1::Alert* response) override;
  grpc::ServerUnaryReactor* CreateWebhookEndpoint(
      grpc::CallbackServerContext* context,
      const v1::CreateWebhookEndpointRequest* request,
      v1::WebhookEndpoint* response) override;
  grpc::ServerUnaryReactor* ListWebhookEndpoints(
      grpc::CallbackServerContext* context,
      const v1::ListWebhookEndpointsRequest* request,
      v1::ListWebhookEndpointsResponse* response) override;
  grpc::ServerUnaryReactor* DeleteWebhookEndpoint(
      grpc::CallbackServerContext* context,
      const v1::DeleteWebhookEndpointRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* ListWebhookDeliveries(
      grpc::CallbackServerContext* context,
      const v1::ListWebhookDeliveriesRequest* request,
      v1::ListWebhookDeliveriesResponse* response) override;
  grpc::ServerUnaryReactor* GetAlert(grpc::CallbackServerContext* context,
                                     const v1::GetAlertRequest* request,
                                     v1::Alert* response) override;
  grpc::ServerUnaryReactor* PreviewRouting(
      grpc::CallbackServerContext* context,
      const v1::PreviewRoutingRequest* request,
      v1::PreviewRoutingResponse* response) override;
  grpc::ServerUnaryReactor* ListNotifications(
      grpc::CallbackServerContext* context,
      const v1::ListNotificationsRequest* request,
      v1::ListNotificationsResponse* response) override;
  grpc::ServerUnaryReactor* MarkNotificationsRead(
      grpc::CallbackServerContext* context,
      const v1::MarkNotificationsReadRequest* request,
      v1::MarkNotificationsReadResponse* response) override;
  grpc::ServerUnaryReactor* GetNotificationPreferences(
      grpc::CallbackServerContext* context,
      const v1::GetNotificationPreferencesRequest* request,
      v1::NotificationPreferences* response) override;
  grpc::ServerUnaryReactor* UpdateNotificationPreferences(
      grpc::CallbackServerContext* context,
      const v1::UpdateNotificationPreferencesRequest* request,
      v1::NotificationPreferences* response) override;
  grpc::ServerUnaryReactor* ListAuditEvents(
      grpc::CallbackServerContext* context,
      const custos::common::v1::ListAuditEventsRequest* request,
      custos::common::v1::ListAuditEventsResponse* response) override;

 private:
  NotificationLogic* logic_;
  WebhookLogic* webhooks_;
  RpcRunner runner_;
  Database* db_;
  InboxHub* hub_;
};

}  // namespace custos::notifications

#endif  // CUSTOS_SERVICES_NOTIFICATION_SERVICE_NOTIFICATION_SERVICE_H_
