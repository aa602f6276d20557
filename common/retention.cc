#include "common/retention.h"

#include <atomic>
#include <map>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/audit_store.h"
#include "common/idempotency_store.h"
#include "common/json_log.h"
#include "common/metrics.h"
#include "common/service_flags.h"

ABSL_FLAG(absl::Duration, idempotency_retention, absl::Hours(24 * 7),
          "how long a create's request_id is replayed; inf = forever");
ABSL_FLAG(absl::Duration, audit_retention, absl::Hours(24 * 365),
          "how long audit events are kept; inf = forever");
ABSL_FLAG(absl::Duration, retention_interval, absl::Minutes(1),
          "how often expired rows are pruned");
ABSL_FLAG(int, retention_batch_size, 100,
          "rows deleted per retention transaction");

namespace custos {
namespace {

// 100 batches of 100 rows: up to 10,000 rows per kind per run (14 million
// a day at the default interval).
constexpr int kMaxBatchesPerRun = 100;

}  // namespace

std::vector<RetentionRule> SharedRetentionRules(Database* database) {
  return {
      {"idempotency_records", absl::GetFlag(FLAGS_idempotency_retention),
       [database](absl::Time older_than, int batch) {
         return PruneIdempotencyRecords(*database, older_than, batch);
       }},
      {"audit_events", absl::GetFlag(FLAGS_audit_retention),
       [database](absl::Time older_than, int batch) {
         return PruneAuditEvents(*database, older_than, batch);
       }},
  };
}

RetentionPruner::RetentionPruner(std::vector<RetentionRule> rules,
                                 const Clock* clock)
    : rules_(std::move(rules)),
      clock_(clock),
      batch_size_(absl::GetFlag(FLAGS_retention_batch_size)) {
  if (batch_size_ < 1) Die("--retention_batch_size must be at least 1");
  for (const RetentionRule& rule : rules_) {
    if (rule.keep <= absl::ZeroDuration()) {
      Die(absl::StrCat("retention of ", rule.what, " must be positive"));
    }
  }
  const absl::Duration interval = absl::GetFlag(FLAGS_retention_interval);
  if (interval <= absl::ZeroDuration()) {
    Die("--retention_interval must be positive");
  }
  auto pruned = std::make_shared<std::map<std::string, std::atomic<int64_t>>>();
  for (const RetentionRule& rule : rules_) (*pruned)[rule.what] = 0;
  pruned_ = pruned;
  Metrics::Default().AddCollector([pruned](MetricsText& out) {
    out.Family("custos_retention_pruned_total", "counter",
               "Rows deleted because their retention ran out, by kind.");
    for (const auto& [what, count] : *pruned) {
      out.Sample("custos_retention_pruned_total", {{"what", what}},
                 static_cast<double>(count.load()));
    }
  });
  periodic_ = std::make_unique<Periodic>(interval, [this] { RunOnce(); });
}

RetentionPruner::~RetentionPruner() {
  stopping_ = true;
  periodic_.reset();
}

int64_t RetentionPruner::RunOnce() {
  int64_t total = 0;
  for (const RetentionRule& rule : rules_) {
    // now - InfiniteDuration is before every row: nothing is deleted.
    const absl::Time older_than = clock_->Now() - rule.keep;
    for (int i = 0; i < kMaxBatchesPerRun && !stopping_.load(); ++i) {
      const absl::Time start = absl::Now();
      absl::StatusOr<int64_t> deleted = rule.prune(older_than, batch_size_);
      if (!deleted.ok()) {
        Log("warning", "retention pruning failed; retried next run",
            {{"what", rule.what}, {"error", deleted.status().ToString()}});
        break;
      }
      (*pruned_)[rule.what] += *deleted;
      total += *deleted;
      if (*deleted < batch_size_) break;
      // Rest as long as the batch took: pruning holds the write lock at
      // most half the time, so writers wait one short batch at worst
      // (docs/benchmarks.md, "Retention").
      absl::SleepFor(absl::Now() - start);
    }
  }
  return total;
}

}  // namespace custos
