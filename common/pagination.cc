#include "common/pagination.h"

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace custos {
namespace {

// Unit separator: cannot appear in ids or in display names we accept.
constexpr char kSeparator = '\x1f';

}  // namespace

absl::StatusOr<int> NormalizePageSize(int requested) {
  if (requested < 0) return InvalidField("page_size", "must not be negative");
  if (requested == 0) return kDefaultPageSize;
  return requested > kMaxPageSize ? kMaxPageSize : requested;
}

std::string EncodePageToken(absl::string_view query,
                            const std::vector<std::string>& last_key) {
  std::string raw(query);
  for (const std::string& part : last_key) {
    raw.push_back(kSeparator);
    raw.append(part);
  }
  std::string token;
  absl::WebSafeBase64Escape(raw, &token);
  return token;
}

absl::StatusOr<std::vector<std::string>> DecodePageToken(
    absl::string_view token, absl::string_view query, size_t key_size) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) {
    return InvalidField("page_token", "is not a token this API issued");
  }
  std::vector<std::string> parts = absl::StrSplit(raw, kSeparator);
  if (parts.size() != key_size + 1 || parts[0] != query) {
    return InvalidField("page_token",
                        "was issued for a different query or is corrupt");
  }
  parts.erase(parts.begin());
  return parts;
}

std::string EncodeTimeKeyPageToken(absl::string_view query, int64_t micros,
                                   absl::string_view id) {
  return EncodePageToken(query, {absl::StrCat(micros), std::string(id)});
}

absl::StatusOr<std::optional<TimeKey>> DecodeTimeKeyPageToken(
    absl::string_view token, absl::string_view query) {
  if (token.empty()) return std::optional<TimeKey>();
  ASSIGN_OR_RETURN(std::vector<std::string> key,
                   DecodePageToken(token, query, 2));
  int64_t micros = 0;
  if (!absl::SimpleAtoi(key[0], &micros)) {
    return InvalidField("page_token", "is malformed");
  }
  return std::optional<TimeKey>(TimeKey(micros, std::move(key[1])));
}

}  // namespace custos
