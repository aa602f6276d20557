#ifndef CUSTOS_COMMON_PAGINATION_H_
#define CUSTOS_COMMON_PAGINATION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace custos {

inline constexpr int kDefaultPageSize = 50;
inline constexpr int kMaxPageSize = 1000;

// 0 → default; above the maximum → the maximum (AIP-158); negative →
// INVALID_ARGUMENT naming "page_size".
absl::StatusOr<int> NormalizePageSize(int requested);

// Page tokens are opaque to callers: they hold the sort key of the last item
// returned (keyset pagination, so inserts and deletes between pages never
// cause duplicates or gaps) and a fingerprint of the query, so a token cannot
// be replayed against a different query.
std::string EncodePageToken(absl::string_view query,
                            const std::vector<std::string>& last_key);

// Returns the key, or INVALID_ARGUMENT naming "page_token" when the token is
// malformed, was issued for another query, or has the wrong key size.
absl::StatusOr<std::vector<std::string>> DecodePageToken(
    absl::string_view token, absl::string_view query, size_t key_size);

// Newest-first listings page by (create time in microseconds, id).
using TimeKey = std::pair<int64_t, std::string>;
std::string EncodeTimeKeyPageToken(absl::string_view query, int64_t micros,
                                   absl::string_view id);
// nullopt for an empty token (the first page); INVALID_ARGUMENT naming
// "page_token" as DecodePageToken.
absl::StatusOr<std::optional<TimeKey>> DecodeTimeKeyPageToken(
    absl::string_view token, absl::string_view query);

}  // namespace custos

#endif  // CUSTOS_COMMON_PAGINATION_H_
