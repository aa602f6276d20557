#include "services/customer_management_service/customer_management.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/audit_store.h"
#include "common/consistency_token.h"
#include "common/grpc_status.h"
#include "common/idempotency_store.h"
#include "common/logic_helpers.h"
#include "common/pagination.h"
#include "common/resource_name.h"
#include "common/status_macros.h"
#include "custos/access/v1/access_service.pb.h"
#include "custos/notifications/v1/notifications_service.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "services/customer_management_service/customer_store.h"

namespace custos::customers {
namespace {

using custos::common::v1::ListAuditEventsRequest;
using custos::common::v1::ListAuditEventsResponse;
using google::protobuf::util::TimeUtil;

// How much the caller may do with one partner or customer, weakest first.
enum class Standing {
  kNone,
  kCustomerUser,
  kPartnerUser,
  kPartnerAdmin,
  kPlatformAdmin,
};

constexpr size_t kMaxProductCodeBytes = 64;

absl::Status ValidateEmail(absl::string_view field, absl::string_view value) {
  if (value.empty()) return absl::OkStatus();
  size_t at = value.find('@');
  bool ok = value.size() <= 254 && at != absl::string_view::npos && at > 0 &&
            at + 1 < value.size() && value.find('@', at + 1) == value.npos &&
            !HasControlCharacter(value) && value.find(' ') == value.npos;
  return ok ? absl::OkStatus()
            : InvalidField(field, "must be an e-mail address like a@b.example");
}

// R3: a customer without a partner is managed by itself and hears
// everything.
v1::ManagementSettings EffectiveSettings(const v1::Customer& customer) {
  v1::ManagementSettings settings;
  if (customer.partner().empty()) {
    settings.set_management_type(v1::MANAGEMENT_TYPE_CUSTOMER);
    settings.set_communications(v1::COMMUNICATIONS_SHARED);
  } else {
    settings.set_management_type(customer.management_type());
    settings.set_communications(customer.communications());
  }
  return settings;
}

std::string PartnerIdOf(const v1::Customer& customer) {
  return customer.partner().empty()
             ? ""
             : customer.partner().substr(sizeof("partners/") - 1);
}

// Loads the caller's standing towards a partner. Platform admins are told
// NOT_FOUND for a missing partner; anyone else without standing gets
// PERMISSION_DENIED whether or not it exists (R4, §3).
absl::StatusOr<Standing> PartnerStanding(Connection& db,
                                         const Principal& principal,
                                         const std::string& partner_id) {
  if (principal.HasRole(kRolePlatformAdmin)) {
    ASSIGN_OR_RETURN(auto partner, CustomerStore::FindPartner(db, partner_id));
    if (!partner) {
      return absl::NotFoundError(
          absl::StrCat("partners/", partner_id, " does not exist"));
    }
    return Standing::kPlatformAdmin;
  }
  ASSIGN_OR_RETURN(auto member, CustomerStore::FindPartnerUser(
                                    db, partner_id, principal.subject));
  if (!member) return Standing::kNone;
  return member->role() == v1::PARTNER_ROLE_PARTNER_ADMIN
             ? Standing::kPartnerAdmin
             : Standing::kPartnerUser;
}

absl::Status RequirePartner(Connection& db, const Principal& principal,
                            const std::string& partner_id, Standing needed,
                            absl::string_view action) {
  ASSIGN_OR_RETURN(Standing standing,
                   PartnerStanding(db, principal, partner_id));
  if (standing < needed) {
    return Denied(action, absl::StrCat("partners/", partner_id));
  }
  return absl::OkStatus();
}

// What a caller who is not a platform admin is to a customer (R4). A
// partner's users act through the partner even when they are also listed as
// users of the customer.
Standing CustomerStanding(const CustomerAndCaller& found) {
  if (found.partner_role) {
    return *found.partner_role == v1::PARTNER_ROLE_PARTNER_ADMIN
               ? Standing::kPartnerAdmin
               : Standing::kPartnerUser;
  }
  return found.is_customer_user ? Standing::kCustomerUser : Standing::kNone;
}

// Loads a customer for a caller who needs at least `needed` standing (R4).
absl::StatusOr<v1::Customer> LoadCustomer(Connection& db,
                                          const Principal& principal,
                                          const std::string& customer_id,
                                          Standing needed,
                                          absl::string_view action) {
  const std::string name = absl::StrCat("customers/", customer_id);
  ASSIGN_OR_RETURN(auto found, CustomerStore::FindCustomerAndCaller(
                                   db, customer_id, principal.subject));
  if (principal.HasRole(kRolePlatformAdmin)) {
    if (!found)
      return absl::NotFoundError(absl::StrCat(name, " does not exist"));
    return std::move(found->customer);
  }
  if (!found) return Denied(action, name);
  if (CustomerStanding(*found) < needed) return Denied(action, name);
  return std::move(found->customer);
}

// Parses an etag this service issued.
bool EtagMatches(absl::string_view etag, int64_t version) {
  return etag == absl::StrCat(version);
}

// Resolves `account_manager` against the customer's partner: it must name an
// existing user of that partner.
absl::Status ValidateAccountManager(Connection& db, absl::string_view field,
                                    const std::string& partner_id,
                                    const std::string& account_manager) {
  if (account_manager.empty()) return absl::OkStatus();
  if (partner_id.empty()) {
    return InvalidField(field,
                        "a customer without a partner has no account "
                        "manager");
  }
  ASSIGN_OR_RETURN(
      std::vector<std::string> ids,
      ParseResourceName(account_manager, "partners/*/users/*", field));
  if (ids[0] != partner_id) {
    return InvalidField(field, "must be a user of the customer's partner");
  }
  ASSIGN_OR_RETURN(auto user,
                   CustomerStore::FindPartnerUser(db, partner_id, ids[1]));
  if (!user) {
    return InvalidField(field,
                        absl::StrCat(account_manager, " does not exist"));
  }
  return absl::OkStatus();
}

// The site <-> customer link is AccessService's (Site.customer).
absl::Status RefuseSites(absl::string_view field, const v1::Customer& c) {
  if (c.sites_size() == 0) return absl::OkStatus();
  return InvalidField(field,
                      "is output only: a site is linked to its customer in "
                      "AccessService (UpdateSite, field customer)");
}

absl::Status ValidateSettings(absl::string_view field,
                              const v1::ManagementSettings& settings,
                              bool required) {
  if (!v1::ManagementType_IsValid(settings.management_type())) {
    return InvalidField(absl::StrCat(field, ".management_type"),
                        "is not a known management type");
  }
  if (!v1::Communications_IsValid(settings.communications())) {
    return InvalidField(absl::StrCat(field, ".communications"),
                        "is not a known communications mode");
  }
  if (required &&
      settings.management_type() == v1::MANAGEMENT_TYPE_UNSPECIFIED) {
    return InvalidField(absl::StrCat(field, ".management_type"), "is required");
  }
  if (required && settings.communications() == v1::COMMUNICATIONS_UNSPECIFIED) {
    return InvalidField(absl::StrCat(field, ".communications"), "is required");
  }
  return absl::OkStatus();
}

absl::Status ValidateProduct(absl::string_view prefix, const v1::Product& p,
                             bool check_code) {
  if (check_code) {
    const std::string field = absl::StrCat(prefix, ".product_code");
    if (p.product_code().empty()) return InvalidField(field, "is required");
    if (p.product_code().size() > kMaxProductCodeBytes ||
        HasControlCharacter(p.product_code())) {
      return InvalidField(field, "must be at most 64 printable bytes");
    }
  }
  if (p.seats() < 0) {
    return InvalidField(absl::StrCat(prefix, ".seats"), "must not be negative");
  }
  if (!v1::ProductStatus_IsValid(p.status())) {
    return InvalidField(absl::StrCat(prefix, ".status"),
                        "is not a known product status");
  }
  if (p.has_term_start_time() && p.has_term_end_time() &&
      TimeUtil::TimestampToMicroseconds(p.term_end_time()) <
          TimeUtil::TimestampToMicroseconds(p.term_start_time())) {
    return InvalidField(absl::StrCat(prefix, ".term_end_time"),
                        "must not be before term_start_time");
  }
  return absl::OkStatus();
}

// The portal permissions R1 grants each related user, and who hears alerts
// (R2/R10), for one set of settings.
struct Reach {
  absl::flat_hash_set<std::string> login;
  absl::flat_hash_set<std::string> manage;
  absl::flat_hash_set<std::string> alerts;
};

Reach ReachOf(const v1::ManagementSettings& settings,
              const std::vector<std::string>& customer_users,
              const std::vector<std::string>& partner_users,
              const std::string& account_manager, bool has_partner) {
  Reach reach;
  const auto type = settings.management_type();
  if (type == v1::MANAGEMENT_TYPE_CUSTOMER ||
      type == v1::MANAGEMENT_TYPE_CO_MANAGED) {
    reach.login.insert(customer_users.begin(), customer_users.end());
  }
  if (has_partner && (type == v1::MANAGEMENT_TYPE_PARTNER ||
                      type == v1::MANAGEMENT_TYPE_CO_MANAGED)) {
    reach.manage.insert(partner_users.begin(), partner_users.end());
  }
  if (!account_manager.empty()) reach.alerts.insert(account_manager);
  if (!has_partner || settings.communications() == v1::COMMUNICATIONS_SHARED) {
    reach.alerts.insert(customer_users.begin(), customer_users.end());
  }
  return reach;
}

template <typename Add>
void Diff(const absl::flat_hash_set<std::string>& before,
          const absl::flat_hash_set<std::string>& after, Add add) {
  std::vector<std::pair<std::string, v1::ChangeKind>> changes;
  for (const auto& user : after) {
    if (!before.contains(user))
      changes.emplace_back(user, v1::CHANGE_KIND_GAINED);
  }
  for (const auto& user : before) {
    if (!after.contains(user)) changes.emplace_back(user, v1::CHANGE_KIND_LOST);
  }
  std::sort(changes.begin(), changes.end());
  for (const auto& [user, kind] : changes) add(user, kind);
}

// Reads every row of a paged store listing.
template <typename T, typename List>
absl::StatusOr<std::vector<T>> ReadAll(List list) {
  std::vector<T> all;
  std::string after;
  while (true) {
    ASSIGN_OR_RETURN(std::vector<T> page, list(after, kMaxPageSize));
    if (page.empty()) return all;
    after = page.back().name().substr(page.back().name().rfind('/') + 1);
    for (T& item : page) all.push_back(std::move(item));
  }
}

}  // namespace

constexpr char kNotifyCustomerChanged[] =
    "/custos.access.v1.AccessService/NotifyCustomerChanged";
// How long a write waits for AccessService to hear of it before answering.
constexpr absl::Duration kAnnounceDeadline = absl::Seconds(1);

std::string CustomerManagement::TokenOf(int64_t sequence,
                                        int64_t change_id) const {
  ConsistencyToken token;
  token.store = ConsistencyToken::Store::kCustomers;
  token.incarnation = incarnation_;
  token.sequence = sequence;
  token.change_id = change_id;
  return token.Encode();
}

absl::StatusOr<std::string> CustomerManagement::HeadToken(Connection& db) {
  ASSIGN_OR_RETURN(CustomerChangeRow head, CustomerStore::LastChange(db));
  return TokenOf(head.sequence, head.change_id);
}

absl::StatusOr<std::string> CustomerManagement::AnnounceCustomer(
    Connection& db, const std::string& customer_id, bool deleted,
    absl::Time now) {
  ASSIGN_OR_RETURN(
      CustomerChangeRow change,
      CustomerStore::AppendCustomerChange(db, customer_id, deleted, now));
  std::string token = TokenOf(change.sequence, change.change_id);
  if (outbox_ == nullptr) return token;
  custos::access::v1::NotifyCustomerChangedRequest notice;
  notice.set_customer(absl::StrCat("customers/", customer_id));
  notice.set_deleted(deleted);
  notice.set_version(change.sequence);
  notice.set_consistency_token(token);
  RETURN_IF_ERROR(
      EnqueueOutbox(db, "access", kNotifyCustomerChanged, notice, now));
  return token;
}

absl::StatusOr<std::string> CustomerManagement::AnnouncePartner(
    Connection& db, const std::string& partner_id, absl::Time now) {
  ASSIGN_OR_RETURN(auto versions,
                   CustomerStore::CustomerVersionsOfPartner(db, partner_id));
  for (const auto& [customer_id, unused] : versions) {
    RETURN_IF_ERROR(AnnounceCustomer(db, customer_id, false, now).status());
  }
  // After the last change appended (or the head, when the partner has no
  // customers yet).
  return HeadToken(db);
}

constexpr char kPublishAlert[] =
    "/custos.notifications.v1.NotificationService/PublishAlert";

absl::Status CustomerManagement::AnnounceSettingsChange(
    Connection& db, const v1::Customer& before, const v1::Customer& after,
    const std::string& actor, absl::Time now) {
  if (notifications_outbox_ == nullptr) return absl::OkStatus();
  custos::notifications::v1::PublishAlertRequest alert;
  alert.set_customer(after.name());
  alert.set_category(custos::notifications::v1::CATEGORY_ACCOUNT);
  alert.set_severity(custos::notifications::v1::SEVERITY_INFO);
  alert.set_title(absl::StrCat("Management settings of ", after.display_name(),
                               " changed"));
  alert.set_body(absl::StrCat(
      "Management type: ", v1::ManagementType_Name(before.management_type()),
      " -> ", v1::ManagementType_Name(after.management_type()),
      "; communications: ", v1::Communications_Name(before.communications()),
      " -> ", v1::Communications_Name(after.communications()),
      ". Changed by users/", actor, "."));
  // One alert per version: the outbox may deliver it more than once.
  alert.set_request_id(
      absl::StrCat("settings:", after.name(), ":v", after.version()));
  return EnqueueOutbox(db, "notifications", kPublishAlert, alert, now);
}

void CustomerManagement::DeliverAnnouncements() {
  if (notifications_outbox_ != nullptr) notifications_outbox_->Wake();
  if (outbox_ == nullptr) return;
  // A failure is the outbox's to retry; the write itself has succeeded.
  outbox_->DeliverPending(kAnnounceDeadline).IgnoreError();
}

absl::StatusOr<v1::Partner> CustomerManagement::CreatePartner(
    const CallContext& call, const v1::CreatePartnerRequest& request) {
  if (!call.principal.HasRole(kRolePlatformAdmin)) {
    return Denied("create", "partners");
  }
  RETURN_IF_ERROR(ValidateResourceId(request.partner_id(), "partner_id",
                                     /*optional=*/true));
  RETURN_IF_ERROR(ValidateDisplayName("partner.display_name",
                                      request.partner().display_name(), true));
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  const IdempotencyKey key{call.principal.subject, "CreatePartner",
                           request.request_id()};
  const std::string fingerprint = RequestFingerprint(request);
  v1::Partner result;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(bool replayed, Replayed(db, key, fingerprint, &result));
    if (replayed) return absl::OkStatus();
    std::string id =
        request.partner_id().empty() ? ids_->NewId() : request.partner_id();
    ASSIGN_OR_RETURN(auto existing, CustomerStore::FindPartner(db, id));
    if (existing) {
      return absl::AlreadyExistsError(
          absl::StrCat("partners/", id, " already exists"));
    }
    const absl::Time now = clock_->Now();
    RETURN_IF_ERROR(
        CustomerStore::InsertPartner(db, id, request.partner(), now));
    ASSIGN_OR_RETURN(auto created, CustomerStore::FindPartner(db, id));
    result = *created;
    RETURN_IF_ERROR(AppendAuditEvent(
        db, {call.principal.subject, "CreatePartner", result.name(), "",
             ToAuditJson(result), now, call.request_id}));
    return Remember(db, key, fingerprint, result, now);
  }));
  return result;
}

absl::StatusOr<v1::Partner> CustomerManagement::GetPartner(
    const CallContext& call, const v1::GetPartnerRequest& request) {
  ASSIGN_OR_RETURN(auto ids,
                   ParseResourceName(request.name(), "partners/*", "name"));
  v1::Partner result;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    RETURN_IF_ERROR(RequirePartner(db, call.principal, ids[0],
                                   Standing::kPartnerUser, "read"));
    ASSIGN_OR_RETURN(auto partner, CustomerStore::FindPartner(db, ids[0]));
    result = *partner;
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<v1::ListPartnersResponse> CustomerManagement::ListPartners(
    const CallContext& call, const v1::ListPartnersRequest& request) {
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  // Platform admins see every partner; anyone else those they belong to.
  const std::string member =
      call.principal.HasRole(kRolePlatformAdmin) ? "" : call.principal.subject;
  v1::ListPartnersResponse response;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(
        std::string next,
        ListPage<v1::Partner>(
            absl::StrCat("partners:", member), page_size, request.page_token(),
            [&](const std::string& after, int limit) {
              return CustomerStore::ListPartners(db, member, after, limit);
            },
            [&](v1::Partner p) { *response.add_partners() = std::move(p); }));
    response.set_next_page_token(next);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::PartnerUser> CustomerManagement::CreatePartnerUser(
    const CallContext& call, const v1::CreatePartnerUserRequest& request) {
  ASSIGN_OR_RETURN(auto parent,
                   ParseResourceName(request.parent(), "partners/*", "parent"));
  RETURN_IF_ERROR(ValidateUserId("user_id", request.user_id()));
  const v1::PartnerUser& user = request.partner_user();
  if (user.role() == v1::PARTNER_ROLE_UNSPECIFIED) {
    return InvalidField("partner_user.role", "is required");
  }
  if (!v1::PartnerRole_IsValid(user.role())) {
    return InvalidField("partner_user.role", "is not a known role");
  }
  RETURN_IF_ERROR(ValidateDisplayName("partner_user.display_name",
                                      user.display_name(), false));
  RETURN_IF_ERROR(ValidateEmail("partner_user.email", user.email()));
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  const IdempotencyKey key{call.principal.subject, "CreatePartnerUser",
                           request.request_id()};
  const std::string fingerprint = RequestFingerprint(request);
  v1::PartnerUser result;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    RETURN_IF_ERROR(RequirePartner(db, call.principal, parent[0],
                                   Standing::kPartnerAdmin, "add users to"));
    ASSIGN_OR_RETURN(bool replayed, Replayed(db, key, fingerprint, &result));
    if (replayed) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto existing, CustomerStore::FindPartnerUser(
                                        db, parent[0], request.user_id()));
    if (existing) {
      return absl::AlreadyExistsError(
          absl::StrCat(existing->name(), " already exists"));
    }
    const absl::Time now = clock_->Now();
    RETURN_IF_ERROR(CustomerStore::InsertPartnerUser(
        db, parent[0], request.user_id(), user, now));
    // A new partner user can act on every customer of the partner.
    RETURN_IF_ERROR(
        CustomerStore::BumpPartnerCustomerVersions(db, parent[0], now));
    ASSIGN_OR_RETURN(std::string token, AnnouncePartner(db, parent[0], now));
    ASSIGN_OR_RETURN(auto created, CustomerStore::FindPartnerUser(
                                       db, parent[0], request.user_id()));
    result = *created;
    result.set_consistency_token(token);
    RETURN_IF_ERROR(AppendAuditEvent(
        db, {call.principal.subject, "CreatePartnerUser", result.name(), "",
             ToAuditJson(result), now, call.request_id}));
    return Remember(db, key, fingerprint, result, now);
  }));
  DeliverAnnouncements();
  return result;
}

absl::StatusOr<v1::ListPartnerUsersResponse>
CustomerManagement::ListPartnerUsers(
    const CallContext& call, const v1::ListPartnerUsersRequest& request) {
  ASSIGN_OR_RETURN(auto parent,
                   ParseResourceName(request.parent(), "partners/*", "parent"));
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  v1::ListPartnerUsersResponse response;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    RETURN_IF_ERROR(RequirePartner(db, call.principal, parent[0],
                                   Standing::kPartnerUser, "list users of"));
    ASSIGN_OR_RETURN(std::string next,
                     ListPage<v1::PartnerUser>(
                         request.parent(), page_size, request.page_token(),
                         [&](const std::string& after, int limit) {
                           return CustomerStore::ListPartnerUsers(db, parent[0],
                                                                  after, limit);
                         },
                         [&](v1::PartnerUser u) {
                           *response.add_partner_users() = std::move(u);
                         }));
    response.set_next_page_token(next);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::DeletePartnerUserResponse>
CustomerManagement::DeletePartnerUser(
    const CallContext& call, const v1::DeletePartnerUserRequest& request) {
  v1::DeletePartnerUserResponse response;
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(request.name(),
                                               "partners/*/users/*", "name"));
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    RETURN_IF_ERROR(RequirePartner(db, call.principal, ids[0],
                                   Standing::kPartnerAdmin, "remove users of"));
    ASSIGN_OR_RETURN(auto user,
                     CustomerStore::FindPartnerUser(db, ids[0], ids[1]));
    if (!user) {
      return absl::NotFoundError(
          absl::StrCat(request.name(), " does not exist"));
    }
    ASSIGN_OR_RETURN(int64_t managed,
                     CustomerStore::CountManagedCustomers(db, ids[0], ids[1]));
    if (managed > 0) {
      return WithReason(
          absl::FailedPreconditionError(absl::StrCat(
              request.name(), " is the account manager of ", managed,
              " customer(s); assign another account manager first")),
          "ACCOUNT_MANAGER_IN_USE");
    }
    if (user->role() == v1::PARTNER_ROLE_PARTNER_ADMIN) {
      ASSIGN_OR_RETURN(int64_t admins,
                       CustomerStore::CountPartnerAdmins(db, ids[0]));
      if (admins <= 1) {
        return WithReason(
            absl::FailedPreconditionError(absl::StrCat(
                request.name(), " is the partner's last administrator")),
            "LAST_PARTNER_ADMIN");
      }
    }
    const absl::Time now = clock_->Now();
    RETURN_IF_ERROR(CustomerStore::DeletePartnerUser(db, ids[0], ids[1]));
    RETURN_IF_ERROR(
        CustomerStore::BumpPartnerCustomerVersions(db, ids[0], now));
    ASSIGN_OR_RETURN(std::string token, AnnouncePartner(db, ids[0], now));
    response.set_consistency_token(token);
    return AppendAuditEvent(
        db, {call.principal.subject, "DeletePartnerUser", request.name(),
             ToAuditJson(*user), "", now, call.request_id});
  }));
  DeliverAnnouncements();
  return response;
}

absl::StatusOr<v1::Customer> CustomerManagement::CreateCustomer(
    const CallContext& call, const v1::CreateCustomerRequest& request) {
  const v1::Customer& customer = request.customer();
  RETURN_IF_ERROR(ValidateResourceId(request.customer_id(), "customer_id",
                                     /*optional=*/true));
  RETURN_IF_ERROR(ValidateDisplayName("customer.display_name",
                                      customer.display_name(), true));
  std::string partner_id;
  if (!customer.partner().empty()) {
    ASSIGN_OR_RETURN(auto ids,
                     ParseResourceName(customer.partner(), "partners/*",
                                       "customer.partner"));
    partner_id = ids[0];
  } else if (!call.principal.HasRole(kRolePlatformAdmin)) {
    return InvalidField("customer.partner",
                        "is required: partner users create customers of "
                        "their own partner");
  }
  RETURN_IF_ERROR(RefuseSites("customer.sites", customer));
  v1::ManagementSettings settings;
  settings.set_management_type(customer.management_type());
  settings.set_communications(customer.communications());
  RETURN_IF_ERROR(ValidateSettings("customer", settings, false));
  if (partner_id.empty()) {
    if (settings.management_type() != v1::MANAGEMENT_TYPE_UNSPECIFIED &&
        settings.management_type() != v1::MANAGEMENT_TYPE_CUSTOMER) {
      return InvalidField("customer.management_type",
                          "a customer without a partner manages itself (R3)");
    }
    if (settings.communications() == v1::COMMUNICATIONS_PARTNER_ONLY) {
      return InvalidField("customer.communications",
                          "a customer without a partner receives its own "
                          "communications (R3)");
    }
  }
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));

  v1::Customer row = customer;
  // Defaults: nobody loses access or alerts until the partner decides.
  if (row.management_type() == v1::MANAGEMENT_TYPE_UNSPECIFIED) {
    row.set_management_type(partner_id.empty()
                                ? v1::MANAGEMENT_TYPE_CUSTOMER
                                : v1::MANAGEMENT_TYPE_CO_MANAGED);
  }
  if (row.communications() == v1::COMMUNICATIONS_UNSPECIFIED) {
    row.set_communications(v1::COMMUNICATIONS_SHARED);
  }
  const IdempotencyKey key{call.principal.subject, "CreateCustomer",
                           request.request_id()};
  const std::string fingerprint = RequestFingerprint(request);
  // Customer ids are global, so a requested id may be another partner's
  // customer. ALREADY_EXISTS for it would tell the caller that a customer it
  // may not see exists (§3): it gets the refusal of a caller without the
  // partner's standing instead, whose message depends on the request alone.
  const absl::Status denied =
      request.customer_id().empty()
          ? Denied("create customers of", customer.partner())
          : Denied("create", absl::StrCat("customers/", request.customer_id()));
  v1::Customer result;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    if (!partner_id.empty()) {
      ASSIGN_OR_RETURN(Standing standing,
                       PartnerStanding(db, call.principal, partner_id));
      if (standing < Standing::kPartnerAdmin) return denied;
    }
    ASSIGN_OR_RETURN(bool replayed, Replayed(db, key, fingerprint, &result));
    if (replayed) return absl::OkStatus();
    RETURN_IF_ERROR(ValidateAccountManager(db, "customer.account_manager",
                                           partner_id,
                                           customer.account_manager()));
    std::string id =
        request.customer_id().empty() ? ids_->NewId() : request.customer_id();
    ASSIGN_OR_RETURN(auto existing, CustomerStore::FindCustomerAndCaller(
                                        db, id, call.principal.subject));
    if (existing) {
      if (!call.principal.HasRole(kRolePlatformAdmin) &&
          CustomerStanding(*existing) < Standing::kCustomerUser) {
        return denied;
      }
      return absl::AlreadyExistsError(
          absl::StrCat("customers/", id, " already exists"));
    }
    const absl::Time now = clock_->Now();
    absl::Status inserted = CustomerStore::InsertCustomer(db, id, row, now);
    // Another replica created the id since the check. Whose it is cannot be
    // read in a failed transaction, so it is treated as one the caller may
    // not see.
    if (absl::IsAlreadyExists(inserted) &&
        !call.principal.HasRole(kRolePlatformAdmin)) {
      return denied;
    }
    RETURN_IF_ERROR(inserted);
    ASSIGN_OR_RETURN(std::string token, AnnounceCustomer(db, id, false, now));
    ASSIGN_OR_RETURN(auto created, CustomerStore::FindCustomer(db, id));
    result = *created;
    result.set_consistency_token(token);
    RETURN_IF_ERROR(AppendAuditEvent(
        db, {call.principal.subject, "CreateCustomer", result.name(), "",
             ToAuditJson(result), now, call.request_id}));
    return Remember(db, key, fingerprint, result, now);
  }));
  DeliverAnnouncements();
  return result;
}

absl::StatusOr<v1::Customer> CustomerManagement::GetCustomer(
    const CallContext& call, const v1::GetCustomerRequest& request) {
  ASSIGN_OR_RETURN(auto ids,
                   ParseResourceName(request.name(), "customers/*", "name"));
  v1::Customer result;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(result, LoadCustomer(db, call.principal, ids[0],
                                          Standing::kCustomerUser, "read"));
    return absl::OkStatus();
  }));
  // The site links are AccessService's: read them there, after the caller
  // was allowed to see the customer. AccessService being down does not make
  // the customer unreadable; the response says its sites are missing.
  if (sites_ != nullptr) {
    absl::StatusOr<std::vector<std::string>> sites = sites_->SitesOf(ids[0]);
    if (sites.ok()) {
      for (std::string& site : *sites) result.add_sites(std::move(site));
    } else {
      result.set_sites_unavailable(true);
    }
  }
  return result;
}

absl::StatusOr<int> CustomerManagement::MigrateSiteLinks() {
  if (outbox_ == nullptr) return 0;
  constexpr char kUpdateSite[] = "/custos.access.v1.AccessService/UpdateSite";
  int moved = 0;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    moved = 0;
    ASSIGN_OR_RETURN(auto links, CustomerStore::TakeLegacySiteLinks(db));
    const absl::Time now = clock_->Now();
    for (const auto& [customer_id, site] : links) {
      access::v1::UpdateSiteRequest update;
      update.mutable_site()->set_name(site);
      update.mutable_site()->set_customer(
          absl::StrCat("customers/", customer_id));
      update.mutable_update_mask()->add_paths("customer");
      update.set_allow_missing(true);
      RETURN_IF_ERROR(EnqueueOutbox(db, "access", kUpdateSite, update, now));
      ++moved;
    }
    return absl::OkStatus();
  }));
  if (moved > 0) DeliverAnnouncements();
  return moved;
}

absl::StatusOr<v1::ListCustomersResponse> CustomerManagement::ListCustomers(
    const CallContext& call, const v1::ListCustomersRequest& request) {
  std::string partner_id;
  if (!request.partner().empty()) {
    ASSIGN_OR_RETURN(auto ids, ParseResourceName(request.partner(),
                                                 "partners/*", "partner"));
    partner_id = ids[0];
  } else if (!call.principal.HasRole(kRolePlatformAdmin)) {
    return InvalidField("partner", "is required");
  }
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  const std::string query = absl::StrCat("customers:", partner_id);
  std::optional<std::pair<std::string, std::string>> after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(auto key, DecodePageToken(request.page_token(), query, 2));
    after.emplace(key[0], key[1]);
  }
  v1::ListCustomersResponse response;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    if (!partner_id.empty()) {
      RETURN_IF_ERROR(RequirePartner(db, call.principal, partner_id,
                                     Standing::kPartnerUser,
                                     "list customers of"));
    }
    ASSIGN_OR_RETURN(auto rows, CustomerStore::ListCustomers(
                                    db, partner_id, after, page_size + 1));
    if (static_cast<int>(rows.size()) > page_size) {
      rows.resize(page_size);
      response.set_next_page_token(EncodePageToken(
          query, {rows.back().display_name(),
                  std::string(LastSegment(rows.back().name()))}));
    }
    for (auto& row : rows) *response.add_customers() = std::move(row);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::Customer> CustomerManagement::UpdateCustomer(
    const CallContext& call, const v1::UpdateCustomerRequest& request) {
  const v1::Customer& patch = request.customer();
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(patch.name(), "customers/*",
                                               "customer.name"));
  if (request.update_mask().paths().empty()) {
    return InvalidField("update_mask",
                        "is required: list the fields to change");
  }
  bool display_name = false, account_manager = false;
  for (const std::string& path : request.update_mask().paths()) {
    if (path == "display_name") {
      display_name = true;
    } else if (path == "account_manager") {
      account_manager = true;
    } else if (path == "sites") {
      return InvalidField("update_mask",
                          "\"sites\" is output only: a site is linked to its "
                          "customer in AccessService (UpdateSite, field "
                          "customer)");
    } else {
      return InvalidField(
          "update_mask",
          absl::StrCat("\"", path,
                       "\" is not updatable here (display_name, "
                       "account_manager; management settings change "
                       "through SetManagementSettings)"));
    }
  }
  if (display_name) {
    RETURN_IF_ERROR(ValidateDisplayName("customer.display_name",
                                        patch.display_name(), true));
  }
  v1::Customer result;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(v1::Customer current,
                     LoadCustomer(db, call.principal, ids[0],
                                  Standing::kPartnerAdmin, "update"));
    if (!patch.etag().empty() &&
        !EtagMatches(patch.etag(), current.version())) {
      return StaleEtag(current.name());
    }
    v1::Customer updated = current;
    if (display_name) updated.set_display_name(patch.display_name());
    if (account_manager) {
      RETURN_IF_ERROR(ValidateAccountManager(db, "customer.account_manager",
                                             PartnerIdOf(current),
                                             patch.account_manager()));
      updated.set_account_manager(patch.account_manager());
    }
    updated.set_version(current.version() + 1);
    const absl::Time now = clock_->Now();
    RETURN_IF_ERROR(CustomerStore::UpdateCustomer(db, ids[0], updated, now));
    ASSIGN_OR_RETURN(std::string token,
                     AnnounceCustomer(db, ids[0], false, now));
    ASSIGN_OR_RETURN(auto stored, CustomerStore::FindCustomer(db, ids[0]));
    result = *stored;
    result.set_consistency_token(token);
    return AppendAuditEvent(
        db, {call.principal.subject, "UpdateCustomer", result.name(),
             ToAuditJson(current), ToAuditJson(result), now, call.request_id});
  }));
  DeliverAnnouncements();
  return result;
}

absl::StatusOr<v1::DeleteCustomerResponse> CustomerManagement::DeleteCustomer(
    const CallContext& call, const v1::DeleteCustomerRequest& request) {
  v1::DeleteCustomerResponse response;
  ASSIGN_OR_RETURN(auto ids,
                   ParseResourceName(request.name(), "customers/*", "name"));
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(v1::Customer current,
                     LoadCustomer(db, call.principal, ids[0],
                                  Standing::kPartnerAdmin, "delete"));
    if (!request.etag().empty() &&
        !EtagMatches(request.etag(), current.version())) {
      return StaleEtag(current.name());
    }
    RETURN_IF_ERROR(CustomerStore::DeleteCustomer(db, ids[0]));
    const absl::Time now = clock_->Now();
    ASSIGN_OR_RETURN(std::string token,
                     AnnounceCustomer(db, ids[0], true, now));
    response.set_consistency_token(token);
    return AppendAuditEvent(
        db, {call.principal.subject, "DeleteCustomer", current.name(),
             ToAuditJson(current), "", now, call.request_id});
  }));
  DeliverAnnouncements();
  return response;
}

absl::StatusOr<v1::Customer> CustomerManagement::SetManagementSettings(
    const CallContext& call, const v1::SetManagementSettingsRequest& request) {
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(request.customer(),
                                               "customers/*", "customer"));
  RETURN_IF_ERROR(ValidateSettings("settings", request.settings(), true));
  if (request.etag().empty()) {
    return InvalidField("etag", "is required: pass the etag you last read");
  }
  v1::Customer result;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(
        v1::Customer current,
        LoadCustomer(db, call.principal, ids[0], Standing::kPartnerAdmin,
                     "change the management settings of"));
    if (!EtagMatches(request.etag(), current.version())) {
      return StaleEtag(current.name());
    }
    const auto& settings = request.settings();
    if (current.partner().empty() &&
        (settings.management_type() != v1::MANAGEMENT_TYPE_CUSTOMER ||
         settings.communications() != v1::COMMUNICATIONS_SHARED)) {
      return WithReason(
          absl::FailedPreconditionError(absl::StrCat(
              current.name(),
              " has no partner, so it manages itself and receives its own "
              "communications (R3)")),
          "CUSTOMER_HAS_NO_PARTNER");
    }
    if (settings.management_type() == current.management_type() &&
        settings.communications() == current.communications()) {
      result = current;  // Nothing changes: no new version, no audit event.
      ASSIGN_OR_RETURN(std::string token, HeadToken(db));
      result.set_consistency_token(token);
      return absl::OkStatus();
    }
    v1::Customer updated = current;
    updated.set_management_type(settings.management_type());
    updated.set_communications(settings.communications());
    updated.set_version(current.version() + 1);
    const absl::Time now = clock_->Now();
    RETURN_IF_ERROR(CustomerStore::UpdateCustomer(db, ids[0], updated, now));
    ASSIGN_OR_RETURN(std::string token,
                     AnnounceCustomer(db, ids[0], false, now));
    ASSIGN_OR_RETURN(auto stored, CustomerStore::FindCustomer(db, ids[0]));
    result = *stored;
    result.set_consistency_token(token);
    RETURN_IF_ERROR(AnnounceSettingsChange(db, current, result,
                                           call.principal.subject, now));
    return AppendAuditEvent(
        db, {call.principal.subject, "SetManagementSettings", result.name(),
             ToAuditJson(current), ToAuditJson(result), now, call.request_id});
  }));
  DeliverAnnouncements();
  return result;
}

absl::StatusOr<v1::PreviewManagementChangeResponse>
CustomerManagement::PreviewManagementChange(
    const CallContext& call,
    const v1::PreviewManagementChangeRequest& request) {
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(request.customer(),
                                               "customers/*", "customer"));
  RETURN_IF_ERROR(ValidateSettings("settings", request.settings(), false));
  v1::PreviewManagementChangeResponse response;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(
        v1::Customer customer,
        LoadCustomer(db, call.principal, ids[0], Standing::kPartnerUser,
                     "preview changes to"));
    const std::string partner_id = PartnerIdOf(customer);
    v1::ManagementSettings current = EffectiveSettings(customer);
    v1::ManagementSettings proposed = current;
    if (request.settings().management_type() !=
        v1::MANAGEMENT_TYPE_UNSPECIFIED) {
      proposed.set_management_type(request.settings().management_type());
    }
    if (request.settings().communications() != v1::COMMUNICATIONS_UNSPECIFIED) {
      proposed.set_communications(request.settings().communications());
    }
    if (partner_id.empty() &&
        (proposed.management_type() != current.management_type() ||
         proposed.communications() != current.communications())) {
      return WithReason(absl::FailedPreconditionError(absl::StrCat(
                            customer.name(),
                            " has no partner, so it manages itself and "
                            "receives its own communications (R3)")),
                        "CUSTOMER_HAS_NO_PARTNER");
    }
    ASSIGN_OR_RETURN(
        auto customer_users,
        ReadAll<v1::CustomerUser>([&](const std::string& after, int limit) {
          return CustomerStore::ListCustomerUsers(db, ids[0], after, limit);
        }));
    std::vector<std::string> customer_names, partner_names;
    for (const auto& u : customer_users) customer_names.push_back(u.name());
    if (!partner_id.empty()) {
      ASSIGN_OR_RETURN(
          auto partner_users,
          ReadAll<v1::PartnerUser>([&](const std::string& after, int limit) {
            return CustomerStore::ListPartnerUsers(db, partner_id, after,
                                                   limit);
          }));
      for (const auto& u : partner_users) partner_names.push_back(u.name());
    }
    const bool has_partner = !partner_id.empty();
    Reach before = ReachOf(current, customer_names, partner_names,
                           customer.account_manager(), has_partner);
    Reach after = ReachOf(proposed, customer_names, partner_names,
                          customer.account_manager(), has_partner);
    auto permission = [&](absl::string_view name) {
      return [&response, name](const std::string& user, v1::ChangeKind kind) {
        auto* change = response.add_permission_changes();
        change->set_user(user);
        change->set_permission(std::string(name));
        change->set_kind(kind);
      };
    };
    Diff(before.login, after.login, permission("portal.login"));
    Diff(before.manage, after.manage, permission("portal.manage_customer"));
    Diff(before.alerts, after.alerts,
         [&](const std::string& user, v1::ChangeKind kind) {
           auto* change = response.add_alert_recipient_changes();
           change->set_user(user);
           change->set_kind(kind);
         });
    *response.mutable_current() = current;
    *response.mutable_proposed() = proposed;
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::Product> CustomerManagement::CreateProduct(
    const CallContext& call, const v1::CreateProductRequest& request) {
  ASSIGN_OR_RETURN(auto parent, ParseResourceName(request.parent(),
                                                  "customers/*", "parent"));
  RETURN_IF_ERROR(ValidateResourceId(request.product_id(), "product_id",
                                     /*optional=*/true));
  RETURN_IF_ERROR(ValidateProduct("product", request.product(), true));
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  v1::Product row = request.product();
  if (row.status() == v1::PRODUCT_STATUS_UNSPECIFIED) {
    row.set_status(v1::PRODUCT_STATUS_ACTIVE);
  }
  const IdempotencyKey key{call.principal.subject, "CreateProduct",
                           request.request_id()};
  const std::string fingerprint = RequestFingerprint(request);
  v1::Product result;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    RETURN_IF_ERROR(LoadCustomer(db, call.principal, parent[0],
                                 Standing::kPartnerAdmin, "add products to")
                        .status());
    ASSIGN_OR_RETURN(bool replayed, Replayed(db, key, fingerprint, &result));
    if (replayed) return absl::OkStatus();
    std::string id =
        request.product_id().empty() ? ids_->NewId() : request.product_id();
    ASSIGN_OR_RETURN(auto existing,
                     CustomerStore::FindProduct(db, parent[0], id));
    if (existing) {
      return absl::AlreadyExistsError(
          absl::StrCat(existing->name(), " already exists"));
    }
    const absl::Time now = clock_->Now();
    RETURN_IF_ERROR(CustomerStore::InsertProduct(db, parent[0], id, row, now));
    ASSIGN_OR_RETURN(auto created,
                     CustomerStore::FindProduct(db, parent[0], id));
    result = *created;
    RETURN_IF_ERROR(AppendAuditEvent(
        db, {call.principal.subject, "CreateProduct", result.name(), "",
             ToAuditJson(result), now, call.request_id}));
    return Remember(db, key, fingerprint, result, now);
  }));
  return result;
}

absl::StatusOr<v1::ListProductsResponse> CustomerManagement::ListProducts(
    const CallContext& call, const v1::ListProductsRequest& request) {
  ASSIGN_OR_RETURN(auto parent, ParseResourceName(request.parent(),
                                                  "customers/*", "parent"));
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  v1::ListProductsResponse response;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    RETURN_IF_ERROR(LoadCustomer(db, call.principal, parent[0],
                                 Standing::kCustomerUser, "list products of")
                        .status());
    ASSIGN_OR_RETURN(
        std::string next,
        ListPage<v1::Product>(
            absl::StrCat("products:", request.parent()), page_size,
            request.page_token(),
            [&](const std::string& after, int limit) {
              return CustomerStore::ListProducts(db, parent[0], after, limit);
            },
            [&](v1::Product p) { *response.add_products() = std::move(p); }));
    response.set_next_page_token(next);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::Product> CustomerManagement::UpdateProduct(
    const CallContext& call, const v1::UpdateProductRequest& request) {
  const v1::Product& patch = request.product();
  ASSIGN_OR_RETURN(auto ids,
                   ParseResourceName(patch.name(), "customers/*/products/*",
                                     "product.name"));
  if (request.update_mask().paths().empty()) {
    return InvalidField("update_mask",
                        "is required: list the fields to change");
  }
  static const auto* kPaths = new absl::flat_hash_set<std::string>{
      "product_code", "seats", "status", "term_start_time", "term_end_time"};
  absl::flat_hash_set<std::string> paths;
  for (const std::string& path : request.update_mask().paths()) {
    if (!kPaths->contains(path)) {
      return InvalidField("update_mask",
                          absl::StrCat("\"", path, "\" is not updatable"));
    }
    paths.insert(path);
  }
  v1::Product result;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    RETURN_IF_ERROR(LoadCustomer(db, call.principal, ids[0],
                                 Standing::kPartnerAdmin, "update products of")
                        .status());
    ASSIGN_OR_RETURN(auto current,
                     CustomerStore::FindProduct(db, ids[0], ids[1]));
    if (!current) {
      return absl::NotFoundError(absl::StrCat(patch.name(), " does not exist"));
    }
    if (!patch.etag().empty() && patch.etag() != current->etag()) {
      return StaleEtag(current->name());
    }
    v1::Product updated = *current;
    if (paths.contains("product_code")) {
      updated.set_product_code(patch.product_code());
    }
    if (paths.contains("seats")) updated.set_seats(patch.seats());
    if (paths.contains("status")) {
      if (patch.status() == v1::PRODUCT_STATUS_UNSPECIFIED) {
        return InvalidField("product.status", "is required");
      }
      updated.set_status(patch.status());
    }
    if (paths.contains("term_start_time")) {
      if (patch.has_term_start_time()) {
        *updated.mutable_term_start_time() = patch.term_start_time();
      } else {
        updated.clear_term_start_time();
      }
    }
    if (paths.contains("term_end_time")) {
      if (patch.has_term_end_time()) {
        *updated.mutable_term_end_time() = patch.term_end_time();
      } else {
        updated.clear_term_end_time();
      }
    }
    RETURN_IF_ERROR(
        ValidateProduct("product", updated, paths.contains("product_code")));
    const absl::Time now = clock_->Now();
    RETURN_IF_ERROR(
        CustomerStore::UpdateProduct(db, ids[0], ids[1], updated, now));
    ASSIGN_OR_RETURN(auto stored,
                     CustomerStore::FindProduct(db, ids[0], ids[1]));
    result = *stored;
    return AppendAuditEvent(
        db, {call.principal.subject, "UpdateProduct", result.name(),
             ToAuditJson(*current), ToAuditJson(result), now, call.request_id});
  }));
  return result;
}

absl::StatusOr<v1::CustomerUser> CustomerManagement::CreateCustomerUser(
    const CallContext& call, const v1::CreateCustomerUserRequest& request) {
  ASSIGN_OR_RETURN(auto parent, ParseResourceName(request.parent(),
                                                  "customers/*", "parent"));
  RETURN_IF_ERROR(ValidateUserId("user_id", request.user_id()));
  RETURN_IF_ERROR(ValidateDisplayName("customer_user.display_name",
                                      request.customer_user().display_name(),
                                      false));
  RETURN_IF_ERROR(
      ValidateEmail("customer_user.email", request.customer_user().email()));
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  const IdempotencyKey key{call.principal.subject, "CreateCustomerUser",
                           request.request_id()};
  const std::string fingerprint = RequestFingerprint(request);
  v1::CustomerUser result;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    RETURN_IF_ERROR(LoadCustomer(db, call.principal, parent[0],
                                 Standing::kPartnerAdmin, "add users to")
                        .status());
    ASSIGN_OR_RETURN(bool replayed, Replayed(db, key, fingerprint, &result));
    if (replayed) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto existing, CustomerStore::FindCustomerUser(
                                        db, parent[0], request.user_id()));
    if (existing) {
      return absl::AlreadyExistsError(
          absl::StrCat(existing->name(), " already exists"));
    }
    const absl::Time now = clock_->Now();
    RETURN_IF_ERROR(CustomerStore::InsertCustomerUser(
        db, parent[0], request.user_id(), request.customer_user(), now));
    // Who can act on the customer changed.
    RETURN_IF_ERROR(CustomerStore::BumpCustomerVersion(db, parent[0], now));
    ASSIGN_OR_RETURN(std::string token,
                     AnnounceCustomer(db, parent[0], false, now));
    ASSIGN_OR_RETURN(auto created, CustomerStore::FindCustomerUser(
                                       db, parent[0], request.user_id()));
    result = *created;
    result.set_consistency_token(token);
    RETURN_IF_ERROR(AppendAuditEvent(
        db, {call.principal.subject, "CreateCustomerUser", result.name(), "",
             ToAuditJson(result), now, call.request_id}));
    return Remember(db, key, fingerprint, result, now);
  }));
  DeliverAnnouncements();
  return result;
}

absl::StatusOr<v1::ListCustomerUsersResponse>
CustomerManagement::ListCustomerUsers(
    const CallContext& call, const v1::ListCustomerUsersRequest& request) {
  ASSIGN_OR_RETURN(auto parent, ParseResourceName(request.parent(),
                                                  "customers/*", "parent"));
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  v1::ListCustomerUsersResponse response;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    RETURN_IF_ERROR(LoadCustomer(db, call.principal, parent[0],
                                 Standing::kCustomerUser, "list users of")
                        .status());
    ASSIGN_OR_RETURN(std::string next,
                     ListPage<v1::CustomerUser>(
                         absl::StrCat("customer-users:", request.parent()),
                         page_size, request.page_token(),
                         [&](const std::string& after, int limit) {
                           return CustomerStore::ListCustomerUsers(
                               db, parent[0], after, limit);
                         },
                         [&](v1::CustomerUser u) {
                           *response.add_customer_users() = std::move(u);
                         }));
    response.set_next_page_token(next);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::DeleteCustomerUserResponse>
CustomerManagement::DeleteCustomerUser(
    const CallContext& call, const v1::DeleteCustomerUserRequest& request) {
  v1::DeleteCustomerUserResponse response;
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(request.name(),
                                               "customers/*/users/*", "name"));
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    RETURN_IF_ERROR(LoadCustomer(db, call.principal, ids[0],
                                 Standing::kPartnerAdmin, "remove users of")
                        .status());
    ASSIGN_OR_RETURN(auto user,
                     CustomerStore::FindCustomerUser(db, ids[0], ids[1]));
    if (!user) {
      return absl::NotFoundError(
          absl::StrCat(request.name(), " does not exist"));
    }
    const absl::Time now = clock_->Now();
    RETURN_IF_ERROR(CustomerStore::DeleteCustomerUser(db, ids[0], ids[1]));
    RETURN_IF_ERROR(CustomerStore::BumpCustomerVersion(db, ids[0], now));
    ASSIGN_OR_RETURN(std::string token,
                     AnnounceCustomer(db, ids[0], false, now));
    response.set_consistency_token(token);
    return AppendAuditEvent(
        db, {call.principal.subject, "DeleteCustomerUser", request.name(),
             ToAuditJson(*user), "", now, call.request_id});
  }));
  DeliverAnnouncements();
  return response;
}

namespace {

absl::Status RequireService(const Principal& principal,
                            absl::string_view what) {
  if (principal.HasRole(kRoleService) ||
      principal.HasRole(kRolePlatformAdmin)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat(what, " is for services (role \"service\")"));
}

}  // namespace

absl::StatusOr<v1::AccessContext> CustomerManagement::GetAccessContext(
    const CallContext& call, const v1::GetAccessContextRequest& request) {
  RETURN_IF_ERROR(RequireService(call.principal, "GetAccessContext"));
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(request.customer(),
                                               "customers/*", "customer"));
  // Empty: only the customer's own facts (does it exist, its settings).
  if (!request.user().empty()) {
    RETURN_IF_ERROR(ValidateUserId("user", request.user()));
  }
  v1::AccessContext context;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    context = v1::AccessContext();
    ASSIGN_OR_RETURN(CustomerChangeRow head,
                     CustomerStore::CustomerChangeHead(db, ids[0]));
    context.set_change_sequence(head.sequence);
    context.set_change_id(head.change_id);
    context.set_incarnation(incarnation_);
    ASSIGN_OR_RETURN(auto customer, CustomerStore::FindCustomer(db, ids[0]));
    if (!customer) {
      if (request.include_missing()) {
        context.set_customer(request.customer());
        return absl::OkStatus();
      }
      return absl::NotFoundError(
          absl::StrCat(request.customer(), " does not exist"));
    }
    context.set_exists(true);
    v1::ManagementSettings settings = EffectiveSettings(*customer);
    context.set_customer(customer->name());
    context.set_management_type(settings.management_type());
    context.set_communications(settings.communications());
    context.set_partner(customer->partner());
    context.set_customer_version(customer->version());
    // A partner relation outranks a customer-user one: a user who is both
    // acts for the partner.
    context.set_relation(v1::CUSTOMER_RELATION_NONE);
    if (std::string partner_id = PartnerIdOf(*customer); !partner_id.empty()) {
      ASSIGN_OR_RETURN(auto member, CustomerStore::FindPartnerUser(
                                        db, partner_id, request.user()));
      if (member) {
        context.set_relation(member->role() == v1::PARTNER_ROLE_PARTNER_ADMIN
                                 ? v1::CUSTOMER_RELATION_PARTNER_ADMIN
                                 : v1::CUSTOMER_RELATION_PARTNER_USER);
        return absl::OkStatus();
      }
    }
    ASSIGN_OR_RETURN(
        auto user, CustomerStore::FindCustomerUser(db, ids[0], request.user()));
    if (user) context.set_relation(v1::CUSTOMER_RELATION_CUSTOMER_USER);
    return absl::OkStatus();
  }));
  return context;
}

absl::StatusOr<v1::ListBroadcastRecipientsResponse>
CustomerManagement::ListBroadcastRecipients(
    const CallContext& call,
    const v1::ListBroadcastRecipientsRequest& request) {
  RETURN_IF_ERROR(RequireService(call.principal, "ListBroadcastRecipients"));
  // Bigger pages than other lists: a broadcast walks every user, and each
  // page is a round trip (bare ids, ~20 bytes each).
  constexpr int kMaxRecipientsPage = 10000;
  if (request.page_size() < 0) {
    return InvalidField("page_size", "must not be negative");
  }
  const int page_size = request.page_size() == 0
                            ? 1000
                            : std::min(request.page_size(), kMaxRecipientsPage);
  const std::string query = "broadcast-recipients";
  std::string after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(auto key, DecodePageToken(request.page_token(), query, 1));
    after = key[0];
  }
  std::vector<std::string> users;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(users,
                     CustomerStore::ListAllUserIds(db, after, page_size + 1));
    return absl::OkStatus();
  }));
  v1::ListBroadcastRecipientsResponse response;
  if (static_cast<int>(users.size()) > page_size) {
    users.resize(page_size);
    response.set_next_page_token(EncodePageToken(query, {users.back()}));
  }
  for (const std::string& user : users) {
    response.add_users(UserName(user));
  }
  return response;
}

absl::StatusOr<v1::CommunicationRouting>
CustomerManagement::GetCommunicationRouting(
    const CallContext& call,
    const v1::GetCommunicationRoutingRequest& request) {
  RETURN_IF_ERROR(RequireService(call.principal, "GetCommunicationRouting"));
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(request.customer(),
                                               "customers/*", "customer"));
  v1::CommunicationRouting routing;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(auto customer, CustomerStore::FindCustomer(db, ids[0]));
    if (!customer) {
      return absl::NotFoundError(
          absl::StrCat(request.customer(), " does not exist"));
    }
    routing.set_customer(customer->name());
    routing.set_communications(EffectiveSettings(*customer).communications());
    routing.set_partner(customer->partner());
    routing.set_account_manager(customer->account_manager());
    routing.set_customer_version(customer->version());
    ASSIGN_OR_RETURN(
        auto users,
        ReadAll<v1::CustomerUser>([&](const std::string& after, int limit) {
          return CustomerStore::ListCustomerUsers(db, ids[0], after, limit);
        }));
    for (const auto& user : users) routing.add_customer_users(user.name());
    return absl::OkStatus();
  }));
  return routing;
}

absl::StatusOr<v1::ListCustomerChangesResponse>
CustomerManagement::ListCustomerChanges(
    const CallContext& call, const v1::ListCustomerChangesRequest& request) {
  RETURN_IF_ERROR(RequireService(call.principal, "ListCustomerChanges"));
  constexpr int kMaxChangesPage = 1000;
  if (request.page_size() < 0) {
    return InvalidField("page_size", "must not be negative");
  }
  const int page_size = request.page_size() == 0
                            ? kMaxChangesPage
                            : std::min(request.page_size(), kMaxChangesPage);
  std::optional<ConsistencyToken> since;
  if (!request.since().empty()) {
    absl::StatusOr<ConsistencyToken> decoded =
        ConsistencyToken::Decode(request.since());
    if (!decoded.ok() ||
        decoded->store != ConsistencyToken::Store::kCustomers) {
      return InvalidField("since", "must be a next_position returned earlier");
    }
    since = *decoded;
  }
  v1::ListCustomerChangesResponse response;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    response = v1::ListCustomerChangesResponse();
    ASSIGN_OR_RETURN(CustomerChangeRow head, CustomerStore::LastChange(db));
    if (!since) {
      response.set_next_position(TokenOf(head.sequence, head.change_id));
      return absl::OkStatus();
    }
    const auto out_of_range = [](absl::string_view why) {
      return WithReason(
          absl::OutOfRangeError(absl::StrCat(
              "since ", why,
              "; start again with an empty since and re-read what you keep")),
          "CHANGE_POSITION_OUT_OF_RANGE");
    };
    if (since->incarnation != incarnation_) {
      return out_of_range("is from another store (its incarnation differs)");
    }
    if (since->sequence > head.sequence) {
      return out_of_range(
          "is ahead of this store's history (was it restored from a "
          "backup?)");
    }
    if (since->sequence == head.sequence) {
      // Caught up (every idle poll): the head says all there is to say.
      if (since->change_id != head.change_id) {
        return out_of_range(
            "names a change this store does not have (was it restored from "
            "a backup?)");
      }
      response.set_next_position(request.since());
      return absl::OkStatus();
    }
    if (since->sequence > 0) {
      ASSIGN_OR_RETURN(auto at, CustomerStore::FindChange(db, since->sequence));
      if (!at) return out_of_range("is older than the retained history");
      if (at->change_id != since->change_id) {
        return out_of_range(
            "names a change this store does not have (was it restored from "
            "a backup?)");
      }
    } else if (head.sequence > 0) {
      ASSIGN_OR_RETURN(auto first, CustomerStore::FindChange(db, 1));
      if (!first) return out_of_range("is older than the retained history");
    }
    ASSIGN_OR_RETURN(
        std::vector<CustomerChangeRow> changes,
        CustomerStore::ListCustomerChanges(db, since->sequence, page_size + 1));
    if (static_cast<int>(changes.size()) > page_size) {
      changes.resize(page_size);
      response.set_more(true);
    }
    int64_t last_sequence = since->sequence;
    int64_t last_id = since->change_id;
    for (const CustomerChangeRow& row : changes) {
      v1::CustomerChange* change = response.add_changes();
      change->set_customer(absl::StrCat("customers/", row.customer_id));
      change->set_deleted(row.deleted);
      change->set_sequence(row.sequence);
      change->set_change_id(row.change_id);
      *change->mutable_change_time() =
          TimeUtil::MicrosecondsToTimestamp(row.change_micros);
      last_sequence = row.sequence;
      last_id = row.change_id;
    }
    response.set_next_position(TokenOf(last_sequence, last_id));
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<int> CustomerManagement::RecordUnnumberedCustomers() {
  int recorded = 0;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    recorded = 0;
    ASSIGN_OR_RETURN(std::vector<std::string> ids,
                     CustomerStore::CustomersWithoutChanges(db));
    const absl::Time now = clock_->Now();
    for (const std::string& id : ids) {
      RETURN_IF_ERROR(
          CustomerStore::AppendCustomerChange(db, id, false, now).status());
      ++recorded;
    }
    return absl::OkStatus();
  }));
  return recorded;
}

absl::Status CustomerManagement::PruneChanges(absl::Duration retention) {
  const absl::Time older_than = clock_->Now() - retention;
  return db_->Write([&](Connection& db) -> absl::Status {
    return CustomerStore::PruneCustomerChanges(db, older_than).status();
  });
}

absl::StatusOr<ListAuditEventsResponse> CustomerManagement::ListAuditEvents(
    const CallContext& call, const ListAuditEventsRequest& request) {
  // Events of a partner or customer and of everything below it.
  const std::string& parent = request.parent();
  std::vector<std::string> segments;
  bool is_partner = absl::StartsWith(parent, "partners/");
  if (!is_partner && !absl::StartsWith(parent, "customers/")) {
    return InvalidField("parent",
                        "must be partners/{partner} or customers/{customer}, "
                        "or a resource below one");
  }
  size_t end = parent.find('/', parent.find('/') + 1);
  std::string root = parent.substr(0, end);
  ASSIGN_OR_RETURN(
      auto ids, ParseResourceName(
                    root, is_partner ? "partners/*" : "customers/*", "parent"));
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    if (is_partner) {
      return RequirePartner(db, call.principal, ids[0], Standing::kPartnerUser,
                            "read the audit log of");
    }
    // Deleted customers keep their audit log; only platform admins can read
    // it then, since membership died with the customer.
    if (call.principal.HasRole(kRolePlatformAdmin)) return absl::OkStatus();
    return LoadCustomer(db, call.principal, ids[0], Standing::kPartnerUser,
                        "read the audit log of")
        .status();
  }));
  return custos::ListAuditEvents(*db_, parent, page_size, request.page_token());
}

}  // namespace custos::customers
