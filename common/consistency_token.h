#ifndef CUSTOS_COMMON_CONSISTENCY_TOKEN_H_
#define CUSTOS_COMMON_CONSISTENCY_TOKEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace custos {

// A position in one store's ordered history of changes: what a write's
// `consistency_token`, a change feed's resume position and a Watch resume
// token all are. Callers see it as an opaque string (Encode); the services
// compare positions of the same store and incarnation by `sequence`.
struct ConsistencyToken {
  enum class Store { kAccess, kCustomers };
  Store store = Store::kAccess;
  // The store's incarnation (StoreIdentity): a position from another
  // incarnation never compares with this one's.
  std::string incarnation;
  // Changes are numbered in commit order; this is the last one included.
  int64_t sequence = 0;
  // The random id of change `sequence`, so a position from a history that
  // was lost (a restore) is told apart from the change that reused its
  // number. 0 when `sequence` is 0.
  int64_t change_id = 0;

  std::string Encode() const;
  // INVALID_ARGUMENT (without naming a field: callers add it) when `text`
  // is not a token Encode made.
  static absl::StatusOr<ConsistencyToken> Decode(absl::string_view text);
};

// A random positive 63-bit id for a version or change: never repeats in
// practice, also across a store restored from a backup.
int64_t NewVersionId();

}  // namespace custos

#endif  // CUSTOS_COMMON_CONSISTENCY_TOKEN_H_
