#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_ENGINE_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/database.h"
#include "common/redis_client.h"
#include "custos/access/v1/access_service.pb.h"
#include "services/access_service/customer_facts.h"
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

// How fresh an answer must be (custos.access.v1.Consistency).
struct Freshness {
  bool fully_consistent = false;
  // A consistency token's write sequence; 0 for none.
  int64_t at_least_seq = 0;
};

struct PermissionEngineOptions {
  // Bounds how long any cached answer lives, in memory and in Redis.
  // Default: 10 minutes.
  absl::Duration ttl = absl::Minutes(10);
  // Entries kept in memory before the in-memory layer starts over.
  size_t memory_entries = 100000;
};

// Resolves permission sets (DESIGN "Resolution") and caches them.
//
// Every answer is tagged with the versions of the facts it was computed from:
// the policy fingerprint plus the site and pilots versions (sites/{sid}), or
// the customer's version (customers/{c}). An answer is served, from memory or
// from Redis, only while those versions are current. Current versions are
// kept here and raised by every write before the write is acknowledged
// (`SiteChanged`, ...), so a check made after a write never sees the old
// answer. Writes made through other replicas are learnt by SyncWithStore:
// every write advances the store's write sequence, and a replica that finds
// it past what it has applied forgets the versions it knows, reading each
// again on next use. Computation runs once per key at a time; Redis failures
// only make answers slower, never wrong.
// Thread-safe.
class PermissionEngine {
 public:
  // REQUIRES: all outlive the engine. `redis` may be disabled.
  PermissionEngine(Database* db, const Policy* policy,
                   CustomerFactsSource* customers, RedisClient* redis,
                   const Clock* clock, PermissionEngineOptions options);

  // Shared and immutable: a cached answer is handed out without a copy.
  using Answer = std::shared_ptr<const v1::ResolvePermissionsResponse>;

  absl::StatusOr<Answer> Resolve(const Subject& subject,
                                 const Resource& resource,
                                 const Freshness& freshness);

  // The answer when memory holds a current one; null when answering would
  // need the store, Redis or a peer. Never waits.
  Answer ResolveFromMemory(const Subject& subject, const Resource& resource,
                           const Freshness& freshness);

  // Bumped whenever the known versions are forgotten (SyncWithStore).
  int64_t generation() const ABSL_LOCKS_EXCLUDED(versions_mu_);

  // Raise the known versions to `version`: a committed write's (called
  // before the write is acknowledged) or one read from the store, with the
  // generation() read before the write began or the read was made. If
  // versions were forgotten since, `version` only raises what was read again
  // meanwhile (it may be older than a write that committed after it) and
  // fills no empty slot: that version is read from the store on next use.
  void SiteChanged(const std::string& site_id, int64_t version,
                   int64_t generation);
  void PilotsChanged(int64_t version, int64_t generation);
  void CustomerChanged(const std::string& customer_id, int64_t version,
                       int64_t generation);
  // Called last: the write with sequence number `seq` is reflected.
  void WriteSequenceAdvanced(int64_t seq);
  // Every write up to this sequence number is reflected in the versions
  // known here: a consistency token at or below it needs nothing more.
  int64_t applied_sequence() const;

  // Reads the store's write sequence; when it is past applied_sequence()
  // (writes through other replicas), forgets every known version and takes
  // the store's sequence as applied. Errors: the store's.
  absl::Status SyncWithStore();

  struct Stats {
    int64_t memory_hits = 0;
    int64_t redis_hits = 0;
    int64_t computed = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    Answer answer;
    absl::Time expires;
  };
  struct Flight;

  // The versions string a fresh answer must carry now, when known in memory.
  std::optional<std::string> KnownVersions(const Resource& resource) const;
  // The versions string a fresh answer must carry now; loads what is not
  // known yet from the store.
  absl::StatusOr<std::string> CurrentVersions(const Resource& resource);
  // Whether a token's sequence needs more than this process has applied,
  // after one SyncWithStore when it is ahead.
  bool AheadOfStore(int64_t at_least_seq);
  absl::StatusOr<Answer> Compute(const Subject& subject,
                                 const Resource& resource);
  absl::StatusOr<v1::ResolvePermissionsResponse> ComputeSite(
      const Subject& subject, const std::string& site_id);
  absl::StatusOr<v1::ResolvePermissionsResponse> ComputeCustomer(
      const Subject& subject, const std::string& customer_id);
  // Computes once per key at a time; others wait for that answer.
  absl::StatusOr<Answer> ComputeOnce(const std::string& key,
                                     const Subject& subject,
                                     const Resource& resource);
  void Remember(const std::string& key, const Answer& answer);
  // Moves applied_seq_ over the pending sequence numbers that follow it.
  void ApplyPending() ABSL_EXCLUSIVE_LOCKS_REQUIRED(versions_mu_);

  Database* const db_;
  const Policy* const policy_;
  CustomerFactsSource* const customers_;
  RedisClient* const redis_;
  const Clock* const clock_;
  const PermissionEngineOptions options_;

  mutable absl::Mutex versions_mu_;
  absl::flat_hash_map<std::string, int64_t> site_versions_
      ABSL_GUARDED_BY(versions_mu_);
  absl::flat_hash_map<std::string, int64_t> customer_versions_
      ABSL_GUARDED_BY(versions_mu_);
  int64_t pilots_version_ ABSL_GUARDED_BY(versions_mu_) = -1;  // -1: unknown
  // Bumped whenever the known versions are forgotten.
  int64_t generation_ ABSL_GUARDED_BY(versions_mu_) = 0;
  // Writes are numbered in commit order; those up to applied_seq_ are
  // reflected, later ones of this process wait in pending_seqs_ for the gap
  // before them (a concurrent local write, or another replica's) to close.
  int64_t applied_seq_ ABSL_GUARDED_BY(versions_mu_) = 0;
  absl::btree_set<int64_t> pending_seqs_ ABSL_GUARDED_BY(versions_mu_);

  mutable absl::Mutex cache_mu_;
  absl::flat_hash_map<std::string, Entry> memory_ ABSL_GUARDED_BY(cache_mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<Flight>> flights_
      ABSL_GUARDED_BY(cache_mu_);
  Stats stats_ ABSL_GUARDED_BY(cache_mu_);
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_PERMISSION_ENGINE_H_
