#include "common/consistency_token.h"

#include <vector>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace custos {
namespace {

// Bumped if the layout below changes; older tokens are then refused.
constexpr absl::string_view kFormat = "ct1";

absl::string_view StoreName(ConsistencyToken::Store store) {
  return store == ConsistencyToken::Store::kAccess ? "a" : "c";
}

bool IsHex(absl::string_view text) {
  if (text.empty() || text.size() > 32) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::string ConsistencyToken::Encode() const {
  return absl::WebSafeBase64Escape(absl::StrCat(kFormat, ".", StoreName(store),
                                                ".", incarnation, ".", sequence,
                                                ".", change_id));
}

absl::StatusOr<ConsistencyToken> ConsistencyToken::Decode(
    absl::string_view text) {
  std::string raw;
  if (text.size() > 200 || !absl::WebSafeBase64Unescape(text, &raw)) {
    return absl::InvalidArgumentError("is not a consistency token");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(raw, '.');
  ConsistencyToken token;
  if (parts.size() != 5 || parts[0] != kFormat || !IsHex(parts[2]) ||
      !absl::SimpleAtoi(parts[3], &token.sequence) ||
      !absl::SimpleAtoi(parts[4], &token.change_id) || token.sequence < 0) {
    return absl::InvalidArgumentError("is not a consistency token");
  }
  if (parts[1] == "a") {
    token.store = Store::kAccess;
  } else if (parts[1] == "c") {
    token.store = Store::kCustomers;
  } else {
    return absl::InvalidArgumentError("is not a consistency token");
  }
  token.incarnation = std::string(parts[2]);
  return token;
}

int64_t NewVersionId() {
  thread_local absl::BitGen gen;
  return absl::Uniform<int64_t>(gen, 1, INT64_MAX);
}

}  // namespace custos
