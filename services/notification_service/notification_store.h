#ifndef CUSTOS_SERVICES_NOTIFICATION_SERVICE_NOTIFICATION_STORE_H_
#define CUSTOS_SERVICES_NOTIFICATION_SERVICE_NOTIFICATION_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/database.h"
#include "custos/notifications/v1/notifications_service.pb.h"

namespace custos::notifications {

namespace v1 = ::custos::notifications::v1;

// SQL for NotificationService's data. Every function runs inside the
// caller's transaction. An inbox holds each alert at most once (primary key
// user × alert), which makes every fan-out idempotent.
// Inboxes are keyed by user id, or by resource name for a queue
// (`queues/customer-care`).
class NotificationStore {
 public:
  // `users/{user}` for a user id; a queue's name as it is.
  static std::string InboxName(const std::string& inbox);

  // Opens `database` (sqlite:PATH or postgresql://...) and applies the
  // schema migrations.
  static absl::StatusOr<std::unique_ptr<Database>> Open(
      const std::string& database, const DatabaseOptions& options = {});

  static absl::Status InsertAlert(Connection& db, const std::string& alert_id,
                                  const v1::Alert& alert, absl::Time now);
  // With its fan-out progress.
  static absl::StatusOr<std::optional<v1::Alert>> FindAlert(
      Connection& db, const std::string& alert_id);

  // Broadcast fan-outs (R11): a cursor over CustomerManagementService's
  // recipient pages, advanced in the transaction that fills that page's
  // inboxes, so a crash resumes where the last commit stopped.
  static absl::Status StartFanout(Connection& db, const std::string& alert_id);
  // (alert id, page token) of every unfinished fan-out.
  static absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
  PendingFanouts(Connection& db);
  // Moves the fan-out from the page at `from_token` to `next_token` (empty:
  // finished); false when it is no longer at `from_token` (another replica
  // delivered that page).
  static absl::StatusOr<bool> AdvanceFanout(Connection& db,
                                            const std::string& alert_id,
                                            const std::string& from_token,
                                            const std::string& next_token);
  // Adds a delivered page's new recipients to the alert's count.
  static absl::Status AddRecipients(Connection& db, const std::string& alert_id,
                                    int64_t delivered);

  // Adds the alert to each user's inbox (once; repeats are ignored).
  // Returns how many inboxes gained it.
  static absl::StatusOr<int64_t> Deliver(Connection& db,
                                         const std::string& alert_id,
                                         const std::vector<std::string>& users,
                                         absl::Time now);

  // Newest first, before (create time, alert id) when given.
  static absl::StatusOr<std::vector<v1::Notification>> ListInbox(
      Connection& db, const std::string& user_id, bool unread_only,
      const std::optional<std::pair<int64_t, std::string>>& before, int limit);
  // In arrival order, after position `after` (0: from the start), with
  // their positions.
  static absl::StatusOr<std::vector<std::pair<int64_t, v1::Notification>>>
  ListArrivedAfter(Connection& db, const std::string& user_id, int64_t after,
                   int limit);
  // Position of the newest notification of the inbox (0 when empty).
  static absl::StatusOr<int64_t> LastArrival(Connection& db,
                                             const std::string& user_id);
  // Returns how many changed from unread to read; every one when
  // `alert_ids` is empty.
  static absl::StatusOr<int64_t> MarkRead(
      Connection& db, const std::string& user_id,
      const std::vector<std::string>& alert_ids);
  // Retention: deletes up to `batch_size` read notifications delivered
  // before `older_than` (the inbox keeps no read time, so the delivery time
  // counts), oldest first; returns how many. Unlike the other functions
  // here it runs its own short write transaction. Unread notifications stay
  // however old; alerts stay. Call until it returns less than `batch_size`
  // to catch up. INVALID_ARGUMENT when batch_size <= 0; otherwise the
  // transaction's error.
  static absl::StatusOr<int64_t> PruneReadNotifications(Database& database,
                                                        absl::Time older_than,
                                                        int batch_size);

  static absl::StatusOr<absl::flat_hash_set<int>> MutedCategories(
      Connection& db, const std::string& user_id);
  static absl::Status SetMutedCategories(Connection& db,
                                         const std::string& user_id,
                                         const std::vector<int>& categories);
};

}  // namespace custos::notifications

#endif  // CUSTOS_SERVICES_NOTIFICATION_SERVICE_NOTIFICATION_STORE_H_
