#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_EVALUATOR_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_EVALUATOR_H_

#include <optional>
#include <string>
#include <vector>

#include "custos/access/v1/access_service.pb.h"
#include "services/access_service/customer_facts.h"
#include "services/access_service/fact_versions.h"
#include "services/access_service/policy.h"

namespace custos::access {

// Whose permissions: a user id plus the staff roles its token carries.
struct Subject {
  std::string user_id;
  std::vector<std::string> staff_roles;  // sorted, unique
};

// A resource permissions are asked about.
struct Resource {
  enum class Kind { kSite, kCustomer };
  Kind kind = Kind::kSite;
  std::string id;
};

// What an answer on `sites/{sid}` is computed from, read in one snapshot.
struct SiteFacts {
  bool exists = false;
  VersionStamp site;
  VersionStamp pilots;
  std::optional<v1::SiteMember> member;  // the subject's membership
  std::vector<v1::Pilot> all_pilots;
};

// The versions tag an answer carries: it may be served only while the
// facts' current versions give the same tag.
std::string SiteVersionsTag(const std::string& policy_fingerprint,
                            VersionStamp site, VersionStamp pilots);
std::string CustomerVersionsTag(const std::string& policy_fingerprint,
                                const std::string& customers_incarnation,
                                VersionStamp customer);

// Pure evaluation of policy + facts into grants with reasons (DESIGN
// "Resolution"): roles and staff roles through the policy, R9's pilot gate,
// and R1 on customers. No I/O; `versions` is set from the facts.
v1::ResolvePermissionsResponse EvaluateSite(const Policy& policy,
                                            const Subject& subject,
                                            const std::string& site_id,
                                            const SiteFacts& facts);
v1::ResolvePermissionsResponse EvaluateCustomer(const Policy& policy,
                                                const CustomerFacts& facts);

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_EVALUATOR_H_
