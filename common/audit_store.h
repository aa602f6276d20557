#ifndef CUSTOS_COMMON_AUDIT_STORE_H_
#define CUSTOS_COMMON_AUDIT_STORE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/database.h"
#include "custos/common/v1/audit.pb.h"

namespace custos {

// The audit log table every service keeps; add it to the service's
// migrations.
extern const char kAuditEventsSchema[];
// The index PruneAuditEvents reads by; add it to the service's migrations
// after kAuditEventsSchema.
extern const char kAuditEventsTimeIndexSchema[];

struct AuditRecord {
  std::string actor;
  std::string action;
  std::string resource;
  std::string before;  // JSON; "" when the resource did not exist.
  std::string after;   // JSON; "" when the resource was deleted.
  absl::Time time;
  std::string request_id;
};

// Appends one event. Call inside the Write transaction of the change itself,
// so an event exists exactly when the change does.
absl::Status AppendAuditEvent(Connection& db, const AuditRecord& record);

// Events on `parent` and every resource below it, newest first.
// REQUIRES: `parent` is a validated resource name; page_size normalized.
absl::StatusOr<custos::common::v1::ListAuditEventsResponse> ListAuditEvents(
    Database& database, const std::string& parent, int page_size,
    const std::string& page_token);

// Retention: deletes up to `batch_size` events whose time is before
// `older_than`, oldest first, in one write transaction of its own; returns
// how many. Call until it returns less than `batch_size` to catch up.
// INVALID_ARGUMENT when batch_size <= 0; otherwise the transaction's error.
// REQUIRES: the service's migrations include kAuditEventsTimeIndexSchema
// (else each call scans the table).
absl::StatusOr<int64_t> PruneAuditEvents(Database& database,
                                         absl::Time older_than, int batch_size);

}  // namespace custos

#endif  // CUSTOS_COMMON_AUDIT_STORE_H_
