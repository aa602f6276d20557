#include "common/outbox.h"

#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/backoff.h"
#include "common/ids.h"
#include "common/json_log.h"
#include "common/status_macros.h"
#include "common/trace_context.h"

namespace custos {

const char kOutboxSchema[] = R"sql(
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  destination TEXT NOT NULL,
  method TEXT NOT NULL,
  payload BLOB NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_micros INTEGER NOT NULL,
  last_error TEXT,
  create_micros INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox(next_attempt_micros, id);
)sql";

const char kOutboxByDestinationSchema[] = R"sql(
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox(destination, next_attempt_micros, id);
)sql";

const char kOutboxLeasesSchema[] = R"sql(
CREATE TABLE outbox_leases (
  destination TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expire_micros INTEGER NOT NULL
);
)sql";

const char kOutboxDeadLettersSchema[] = R"sql(
CREATE TABLE outbox_dead_letters (
  id INTEGER PRIMARY KEY,
  destination TEXT NOT NULL,
  method TEXT NOT NULL,
  payload BLOB NOT NULL,
  attempts INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  create_micros INTEGER NOT NULL,
  dead_micros INTEGER NOT NULL
);
)sql";

const char kOutboxTraceSchema[] = R"sql(
ALTER TABLE outbox ADD COLUMN trace_parent TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
)sql";

bool IsPermanentRefusal(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists:
      return true;
    default:
      return false;
  }
}

absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(Database& database,
                                                        int64_t after_id,
                                                        int limit) {
  std::vector<DeadLetter> letters;
  RETURN_IF_ERROR(database.Read([&](Connection& db) -> absl::Status {
    letters.clear();
    ASSIGN_OR_RETURN(
        Statement select,
        db.Prepare("SELECT id, destination, method, payload, attempts, "
                   "last_error, create_micros, dead_micros FROM "
                   "outbox_dead_letters WHERE id > ?1 ORDER BY id LIMIT ?2"));
    select.Bind(1, after_id).Bind(2, limit);
    while (true) {
      ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) return absl::OkStatus();
      letters.push_back(DeadLetter{
          OutboxMessage{select.ColumnInt64(0), select.ColumnText(1),
                        select.ColumnText(2), select.ColumnText(3),
                        select.ColumnInt64(4)},
          select.ColumnText(5), absl::FromUnixMicros(select.ColumnInt64(6)),
          absl::FromUnixMicros(select.ColumnInt64(7))});
    }
  }));
  return letters;
}

absl::Status EnqueueOutbox(Connection& db, absl::string_view destination,
                           absl::string_view method,
                           const google::protobuf::Message& payload,
                           absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO outbox(destination, method, payload, "
                 "next_attempt_micros, create_micros, trace_parent, "
                 "request_id) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)"));
  const PropagatedCall call = PropagateCurrentCall();
  return insert.Bind(1, destination)
      .Bind(2, method)
      .BindBlob(3, payload.SerializeAsString())
      .Bind(4, absl::ToUnixMicros(now))
      .Bind(5, call.traceparent)
      .Bind(6, call.request_id)
      .Run();
}

std::string ReplicaName(absl::string_view listen) {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  std::string name = absl::StrCat(host, "/", listen);
  if (absl::EndsWith(listen, ":0")) {
    absl::StrAppend(&name, "/", RandomIdGenerator().NewId());
  }
  return name;
}

OutboxWorker::OutboxWorker(Database* db, const Clock* clock,
                           std::string destination, OutboxOptions options,
                           DeliverBatch deliver)
    : db_(db),
      clock_(clock),
      destination_(std::move(destination)),
      holder_(options.holder.empty() ? RandomIdGenerator().NewId()
                                     : options.holder),
      options_(options),
      deliver_(std::move(deliver)) {}

OutboxWorker::OutboxWorker(Database* db, const Clock* clock,
                           std::string destination, OutboxOptions options,
                           Deliver deliver)
    : OutboxWorker(
          db, clock, std::move(destination), options,
          [deliver =
               std::move(deliver)](const std::vector<OutboxMessage>& group) {
            std::vector<absl::Status> results;
            for (const OutboxMessage& message : group) {
              results.push_back(deliver(message));
              if (!results.back().ok() && !IsPermanentRefusal(results.back())) {
                break;
              }
            }
            return results;
          }) {}

OutboxWorker::~OutboxWorker() { Stop(); }

void OutboxWorker::Start() {
  loop_ = std::thread([this] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return woken_ || stopping_;
        };
        mu_.AwaitWithTimeout(absl::Condition(&ready), options_.poll_interval);
        if (stopping_) return;
        woken_ = false;
      }
      absl::Status status = DeliverDue(absl::InfiniteFuture());
      (void)status;  // recorded per message; retried on the next pass
    }
  });
}

void OutboxWorker::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void OutboxWorker::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (loop_.joinable()) loop_.join();
}

bool OutboxWorker::stopping() {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

absl::Status OutboxWorker::DeliverPending(absl::Duration deadline) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the outbox is stopping");
    if (clock_->Now() < backing_off_until_) {
      return absl::UnavailableError("peer is backing off after a failure");
    }
  }
  const absl::Time give_up = clock_->Now() + deadline;
  // Waiting for another replica's lease takes real time, whatever clock_
  // says.
  const absl::Time stop_waiting = absl::Now() + deadline;
  while (true) {
    bool leased = false;
    RETURN_IF_ERROR(DeliverDue(give_up, &leased));
    if (leased) return absl::OkStatus();
    // Another replica's pass is under way and will most likely carry the
    // message: watch (reading only, so as not to contend with its lease
    // renewals) until nothing is due or the lease is free.
    while (true) {
      if (absl::Now() >= stop_waiting || stopping()) {
        return absl::UnavailableError("another replica holds the outbox lease");
      }
      absl::SleepFor(absl::Milliseconds(5));
      ASSIGN_OR_RETURN(Outlook outlook, Look());
      if (outlook.due == 0) return absl::OkStatus();
      if (!outlook.held_elsewhere) break;
    }
  }
}

absl::StatusOr<OutboxWorker::Outlook> OutboxWorker::Look() {
  Outlook outlook;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(
        Statement look,
        db.Prepare("SELECT (SELECT COUNT(*) FROM outbox WHERE destination = ?1 "
                   "AND next_attempt_micros <= ?2), (SELECT COUNT(*) FROM "
                   "outbox_leases WHERE destination = ?1 AND holder <> ?3 AND "
                   "expire_micros > ?2)"));
    ASSIGN_OR_RETURN(bool row, look.Bind(1, destination_)
                                   .Bind(2, absl::ToUnixMicros(clock_->Now()))
                                   .Bind(3, holder_)
                                   .Step());
    if (row) {
      outlook.due = look.ColumnInt64(0);
      outlook.held_elsewhere = look.ColumnInt64(1) > 0;
    }
    return absl::OkStatus();
  }));
  return outlook;
}

absl::StatusOr<bool> OutboxWorker::HoldLease(Connection& db) {
  ASSIGN_OR_RETURN(
      Statement hold,
      db.Prepare("INSERT INTO outbox_leases(destination, holder, "
                 "expire_micros) VALUES (?1, ?2, ?3) ON CONFLICT(destination) "
                 "DO UPDATE SET holder = excluded.holder, expire_micros = "
                 "excluded.expire_micros WHERE outbox_leases.holder = "
                 "excluded.holder OR outbox_leases.expire_micros <= ?4"));
  const absl::Time now = clock_->Now();
  RETURN_IF_ERROR(hold.Bind(1, destination_)
                      .Bind(2, holder_)
                      .Bind(3, absl::ToUnixMicros(now + options_.lease))
                      .Bind(4, absl::ToUnixMicros(now))
                      .Run());
  return db.Changes() > 0;
}

absl::Duration OutboxWorker::Backoff(int64_t attempts) {
  return FullJitterBackoff(jitter_, options_.initial_backoff,
                           options_.max_backoff, attempts);
}

absl::Status OutboxWorker::DeliverDue(absl::Time give_up, bool* leased) {
  absl::MutexLock deliver_lock(&deliver_mu_);
  // Looked at first by reading, so that idle replicas write nothing.
  ASSIGN_OR_RETURN(Outlook outlook, Look());
  if (leased != nullptr) *leased = !outlook.held_elsewhere;
  if (outlook.due == 0 || outlook.held_elsewhere) return absl::OkStatus();
  bool held = false;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(held, HoldLease(db));
    return absl::OkStatus();
  }));
  if (leased != nullptr) *leased = held;
  if (!held) return absl::OkStatus();
  absl::Status status = DeliverLeased(give_up);
  // Given up at once, so that another replica's DeliverPending need not
  // wait for it to run out.
  absl::Status released = db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(Statement release,
                     db.Prepare("UPDATE outbox_leases SET expire_micros = 0 "
                                "WHERE destination = ?1 AND holder = ?2"));
    return release.Bind(1, destination_).Bind(2, holder_).Run();
  });
  return status.ok() ? released : status;
}

absl::Status OutboxWorker::DeliverLeased(absl::Time give_up) {
  const size_t group_size =
      static_cast<size_t>(std::max(1, options_.max_in_flight));
  while (clock_->Now() < give_up) {
    if (stopping()) return absl::UnavailableError("the outbox is stopping");
    std::vector<OutboxMessage> due;
    RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
      due.clear();
      ASSIGN_OR_RETURN(
          Statement select,
          db.Prepare("SELECT id, destination, method, payload, attempts, "
                     "trace_parent, request_id FROM outbox WHERE destination "
                     "= ?1 AND next_attempt_micros <= ?2 ORDER BY id LIMIT "
                     "?3"));
      select.Bind(1, destination_)
          .Bind(2, absl::ToUnixMicros(clock_->Now()))
          .Bind(3, options_.batch_size);
      while (true) {
        ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        due.push_back(OutboxMessage{select.ColumnInt64(0), select.ColumnText(1),
                                    select.ColumnText(2), select.ColumnText(3),
                                    select.ColumnInt64(4), select.ColumnText(5),
                                    select.ColumnText(6)});
      }
      return absl::OkStatus();
    }));
    if (due.empty()) return absl::OkStatus();
    for (size_t first = 0; first < due.size(); first += group_size) {
      if (clock_->Now() >= give_up) {
        return absl::DeadlineExceededError("outbox delivery deadline");
      }
      if (stopping()) return absl::UnavailableError("the outbox is stopping");
      std::vector<OutboxMessage> group(
          due.begin() + first,
          due.begin() + std::min(due.size(), first + group_size));
      std::vector<absl::Status> results = deliver_(group);
      results.resize(std::min(results.size(), group.size()));
      absl::Status failure;
      RETURN_IF_ERROR(RecordOutcome(group, results, &failure));
      if (!failure.ok()) return failure;
      if (results.size() < group.size()) {
        return absl::UnavailableError("the peer took part of a group");
      }
    }
  }
  return absl::DeadlineExceededError("outbox delivery deadline");
}

absl::Status OutboxWorker::RecordOutcome(
    const std::vector<OutboxMessage>& group,
    const std::vector<absl::Status>& results, absl::Status* failure) {
  int64_t delivered = 0;
  int64_t refused = 0;
  int64_t failed = 0;
  absl::Time retry_at = absl::InfinitePast();
  const OutboxMessage* first_failed = nullptr;
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].ok()) {
      ++delivered;
    } else if (IsPermanentRefusal(results[i])) {
      ++refused;
    } else {
      ++failed;
      if (first_failed == nullptr) {
        first_failed = &group[i];
        *failure = results[i];
      }
    }
  }
  // (Called under deliver_mu_, which guards the jitter.)
  if (failed > 0)
    retry_at = clock_->Now() + Backoff(first_failed->attempts + 1);
  // One transaction for the whole group, the lease renewed with it: each
  // message ends in exactly one place (gone, dead-lettered or retried). A
  // lease lost (this replica stalled past it) ends the pass, and the new
  // holder carries on.
  bool still_held = false;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(Statement remove,
                     db.Prepare("DELETE FROM outbox WHERE id = ?"));
    ASSIGN_OR_RETURN(
        Statement move,
        db.Prepare("INSERT INTO outbox_dead_letters(id, destination, "
                   "method, payload, attempts, last_error, "
                   "create_micros, dead_micros) SELECT id, destination, "
                   "method, payload, attempts + 1, ?2, create_micros, ?3 "
                   "FROM outbox WHERE id = ?1"));
    ASSIGN_OR_RETURN(
        Statement retry,
        db.Prepare("UPDATE outbox SET attempts = attempts + 1, "
                   "next_attempt_micros = ?2, last_error = ?3 WHERE id = ?1"));
    const int64_t now = absl::ToUnixMicros(clock_->Now());
    for (size_t i = 0; i < results.size(); ++i) {
      const int64_t id = group[i].id;
      remove.Reset();
      move.Reset();
      retry.Reset();
      if (results[i].ok()) {
        RETURN_IF_ERROR(remove.Bind(1, id).Run());
      } else if (IsPermanentRefusal(results[i])) {
        RETURN_IF_ERROR(
            move.Bind(1, id).Bind(2, results[i].ToString()).Bind(3, now).Run());
        remove.Reset();
        RETURN_IF_ERROR(remove.Bind(1, id).Run());
      } else {
        RETURN_IF_ERROR(retry.Bind(1, id)
                            .Bind(2, absl::ToUnixMicros(retry_at))
                            .Bind(3, results[i].ToString())
                            .Run());
      }
    }
    ASSIGN_OR_RETURN(still_held, HoldLease(db));
    return absl::OkStatus();
  }));
  delivered_.fetch_add(delivered);
  failed_.fetch_add(failed);
  dead_lettered_.fetch_add(refused);
  for (size_t i = 0; i < results.size(); ++i) {
    if (IsPermanentRefusal(results[i])) {
      Log("error", "outbox message refused by the peer; dead-lettered",
          {{"destination", group[i].destination},
           {"method", group[i].method},
           {"outbox_id", absl::StrCat(group[i].id)},
           {"error", results[i].ToString()}});
    }
  }
  if (first_failed != nullptr) {
    {
      absl::MutexLock lock(&mu_);
      backing_off_until_ = retry_at;
    }
    if (first_failed->attempts == 0) {
      Log("warning", "outbox delivery failed; will retry",
          {{"destination", first_failed->destination},
           {"method", first_failed->method},
           {"error", failure->ToString()}});
    }
  }
  if (!still_held) return absl::AbortedError("outbox lease lost");
  return absl::OkStatus();
}

absl::StatusOr<int64_t> OutboxWorker::Depth() {
  int64_t depth = 0;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(Statement count,
                     db.Prepare("SELECT COUNT(*) FROM outbox WHERE "
                                "destination = ?"));
    count.Bind(1, destination_);
    ASSIGN_OR_RETURN(bool row, count.Step());
    if (row) depth = count.ColumnInt64(0);
    return absl::OkStatus();
  }));
  return depth;
}

absl::StatusOr<int64_t> OutboxWorker::DeadLetterCount() {
  int64_t count = 0;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(Statement select,
                     db.Prepare("SELECT COUNT(*) FROM outbox_dead_letters "
                                "WHERE destination = ?"));
    select.Bind(1, destination_);
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (row) count = select.ColumnInt64(0);
    return absl::OkStatus();
  }));
  return count;
}

absl::StatusOr<std::pair<int64_t, absl::Duration>> OutboxWorker::Backlog() {
  std::pair<int64_t, absl::Duration> backlog{0, absl::ZeroDuration()};
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(Statement select,
                     db.Prepare("SELECT COUNT(*), MIN(create_micros) FROM "
                                "outbox WHERE destination = ?"));
    select.Bind(1, destination_);
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (row && select.ColumnInt64(0) > 0) {
      backlog.first = select.ColumnInt64(0);
      backlog.second =
          clock_->Now() - absl::FromUnixMicros(select.ColumnInt64(1));
    }
    return absl::OkStatus();
  }));
  return backlog;
}

Metrics::Collector OutboxMetrics(std::vector<OutboxWorker*> workers) {
  return [workers](MetricsText& out) {
    std::vector<std::pair<int64_t, absl::Duration>> backlogs;
    for (OutboxWorker* worker : workers) {
      backlogs.push_back(
          worker->Backlog().value_or(std::make_pair(-1, absl::ZeroDuration())));
    }
    out.Family("custos_outbox_depth", "gauge",
               "Outbox messages not yet acknowledged by the peer (-1: the "
               "store could not be read).");
    for (size_t i = 0; i < workers.size(); ++i) {
      out.Sample("custos_outbox_depth",
                 {{"destination", workers[i]->destination()}},
                 static_cast<double>(backlogs[i].first));
    }
    out.Family("custos_outbox_oldest_age_seconds", "gauge",
               "How long the oldest unacknowledged outbox message has waited.");
    for (size_t i = 0; i < workers.size(); ++i) {
      out.Sample("custos_outbox_oldest_age_seconds",
                 {{"destination", workers[i]->destination()}},
                 absl::ToDoubleSeconds(backlogs[i].second));
    }
    out.Family("custos_outbox_deliveries_total", "counter",
               "Outbox delivery attempts, by result.");
    for (OutboxWorker* worker : workers) {
      out.Sample("custos_outbox_deliveries_total",
                 {{"destination", worker->destination()}, {"result", "ok"}},
                 static_cast<double>(worker->delivered()));
      out.Sample("custos_outbox_deliveries_total",
                 {{"destination", worker->destination()}, {"result", "failed"}},
                 static_cast<double>(worker->failed_attempts()));
      out.Sample(
          "custos_outbox_deliveries_total",
          {{"destination", worker->destination()}, {"result", "dead_letter"}},
          static_cast<double>(worker->dead_lettered()));
    }
    // From the store, so every replica reports the same count.
    out.Family("custos_outbox_dead_letters", "gauge",
               "Outbox messages a peer refused for good, kept for an "
               "operator (tools/outbox-dead-letters lists them; -1: the "
               "store could not be read).");
    for (OutboxWorker* worker : workers) {
      out.Sample("custos_outbox_dead_letters",
                 {{"destination", worker->destination()}},
                 static_cast<double>(worker->DeadLetterCount().value_or(-1)));
    }
  };
}

}  // namespace custos
