#ifndef CUSTOS_COMMON_PERIODIC_H_
#define CUSTOS_COMMON_PERIODIC_H_

#include <functional>
#include <thread>
#include <utility>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace custos {

// Runs `task` every `interval` on a thread of its own, first after one
// interval, until destroyed (the destructor waits for a running task).
// Thread-safe.
class Periodic {
 public:
  Periodic(absl::Duration interval, std::function<void()> task)
      : thread_([this, interval, task = std::move(task)] {
          while (!stop_.WaitForNotificationWithTimeout(interval)) task();
        }) {}
  ~Periodic() {
    stop_.Notify();
    thread_.join();
  }
  Periodic(const Periodic&) = delete;
  Periodic& operator=(const Periodic&) = delete;

 private:
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace custos

#endif  // CUSTOS_COMMON_PERIODIC_H_
