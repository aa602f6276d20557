#include "services/access_service/access_logic.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/audit_store.h"
#include "common/auth.h"
#include "common/consistency_token.h"
#include "common/grpc_status.h"
#include "common/idempotency_store.h"
#include "common/logic_helpers.h"
#include "common/pagination.h"
#include "common/resource_name.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "google/rpc/status.pb.h"
#include "services/access_service/access_store.h"
#include "services/access_service/permission_change_log.h"

namespace custos::access {
namespace {

using custos::common::v1::ListAuditEventsRequest;
using custos::common::v1::ListAuditEventsResponse;
using google::protobuf::util::TimeUtil;

constexpr size_t kMaxJustificationBytes = 1000;
constexpr int kMaxBatchChecks = 100;

const absl::flat_hash_set<std::string>& CustomerPermissions() {
  static const auto* permissions = new absl::flat_hash_set<std::string>{
      "portal.login", "portal.manage_customer", "customer.view",
      "customer.update"};
  return *permissions;
}

bool IsStaffRole(absl::string_view role) {
  return role == kRoleCustomerCare || role == kRolePlatformAdmin ||
         role == kRoleService;
}

bool IsStaff(const Principal& principal) {
  return std::any_of(principal.roles.begin(), principal.roles.end(),
                     [](const std::string& r) { return IsStaffRole(r); });
}

// Staff who may read any site's data for operations (not decide on it).
bool IsOperator(const Principal& principal) {
  return principal.HasRole(kRolePlatformAdmin) ||
         principal.HasRole(kRoleService);
}

Subject SubjectOf(std::string user_id, const std::vector<std::string>& roles) {
  Subject subject;
  subject.user_id = std::move(user_id);
  for (const std::string& role : roles) {
    if (IsStaffRole(role)) subject.staff_roles.push_back(role);
  }
  std::sort(subject.staff_roles.begin(), subject.staff_roles.end());
  subject.staff_roles.erase(
      std::unique(subject.staff_roles.begin(), subject.staff_roles.end()),
      subject.staff_roles.end());
  return subject;
}

std::string SiteName(absl::string_view site_id) {
  return absl::StrCat("sites/", site_id);
}

absl::Status ValidateRole(absl::string_view field, v1::SiteRole role) {
  if (role == v1::SITE_ROLE_UNSPECIFIED || !v1::SiteRole_IsValid(role)) {
    return InvalidField(field,
                        "must be SITE_ROLE_VIEW_ONLY, SITE_ROLE_SITE_MEMBER or "
                        "SITE_ROLE_SITE_ADMINISTRATOR");
  }
  return absl::OkStatus();
}

absl::Status ValidateFreeText(absl::string_view field, absl::string_view value,
                              bool required) {
  if (value.empty()) {
    return required ? InvalidField(field, "is required") : absl::OkStatus();
  }
  if (value.size() > kMaxJustificationBytes) {
    return InvalidField(field, absl::StrCat("must be at most ",
                                            kMaxJustificationBytes, " bytes"));
  }
  for (char c : value) {
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\n') || c == 0x7f) {
      return InvalidField(field, "must not contain control characters");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Freshness> ParseConsistency(absl::string_view field,
                                           const v1::Consistency& consistency,
                                           const std::string& incarnation) {
  Freshness freshness;
  switch (consistency.requirement_case()) {
    case v1::Consistency::kFullyConsistent:
      freshness.fully_consistent = consistency.fully_consistent();
      break;
    case v1::Consistency::kAtLeastAsFresh: {
      absl::StatusOr<ConsistencyToken> token =
          ConsistencyToken::Decode(consistency.at_least_as_fresh());
      if (!token.ok()) {
        return InvalidField(absl::StrCat(field, ".at_least_as_fresh"),
                            "must be a consistency_token returned by a write");
      }
      if (token->store == ConsistencyToken::Store::kCustomers) {
        freshness.customers_token = *token;
      } else if (token->incarnation != incarnation) {
        // From another access store (or this one before it was recreated):
        // nothing here can say whether it is included.
        freshness.fully_consistent = true;
      } else {
        freshness.at_least_seq = token->sequence;
      }
      break;
    }
    default:
      break;
  }
  return freshness;
}

// A pending request past its expire time reads as EXPIRED even before the
// sweeper has written that down.
v1::AccessRequest AsOf(v1::AccessRequest request, absl::Time now) {
  if (request.state() == v1::AccessRequest::STATE_PENDING &&
      TimeUtil::TimestampToMicroseconds(request.expire_time()) <=
          absl::ToUnixMicros(now)) {
    request.set_state(v1::AccessRequest::STATE_EXPIRED);
  }
  return request;
}

google::rpc::Status ToRpcStatus(const absl::Status& status) {
  grpc::Status converted = ToGrpcStatus(status);
  google::rpc::Status rpc;
  if (!converted.error_details().empty() &&
      rpc.ParseFromString(converted.error_details())) {
    return rpc;
  }
  rpc.set_code(static_cast<int>(status.code()));
  rpc.set_message(std::string(status.message()));
  return rpc;
}

// What a write changed, told to the permission engine after it commits.
using Changes = WrittenChanges;

}  // namespace

AccessLogic::AccessLogic(Database* db, const Policy* policy,
                         PermissionEngine* engine,
                         PermissionChangeLog* change_log,
                         CustomerFactsSource* customers, const Clock* clock,
                         IdGenerator* ids, AccessLogicOptions options,
                         OutboxWorker* notifications_outbox)
    : db_(db),
      policy_(policy),
      engine_(engine),
      change_log_(change_log),
      customers_(customers),
      clock_(clock),
      ids_(ids),
      options_(options),
      notices_(notifications_outbox) {}

absl::Status AccessLogic::Start() {
  // A policy unlike the one last running changes every answer: watchers
  // are told once, by whichever replica starts with it first.
  constexpr char kPolicyFingerprint[] = "policy_fingerprint";
  const FactVersions::Generations generations = engine_->generations();
  WrittenChanges changes;
  bool changed = false;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    changes = WrittenChanges();
    ASSIGN_OR_RETURN(std::string last,
                     AccessStore::IdentityValue(db, kPolicyFingerprint));
    changed = last != policy_->fingerprint();
    if (!changed) return absl::OkStatus();
    RETURN_IF_ERROR(AccessStore::SetIdentityValue(db, kPolicyFingerprint,
                                                  policy_->fingerprint()));
    ASSIGN_OR_RETURN(changes.seq,
                     AccessStore::BumpCounter(db, AccessStore::kWriteSequence));
    v1::PermissionChange policy;
    policy.set_kind(v1::PermissionChange::KIND_POLICY);
    return PermissionChangeLog::Record(db, changes, {policy}, clock_->Now());
  }));
  if (changed) engine_->Publish(changes, generations);
  return engine_->SyncWithStore();
}

absl::StatusOr<std::optional<WatchPosition>> AccessLogic::PrepareWatch(
    const CallContext& call, const v1::WatchPermissionChangesRequest& request) {
  if (!call.principal.HasRole(kRoleService) &&
      !call.principal.HasRole(kRolePlatformAdmin)) {
    return Denied("watch", "permission changes");
  }
  if (request.resume_token().empty()) return std::nullopt;
  absl::StatusOr<WatchPosition> position =
      WatchPosition::Decode(request.resume_token());
  if (!position.ok()) {
    return InvalidField("resume_token",
                        "must be a resume_token from an earlier response");
  }
  return *position;
}

absl::Status AccessLogic::RequireCustomer(absl::string_view field,
                                          const std::string& customer) {
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(customer, "customers/*", field));
  ASSIGN_OR_RETURN(CustomerFacts facts, customers_->Get(ids[0], ""));
  if (!facts.exists) {
    return InvalidField(field, absl::StrCat(customer, " does not exist"));
  }
  return absl::OkStatus();
}

std::string AccessLogic::TokenOf(int64_t seq) const {
  ConsistencyToken token;
  token.store = ConsistencyToken::Store::kAccess;
  token.incarnation = options_.incarnation;
  token.sequence = seq;
  // Random, so a token is never issued twice, also when a restore makes a
  // write number repeat.
  token.change_id = NewVersionId();
  return token.Encode();
}

namespace {

// Runs one write transaction that also advances the write sequence, then
// tells the engine what changed: only then may the caller acknowledge it.
template <typename Body>
absl::Status WriteAndPublish(Database* database, PermissionEngine* engine,
                             const Clock* clock, Body body, Changes* changes) {
  // Read before the write: a sync that forgets versions after the commit
  // must not be undone by this write's (then possibly older) versions.
  const FactVersions::Generations generations = engine->generations();
  RETURN_IF_ERROR(database->Write([&](Connection& db) -> absl::Status {
    *changes = Changes();  // a retried transaction starts over
    RETURN_IF_ERROR(body(db));
    ASSIGN_OR_RETURN(changes->seq,
                     AccessStore::BumpCounter(db, AccessStore::kWriteSequence));
    // Watchers see what each write changed, in write order.
    return PermissionChangeLog::Record(db, *changes, {}, clock->Now());
  }));
  engine->Publish(*changes, generations);
  return absl::OkStatus();
}

// R6: after a change that may have removed the site's last administrator.
absl::Status HandOverIfNoAdministrator(Connection& db, AccessNotices& notices,
                                       const std::string& site_id,
                                       const std::string& actor,
                                       const std::string& request_id,
                                       absl::Time now) {
  ASSIGN_OR_RETURN(int64_t admins,
                   AccessStore::CountAdministrators(db, site_id));
  if (admins > 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(int64_t moved,
                   AccessStore::MovePendingToCustomerCare(db, site_id));
  if (moved == 0) return absl::OkStatus();
  RETURN_IF_ERROR(notices.HandedOver(db, SiteName(site_id), moved, now));
  return AppendAuditEvent(
      db, {actor, "HandOverAccessRequestsToCustomerCare", SiteName(site_id), "",
           absl::StrCat("{\"moved\":", moved, "}"), now, request_id});
}

}  // namespace

absl::StatusOr<bool> AccessLogic::CallerMay(const CallContext& call,
                                            const std::string& site_id,
                                            absl::string_view permission) {
  Resource resource{Resource::Kind::kSite, site_id};
  ASSIGN_OR_RETURN(
      PermissionEngine::Answer resolved,
      engine_->Resolve(SubjectOf(call.principal.subject, call.principal.roles),
                       resource, Freshness{}));
  for (const v1::Grant& grant : resolved->grants()) {
    if (grant.permission() == permission) return true;
  }
  return false;
}

namespace {

// The refusal for a caller without `permission` on the site: staff learn
// whether it exists (NOT_FOUND); others get PERMISSION_DENIED either way.
absl::Status Refuse(Database* database, const Principal& principal,
                    const std::string& site_id, absl::string_view action) {
  if (IsStaff(principal)) {
    bool exists = false;
    RETURN_IF_ERROR(database->Read([&](Connection& db) -> absl::Status {
      ASSIGN_OR_RETURN(auto site, AccessStore::FindSite(db, site_id));
      exists = site.has_value();
      return absl::OkStatus();
    }));
    if (!exists) {
      return absl::NotFoundError(
          absl::StrCat(SiteName(site_id), " does not exist"));
    }
  }
  return Denied(action, SiteName(site_id));
}

}  // namespace

// ---- Sites ----

absl::StatusOr<v1::Site> AccessLogic::CreateSite(
    const CallContext& call, const v1::CreateSiteRequest& request) {
  if (!call.principal.HasRole(kRoleCustomerCare) &&
      !IsOperator(call.principal)) {
    return Denied("create", "sites");
  }
  RETURN_IF_ERROR(ValidateResourceId(request.site_id(), "site_id", false));
  RETURN_IF_ERROR(ValidateDisplayName("site.display_name",
                                      request.site().display_name(), true));
  if (!request.site().customer().empty()) {
    RETURN_IF_ERROR(
        RequireCustomer("site.customer", request.site().customer()));
  }
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  const IdempotencyKey key{call.principal.subject, "CreateSite",
                           request.request_id()};
  const std::string fingerprint = RequestFingerprint(request);
  v1::Site result;
  Changes changes;
  RETURN_IF_ERROR(WriteAndPublish(
      db_, engine_, clock_,
      [&](Connection& db) -> absl::Status {
        ASSIGN_OR_RETURN(bool replayed,
                         Replayed(db, key, fingerprint, &result));
        if (replayed) return absl::OkStatus();
        ASSIGN_OR_RETURN(auto existing,
                         AccessStore::FindSite(db, request.site_id()));
        if (existing) {
          return absl::AlreadyExistsError(
              absl::StrCat(existing->name(), " already exists"));
        }
        const absl::Time now = clock_->Now();
        ASSIGN_OR_RETURN(VersionStamp version,
                         AccessStore::InsertSite(db, request.site_id(),
                                                 request.site(), now));
        ASSIGN_OR_RETURN(auto created,
                         AccessStore::FindSite(db, request.site_id()));
        result = *created;
        changes.sites.push_back({request.site_id(), version});
        RETURN_IF_ERROR(AppendAuditEvent(
            db, {call.principal.subject, "CreateSite", result.name(), "",
                 ToAuditJson(result), now, call.request_id}));
        return Remember(db, key, fingerprint, result, now);
      },
      &changes));
  result.set_consistency_token(TokenOf(changes.seq));
  return result;
}

absl::StatusOr<v1::Site> AccessLogic::GetSite(
    const CallContext& call, const v1::GetSiteRequest& request) {
  ASSIGN_OR_RETURN(auto ids,
                   ParseResourceName(request.name(), "sites/*", "name"));
  std::optional<v1::Site> site;
  std::optional<v1::SiteMember> member;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(site, AccessStore::FindSite(db, ids[0]));
    ASSIGN_OR_RETURN(
        member, AccessStore::FindMember(db, ids[0], call.principal.subject));
    return absl::OkStatus();
  }));
  if (IsStaff(call.principal)) {
    if (!site)
      return absl::NotFoundError(
          absl::StrCat(request.name(), " does not exist"));
    return *site;
  }
  if (!site || !member) return Denied("read", request.name());
  return *site;
}

absl::StatusOr<v1::ListSitesResponse> AccessLogic::ListSites(
    const CallContext& call, const v1::ListSitesRequest& request) {
  if (!IsStaff(call.principal)) return Denied("list", "sites");
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  std::string customer_id;
  if (!request.customer().empty()) {
    ASSIGN_OR_RETURN(auto ids, ParseResourceName(request.customer(),
                                                 "customers/*", "customer"));
    customer_id = ids[0];
  }
  v1::ListSitesResponse response;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(
        std::string next,
        ListPage<v1::Site>(
            absl::StrCat("sites:", request.customer()), page_size,
            request.page_token(),
            [&](const std::string& after, int limit) {
              return AccessStore::ListSites(db, customer_id, after, limit);
            },
            [&](v1::Site site) { *response.add_sites() = std::move(site); }));
    response.set_next_page_token(next);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::Site> AccessLogic::UpdateSite(
    const CallContext& call, const v1::UpdateSiteRequest& request) {
  if (!call.principal.HasRole(kRoleCustomerCare) &&
      !IsOperator(call.principal)) {
    return Denied("update", "sites");
  }
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(request.site().name(), "sites/*",
                                               "site.name"));
  if (request.update_mask().paths().empty()) {
    return InvalidField("update_mask", "must name the fields to change");
  }
  for (const std::string& path : request.update_mask().paths()) {
    if (path == "display_name") {
      RETURN_IF_ERROR(ValidateDisplayName("site.display_name",
                                          request.site().display_name(), true));
    } else if (path == "customer") {
      if (!request.site().customer().empty()) {
        RETURN_IF_ERROR(
            RequireCustomer("site.customer", request.site().customer()));
      }
    } else {
      return InvalidField(
          "update_mask", absl::StrCat("cannot update \"", path,
                                      "\"; updatable: display_name, customer"));
    }
  }
  v1::Site result;
  Changes changes;
  RETURN_IF_ERROR(WriteAndPublish(
      db_, engine_, clock_,
      [&](Connection& db) -> absl::Status {
        ASSIGN_OR_RETURN(auto site, AccessStore::FindSite(db, ids[0]));
        const absl::Time now = clock_->Now();
        if (!site && request.allow_missing() && IsOperator(call.principal)) {
          // AIP-134: created, named by its Support ID unless given a name.
          v1::Site created;
          created.set_display_name(request.site().display_name().empty()
                                       ? ids[0]
                                       : request.site().display_name());
          RETURN_IF_ERROR(
              AccessStore::InsertSite(db, ids[0], created, now).status());
          ASSIGN_OR_RETURN(site, AccessStore::FindSite(db, ids[0]));
        }
        if (!site) {
          return absl::NotFoundError(
              absl::StrCat(request.site().name(), " does not exist"));
        }
        if (!request.site().etag().empty() &&
            request.site().etag() != site->etag()) {
          return StaleEtag(site->name());
        }
        v1::Site updated = *site;
        for (const std::string& path : request.update_mask().paths()) {
          if (path == "display_name") {
            updated.set_display_name(request.site().display_name());
          } else {
            updated.set_customer(request.site().customer());
          }
        }
        ASSIGN_OR_RETURN(VersionStamp version,
                         AccessStore::UpdateSite(db, ids[0], updated, now));
        ASSIGN_OR_RETURN(auto stored, AccessStore::FindSite(db, ids[0]));
        result = *stored;
        changes.sites.push_back({ids[0], version});
        return AppendAuditEvent(
            db,
            {call.principal.subject, "UpdateSite", result.name(),
             ToAuditJson(*site), ToAuditJson(result), now, call.request_id});
      },
      &changes));
  result.set_consistency_token(TokenOf(changes.seq));
  return result;
}

// ---- Members (R7) ----

absl::StatusOr<v1::ListSiteMembersResponse> AccessLogic::ListSiteMembers(
    const CallContext& call, const v1::ListSiteMembersRequest& request) {
  ASSIGN_OR_RETURN(auto ids,
                   ParseResourceName(request.parent(), "sites/*", "parent"));
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  ASSIGN_OR_RETURN(bool may, CallerMay(call, ids[0], "site.members.list"));
  if (!may && !IsOperator(call.principal)) {
    return Refuse(db_, call.principal, ids[0], "list members of");
  }
  v1::ListSiteMembersResponse response;
  bool exists = true;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(auto site, AccessStore::FindSite(db, ids[0]));
    if (!site) {
      exists = false;
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(
        std::string next,
        ListPage<v1::SiteMember>(
            absl::StrCat("members:", ids[0]), page_size, request.page_token(),
            [&](const std::string& after, int limit) {
              return AccessStore::ListMembers(db, ids[0], after, limit);
            },
            [&](v1::SiteMember m) {
              *response.add_site_members() = std::move(m);
            }));
    response.set_next_page_token(next);
    return absl::OkStatus();
  }));
  if (!exists) {
    return absl::NotFoundError(
        absl::StrCat(request.parent(), " does not exist"));
  }
  return response;
}

absl::StatusOr<v1::SiteMember> AccessLogic::GetSiteMember(
    const CallContext& call, const v1::GetSiteMemberRequest& request) {
  ASSIGN_OR_RETURN(
      auto ids, ParseResourceName(request.name(), "sites/*/members/*", "name"));
  const bool self = ids[1] == call.principal.subject;
  if (!self) {
    ASSIGN_OR_RETURN(bool may, CallerMay(call, ids[0], "site.members.list"));
    if (!may && !IsOperator(call.principal)) {
      return Refuse(db_, call.principal, ids[0], "read members of");
    }
  }
  std::optional<v1::SiteMember> member;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(member, AccessStore::FindMember(db, ids[0], ids[1]));
    return absl::OkStatus();
  }));
  if (!member) {
    return absl::NotFoundError(absl::StrCat(request.name(), " does not exist"));
  }
  return *member;
}

absl::StatusOr<v1::SiteMember> AccessLogic::UpdateSiteMember(
    const CallContext& call, const v1::UpdateSiteMemberRequest& request) {
  ASSIGN_OR_RETURN(auto ids,
                   ParseResourceName(request.site_member().name(),
                                     "sites/*/members/*", "site_member.name"));
  if (request.update_mask().paths_size() != 1 ||
      request.update_mask().paths(0) != "role") {
    return InvalidField("update_mask", "must be exactly \"role\"");
  }
  RETURN_IF_ERROR(
      ValidateRole("site_member.role", request.site_member().role()));
  ASSIGN_OR_RETURN(bool may,
                   CallerMay(call, ids[0], "site.members.update_role"));
  if (!may) return Refuse(db_, call.principal, ids[0], "change roles on");
  v1::SiteMember result;
  Changes changes;
  RETURN_IF_ERROR(WriteAndPublish(
      db_, engine_, clock_,
      [&](Connection& db) -> absl::Status {
        ASSIGN_OR_RETURN(auto member,
                         AccessStore::FindMember(db, ids[0], ids[1]));
        if (!member) {
          return absl::NotFoundError(
              absl::StrCat(request.site_member().name(), " does not exist"));
        }
        if (!request.site_member().etag().empty() &&
            request.site_member().etag() != member->etag()) {
          return StaleEtag(member->name());
        }
        const absl::Time now = clock_->Now();
        RETURN_IF_ERROR(AccessStore::UpsertMember(
            db, ids[0], ids[1], request.site_member().role(), now));
        ASSIGN_OR_RETURN(VersionStamp version,
                         AccessStore::BumpSiteVersion(db, ids[0], now));
        changes.sites.push_back({ids[0], version});
        if (member->role() == v1::SITE_ROLE_SITE_ADMINISTRATOR) {
          RETURN_IF_ERROR(HandOverIfNoAdministrator(db, notices_, ids[0],
                                                    call.principal.subject,
                                                    call.request_id, now));
        }
        ASSIGN_OR_RETURN(auto stored,
                         AccessStore::FindMember(db, ids[0], ids[1]));
        result = *stored;
        return AppendAuditEvent(
            db,
            {call.principal.subject, "UpdateSiteMember", result.name(),
             ToAuditJson(*member), ToAuditJson(result), now, call.request_id});
      },
      &changes));
  notices_.Wake();
  result.set_consistency_token(TokenOf(changes.seq));
  return result;
}

absl::StatusOr<v1::DeleteSiteMemberResponse> AccessLogic::DeleteSiteMember(
    const CallContext& call, const v1::DeleteSiteMemberRequest& request) {
  ASSIGN_OR_RETURN(
      auto ids, ParseResourceName(request.name(), "sites/*/members/*", "name"));
  // R7: removal is Customer Care's, never a site administrator's.
  ASSIGN_OR_RETURN(bool may, CallerMay(call, ids[0], "site.members.remove"));
  if (!may) return Refuse(db_, call.principal, ids[0], "remove members of");
  Changes changes;
  RETURN_IF_ERROR(WriteAndPublish(
      db_, engine_, clock_,
      [&](Connection& db) -> absl::Status {
        ASSIGN_OR_RETURN(auto member,
                         AccessStore::FindMember(db, ids[0], ids[1]));
        if (!member) {
          return absl::NotFoundError(
              absl::StrCat(request.name(), " does not exist"));
        }
        if (!request.etag().empty() && request.etag() != member->etag()) {
          return StaleEtag(member->name());
        }
        const absl::Time now = clock_->Now();
        RETURN_IF_ERROR(AccessStore::DeleteMember(db, ids[0], ids[1]));
        ASSIGN_OR_RETURN(VersionStamp version,
                         AccessStore::BumpSiteVersion(db, ids[0], now));
        changes.sites.push_back({ids[0], version});
        if (member->role() == v1::SITE_ROLE_SITE_ADMINISTRATOR) {
          RETURN_IF_ERROR(HandOverIfNoAdministrator(db, notices_, ids[0],
                                                    call.principal.subject,
                                                    call.request_id, now));
        }
        return AppendAuditEvent(
            db, {call.principal.subject, "DeleteSiteMember", member->name(),
                 ToAuditJson(*member), "", now, call.request_id});
      },
      &changes));
  notices_.Wake();
  v1::DeleteSiteMemberResponse response;
  response.set_consistency_token(TokenOf(changes.seq));
  return response;
}

// ---- Access requests (R5, R6) ----

absl::StatusOr<v1::AccessRequest> AccessLogic::CreateAccessRequest(
    const CallContext& call, const v1::CreateAccessRequestRequest& request) {
  ASSIGN_OR_RETURN(auto ids,
                   ParseResourceName(request.parent(), "sites/*", "parent"));
  RETURN_IF_ERROR(ValidateRole("access_request.requested_role",
                               request.access_request().requested_role()));
  RETURN_IF_ERROR(ValidateFreeText("access_request.justification",
                                   request.access_request().justification(),
                                   false));
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  const std::string& requester = call.principal.subject;
  const IdempotencyKey key{requester, "CreateAccessRequest",
                           request.request_id()};
  const std::string fingerprint = RequestFingerprint(request);
  v1::AccessRequest result;
  Changes changes;
  RETURN_IF_ERROR(WriteAndPublish(
      db_, engine_, clock_,
      [&](Connection& db) -> absl::Status {
        ASSIGN_OR_RETURN(bool replayed,
                         Replayed(db, key, fingerprint, &result));
        if (replayed) return absl::OkStatus();
        ASSIGN_OR_RETURN(auto site, AccessStore::FindSite(db, ids[0]));
        if (!site) {
          return WithReason(absl::NotFoundError(absl::StrCat(
                                "no site has the Support ID \"", ids[0], "\"")),
                            "SITE_NOT_FOUND");
        }
        ASSIGN_OR_RETURN(auto member,
                         AccessStore::FindMember(db, ids[0], requester));
        const v1::SiteRole wanted = request.access_request().requested_role();
        if (member && member->role() == wanted) {
          return WithReason(
              absl::FailedPreconditionError(absl::StrCat(
                  "the caller already has ", v1::SiteRole_Name(wanted), " on ",
                  site->name())),
              "ALREADY_HAS_ROLE");
        }
        const absl::Time now = clock_->Now();
        ASSIGN_OR_RETURN(auto pending, AccessStore::FindPendingRequest(
                                           db, ids[0], requester));
        if (pending &&
            AsOf(*pending, now).state() == v1::AccessRequest::STATE_PENDING) {
          return WithReason(absl::FailedPreconditionError(absl::StrCat(
                                "the caller already has a pending request: ",
                                pending->name())),
                            "REQUEST_PENDING");
        }
        if (pending) {
          // Expired but not yet swept: record it before the new one.
          RETURN_IF_ERROR(ExpireDue(db, now).status());
        }
        // R6: a site's administrators decide, but never on their own
        // request; with nobody else to decide, Customer Care does.
        ASSIGN_OR_RETURN(std::vector<std::string> administrators,
                         AccessStore::ListAdministrators(db, ids[0]));
        int64_t admins = static_cast<int64_t>(administrators.size());
        if (member && member->role() == v1::SITE_ROLE_SITE_ADMINISTRATOR) {
          --admins;
        }
        v1::AccessRequest created;
        const std::string id = ids_->NewId();
        created.set_name(absl::StrCat(site->name(), "/accessRequests/", id));
        created.set_requester(UserName(requester));
        created.set_requested_role(wanted);
        created.set_current_role(member ? member->role()
                                        : v1::SITE_ROLE_UNSPECIFIED);
        created.set_justification(request.access_request().justification());
        created.set_state(v1::AccessRequest::STATE_PENDING);
        created.set_approver(
            admins > 0 ? v1::AccessRequest::APPROVER_SITE_ADMINISTRATORS
                       : v1::AccessRequest::APPROVER_CUSTOMER_CARE);
        *created.mutable_create_time() =
            TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now));
        *created.mutable_expire_time() = TimeUtil::MicrosecondsToTimestamp(
            absl::ToUnixMicros(now + options_.request_ttl));
        RETURN_IF_ERROR(AccessStore::InsertRequest(db, ids[0], id, created));
        RETURN_IF_ERROR(
            notices_.RequestCreated(db, created, administrators, now));
        result = created;
        RETURN_IF_ERROR(AppendAuditEvent(
            db, {requester, "CreateAccessRequest", result.name(), "",
                 ToAuditJson(result), now, call.request_id}));
        return Remember(db, key, fingerprint, result, now);
      },
      &changes));
  notices_.Wake();
  result.set_consistency_token(TokenOf(changes.seq));
  return result;
}

absl::StatusOr<v1::AccessRequest> AccessLogic::GetAccessRequest(
    const CallContext& call, const v1::GetAccessRequestRequest& request) {
  ASSIGN_OR_RETURN(
      auto ids,
      ParseResourceName(request.name(), "sites/*/accessRequests/*", "name"));
  std::optional<v1::AccessRequest> found;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(found, AccessStore::FindRequest(db, ids[0], ids[1]));
    return absl::OkStatus();
  }));
  const bool own =
      found && found->requester() == UserName(call.principal.subject);
  if (!own) {
    ASSIGN_OR_RETURN(bool may,
                     CallerMay(call, ids[0], "site.requests.approve"));
    if (!may && !IsOperator(call.principal)) {
      return Refuse(db_, call.principal, ids[0], "read access requests of");
    }
  }
  if (!found) {
    return absl::NotFoundError(absl::StrCat(request.name(), " does not exist"));
  }
  return AsOf(*found, clock_->Now());
}

absl::StatusOr<v1::ListAccessRequestsResponse> AccessLogic::ListAccessRequests(
    const CallContext& call, const v1::ListAccessRequestsRequest& request) {
  AccessRequestFilter filter;
  if (request.parent() != "sites/-") {
    ASSIGN_OR_RETURN(auto ids,
                     ParseResourceName(request.parent(), "sites/*", "parent"));
    filter.site_id = ids[0];
  }
  if (!request.requester().empty()) {
    if (request.requester() == "users/me") {
      filter.requester = call.principal.subject;
    } else {
      ASSIGN_OR_RETURN(auto user, ParseResourceName(request.requester(),
                                                    "users/*", "requester"));
      filter.requester = user[0];
    }
  }
  if (request.state() != v1::AccessRequest::STATE_UNSPECIFIED) {
    if (!v1::AccessRequest::State_IsValid(request.state())) {
      return InvalidField("state", "is not a known state");
    }
    filter.state = request.state();
  }
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  // Who may see this listing.
  const bool own =
      !filter.requester.empty() && filter.requester == call.principal.subject;
  if (request.customer_care_queue()) {
    if (!call.principal.HasRole(kRoleCustomerCare)) {
      return Denied("read", "the Customer Care queue");
    }
    filter.approver = v1::AccessRequest::APPROVER_CUSTOMER_CARE;
    if (!filter.state) filter.state = v1::AccessRequest::STATE_PENDING;
  } else if (!own) {
    if (filter.site_id.empty()) {
      if (!call.principal.HasRole(kRoleCustomerCare) &&
          !IsOperator(call.principal)) {
        return Denied("list access requests of", "every site");
      }
    } else {
      ASSIGN_OR_RETURN(
          bool may, CallerMay(call, filter.site_id, "site.requests.approve"));
      if (!may && !IsOperator(call.principal)) {
        return Refuse(db_, call.principal, filter.site_id,
                      "list access requests of");
      }
    }
  }
  const std::string query =
      absl::StrCat("requests:", filter.site_id, ":", filter.requester, ":",
                   filter.state ? static_cast<int>(*filter.state) : 0, ":",
                   filter.approver ? static_cast<int>(*filter.approver) : 0);
  ASSIGN_OR_RETURN(std::optional<TimeKey> before,
                   DecodeTimeKeyPageToken(request.page_token(), query));
  std::vector<v1::AccessRequest> rows;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(
        rows, AccessStore::ListRequests(db, filter, before, page_size + 1));
    return absl::OkStatus();
  }));
  v1::ListAccessRequestsResponse response;
  if (static_cast<int>(rows.size()) > page_size) {
    rows.resize(page_size);
    const v1::AccessRequest& last = rows.back();
    auto ids =
        ParseResourceName(last.name(), "sites/*/accessRequests/*", "name");
    response.set_next_page_token(EncodeTimeKeyPageToken(
        query, TimeUtil::TimestampToMicroseconds(last.create_time()),
        absl::StrCat((*ids)[0], "/", (*ids)[1])));
  }
  const absl::Time now = clock_->Now();
  for (v1::AccessRequest& row : rows) {
    *response.add_access_requests() = AsOf(std::move(row), now);
  }
  return response;
}

absl::StatusOr<v1::AccessRequest> AccessLogic::ApproveAccessRequest(
    const CallContext& call, const v1::ApproveAccessRequestRequest& request) {
  return Decide(call, request.name(), v1::AccessRequest::STATE_APPROVED, "");
}

absl::StatusOr<v1::AccessRequest> AccessLogic::RejectAccessRequest(
    const CallContext& call, const v1::RejectAccessRequestRequest& request) {
  RETURN_IF_ERROR(ValidateFreeText("reason", request.reason(), true));
  return Decide(call, request.name(), v1::AccessRequest::STATE_REJECTED,
                request.reason());
}

absl::StatusOr<v1::AccessRequest> AccessLogic::Decide(
    const CallContext& call, absl::string_view name,
    v1::AccessRequest::State decision, absl::string_view reason) {
  ASSIGN_OR_RETURN(auto ids,
                   ParseResourceName(name, "sites/*/accessRequests/*", "name"));
  ASSIGN_OR_RETURN(bool may, CallerMay(call, ids[0], "site.requests.approve"));
  if (!may) return Refuse(db_, call.principal, ids[0], "decide requests of");
  const char* action = decision == v1::AccessRequest::STATE_APPROVED
                           ? "ApproveAccessRequest"
                           : "RejectAccessRequest";
  v1::AccessRequest result;
  Changes changes;
  RETURN_IF_ERROR(WriteAndPublish(
      db_, engine_, clock_,
      [&](Connection& db) -> absl::Status {
        ASSIGN_OR_RETURN(auto found,
                         AccessStore::FindRequest(db, ids[0], ids[1]));
        if (!found) {
          return absl::NotFoundError(absl::StrCat(name, " does not exist"));
        }
        if (found->requester() == UserName(call.principal.subject)) {
          return WithReason(
              absl::PermissionDeniedError(
                  "nobody approves or rejects their own access request"),
              "SELF_APPROVAL");
        }
        const absl::Time now = clock_->Now();
        const v1::AccessRequest current = AsOf(*found, now);
        if (current.state() == decision) {  // deciding twice: no-op
          result = current;
          return absl::OkStatus();
        }
        if (current.state() == v1::AccessRequest::STATE_EXPIRED) {
          return WithReason(
              absl::FailedPreconditionError(absl::StrCat(name, " has expired")),
              "REQUEST_EXPIRED");
        }
        if (current.state() != v1::AccessRequest::STATE_PENDING) {
          return WithReason(
              absl::FailedPreconditionError(
                  absl::StrCat(name, " was already decided: ",
                               v1::AccessRequest::State_Name(current.state()))),
              "REQUEST_DECIDED");
        }
        v1::AccessRequest decided = current;
        decided.set_state(decision);
        decided.set_decided_by(UserName(call.principal.subject));
        decided.set_decision_reason(std::string(reason));
        *decided.mutable_decide_time() =
            TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now));
        RETURN_IF_ERROR(
            AccessStore::UpdateRequest(db, ids[0], ids[1], decided));
        RETURN_IF_ERROR(notices_.RequestDecided(db, decided, now));
        if (decision == v1::AccessRequest::STATE_APPROVED) {
          ASSIGN_OR_RETURN(const std::string requester,
                           ParseUserName(decided.requester(), "requester"));
          ASSIGN_OR_RETURN(auto member,
                           AccessStore::FindMember(db, ids[0], requester));
          RETURN_IF_ERROR(AccessStore::UpsertMember(
              db, ids[0], requester, decided.requested_role(), now));
          ASSIGN_OR_RETURN(VersionStamp version,
                           AccessStore::BumpSiteVersion(db, ids[0], now));
          changes.sites.push_back({ids[0], version});
          if (member && member->role() == v1::SITE_ROLE_SITE_ADMINISTRATOR) {
            RETURN_IF_ERROR(HandOverIfNoAdministrator(db, notices_, ids[0],
                                                      call.principal.subject,
                                                      call.request_id, now));
          }
        }
        result = decided;
        return AppendAuditEvent(
            db,
            {call.principal.subject, action, result.name(), ToAuditJson(*found),
             ToAuditJson(result), now, call.request_id});
      },
      &changes));
  notices_.Wake();
  result.set_consistency_token(TokenOf(changes.seq));
  return result;
}

absl::StatusOr<v1::AccessRequest> AccessLogic::CancelAccessRequest(
    const CallContext& call, const v1::CancelAccessRequestRequest& request) {
  ASSIGN_OR_RETURN(
      auto ids,
      ParseResourceName(request.name(), "sites/*/accessRequests/*", "name"));
  v1::AccessRequest result;
  Changes changes;
  RETURN_IF_ERROR(WriteAndPublish(
      db_, engine_, clock_,
      [&](Connection& db) -> absl::Status {
        ASSIGN_OR_RETURN(auto found,
                         AccessStore::FindRequest(db, ids[0], ids[1]));
        if (!found || found->requester() != UserName(call.principal.subject)) {
          return Denied("cancel", request.name());
        }
        const absl::Time now = clock_->Now();
        const v1::AccessRequest current = AsOf(*found, now);
        if (current.state() == v1::AccessRequest::STATE_CANCELLED) {
          result = current;
          return absl::OkStatus();
        }
        if (current.state() != v1::AccessRequest::STATE_PENDING) {
          return WithReason(
              absl::FailedPreconditionError(
                  absl::StrCat(request.name(), " is no longer pending: ",
                               v1::AccessRequest::State_Name(current.state()))),
              "REQUEST_DECIDED");
        }
        v1::AccessRequest cancelled = current;
        cancelled.set_state(v1::AccessRequest::STATE_CANCELLED);
        *cancelled.mutable_decide_time() =
            TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now));
        RETURN_IF_ERROR(
            AccessStore::UpdateRequest(db, ids[0], ids[1], cancelled));
        result = cancelled;
        return AppendAuditEvent(
            db,
            {call.principal.subject, "CancelAccessRequest", result.name(),
             ToAuditJson(*found), ToAuditJson(result), now, call.request_id});
      },
      &changes));
  result.set_consistency_token(TokenOf(changes.seq));
  return result;
}

absl::StatusOr<int> AccessLogic::ExpireDue(Connection& db, absl::Time now) {
  ASSIGN_OR_RETURN(auto names, AccessStore::ExpireDue(db, now));
  for (const std::string& name : names) {
    RETURN_IF_ERROR(
        AppendAuditEvent(db, {"system", "ExpireAccessRequest", name, "",
                              "{\"state\":\"STATE_EXPIRED\"}", now, ""}));
    ASSIGN_OR_RETURN(
        auto ids, ParseResourceName(name, "sites/*/accessRequests/*", "name"));
    ASSIGN_OR_RETURN(auto request,
                     AccessStore::FindRequest(db, ids[0], ids[1]));
    if (request) RETURN_IF_ERROR(notices_.RequestDecided(db, *request, now));
  }
  return static_cast<int>(names.size());
}

absl::StatusOr<int> AccessLogic::ExpireRequests() {
  int expired = 0;
  // No permission answer depends on a request's state, so the sweep does
  // not advance the write sequence (which would make every replica forget
  // its versions once per sweep).
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(expired, ExpireDue(db, clock_->Now()));
    return absl::OkStatus();
  }));
  notices_.Wake();
  return expired;
}

// ---- Pilots (R9) ----

absl::StatusOr<v1::Pilot> AccessLogic::CreatePilot(
    const CallContext& call, const v1::CreatePilotRequest& request) {
  if (!call.principal.HasRole(kRolePlatformAdmin)) {
    return Denied("create", "pilots");
  }
  RETURN_IF_ERROR(ValidateResourceId(request.pilot_id(), "pilot_id", false));
  RETURN_IF_ERROR(ValidateDisplayName("pilot.display_name",
                                      request.pilot().display_name(), true));
  if (request.pilot().permissions().empty()) {
    return InvalidField("pilot.permissions",
                        "must name at least one permission");
  }
  for (const std::string& permission : request.pilot().permissions()) {
    if (!policy_->IsPilotGated(permission)) {
      return InvalidField(
          "pilot.permissions",
          absl::StrCat("\"", permission,
                       "\" is not a pilot-gated permission of the policy"));
    }
  }
  if (!request.pilot().participants().empty()) {
    return InvalidField("pilot.participants",
                        "is output only; use AddPilotParticipant");
  }
  const v1::Pilot::Stage stage =
      request.pilot().stage() == v1::Pilot::STAGE_UNSPECIFIED
          ? v1::Pilot::STAGE_PILOT
          : request.pilot().stage();
  if (!v1::Pilot::Stage_IsValid(stage)) {
    return InvalidField("pilot.stage", "is not a known stage");
  }
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  const IdempotencyKey key{call.principal.subject, "CreatePilot",
                           request.request_id()};
  const std::string fingerprint = RequestFingerprint(request);
  v1::Pilot result;
  Changes changes;
  RETURN_IF_ERROR(WriteAndPublish(
      db_, engine_, clock_,
      [&](Connection& db) -> absl::Status {
        ASSIGN_OR_RETURN(bool replayed,
                         Replayed(db, key, fingerprint, &result));
        if (replayed) return absl::OkStatus();
        ASSIGN_OR_RETURN(auto existing,
                         AccessStore::FindPilot(db, request.pilot_id()));
        if (existing) {
          return absl::AlreadyExistsError(
              absl::StrCat(existing->name(), " already exists"));
        }
        v1::Pilot pilot = request.pilot();
        pilot.set_stage(stage);
        const absl::Time now = clock_->Now();
        RETURN_IF_ERROR(
            AccessStore::InsertPilot(db, request.pilot_id(), pilot, now));
        ASSIGN_OR_RETURN(changes.pilots, AccessStore::BumpPilotsVersion(db));
        ASSIGN_OR_RETURN(auto created,
                         AccessStore::FindPilot(db, request.pilot_id()));
        result = *created;
        RETURN_IF_ERROR(AppendAuditEvent(
            db, {call.principal.subject, "CreatePilot", result.name(), "",
                 ToAuditJson(result), now, call.request_id}));
        return Remember(db, key, fingerprint, result, now);
      },
      &changes));
  result.set_consistency_token(TokenOf(changes.seq));
  return result;
}

absl::StatusOr<v1::Pilot> AccessLogic::AddPilotParticipant(
    const CallContext& call, const v1::AddPilotParticipantRequest& request) {
  return ChangeParticipants(call, request.pilot(), request.participant(), true);
}

absl::StatusOr<v1::Pilot> AccessLogic::RemovePilotParticipant(
    const CallContext& call, const v1::RemovePilotParticipantRequest& request) {
  return ChangeParticipants(call, request.pilot(), request.participant(),
                            false);
}

absl::StatusOr<v1::Pilot> AccessLogic::ChangeParticipants(
    const CallContext& call, absl::string_view pilot_name,
    absl::string_view participant, bool add) {
  if (!call.principal.HasRole(kRolePlatformAdmin)) {
    return Denied("change participants of", pilot_name);
  }
  ASSIGN_OR_RETURN(auto ids,
                   ParseResourceName(pilot_name, "pilots/*", "pilot"));
  if (!ParseResourceName(participant, "users/*", "participant").ok() &&
      !ParseResourceName(participant, "sites/*", "participant").ok()) {
    return InvalidField("participant", "must be users/{user} or sites/{site}");
  }
  v1::Pilot result;
  Changes changes;
  RETURN_IF_ERROR(WriteAndPublish(
      db_, engine_, clock_,
      [&](Connection& db) -> absl::Status {
        ASSIGN_OR_RETURN(auto before, AccessStore::FindPilot(db, ids[0]));
        if (!before) {
          return absl::NotFoundError(
              absl::StrCat(pilot_name, " does not exist"));
        }
        ASSIGN_OR_RETURN(bool changed,
                         add ? AccessStore::AddParticipant(
                                   db, ids[0], std::string(participant))
                             : AccessStore::RemoveParticipant(
                                   db, ids[0], std::string(participant)));
        if (!changed) {  // already so: nothing to record
          result = *before;
          return absl::OkStatus();
        }
        const absl::Time now = clock_->Now();
        ASSIGN_OR_RETURN(changes.pilots, AccessStore::BumpPilotsVersion(db));
        ASSIGN_OR_RETURN(auto after, AccessStore::FindPilot(db, ids[0]));
        result = *after;
        return AppendAuditEvent(
            db, {call.principal.subject,
                 add ? "AddPilotParticipant" : "RemovePilotParticipant",
                 result.name(), ToAuditJson(*before), ToAuditJson(result), now,
                 call.request_id});
      },
      &changes));
  result.set_consistency_token(TokenOf(changes.seq));
  return result;
}

absl::StatusOr<v1::Pilot> AccessLogic::UpdatePilot(
    const CallContext& call, const v1::UpdatePilotRequest& request) {
  if (!call.principal.HasRole(kRolePlatformAdmin)) {
    return Denied("update", "pilots");
  }
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(request.pilot().name(),
                                               "pilots/*", "pilot.name"));
  if (request.update_mask().paths().empty()) {
    return InvalidField("update_mask", "must name the fields to change");
  }
  for (const std::string& path : request.update_mask().paths()) {
    if (path == "stage") {
      if (request.pilot().stage() == v1::Pilot::STAGE_UNSPECIFIED ||
          !v1::Pilot::Stage_IsValid(request.pilot().stage())) {
        return InvalidField(
            "pilot.stage", "must be STAGE_PILOT or STAGE_GENERAL_AVAILABILITY");
      }
    } else if (path == "display_name") {
      RETURN_IF_ERROR(ValidateDisplayName(
          "pilot.display_name", request.pilot().display_name(), true));
    } else {
      return InvalidField("update_mask",
                          absl::StrCat("cannot update \"", path,
                                       "\"; updatable: stage, display_name"));
    }
  }
  v1::Pilot result;
  Changes changes;
  RETURN_IF_ERROR(WriteAndPublish(
      db_, engine_, clock_,
      [&](Connection& db) -> absl::Status {
        ASSIGN_OR_RETURN(auto before, AccessStore::FindPilot(db, ids[0]));
        if (!before) {
          return absl::NotFoundError(
              absl::StrCat(request.pilot().name(), " does not exist"));
        }
        v1::Pilot updated = *before;
        for (const std::string& path : request.update_mask().paths()) {
          if (path == "stage") {
            if (before->stage() == v1::Pilot::STAGE_GENERAL_AVAILABILITY &&
                request.pilot().stage() == v1::Pilot::STAGE_PILOT) {
              return WithReason(
                  absl::FailedPreconditionError(
                      "a generally available pilot cannot go back to pilot"),
                  "STAGE_REGRESSION");
            }
            updated.set_stage(request.pilot().stage());
          } else {
            updated.set_display_name(request.pilot().display_name());
          }
        }
        const absl::Time now = clock_->Now();
        RETURN_IF_ERROR(AccessStore::UpdatePilot(db, ids[0], updated, now));
        ASSIGN_OR_RETURN(changes.pilots, AccessStore::BumpPilotsVersion(db));
        ASSIGN_OR_RETURN(auto after, AccessStore::FindPilot(db, ids[0]));
        result = *after;
        return AppendAuditEvent(
            db,
            {call.principal.subject, "UpdatePilot", result.name(),
             ToAuditJson(*before), ToAuditJson(result), now, call.request_id});
      },
      &changes));
  result.set_consistency_token(TokenOf(changes.seq));
  return result;
}

// ---- Checks ----

namespace {

struct CheckTarget {
  Subject subject;
  Resource resource;
  Freshness freshness;
};

absl::StatusOr<CheckTarget> ParseCheckTarget(
    const CallContext& call, absl::string_view prefix,
    const std::string& principal,
    const google::protobuf::RepeatedPtrField<std::string>& principal_roles,
    const std::string& resource, const v1::Consistency& consistency,
    const std::string& incarnation) {
  CheckTarget target;
  std::string user_id = call.principal.subject;
  bool other = false;
  if (!principal.empty()) {
    ASSIGN_OR_RETURN(auto user,
                     ParseResourceName(principal, "users/*",
                                       absl::StrCat(prefix, "principal")));
    other = user[0] != call.principal.subject;
    user_id = user[0];
  }
  if (other && !call.principal.HasRole(kRoleService)) {
    return Denied("check the permissions of", principal);
  }
  std::vector<std::string> roles;
  if (other) {
    for (const std::string& role : principal_roles) {
      if (!IsStaffRole(role)) {
        return InvalidField(
            absl::StrCat(prefix, "principal_roles"),
            absl::StrCat("\"", role,
                         "\" is not a staff role (customer_care, "
                         "platform_admin, service)"));
      }
      roles.push_back(role);
    }
  } else {
    roles = call.principal.roles;
  }
  target.subject = SubjectOf(user_id, roles);
  const std::string field = absl::StrCat(prefix, "resource");
  if (auto site = ParseResourceName(resource, "sites/*", field); site.ok()) {
    target.resource = Resource{Resource::Kind::kSite, (*site)[0]};
  } else if (auto customer = ParseResourceName(resource, "customers/*", field);
             customer.ok()) {
    target.resource = Resource{Resource::Kind::kCustomer, (*customer)[0]};
  } else {
    return InvalidField(field, "must be sites/{site} or customers/{customer}");
  }
  ASSIGN_OR_RETURN(target.freshness,
                   ParseConsistency(absl::StrCat(prefix, "consistency"),
                                    consistency, incarnation));
  return target;
}

absl::Status ValidatePermission(const Policy& policy, absl::string_view field,
                                const Resource& resource,
                                const std::string& permission) {
  if (permission.empty()) return InvalidField(field, "is required");
  const bool known = resource.kind == Resource::Kind::kSite
                         ? policy.IsKnownPermission(permission)
                         : CustomerPermissions().contains(permission);
  if (!known) {
    return InvalidField(
        field, absl::StrCat("\"", permission, "\" is not a permission of ",
                            resource.kind == Resource::Kind::kSite
                                ? "sites (see ListRoles)"
                                : "customers (portal.login, "
                                  "portal.manage_customer, customer.view, "
                                  "customer.update)"));
  }
  return absl::OkStatus();
}

bool Granted(const v1::ResolvePermissionsResponse& resolved,
             const std::string& permission) {
  for (const v1::Grant& grant : resolved.grants()) {
    if (grant.permission() == permission) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<v1::CheckPermissionResponse> AccessLogic::CheckPermission(
    const CallContext& call, const v1::CheckPermissionRequest& request) {
  ASSIGN_OR_RETURN(
      CheckTarget target,
      ParseCheckTarget(call, "", request.principal(), request.principal_roles(),
                       request.resource(), request.consistency(),
                       options_.incarnation));
  RETURN_IF_ERROR(ValidatePermission(*policy_, "permission", target.resource,
                                     request.permission()));
  ASSIGN_OR_RETURN(
      auto resolved,
      engine_->Resolve(target.subject, target.resource, target.freshness));
  v1::CheckPermissionResponse response;
  response.set_allowed(Granted(*resolved, request.permission()));
  return response;
}

std::optional<absl::StatusOr<v1::CheckPermissionResponse>>
AccessLogic::CheckPermissionFromMemory(
    const CallContext& call, const v1::CheckPermissionRequest& request) {
  absl::StatusOr<CheckTarget> target = ParseCheckTarget(
      call, "", request.principal(), request.principal_roles(),
      request.resource(), request.consistency(), options_.incarnation);
  if (!target.ok()) return target.status();
  absl::Status valid = ValidatePermission(
      *policy_, "permission", target->resource, request.permission());
  if (!valid.ok()) return valid;
  PermissionEngine::Answer resolved = engine_->ResolveFromMemory(
      target->subject, target->resource, target->freshness);
  if (resolved == nullptr) return std::nullopt;
  v1::CheckPermissionResponse response;
  response.set_allowed(Granted(*resolved, request.permission()));
  return response;
}

absl::StatusOr<v1::BatchCheckPermissionsResponse>
AccessLogic::BatchCheckPermissions(
    const CallContext& call, const v1::BatchCheckPermissionsRequest& request) {
  if (request.checks().empty()) {
    return InvalidField("checks", "must hold at least one check");
  }
  if (request.checks_size() > kMaxBatchChecks) {
    return InvalidField("checks", absl::StrCat("must hold at most ",
                                               kMaxBatchChecks, " checks"));
  }
  v1::BatchCheckPermissionsResponse response;
  for (int i = 0; i < request.checks_size(); ++i) {
    const v1::CheckPermissionRequest& check = request.checks(i);
    const std::string prefix = absl::StrCat("checks[", i, "].");
    auto* result = response.add_results();
    absl::StatusOr<bool> allowed = [&]() -> absl::StatusOr<bool> {
      ASSIGN_OR_RETURN(
          CheckTarget target,
          ParseCheckTarget(call, prefix, check.principal(),
                           check.principal_roles(), check.resource(),
                           check.consistency(), options_.incarnation));
      RETURN_IF_ERROR(ValidatePermission(*policy_,
                                         absl::StrCat(prefix, "permission"),
                                         target.resource, check.permission()));
      ASSIGN_OR_RETURN(
          auto resolved,
          engine_->Resolve(target.subject, target.resource, target.freshness));
      return Granted(*resolved, check.permission());
    }();
    if (allowed.ok()) {
      result->set_allowed(*allowed);
    } else {
      *result->mutable_status() = ToRpcStatus(allowed.status());
    }
  }
  return response;
}

absl::StatusOr<v1::ResolvePermissionsResponse> AccessLogic::ResolvePermissions(
    const CallContext& call, const v1::ResolvePermissionsRequest& request) {
  ASSIGN_OR_RETURN(
      CheckTarget target,
      ParseCheckTarget(call, "", request.principal(), request.principal_roles(),
                       request.resource(), request.consistency(),
                       options_.incarnation));
  ASSIGN_OR_RETURN(
      PermissionEngine::Answer resolved,
      engine_->Resolve(target.subject, target.resource, target.freshness));
  return *resolved;
}

absl::StatusOr<v1::ListRolesResponse> AccessLogic::ListRoles(
    const CallContext& call, const v1::ListRolesRequest& request) {
  v1::ListRolesResponse response;
  *response.mutable_policy() = policy_->proto();
  return response;
}

absl::StatusOr<v1::NotifyCustomerChangedResponse>
AccessLogic::NotifyCustomerChanged(
    const CallContext& call, const v1::NotifyCustomerChangedRequest& request) {
  if (!call.principal.HasRole(kRoleService)) {
    return Denied("notify", "customer changes");
  }
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(request.customer(),
                                               "customers/*", "customer"));
  if (request.version() < 0) {
    return InvalidField("version", "must not be negative");
  }
  // A notice written before the change feed existed carries no position:
  // the feed has brought that change already.
  if (request.consistency_token().empty()) {
    return v1::NotifyCustomerChangedResponse();
  }
  absl::StatusOr<ConsistencyToken> token =
      ConsistencyToken::Decode(request.consistency_token());
  if (!token.ok() || token->store != ConsistencyToken::Store::kCustomers) {
    return InvalidField("consistency_token",
                        "must be the change's CustomerManagementService token");
  }
  // A notice from another incarnation of the customer store is old news
  // (or the feed will say so): the change feed decides, not the outbox.
  if (token->incarnation != engine_->feed()->incarnation()) {
    return v1::NotifyCustomerChangedResponse();
  }
  // It raises only a version known here: a notice may be older than what
  // the facts are now (delivered late, after a restart), so it must not
  // stand for the customer's current version; an unknown customer is read
  // from its owner on the next check anyway.
  engine_->CustomerNoticed(ids[0], {token->sequence, token->change_id});
  return v1::NotifyCustomerChangedResponse();
}

absl::StatusOr<ListAuditEventsResponse> AccessLogic::ListAuditEvents(
    const CallContext& call, const ListAuditEventsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  auto site = ParseResourceName(request.parent(), "sites/*", "parent");
  if (!site.ok()) {
    site = ParseResourceName(request.parent(), "sites/*/members/*", "parent");
  }
  if (!site.ok()) {
    site = ParseResourceName(request.parent(), "sites/*/accessRequests/*",
                             "parent");
  }
  if (site.ok()) {
    ASSIGN_OR_RETURN(bool may,
                     CallerMay(call, (*site)[0], "site.members.list"));
    if (!may && !IsOperator(call.principal)) {
      return Refuse(db_, call.principal, (*site)[0], "read the audit log of");
    }
  } else if (ParseResourceName(request.parent(), "pilots/*", "parent").ok()) {
    if (!IsStaff(call.principal)) {
      return Denied("read the audit log of", request.parent());
    }
  } else {
    return InvalidField("parent",
                        "must be sites/{site} (or below it) or "
                        "pilots/{pilot}");
  }
  return custos::ListAuditEvents(*db_, request.parent(), page_size,
                                 request.page_token());
}

}  // namespace custos::access
