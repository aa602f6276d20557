#ifndef CUSTOS_COMMON_RETENTION_H_
#define CUSTOS_COMMON_RETENTION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/database.h"
#include "common/periodic.h"

namespace custos {

// One kind of row that grows with use and is kept for a while (DESIGN §3:
// retention for everything that grows). `prune(older_than, batch)` deletes
// at most `batch` such rows older than `older_than` in one short write
// transaction and returns how many.
struct RetentionRule {
  std::string what;     // for logs and metrics, e.g. "audit_events"
  absl::Duration keep;  // InfiniteDuration: forever
  std::function<absl::StatusOr<int64_t>(absl::Time older_than, int batch)>
      prune;
};

// The rules every service has, from --idempotency_retention and
// --audit_retention; exits on a non-positive value.
std::vector<RetentionRule> SharedRetentionRules(Database* database);

// Runs every rule each --retention_interval, in batches of
// --retention_batch_size (100), at most 100 batches per rule per run, each
// its own transaction followed by a rest as long as it took: writers get in
// between, and a backlog drains over a few runs instead of in one long lock.
// Failures are logged and retried next run. Counts
// `custos_retention_pruned_total{what}`.
class RetentionPruner {
 public:
  // Exits when a rule keeps rows for zero or less time.
  RetentionPruner(std::vector<RetentionRule> rules, const Clock* clock);
  // Stops, ending a run between batches.
  ~RetentionPruner();
  // One run now; returns the rows deleted (for tests and tools).
  int64_t RunOnce();

 private:
  const std::vector<RetentionRule> rules_;
  const Clock* const clock_;
  const int batch_size_;
  std::atomic<bool> stopping_{false};
  // Rows deleted so far, by rule; shared with the metrics collector, which
  // may outlive the pruner.
  std::shared_ptr<std::map<std::string, std::atomic<int64_t>>> pruned_;
  std::unique_ptr<Periodic> periodic_;  // last: stops before the rest goes
};

}  // namespace custos

#endif  // CUSTOS_COMMON_RETENTION_H_
