#ifndef CUSTOS_COMMON_RESOURCE_NAME_H_
#define CUSTOS_COMMON_RESOURCE_NAME_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace custos {

// Resource ids (AIP-122): 1 to 63 characters, lowercase letters, digits and
// '-', '_', '.', starting and ending with a letter or digit.
bool IsValidResourceId(absl::string_view id);

// Matches `name` against `pattern` such as "customers/*/users/*" and returns
// the ids in the '*' positions. Otherwise INVALID_ARGUMENT naming `field`.
absl::StatusOr<std::vector<std::string>> ParseResourceName(
    absl::string_view name, absl::string_view pattern, absl::string_view field);

// Checks an id supplied in a `*_id` field (empty is allowed when `optional`).
absl::Status ValidateResourceId(absl::string_view id, absl::string_view field,
                                bool optional);

}  // namespace custos

#endif  // CUSTOS_COMMON_RESOURCE_NAME_H_
