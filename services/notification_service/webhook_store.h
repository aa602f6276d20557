#ifndef CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_STORE_H_
#define CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/database.h"
#include "custos/notifications/v1/notifications_service.pb.h"

namespace custos::notifications {

namespace v1 = ::custos::notifications::v1;

// SQL for webhook endpoints and their deliveries (R12). Every function runs
// inside the caller's transaction. An endpoint is keyed by its owner
// (`partners/{p}` or `customers/{c}`) and id; a delivery by endpoint ×
// alert, so an alert reaches an endpoint through one row only.
class WebhookStore {
 public:
  struct Endpoint {
    std::string url;
    std::string secret;
    absl::Time create_time;
  };
  struct DeliveryKey {
    std::string owner;
    std::string endpoint_id;
    std::string alert_id;
  };
  // A delivery claimed for an attempt, with what the attempt needs.
  struct DueDelivery {
    DeliveryKey key;
    int64_t attempts = 0;  // made before this one
    std::string url;
    std::string secret;
    // The trace and request id of the call that published the alert (the
    // POST's traceparent and X-Request-Id); empty for older rows.
    std::string trace_parent;
    std::string request_id;
  };

  static absl::Status InsertEndpoint(Connection& db, const std::string& owner,
                                     const std::string& id,
                                     const Endpoint& endpoint);
  static absl::StatusOr<std::optional<Endpoint>> FindEndpoint(
      Connection& db, const std::string& owner, const std::string& id);
  // Ordered by id, after `after_id`; without their secrets.
  static absl::StatusOr<std::vector<v1::WebhookEndpoint>> ListEndpoints(
      Connection& db, const std::string& owner, const std::string& after_id,
      int limit);
  // Removes the endpoint and its deliveries; false when it did not exist.
  static absl::StatusOr<bool> DeleteEndpoint(Connection& db,
                                             const std::string& owner,
                                             const std::string& id);

  // Queues the alert for every endpoint of the owners (or of everyone when
  // `owners` is empty and `all` is set). Returns how many were queued.
  static absl::StatusOr<int64_t> QueueAlert(
      Connection& db, const std::string& alert_id,
      const std::vector<std::string>& owners, bool all, absl::Time now);

  // The most overdue pending delivery, leased until now + `lease` so that
  // no other attempt takes it meanwhile (a crash mid-attempt retries it
  // after the lease).
  static absl::StatusOr<std::optional<DueDelivery>> ClaimDue(
      Connection& db, absl::Time now, absl::Duration lease);
  // When the next pending delivery is due (nullopt: none pending).
  static absl::StatusOr<std::optional<absl::Time>> NextDue(Connection& db);
  static absl::Status RecordDelivered(Connection& db, const DeliveryKey& key,
                                      absl::Time now);
  // A failed attempt: retried at `retry_at`, or dead when it is nullopt.
  static absl::Status RecordFailure(Connection& db, const DeliveryKey& key,
                                    const std::string& error,
                                    std::optional<absl::Time> retry_at);

  // Newest first, before (create time, alert id) when given; names are
  // under `endpoint_name`.
  static absl::StatusOr<std::vector<v1::WebhookDelivery>> ListDeliveries(
      Connection& db, const std::string& owner, const std::string& endpoint_id,
      const std::string& endpoint_name,
      const std::optional<std::pair<int64_t, std::string>>& before, int limit);
};

}  // namespace custos::notifications

#endif  // CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_STORE_H_
