#include "common/redis_client.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/json_log.h"

namespace custos {
struct RedisClient::Reply {
  int type = 0;
  std::string str;
  bool nil = false;
};

RedisClient::RedisClient(RedisOptions options) : options_(std::move(options)) {
  if (!enabled()) return;
  const size_t colon = options_.address.rfind(':');
  host_ = options_.address.substr(0, colon);
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(options_.address.substr(colon + 1), &port_)) {
    host_ = options_.address;
    port_ = 6379;
  }
}

RedisClient::~RedisClient() {
  absl::MutexLock lock(&mu_);
  for (redisContext* context : idle_) redisFree(context);
}

bool RedisClient::degraded() const {
  absl::MutexLock lock(&mu_);
  return degraded_;
}

RedisClient::Stats RedisClient::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::StatusOr<redisContext*> RedisClient::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    if (degraded_) {
      const absl::Time now = absl::Now();
      if (now < next_probe_) {
        ++stats_.fast_failures;
        return absl::UnavailableError(
            absl::StrCat("redis ", options_.address, " is unavailable"));
      }
      // This call is the probe; others keep failing fast meanwhile.
      next_probe_ = now + options_.retry_interval;
    } else if (!idle_.empty()) {
      redisContext* context = idle_.back();
      idle_.pop_back();
      return context;
    }
  }
  redisContext* context = redisConnectWithTimeout(
      host_.c_str(), port_, absl::ToTimeval(options_.connect_timeout));
  if (context == nullptr || context->err != 0) {
    std::string error = context != nullptr ? context->errstr : "out of memory";
    if (context != nullptr) redisFree(context);
    MarkFailure(error);
    return absl::UnavailableError(
        absl::StrCat("redis ", options_.address, ": ", error));
  }
  redisSetTimeout(context, absl::ToTimeval(options_.command_timeout));
  return context;
}

void RedisClient::Release(redisContext* context, bool healthy) {
  if (!healthy) {
    redisFree(context);
    return;
  }
  absl::MutexLock lock(&mu_);
  if (static_cast<int>(idle_.size()) < options_.pool_size) {
    idle_.push_back(context);
  } else {
    redisFree(context);
  }
}

void RedisClient::MarkFailure(const std::string& error) {
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    ++stats_.errors;
    if (!degraded_) {
      degraded_ = true;
      changed = true;
      next_probe_ = absl::Now() + options_.retry_interval;
      // Pooled connections are as suspect as the one that failed.
      for (redisContext* context : idle_) redisFree(context);
      idle_.clear();
    }
  }
  if (changed) {
    Log("warning", "redis unavailable; answering from the store (degraded)",
        {{"redis", options_.address}, {"error", error}});
  }
}

void RedisClient::MarkSuccess() {
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    if (degraded_) {
      degraded_ = false;
      changed = true;
    }
  }
  if (changed) {
    Log("info", "redis available again; caching resumed",
        {{"redis", options_.address}});
  }
}

absl::StatusOr<RedisClient::Reply> RedisClient::Command(
    const std::vector<absl::string_view>& argv) {
  if (!enabled()) return absl::UnavailableError("redis is not configured");
  absl::StatusOr<redisContext*> context = Acquire();
  if (!context.ok()) return context.status();
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  for (absl::string_view arg : argv) {
    args.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  auto* reply = static_cast<redisReply*>(redisCommandArgv(
      *context, static_cast<int>(args.size()), args.data(), lengths.data()));
  if (reply == nullptr) {
    std::string error = (*context)->errstr;
    Release(*context, false);
    MarkFailure(error);
    return absl::UnavailableError(
        absl::StrCat("redis ", options_.address, ": ", error));
  }
  Reply result;
  result.type = reply->type;
  result.nil = reply->type == REDIS_REPLY_NIL;
  if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS ||
      reply->type == REDIS_REPLY_ERROR) {
    result.str.assign(reply->str, reply->len);
  }
  freeReplyObject(reply);
  Release(*context, true);
  MarkSuccess();
  if (result.type == REDIS_REPLY_ERROR) {
    return absl::InternalError(absl::StrCat("redis: ", result.str));
  }
  return result;
}

absl::StatusOr<std::optional<std::string>> RedisClient::Get(
    absl::string_view key) {
  absl::StatusOr<Reply> reply = Command({"GET", key});
  if (!reply.ok()) return reply.status();
  absl::MutexLock lock(&mu_);
  if (reply->nil) {
    ++stats_.misses;
    return std::optional<std::string>();
  }
  ++stats_.hits;
  return std::optional<std::string>(std::move(reply->str));
}

absl::Status RedisClient::SetEx(absl::string_view key, absl::string_view value,
                                absl::Duration ttl) {
  const std::string millis =
      absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl)));
  return Command({"SET", key, value, "PX", millis}).status();
}

absl::Status RedisClient::Del(absl::string_view key) {
  return Command({"DEL", key}).status();
}

absl::Status RedisClient::Ping() { return Command({"PING"}).status(); }

}  // namespace custos
