#ifndef CUSTOS_TESTS_SUPPORT_FAKE_CUSTOMER_SOURCE_H_
#define CUSTOS_TESTS_SUPPORT_FAKE_CUSTOMER_SOURCE_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/consistency_token.h"
#include "services/access_service/customer_facts.h"

namespace custos::testing {

// An in-process stand-in for CustomerManagementService as access_service
// sees it: customers with a management type and users, GetAccessContext's
// facts, and an ordered change feed with ListCustomerChanges' positions
// and OUT_OF_RANGE rules. Every change gets the next sequence number and a
// fresh random id, like the real one. Thread-safe.
class FakeCustomerSource final : public access::CustomerFactsSource,
                                 public access::CustomerChangeSource {
 public:
  explicit FakeCustomerSource(std::string incarnation = "00000000000000c1")
      : incarnation_(std::move(incarnation)) {}

  // Changes (each appends to the feed).
  void SetCustomer(const std::string& id, customers::v1::ManagementType type);
  void DeleteCustomer(const std::string& id);
  void SetRelation(const std::string& customer, const std::string& user,
                   customers::v1::CustomerRelation relation);
  // What a write's consistency token would carry: the newest change.
  ConsistencyToken HeadToken() const;
  // Starts a new store (a recreated or restored one): positions of the old
  // one are OUT_OF_RANGE.
  void NewIncarnation(const std::string& incarnation);
  // While false, every call is UNAVAILABLE.
  void SetAvailable(bool available);
  int facts_reads() const;

  absl::StatusOr<access::CustomerFacts> Get(
      const std::string& customer_id, const std::string& user_id) override;
  absl::StatusOr<customers::v1::ListCustomerChangesResponse> List(
      const std::string& since, int page_size) override;

 private:
  struct Customer {
    customers::v1::ManagementType type;
    std::map<std::string, customers::v1::CustomerRelation> relations;
  };
  struct Change {
    int64_t sequence;
    int64_t change_id;
    std::string customer;
    bool deleted;
  };
  void Append(const std::string& customer, bool deleted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string Position(int64_t sequence, int64_t change_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::string incarnation_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Customer> customers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, access::VersionStamp> heads_ ABSL_GUARDED_BY(mu_);
  std::vector<Change> changes_ ABSL_GUARDED_BY(mu_);
  bool available_ ABSL_GUARDED_BY(mu_) = true;
  int facts_reads_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace custos::testing

#endif  // CUSTOS_TESTS_SUPPORT_FAKE_CUSTOMER_SOURCE_H_
