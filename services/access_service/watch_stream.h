#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_WATCH_STREAM_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_WATCH_STREAM_H_

#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/stream_quota.h"
#include "custos/access/v1/access_service.grpc.pb.h"
#include "grpcpp/support/server_callback.h"
#include "services/access_service/permission_change_log.h"

namespace custos::access {

class WatchStream;

// The live WatchPermissionChanges calls. One thread of its own does every
// read for every stream — the Watch log in the store and the customer feed
// over the network — each `poll_interval` (the log is written by every
// replica, so reading it is how a stream hears of all of them) and at once
// when a stream finished a write and has more to send: no read ever blocks
// one of gRPC's threads. Two caps bound the streams: `max_streams` on this
// replica (Add) and `max_streams_per_user` per caller (quota(), taken before
// the stream reads anything).
// Thread-safe.
class WatchHub {
 public:
  // `max_streams_per_user`: by default --max_streams_per_user; 0 = no cap.
  WatchHub(PermissionChangeLog* log, absl::Duration poll_interval,
           int max_streams, int max_streams_per_user = MaxStreamsPerUserFlag());
  ~WatchHub();

  PermissionChangeLog* log() { return log_; }
  // Live streams per caller; a stream holds its lease until OnDone.
  StreamQuota* quota() { return &quota_; }
  // False when `max_streams` are live already, or after Shutdown.
  bool Add(std::shared_ptr<WatchStream> stream);
  void Remove(WatchStream* stream);
  // Reads for every stream now rather than at the next interval.
  void Wake();
  // Stops the thread and ends every stream (for shutdown). Idempotent.
  void Shutdown();

 private:
  std::vector<std::shared_ptr<WatchStream>> Streams();

  PermissionChangeLog* const log_;
  const int max_streams_;
  StreamQuota quota_;
  absl::Mutex mu_;
  absl::flat_hash_map<WatchStream*, std::shared_ptr<WatchStream>> streams_
      ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex wake_mu_;
  bool wake_ ABSL_GUARDED_BY(wake_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(wake_mu_) = false;
  std::thread thread_;
};

// One WatchPermissionChanges call: checks where it starts (the head for no
// token; OUT_OF_RANGE for a token that cannot be continued), sends a first
// response with that resume token, then each batch of changes after it,
// one write at a time. Ends UNAVAILABLE on shutdown (reconnect with the
// last resume token). Reactor operations are never called with mu_ held:
// their reactions may run inline.
class WatchStream final
    : public grpc::ServerWriteReactor<v1::WatchPermissionChangesResponse> {
 public:
  // `from`: the resume token's position, or nullopt for the head.
  // `on_done(status)` is called once, for logging. `lease`: the caller's
  // share of hub->quota(), given back when the stream is done.
  WatchStream(WatchHub* hub, std::optional<WatchPosition> from,
              std::function<void(const grpc::Status&)> on_done,
              StreamQuota::Lease lease);

  // Registers with the hub (or finishes RESOURCE_EXHAUSTED) and has it read.
  // Returns the reactor to hand to gRPC.
  static WatchStream* Start(std::shared_ptr<WatchStream> stream);

  // Called on the hub's thread: starts the stream, or reads and sends what
  // is new, unless a write is in flight.
  void Poke();
  // Ends the stream (server shutdown).
  void End();

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // The first response, or the next batch; nullopt when there is nothing to
  // send now. Errors end the stream, except a peer being down.
  absl::StatusOr<std::optional<v1::WatchPermissionChangesResponse>> Read(
      bool started, const std::optional<WatchPosition>& from);
  void RequestFinish(const grpc::Status& status);

  WatchHub* const hub_;
  const std::function<void(const grpc::Status&)> on_done_;
  // Touched only by the constructor and OnDone.
  StreamQuota::Lease lease_;

  absl::Mutex mu_;
  // nullopt until started from the head.
  std::optional<WatchPosition> position_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  v1::WatchPermissionChangesResponse in_flight_ ABSL_GUARDED_BY(mu_);
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  // A write is in flight, or the hub's thread is reading for this stream.
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool more_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_sent_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  // Keeps this alive until gRPC calls OnDone.
  std::shared_ptr<WatchStream> self_;
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_WATCH_STREAM_H_
