#include "services/access_service/permission_engine.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace custos::access {

std::string AnswerKey(const Subject& subject, const Resource& resource) {
  return absl::StrCat(
      resource.kind == Resource::Kind::kSite ? "sites/" : "customers/",
      resource.id, "|", subject.user_id, "|",
      absl::StrJoin(subject.staff_roles, ","));
}

PermissionEngine::PermissionEngine(const Policy* policy, SiteFactsLoader* sites,
                                   CustomerFactsSource* customers,
                                   CustomerFeedFollower* feed,
                                   FactVersions* versions, AnswerCache* cache)
    : policy_(policy),
      sites_(sites),
      customers_(customers),
      feed_(feed),
      versions_(versions),
      cache_(cache) {}

bool PermissionEngine::NeedsFullConsistency(const Resource& resource,
                                            const Freshness& freshness) {
  if (freshness.fully_consistent) return true;
  if (resource.kind == Resource::Kind::kCustomer) {
    // Cached customer answers only while the change feed is read in time,
    // and only when they include the caller's write.
    if (!feed_->Fresh()) return true;
    return freshness.customers_token &&
           !feed_->Reflects(*freshness.customers_token);
  }
  if (freshness.at_least_seq <= versions_->applied_sequence()) return false;
  // A token from a write this process has not applied even after reading
  // the store's sequence: nothing cached can be trusted to include it.
  // Errors only cost speed: the answer is then computed from the store.
  SyncWithStore().IgnoreError();
  return freshness.at_least_seq > versions_->applied_sequence();
}

absl::StatusOr<PermissionEngine::Answer> PermissionEngine::Resolve(
    const Subject& subject, const Resource& resource,
    const Freshness& freshness) {
  const std::string key = AnswerKey(subject, resource);
  if (NeedsFullConsistency(resource, freshness)) {
    ASSIGN_OR_RETURN(Answer answer, Compute(subject, resource));
    cache_->Remember(key, answer);
    return answer;
  }
  ASSIGN_OR_RETURN(std::optional<std::string> versions,
                   CurrentVersions(resource));
  if (!versions) {
    // A customer whose version is not known yet: its facts say it. With a
    // token, alone: a shared computation may have read before the write.
    if (freshness.customers_token) {
      ASSIGN_OR_RETURN(Answer answer, Compute(subject, resource));
      cache_->Remember(key, answer);
      return answer;
    }
    return cache_->ComputeOnce(key, [&] { return Compute(subject, resource); });
  }
  if (Answer answer = cache_->FromMemory(key, *versions)) return answer;
  if (Answer answer = cache_->FromRedis(key, *versions)) return answer;
  ASSIGN_OR_RETURN(Answer answer, cache_->ComputeOnce(key, [&] {
    return Compute(subject, resource);
  }));
  if (answer->versions() != *versions) {
    // The shared computation read other facts than this caller must see
    // (a write landed while it ran): compute again, alone.
    ASSIGN_OR_RETURN(answer, Compute(subject, resource));
    cache_->Remember(key, answer);
  }
  return answer;
}

PermissionEngine::Answer PermissionEngine::ResolveFromMemory(
    const Subject& subject, const Resource& resource,
    const Freshness& freshness) {
  if (freshness.fully_consistent || freshness.customers_token ||
      (freshness.at_least_seq > 0 &&
       freshness.at_least_seq > versions_->applied_sequence())) {
    return nullptr;
  }
  if (resource.kind == Resource::Kind::kCustomer && !feed_->Fresh()) {
    return nullptr;
  }
  std::optional<std::string> versions = KnownVersions(resource);
  if (!versions) return nullptr;
  return cache_->FromMemory(AnswerKey(subject, resource), *versions);
}

std::optional<std::string> PermissionEngine::KnownVersions(
    const Resource& resource) const {
  const std::string& fingerprint = policy_->fingerprint();
  if (resource.kind == Resource::Kind::kSite) {
    auto site_and_pilots = versions_->SiteAndPilots(resource.id);
    if (!site_and_pilots) return std::nullopt;
    return SiteVersionsTag(fingerprint, site_and_pilots->first,
                           site_and_pilots->second);
  }
  std::optional<VersionStamp> customer = versions_->Customer(resource.id);
  if (!customer) return std::nullopt;
  return CustomerVersionsTag(fingerprint, feed_->incarnation(), *customer);
}

absl::StatusOr<std::optional<std::string>> PermissionEngine::CurrentVersions(
    const Resource& resource) {
  if (std::optional<std::string> known = KnownVersions(resource)) {
    return known;
  }
  if (resource.kind == Resource::Kind::kCustomer) return std::nullopt;
  // Not known yet in this process: load, and keep the larger (a write may
  // have raised it meanwhile). Loaded again if the versions were forgotten
  // while loading.
  while (true) {
    const int64_t loaded_in = versions_->generations().access;
    ASSIGN_OR_RETURN(SiteFactsLoader::Versions loaded,
                     sites_->LoadVersions(resource.id));
    versions_->RaiseSite(resource.id, loaded.site, loaded_in);
    versions_->RaisePilots(loaded.pilots, loaded_in);
    if (std::optional<std::string> known = KnownVersions(resource)) {
      return known;
    }
  }
}

absl::StatusOr<PermissionEngine::Answer> PermissionEngine::Compute(
    const Subject& subject, const Resource& resource) {
  cache_->CountComputed();
  const FactVersions::Generations loaded_in = versions_->generations();
  if (resource.kind == Resource::Kind::kSite) {
    ASSIGN_OR_RETURN(SiteFacts facts,
                     sites_->Load(resource.id, subject.user_id));
    versions_->RaiseSite(resource.id, facts.site, loaded_in.access);
    versions_->RaisePilots(facts.pilots, loaded_in.access);
    return std::make_shared<const v1::ResolvePermissionsResponse>(
        EvaluateSite(*policy_, subject, resource.id, facts));
  }
  ASSIGN_OR_RETURN(CustomerFacts facts,
                   customers_->Get(resource.id, subject.user_id));
  versions_->RaiseCustomer(resource.id, facts.version, loaded_in.customers);
  return std::make_shared<const v1::ResolvePermissionsResponse>(
      EvaluateCustomer(*policy_, facts));
}

void PermissionEngine::Publish(const WrittenChanges& changes,
                               FactVersions::Generations generations) {
  for (const auto& [site, version] : changes.sites) {
    versions_->RaiseSite(site, version, generations.access);
  }
  if (changes.pilots)
    versions_->RaisePilots(*changes.pilots, generations.access);
  if (changes.seq > 0) versions_->WriteSequenceAdvanced(changes.seq);
}

absl::Status PermissionEngine::SyncWithStore() {
  const int64_t applied_before = versions_->applied_sequence();
  ASSIGN_OR_RETURN(int64_t stored, sites_->WriteSequence());
  versions_->SyncTo(stored, applied_before);
  return absl::OkStatus();
}

}  // namespace custos::access
