#include "common/grpc_status.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace custos {
namespace {

constexpr absl::string_view kReasonPayload = "custos.dev/reason";
constexpr absl::string_view kFieldPayload = "custos.dev/field";
// Nanoseconds, in decimal.
constexpr absl::string_view kRetryDelayPayload = "custos.dev/retry_delay";
constexpr absl::string_view kDomain = "custos.dev";

std::string PayloadOf(const absl::Status& status, absl::string_view url) {
  absl::optional<absl::Cord> payload = status.GetPayload(url);
  return payload.has_value() ? std::string(*payload) : std::string();
}

}  // namespace

absl::Status InvalidField(absl::string_view field, absl::string_view problem) {
  absl::Status status =
      absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
  status.SetPayload(kFieldPayload, absl::Cord(field));
  status.SetPayload(kReasonPayload, absl::Cord("INVALID_FIELD"));
  return status;
}

absl::Status WithReason(absl::Status status, absl::string_view reason) {
  if (!status.ok()) status.SetPayload(kReasonPayload, absl::Cord(reason));
  return status;
}

absl::Status WithRetryDelay(absl::Status status, absl::Duration delay) {
  if (!status.ok()) {
    status.SetPayload(
        kRetryDelayPayload,
        absl::Cord(absl::StrCat(absl::ToInt64Nanoseconds(delay))));
  }
  return status;
}

std::string ReasonOf(const absl::Status& status) {
  return PayloadOf(status, kReasonPayload);
}

std::string FieldOf(const absl::Status& status) {
  return PayloadOf(status, kFieldPayload);
}

std::optional<absl::Duration> RetryDelayOf(const absl::Status& status) {
  int64_t nanos = 0;
  if (!absl::SimpleAtoi(PayloadOf(status, kRetryDelayPayload), &nanos)) {
    return std::nullopt;
  }
  return absl::Nanoseconds(nanos);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  google::rpc::Status details;
  details.set_code(static_cast<int>(status.code()));
  details.set_message(std::string(status.message()));
  google::rpc::ErrorInfo info;
  std::string reason = ReasonOf(status);
  info.set_reason(reason.empty() ? absl::StatusCodeToString(status.code())
                                 : reason);
  info.set_domain(std::string(kDomain));
  details.add_details()->PackFrom(info);
  if (std::string field = FieldOf(status); !field.empty()) {
    google::rpc::BadRequest bad_request;
    auto* violation = bad_request.add_field_violations();
    violation->set_field(field);
    violation->set_description(std::string(status.message()));
    details.add_details()->PackFrom(bad_request);
  }
  if (std::optional<absl::Duration> delay = RetryDelayOf(status)) {
    google::rpc::RetryInfo retry;
    const int64_t seconds = absl::ToInt64Seconds(*delay);
    retry.mutable_retry_delay()->set_seconds(seconds);
    retry.mutable_retry_delay()->set_nanos(static_cast<int32_t>(
        absl::ToInt64Nanoseconds(*delay - absl::Seconds(seconds))));
    details.add_details()->PackFrom(retry);
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()),
                      details.SerializeAsString());
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status result(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
  google::rpc::Status details;
  if (!status.error_details().empty() &&
      details.ParseFromString(status.error_details())) {
    for (const auto& any : details.details()) {
      google::rpc::ErrorInfo info;
      google::rpc::RetryInfo retry;
      if (any.UnpackTo(&info)) {
        if (ReasonOf(result).empty())
          result = WithReason(result, info.reason());
      } else if (any.UnpackTo(&retry)) {
        result = WithRetryDelay(
            result, absl::Seconds(retry.retry_delay().seconds()) +
                        absl::Nanoseconds(retry.retry_delay().nanos()));
      }
    }
  }
  return result;
}

}  // namespace custos
