#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_POLICY_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_POLICY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "custos/access/v1/access_service.pb.h"

namespace custos::access {

namespace v1 = ::custos::access::v1;

// The role matrix (DESIGN "Permissions"), loaded once at start.
// Immutable, thread-safe.
class Policy {
 public:
  // Parses text-format `text`. Errors are INVALID_ARGUMENT with the message
  // "<source>:<line>:<column>: <problem>": syntax errors, unknown role
  // names (a SiteRole name or a staff role: customer_care, platform_admin,
  // service), a role granting an undeclared permission, duplicate
  // permissions or roles, malformed permission names, a site role missing.
  static absl::StatusOr<std::unique_ptr<const Policy>> Parse(
      absl::string_view text, absl::string_view source);
  static absl::StatusOr<std::unique_ptr<const Policy>> LoadFile(
      const std::string& path);

  const v1::Policy& proto() const { return proto_; }
  bool IsKnownPermission(absl::string_view permission) const;
  // R9: available only through a pilot until it is generally available.
  bool IsPilotGated(absl::string_view permission) const;
  // Permissions granted by a site role / a staff role (empty if unknown).
  const std::vector<std::string>& PermissionsOf(v1::SiteRole role) const;
  const std::vector<std::string>& PermissionsOfStaffRole(
      absl::string_view staff_role) const;
  // 16 hex digits of SHA-256 over the policy: part of every cached answer's
  // versions, so a policy change invalidates every cached answer.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  Policy() = default;

  v1::Policy proto_;
  absl::flat_hash_set<std::string> permissions_;
  absl::flat_hash_set<std::string> gated_;
  absl::flat_hash_map<std::string, std::vector<std::string>> grants_;
  std::string fingerprint_;
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_POLICY_H_
