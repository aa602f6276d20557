#ifndef CUSTOS_SERVICES_NOTIFICATION_SERVICE_BROADCAST_FANOUT_H_
#define CUSTOS_SERVICES_NOTIFICATION_SERVICE_BROADCAST_FANOUT_H_

#include <atomic>
#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/database.h"
#include "services/notification_service/inbox_stream.h"
#include "services/notification_service/routing_source.h"

namespace custos::notifications {

struct BroadcastFanoutOptions {
  // Recipients fetched and delivered per transaction. Default: 5000.
  int page_size = 5000;
  // Pause after CustomerManagementService failed to answer. Default: 1 s.
  absl::Duration retry_after = absl::Seconds(1);
};

// Delivers recorded broadcasts (R11) to every recipient, one page per
// transaction; the page cursor commits with the page's inbox rows, and inbox
// rows are unique per (user, alert), so after a crash the fan-out resumes
// and every recipient ends up with the broadcast exactly once.
// Thread-safe.
class BroadcastFanout {
 public:
  // REQUIRES: all outlive this object.
  // `hub` (may be null) hears of every page delivered.
  BroadcastFanout(Database* db, RoutingSource* recipients, InboxHub* hub,
                  const Clock* clock, BroadcastFanoutOptions options)
      : db_(db),
        recipients_(recipients),
        hub_(hub),
        clock_(clock),
        options_(options) {}
  ~BroadcastFanout() { Stop(); }

  // Starts the background loop (it resumes unfinished fan-outs at once).
  void Start();
  // Makes the loop look now (a broadcast was recorded).
  void Wake();
  void Stop();

  // Runs every unfinished fan-out to completion or to the first failure.
  absl::Status RunOnce();

  // Progress, for metrics: recipients handled since start (repeats after a
  // crash included) and fan-outs not yet finished when last looked at.
  int64_t recipients_delivered() const { return delivered_.load(); }
  int64_t fanouts_pending() const { return pending_.load(); }

 private:
  Database* const db_;
  RoutingSource* const recipients_;
  InboxHub* const hub_;
  const Clock* const clock_;
  const BroadcastFanoutOptions options_;
  std::atomic<int64_t> delivered_{0};
  std::atomic<int64_t> pending_{0};

  absl::Mutex mu_;
  bool woken_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread loop_;
};

}  // namespace custos::notifications

#endif  // CUSTOS_SERVICES_NOTIFICATION_SERVICE_BROADCAST_FANOUT_H_
