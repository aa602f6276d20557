#ifndef CUSTOS_COMMON_BACKOFF_H_
#define CUSTOS_COMMON_BACKOFF_H_

#include <algorithm>
#include <cstdint>

#include "absl/random/random.h"
#include "absl/time/time.h"

namespace custos {

// How long to wait after the `failures`-th consecutive failure (1-based):
// full jitter, uniform in [0, min(initial * 2^(failures-1), max)], so many
// retrying senders never line up.
inline absl::Duration FullJitterBackoff(absl::BitGen& random,
                                        absl::Duration initial,
                                        absl::Duration max, int64_t failures) {
  absl::Duration bound = initial;
  for (int64_t i = 1; i < failures && bound < max; ++i) bound *= 2;
  bound = std::min(bound, max);
  return absl::Microseconds(
      absl::Uniform<int64_t>(random, 0, absl::ToInt64Microseconds(bound) + 1));
}

}  // namespace custos

#endif  // CUSTOS_COMMON_BACKOFF_H_
