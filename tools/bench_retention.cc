// What retention pruning costs and whether it holds up writers
// (docs/benchmarks.md, "Retention"): a store (SQLite, or PostgreSQL with
// --database) holding --rows expired idempotency records of --record_bytes
// each; one thread writes fresh records as fast as it can, first alone, then
// while the store is pruned in batches of --batch_size. Prints the batch
// times and the writers' latency percentiles in both phases.
//   build/tools/bench_retention --rows=100000 --batch_size=100
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/database.h"
#include "common/idempotency_store.h"
#include "custos/common/v1/audit.pb.h"

ABSL_FLAG(std::string, database, "",
          "store to use; empty: a fresh SQLite file in a temporary directory");
ABSL_FLAG(int, rows, 100000, "expired records to prune");
ABSL_FLAG(int, record_bytes, 2000, "size of each stored response");
ABSL_FLAG(int, batch_size, 100, "rows per pruning transaction");
ABSL_FLAG(bool, pause, true,
          "rest as long as each batch took before the next, as "
          "RetentionPruner does");
ABSL_FLAG(absl::Duration, phase, absl::Seconds(3),
          "how long writers run alone before pruning starts");

namespace {

using custos::Connection;

struct Percentiles {
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  size_t count = 0;
};

Percentiles Summarize(std::vector<absl::Duration> samples) {
  Percentiles result;
  result.count = samples.size();
  if (samples.empty()) return result;
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    return absl::ToDoubleMilliseconds(samples[std::min(
        samples.size() - 1, static_cast<size_t>(q * samples.size()))]);
  };
  result.p50_ms = at(0.50);
  result.p99_ms = at(0.99);
  result.max_ms = absl::ToDoubleMilliseconds(samples.back());
  return result;
}

// One fresh record, as a create with a request_id stores it.
absl::Status WriteRecord(custos::Database& db, int64_t n,
                         const custos::common::v1::AuditEvent& response,
                         absl::Time when) {
  return db.Write([&](Connection& c) {
    return custos::RecordResponse(
        c, {"bench-user", "CreateThing", absl::StrCat("req-", n)}, "fp",
        response, when);
  });
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string spec = absl::GetFlag(FLAGS_database);
  if (spec.empty()) {
    char dir[] = "/tmp/bench-retention.XXXXXX";
    if (mkdtemp(dir) == nullptr) return 1;
    spec = absl::StrCat("sqlite:", dir, "/store.db");
  }
  auto db = custos::OpenDatabase(
      spec, {{1, custos::kIdempotencyKeysSchema},
             {2, custos::kIdempotencyKeysTimeIndexSchema}});
  if (!db.ok()) {
    std::fprintf(stderr, "%s\n", db.status().ToString().c_str());
    return 1;
  }
  custos::common::v1::AuditEvent response;
  response.set_before(std::string(absl::GetFlag(FLAGS_record_bytes), 'x'));
  const absl::Time expired = absl::Now() - absl::Hours(24 * 30);
  const int rows = absl::GetFlag(FLAGS_rows);
  // Filled in transactions of 1,000.
  for (int first = 0; first < rows; first += 1000) {
    absl::Status filled = (*db)->Write([&](Connection& c) -> absl::Status {
      for (int n = first; n < std::min(rows, first + 1000); ++n) {
        absl::Status s = custos::RecordResponse(
            c, {"old-user", "CreateThing", absl::StrCat("old-", n)}, "fp",
            response, expired);
        if (!s.ok()) return s;
      }
      return absl::OkStatus();
    });
    if (!filled.ok()) {
      std::fprintf(stderr, "%s\n", filled.ToString().c_str());
      return 1;
    }
  }

  std::atomic<int> phase{0};  // 0 alone, 1 pruning, 2 stop
  std::vector<absl::Duration> alone, during;
  std::thread writer([&] {
    for (int64_t n = 0; phase.load() < 2 && n < 10'000'000; ++n) {
      const int now_phase = phase.load();
      const absl::Time start = absl::Now();
      if (!WriteRecord(**db, n, response, absl::Now()).ok()) continue;
      (now_phase == 0 ? alone : during).push_back(absl::Now() - start);
    }
  });
  absl::SleepFor(absl::GetFlag(FLAGS_phase));
  phase = 1;
  std::vector<absl::Duration> batches;
  int64_t pruned = 0;
  const absl::Time prune_start = absl::Now();
  while (true) {
    const absl::Time start = absl::Now();
    absl::StatusOr<int64_t> deleted = custos::PruneIdempotencyRecords(
        **db, expired + absl::Seconds(1), absl::GetFlag(FLAGS_batch_size));
    if (!deleted.ok()) {
      std::fprintf(stderr, "%s\n", deleted.status().ToString().c_str());
      break;
    }
    batches.push_back(absl::Now() - start);
    pruned += *deleted;
    if (*deleted < absl::GetFlag(FLAGS_batch_size)) break;
    if (absl::GetFlag(FLAGS_pause)) absl::SleepFor(batches.back());
  }
  const absl::Duration prune_total = absl::Now() - prune_start;
  phase = 2;
  writer.join();

  const Percentiles b = Summarize(batches);
  const Percentiles a = Summarize(alone);
  const Percentiles d = Summarize(during);
  std::printf(
      "store %s; %d expired records of %d bytes; batches of %d\n"
      "pruned %lld rows in %zu batches, %.2f s (%.0f rows/s); batch p50 %.2f "
      "ms, p99 %.2f ms, max %.2f ms\n"
      "writes alone:        %zu, p50 %.3f ms, p99 %.3f ms, max %.2f ms\n"
      "writes while pruning: %zu, p50 %.3f ms, p99 %.3f ms, max %.2f ms\n",
      spec.c_str(), rows, absl::GetFlag(FLAGS_record_bytes),
      absl::GetFlag(FLAGS_batch_size), static_cast<long long>(pruned), b.count,
      absl::ToDoubleSeconds(prune_total),
      pruned / std::max(1e-9, absl::ToDoubleSeconds(prune_total)), b.p50_ms,
      b.p99_ms, b.max_ms, a.count, a.p50_ms, a.p99_ms, a.max_ms, d.count,
      d.p50_ms, d.p99_ms, d.max_ms);
  return 0;
}
