#ifndef CUSTOS_COMMON_LOGIC_HELPERS_H_
#define CUSTOS_COMMON_LOGIC_HELPERS_H_

// Small pieces every service's domain logic needs: input validation that
// names the field, the standard refusals, request_id replay, audit JSON.

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/database.h"
#include "common/idempotency_store.h"
#include "common/pagination.h"
#include "common/status_macros.h"
#include "google/protobuf/message.h"

namespace custos {

// The message as JSON with proto field names, for audit events.
std::string ToAuditJson(const google::protobuf::Message& message);

// PERMISSION_DENIED "the caller may not <action> <resource>".
absl::Status Denied(absl::string_view action, absl::string_view resource);

// ABORTED with reason STALE_ETAG.
absl::Status StaleEtag(absl::string_view resource);

bool HasControlCharacter(absl::string_view value);

// At most 200 bytes, no control characters, no surrounding whitespace.
absl::Status ValidateDisplayName(absl::string_view field,
                                 absl::string_view value, bool required);

// Empty, or printable ASCII without spaces, at most 128 characters.
absl::Status ValidateRequestId(absl::string_view value);

// Required, and a valid resource id (common/resource_name.h).
absl::Status ValidateUserId(absl::string_view field, absl::string_view value);

// Inside a create's transaction: true, with `response` filled in, when this
// request_id was already answered for the same request; INVALID_ARGUMENT on
// request_id when it was used for a different request.
template <typename Response>
absl::StatusOr<bool> Replayed(Connection& db, const IdempotencyKey& key,
                              const std::string& fingerprint,
                              Response* response) {
  if (key.request_id.empty()) return false;
  ASSIGN_OR_RETURN(std::optional<std::string> stored,
                   FindReplay(db, key, fingerprint));
  if (!stored) return false;
  if (!response->ParseFromString(*stored)) {
    return absl::InternalError("stored response for request_id is corrupt");
  }
  return true;
}

// Records a create's response under its request_id (no-op without one).
absl::Status Remember(Connection& db, const IdempotencyKey& key,
                      const std::string& fingerprint,
                      const google::protobuf::Message& response,
                      absl::Time now);

// The part of a resource name after its last '/'.
inline absl::string_view LastSegment(absl::string_view name) {
  size_t slash = name.rfind('/');
  return slash == absl::string_view::npos ? name : name.substr(slash + 1);
}

// One page of an id-keyed listing: decodes the token, asks `list(after,
// limit)` for one extra row to know whether another page exists, passes the
// rows to `add` and returns the next page token ("" on the last page).
template <typename T, typename List, typename Add>
absl::StatusOr<std::string> ListPage(absl::string_view query, int page_size,
                                     const std::string& page_token, List list,
                                     Add add) {
  std::string after;
  if (!page_token.empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> key,
                     DecodePageToken(page_token, query, 1));
    after = key[0];
  }
  ASSIGN_OR_RETURN(std::vector<T> rows, list(after, page_size + 1));
  std::string next;
  if (static_cast<int>(rows.size()) > page_size) {
    rows.resize(page_size);
    next =
        EncodePageToken(query, {std::string(LastSegment(rows.back().name()))});
  }
  for (T& row : rows) add(std::move(row));
  return next;
}

}  // namespace custos

#endif  // CUSTOS_COMMON_LOGIC_HELPERS_H_
