#ifndef CUSTOS_COMMON_IDEMPOTENCY_STORE_H_
#define CUSTOS_COMMON_IDEMPOTENCY_STORE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/database.h"
#include "google/protobuf/message.h"

namespace custos {

// `request_id` replay (AIP-155): the first response to a create is stored in
// the create's own transaction; a repeat returns it unchanged.
extern const char kIdempotencyKeysSchema[];
// The index PruneIdempotencyRecords reads by; add it to the service's
// migrations after kIdempotencyKeysSchema.
extern const char kIdempotencyKeysTimeIndexSchema[];

// Identifies one request_id use: keys are scoped to the caller and method.
struct IdempotencyKey {
  std::string principal;
  std::string method;
  std::string request_id;
};

// SHA-256 of the request's deterministic serialization.
std::string RequestFingerprint(const google::protobuf::Message& request);

// The stored response bytes when `key` was used before with the same
// request; nullopt when unused; INVALID_ARGUMENT naming "request_id" when it
// was used with a different request.
absl::StatusOr<std::optional<std::string>> FindReplay(
    Connection& db, const IdempotencyKey& key, const std::string& fingerprint);

absl::Status RecordResponse(Connection& db, const IdempotencyKey& key,
                            const std::string& fingerprint,
                            const google::protobuf::Message& response,
                            absl::Time now);

// Retention: deletes up to `batch_size` records stored before `older_than`,
// oldest first, in one write transaction of its own; returns how many.
// Call until it returns less than `batch_size` to catch up. A request_id
// repeated after its record is gone runs again, so `older_than` must lie
// beyond any client's retry window. INVALID_ARGUMENT when batch_size <= 0;
// otherwise the transaction's error.
// REQUIRES: the service's migrations include kIdempotencyKeysTimeIndexSchema
// (else each call scans the table).
absl::StatusOr<int64_t> PruneIdempotencyRecords(Database& database,
                                                absl::Time older_than,
                                                int batch_size);

}  // namespace custos

#endif  // CUSTOS_COMMON_IDEMPOTENCY_STORE_H_
