#ifndef CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_LOGIC_H_
#define CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_LOGIC_H_

#include "absl/status/statusor.h"
#include "common/call_context.h"
#include "common/clock.h"
#include "common/database.h"
#include "common/ids.h"
#include "custos/notifications/v1/notifications_service.pb.h"
#include "google/protobuf/empty.pb.h"
#include "services/notification_service/webhook_target.h"

namespace custos::notifications {

namespace v1 = ::custos::notifications::v1;

// Webhook endpoints and their delivery history (R12), free of gRPC. Callers:
// `platform_admin` and `service`. Thread-safe.
class WebhookLogic {
 public:
  // `policy` decides which URLs an endpoint may have; the dispatcher checks
  // every attempt again with its own copy.
  // REQUIRES: all outlive this object.
  WebhookLogic(Database* db, const Clock* clock, IdGenerator* ids,
               WebhookTargetPolicy policy)
      : db_(db), clock_(clock), ids_(ids), policy_(policy) {}

  // Stores the URL as libcurl normalizes it (webhook_target.h).
  // INVALID_ARGUMENT on webhook_endpoint.url when ParseWebhookUrl refuses
  // it or its host resolves to an address the policy forbids (reason
  // WEBHOOK_TARGET_NOT_ALLOWED). A name that does not resolve now is
  // accepted: DNS may change either way after creation, so the dispatcher's
  // check at every attempt is the one that counts, and creation does not
  // depend on the resolver being reachable.
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
  const WebhookTargetPolicy policy_;
};

}  // namespace custos::notifications

#endif  // CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_LOGIC_H_
