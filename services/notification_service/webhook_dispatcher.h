#ifndef CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_DISPATCHER_H_
#define CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_DISPATCHER_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/database.h"
#include "services/notification_service/webhook_target.h"

namespace custos::notifications {

struct WebhookDispatcherOptions {
  // Attempts per delivery before it is DEAD. Default: 8.
  int max_attempts = 8;
  // Backoff after the n-th failure: full jitter over
  // min(initial_backoff * 2^(n-1), max_backoff). Default: 1 s up to 10 min.
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(10);
  // One HTTP attempt, connecting included. Default: 5 s.
  absl::Duration timeout = absl::Seconds(5);
  // Attempts in flight at once, so one slow endpoint does not hold up the
  // others. Default: 4.
  int threads = 4;
  // How often idle threads look without being woken. Default: 1 s.
  absl::Duration poll_interval = absl::Seconds(1);
  // Which addresses an attempt may connect to, checked again at every
  // attempt. Default: public addresses only.
  WebhookTargetPolicy target_policy;
};

// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the
// X-Custos-Signature header. The timestamp lets receivers refuse replays.
std::string WebhookSignature(absl::string_view secret, absl::string_view body,
                             int64_t unix_seconds);

// Delivers queued webhook deliveries (R12): POSTs the alert as JSON with
// its signature; a 2xx answer is DELIVERED; anything else is retried after
// a backoff until max_attempts, then DEAD. Each attempt leases its row, so
// a crash mid-attempt only delays it. Each attempt re-checks the URL,
// resolves its host, refuses it when an address is forbidden by
// `target_policy`, and connects only to the addresses it checked (no DNS
// rebinding), without a proxy and without following redirects (a 3xx
// fails the attempt). The recorded error is coarse ("connection failed",
// "HTTP 503", ...) so that it does not reveal the internal network.
// Thread-safe.
class WebhookDispatcher {
 public:
  // REQUIRES: `db` and `clock` outlive the dispatcher; libcurl is
  // initialized (curl_global_init) before Start().
  WebhookDispatcher(Database* db, const Clock* clock,
                    WebhookDispatcherOptions options)
      : db_(db), clock_(clock), options_(options) {}
  ~WebhookDispatcher() { Stop(); }

  void Start();
  // Something was queued: look now.
  void Wake();
  void Stop();

  // Claims and attempts one due delivery; false when none was due.
  absl::StatusOr<bool> AttemptOne();

  // Attempts since start, for metrics.
  int64_t delivered() const { return delivered_.load(); }
  int64_t failed() const { return failed_.load(); }
  int64_t dead() const { return dead_.load(); }

 private:
  void Loop();
  absl::Duration Backoff(int64_t failures);

  Database* const db_;
  const Clock* const clock_;
  const WebhookDispatcherOptions options_;
  std::atomic<int64_t> delivered_{0};
  std::atomic<int64_t> failed_{0};
  std::atomic<int64_t> dead_{0};

  absl::Mutex mu_;
  int64_t wakes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::BitGen jitter_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace custos::notifications

#endif  // CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_DISPATCHER_H_
