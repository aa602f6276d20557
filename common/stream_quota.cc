#include "common/stream_quota.h"

#include <utility>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

ABSL_FLAG(int, max_streams_per_user, 5,
          "live streaming calls (WatchPermissionChanges, StreamNotifications) "
          "one caller (token `sub`) may hold on this replica; 0 = no cap");

namespace custos {

int MaxStreamsPerUserFlag() {
  return absl::GetFlag(FLAGS_max_streams_per_user);
}

StreamQuota::Lease::Lease(Lease&& other) noexcept
    : quota_(std::exchange(other.quota_, nullptr)),
      subject_(std::move(other.subject_)) {}

StreamQuota::Lease& StreamQuota::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    quota_ = std::exchange(other.quota_, nullptr);
    subject_ = std::move(other.subject_);
  }
  return *this;
}

void StreamQuota::Lease::Release() {
  if (quota_ == nullptr) return;
  std::exchange(quota_, nullptr)->Release(subject_);
}

StreamQuota::StreamQuota(int max_per_subject, std::string method)
    : max_per_subject_(max_per_subject), method_(std::move(method)) {}

bool StreamQuota::TryAcquire(absl::string_view subject) {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(subject);
  const int live = it == live_.end() ? 0 : it->second;
  if (max_per_subject_ > 0 && live >= max_per_subject_) return false;
  if (it == live_.end()) {
    live_.emplace(std::string(subject), 1);
  } else {
    ++it->second;
  }
  return true;
}

void StreamQuota::Release(absl::string_view subject) {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(subject);
  if (it == live_.end()) return;
  if (--it->second <= 0) live_.erase(it);
}

absl::StatusOr<StreamQuota::Lease> StreamQuota::Acquire(
    absl::string_view subject) {
  if (!TryAcquire(subject)) {
    return WithReason(
        absl::ResourceExhaustedError(absl::StrCat(
            "at most ", max_per_subject_, " live ", method_,
            " streams per caller (--max_streams_per_user); end one first")),
        "TOO_MANY_STREAMS");
  }
  return Lease(this, std::string(subject));
}

absl::StatusOr<StreamQuota::Lease> StreamQuota::Acquire(
    const Principal& principal) {
  if (principal.HasRole(kRoleService)) return Lease();
  return Acquire(principal.subject);
}

int StreamQuota::Count(absl::string_view subject) const {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(subject);
  return it == live_.end() ? 0 : it->second;
}

}  // namespace custos
