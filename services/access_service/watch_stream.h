#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_WATCH_STREAM_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_WATCH_STREAM_H_

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "custos/access/v1/access_service.grpc.pb.h"
#include "grpcpp/support/server_callback.h"
#include "services/access_service/permission_change_log.h"

namespace custos::access {

class WatchStream;

// The live WatchPermissionChanges calls: a timer pokes each one every
// `poll_interval` to read what is new (the log is written by every replica,
// so reading it is how a stream hears of all of them).
// Thread-safe.
class WatchHub {
 public:
  WatchHub(PermissionChangeLog* log, absl::Duration poll_interval,
           int max_streams);
  ~WatchHub();

  PermissionChangeLog* log() { return log_; }
  // False when `max_streams` are live already, or after Shutdown.
  bool Add(std::shared_ptr<WatchStream> stream);
  void Remove(WatchStream* stream);
  // Stops the timer and ends every stream (for shutdown). Idempotent.
  void Shutdown();

 private:
  std::vector<std::shared_ptr<WatchStream>> Streams();

  PermissionChangeLog* const log_;
  const int max_streams_;
  absl::Mutex mu_;
  absl::flat_hash_map<WatchStream*, std::shared_ptr<WatchStream>> streams_
      ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification stop_;
  std::thread timer_;
};

// One WatchPermissionChanges call: sends a first response with the resume
// token it starts from, then each batch of changes after it, one write at a
// time. Ends with OUT_OF_RANGE when its position cannot be continued, and
// UNAVAILABLE on shutdown (reconnect with the last resume token). Reactor
// operations are never called with mu_ held: their reactions may run inline.
class WatchStream final
    : public grpc::ServerWriteReactor<v1::WatchPermissionChangesResponse> {
 public:
  // `on_done(status)` is called once, for logging.
  WatchStream(WatchHub* hub, WatchPosition from,
              std::function<void(const grpc::Status&)> on_done);

  // Registers with the hub (or finishes RESOURCE_EXHAUSTED) and sends the
  // first response. Returns the reactor to hand to gRPC.
  static WatchStream* Start(std::shared_ptr<WatchStream> stream);

  // New changes may exist: read and send them.
  void Poke();
  // Ends the stream (server shutdown).
  void End();

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void RequestFinish(const grpc::Status& status);

  WatchHub* const hub_;
  const std::function<void(const grpc::Status&)> on_done_;

  absl::Mutex mu_;
  WatchPosition position_ ABSL_GUARDED_BY(mu_);
  v1::WatchPermissionChangesResponse in_flight_ ABSL_GUARDED_BY(mu_);
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool more_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_sent_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  // Keeps this alive until gRPC calls OnDone.
  std::shared_ptr<WatchStream> self_;
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_WATCH_STREAM_H_
