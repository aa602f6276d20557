#ifndef CUSTOS_COMMON_RESOURCE_ID_H_
#define CUSTOS_COMMON_RESOURCE_ID_H_

#include "absl/strings/string_view.h"

namespace custos {

// Resource ids (AIP-122): 1 to 63 characters, lowercase letters, digits and
// '-', '_', '.', starting and ending with a letter or digit.
bool IsValidResourceId(absl::string_view id);

// A user id (a token's `sub`, the `{id}` of `users/{id}`) has the resource-id
// syntax: no '/', so it can never name another resource.
inline bool IsValidUserId(absl::string_view id) {
  return IsValidResourceId(id);
}

}  // namespace custos

#endif  // CUSTOS_COMMON_RESOURCE_ID_H_
