#include "common/rate_limiter.h"

#include <algorithm>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_format.h"
#include "common/grpc_status.h"

ABSL_FLAG(double, write_rate_per_second, 20,
          "writes a second each caller (token `sub`) may make on this "
          "replica; callers with role `service` are exempt; 0 = no limit");
ABSL_FLAG(double, write_burst, 40,
          "writes a caller may make at once after being idle");

namespace custos {

RateLimiterOptions RateLimiterOptionsFromFlags() {
  RateLimiterOptions options;
  options.rate_per_second = absl::GetFlag(FLAGS_write_rate_per_second);
  options.burst = absl::GetFlag(FLAGS_write_burst);
  return options;
}

RateLimiter::RateLimiter(RateLimiterOptions options, const Clock* clock)
    : options_(options),
      burst_(std::max(1.0, options.burst)),
      fill_time_(options.rate_per_second > 0
                     ? absl::Seconds(burst_ / options.rate_per_second)
                     : absl::ZeroDuration()),
      max_keys_per_shard_(std::max<size_t>(1, options.max_keys / kShards)),
      clock_(clock) {}

double RateLimiter::Refilled(const Bucket& bucket, absl::Time now) const {
  // A clock stepping back earns nothing rather than taking tokens away.
  const double elapsed =
      std::max(0.0, absl::ToDoubleSeconds(now - bucket.updated));
  return std::min(burst_, bucket.tokens + elapsed * options_.rate_per_second);
}

void RateLimiter::Evict(Shard& shard, absl::Time now) {
  if (now >= shard.no_sweep_before) {
    auto& buckets = shard.buckets;
    for (auto it = buckets.begin(); it != buckets.end();) {
      // A full bucket is what a new key gets: forgetting it changes nothing.
      if (Refilled(it->second, now) >= burst_) {
        buckets.erase(it++);
      } else {
        ++it;
      }
    }
    if (buckets.size() < max_keys_per_shard_) return;
    // Every key is busy; none fills sooner than this, so do not scan again
    // for each new key.
    shard.no_sweep_before = now + std::min(fill_time_, absl::Seconds(1));
  }
  shard.buckets.erase(shard.buckets.begin());
}

absl::Status RateLimiter::Acquire(absl::string_view key) {
  if (!enabled()) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  Shard& shard = shards_[absl::Hash<absl::string_view>{}(key) % kShards];
  absl::MutexLock lock(&shard.mu);
  auto it = shard.buckets.find(key);
  if (it == shard.buckets.end()) {
    if (shard.buckets.size() >= max_keys_per_shard_) Evict(shard, now);
    it = shard.buckets.emplace(std::string(key), Bucket{burst_, now}).first;
  }
  Bucket& bucket = it->second;
  bucket.tokens = Refilled(bucket, now);
  bucket.updated = now;
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return absl::OkStatus();
  }
  // Whole milliseconds, at least one: a client sleeping for it finds a token.
  const absl::Duration delay = std::max(
      absl::Milliseconds(1),
      absl::Ceil(absl::Seconds((1 - bucket.tokens) / options_.rate_per_second),
                 absl::Milliseconds(1)));
  return WithRetryDelay(
      WithReason(
          absl::ResourceExhaustedError(absl::StrFormat(
              "too many writes: at most %g a second per caller, %g at "
              "once; retry in %s",
              options_.rate_per_second, burst_, absl::FormatDuration(delay))),
          "WRITE_RATE_LIMITED"),
      delay);
}

size_t RateLimiter::TrackedKeys() const {
  size_t total = 0;
  for (const Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    total += shard.buckets.size();
  }
  return total;
}

}  // namespace custos
