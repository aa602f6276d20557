#include "services/notification_service/notification_logic.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/audit_store.h"
#include "common/auth.h"
#include "common/grpc_status.h"
#include "common/idempotency_store.h"
#include "common/logic_helpers.h"
#include "common/pagination.h"
#include "common/resource_name.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "services/notification_service/notification_store.h"
#include "services/notification_service/webhook_store.h"

namespace custos::notifications {
namespace {

using custos::common::v1::ListAuditEventsRequest;
using custos::common::v1::ListAuditEventsResponse;
using google::protobuf::util::TimeUtil;

constexpr size_t kMaxBodyBytes = 10000;

bool IsStaff(const Principal& principal) {
  return principal.HasRole(kRoleCustomerCare) ||
         principal.HasRole(kRolePlatformAdmin) ||
         principal.HasRole(kRoleService);
}

bool MayPublish(const Principal& principal) {
  return principal.HasRole(kRoleService) ||
         principal.HasRole(kRolePlatformAdmin);
}

absl::Status ValidateCategory(absl::string_view field, v1::Category category) {
  if (category == v1::CATEGORY_UNSPECIFIED || !v1::Category_IsValid(category)) {
    return InvalidField(field, "must be a CATEGORY_* value");
  }
  return absl::OkStatus();
}

absl::Status ValidateSeverity(v1::Severity severity) {
  if (severity == v1::SEVERITY_UNSPECIFIED || !v1::Severity_IsValid(severity)) {
    return InvalidField("severity", "must be a SEVERITY_* value");
  }
  return absl::OkStatus();
}

absl::Status ValidateText(absl::string_view title, absl::string_view body) {
  RETURN_IF_ERROR(ValidateDisplayName("title", title, true));
  if (body.size() > kMaxBodyBytes) {
    return InvalidField(
        "body", absl::StrCat("must be at most ", kMaxBodyBytes, " bytes"));
  }
  return absl::OkStatus();
}

// A new alert's record; the caller sets what its kind adds.
v1::Alert NewAlert(const std::string& alert_id, v1::Severity severity,
                   const std::string& title, const std::string& body,
                   absl::Time now) {
  v1::Alert alert;
  alert.set_name(absl::StrCat("alerts/", alert_id));
  alert.set_severity(severity);
  alert.set_title(title);
  alert.set_body(body);
  *alert.mutable_create_time() =
      TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now));
  return alert;
}

// `users/{u}` → u; only the user or staff may act on it.
absl::StatusOr<std::string> OwnUser(const CallContext& call,
                                    absl::string_view name,
                                    absl::string_view pattern,
                                    absl::string_view field, bool staff_may) {
  ASSIGN_OR_RETURN(auto ids, ParseResourceName(name, pattern, field));
  if (ids[0] != call.principal.subject &&
      !(staff_may && IsStaff(call.principal))) {
    return Denied("use", name);
  }
  return ids[0];
}

// The Customer Care queue's shared inbox (R8).
constexpr char kCustomerCareQueue[] = "queues/customer-care";
constexpr int kMaxNotifyRecipients = 1000;
constexpr size_t kMaxSubjectBytes = 500;

// The inbox `parent` names: a user's own (staff may read it when
// `staff_may`), or the Customer Care queue's, which is Customer Care's.
absl::StatusOr<std::string> OwnInbox(const CallContext& call,
                                     absl::string_view parent,
                                     absl::string_view field, bool staff_may) {
  if (parent == kCustomerCareQueue) {
    if (!call.principal.HasRole(kRoleCustomerCare)) {
      return Denied("use", parent);
    }
    return std::string(kCustomerCareQueue);
  }
  return OwnUser(call, parent, "users/*", field, staff_may);
}

// The user id in a partner or customer user's name, as
// CustomerManagementService sends it; parsed, never cut at the last '/'.
absl::StatusOr<std::string> UserOfMember(absl::string_view member_name) {
  for (absl::string_view pattern :
       {"partners/*/users/*", "customers/*/users/*"}) {
    absl::StatusOr<std::vector<std::string>> ids =
        ParseResourceName(member_name, pattern, "member");
    if (ids.ok()) return std::move((*ids)[1]);
  }
  return absl::InternalError(
      absl::StrCat("routing names an unexpected user: ", member_name));
}

}  // namespace

NotificationLogic::NotificationLogic(Database* db, RoutingSource* routing,
                                     BroadcastFanout* fanout, InboxHub* hub,
                                     WebhookDispatcher* webhooks,
                                     const Clock* clock, IdGenerator* ids,
                                     NotificationLogicOptions options)
    : db_(db),
      routing_(routing),
      fanout_(fanout),
      hub_(hub),
      webhooks_(webhooks),
      clock_(clock),
      ids_(ids),
      options_(std::move(options)) {}

bool NotificationLogic::IsMandatory(v1::Category category) const {
  return std::find(options_.mandatory_categories.begin(),
                   options_.mandatory_categories.end(),
                   category) != options_.mandatory_categories.end();
}

absl::StatusOr<v1::PreviewRoutingResponse> NotificationLogic::Route(
    Connection& db, const customers::v1::CommunicationRouting& routing,
    v1::Category category) {
  v1::PreviewRoutingResponse result;
  const bool shared =
      routing.communications() == customers::v1::COMMUNICATIONS_SHARED;
  result.set_communications(
      customers::v1::Communications_Name(routing.communications()));
  result.set_partner(routing.partner());
  absl::flat_hash_set<std::string> seen;
  // Adds `user` as a recipient unless it muted the category.
  auto consider = [&](const std::string& user,
                      std::string why) -> absl::Status {
    if (!seen.insert(user).second) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto muted, NotificationStore::MutedCategories(db, user));
    if (muted.contains(category) && !IsMandatory(category)) {
      auto* excluded = result.add_excluded();
      excluded->set_user(UserName(user));
      excluded->set_reason(v1::EXCLUSION_REASON_MUTED_CATEGORY);
      excluded->set_explanation(
          absl::StrCat("muted ", v1::Category_Name(category), " (", why, ")"));
      return absl::OkStatus();
    }
    auto* recipient = result.add_recipients();
    recipient->set_user(UserName(user));
    recipient->set_reason(std::move(why));
    return absl::OkStatus();
  };
  // R2/R10: the account manager hears the customer's alerts whenever a
  // partner is linked.
  if (!routing.partner().empty() && !routing.account_manager().empty()) {
    ASSIGN_OR_RETURN(std::string manager,
                     UserOfMember(routing.account_manager()));
    RETURN_IF_ERROR(consider(
        manager, absl::StrCat("account manager of ", routing.partner())));
  }
  for (const std::string& member : routing.customer_users()) {
    ASSIGN_OR_RETURN(const std::string user, UserOfMember(member));
    if (shared) {
      RETURN_IF_ERROR(
          consider(user, routing.partner().empty()
                             ? "customer user; the customer has no partner (R3)"
                             : "customer user; SHARED communications (R2)"));
    } else if (seen.insert(user).second) {
      auto* excluded = result.add_excluded();
      excluded->set_user(UserName(user));
      excluded->set_reason(v1::EXCLUSION_REASON_PARTNER_ONLY_COMMUNICATIONS);
      excluded->set_explanation(
          absl::StrCat("customer user; ", routing.partner(),
                       " manages all communications (PARTNER_ONLY, R2)"));
    }
  }
  return result;
}

absl::StatusOr<v1::Alert> NotificationLogic::PublishAlert(
    const CallContext& call, const v1::PublishAlertRequest& request) {
  if (!MayPublish(call.principal)) return Denied("publish", "alerts");
  ASSIGN_OR_RETURN(auto customer, ParseResourceName(request.customer(),
                                                    "customers/*", "customer"));
  RETURN_IF_ERROR(ValidateCategory("category", request.category()));
  RETURN_IF_ERROR(ValidateSeverity(request.severity()));
  RETURN_IF_ERROR(ValidateText(request.title(), request.body()));
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  const IdempotencyKey key{call.principal.subject, "PublishAlert",
                           request.request_id()};
  const std::string fingerprint = RequestFingerprint(request);
  // Asked before the transaction: a peer call never holds the write lock.
  ASSIGN_OR_RETURN(customers::v1::CommunicationRouting routing,
                   routing_->Get(customer[0]));
  v1::Alert result;
  std::vector<std::string> users;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    users.clear();  // a retried transaction starts over
    ASSIGN_OR_RETURN(bool replayed, Replayed(db, key, fingerprint, &result));
    if (replayed) return absl::OkStatus();
    ASSIGN_OR_RETURN(v1::PreviewRoutingResponse route,
                     Route(db, routing, request.category()));
    for (const auto& recipient : route.recipients()) {
      ASSIGN_OR_RETURN(std::string user,
                       ParseUserName(recipient.user(), "recipient"));
      users.push_back(std::move(user));
    }
    const absl::Time now = clock_->Now();
    const std::string alert_id = ids_->NewId();
    v1::Alert alert = NewAlert(alert_id, request.severity(), request.title(),
                               request.body(), now);
    alert.set_customer(request.customer());
    alert.set_category(request.category());
    alert.set_recipient_count(static_cast<int64_t>(users.size()));
    // The alert and its whole fan-out commit together, or not at all.
    RETURN_IF_ERROR(NotificationStore::InsertAlert(db, alert_id, alert, now));
    RETURN_IF_ERROR(
        NotificationStore::Deliver(db, alert_id, users, now).status());
    // Webhooks (R12) follow the same routing: the partner's endpoints
    // whenever a partner is linked, the customer's when its users hear it.
    std::vector<std::string> owners;
    if (!routing.partner().empty()) owners.push_back(routing.partner());
    if (routing.communications() == customers::v1::COMMUNICATIONS_SHARED) {
      owners.push_back(request.customer());
    }
    RETURN_IF_ERROR(
        WebhookStore::QueueAlert(db, alert_id, owners, false, now).status());
    result = alert;
    RETURN_IF_ERROR(AppendAuditEvent(
        db, {call.principal.subject, "PublishAlert", result.name(), "",
             ToAuditJson(result), now, call.request_id}));
    return Remember(db, key, fingerprint, result, now);
  }));
  if (hub_ != nullptr) hub_->Arrived(users);
  if (webhooks_ != nullptr) webhooks_->Wake();
  return result;
}

absl::StatusOr<v1::Alert> NotificationLogic::Notify(
    const CallContext& call, const v1::NotifyRequest& request) {
  if (!call.principal.HasRole(kRoleService)) return Denied("notify", "users");
  if (request.recipients().empty() ||
      request.recipients_size() > kMaxNotifyRecipients) {
    return InvalidField(
        "recipients",
        absl::StrCat("must name 1 to ", kMaxNotifyRecipients, " recipients"));
  }
  std::vector<std::string> inboxes;
  absl::flat_hash_set<std::string> seen;
  for (const std::string& recipient : request.recipients()) {
    std::string inbox;
    if (recipient == kCustomerCareQueue) {
      inbox = kCustomerCareQueue;
    } else {
      auto user = ParseResourceName(recipient, "users/*", "recipients");
      if (!user.ok()) {
        return InvalidField(
            "recipients",
            absl::StrCat("\"", recipient, "\" is neither users/{user} nor ",
                         kCustomerCareQueue));
      }
      inbox = (*user)[0];
    }
    if (seen.insert(inbox).second) inboxes.push_back(std::move(inbox));
  }
  RETURN_IF_ERROR(ValidateCategory("category", request.category()));
  RETURN_IF_ERROR(ValidateSeverity(request.severity()));
  RETURN_IF_ERROR(ValidateText(request.title(), request.body()));
  if (request.subject().size() > kMaxSubjectBytes) {
    return InvalidField("subject", absl::StrCat("must be at most ",
                                                kMaxSubjectBytes, " bytes"));
  }
  if (request.request_id().empty()) {
    return InvalidField("request_id",
                        "is required: senders retry, and a repeat must not "
                        "notify twice");
  }
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  const IdempotencyKey key{call.principal.subject, "Notify",
                           request.request_id()};
  const std::string fingerprint = RequestFingerprint(request);
  v1::Alert result;
  bool replayed = false;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(replayed, Replayed(db, key, fingerprint, &result));
    if (replayed) return absl::OkStatus();
    const absl::Time now = clock_->Now();
    const std::string alert_id = ids_->NewId();
    v1::Alert alert = NewAlert(alert_id, request.severity(), request.title(),
                               request.body(), now);
    alert.set_category(request.category());
    alert.set_subject(request.subject());
    alert.set_recipient_count(static_cast<int64_t>(inboxes.size()));
    RETURN_IF_ERROR(NotificationStore::InsertAlert(db, alert_id, alert, now));
    RETURN_IF_ERROR(
        NotificationStore::Deliver(db, alert_id, inboxes, now).status());
    result = alert;
    RETURN_IF_ERROR(
        AppendAuditEvent(db, {call.principal.subject, "Notify", result.name(),
                              "", ToAuditJson(result), now, call.request_id}));
    return Remember(db, key, fingerprint, result, now);
  }));
  if (hub_ != nullptr && !replayed) hub_->Arrived(inboxes);
  return result;
}

absl::Status NotificationLogic::PrepareStream(
    const CallContext& call, const v1::StreamNotificationsRequest& request,
    std::string* user_id, int64_t* cursor) {
  ASSIGN_OR_RETURN(*user_id, OwnInbox(call, request.parent(), "parent", false));
  if (!request.resume_cursor().empty()) {
    if (!absl::SimpleAtoi(request.resume_cursor(), cursor) || *cursor < 0) {
      return InvalidField("resume_cursor",
                          "must be a cursor this stream sent earlier");
    }
    return absl::OkStatus();
  }
  return db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(*cursor, NotificationStore::LastArrival(db, *user_id));
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::Alert> NotificationLogic::PublishBroadcast(
    const CallContext& call, const v1::PublishBroadcastRequest& request) {
  if (!IsStaff(call.principal)) return Denied("publish", "broadcasts");
  if (request.kind() == v1::BROADCAST_KIND_UNSPECIFIED ||
      !v1::BroadcastKind_IsValid(request.kind())) {
    return InvalidField("kind",
                        "must be BROADCAST_KIND_OUTAGE or "
                        "BROADCAST_KIND_MAINTENANCE");
  }
  RETURN_IF_ERROR(ValidateText(request.title(), request.body()));
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  const IdempotencyKey key{call.principal.subject, "PublishBroadcast",
                           request.request_id()};
  const std::string fingerprint = RequestFingerprint(request);
  v1::Alert result;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(bool replayed, Replayed(db, key, fingerprint, &result));
    if (replayed) return absl::OkStatus();
    const absl::Time now = clock_->Now();
    const std::string alert_id = ids_->NewId();
    v1::Alert alert = NewAlert(alert_id,
                               request.kind() == v1::BROADCAST_KIND_OUTAGE
                                   ? v1::SEVERITY_CRITICAL
                                   : v1::SEVERITY_INFO,
                               request.title(), request.body(), now);
    alert.set_broadcast_kind(request.kind());
    // Recorded with its fan-out cursor in one transaction; the fan-out
    // itself runs in pages (BroadcastFanout) and survives a crash.
    RETURN_IF_ERROR(NotificationStore::InsertAlert(db, alert_id, alert, now));
    RETURN_IF_ERROR(NotificationStore::StartFanout(db, alert_id));
    // R11: every webhook endpoint too.
    RETURN_IF_ERROR(
        WebhookStore::QueueAlert(db, alert_id, {}, true, now).status());
    result = alert;
    RETURN_IF_ERROR(AppendAuditEvent(
        db, {call.principal.subject, "PublishBroadcast", result.name(), "",
             ToAuditJson(result), now, call.request_id}));
    return Remember(db, key, fingerprint, result, now);
  }));
  if (fanout_ != nullptr) fanout_->Wake();
  if (webhooks_ != nullptr) webhooks_->Wake();
  return result;
}

absl::StatusOr<v1::Alert> NotificationLogic::GetAlert(
    const CallContext& call, const v1::GetAlertRequest& request) {
  if (!IsStaff(call.principal)) return Denied("read", request.name());
  ASSIGN_OR_RETURN(auto ids,
                   ParseResourceName(request.name(), "alerts/*", "name"));
  std::optional<v1::Alert> alert;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(alert, NotificationStore::FindAlert(db, ids[0]));
    return absl::OkStatus();
  }));
  if (!alert) {
    return absl::NotFoundError(absl::StrCat(request.name(), " does not exist"));
  }
  return *alert;
}

absl::StatusOr<v1::PreviewRoutingResponse> NotificationLogic::PreviewRouting(
    const CallContext& call, const v1::PreviewRoutingRequest& request) {
  if (!IsStaff(call.principal)) return Denied("preview", "routing");
  ASSIGN_OR_RETURN(auto customer, ParseResourceName(request.customer(),
                                                    "customers/*", "customer"));
  RETURN_IF_ERROR(ValidateCategory("category", request.category()));
  ASSIGN_OR_RETURN(customers::v1::CommunicationRouting routing,
                   routing_->Get(customer[0]));
  v1::PreviewRoutingResponse result;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(result, Route(db, routing, request.category()));
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<v1::ListNotificationsResponse>
NotificationLogic::ListNotifications(
    const CallContext& call, const v1::ListNotificationsRequest& request) {
  ASSIGN_OR_RETURN(std::string user,
                   OwnInbox(call, request.parent(), "parent", true));
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  const std::string query =
      absl::StrCat("inbox:", user, ":", request.unread_only());
  ASSIGN_OR_RETURN(std::optional<TimeKey> before,
                   DecodeTimeKeyPageToken(request.page_token(), query));
  std::vector<v1::Notification> rows;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(
        rows, NotificationStore::ListInbox(db, user, request.unread_only(),
                                           before, page_size + 1));
    return absl::OkStatus();
  }));
  v1::ListNotificationsResponse response;
  if (static_cast<int>(rows.size()) > page_size) {
    rows.resize(page_size);
    const v1::Notification& last = rows.back();
    response.set_next_page_token(EncodeTimeKeyPageToken(
        query, TimeUtil::TimestampToMicroseconds(last.create_time()),
        LastSegment(last.name())));
  }
  for (v1::Notification& row : rows) {
    *response.add_notifications() = std::move(row);
  }
  return response;
}

absl::StatusOr<v1::MarkNotificationsReadResponse>
NotificationLogic::MarkNotificationsRead(
    const CallContext& call, const v1::MarkNotificationsReadRequest& request) {
  ASSIGN_OR_RETURN(std::string user,
                   OwnInbox(call, request.parent(), "parent", false));
  if (request.all() == !request.names().empty()) {
    return InvalidField("names", "give the notifications to mark, or all");
  }
  std::vector<std::string> alert_ids;
  const std::string prefix = absl::StrCat(request.parent(), "/notifications/");
  for (const std::string& name : request.names()) {
    absl::string_view id = name;
    if (!absl::ConsumePrefix(&id, prefix) || id.empty() ||
        id.find('/') != absl::string_view::npos) {
      return InvalidField(
          "names", absl::StrCat("\"", name, "\" is not a notification of ",
                                request.parent()));
    }
    alert_ids.emplace_back(id);
  }
  v1::MarkNotificationsReadResponse response;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(int64_t marked,
                     NotificationStore::MarkRead(db, user, alert_ids));
    response.set_marked(marked);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::NotificationPreferences>
NotificationLogic::GetNotificationPreferences(
    const CallContext& call,
    const v1::GetNotificationPreferencesRequest& request) {
  ASSIGN_OR_RETURN(std::string user,
                   OwnUser(call, request.name(),
                           "users/*/notificationPreferences", "name", true));
  v1::NotificationPreferences preferences;
  preferences.set_name(request.name());
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(auto muted, NotificationStore::MutedCategories(db, user));
    std::vector<int> sorted(muted.begin(), muted.end());
    std::sort(sorted.begin(), sorted.end());
    for (int category : sorted) {
      preferences.add_muted_categories(static_cast<v1::Category>(category));
    }
    return absl::OkStatus();
  }));
  for (v1::Category category : options_.mandatory_categories) {
    preferences.add_mandatory_categories(category);
  }
  return preferences;
}

absl::StatusOr<v1::NotificationPreferences>
NotificationLogic::UpdateNotificationPreferences(
    const CallContext& call,
    const v1::UpdateNotificationPreferencesRequest& request) {
  const v1::NotificationPreferences& wanted =
      request.notification_preferences();
  ASSIGN_OR_RETURN(
      std::string user,
      OwnUser(call, wanted.name(), "users/*/notificationPreferences",
              "notification_preferences.name", false));
  if (request.update_mask().paths_size() != 1 ||
      request.update_mask().paths(0) != "muted_categories") {
    return InvalidField("update_mask", "must be exactly \"muted_categories\"");
  }
  std::vector<int> categories;
  for (int category : wanted.muted_categories()) {
    const auto value = static_cast<v1::Category>(category);
    RETURN_IF_ERROR(
        ValidateCategory("notification_preferences.muted_categories", value));
    if (IsMandatory(value)) {
      return WithReason(
          InvalidField("notification_preferences.muted_categories",
                       absl::StrCat(v1::Category_Name(value),
                                    " is mandatory and cannot be muted")),
          "MANDATORY_CATEGORY");
    }
    categories.push_back(category);
  }
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(auto before, NotificationStore::MutedCategories(db, user));
    RETURN_IF_ERROR(
        NotificationStore::SetMutedCategories(db, user, categories));
    return AppendAuditEvent(
        db, {call.principal.subject, "UpdateNotificationPreferences",
             wanted.name(), absl::StrCat("{\"muted\":", before.size(), "}"),
             ToAuditJson(wanted), clock_->Now(), call.request_id});
  }));
  v1::GetNotificationPreferencesRequest get;
  get.set_name(wanted.name());
  return GetNotificationPreferences(call, get);
}

absl::StatusOr<ListAuditEventsResponse> NotificationLogic::ListAuditEvents(
    const CallContext& call, const ListAuditEventsRequest& request) {
  if (!IsStaff(call.principal)) return Denied("read", "the audit log");
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  if (!ParseResourceName(request.parent(), "alerts/*", "parent").ok() &&
      !ParseResourceName(request.parent(), "users/*", "parent").ok() &&
      request.parent() != kCustomerCareQueue &&
      !ParseResourceName(request.parent(), "partners/*/webhookEndpoints/*",
                         "parent")
           .ok() &&
      !ParseResourceName(request.parent(), "customers/*/webhookEndpoints/*",
                         "parent")
           .ok() &&
      !ParseResourceName(request.parent(), "users/*/notificationPreferences",
                         "parent")
           .ok()) {
    return InvalidField("parent",
                        "must be alerts/{alert}, users/{user} (or below), "
                        "queues/customer-care or a webhook endpoint");
  }
  return custos::ListAuditEvents(*db_, request.parent(), page_size,
                                 request.page_token());
}

}  // namespace custos::notifications
