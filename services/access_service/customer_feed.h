#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FEED_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FEED_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/consistency_token.h"
#include "services/access_service/customer_facts.h"
#include "services/access_service/fact_versions.h"

namespace custos::access {

struct CustomerFeedOptions {
  // Customer versions known here are served only while the last complete
  // read of the feed began less than this long ago: no cached customer
  // answer is older than this bound. Default: 1 s.
  absl::Duration max_lag = absl::Seconds(1);
  // Changes asked for per call. Default: 1000 (the feed's maximum).
  int page_size = 1000;
};

// Follows CustomerManagementService's change feed (ListCustomerChanges)
// into FactVersions: the feed, not the outbox, is what bounds how stale a
// cached customer answer can be, however long a peer was down and whatever
// the outbox's backoff. The position lives in memory: a process starts at
// the feed's head, with no customer version known, so everything it caches
// afterwards comes from facts read after it started. When the feed says the
// position cannot be continued (the customer store was recreated or
// restored, or the position fell out of its retention), every customer
// version is forgotten and following starts again at the head.
// Thread-safe.
class CustomerFeedFollower {
 public:
  // REQUIRES: all outlive the follower.
  CustomerFeedFollower(CustomerChangeSource* source, FactVersions* versions,
                       const Clock* clock, CustomerFeedOptions options = {});

  // Reads the feed until it has no more changes (one read at a time).
  // Errors: the source's; knowledge then ages until a read succeeds.
  absl::Status Poll() ABSL_LOCKS_EXCLUDED(poll_mu_);
  // Whether known customer versions may be served now (see max_lag).
  bool Fresh() const;
  // Whether the write behind a customers consistency token is reflected in
  // the known versions; reads the feed once when not yet. False for a
  // token of another incarnation: the caller then reads through.
  bool Reflects(const ConsistencyToken& token) ABSL_LOCKS_EXCLUDED(poll_mu_);
  // The customer store's incarnation; empty before the first read.
  std::string incarnation() const ABSL_LOCKS_EXCLUDED(position_mu_);

  // How many times following had to start again at the head.
  int64_t resets() const { return resets_.load(); }

 private:
  bool Covers(const ConsistencyToken& token) const
      ABSL_LOCKS_EXCLUDED(position_mu_);

  CustomerChangeSource* const source_;
  FactVersions* const versions_;
  const Clock* const clock_;
  const CustomerFeedOptions options_;

  absl::Mutex poll_mu_;
  std::string position_ ABSL_GUARDED_BY(poll_mu_);  // empty: at the head
  mutable absl::Mutex position_mu_;
  ConsistencyToken decoded_ ABSL_GUARDED_BY(position_mu_);
  // Until when known customer versions may be served (Unix micros).
  std::atomic<int64_t> fresh_until_micros_{0};
  std::atomic<int64_t> resets_{0};
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_CUSTOMER_FEED_H_
