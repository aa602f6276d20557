#include "services/access_service/watch_stream.h"

#include <utility>

#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace custos::access {
namespace {

// Access writes and customer changes read per batch.
constexpr int kBatch = 200;

}  // namespace

WatchHub::WatchHub(PermissionChangeLog* log, absl::Duration poll_interval,
                   int max_streams, int max_streams_per_user)
    : log_(log),
      max_streams_(max_streams),
      quota_(max_streams_per_user, "WatchPermissionChanges") {
  thread_ = std::thread([this, poll_interval] {
    while (true) {
      {
        absl::MutexLock lock(&wake_mu_);
        wake_mu_.AwaitWithTimeout(absl::Condition(&wake_), poll_interval);
        if (stopping_) return;
        wake_ = false;
      }
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

void WatchHub::Wake() {
  absl::MutexLock lock(&wake_mu_);
  wake_ = true;
}

void WatchHub::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
  }
  {
    absl::MutexLock lock(&wake_mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  for (auto& stream : Streams()) stream->End();
}

WatchStream::WatchStream(WatchHub* hub, std::optional<WatchPosition> from,
                         std::function<void(const grpc::Status&)> on_done,
                         StreamQuota::Lease lease)
    : hub_(hub),
      on_done_(std::move(on_done)),
      lease_(std::move(lease)),
      position_(std::move(from)) {}

WatchStream* WatchStream::Start(std::shared_ptr<WatchStream> stream) {
  WatchStream* raw = stream.get();
  raw->self_ = stream;
  if (!raw->hub_->Add(stream)) {
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
  raw->hub_->Wake();
  return raw;
}

absl::StatusOr<std::optional<v1::WatchPermissionChangesResponse>>
WatchStream::Read(bool started, const std::optional<WatchPosition>& from) {
  PermissionChangeLog* log = hub_->log();
  if (!started) {
    // Where this stream starts, checked once; the first response says it.
    WatchPosition position;
    if (from) {
      RETURN_IF_ERROR(log->Check(*from));
      position = *from;
    } else {
      ASSIGN_OR_RETURN(position, log->Head());
    }
    v1::WatchPermissionChangesResponse first;
    first.set_resume_token(position.Encode());
    {
      absl::MutexLock lock(&mu_);
      position_ = std::move(position);
      started_ = true;
      more_ = true;  // read right after the first write
    }
    return first;
  }
  ASSIGN_OR_RETURN(PermissionChangeLog::Batch batch, log->Next(*from, kBatch));
  absl::MutexLock lock(&mu_);
  position_ = batch.next;
  more_ = batch.more;
  if (batch.response.changes_size() == 0) return std::nullopt;
  return std::move(batch.response);
}

void WatchStream::Poke() {
  bool started = false;
  std::optional<WatchPosition> from;
  {
    absl::MutexLock lock(&mu_);
    if (finishing_ || busy_) return;
    busy_ = true;  // held while reading and while the write is in flight
    started = started_;
    from = position_;
  }
  absl::StatusOr<std::optional<v1::WatchPermissionChangesResponse>> read =
      Read(started, from);
  bool write = false;
  bool finish = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (!read.ok() && !finishing_ && !absl::IsUnavailable(read.status())) {
      finishing_ = true;
      finish_status_ = ToGrpcStatus(read.status());
    }
    // A peer being down only delays: the next poke reads again.
    if (read.ok() && read->has_value() && !finishing_) {
      in_flight_ = **std::move(read);
      write = true;
    } else {
      busy_ = false;
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
    busy_ = false;
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
    hub_->Wake();  // read on the hub's thread, not on this one
  }
}

void WatchStream::RequestFinish(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    finishing_ = true;
    finish_status_ = status;
    if (busy_) return;  // the read or OnWriteDone finishes
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
  // Now, not when the last reference goes: the hub's thread may still hold
  // one for a moment, and the caller may already be reconnecting.
  lease_.Release();
  on_done_(status);
  // Dropped last: may free this object.
  std::shared_ptr<WatchStream> keep = std::move(self_);
}

}  // namespace custos::access
