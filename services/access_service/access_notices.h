#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_NOTICES_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_NOTICES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/database.h"
#include "common/outbox.h"
#include "custos/access/v1/access_service.pb.h"

namespace custos::access {

namespace v1 = ::custos::access::v1;

// R8: who hears about access requests. Each notice is a
// NotificationService.Notify call written into the outbox inside the
// transaction of the change it reports, with a request_id derived from that
// change, so a retried delivery never notifies twice. Thread-safe.
class AccessNotices {
 public:
  // The Customer Care queue's inbox at NotificationService.
  static constexpr char kCustomerCareQueue[] = "queues/customer-care";

  // `outbox` (may be null: notices are off) delivers to NotificationService.
  explicit AccessNotices(OutboxWorker* outbox) : outbox_(outbox) {}

  // A new request: to the site's administrators other than the requester
  // (`administrators` are user ids), or to the Customer Care queue when it
  // decides.
  absl::Status RequestCreated(Connection& db, const v1::AccessRequest& request,
                              const std::vector<std::string>& administrators,
                              absl::Time now);
  // Approved, rejected or expired: to the requester.
  absl::Status RequestDecided(Connection& db, const v1::AccessRequest& request,
                              absl::Time now);
  // R6: `moved` pending requests of the site went to Customer Care.
  absl::Status HandedOver(Connection& db, const std::string& site_name,
                          int64_t moved, absl::Time now);

  // After the transaction committed: deliver in the background.
  void Wake();

 private:
  absl::Status Enqueue(Connection& db,
                       const std::vector<std::string>& recipients,
                       const std::string& title, const std::string& body,
                       const std::string& subject,
                       const std::string& request_id, absl::Time now);

  OutboxWorker* const outbox_;
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_NOTICES_H_
