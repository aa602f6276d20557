#include "tests/support/fake_customer_source.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace custos::testing {

void FakeCustomerSource::SetCustomer(const std::string& id,
                                     customers::v1::ManagementType type) {
  absl::MutexLock lock(&mu_);
  customers_[id].type = type;
  Append(id, false);
}

void FakeCustomerSource::DeleteCustomer(const std::string& id) {
  absl::MutexLock lock(&mu_);
  customers_.erase(id);
  Append(id, true);
}

void FakeCustomerSource::SetRelation(const std::string& customer,
                                     const std::string& user,
                                     customers::v1::CustomerRelation relation) {
  absl::MutexLock lock(&mu_);
  customers_[customer].relations[user] = relation;
  Append(customer, false);
}

void FakeCustomerSource::Append(const std::string& customer, bool deleted) {
  const int64_t sequence = changes_.empty() ? 1 : changes_.back().sequence + 1;
  const Change change{sequence, NewVersionId(), customer, deleted};
  changes_.push_back(change);
  heads_[customer] = {change.sequence, change.change_id};
}

std::string FakeCustomerSource::Position(int64_t sequence,
                                         int64_t change_id) const {
  ConsistencyToken token;
  token.store = ConsistencyToken::Store::kCustomers;
  token.incarnation = incarnation_;
  token.sequence = sequence;
  token.change_id = change_id;
  return token.Encode();
}

ConsistencyToken FakeCustomerSource::HeadToken() const {
  absl::MutexLock lock(&mu_);
  ConsistencyToken token;
  token.store = ConsistencyToken::Store::kCustomers;
  token.incarnation = incarnation_;
  if (!changes_.empty()) {
    token.sequence = changes_.back().sequence;
    token.change_id = changes_.back().change_id;
  }
  return token;
}

void FakeCustomerSource::NewIncarnation(const std::string& incarnation) {
  absl::MutexLock lock(&mu_);
  incarnation_ = incarnation;
}

void FakeCustomerSource::SetAvailable(bool available) {
  absl::MutexLock lock(&mu_);
  available_ = available;
}

int FakeCustomerSource::facts_reads() const {
  absl::MutexLock lock(&mu_);
  return facts_reads_;
}

absl::StatusOr<access::CustomerFacts> FakeCustomerSource::Get(
    const std::string& customer_id, const std::string& user_id) {
  absl::MutexLock lock(&mu_);
  if (!available_) return absl::UnavailableError("fake customers down");
  ++facts_reads_;
  access::CustomerFacts facts;
  facts.incarnation = incarnation_;
  if (auto head = heads_.find(customer_id); head != heads_.end()) {
    facts.version = head->second;
  }
  auto it = customers_.find(customer_id);
  if (it == customers_.end()) return facts;
  facts.exists = true;
  facts.management_type = it->second.type;
  if (auto r = it->second.relations.find(user_id);
      r != it->second.relations.end()) {
    facts.relation = r->second;
  }
  return facts;
}

absl::StatusOr<customers::v1::ListCustomerChangesResponse>
FakeCustomerSource::List(const std::string& since, int page_size) {
  absl::MutexLock lock(&mu_);
  if (!available_) return absl::UnavailableError("fake customers down");
  customers::v1::ListCustomerChangesResponse response;
  const int64_t head = changes_.empty() ? 0 : changes_.back().sequence;
  if (since.empty()) {
    response.set_next_position(changes_.empty()
                                   ? Position(0, 0)
                                   : Position(head, changes_.back().change_id));
    return response;
  }
  absl::StatusOr<ConsistencyToken> from = ConsistencyToken::Decode(since);
  if (!from.ok()) return absl::InvalidArgumentError("since");
  if (from->incarnation != incarnation_ || from->sequence > head) {
    return absl::OutOfRangeError("since cannot be continued");
  }
  int64_t last_sequence = from->sequence;
  int64_t last_id = from->change_id;
  for (const Change& change : changes_) {
    if (change.sequence <= from->sequence) continue;
    if (response.changes_size() == page_size) {
      response.set_more(true);
      break;
    }
    customers::v1::CustomerChange* out = response.add_changes();
    out->set_customer(absl::StrCat("customers/", change.customer));
    out->set_deleted(change.deleted);
    out->set_sequence(change.sequence);
    out->set_change_id(change.change_id);
    last_sequence = change.sequence;
    last_id = change.change_id;
  }
  response.set_next_position(Position(last_sequence, last_id));
  return response;
}

}  // namespace custos::testing
