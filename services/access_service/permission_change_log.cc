#include "services/access_service/permission_change_log.h"

#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "services/access_service/access_store.h"

namespace custos::access {
namespace {

using google::protobuf::util::TimeUtil;

absl::Status OutOfRange(absl::string_view why) {
  return WithReason(
      absl::OutOfRangeError(absl::StrCat(
          "resume_token ", why,
          "; re-read what you keep, then watch from an empty resume_token")),
      "RESUME_TOKEN_OUT_OF_RANGE");
}

}  // namespace

std::string WatchPosition::Encode() const {
  return absl::WebSafeBase64Escape(
      absl::StrCat("w1|", access.Encode(), "|", customers));
}

absl::StatusOr<WatchPosition> WatchPosition::Decode(absl::string_view text) {
  std::string raw;
  if (text.size() > 1000 || !absl::WebSafeBase64Unescape(text, &raw)) {
    return absl::InvalidArgumentError("is not a resume token");
  }
  std::vector<std::string> parts = absl::StrSplit(raw, '|');
  if (parts.size() != 3 || parts[0] != "w1") {
    return absl::InvalidArgumentError("is not a resume token");
  }
  WatchPosition position;
  absl::StatusOr<ConsistencyToken> access = ConsistencyToken::Decode(parts[1]);
  if (!access.ok() || access->store != ConsistencyToken::Store::kAccess) {
    return absl::InvalidArgumentError("is not a resume token");
  }
  position.access = *access;
  position.customers = parts[2];
  if (!position.customers.empty()) {
    absl::StatusOr<ConsistencyToken> customers =
        ConsistencyToken::Decode(position.customers);
    if (!customers.ok() ||
        customers->store != ConsistencyToken::Store::kCustomers) {
      return absl::InvalidArgumentError("is not a resume token");
    }
  }
  return position;
}

absl::Status PermissionChangeLog::Record(
    Connection& db, const WrittenChanges& changes,
    const std::vector<v1::PermissionChange>& extra, absl::Time now) {
  v1::WatchPermissionChangesResponse recorded;
  const google::protobuf::Timestamp time =
      TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now));
  for (const auto& [site, unused] : changes.sites) {
    v1::PermissionChange* change = recorded.add_changes();
    change->set_kind(v1::PermissionChange::KIND_SITE);
    change->set_resource(absl::StrCat("sites/", site));
    *change->mutable_change_time() = time;
  }
  if (changes.pilots) {
    v1::PermissionChange* change = recorded.add_changes();
    change->set_kind(v1::PermissionChange::KIND_PILOTS);
    *change->mutable_change_time() = time;
  }
  for (const v1::PermissionChange& change : extra) {
    *recorded.add_changes() = change;
    *recorded.mutable_changes()->rbegin()->mutable_change_time() = time;
  }
  PermissionChangeRow row;
  row.seq = changes.seq;
  row.change_id = NewVersionId();
  row.change_micros = absl::ToUnixMicros(now);
  row.changes = recorded.SerializeAsString();
  return AccessStore::InsertPermissionChange(db, row);
}

absl::StatusOr<WatchPosition> PermissionChangeLog::Head() {
  WatchPosition head;
  head.access.store = ConsistencyToken::Store::kAccess;
  head.access.incarnation = incarnation_;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(auto last, AccessStore::LastPermissionChange(db));
    head.access.sequence = last ? last->seq : 0;
    head.access.change_id = last ? last->change_id : 0;
    return absl::OkStatus();
  }));
  ASSIGN_OR_RETURN(customers::v1::ListCustomerChangesResponse customers_head,
                   customers_->List("", 1));
  head.customers = customers_head.next_position();
  return head;
}

absl::Status PermissionChangeLog::CheckAccess(Connection& db,
                                              const ConsistencyToken& access) {
  if (access.incarnation != incarnation_) {
    return OutOfRange("is from another access store (its incarnation differs)");
  }
  ASSIGN_OR_RETURN(auto last, AccessStore::LastPermissionChange(db));
  const int64_t head = last ? last->seq : 0;
  if (access.sequence > head) {
    return OutOfRange(
        "is ahead of this store's history (was it restored from a backup?)");
  }
  if (access.sequence == 0) {
    if (head == 0) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto first, AccessStore::ListPermissionChanges(db, 0, 1));
    if (first.empty() || first[0].seq != 1) {
      return OutOfRange("is older than the retained history");
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(auto at,
                   AccessStore::FindPermissionChange(db, access.sequence));
  if (!at) return OutOfRange("is older than the retained history");
  if (at->change_id != access.change_id) {
    return OutOfRange(
        "names a change this store does not have (was it restored from a "
        "backup?)");
  }
  return absl::OkStatus();
}

absl::Status PermissionChangeLog::Check(const WatchPosition& position) {
  return db_->Read([&](Connection& db) -> absl::Status {
    return CheckAccess(db, position.access);
  });
}

absl::StatusOr<PermissionChangeLog::Batch> PermissionChangeLog::Next(
    const WatchPosition& from, int limit) {
  Batch batch;
  batch.next = from;
  std::vector<PermissionChangeRow> rows;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(rows, AccessStore::ListPermissionChanges(
                               db, from.access.sequence, limit));
    return absl::OkStatus();
  }));
  for (const PermissionChangeRow& row : rows) {
    v1::WatchPermissionChangesResponse recorded;
    if (!recorded.ParseFromString(row.changes)) {
      return absl::InternalError(
          absl::StrCat("Watch log entry ", row.seq, " is unreadable"));
    }
    for (v1::PermissionChange& change : *recorded.mutable_changes()) {
      *batch.response.add_changes() = std::move(change);
    }
    batch.next.access.sequence = row.seq;
    batch.next.access.change_id = row.change_id;
  }
  batch.more = static_cast<int>(rows.size()) == limit;
  absl::StatusOr<customers::v1::ListCustomerChangesResponse> customers =
      customers_->List(from.customers, limit);
  if (absl::IsOutOfRange(customers.status())) {
    return OutOfRange(absl::StrCat("cannot continue customer changes (",
                                   customers.status().message(), ")"));
  }
  if (!customers.ok()) return customers.status();
  for (const customers::v1::CustomerChange& change : customers->changes()) {
    v1::PermissionChange* out = batch.response.add_changes();
    out->set_kind(v1::PermissionChange::KIND_CUSTOMER);
    out->set_resource(change.customer());
    *out->mutable_change_time() = change.change_time();
  }
  batch.next.customers = customers->next_position();
  batch.more = batch.more || customers->more();
  batch.response.set_resume_token(batch.next.Encode());
  return batch;
}

absl::Status PermissionChangeLog::Prune(absl::Duration retention,
                                        absl::Time now) {
  return db_->Write([&](Connection& db) -> absl::Status {
    return AccessStore::PrunePermissionChanges(db, now - retention).status();
  });
}

}  // namespace custos::access
