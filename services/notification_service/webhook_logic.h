#ifndef CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_LOGIC_H_
#define CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_LOGIC_H_

#include "absl/status/statusor.h"
#include "common/call_context.h"
#include "common/clock.h"
#include "common/database.h"
#include "common/ids.h"
#include "custos/notifications/v1/notifications_service.pb.h"
#include "google/protobuf/empty.pb.h"

namespace custos::notifications {

namespace v1 = ::custos::notifications::v1;

// Webhook endpoints and their delivery history (R12), free of gRPC. Callers:
// `platform_admin` and `service`. Thread-safe.
class WebhookLogic {
 public:
  // REQUIRES: all outlive this object.
  WebhookLogic(Database* db, const Clock* clock, IdGenerator* ids)
      : db_(db), clock_(clock), ids_(ids) {}

  absl::StatusOr<v1::WebhookEndpoint> CreateWebhookEndpoint(
      const CallContext& call, const v1::CreateWebhookEndpointRequest& request);
  absl::StatusOr<v1::ListWebhookEndpointsResponse> ListWebhookEndpoints(
      const CallContext& call, const v1::ListWebhookEndpointsRequest& request);
  absl::StatusOr<google::protobuf::Empty> DeleteWebhookEndpoint(
      const CallContext& call, const v1::DeleteWebhookEndpointRequest& request);
  absl::StatusOr<v1::ListWebhookDeliveriesResponse> ListWebhookDeliveries(
      const CallContext& call, const v1::ListWebhookDeliveriesRequest& request);

 private:
  Database* const db_;
  const Clock* const clock_;
  IdGenerator* const ids_;
};

}  // namespace custos::notifications

#endif  // CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_LOGIC_H_
