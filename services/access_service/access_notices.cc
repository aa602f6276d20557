#include "services/access_service/access_notices.h"

#include "absl/strings/str_cat.h"
#include "common/resource_name.h"
#include "custos/notifications/v1/notifications_service.pb.h"

namespace custos::access {
namespace {

namespace notifications = ::custos::notifications::v1;

constexpr char kNotify[] =
    "/custos.notifications.v1.NotificationService/Notify";

std::string Site(const v1::AccessRequest& request) {
  return request.name().substr(0, request.name().find("/accessRequests/"));
}

std::string Asked(const v1::AccessRequest& request) {
  if (request.current_role() == v1::SITE_ROLE_UNSPECIFIED) {
    return absl::StrCat("to join ", Site(request), " as ",
                        v1::SiteRole_Name(request.requested_role()));
  }
  return absl::StrCat("to change their role on ", Site(request), " from ",
                      v1::SiteRole_Name(request.current_role()), " to ",
                      v1::SiteRole_Name(request.requested_role()));
}

}  // namespace

absl::Status AccessNotices::RequestCreated(
    Connection& db, const v1::AccessRequest& request,
    const std::vector<std::string>& administrators, absl::Time now) {
  if (outbox_ == nullptr) return absl::OkStatus();
  std::vector<std::string> recipients;
  std::string why;
  if (request.approver() == v1::AccessRequest::APPROVER_SITE_ADMINISTRATORS) {
    for (const std::string& admin : administrators) {
      if (UserName(admin) != request.requester()) {
        recipients.push_back(UserName(admin));
      }
    }
    why = "You administer the site.";
  }
  if (recipients.empty()) {
    recipients.push_back(kCustomerCareQueue);
    why = "The site has no other administrator, so Customer Care decides.";
  }
  return Enqueue(db, recipients,
                 absl::StrCat("Access request for ", Site(request)),
                 absl::StrCat(request.requester(), " asks ", Asked(request),
                              ": \"", request.justification(), "\". ", why),
                 request.name(), absl::StrCat("created:", request.name()), now);
}

absl::Status AccessNotices::RequestDecided(Connection& db,
                                           const v1::AccessRequest& request,
                                           absl::Time now) {
  if (outbox_ == nullptr) return absl::OkStatus();
  std::string outcome;
  switch (request.state()) {
    case v1::AccessRequest::STATE_APPROVED:
      outcome = absl::StrCat("was approved by ", request.decided_by());
      break;
    case v1::AccessRequest::STATE_REJECTED:
      outcome = absl::StrCat("was rejected by ", request.decided_by(), ": \"",
                             request.decision_reason(), "\"");
      break;
    case v1::AccessRequest::STATE_EXPIRED:
      outcome = "expired before anyone decided it";
      break;
    default:
      return absl::OkStatus();  // cancelled by the requester: they know
  }
  const std::string state = v1::AccessRequest::State_Name(request.state());
  return Enqueue(
      db, {request.requester()},
      absl::StrCat("Your access request for ", Site(request), ": ",
                   state.substr(state.find('_') + 1)),
      absl::StrCat("Your request ", Asked(request), " ", outcome, "."),
      request.name(), absl::StrCat(state, ":", request.name()), now);
}

absl::Status AccessNotices::HandedOver(Connection& db,
                                       const std::string& site_name,
                                       int64_t moved, absl::Time now) {
  if (outbox_ == nullptr) return absl::OkStatus();
  return Enqueue(
      db, {kCustomerCareQueue},
      absl::StrCat(moved, " access request(s) of ", site_name,
                   " moved to Customer Care"),
      absl::StrCat("The last administrator of ", site_name,
                   " left while requests were pending (R6)."),
      site_name,
      absl::StrCat("handover:", site_name, ":", absl::ToUnixMicros(now)), now);
}

void AccessNotices::Wake() {
  if (outbox_ != nullptr) outbox_->Wake();
}

absl::Status AccessNotices::Enqueue(
    Connection& db, const std::vector<std::string>& recipients,
    const std::string& title, const std::string& body,
    const std::string& subject, const std::string& request_id, absl::Time now) {
  notifications::NotifyRequest notice;
  for (const std::string& recipient : recipients) {
    notice.add_recipients(recipient);
  }
  notice.set_category(notifications::CATEGORY_ACCOUNT);
  notice.set_severity(notifications::SEVERITY_INFO);
  // Site names are at most 63 characters, so titles stay within the
  // 200 bytes NotificationService accepts.
  notice.set_title(title);
  notice.set_body(body);
  notice.set_subject(subject);
  notice.set_request_id(request_id);
  return EnqueueOutbox(db, "notifications", kNotify, notice, now);
}

}  // namespace custos::access
