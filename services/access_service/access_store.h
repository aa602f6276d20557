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

namespace custos::access {

namespace v1 = ::custos::access::v1;

// Which access requests to list (ListAccessRequests).
struct AccessRequestFilter {
  std::string site_id;    // empty: every site
  std::string requester;  // user id; empty: everyone
  std::optional<v1::AccessRequest::State> state;
  std::optional<v1::AccessRequest::Approver> approver;
};

// SQL for AccessService's data. Every function runs inside the caller's
// transaction (Database::Read/Write). Resources come back as their API
// messages with `name` filled in; absent rows are nullopt, not errors.
//
// Versions: every site has a version bumped by any change to it or its
// members; `pilots` is one version for all pilots; `seq` counts writes and is
// the consistency token. Versions are persistent, so cache entries tagged with
// them stay comparable across restarts.
class AccessStore {
 public:
  // Opens `database` (sqlite:PATH or postgresql://...) and applies the
  // schema migrations.
  static absl::StatusOr<std::unique_ptr<Database>> Open(
      const std::string& database, const DatabaseOptions& options = {});

  // Sites.
  static absl::Status InsertSite(Connection& db, const std::string& site_id,
                                 const v1::Site& site, absl::Time now);
  static absl::StatusOr<std::optional<v1::Site>> FindSite(
      Connection& db, const std::string& site_id);
  // Ordered by id, after `after_id`.
  static absl::StatusOr<std::vector<v1::Site>> ListSites(
      Connection& db, const std::string& after_id, int limit);
  static absl::Status UpdateSite(Connection& db, const std::string& site_id,
                                 const v1::Site& site, absl::Time now);
  // Returns the site's new version.
  static absl::StatusOr<int64_t> BumpSiteVersion(Connection& db,
                                                 const std::string& site_id,
                                                 absl::Time now);
  // 0 when the site does not exist.
  static absl::StatusOr<int64_t> SiteVersion(Connection& db,
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

  // The newest customer version CustomerManagementService told us about.
  static absl::StatusOr<int64_t> CustomerVersion(
      Connection& db, const std::string& customer_id);
  // Keeps the larger of the stored and the given version; returns it.
  static absl::StatusOr<int64_t> RaiseCustomerVersion(
      Connection& db, const std::string& customer_id, int64_t version);
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_ACCESS_STORE_H_
