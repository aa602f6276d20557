#include "services/access_service/answer_cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace custos::access {
namespace {

// Bytes of HMAC-SHA256 kept in front of each Redis value.
constexpr size_t kMacBytes = 16;

std::string Mac(const std::string& mac_key, const std::string& redis_key,
                const std::string& serialized) {
  // The key is bound into the MAC so a value cannot be moved to another key.
  const std::string message =
      absl::StrCat(redis_key.size(), ":", redis_key, serialized);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), mac_key.data(), static_cast<int>(mac_key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
       digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), kMacBytes);
}

}  // namespace

struct AnswerCache::Flight {
  absl::Notification done;
  absl::StatusOr<AnswerCache::Answer> answer;
};

AnswerCache::AnswerCache(RedisClient* redis, const Clock* clock,
                         AnswerCacheOptions options)
    : redis_(redis), clock_(clock), options_(std::move(options)) {}

std::string AnswerCache::RedisKey(const std::string& key) const {
  return absl::StrCat(options_.redis_prefix, key);
}

std::string AnswerCache::Seal(const std::string& redis_key,
                              const std::string& serialized) const {
  return absl::StrCat(Mac(options_.mac_key, redis_key, serialized), serialized);
}

bool AnswerCache::Open(const std::string& redis_key, const std::string& sealed,
                       std::string* serialized) const {
  if (sealed.size() < kMacBytes) return false;
  *serialized = sealed.substr(kMacBytes);
  const std::string expected = Mac(options_.mac_key, redis_key, *serialized);
  return CRYPTO_memcmp(expected.data(), sealed.data(), kMacBytes) == 0;
}

AnswerCache::Answer AnswerCache::FromMemory(const std::string& key,
                                            const std::string& versions) {
  absl::MutexLock lock(&mu_);
  auto it = memory_.find(key);
  if (it == memory_.end() || it->second.answer->versions() != versions ||
      clock_->Now() >= it->second.expires) {
    return nullptr;
  }
  ++stats_.memory_hits;
  return it->second.answer;
}

AnswerCache::Answer AnswerCache::FromRedis(const std::string& key,
                                           const std::string& versions) {
  if (!redis_->enabled()) return nullptr;
  const std::string redis_key = RedisKey(key);
  // Errors only cost speed: the caller computes the answer.
  absl::StatusOr<std::optional<std::string>> cached = redis_->Get(redis_key);
  if (!cached.ok() || !cached->has_value()) return nullptr;
  std::string serialized;
  if (!Open(redis_key, **cached, &serialized)) {
    absl::MutexLock lock(&mu_);
    ++stats_.forged;
    return nullptr;
  }
  auto answer = std::make_shared<v1::ResolvePermissionsResponse>();
  if (!answer->ParseFromString(serialized) || answer->versions() != versions) {
    return nullptr;
  }
  Answer shared(std::move(answer));
  {
    absl::MutexLock lock(&mu_);
    ++stats_.redis_hits;
  }
  RememberInMemory(key, shared);
  return shared;
}

void AnswerCache::RememberInMemory(const std::string& key,
                                   const Answer& answer) {
  absl::MutexLock lock(&mu_);
  if (memory_.size() >= options_.memory_entries) memory_.clear();
  memory_[key] = Entry{answer, clock_->Now() + options_.ttl};
}

void AnswerCache::Remember(const std::string& key, const Answer& answer) {
  RememberInMemory(key, answer);
  // Entries carry their versions and are checked on every read, so an
  // entry written late by a slow computation is ignored, never served.
  if (redis_->enabled()) {
    const std::string redis_key = RedisKey(key);
    redis_
        ->SetEx(redis_key, Seal(redis_key, answer->SerializeAsString()),
                options_.ttl)
        .IgnoreError();
  }
}

absl::StatusOr<AnswerCache::Answer> AnswerCache::ComputeOnce(
    const std::string& key,
    const std::function<absl::StatusOr<Answer>()>& compute) {
  std::shared_ptr<Flight> flight;
  bool leader = false;
  {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = flights_.try_emplace(key);
    if (inserted) it->second = std::make_shared<Flight>();
    flight = it->second;
    leader = inserted;
  }
  if (!leader) {
    flight->done.WaitForNotification();
    return flight->answer;
  }
  flight->answer = compute();
  if (flight->answer.ok()) Remember(key, *flight->answer);
  {
    absl::MutexLock lock(&mu_);
    flights_.erase(key);
  }
  flight->done.Notify();
  return flight->answer;
}

void AnswerCache::CountComputed() {
  absl::MutexLock lock(&mu_);
  ++stats_.computed;
}

AnswerCache::Stats AnswerCache::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace custos::access
