#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_STORE_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/database.h"
#include "custos/access/v1/access_service.pb.h"
#include "services/access_service/fact_versions.h"

namespace custos::access {

namespace v1 = ::custos::access::v1;

// Which access requests to list (ListAccessRequests).
struct AccessRequestFilter {
  std::string site_id;    // empty: every site
  std::string requester;  // user id; empty: everyone
  std::optional<v1::AccessRequest::State> state;
  std::optional<v1::AccessRequest::Approver> approver;
};

// One write's entry in the Watch log (WatchPermissionChanges).
struct PermissionChangeRow {
  int64_t seq = 0;        // the write's sequence number
  int64_t change_id = 0;  // random
  int64_t change_micros = 0;
  std::string changes;  // a serialized v1::WatchPermissionChangesResponse
};

// SQL for AccessService's data. Every function runs inside the caller's
// transaction (Database::Read/Write). Resources come back as their API
// messages with `name` filled in; absent rows are nullopt, not errors.
//
// Versions: every site has a version bumped by any change to it or its
// members, with a random id per bump; `pilots` is one version for all
// pilots; `seq` counts writes and is the consistency token's sequence.
// Versions are persistent, so cache entries tagged with them stay
// comparable across restarts, and their random ids never repeat, also
// after a restore from a backup.
class AccessStore {
 public:
  // Opens `database` (sqlite:PATH or postgresql://...) and applies the
  // schema migrations.
  static absl::StatusOr<std::unique_ptr<Database>> Open(
      const std::string& database, const DatabaseOptions& options = {});

  // Sites.
  // Returns the site's first version.
  static absl::StatusOr<VersionStamp> InsertSite(Connection& db,
                                                 const std::string& site_id,
                                                 const v1::Site& site,
                                                 absl::Time now);
  static absl::StatusOr<std::optional<v1::Site>> FindSite(
      Connection& db, const std::string& site_id);
  // Ordered by id, after `after_id`; only the customer's when
  // `customer_id` is not empty.
  static absl::StatusOr<std::vector<v1::Site>> ListSites(
      Connection& db, const std::string& customer_id,
      const std::string& after_id, int limit);
  // Returns the site's new version.
  static absl::StatusOr<VersionStamp> UpdateSite(Connection& db,
                                                 const std::string& site_id,
                                                 const v1::Site& site,
                                                 absl::Time now);
  static absl::StatusOr<VersionStamp> BumpSiteVersion(
      Connection& db, const std::string& site_id, absl::Time now);
  // Zero when the site does not exist.
  static absl::StatusOr<VersionStamp> SiteVersion(Connection& db,
                                                  const std::string& site_id);

  // Members.
  static absl::StatusOr<std::optional<v1::SiteMember>> FindMember(
      Connection& db, const std::string& site_id, const std::string& user_id);
  static absl::StatusOr<std::vector<v1::SiteMember>> ListMembers(
      Connection& db, const std::string& site_id, const std::string& after_user,
      int limit);
  // Inserts or changes the member's role.
  static absl::Status UpsertMember(Connection& db, const std::string& site_id,
                                   const std::string& user_id,
                                   v1::SiteRole role, absl::Time now);
  static absl::Status DeleteMember(Connection& db, const std::string& site_id,
                                   const std::string& user_id);
  // User ids of the site's administrators, in order.
  static absl::StatusOr<std::vector<std::string>> ListAdministrators(
      Connection& db, const std::string& site_id);
  static absl::StatusOr<int64_t> CountAdministrators(
      Connection& db, const std::string& site_id);

  // Access requests.
  static absl::Status InsertRequest(Connection& db, const std::string& site_id,
                                    const std::string& request_id,
                                    const v1::AccessRequest& request);
  static absl::StatusOr<std::optional<v1::AccessRequest>> FindRequest(
      Connection& db, const std::string& site_id,
      const std::string& request_id);
  // The requester's pending request on the site, if any.
  static absl::StatusOr<std::optional<v1::AccessRequest>> FindPendingRequest(
      Connection& db, const std::string& site_id, const std::string& requester);
  // Newest first: ordered by (create time, id) descending, before `before`.
  static absl::StatusOr<std::vector<v1::AccessRequest>> ListRequests(
      Connection& db, const AccessRequestFilter& filter,
      const std::optional<std::pair<int64_t, std::string>>& before, int limit);
  // Writes state, approver and the decision fields.
  static absl::Status UpdateRequest(Connection& db, const std::string& site_id,
                                    const std::string& request_id,
                                    const v1::AccessRequest& request);
  // R6: the site's pending requests waiting for its administrators now wait
  // for Customer Care. Returns how many moved.
  static absl::StatusOr<int64_t> MovePendingToCustomerCare(
      Connection& db, const std::string& site_id);
  // Marks pending requests whose expire time has passed EXPIRED; returns
  // their names.
  static absl::StatusOr<std::vector<std::string>> ExpireDue(Connection& db,
                                                            absl::Time now);
  // Retention: deletes up to `batch_size` decided requests (approved,
  // rejected, cancelled, expired) decided before `older_than`, oldest
  // decision first; returns how many. Unlike the other functions here it
  // runs its own short write transaction. Pending requests stay, also past
  // their expire time until ExpireDue has recorded them. Call until it
  // returns less than `batch_size` to catch up. INVALID_ARGUMENT when
  // batch_size <= 0; otherwise the transaction's error.
  static absl::StatusOr<int64_t> PruneDecidedRequests(Database& database,
                                                      absl::Time older_than,
                                                      int batch_size);

  // Pilots.
  static absl::Status InsertPilot(Connection& db, const std::string& pilot_id,
                                  const v1::Pilot& pilot, absl::Time now);
  // With participants.
  static absl::StatusOr<std::optional<v1::Pilot>> FindPilot(
      Connection& db, const std::string& pilot_id);
  static absl::StatusOr<std::vector<v1::Pilot>> ListAllPilots(Connection& db);
  static absl::Status UpdatePilot(Connection& db, const std::string& pilot_id,
                                  const v1::Pilot& pilot, absl::Time now);
  // False when already enrolled / not enrolled.
  static absl::StatusOr<bool> AddParticipant(Connection& db,
                                             const std::string& pilot_id,
                                             const std::string& participant);
  static absl::StatusOr<bool> RemoveParticipant(Connection& db,
                                                const std::string& pilot_id,
                                                const std::string& participant);

  // Counters. Bump returns the new value.
  // The pilots' version (sites/{sid} answers depend on it).
  static constexpr char kPilotsCounter[] = "pilots";
  // Numbers every write that can change an answer, in commit order: the
  // consistency token, and how replicas learn of each other's writes.
  static constexpr char kWriteSequence[] = "seq";
  static absl::StatusOr<int64_t> Counter(Connection& db,
                                         absl::string_view name);
  static absl::StatusOr<int64_t> BumpCounter(Connection& db,
                                             absl::string_view name);

  // The Watch log, in write order.
  static absl::Status InsertPermissionChange(Connection& db,
                                             const PermissionChangeRow& row);
  static absl::StatusOr<std::vector<PermissionChangeRow>> ListPermissionChanges(
      Connection& db, int64_t after_seq, int limit);
  static absl::StatusOr<std::optional<PermissionChangeRow>>
  FindPermissionChange(Connection& db, int64_t seq);
  static absl::StatusOr<std::optional<PermissionChangeRow>>
  LastPermissionChange(Connection& db);
  // Deletes rows older than `older_than` but the newest; returns how many.
  static absl::StatusOr<int64_t> PrunePermissionChanges(Connection& db,
                                                        absl::Time older_than);

  // Named values kept with the store identity (e.g. the policy fingerprint
  // last announced on the Watch log); "" when unset.
  static absl::StatusOr<std::string> IdentityValue(Connection& db,
                                                   absl::string_view name);
  static absl::Status SetIdentityValue(Connection& db, absl::string_view name,
                                       absl::string_view value);

  // The pilots' version (order: kPilotsCounter; id: kPilotsIdCounter).
  static constexpr char kPilotsIdCounter[] = "pilots_id";
  static absl::StatusOr<VersionStamp> BumpPilotsVersion(Connection& db);
  static absl::StatusOr<VersionStamp> PilotsVersion(Connection& db);
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_STORE_H_
