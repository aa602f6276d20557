#ifndef CUSTOS_COMMON_GRPC_CODE_NAMES_H_
#define CUSTOS_COMMON_GRPC_CODE_NAMES_H_

#include <cstddef>
#include <optional>

#include "absl/strings/string_view.h"

namespace custos {

// A status code's name as grpc-go spells it (codes.Code.String(): "OK",
// "NotFound", "Unavailable", ...): what go-grpc-prometheus puts in
// grpc_code and grpcurl prints. nullopt outside 0..16. Header-only, so
// tools/grpcurl can use it without linking the services' libraries.
inline std::optional<absl::string_view> GoCodeName(int code) {
  static constexpr absl::string_view kNames[] = {"OK",
                                                 "Canceled",
                                                 "Unknown",
                                                 "InvalidArgument",
                                                 "DeadlineExceeded",
                                                 "NotFound",
                                                 "AlreadyExists",
                                                 "PermissionDenied",
                                                 "ResourceExhausted",
                                                 "FailedPrecondition",
                                                 "Aborted",
                                                 "OutOfRange",
                                                 "Unimplemented",
                                                 "Internal",
                                                 "Unavailable",
                                                 "DataLoss",
                                                 "Unauthenticated"};
  if (code < 0 ||
      static_cast<size_t>(code) >= sizeof(kNames) / sizeof(kNames[0])) {
    return std::nullopt;
  }
  return kNames[code];
}

}  // namespace custos

#endif  // CUSTOS_COMMON_GRPC_CODE_NAMES_H_
