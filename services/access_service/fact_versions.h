#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_FACT_VERSIONS_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_FACT_VERSIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace custos::access {

// The version of a fact: `order` says which of two versions of the same fact
// is newer (a counter, or a change feed's sequence); `id` is random per
// change and is what cached answers are tagged with, so a version never
// repeats — also after a delete and re-create, or a restore from a backup
// (the counter may repeat there, the id does not).
struct VersionStamp {
  int64_t order = 0;
  int64_t id = 0;
  friend bool operator==(const VersionStamp& a, const VersionStamp& b) {
    return a.order == b.order && a.id == b.id;
  }
};

// The newest version this process knows of each fact a cached answer
// depends on (a site, the pilots, a customer), and how far it has applied
// the access store's write sequence. Pure bookkeeping, no I/O: the rules
// that keep a cached answer from ever being served after a newer write.
//
// Raises only move forward (by `order`). Knowledge is forgotten in two
// independent domains — the access store's facts (ForgetAccessFacts, when
// another replica wrote) and customers' (ForgetCustomers, when the customer
// change feed had to start over) — each with its own generation. A raise
// carries the generation read before its write began or its read was made:
// when the domain was forgotten since, it still raises what was read again
// meanwhile (never lowers), but fills no empty slot, where it could stand for
// a newer change it never saw; that fact is then read again on next use.
// Thread-safe.
class FactVersions {
 public:
  struct Generations {
    int64_t access = 0;
    int64_t customers = 0;
  };
  Generations generations() const;

  void RaiseSite(const std::string& site_id, VersionStamp version,
                 int64_t access_generation);
  void RaisePilots(VersionStamp version, int64_t access_generation);
  void RaiseCustomer(const std::string& customer_id, VersionStamp version,
                     int64_t customers_generation);

  // Raises the customer's version only when one is known already.
  void RaiseKnownCustomer(const std::string& customer_id, VersionStamp version);

  std::optional<VersionStamp> Site(const std::string& site_id) const;
  // Both versions a site answer depends on, read together (the warm path).
  std::optional<std::pair<VersionStamp, VersionStamp>> SiteAndPilots(
      const std::string& site_id) const;
  std::optional<VersionStamp> Pilots() const;
  std::optional<VersionStamp> Customer(const std::string& customer_id) const;

  // The access write numbered `seq` is reflected (called after its raises).
  void WriteSequenceAdvanced(int64_t seq);
  // Every access write up to this number is reflected here.
  int64_t applied_sequence() const;
  // The store's write sequence is `stored`, read after applied_sequence()
  // was `applied_before`. When it is past what was applied (another replica
  // wrote), or behind `applied_before` (the store went back in time: what
  // was applied before the read was committed before it), forgets the
  // access facts and takes `stored` as applied; returns whether it forgot.
  bool SyncTo(int64_t stored, int64_t applied_before);
  // Forgets every site and pilots version (a new access incarnation, too).
  void ForgetAccessFacts();
  // Forgets every customer version.
  void ForgetCustomers();

 private:
  void ForgetAccessFactsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves applied_seq_ over the pending numbers that follow it.
  void ApplyPending() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, VersionStamp> sites_ ABSL_GUARDED_BY(mu_);
  std::optional<VersionStamp> pilots_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, VersionStamp> customers_
      ABSL_GUARDED_BY(mu_);
  Generations generations_ ABSL_GUARDED_BY(mu_);
  // Writes are numbered in commit order; those up to applied_seq_ are
  // reflected, later ones of this process wait in pending_seqs_ for the gap
  // before them (a concurrent local write, or another replica's) to close.
  int64_t applied_seq_ ABSL_GUARDED_BY(mu_) = 0;
  absl::btree_set<int64_t> pending_seqs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_FACT_VERSIONS_H_
