#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_ANSWER_CACHE_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_ANSWER_CACHE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/redis_client.h"
#include "custos/access/v1/access_service.pb.h"

namespace custos::access {

struct AnswerCacheOptions {
  // Bounds how long any cached answer lives, in memory and in Redis.
  // Default: 10 minutes.
  absl::Duration ttl = absl::Minutes(10);
  // Entries kept in memory before the in-memory layer starts over.
  size_t memory_entries = 100000;
  // Prefix of every Redis key; carries the store's incarnation, so nothing
  // cached for another store (or this one before it was recreated) matches.
  std::string redis_prefix;
  // Keys the MAC over every Redis key and value (the store's cache_key):
  // a value Custos did not write is a miss, never an answer.
  std::string mac_key;
};

// The versioned cache of resolved permission sets: memory first, then Redis,
// then one computation per key at a time. An entry is served only when its
// `versions` tag equals the tag the caller says is current, so an entry
// written late by a slow computation, or left from before a change, is
// never served; Redis failures only cost speed.
// Thread-safe.
class AnswerCache {
 public:
  using Answer = std::shared_ptr<const v1::ResolvePermissionsResponse>;

  // REQUIRES: `redis` (which may be disabled) and `clock` outlive the cache.
  AnswerCache(RedisClient* redis, const Clock* clock,
              AnswerCacheOptions options);

  // The memory entry for `key` when its tag is `versions`; null otherwise.
  Answer FromMemory(const std::string& key, const std::string& versions);
  // The Redis entry for `key` when authentic and tagged `versions` (kept in
  // memory too); null otherwise.
  Answer FromRedis(const std::string& key, const std::string& versions);
  // Keeps `answer` in memory and in Redis.
  void Remember(const std::string& key, const Answer& answer);
  // Runs `compute` once per key at a time (others wait for its answer) and
  // remembers a successful answer.
  absl::StatusOr<Answer> ComputeOnce(
      const std::string& key,
      const std::function<absl::StatusOr<Answer>()>& compute);

  // The bytes stored in Redis for `answer` under `redis_key` (MAC first),
  // and the inverse; exposed for tests that tamper with Redis.
  std::string Seal(const std::string& redis_key,
                   const std::string& serialized) const;
  bool Open(const std::string& redis_key, const std::string& sealed,
            std::string* serialized) const;
  std::string RedisKey(const std::string& key) const;

  // An answer was computed from the stores (by whoever asked the cache).
  void CountComputed();

  struct Stats {
    int64_t memory_hits = 0;
    int64_t redis_hits = 0;
    int64_t computed = 0;
    // Redis values refused because their MAC did not match.
    int64_t forged = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    Answer answer;
    absl::Time expires;
  };
  struct Flight;
  void RememberInMemory(const std::string& key, const Answer& answer)
      ABSL_LOCKS_EXCLUDED(mu_);

  RedisClient* const redis_;
  const Clock* const clock_;
  const AnswerCacheOptions options_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> memory_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<Flight>> flights_
      ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_ANSWER_CACHE_H_
