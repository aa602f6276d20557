#include "services/access_service/fact_versions.h"

namespace custos::access {
namespace {

// The raise rule (see the class comment) for one slot; empty means unknown.
void Raise(std::optional<VersionStamp>& slot, VersionStamp version,
           bool same_generation) {
  if (!slot) {
    if (same_generation) slot = version;
    return;
  }
  if (version.order > slot->order) {
    slot = version;
  } else if (version.order == slot->order && version.id != slot->id) {
    // Two histories (a store restored while this process ran): neither can
    // be trusted; the fact is read again on next use.
    slot.reset();
  }
}

// The same rule for the slot of `key` in `map`.
void Raise(absl::flat_hash_map<std::string, VersionStamp>& map,
           const std::string& key, VersionStamp version, bool same_generation) {
  auto it = map.find(key);
  std::optional<VersionStamp> slot;
  if (it != map.end()) slot = it->second;
  Raise(slot, version, same_generation);
  if (!slot) {
    if (it != map.end()) map.erase(it);
  } else if (it != map.end()) {
    it->second = *slot;
  } else {
    map.emplace(key, *slot);
  }
}

}  // namespace

FactVersions::Generations FactVersions::generations() const {
  absl::MutexLock lock(&mu_);
  return generations_;
}

void FactVersions::RaiseSite(const std::string& site_id, VersionStamp version,
                             int64_t access_generation) {
  absl::MutexLock lock(&mu_);
  Raise(sites_, site_id, version, access_generation == generations_.access);
}

void FactVersions::RaisePilots(VersionStamp version,
                               int64_t access_generation) {
  absl::MutexLock lock(&mu_);
  Raise(pilots_, version, access_generation == generations_.access);
}

void FactVersions::RaiseCustomer(const std::string& customer_id,
                                 VersionStamp version,
                                 int64_t customers_generation) {
  absl::MutexLock lock(&mu_);
  Raise(customers_, customer_id, version,
        customers_generation == generations_.customers);
}

void FactVersions::RaiseKnownCustomer(const std::string& customer_id,
                                      VersionStamp version) {
  absl::MutexLock lock(&mu_);
  if (customers_.contains(customer_id)) {
    Raise(customers_, customer_id, version, /*same_generation=*/false);
  }
}

std::optional<VersionStamp> FactVersions::Site(
    const std::string& site_id) const {
  absl::MutexLock lock(&mu_);
  auto it = sites_.find(site_id);
  if (it == sites_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::pair<VersionStamp, VersionStamp>>
FactVersions::SiteAndPilots(const std::string& site_id) const {
  absl::MutexLock lock(&mu_);
  auto it = sites_.find(site_id);
  if (it == sites_.end() || !pilots_) return std::nullopt;
  return std::make_pair(it->second, *pilots_);
}

std::optional<VersionStamp> FactVersions::Pilots() const {
  absl::MutexLock lock(&mu_);
  return pilots_;
}

std::optional<VersionStamp> FactVersions::Customer(
    const std::string& customer_id) const {
  absl::MutexLock lock(&mu_);
  auto it = customers_.find(customer_id);
  if (it == customers_.end()) return std::nullopt;
  return it->second;
}

void FactVersions::WriteSequenceAdvanced(int64_t seq) {
  absl::MutexLock lock(&mu_);
  if (seq <= applied_seq_) return;
  pending_seqs_.insert(seq);
  ApplyPending();
}

int64_t FactVersions::applied_sequence() const {
  absl::MutexLock lock(&mu_);
  return applied_seq_;
}

bool FactVersions::SyncTo(int64_t stored, int64_t applied_before) {
  absl::MutexLock lock(&mu_);
  if (stored < applied_before) {
    // The store is behind what this process applied: restored under it.
    ForgetAccessFactsLocked();
    applied_seq_ = stored;
    pending_seqs_.clear();
    return true;
  }
  // A local write may have committed and been applied after the read.
  if (stored <= applied_seq_) return false;
  // Some write up to `stored` was not applied here: anything known may be
  // older than it. Versions read from now on come from snapshots that
  // include every write up to `stored`.
  ForgetAccessFactsLocked();
  applied_seq_ = stored;
  pending_seqs_.erase(pending_seqs_.begin(), pending_seqs_.upper_bound(stored));
  ApplyPending();
  return true;
}

void FactVersions::ForgetAccessFacts() {
  absl::MutexLock lock(&mu_);
  ForgetAccessFactsLocked();
}

void FactVersions::ForgetAccessFactsLocked() {
  sites_.clear();
  pilots_.reset();
  ++generations_.access;
}

void FactVersions::ForgetCustomers() {
  absl::MutexLock lock(&mu_);
  customers_.clear();
  ++generations_.customers;
}

void FactVersions::ApplyPending() {
  while (!pending_seqs_.empty() && *pending_seqs_.begin() == applied_seq_ + 1) {
    pending_seqs_.erase(pending_seqs_.begin());
    ++applied_seq_;
  }
}

}  // namespace custos::access
