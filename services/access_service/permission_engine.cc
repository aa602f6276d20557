#include "services/access_service/permission_engine.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"
#include "services/access_service/access_store.h"

namespace custos::access {
namespace {

using customers::v1::CustomerRelation;
using customers::v1::ManagementType;

// Bumped when the cached value's format changes, so old entries are ignored.
constexpr char kRedisPrefix[] = "custos:perm:v1:";

std::string SiteVersions(const std::string& fingerprint, int64_t site,
                         int64_t pilots) {
  return absl::StrCat(fingerprint, "|s", site, "|l", pilots);
}

std::string CustomerVersions(const std::string& fingerprint, int64_t customer) {
  return absl::StrCat(fingerprint, "|c", customer);
}

std::string CacheKey(const Subject& subject, const Resource& resource) {
  return absl::StrCat(
      resource.kind == Resource::Kind::kSite ? "sites/" : "customers/",
      resource.id, "|", subject.user_id, "|",
      absl::StrJoin(subject.staff_roles, ","));
}

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

std::string ManagementTypeName(ManagementType type) {
  return customers::v1::ManagementType_Name(type);
}

}  // namespace

struct PermissionEngine::Flight {
  absl::Notification done;
  absl::StatusOr<PermissionEngine::Answer> answer;
};

PermissionEngine::PermissionEngine(Database* db, const Policy* policy,
                                   CustomerFactsSource* customers,
                                   RedisClient* redis, const Clock* clock,
                                   PermissionEngineOptions options)
    : db_(db),
      policy_(policy),
      customers_(customers),
      redis_(redis),
      clock_(clock),
      options_(options) {}

absl::StatusOr<PermissionEngine::Answer> PermissionEngine::Resolve(
    const Subject& subject, const Resource& resource,
    const Freshness& freshness) {
  // A token from a write this process has not applied even after reading
  // the store's sequence: nothing cached can be trusted to include it.
  const bool fully_consistent =
      freshness.fully_consistent || AheadOfStore(freshness.at_least_seq);
  const std::string key = CacheKey(subject, resource);
  if (fully_consistent) {
    ASSIGN_OR_RETURN(Answer answer, Compute(subject, resource));
    Remember(key, answer);
    return answer;
  }
  ASSIGN_OR_RETURN(const std::string versions, CurrentVersions(resource));
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = memory_.find(key);
    if (it != memory_.end() && it->second.answer->versions() == versions &&
        clock_->Now() < it->second.expires) {
      ++stats_.memory_hits;
      return it->second.answer;
    }
  }
  if (redis_->enabled()) {
    absl::StatusOr<std::optional<std::string>> cached =
        redis_->Get(absl::StrCat(kRedisPrefix, key));
    auto answer = std::make_shared<v1::ResolvePermissionsResponse>();
    // Errors only cost speed: the answer is computed below.
    if (cached.ok() && cached->has_value() &&
        answer->ParseFromString(**cached) && answer->versions() == versions) {
      absl::MutexLock lock(&cache_mu_);
      ++stats_.redis_hits;
      if (memory_.size() >= options_.memory_entries) memory_.clear();
      memory_[key] = Entry{answer, clock_->Now() + options_.ttl};
      return Answer(std::move(answer));
    }
  }
  ASSIGN_OR_RETURN(Answer answer, ComputeOnce(key, subject, resource));
  if (answer->versions() != versions) {
    // The shared computation read older facts than this caller must see
    // (a write landed while it ran): compute again, alone.
    ASSIGN_OR_RETURN(answer, Compute(subject, resource));
    Remember(key, answer);
  }
  return answer;
}

PermissionEngine::Answer PermissionEngine::ResolveFromMemory(
    const Subject& subject, const Resource& resource,
    const Freshness& freshness) {
  if (freshness.fully_consistent ||
      freshness.at_least_seq > applied_sequence()) {
    return nullptr;
  }
  std::optional<std::string> versions = KnownVersions(resource);
  if (!versions) return nullptr;
  const std::string key = CacheKey(subject, resource);
  absl::MutexLock lock(&cache_mu_);
  auto it = memory_.find(key);
  if (it == memory_.end() || it->second.answer->versions() != *versions ||
      clock_->Now() >= it->second.expires) {
    return nullptr;
  }
  ++stats_.memory_hits;
  return it->second.answer;
}

std::optional<std::string> PermissionEngine::KnownVersions(
    const Resource& resource) const {
  const std::string& fingerprint = policy_->fingerprint();
  absl::MutexLock lock(&versions_mu_);
  if (resource.kind == Resource::Kind::kSite) {
    auto it = site_versions_.find(resource.id);
    if (it == site_versions_.end() || pilots_version_ < 0) return std::nullopt;
    return SiteVersions(fingerprint, it->second, pilots_version_);
  }
  auto it = customer_versions_.find(resource.id);
  if (it == customer_versions_.end()) return std::nullopt;
  return CustomerVersions(fingerprint, it->second);
}

absl::StatusOr<PermissionEngine::Answer> PermissionEngine::ComputeOnce(
    const std::string& key, const Subject& subject, const Resource& resource) {
  std::shared_ptr<Flight> flight;
  bool leader = false;
  {
    absl::MutexLock lock(&cache_mu_);
    auto [it, inserted] = flights_.try_emplace(key);
    if (inserted) it->second = std::make_shared<Flight>();
    flight = it->second;
    leader = inserted;
  }
  if (!leader) {
    flight->done.WaitForNotification();
    return flight->answer;
  }
  flight->answer = Compute(subject, resource);
  if (flight->answer.ok()) Remember(key, *flight->answer);
  {
    absl::MutexLock lock(&cache_mu_);
    flights_.erase(key);
  }
  flight->done.Notify();
  return flight->answer;
}

void PermissionEngine::Remember(const std::string& key, const Answer& answer) {
  {
    absl::MutexLock lock(&cache_mu_);
    if (memory_.size() >= options_.memory_entries) memory_.clear();
    memory_[key] = Entry{answer, clock_->Now() + options_.ttl};
  }
  // Entries carry their versions and are checked on every read, so an
  // entry written late by a slow computation is ignored, never served.
  if (redis_->enabled()) {
    redis_
        ->SetEx(absl::StrCat(kRedisPrefix, key), answer->SerializeAsString(),
                options_.ttl)
        .IgnoreError();
  }
}

absl::StatusOr<std::string> PermissionEngine::CurrentVersions(
    const Resource& resource) {
  if (std::optional<std::string> known = KnownVersions(resource)) {
    return *known;
  }
  // Not known yet in this process: load, and keep the larger (a write may
  // have raised it meanwhile). Loaded again if the versions were forgotten
  // while loading.
  while (true) {
    const int64_t loaded_in = generation();
    std::string loaded;
    RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
      if (resource.kind == Resource::Kind::kSite) {
        ASSIGN_OR_RETURN(int64_t site,
                         AccessStore::SiteVersion(db, resource.id));
        ASSIGN_OR_RETURN(int64_t pilots,
                         AccessStore::Counter(db, AccessStore::kPilotsCounter));
        SiteChanged(resource.id, site, loaded_in);
        PilotsChanged(pilots, loaded_in);
      } else {
        ASSIGN_OR_RETURN(int64_t customer,
                         AccessStore::CustomerVersion(db, resource.id));
        CustomerChanged(resource.id, customer, loaded_in);
      }
      return absl::OkStatus();
    }));
    if (std::optional<std::string> known = KnownVersions(resource)) {
      return *known;
    }
  }
}

absl::StatusOr<PermissionEngine::Answer> PermissionEngine::Compute(
    const Subject& subject, const Resource& resource) {
  {
    absl::MutexLock lock(&cache_mu_);
    ++stats_.computed;
  }
  ASSIGN_OR_RETURN(v1::ResolvePermissionsResponse answer,
                   resource.kind == Resource::Kind::kSite
                       ? ComputeSite(subject, resource.id)
                       : ComputeCustomer(subject, resource.id));
  return std::make_shared<const v1::ResolvePermissionsResponse>(
      std::move(answer));
}

absl::StatusOr<v1::ResolvePermissionsResponse> PermissionEngine::ComputeSite(
    const Subject& subject, const std::string& site_id) {
  int64_t site_version = 0;
  int64_t pilots_version = 0;
  std::optional<v1::SiteMember> member;
  std::vector<v1::Pilot> pilots;
  const int64_t loaded_in = generation();
  // One snapshot: the versions tag exactly the facts read with them.
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(site_version, AccessStore::SiteVersion(db, site_id));
    ASSIGN_OR_RETURN(pilots_version,
                     AccessStore::Counter(db, AccessStore::kPilotsCounter));
    if (site_version == 0) return absl::OkStatus();  // no such site
    ASSIGN_OR_RETURN(member,
                     AccessStore::FindMember(db, site_id, subject.user_id));
    ASSIGN_OR_RETURN(pilots, AccessStore::ListAllPilots(db));
    return absl::OkStatus();
  }));
  SiteChanged(site_id, site_version, loaded_in);
  PilotsChanged(pilots_version, loaded_in);

  GrantList grants;
  if (site_version != 0) {
    if (member) {
      const std::string reason =
          absl::StrCat("role ", v1::SiteRole_Name(member->role()));
      for (const std::string& p : policy_->PermissionsOf(member->role())) {
        grants.Add(p, reason);
      }
    }
    for (const std::string& role : subject.staff_roles) {
      for (const std::string& p : policy_->PermissionsOfStaffRole(role)) {
        grants.Add(p, absl::StrCat("staff role ", role));
      }
    }
    // R9: a pilot-gated permission stays only through a pilot that covers
    // it and is generally available or enrols this user or this site.
    const std::string user_participant =
        absl::StrCat("users/", subject.user_id);
    const std::string site_participant = absl::StrCat("sites/", site_id);
    std::vector<std::string> gated;
    for (const auto& [permission, unused] : grants.grants()) {
      if (policy_->IsPilotGated(permission)) gated.push_back(permission);
    }
    for (const std::string& permission : gated) {
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
      if (reasons.empty()) {
        grants.Drop(permission);
      } else {
        for (std::string& reason : reasons) {
          grants.Add(permission, std::move(reason));
        }
      }
    }
  }
  v1::ResolvePermissionsResponse answer;
  grants.WriteTo(&answer);
  answer.set_versions(
      SiteVersions(policy_->fingerprint(), site_version, pilots_version));
  return answer;
}

absl::StatusOr<v1::ResolvePermissionsResponse>
PermissionEngine::ComputeCustomer(const Subject& subject,
                                  const std::string& customer_id) {
  const int64_t loaded_in = generation();
  ASSIGN_OR_RETURN(CustomerFacts facts,
                   customers_->Get(customer_id, subject.user_id));
  CustomerChanged(customer_id, facts.version, loaded_in);
  GrantList grants;
  if (facts.exists) {
    const ManagementType type = facts.management_type;
    const std::string type_reason =
        absl::StrCat("management type ", ManagementTypeName(type));
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
  answer.set_versions(CustomerVersions(policy_->fingerprint(), facts.version));
  return answer;
}

// After versions were forgotten, what is known again was read from
// snapshots that include every write the forgetting sync saw: raising it
// (max) is safe, but a value from before the sync must not fill an empty
// slot, where it could stand for a newer write it never saw.
void PermissionEngine::SiteChanged(const std::string& site_id, int64_t version,
                                   int64_t generation) {
  absl::MutexLock lock(&versions_mu_);
  auto it = site_versions_.find(site_id);
  if (it == site_versions_.end()) {
    if (generation != generation_) return;
    it = site_versions_.emplace(site_id, version).first;
  }
  it->second = std::max(it->second, version);
}

void PermissionEngine::CustomerChanged(const std::string& customer_id,
                                       int64_t version, int64_t generation) {
  absl::MutexLock lock(&versions_mu_);
  auto it = customer_versions_.find(customer_id);
  if (it == customer_versions_.end()) {
    if (generation != generation_) return;
    it = customer_versions_.emplace(customer_id, version).first;
  }
  it->second = std::max(it->second, version);
}

void PermissionEngine::PilotsChanged(int64_t version, int64_t generation) {
  absl::MutexLock lock(&versions_mu_);
  if (pilots_version_ < 0 && generation != generation_) return;
  pilots_version_ = std::max(pilots_version_, version);
}

int64_t PermissionEngine::generation() const {
  absl::MutexLock lock(&versions_mu_);
  return generation_;
}

void PermissionEngine::WriteSequenceAdvanced(int64_t seq) {
  absl::MutexLock lock(&versions_mu_);
  if (seq <= applied_seq_) return;
  pending_seqs_.insert(seq);
  ApplyPending();
}

int64_t PermissionEngine::applied_sequence() const {
  absl::MutexLock lock(&versions_mu_);
  return applied_seq_;
}

absl::Status PermissionEngine::SyncWithStore() {
  int64_t stored = 0;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(stored,
                     AccessStore::Counter(db, AccessStore::kWriteSequence));
    return absl::OkStatus();
  }));
  absl::MutexLock lock(&versions_mu_);
  if (stored <= applied_seq_) return absl::OkStatus();
  // Some write up to `stored` was not applied here: anything known may be
  // older than it. Versions read from now on come from snapshots that
  // include every write up to `stored`.
  site_versions_.clear();
  customer_versions_.clear();
  pilots_version_ = -1;
  ++generation_;
  applied_seq_ = stored;
  pending_seqs_.erase(pending_seqs_.begin(), pending_seqs_.upper_bound(stored));
  ApplyPending();
  return absl::OkStatus();
}

void PermissionEngine::ApplyPending() {
  while (!pending_seqs_.empty() && *pending_seqs_.begin() == applied_seq_ + 1) {
    pending_seqs_.erase(pending_seqs_.begin());
    ++applied_seq_;
  }
}

bool PermissionEngine::AheadOfStore(int64_t at_least_seq) {
  if (at_least_seq <= applied_sequence()) return false;
  // Errors only cost speed: the answer is then computed from the store.
  SyncWithStore().IgnoreError();
  return at_least_seq > applied_sequence();
}

PermissionEngine::Stats PermissionEngine::stats() const {
  absl::MutexLock lock(&cache_mu_);
  return stats_;
}

}  // namespace custos::access
