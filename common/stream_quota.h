#ifndef CUSTOS_COMMON_STREAM_QUOTA_H_
#define CUSTOS_COMMON_STREAM_QUOTA_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/auth.h"

namespace custos {

// --max_streams_per_user (defined in stream_quota.cc). Default: 5; 0 = no
// cap. Call after the flags are parsed.
int MaxStreamsPerUserFlag();

// How many live streams each principal (token subject) holds, capped. Only
// subjects with a live stream are tracked, so memory is bounded by the
// streams themselves. Per process: the cap is per replica.
// Thread-safe.
class StreamQuota {
 public:
  // One live stream's share of the quota; gives it back when destroyed (or
  // by Release). Move-only. REQUIRES: the quota outlives its leases.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { Release(); }

    // Gives the stream back now. Idempotent.
    void Release();

   private:
    friend class StreamQuota;
    Lease(StreamQuota* quota, std::string subject)
        : quota_(quota), subject_(std::move(subject)) {}

    StreamQuota* quota_ = nullptr;
    std::string subject_;
  };

  // `max_per_subject` <= 0: no cap (counts are kept all the same).
  // `method` names the stream in the refusal, e.g. "StreamNotifications".
  StreamQuota(int max_per_subject, std::string method);

  StreamQuota(const StreamQuota&) = delete;
  StreamQuota& operator=(const StreamQuota&) = delete;

  // A lease for one more stream of `subject`, or RESOURCE_EXHAUSTED (reason
  // TOO_MANY_STREAMS) naming the cap when `subject` holds that many already.
  absl::StatusOr<Lease> Acquire(absl::string_view subject);
  // Acquire for the caller's subject; callers with role `service` (backends
  // sharing the service token across many pods, as the write limit exempts
  // them too) get an empty lease and are not capped.
  absl::StatusOr<Lease> Acquire(const Principal& principal);

  // The primitives under Acquire and Lease, for callers that keep the count
  // themselves: TryAcquire counts one more stream unless at the cap;
  // Release gives one back. REQUIRES for Release: a successful TryAcquire
  // for `subject` not yet released.
  bool TryAcquire(absl::string_view subject);
  void Release(absl::string_view subject);

  // Live streams of `subject`.
  int Count(absl::string_view subject) const;
  int max_per_subject() const { return max_per_subject_; }

 private:
  const int max_per_subject_;
  const std::string method_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> live_ ABSL_GUARDED_BY(mu_);
};

}  // namespace custos

#endif  // CUSTOS_COMMON_STREAM_QUOTA_H_
