#include "services/notification_service/inbox_stream.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "services/notification_service/notification_store.h"

namespace custos::notifications {
namespace {

// Rows read per batch while catching up.
constexpr int kBatch = 100;

}  // namespace

InboxHub::InboxHub(absl::Duration poll_interval, int max_streams_per_user)
    : quota_(max_streams_per_user, "StreamNotifications") {
  timer_ = std::thread([this, poll_interval] {
    while (!stop_.WaitForNotificationWithTimeout(poll_interval)) {
      for (auto& stream : Streams(nullptr)) stream->Poke();
    }
  });
}

InboxHub::~InboxHub() { Shutdown(); }

std::vector<std::shared_ptr<InboxStream>> InboxHub::Streams(
    const std::vector<std::string>* user_ids) {
  std::vector<std::shared_ptr<InboxStream>> found;
  absl::MutexLock lock(&mu_);
  if (user_ids == nullptr) {
    for (auto& [user, streams] : streams_) {
      for (auto& [raw, stream] : streams) found.push_back(stream);
    }
    return found;
  }
  for (const std::string& user : *user_ids) {
    auto it = streams_.find(user);
    if (it == streams_.end()) continue;
    for (auto& [raw, stream] : it->second) found.push_back(stream);
  }
  return found;
}

void InboxHub::Shutdown() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (timer_.joinable()) timer_.join();
  for (auto& stream : Streams(nullptr)) stream->End();
}

void InboxHub::Arrived(const std::vector<std::string>& user_ids) {
  {
    absl::MutexLock lock(&mu_);
    if (streams_.empty()) return;
  }
  for (auto& stream : Streams(&user_ids)) stream->Poke();
}

void InboxHub::Add(const std::string& user_id,
                   std::shared_ptr<InboxStream> stream) {
  absl::MutexLock lock(&mu_);
  InboxStream* raw = stream.get();
  streams_[user_id][raw] = std::move(stream);
}

void InboxHub::Remove(const std::string& user_id, InboxStream* stream) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(user_id);
  if (it == streams_.end()) return;
  it->second.erase(stream);
  if (it->second.empty()) streams_.erase(it);
}

InboxStream::InboxStream(Database* db, InboxHub* hub, std::string user_id,
                         int64_t cursor,
                         std::function<void(const grpc::Status&)> on_done,
                         StreamQuota::Lease lease)
    : db_(db),
      hub_(hub),
      user_id_(std::move(user_id)),
      on_done_(std::move(on_done)),
      lease_(std::move(lease)),
      cursor_(cursor) {}

InboxStream* InboxStream::Start(std::shared_ptr<InboxStream> stream) {
  InboxStream* raw = stream.get();
  raw->self_ = stream;
  raw->hub_->Add(raw->user_id_, std::move(stream));
  // Tells the client the stream is live: from here on nothing is missed.
  raw->StartSendInitialMetadata();
  raw->Poke();
  return raw;
}

void InboxStream::Poke() {
  {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    if (writing_) {
      more_ = true;  // read again once the current write is done
      return;
    }
    if (queue_.empty()) {
      // Reads are short WAL snapshots: fine on the caller's thread.
      absl::StatusOr<std::vector<std::pair<int64_t, v1::Notification>>> rows;
      absl::Status status = db_->Read([&](Connection& db) -> absl::Status {
        rows =
            NotificationStore::ListArrivedAfter(db, user_id_, cursor_, kBatch);
        return rows.status();
      });
      if (!status.ok()) {
        finishing_ = true;
        finish_sent_ = true;
        finish_status_ = ToGrpcStatus(status);
      } else {
        for (auto& [position, notification] : *rows) {
          v1::StreamNotificationsResponse response;
          *response.mutable_notification() = std::move(notification);
          response.set_cursor(absl::StrCat(position));
          cursor_ = position;
          queue_.push_back(std::move(response));
        }
        more_ = static_cast<int>(rows->size()) == kBatch;
      }
    }
    if (!finishing_) {
      if (queue_.empty()) return;
      in_flight_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
    }
  }
  // Outside mu_: the reaction may run inline.
  bool finish = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    finish = finishing_ && !writing_;
    status = finish_status_;
  }
  if (finish) {
    Finish(status);
  } else {
    StartWrite(&in_flight_);
  }
}

void InboxStream::OnWriteDone(bool ok) {
  bool finish = false;
  bool again = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok && !finishing_) {
      finishing_ = true;
      finish_status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                    "the client stopped reading");
    }
    if (finishing_) {
      finish = !finish_sent_;
      finish_sent_ = true;
      status = finish_status_;
    } else {
      again = !queue_.empty() || more_;
      more_ = false;
    }
  }
  if (finish) {
    Finish(status);
  } else if (again) {
    Poke();
  }
}

void InboxStream::RequestFinish(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    finishing_ = true;
    finish_status_ = status;
    if (writing_) return;  // OnWriteDone finishes
    finish_sent_ = true;
  }
  Finish(status);
}

void InboxStream::End() {
  RequestFinish(
      grpc::Status(grpc::StatusCode::UNAVAILABLE,
                   "server shutting down; reconnect with the cursor"));
}

void InboxStream::OnCancel() { RequestFinish(grpc::Status::CANCELLED); }

void InboxStream::OnDone() {
  {
    absl::MutexLock lock(&mu_);
    done_status_ = finish_status_;
  }
  hub_->Remove(user_id_, this);
  // Now, not when the last reference goes: the hub's timer may still hold
  // one for a moment, and the caller may already be reconnecting.
  lease_.Release();
  on_done_(done_status_);
  // Dropped last: may free this object.
  std::shared_ptr<InboxStream> keep = std::move(self_);
}

}  // namespace custos::notifications
