#include "services/access_service/permission_evaluator.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/resource_name.h"

namespace custos::access {
namespace {

using customers::v1::CustomerRelation;
using customers::v1::ManagementType;

// Grants in a stable order (by permission), reasons in the order added.
class GrantList {
 public:
  void Add(const std::string& permission, std::string reason) {
    auto& reasons = grants_[permission];
    if (std::find(reasons.begin(), reasons.end(), reason) == reasons.end()) {
      reasons.push_back(std::move(reason));
    }
  }
  void Drop(const std::string& permission) { grants_.erase(permission); }
  const absl::flat_hash_map<std::string, std::vector<std::string>>& grants()
      const {
    return grants_;
  }
  void WriteTo(v1::ResolvePermissionsResponse* response) const {
    std::vector<std::string> names;
    for (const auto& [name, unused] : grants_) names.push_back(name);
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      v1::Grant* grant = response->add_grants();
      grant->set_permission(name);
      for (const std::string& reason : grants_.at(name)) {
        grant->add_reasons(reason);
      }
    }
  }

 private:
  absl::flat_hash_map<std::string, std::vector<std::string>> grants_;
};

// R9: why a pilot releases `permission` to this user on this site, if it
// does (generally available, or enrolling the user or the site).
std::vector<std::string> PilotReasons(const std::vector<v1::Pilot>& pilots,
                                      const std::string& permission,
                                      const std::string& user_participant,
                                      const std::string& site_participant) {
  std::vector<std::string> reasons;
  for (const v1::Pilot& pilot : pilots) {
    if (std::find(pilot.permissions().begin(), pilot.permissions().end(),
                  permission) == pilot.permissions().end()) {
      continue;
    }
    if (pilot.stage() == v1::Pilot::STAGE_GENERAL_AVAILABILITY) {
      reasons.push_back(
          absl::StrCat("pilot ", pilot.name(), " (general availability)"));
      continue;
    }
    for (const std::string& participant : pilot.participants()) {
      if (participant == user_participant) {
        reasons.push_back(
            absl::StrCat("pilot ", pilot.name(), " (user participant)"));
      } else if (participant == site_participant) {
        reasons.push_back(
            absl::StrCat("pilot ", pilot.name(), " (site participant)"));
      }
    }
  }
  return reasons;
}

}  // namespace

std::string SiteVersionsTag(const std::string& policy_fingerprint,
                            VersionStamp site, VersionStamp pilots) {
  return absl::StrCat(policy_fingerprint, "|s", site.order, ".", site.id, "|l",
                      pilots.order, ".", pilots.id);
}

std::string CustomerVersionsTag(const std::string& policy_fingerprint,
                                const std::string& customers_incarnation,
                                VersionStamp customer) {
  return absl::StrCat(policy_fingerprint, "|c", customers_incarnation, ".",
                      customer.order, ".", customer.id);
}

v1::ResolvePermissionsResponse EvaluateSite(const Policy& policy,
                                            const Subject& subject,
                                            const std::string& site_id,
                                            const SiteFacts& facts) {
  GrantList grants;
  if (facts.exists) {
    if (facts.member) {
      const std::string reason =
          absl::StrCat("role ", v1::SiteRole_Name(facts.member->role()));
      for (const std::string& p : policy.PermissionsOf(facts.member->role())) {
        grants.Add(p, reason);
      }
    }
    for (const std::string& role : subject.staff_roles) {
      for (const std::string& p : policy.PermissionsOfStaffRole(role)) {
        grants.Add(p, absl::StrCat("staff role ", role));
      }
    }
    // R9: a pilot-gated permission stays only through a pilot that covers
    // it and is generally available or enrols this user or this site.
    const std::string user_participant = UserName(subject.user_id);
    const std::string site_participant = absl::StrCat("sites/", site_id);
    std::vector<std::string> gated;
    for (const auto& [permission, unused] : grants.grants()) {
      if (policy.IsPilotGated(permission)) gated.push_back(permission);
    }
    for (const std::string& permission : gated) {
      std::vector<std::string> reasons = PilotReasons(
          facts.all_pilots, permission, user_participant, site_participant);
      if (reasons.empty()) {
        grants.Drop(permission);
        continue;
      }
      for (std::string& reason : reasons) {
        grants.Add(permission, std::move(reason));
      }
    }
  }
  v1::ResolvePermissionsResponse answer;
  grants.WriteTo(&answer);
  answer.set_versions(
      SiteVersionsTag(policy.fingerprint(), facts.site, facts.pilots));
  return answer;
}

v1::ResolvePermissionsResponse EvaluateCustomer(const Policy& policy,
                                                const CustomerFacts& facts) {
  GrantList grants;
  if (facts.exists) {
    const ManagementType type = facts.management_type;
    const std::string type_reason = absl::StrCat(
        "management type ", customers::v1::ManagementType_Name(type));
    // R1: who may enter the customer's portal, by management type.
    const bool customer_manages =
        type == customers::v1::MANAGEMENT_TYPE_CUSTOMER ||
        type == customers::v1::MANAGEMENT_TYPE_CO_MANAGED;
    const bool partner_manages =
        type == customers::v1::MANAGEMENT_TYPE_PARTNER ||
        type == customers::v1::MANAGEMENT_TYPE_CO_MANAGED;
    const CustomerRelation relation = facts.relation;
    const bool partner_admin =
        relation == customers::v1::CUSTOMER_RELATION_PARTNER_ADMIN;
    const bool partner_user =
        partner_admin ||
        relation == customers::v1::CUSTOMER_RELATION_PARTNER_USER;
    if (relation == customers::v1::CUSTOMER_RELATION_CUSTOMER_USER &&
        customer_manages) {
      grants.Add("portal.login", "customer user");
      grants.Add("portal.login", type_reason);
    }
    if (partner_user) {
      const std::string role_reason =
          partner_admin ? "partner admin of the linked partner"
                        : "partner user of the linked partner";
      if (partner_manages) {
        grants.Add("portal.manage_customer", role_reason);
        grants.Add("portal.manage_customer", type_reason);
      }
      grants.Add("customer.view", role_reason);
      if (partner_admin) grants.Add("customer.update", role_reason);
    }
  }
  v1::ResolvePermissionsResponse answer;
  grants.WriteTo(&answer);
  answer.set_versions(CustomerVersionsTag(policy.fingerprint(),
                                          facts.incarnation, facts.version));
  return answer;
}

}  // namespace custos::access
