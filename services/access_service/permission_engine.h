#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_ENGINE_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_ENGINE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/consistency_token.h"
#include "services/access_service/answer_cache.h"
#include "services/access_service/customer_facts.h"
#include "services/access_service/customer_feed.h"
#include "services/access_service/fact_versions.h"
#include "services/access_service/permission_evaluator.h"
#include "services/access_service/policy.h"
#include "services/access_service/site_facts_loader.h"

namespace custos::access {

// How fresh an answer must be (custos.access.v1.Consistency).
struct Freshness {
  bool fully_consistent = false;
  // An access consistency token's write sequence; 0 for none.
  int64_t at_least_seq = 0;
  // A CustomerManagementService consistency token (customers/ answers).
  std::optional<ConsistencyToken> customers_token;
};

// What one committed write changed, told to the engine before the write is
// acknowledged (PermissionEngine::Publish).
struct WrittenChanges {
  std::vector<std::pair<std::string, VersionStamp>> sites;
  std::optional<VersionStamp> pilots;
  // The access write sequence number it took.
  int64_t seq = 0;
};

// Resolves permission sets (DESIGN "Resolution") and caches them, composed
// of: SiteFactsLoader and CustomerFactsSource (facts, each read in one
// snapshot), EvaluateSite / EvaluateCustomer (pure policy evaluation),
// FactVersions (the newest versions known), AnswerCache (memory, Redis,
// single flight) and CustomerFeedFollower (how current customer versions
// are).
//
// An answer is tagged with the versions of the facts it came from and served
// from a cache only while those are the newest known. Known versions are
// raised by every write before it is acknowledged (Publish), by writes of
// other replicas through SyncWithStore, and by customer changes through the
// change feed and NotifyCustomerChanged. Customer answers are served from a
// cache only while the feed is fresh; otherwise they are read through.
// Thread-safe.
class PermissionEngine {
 public:
  using Answer = AnswerCache::Answer;

  // REQUIRES: all outlive the engine.
  PermissionEngine(const Policy* policy, SiteFactsLoader* sites,
                   CustomerFactsSource* customers, CustomerFeedFollower* feed,
                   FactVersions* versions, AnswerCache* cache);

  absl::StatusOr<Answer> Resolve(const Subject& subject,
                                 const Resource& resource,
                                 const Freshness& freshness);

  // The answer when memory holds a current one; null when answering would
  // need the store, Redis or a peer. Never waits.
  Answer ResolveFromMemory(const Subject& subject, const Resource& resource,
                           const Freshness& freshness);

  // The no-stale protocol, for every write: called after the write with
  // `generations` read before it began, and before it is acknowledged.
  // Raises the versions it wrote, then marks its sequence applied.
  void Publish(const WrittenChanges& changes,
               FactVersions::Generations generations);
  // An outbox notice of customer change `version`: raises a customer
  // version already known, never fills an unknown one.
  void CustomerNoticed(const std::string& customer_id, VersionStamp version) {
    versions_->RaiseKnownCustomer(customer_id, version);
  }
  FactVersions::Generations generations() const {
    return versions_->generations();
  }
  int64_t applied_sequence() const { return versions_->applied_sequence(); }

  // Reads the store's write sequence; when it is past applied_sequence()
  // (writes through other replicas), forgets the access facts known.
  absl::Status SyncWithStore();

  CustomerFeedFollower* feed() { return feed_; }
  AnswerCache::Stats stats() const { return cache_->stats(); }

 private:
  // The versions tag a fresh answer must carry now, when known in memory.
  std::optional<std::string> KnownVersions(const Resource& resource) const;
  // The same; loads site versions that are not known yet. nullopt for a
  // customer whose version is not known (its facts must be read).
  absl::StatusOr<std::optional<std::string>> CurrentVersions(
      const Resource& resource);
  // Whether the caller's freshness needs the stores and peers now.
  bool NeedsFullConsistency(const Resource& resource,
                            const Freshness& freshness);
  // Reads the facts and evaluates; raises the versions read.
  absl::StatusOr<Answer> Compute(const Subject& subject,
                                 const Resource& resource);

  const Policy* const policy_;
  SiteFactsLoader* const sites_;
  CustomerFactsSource* const customers_;
  CustomerFeedFollower* const feed_;
  FactVersions* const versions_;
  AnswerCache* const cache_;
};

// The cache key of a subject's answer on a resource.
std::string AnswerKey(const Subject& subject, const Resource& resource);

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_ENGINE_H_
