#ifndef CUSTOS_COMMON_OUTBOX_H_
#define CUSTOS_COMMON_OUTBOX_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/database.h"
#include "common/metrics.h"
#include "google/protobuf/message.h"

namespace custos {

// The outbox table; add both to the migrations of a service that sends.
extern const char kOutboxSchema[];
// Each destination is delivered on its own (OutboxWorker), so one peer's
// outage never holds up another's messages.
extern const char kOutboxByDestinationSchema[];
// Which replica delivers each destination now (OutboxWorker's lease).
extern const char kOutboxLeasesSchema[];
// Messages a peer refused for good (OutboxWorker), kept for operators.
extern const char kOutboxDeadLettersSchema[];
// Each message carries the trace and request id of the call that wrote it.
extern const char kOutboxTraceSchema[];

// A call to make to a peer service, written in the same transaction as the
// change it announces (DESIGN §1).
struct OutboxMessage {
  int64_t id = 0;
  std::string destination;  // e.g. "access"
  std::string method;       // full gRPC method, /pkg.Service/Method
  std::string payload;      // the serialized request
  int64_t attempts = 0;
  // The W3C traceparent of the delivery (a child span of the call that
  // wrote the message) and that call's request id; empty when written
  // outside a call. Sent along as metadata.
  std::string trace_parent;
  std::string request_id;
};

// A peer's answer that no retry can change: the message itself is refused
// (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION,
// OUT_OF_RANGE, ALREADY_EXISTS). UNAUTHENTICATED is not: a rotated or
// missing service token is fixed by the operator and the messages then
// flow. Nor is UNIMPLEMENTED: during a rolling upgrade a replica of the old
// version does not know a method the new senders call yet; the message
// waits (with backoff) until the receivers are upgraded.
bool IsPermanentRefusal(const absl::Status& status);

// A message a peer refused for good.
struct DeadLetter {
  OutboxMessage message;
  std::string error;
  absl::Time created;
  absl::Time died;
};

// The dead letters of every destination, oldest first, at most `limit`
// after id `after_id` (for paging).
absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(Database& db,
                                                        int64_t after_id,
                                                        int limit);

// Appends a message, with the current call's trace and request id
// (CurrentCall). Call inside the write transaction of the change.
absl::Status EnqueueOutbox(Connection& db, absl::string_view destination,
                           absl::string_view method,
                           const google::protobuf::Message& payload,
                           absl::Time now);

struct OutboxOptions {
  // Backoff after a failed attempt: full jitter over an exponentially growing
  // bound. Default: 100 ms doubling up to 30 s.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(30);
  // How often the background loop looks without being woken. Default: 1 s.
  absl::Duration poll_interval = absl::Seconds(1);
  // Messages read per pass. Default: 256.
  int batch_size = 256;
  // Messages handed to the peer at once (DeliverBatch), and recorded as
  // delivered in one transaction. 1 keeps strict id order; more sends them
  // concurrently, so a receiver must not depend on their order. Default: 64.
  int max_in_flight = 64;
  // How long a replica keeps a destination after its last delivery before
  // another may take it over (when the first died mid-pass). Must exceed a
  // peer call's deadline. Default: 10 s.
  absl::Duration lease = absl::Seconds(10);
  // This replica's name in the lease table. A process restarted under the
  // same name (ReplicaName: host and listen address) takes its dead
  // predecessor's lease at once instead of waiting it out. Empty: a random
  // name (a restart then waits for the lease to run out).
  std::string holder;
};

// A name for this replica that a restart keeps: the host name (a pod's
// name in Kubernetes) and the address it listens on (two replicas on one
// host listen on different ports). A listen port of 0 gets a random suffix,
// since another process may pick the same "port".
std::string ReplicaName(absl::string_view listen);

// Delivers one destination's outbox messages, at least once, until
// acknowledged (receivers are idempotent): a delivered message is deleted;
// a failed one is retried after a backoff (its attempts and last error
// recorded), unless the peer refused it for good (IsPermanentRefusal): then
// it moves to the dead letters (ListDeadLetters,
// custos_outbox_dead_letters) and the rest goes out, instead of one bad
// message blocking the rest.
// Messages are read in id order and handed to the peer up to
// `max_in_flight` at a time (concurrently, by PeerDelivery); each group's
// outcome is recorded in one transaction. A pass ends at the first group
// with a retryable failure, so a peer that is down is not hammered. On
// PostgreSQL ids follow insertion, not commit, so even with max_in_flight 1
// concurrent transactions' messages may go out in either order; no
// receiver depends on the order of unrelated changes (DESIGN §1).
// Replicas sharing a database deliver each destination one at a time: a
// pass first takes the destination's lease (renewed with every group,
// given up at the end), so no message is sent by two replicas at once; a
// replica that dies mid-pass is taken over when its lease runs out, or at
// once by its own successor (OutboxOptions::holder).
// Stop ends a pass after the group in flight (at most one peer deadline)
// and leaves the rest to the next owner.
// Thread-safe.
class OutboxWorker {
 public:
  // Delivers one message; OK means the peer acknowledged it.
  using Deliver = std::function<absl::Status(const OutboxMessage&)>;
  // Delivers a group of messages (at most max_in_flight); one status per
  // message attempted, in the group's order. A shorter answer means the
  // rest were not attempted (they stay due).
  using DeliverBatch = std::function<std::vector<absl::Status>(
      const std::vector<OutboxMessage>&)>;

  // REQUIRES: `db` and `clock` outlive the worker.
  OutboxWorker(Database* db, const Clock* clock, std::string destination,
               OutboxOptions options, DeliverBatch deliver);
  // One message at a time, in order, stopping at the first failure.
  OutboxWorker(Database* db, const Clock* clock, std::string destination,
               OutboxOptions options, Deliver deliver);
  // Stops.
  ~OutboxWorker();

  // Starts the background loop.
  void Start();
  // Makes the background loop look now.
  void Wake();
  // Ends the pass under way after its group in flight, gives up the lease
  // and joins the background loop; DeliverPending then returns UNAVAILABLE
  // at once, leaving messages to the next owner. Idempotent.
  void Stop();

  // Delivers every due message now from the caller's thread, giving up at
  // `deadline`; returns the first failure. Used right after a write so the
  // peer knows before the write is acknowledged. Returns at once while the
  // peer is backing off after a failure (the loop retries). While another
  // replica holds the lease, waits within the deadline until that replica
  // has delivered everything due (OK) or let the lease go (then delivers);
  // UNAVAILABLE when the deadline passes first.
  absl::Status DeliverPending(absl::Duration deadline);

  // Messages for this destination not yet delivered.
  absl::StatusOr<int64_t> Depth();
  // Depth, and how long the oldest undelivered message has waited (zero
  // when none).
  absl::StatusOr<std::pair<int64_t, absl::Duration>> Backlog();

  // Dead letters of this destination.
  absl::StatusOr<int64_t> DeadLetterCount();

  const std::string& destination() const { return destination_; }
  int64_t dead_lettered() const { return dead_lettered_.load(); }
  int64_t delivered() const { return delivered_.load(); }
  int64_t failed_attempts() const { return failed_.load(); }

 private:
  // One pass under the lease; OK and `*leased` false when another replica
  // holds it.
  absl::Status DeliverDue(absl::Time give_up, bool* leased = nullptr);
  struct Outlook {
    int64_t due = 0;              // messages due now
    bool held_elsewhere = false;  // another replica holds the lease
  };
  absl::StatusOr<Outlook> Look();
  absl::Status DeliverLeased(absl::Time give_up);
  // Records a delivered group's outcome (with the lease renewed) in one
  // transaction; the first retryable failure, if any, in `*failure`.
  absl::Status RecordOutcome(const std::vector<OutboxMessage>& group,
                             const std::vector<absl::Status>& results,
                             absl::Status* failure);
  bool stopping();
  // Takes or renews the destination's lease in `db`'s transaction; false
  // when another replica holds it.
  absl::StatusOr<bool> HoldLease(Connection& db);
  absl::Duration Backoff(int64_t attempts);

  Database* const db_;
  const Clock* const clock_;
  const std::string destination_;
  // This worker's name in the lease table.
  const std::string holder_;
  const OutboxOptions options_;
  const DeliverBatch deliver_;
  std::atomic<int64_t> delivered_{0};
  std::atomic<int64_t> failed_{0};
  std::atomic<int64_t> dead_lettered_{0};

  // Held for a whole pass: one deliverer at a time, so no message is sent
  // twice concurrently and order holds.
  absl::Mutex deliver_mu_;
  absl::BitGen jitter_ ABSL_GUARDED_BY(deliver_mu_);

  absl::Mutex mu_;
  // The first pass starts at once: a restarted process delivers what its
  // predecessor left without waiting a poll interval.
  bool woken_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time backing_off_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::thread loop_;
};

// custos_outbox_depth / _oldest_age_seconds / _deliveries_total for the
// workers, at every scrape.
Metrics::Collector OutboxMetrics(std::vector<OutboxWorker*> workers);

}  // namespace custos

#endif  // CUSTOS_COMMON_OUTBOX_H_
