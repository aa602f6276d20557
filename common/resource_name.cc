#include "common/resource_name.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace custos {

absl::StatusOr<std::vector<std::string>> ParseResourceName(
    absl::string_view name, absl::string_view pattern,
    absl::string_view field) {
  if (name.empty()) return InvalidField(field, "is required");
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  std::vector<absl::string_view> want = absl::StrSplit(pattern, '/');
  auto mismatch = [&] {
    return InvalidField(
        field, absl::StrCat("must be a resource name of the form ", pattern,
                            ", got \"", name, "\""));
  };
  if (parts.size() != want.size()) return mismatch();
  std::vector<std::string> ids;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (want[i] == "*") {
      if (!IsValidResourceId(parts[i])) return mismatch();
      ids.emplace_back(parts[i]);
    } else if (parts[i] != want[i]) {
      return mismatch();
    }
  }
  return ids;
}

absl::Status ValidateResourceId(absl::string_view id, absl::string_view field,
                                bool optional) {
  if (id.empty() && optional) return absl::OkStatus();
  if (!IsValidResourceId(id)) {
    return InvalidField(field,
                        "must be 1-63 lowercase letters, digits, '-', '_' or "
                        "'.', starting and ending with a letter or digit");
  }
  return absl::OkStatus();
}

std::string UserName(absl::string_view user_id) {
  return absl::StrCat("users/", user_id);
}

absl::StatusOr<std::string> ParseUserName(absl::string_view name,
                                          absl::string_view field) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids,
                   ParseResourceName(name, "users/*", field));
  return std::move(ids[0]);
}

}  // namespace custos
