#include "services/notification_service/webhook_dispatcher.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/backoff.h"
#include "common/json_log.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "services/notification_service/notification_store.h"
#include "services/notification_service/webhook_store.h"

namespace custos::notifications {
namespace {

// libcurl's write callback: the answer's body is not kept.
size_t Discard(char*, size_t size, size_t count, void*) { return size * count; }

struct CurlCleanup {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct HeaderListCleanup {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

// What a failed attempt records as its last_error. The endpoint's owner
// reads it, so it names no host, address or port and stays coarse (no
// libcurl text): otherwise endpoints pointed at internal addresses would
// map which of them answer.
constexpr char kNotAllowed[] = "target address not allowed";
constexpr char kNoAddress[] = "host did not resolve";
constexpr char kConnectFailed[] = "connection failed";
constexpr char kTimedOut[] = "timed out";
constexpr char kTlsError[] = "TLS error";
constexpr char kRedirect[] = "redirect not followed";

absl::string_view CurlFailure(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return kTimedOut;
    case CURLE_COULDNT_RESOLVE_HOST:
      return kNoAddress;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
      return kTlsError;
    default:
      return kConnectFailed;
  }
}

// What libcurl may connect to in one attempt: the addresses
// ResolveWebhookHost checked, and only while the policy allows them.
struct ConnectGuard {
  const WebhookTargetPolicy* policy;
  const std::vector<std::string>* addresses;
  bool refused = false;
};

// CURLOPT_OPENSOCKETFUNCTION: the last look before connect(). The pin
// (CURLOPT_RESOLVE) should make libcurl use only the checked addresses;
// this holds even if it did not (a pin that failed to match, a literal
// host, a future libcurl resolving on its own), so a rebinding DNS answer
// can never be connected to.
curl_socket_t OpenCheckedSocket(void* clientp, curlsocktype purpose,
                                curl_sockaddr* address) {
  auto* guard = static_cast<ConnectGuard*>(clientp);
  const std::string text = SockaddrText(&address->addr);
  if (purpose != CURLSOCKTYPE_IPCXN || text.empty() ||
      IsForbiddenAddress(&address->addr, *guard->policy) ||
      std::find(guard->addresses->begin(), guard->addresses->end(), text) ==
          guard->addresses->end()) {
    guard->refused = true;
    return CURL_SOCKET_BAD;
  }
  return socket(address->family, address->socktype, address->protocol);
}

// "host:port:addr,..." for CURLOPT_RESOLVE: libcurl takes these addresses
// for the host instead of asking DNS again, so the name cannot resolve to
// something else between our check and the connection (DNS rebinding).
std::string Pin(const WebhookTarget& target,
                const std::vector<std::string>& addresses) {
  std::vector<std::string> bracketed;
  for (const std::string& address : addresses) {
    bracketed.push_back(absl::StrContains(address, ':')
                            ? absl::StrCat("[", address, "]")
                            : address);
  }
  return absl::StrCat(target.host, ":", target.port, ":",
                      absl::StrJoin(bracketed, ","));
}

// One POST to the checked addresses of `target`; OK for a 2xx answer,
// otherwise UNAVAILABLE with a coarse reason (above).
absl::Status Post(const WebhookTarget& target,
                  const std::vector<std::string>& addresses,
                  const WebhookTargetPolicy& policy, const std::string& body,
                  const std::vector<std::string>& headers,
                  absl::Duration timeout) {
  std::unique_ptr<CURL, CurlCleanup> curl(curl_easy_init());
  if (!curl) return absl::InternalError("curl_easy_init failed");
  std::unique_ptr<curl_slist, HeaderListCleanup> list;
  for (const std::string& header : headers) {
    list.reset(curl_slist_append(list.release(), header.c_str()));
  }
  // An IPv6 literal is not resolved, and cannot be written as a pin's host.
  std::unique_ptr<curl_slist, HeaderListCleanup> pin;
  if (!absl::StrContains(target.host, ':')) {
    pin.reset(curl_slist_append(nullptr, Pin(target, addresses).c_str()));
  }
  ConnectGuard guard{&policy, &addresses};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, target.url.c_str());
  curl_easy_setopt(c, CURLOPT_RESOLVE, pin.get());
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, OpenCheckedSocket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &guard);
  // A proxy from the environment (http_proxy, ...) would make the
  // connection somewhere we did not check, and could reach internal hosts.
  curl_easy_setopt(c, CURLOPT_PROXY, "");
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM
  // A redirect's target was never checked: it fails the attempt.
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 0L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
  const CURLcode code = curl_easy_perform(c);
  if (code != CURLE_OK) {
    return absl::UnavailableError(guard.refused ? kNotAllowed
                                                : CurlFailure(code));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 300 && status <= 399) return absl::UnavailableError(kRedirect);
  if (status < 200 || status > 299) {
    return absl::UnavailableError(absl::StrCat("HTTP ", status));
  }
  return absl::OkStatus();
}

// Checks the stored URL again at every attempt (the policy may have
// changed since it was created, and its name may resolve elsewhere now),
// then POSTs to exactly the addresses checked.
absl::Status Deliver(const std::string& url, const std::string& body,
                     const std::vector<std::string>& headers,
                     const WebhookDispatcherOptions& options) {
  absl::StatusOr<WebhookTarget> target =
      ParseWebhookUrl(url, options.target_policy);
  if (!target.ok()) return absl::UnavailableError(kNotAllowed);
  absl::StatusOr<std::vector<std::string>> addresses =
      ResolveWebhookHost(*target, options.target_policy);
  if (!addresses.ok()) {
    return absl::UnavailableError(
        absl::IsInvalidArgument(addresses.status()) ? kNotAllowed : kNoAddress);
  }
  return Post(*target, *addresses, options.target_policy, body, headers,
              options.timeout);
}

}  // namespace

std::string WebhookSignature(absl::string_view secret, absl::string_view body,
                             int64_t unix_seconds) {
  const std::string signed_text = absl::StrCat(unix_seconds, ".", body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signed_text.data()),
       signed_text.size(), mac, &mac_size);
  return absl::StrCat("t=", unix_seconds, ",v1=",
                      absl::BytesToHexString(absl::string_view(
                          reinterpret_cast<const char*>(mac), mac_size)));
}

void WebhookDispatcher::Start() {
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    threads_.emplace_back([this] { Loop(); });
  }
}

void WebhookDispatcher::Wake() {
  absl::MutexLock lock(&mu_);
  ++wakes_;
}

void WebhookDispatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
}

absl::Duration WebhookDispatcher::Backoff(int64_t failures) {
  absl::MutexLock lock(&mu_);
  return FullJitterBackoff(jitter_, options_.initial_backoff,
                           options_.max_backoff, failures);
}

void WebhookDispatcher::Loop() {
  while (true) {
    int64_t seen = 0;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      seen = wakes_;
    }
    absl::StatusOr<bool> attempted = AttemptOne();
    if (!attempted.ok()) {
      Log("warning", "webhook delivery failed to record",
          {{"error", attempted.status().ToString()}});
    }
    if (attempted.ok() && *attempted) continue;
    // Nothing due: sleep until the next one is, a wake, or the poll.
    absl::Duration wait = options_.poll_interval;
    std::optional<absl::Time> next;
    absl::Status read = db_->Read([&](Connection& db) -> absl::Status {
      ASSIGN_OR_RETURN(next, WebhookStore::NextDue(db));
      return absl::OkStatus();
    });
    if (read.ok() && next) {
      wait = std::clamp(*next - clock_->Now(), absl::ZeroDuration(), wait);
    }
    absl::MutexLock lock(&mu_);
    auto woken = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || wakes_ != seen;
    };
    mu_.AwaitWithTimeout(absl::Condition(&woken), wait);
  }
}

absl::StatusOr<bool> WebhookDispatcher::AttemptOne() {
  std::optional<WebhookStore::DueDelivery> due;
  std::string body;
  // The lease covers the attempt and its retries inside libcurl.
  const absl::Duration lease = options_.timeout * 2 + absl::Seconds(1);
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    body.clear();  // a retried transaction starts over
    ASSIGN_OR_RETURN(due, WebhookStore::ClaimDue(db, clock_->Now(), lease));
    if (!due) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto alert,
                     NotificationStore::FindAlert(db, due->key.alert_id));
    if (!alert) return absl::InternalError("webhook delivery without alert");
    if (!google::protobuf::util::MessageToJsonString(*alert, &body).ok()) {
      return absl::InternalError("cannot render the alert as JSON");
    }
    return absl::OkStatus();
  }));
  if (!due) return false;
  const absl::Time now = clock_->Now();
  std::vector<std::string> headers = {
      "Content-Type: application/json",
      absl::StrCat(
          "X-Custos-Signature: ",
          WebhookSignature(due->secret, body, absl::ToUnixSeconds(now))),
      absl::StrCat("X-Custos-Delivery: ", due->key.owner, "/webhookEndpoints/",
                   due->key.endpoint_id, "/deliveries/", due->key.alert_id)};
  if (!due->trace_parent.empty()) {
    headers.push_back(absl::StrCat("traceparent: ", due->trace_parent));
  }
  if (!due->request_id.empty()) {
    headers.push_back(absl::StrCat("X-Request-Id: ", due->request_id));
  }
  const absl::Status posted = Deliver(due->url, body, headers, options_);
  const int64_t failures = due->attempts + 1;
  std::optional<absl::Time> retry_at;
  if (!posted.ok() && failures < options_.max_attempts) {
    retry_at = clock_->Now() + Backoff(failures);
  }
  RETURN_IF_ERROR(db_->Write([&](Connection& db) -> absl::Status {
    if (posted.ok()) {
      return WebhookStore::RecordDelivered(db, due->key, clock_->Now());
    }
    return WebhookStore::RecordFailure(db, due->key,
                                       std::string(posted.message()), retry_at);
  }));
  (posted.ok() ? delivered_ : failed_).fetch_add(1);
  if (!posted.ok() && !retry_at) {
    dead_.fetch_add(1);
    Log("warning", "webhook delivery is dead",
        {{"endpoint", absl::StrCat(due->key.owner, "/webhookEndpoints/",
                                   due->key.endpoint_id)},
         {"alert", absl::StrCat("alerts/", due->key.alert_id)},
         {"attempts", absl::StrCat(failures)},
         {"error", std::string(posted.message())}});
  }
  return true;
}

}  // namespace custos::notifications
