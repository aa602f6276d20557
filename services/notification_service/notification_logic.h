#ifndef CUSTOS_SERVICES_NOTIFICATION_SERVICE_NOTIFICATION_LOGIC_H_
#define CUSTOS_SERVICES_NOTIFICATION_SERVICE_NOTIFICATION_LOGIC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/call_context.h"
#include "common/clock.h"
#include "common/database.h"
#include "common/ids.h"
#include "custos/common/v1/audit.pb.h"
#include "custos/notifications/v1/notifications_service.pb.h"
#include "services/notification_service/broadcast_fanout.h"
#include "services/notification_service/inbox_stream.h"
#include "services/notification_service/routing_source.h"
#include "services/notification_service/webhook_dispatcher.h"

namespace custos::notifications {

namespace v1 = ::custos::notifications::v1;

struct NotificationLogicOptions {
  // Categories nobody can mute. Default: security alerts (R10).
  std::vector<v1::Category> mandatory_categories = {v1::CATEGORY_SECURITY};
};

// Alert routing and inboxes (DESIGN R2, R3, R10, R13), free of gRPC.
// Routing: the partner's account manager whenever a partner is linked;
// the customer's users only with SHARED communications or no partner (R3,
// which CustomerManagementService reports as SHARED); minus users who muted
// the category unless it is mandatory. Thread-safe.
class NotificationLogic {
 public:
  // REQUIRES: all outlive this object.
  // `fanout` delivers recorded broadcasts; it is woken after each one.
  // `hub` (may be null) hears of every inbox that gained notifications.
  // `webhooks` (may be null) is woken when deliveries were queued.
  NotificationLogic(Database* db, RoutingSource* routing,
                    BroadcastFanout* fanout, InboxHub* hub,
                    WebhookDispatcher* webhooks, const Clock* clock,
                    IdGenerator* ids, NotificationLogicOptions options);

  // Checks a StreamNotifications call: the user (only the inbox's owner
  // streams it) and the position to start after (the newest notification
  // when no cursor is given).
  absl::Status PrepareStream(const CallContext& call,
                             const v1::StreamNotificationsRequest& request,
                             std::string* user_id, int64_t* cursor);

  absl::StatusOr<v1::Alert> PublishAlert(
      const CallContext& call, const v1::PublishAlertRequest& request);
  absl::StatusOr<v1::Alert> PublishBroadcast(
      const CallContext& call, const v1::PublishBroadcastRequest& request);
  // R8: explicit recipients, preferences not applied.
  absl::StatusOr<v1::Alert> Notify(const CallContext& call,
                                   const v1::NotifyRequest& request);
  absl::StatusOr<v1::Alert> GetAlert(const CallContext& call,
                                     const v1::GetAlertRequest& request);
  absl::StatusOr<v1::PreviewRoutingResponse> PreviewRouting(
      const CallContext& call, const v1::PreviewRoutingRequest& request);
  absl::StatusOr<v1::ListNotificationsResponse> ListNotifications(
      const CallContext& call, const v1::ListNotificationsRequest& request);
  absl::StatusOr<v1::MarkNotificationsReadResponse> MarkNotificationsRead(
      const CallContext& call, const v1::MarkNotificationsReadRequest& request);
  absl::StatusOr<v1::NotificationPreferences> GetNotificationPreferences(
      const CallContext& call,
      const v1::GetNotificationPreferencesRequest& request);
  // INVALID_ARGUMENT (MANDATORY_CATEGORY) for muting a mandatory category.
  absl::StatusOr<v1::NotificationPreferences> UpdateNotificationPreferences(
      const CallContext& call,
      const v1::UpdateNotificationPreferencesRequest& request);
  absl::StatusOr<custos::common::v1::ListAuditEventsResponse> ListAuditEvents(
      const CallContext& call,
      const custos::common::v1::ListAuditEventsRequest& request);

 private:
  // Who receives an alert of `category` for the customer, and why not the
  // others; reads mutes in `db`.
  absl::StatusOr<v1::PreviewRoutingResponse> Route(
      Connection& db, const customers::v1::CommunicationRouting& routing,
      v1::Category category);
  bool IsMandatory(v1::Category category) const;

  Database* const db_;
  RoutingSource* const routing_;
  BroadcastFanout* const fanout_;
  InboxHub* const hub_;
  WebhookDispatcher* const webhooks_;
  const Clock* const clock_;
  IdGenerator* const ids_;
  const NotificationLogicOptions options_;
};

}  // namespace custos::notifications

#endif  // CUSTOS_SERVICES_NOTIFICATION_SERVICE_NOTIFICATION_LOGIC_H_
