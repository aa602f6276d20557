#ifndef CUSTOS_COMMON_RESOURCE_NAME_H_
#define CUSTOS_COMMON_RESOURCE_NAME_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/resource_id.h"

namespace custos {

// `users/{id}`, the one way a user's name is built.
// REQUIRES: IsValidUserId(user_id) (it came from a verified token or a
// validated field).
std::string UserName(absl::string_view user_id);

// The id of a `users/{id}` name; INVALID_ARGUMENT naming `field` for
// anything else. The one way a user's name is read: never take the last
// segment of an untrusted name.
absl::StatusOr<std::string> ParseUserName(absl::string_view name,
                                          absl::string_view field);

// Matches `name` against `pattern` such as "customers/*/users/*" and returns
// the ids in the '*' positions. Otherwise INVALID_ARGUMENT naming `field`.
absl::StatusOr<std::vector<std::string>> ParseResourceName(
    absl::string_view name, absl::string_view pattern, absl::string_view field);

// Checks an id supplied in a `*_id` field (empty is allowed when `optional`).
absl::Status ValidateResourceId(absl::string_view id, absl::string_view field,
                                bool optional);

}  // namespace custos

#endif  // CUSTOS_COMMON_RESOURCE_NAME_H_
