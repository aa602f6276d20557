#ifndef CUSTOS_COMMON_CLOCK_H_
#define CUSTOS_COMMON_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace custos {

// Source of the current time, injected so tests control it.
// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  static RealClock* Get() {
    static RealClock* clock = new RealClock;
    return clock;
  }
};

}  // namespace custos

#endif  // CUSTOS_COMMON_CLOCK_H_
