#include "services/access_service/watch_stream.h"

#include <utility>

#include "common/grpc_status.h"

namespace custos::access {
namespace {

// Access writes and customer changes read per batch.
constexpr int kBatch = 200;

}  // namespace

WatchHub::WatchHub(PermissionChangeLog* log, absl::Duration poll_interval,
                   int max_streams)
    : log_(log), max_streams_(max_streams) {
  timer_ = std::thread([this, poll_interval] {
    while (!stop_.WaitForNotificationWithTimeout(poll_interval)) {
      for (auto& stream : Streams()) stream->Poke();
    }
  });
}

WatchHub::~WatchHub() { Shutdown(); }

std::vector<std::shared_ptr<WatchStream>> WatchHub::Streams() {
  std::vector<std::shared_ptr<WatchStream>> found;
  absl::MutexLock lock(&mu_);
  for (auto& [raw, stream] : streams_) found.push_back(stream);
  return found;
}

bool WatchHub::Add(std::shared_ptr<WatchStream> stream) {
  absl::MutexLock lock(&mu_);
  if (shut_down_ || static_cast<int>(streams_.size()) >= max_streams_) {
    return false;
  }
  WatchStream* raw = stream.get();
  streams_[raw] = std::move(stream);
  return true;
}

void WatchHub::Remove(WatchStream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

void WatchHub::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
  }
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (timer_.joinable()) timer_.join();
  for (auto& stream : Streams()) stream->End();
}

WatchStream::WatchStream(WatchHub* hub, WatchPosition from,
                         std::function<void(const grpc::Status&)> on_done)
    : hub_(hub), on_done_(std::move(on_done)), position_(std::move(from)) {}

WatchStream* WatchStream::Start(std::shared_ptr<WatchStream> stream) {
  WatchStream* raw = stream.get();
  raw->self_ = stream;
  {
    // Claimed before the hub can poke it: the first write goes out alone.
    absl::MutexLock lock(&raw->mu_);
    raw->in_flight_.set_resume_token(raw->position_.Encode());
    raw->writing_ = true;
    raw->more_ = true;  // read right after it is written
  }
  if (!raw->hub_->Add(stream)) {
    {
      absl::MutexLock lock(&raw->mu_);
      raw->writing_ = false;
    }
    raw->RequestFinish(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        "too many WatchPermissionChanges streams on this replica, or it is "
        "shutting down; retry later"));
    return raw;
  }
  {
    absl::MutexLock lock(&raw->mu_);
    raw->registered_ = true;
  }
  // The first response: the position this stream continues from.
  raw->StartWrite(&raw->in_flight_);
  return raw;
}

void WatchStream::Poke() {
  WatchPosition from;
  {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    if (writing_) {
      more_ = true;  // read again once the current write is done
      return;
    }
    from = position_;
    writing_ = true;  // held while reading, so one read at a time
  }
  absl::StatusOr<PermissionChangeLog::Batch> batch =
      hub_->log()->Next(from, kBatch);
  bool write = false;
  bool finish = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (!batch.ok()) {
      // The peer being down only delays; anything else ends the stream.
      if (absl::IsUnavailable(batch.status()) && !finishing_) {
        writing_ = false;
        return;
      }
      if (!finishing_) {
        finishing_ = true;
        finish_status_ = ToGrpcStatus(batch.status());
      }
    } else if (!finishing_) {
      position_ = batch->next;
      more_ = batch->more;
      if (batch->response.changes_size() > 0) {
        in_flight_ = std::move(batch->response);
        write = true;
      }
    }
    if (!write) {
      writing_ = false;
      finish = finishing_ && !finish_sent_;
      if (finish) finish_sent_ = true;
      status = finish_status_;
    }
  }
  if (write) {
    StartWrite(&in_flight_);
  } else if (finish) {
    Finish(status);
  }
}

void WatchStream::OnWriteDone(bool ok) {
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
      again = more_;
      more_ = false;
    }
  }
  if (finish) {
    Finish(status);
  } else if (again) {
    Poke();
  }
}

void WatchStream::RequestFinish(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    finishing_ = true;
    finish_status_ = status;
    if (writing_) return;  // OnWriteDone (or the read) finishes
    finish_sent_ = true;
  }
  Finish(status);
}

void WatchStream::End() {
  RequestFinish(
      grpc::Status(grpc::StatusCode::UNAVAILABLE,
                   "server shutting down; reconnect with the resume_token"));
}

void WatchStream::OnCancel() { RequestFinish(grpc::Status::CANCELLED); }

void WatchStream::OnDone() {
  bool registered = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    registered = registered_;
    status = finish_status_;
  }
  if (registered) hub_->Remove(this);
  on_done_(status);
  // Dropped last: may free this object.
  std::shared_ptr<WatchStream> keep = std::move(self_);
}

}  // namespace custos::access
