#ifndef CUSTOS_SERVICES_NOTIFICATION_SERVICE_INBOX_STREAM_H_
#define CUSTOS_SERVICES_NOTIFICATION_SERVICE_INBOX_STREAM_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/call_context.h"
#include "common/database.h"
#include "common/stream_quota.h"
#include "custos/notifications/v1/notifications_service.grpc.pb.h"
#include "grpcpp/support/server_callback.h"

namespace custos::notifications {

class InboxStream;

// Who is streaming which inbox. Writers call Arrived() after committing
// inbox rows; every stream of those users then reads what is new. A timer
// also pokes every stream each `poll_interval`, so rows written by another
// replica arrive too, just later. Each caller may hold
// `max_streams_per_user` streams at once (quota(), taken before the stream
// reads anything).
// Thread-safe.
class InboxHub {
 public:
  // `max_streams_per_user`: by default --max_streams_per_user; 0 = no cap.
  explicit InboxHub(absl::Duration poll_interval = absl::Seconds(1),
                    int max_streams_per_user = MaxStreamsPerUserFlag());
  ~InboxHub();

  // Live streams per caller; a stream holds its lease until OnDone.
  StreamQuota* quota() { return &quota_; }

  void Arrived(const std::vector<std::string>& user_ids);
  void Add(const std::string& user_id, std::shared_ptr<InboxStream> stream);
  void Remove(const std::string& user_id, InboxStream* stream);
  // Stops the timer and ends every stream (for shutdown). Idempotent.
  void Shutdown();

 private:
  StreamQuota quota_;
  absl::Mutex mu_;
  // Never calls into a stream while holding mu_: a stream's reactions may
  // run inline and remove themselves.
  std::vector<std::shared_ptr<InboxStream>> Streams(
      const std::vector<std::string>* user_ids);

  absl::flat_hash_map<
      std::string,
      absl::flat_hash_map<InboxStream*, std::shared_ptr<InboxStream>>>
      streams_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread timer_;
};

// One StreamNotifications call: sends the inbox's rows after its cursor,
// oldest first, one write at a time, and waits for more. Shared by the hub
// and itself; the last owner frees it once gRPC is done with it. Reactor
// operations (StartWrite, Finish) are never called with mu_ held, since
// their reactions may run inline.
class InboxStream final
    : public grpc::ServerWriteReactor<v1::StreamNotificationsResponse> {
 public:
  // `on_done(status)` is called once, for logging. `lease`: the caller's
  // share of hub->quota(), given back when the stream is done.
  InboxStream(Database* db, InboxHub* hub, std::string user_id, int64_t cursor,
              std::function<void(const grpc::Status&)> on_done,
              StreamQuota::Lease lease);

  // Registers with the hub and sends what was missed since the cursor.
  // Returns the reactor to hand to gRPC.
  static InboxStream* Start(std::shared_ptr<InboxStream> stream);

  // New rows may exist: read and send them.
  void Poke();
  // Ends the stream (server shutdown).
  void End();

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void RequestFinish(const grpc::Status& status);

  Database* const db_;
  InboxHub* const hub_;
  const std::string user_id_;
  const std::function<void(const grpc::Status&)> on_done_;
  // Touched only by the constructor and OnDone.
  StreamQuota::Lease lease_;

  absl::Mutex mu_;
  int64_t cursor_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::StreamNotificationsResponse> queue_ ABSL_GUARDED_BY(mu_);
  v1::StreamNotificationsResponse in_flight_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool more_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_sent_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  grpc::Status done_status_;
  // Keeps this alive until gRPC calls OnDone.
  std::shared_ptr<InboxStream> self_;
};

}  // namespace custos::notifications

#endif  // CUSTOS_SERVICES_NOTIFICATION_SERVICE_INBOX_STREAM_H_
