#ifndef CUSTOS_COMMON_GRPC_STATUS_H_
#define CUSTOS_COMMON_GRPC_STATUS_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"

namespace custos {

// Errors carry a machine-readable reason (google.rpc.ErrorInfo.reason, e.g.
// "STALE_ETAG") and, for bad input, the offending field. Both travel as
// absl::Status payloads inside the process and become status details at the
// gRPC edge.

// INVALID_ARGUMENT naming `field` (AIP-193 style path, e.g.
// "customer.display_name").
absl::Status InvalidField(absl::string_view field, absl::string_view problem);

// Returns `status` with `reason` attached (no-op for OK).
absl::Status WithReason(absl::Status status, absl::string_view reason);

// Returns `status` with how long the caller should wait before retrying
// (google.rpc.RetryInfo at the edge); no-op for OK. For RESOURCE_EXHAUSTED.
absl::Status WithRetryDelay(absl::Status status, absl::Duration delay);

// The reason attached by WithReason / InvalidField ("" when none).
std::string ReasonOf(const absl::Status& status);
// The field attached by InvalidField ("" when none).
std::string FieldOf(const absl::Status& status);
// The delay attached by WithRetryDelay (nullopt when none).
std::optional<absl::Duration> RetryDelayOf(const absl::Status& status);

// Maps to grpc::Status with google.rpc.Status details holding an ErrorInfo
// (domain "custos.dev"; reason defaults to the code's name) and, when a field
// is attached, a BadRequest field violation; when a retry delay is attached,
// a RetryInfo.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The reverse, for calls to peer services: keeps code, message, reason and
// retry delay.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace custos

#endif  // CUSTOS_COMMON_GRPC_STATUS_H_
