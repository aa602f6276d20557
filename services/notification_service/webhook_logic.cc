#include "services/notification_service/webhook_logic.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/audit_store.h"
#include "common/auth.h"
#include "common/grpc_status.h"
#include "common/logic_helpers.h"
#include "common/pagination.h"
#include "common/resource_name.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "services/notification_service/webhook_store.h"

namespace custos::notifications {
namespace {

using google::protobuf::util::TimeUtil;

constexpr size_t kMinSecretBytes = 16;
constexpr size_t kMaxSecretBytes = 256;

absl::Status Authorize(const CallContext& call, absl::string_view action,
                       absl::string_view resource) {
  if (call.principal.HasRole(kRolePlatformAdmin) ||
      call.principal.HasRole(kRoleService)) {
    return absl::OkStatus();
  }
  return Denied(action, resource);
}

// `partners/{p}` or `customers/{c}`: the owner, as it is stored.
absl::StatusOr<std::string> ParseOwner(absl::string_view parent,
                                       absl::string_view field) {
  if (ParseResourceName(parent, "partners/*", field).ok() ||
      ParseResourceName(parent, "customers/*", field).ok()) {
    return std::string(parent);
  }
  return InvalidField(field,
                      "must be partners/{partner} or "
                      "customers/{customer}");
}

// `{owner}/webhookEndpoints/{id}` → (owner, id).
absl::StatusOr<std::pair<std::string, std::string>> ParseEndpoint(
    absl::string_view name, absl::string_view field) {
  for (const char* pattern :
       {"partners/*/webhookEndpoints/*", "customers/*/webhookEndpoints/*"}) {
    if (ParseResourceName(name, pattern, field).ok()) {
      const size_t split = name.find("/webhookEndpoints/");
      return std::make_pair(
          std::string(name.substr(0, split)),
          std::string(name.substr(split + sizeof("/webhookEndpoints/") - 1)));
    }
  }
  return InvalidField(field,
                      "must be {partners/{partner} or customers/{customer}}"
                      "/webhookEndpoints/{endpoint}");
}

// The URL as it will be stored, when its host is not known to resolve to
// a forbidden address (see CreateWebhookEndpoint in the header).
absl::StatusOr<WebhookTarget> CheckTarget(absl::string_view url,
                                          const WebhookTargetPolicy& policy) {
  ASSIGN_OR_RETURN(WebhookTarget target, ParseWebhookUrl(url, policy));
  absl::StatusOr<std::vector<std::string>> addresses =
      ResolveWebhookHost(target, policy);
  if (absl::IsInvalidArgument(addresses.status())) return addresses.status();
  return target;
}

}  // namespace

absl::StatusOr<v1::WebhookEndpoint> WebhookLogic::CreateWebhookEndpoint(
    const CallContext& call, const v1::CreateWebhookEndpointRequest& request) {
  RETURN_IF_ERROR(
      Authorize(call, "create webhook endpoints of", request.parent()));
  ASSIGN_OR_RETURN(std::string owner, ParseOwner(request.parent(), "parent"));
  RETURN_IF_ERROR(ValidateResourceId(request.webhook_endpoint_id(),
                                     "webhook_endpoint_id", true));
  const v1::WebhookEndpoint& wanted = request.webhook_endpoint();
  ASSIGN_OR_RETURN(const WebhookTarget target,
                   CheckTarget(wanted.url(), policy_));
  if (wanted.secret().size() < kMinSecretBytes ||
      wanted.secret().size() > kMaxSecretBytes) {
    return InvalidField("webhook_endpoint.secret",
                        absl::StrCat("must be ", kMinSecretBytes, " to ",
                                     kMaxSecretBytes, " bytes"));
  }
  const std::string id = request.webhook_endpoint_id().empty()
                             ? ids_->NewId()
                             : request.webhook_endpoint_id();
  v1::WebhookEndpoint result;
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    const std::string name = absl::StrCat(owner, "/webhookEndpoints/", id);
    ASSIGN_OR_RETURN(auto existing, WebhookStore::FindEndpoint(db, owner, id));
    if (existing) {
      return absl::AlreadyExistsError(absl::StrCat(name, " already exists"));
    }
    const absl::Time now = clock_->Now();
    RETURN_IF_ERROR(WebhookStore::InsertEndpoint(
        db, owner, id, {target.url, wanted.secret(), now}));
    result.set_name(name);
    result.set_url(target.url);
    *result.mutable_create_time() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now));
    // The secret is never returned, logged or audited.
    return AppendAuditEvent(
        db, {call.principal.subject, "CreateWebhookEndpoint", name, "",
             ToAuditJson(result), now, call.request_id});
  }));
  return result;
}

absl::StatusOr<v1::ListWebhookEndpointsResponse>
WebhookLogic::ListWebhookEndpoints(
    const CallContext& call, const v1::ListWebhookEndpointsRequest& request) {
  RETURN_IF_ERROR(
      Authorize(call, "list webhook endpoints of", request.parent()));
  ASSIGN_OR_RETURN(std::string owner, ParseOwner(request.parent(), "parent"));
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  v1::ListWebhookEndpointsResponse response;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(
        std::string next,
        ListPage<v1::WebhookEndpoint>(
            absl::StrCat("webhooks:", owner), page_size, request.page_token(),
            [&](const std::string& after, int limit) {
              return WebhookStore::ListEndpoints(db, owner, after, limit);
            },
            [&](v1::WebhookEndpoint endpoint) {
              *response.add_webhook_endpoints() = std::move(endpoint);
            }));
    response.set_next_page_token(next);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<google::protobuf::Empty> WebhookLogic::DeleteWebhookEndpoint(
    const CallContext& call, const v1::DeleteWebhookEndpointRequest& request) {
  RETURN_IF_ERROR(Authorize(call, "delete", request.name()));
  ASSIGN_OR_RETURN(auto endpoint, ParseEndpoint(request.name(), "name"));
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(bool deleted, WebhookStore::DeleteEndpoint(
                                       db, endpoint.first, endpoint.second));
    if (!deleted) {
      return absl::NotFoundError(
          absl::StrCat(request.name(), " does not exist"));
    }
    return AppendAuditEvent(
        db, {call.principal.subject, "DeleteWebhookEndpoint", request.name(),
             "", "", clock_->Now(), call.request_id});
  }));
  return google::protobuf::Empty();
}

absl::StatusOr<v1::ListWebhookDeliveriesResponse>
WebhookLogic::ListWebhookDeliveries(
    const CallContext& call, const v1::ListWebhookDeliveriesRequest& request) {
  RETURN_IF_ERROR(Authorize(call, "list the deliveries of", request.parent()));
  ASSIGN_OR_RETURN(auto endpoint, ParseEndpoint(request.parent(), "parent"));
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size()));
  const std::string query = absl::StrCat("deliveries:", request.parent());
  ASSIGN_OR_RETURN(std::optional<TimeKey> before,
                   DecodeTimeKeyPageToken(request.page_token(), query));
  std::vector<v1::WebhookDelivery> rows;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(auto found, WebhookStore::FindEndpoint(db, endpoint.first,
                                                            endpoint.second));
    if (!found) {
      return absl::NotFoundError(
          absl::StrCat(request.parent(), " does not exist"));
    }
    ASSIGN_OR_RETURN(rows, WebhookStore::ListDeliveries(
                               db, endpoint.first, endpoint.second,
                               request.parent(), before, page_size + 1));
    return absl::OkStatus();
  }));
  v1::ListWebhookDeliveriesResponse response;
  if (static_cast<int>(rows.size()) > page_size) {
    rows.resize(page_size);
    const v1::WebhookDelivery& last = rows.back();
    response.set_next_page_token(EncodeTimeKeyPageToken(
        query, TimeUtil::TimestampToMicroseconds(last.create_time()),
        LastSegment(last.name())));
  }
  for (v1::WebhookDelivery& row : rows) {
    *response.add_webhook_deliveries() = std::move(row);
  }
  return response;
}

}  // namespace custos::notifications
