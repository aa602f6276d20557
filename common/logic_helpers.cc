#include "common/logic_helpers.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/resource_name.h"
#include "google/protobuf/util/json_util.h"

namespace custos {

constexpr size_t kMaxDisplayNameBytes = 200;

std::string ToAuditJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

absl::Status Denied(absl::string_view action, absl::string_view resource) {
  return absl::PermissionDeniedError(
      absl::StrCat("the caller may not ", action, " ", resource));
}

absl::Status StaleEtag(absl::string_view resource) {
  return WithReason(
      absl::AbortedError(absl::StrCat(
          resource,
          " changed since it was read (etag mismatch); read it again")),
      "STALE_ETAG");
}

bool HasControlCharacter(absl::string_view value) {
  return std::any_of(value.begin(), value.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

absl::Status ValidateDisplayName(absl::string_view field,
                                 absl::string_view value, bool required) {
  if (value.empty()) {
    return required ? InvalidField(field, "is required") : absl::OkStatus();
  }
  if (value.size() > kMaxDisplayNameBytes) {
    return InvalidField(field, absl::StrCat("must be at most ",
                                            kMaxDisplayNameBytes, " bytes"));
  }
  if (HasControlCharacter(value)) {
    return InvalidField(field, "must not contain control characters");
  }
  if (absl::StripAsciiWhitespace(value) != value) {
    return InvalidField(field, "must not start or end with whitespace");
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(absl::string_view value) {
  if (value.empty()) return absl::OkStatus();
  if (value.size() > 128) {
    return InvalidField("request_id", "must be at most 128 characters");
  }
  for (char c : value) {
    if (c < 0x21 || c > 0x7e) {
      return InvalidField("request_id",
                          "must be printable ASCII without spaces");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateUserId(absl::string_view field, absl::string_view value) {
  if (value.empty()) return InvalidField(field, "is required");
  return ValidateResourceId(value, field, /*optional=*/false);
}

absl::Status Remember(Connection& db, const IdempotencyKey& key,
                      const std::string& fingerprint,
                      const google::protobuf::Message& response,
                      absl::Time now) {
  if (key.request_id.empty()) return absl::OkStatus();
  return RecordResponse(db, key, fingerprint, response, now);
}

}  // namespace custos
