#ifndef CUSTOS_COMMON_RATE_LIMITER_H_
#define CUSTOS_COMMON_RATE_LIMITER_H_

#include <array>
#include <cstddef>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace custos {

struct RateLimiterOptions {
  // Tokens each key earns per second. <= 0 turns the limit off.
  // Default: 20 (--write_rate_per_second).
  double rate_per_second = 20;
  // Most tokens a key can save up: the writes it may make at once after
  // being idle. Values below 1 count as 1. Default: 40 (--write_burst).
  double burst = 40;
  // Keys tracked at once. A key whose bucket has refilled is forgotten first
  // (forgetting it changes nothing); when every tracked key is still
  // refilling, an arbitrary one is forgotten, which only ever lets that key
  // write sooner. Default: 100,000.
  size_t max_keys = 100000;
};

// --write_rate_per_second and --write_burst (defined in rate_limiter.cc, so
// every binary that serves RPCs has them). Call after the flags are parsed.
RateLimiterOptions RateLimiterOptionsFromFlags();

// A token bucket per key (a principal's subject): each Acquire takes one
// token; a key earns `rate_per_second` tokens a second up to `burst`. The
// limit is per process, so N replicas let a key write up to N times as fast.
// Thread-safe; Acquire takes one of a few sharded mutexes briefly.
class RateLimiter {
 public:
  // REQUIRES: `clock` outlives the limiter.
  explicit RateLimiter(RateLimiterOptions options,
                       const Clock* clock = RealClock::Get());

  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Takes a token for `key`: OK, or RESOURCE_EXHAUSTED (reason
  // WRITE_RATE_LIMITED) carrying the time until a token is available as a
  // retry delay (RetryDelayOf in common/grpc_status.h; a RetryInfo at the
  // gRPC edge). A refused call takes nothing.
  absl::Status Acquire(absl::string_view key);

  bool enabled() const { return options_.rate_per_second > 0; }
  // Keys tracked now (for tests and metrics).
  size_t TrackedKeys() const;

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time updated;
  };
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, Bucket> buckets ABSL_GUARDED_BY(mu);
    // No sweep for full buckets before this: the last one found none.
    absl::Time no_sweep_before ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  };
  static constexpr size_t kShards = 16;

  // Makes room for one more key in `shard`.
  void Evict(Shard& shard, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  double Refilled(const Bucket& bucket, absl::Time now) const;

  const RateLimiterOptions options_;
  const double burst_;
  // Time an empty bucket takes to fill: older buckets are full.
  const absl::Duration fill_time_;
  const size_t max_keys_per_shard_;
  const Clock* const clock_;
  std::array<Shard, kShards> shards_;
};

}  // namespace custos

#endif  // CUSTOS_COMMON_RATE_LIMITER_H_
