#include "services/access_service/customer_feed.h"

#include "absl/strings/strip.h"
#include "common/json_log.h"

namespace custos::access {

CustomerFeedFollower::CustomerFeedFollower(CustomerChangeSource* source,
                                           FactVersions* versions,
                                           const Clock* clock,
                                           CustomerFeedOptions options)
    : source_(source), versions_(versions), clock_(clock), options_(options) {}

absl::Status CustomerFeedFollower::Poll() {
  absl::MutexLock lock(&poll_mu_);
  // Everything committed before this instant is known once the read ends.
  const absl::Time started = clock_->Now();
  while (true) {
    absl::StatusOr<customers::v1::ListCustomerChangesResponse> page =
        source_->List(position_, options_.page_size);
    if (absl::IsOutOfRange(page.status()) && !position_.empty()) {
      Log("warning",
          "customer change feed cannot be continued; forgetting every "
          "customer version and following from its head",
          {{"error", std::string(page.status().message())}});
      versions_->ForgetCustomers();
      ++resets_;
      position_.clear();
      continue;
    }
    if (!page.ok()) return page.status();
    absl::StatusOr<ConsistencyToken> next =
        ConsistencyToken::Decode(page->next_position());
    if (!next.ok() || next->store != ConsistencyToken::Store::kCustomers) {
      return absl::InternalError(
          "customer change feed returned a position that is not one");
    }
    const int64_t generation = versions_->generations().customers;
    for (const customers::v1::CustomerChange& change : page->changes()) {
      absl::string_view id = change.customer();
      if (!absl::ConsumePrefix(&id, "customers/")) continue;
      versions_->RaiseCustomer(
          std::string(id), {change.sequence(), change.change_id()}, generation);
    }
    position_ = page->next_position();
    {
      absl::MutexLock position_lock(&position_mu_);
      decoded_ = *next;
    }
    if (!page->more()) break;
  }
  fresh_until_micros_.store(absl::ToUnixMicros(started + options_.max_lag));
  return absl::OkStatus();
}

bool CustomerFeedFollower::Fresh() const {
  return absl::ToUnixMicros(clock_->Now()) < fresh_until_micros_.load();
}

bool CustomerFeedFollower::Covers(const ConsistencyToken& token) const {
  absl::MutexLock lock(&position_mu_);
  return !decoded_.incarnation.empty() &&
         token.incarnation == decoded_.incarnation &&
         token.sequence <= decoded_.sequence;
}

bool CustomerFeedFollower::Reflects(const ConsistencyToken& token) {
  if (Covers(token)) return true;
  // Errors only cost speed: the caller then reads through.
  Poll().IgnoreError();
  return Covers(token);
}

std::string CustomerFeedFollower::incarnation() const {
  absl::MutexLock lock(&position_mu_);
  return decoded_.incarnation;
}

}  // namespace custos::access
