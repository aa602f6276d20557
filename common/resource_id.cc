#include "common/resource_id.h"

#include "absl/strings/ascii.h"

namespace custos {
namespace {

bool IsIdChar(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' ||
         c == '_' || c == '.';
}

bool IsIdEdge(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c);
}

}  // namespace

bool IsValidResourceId(absl::string_view id) {
  if (id.empty() || id.size() > 63) return false;
  if (!IsIdEdge(id.front()) || !IsIdEdge(id.back())) return false;
  for (char c : id) {
    if (!IsIdChar(c)) return false;
  }
  return true;
}

}  // namespace custos
