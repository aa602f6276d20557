#include "services/notification_service/broadcast_fanout.h"

#include <string>
#include <utility>
#include <vector>

#include "common/json_log.h"
#include "common/logic_helpers.h"
#include "common/resource_name.h"
#include "common/status_macros.h"
#include "services/notification_service/notification_store.h"

namespace custos::notifications {

void BroadcastFanout::Start() {
  loop_ = std::thread([this] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return woken_ || stopping_;
        };
        // Every replica looks each second, so a broadcast whose replica
        // died is taken up again within about a second.
        mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(1));
        if (stopping_) return;
        woken_ = false;
      }
      absl::Status status = RunOnce();
      if (!status.ok()) {
        Log("warning", "broadcast fan-out paused; will resume",
            {{"error", status.ToString()}});
        absl::MutexLock lock(&mu_);
        auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_;
        };
        mu_.AwaitWithTimeout(absl::Condition(&stopping), options_.retry_after);
        woken_ = true;
      }
    }
  });
}

void BroadcastFanout::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void BroadcastFanout::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (loop_.joinable()) loop_.join();
}

absl::Status BroadcastFanout::RunOnce() {
  std::vector<std::pair<std::string, std::string>> pending;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(pending, NotificationStore::PendingFanouts(db));
    return absl::OkStatus();
  }));
  pending_.store(static_cast<int64_t>(pending.size()));
  for (auto& [alert_id, token] : pending) {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return absl::OkStatus();
      }
      ASSIGN_OR_RETURN(auto page,
                       recipients_->ListRecipients(token, options_.page_size));
      std::vector<std::string> users;
      users.reserve(page.users_size());
      for (const std::string& user : page.users()) {
        ASSIGN_OR_RETURN(std::string id, ParseUserName(user, "users"));
        users.push_back(std::move(id));
      }
      // Every replica runs fan-outs: the page moves on only from where this
      // one read it, so a replica that fell behind writes nothing.
      bool ours = false;
      RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
        ASSIGN_OR_RETURN(
            ours, NotificationStore::AdvanceFanout(db, alert_id, token,
                                                   page.next_page_token()));
        if (!ours) return absl::OkStatus();
        ASSIGN_OR_RETURN(
            int64_t delivered,
            NotificationStore::Deliver(db, alert_id, users, clock_->Now()));
        return NotificationStore::AddRecipients(db, alert_id, delivered);
      }));
      if (!ours) break;  // the replica that moved it carries on
      delivered_.fetch_add(static_cast<int64_t>(users.size()));
      if (hub_ != nullptr) hub_->Arrived(users);
      token = page.next_page_token();
      if (token.empty()) break;
    }
    pending_.fetch_sub(1);
  }
  return absl::OkStatus();
}

}  // namespace custos::notifications
