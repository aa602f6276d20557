#ifndef CUSTOS_COMMON_REDIS_CLIENT_H_
#define CUSTOS_COMMON_REDIS_CLIENT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

struct redisContext;

namespace custos {

struct RedisOptions {
  // host:port. Default: empty, which disables the client.
  std::string address;
  // Default: 100 ms each.
  absl::Duration connect_timeout = absl::Milliseconds(100);
  absl::Duration command_timeout = absl::Milliseconds(100);
  // Idle connections kept. Default: 8.
  int pool_size = 8;
  // While degraded, at most one call per interval tries Redis again.
  // Default: 500 ms.
  absl::Duration retry_interval = absl::Milliseconds(500);
};

// A small synchronous Redis client (hiredis) for caches: every call is
// bounded by the timeouts, and after a failure the client is "degraded":
// calls fail fast with UNAVAILABLE, without touching the network, except one
// probe per retry_interval, until a call succeeds again. State changes are
// logged. Callers treat every error as a cache miss.
// Thread-safe.
class RedisClient {
 public:
  explicit RedisClient(RedisOptions options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  bool enabled() const { return !options_.address.empty(); }

  // nullopt when the key does not exist.
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view key);
  // SET key value PX ttl.
  absl::Status SetEx(absl::string_view key, absl::string_view value,
                     absl::Duration ttl);
  absl::Status Del(absl::string_view key);
  absl::Status Ping();

  bool degraded() const;

  struct Stats {
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t errors = 0;
    int64_t fast_failures = 0;
  };
  Stats stats() const;

 private:
  struct Reply;
  // Runs one command; `argv` are binary-safe arguments.
  absl::StatusOr<Reply> Command(const std::vector<absl::string_view>& argv);
  // A pooled or new connection; nullptr when degraded and not probing.
  absl::StatusOr<redisContext*> Acquire();
  void Release(redisContext* context, bool healthy);
  void MarkFailure(const std::string& error);
  void MarkSuccess();

  const RedisOptions options_;
  std::string host_;
  int port_ = 0;

  mutable absl::Mutex mu_;
  std::vector<redisContext*> idle_ ABSL_GUARDED_BY(mu_);
  bool degraded_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_probe_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace custos

#endif  // CUSTOS_COMMON_REDIS_CLIENT_H_
