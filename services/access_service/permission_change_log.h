#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_CHANGE_LOG_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_CHANGE_LOG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/consistency_token.h"
#include "common/database.h"
#include "custos/access/v1/access_service.pb.h"
#include "services/access_service/customer_facts.h"
#include "services/access_service/permission_engine.h"

namespace custos::access {

// Where a watcher is: a position in the access store's Watch log and one
// in CustomerManagementService's change feed. Encoded, it is the
// `resume_token` callers see.
struct WatchPosition {
  ConsistencyToken access;
  std::string customers;  // a ListCustomerChanges position

  std::string Encode() const;
  // INVALID_ARGUMENT (unnamed) when `text` is not a resume token.
  static absl::StatusOr<WatchPosition> Decode(absl::string_view text);
};

// The ordered history behind WatchPermissionChanges: every access write
// records what it changed (Record, inside its transaction, under its write
// sequence number), customer changes come from CustomerManagementService's
// feed, and Next reads both after a position.
// Thread-safe.
class PermissionChangeLog {
 public:
  // REQUIRES: all outlive the log. `incarnation`: the access store's.
  PermissionChangeLog(Database* db, CustomerChangeSource* customers,
                      std::string incarnation)
      : db_(db), customers_(customers), incarnation_(std::move(incarnation)) {}

  // Inside the write numbered `changes.seq`: records what it changed.
  static absl::Status Record(Connection& db, const WrittenChanges& changes,
                             const std::vector<v1::PermissionChange>& extra,
                             absl::Time now);

  // The position after everything committed so far.
  absl::StatusOr<WatchPosition> Head();
  // OUT_OF_RANGE when `position` cannot be continued here: another store or
  // incarnation, a history that does not contain it (a restore), or older
  // than what is retained.
  absl::Status Check(const WatchPosition& position);

  struct Batch {
    v1::WatchPermissionChangesResponse response;  // with resume_token
    WatchPosition next;
    bool more = false;  // more changes follow `next` now
  };
  // The changes after `from` (a position Check accepted, or one Next
  // returned): at most `limit` access writes and `limit` customer changes.
  // Errors: OUT_OF_RANGE when the customer feed cannot continue, the peer's
  // (UNAVAILABLE).
  absl::StatusOr<Batch> Next(const WatchPosition& from, int limit);

  // Drops entries older than `retention` (the newest always stays).
  absl::Status Prune(absl::Duration retention, absl::Time now);

 private:
  absl::Status CheckAccess(Connection& db, const ConsistencyToken& access);

  Database* const db_;
  CustomerChangeSource* const customers_;
  const std::string incarnation_;
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_CHANGE_LOG_H_
