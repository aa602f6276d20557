#ifndef CUSTOS_COMMON_IDS_H_
#define CUSTOS_COMMON_IDS_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

namespace custos {

// Generates ids for server-named resources, injected so tests control them.
// Thread-safe.
class IdGenerator {
 public:
  virtual ~IdGenerator() = default;
  // A valid resource id (see resource_name.h), unique with high probability.
  virtual std::string NewId() = 0;
};

// 16 random lowercase hex digits.
class RandomIdGenerator final : public IdGenerator {
 public:
  std::string NewId() override {
    absl::MutexLock lock(&mu_);
    return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen_));
  }

 private:
  absl::Mutex mu_;
  absl::BitGen gen_ ABSL_GUARDED_BY(mu_);
};

}  // namespace custos

#endif  // CUSTOS_COMMON_IDS_H_
