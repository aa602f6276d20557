#ifndef CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_TARGET_H_
#define CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_TARGET_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace custos::notifications {

// Where webhooks may be sent (R12). A webhook URL is chosen by the caller
// and POSTed to from inside our network, so without these rules it would
// reach internal services (SSRF). Every address class not listed here as
// allowable is always refused: link-local (and with it the cloud metadata
// service at 169.254.169.254), unspecified, multicast, broadcast,
// documentation, benchmarking and other reserved ranges.
struct WebhookTargetPolicy {
  // Loopback (127/8, ::1, "localhost"), and http:// to it: for the dev
  // stack and tests, whose receivers listen on 127.0.0.1. Default: false.
  bool allow_loopback = false;
  // Private networks: RFC 1918 (10/8, 172.16/12, 192.168/16), shared
  // address space (CGNAT, 100.64/10), IPv6 unique-local (fc00::/7) and
  // site-local (fec0::/10). For deployments whose receivers are in-house.
  // Default: false.
  bool allow_private = false;
};

// A webhook URL taken apart by libcurl's URL parser: the same parser that
// later sends the POST, so what is checked is what is contacted.
struct WebhookTarget {
  std::string scheme;  // "http" or "https"
  // Lower-case; IPv4 literals in dotted-quad form (libcurl rewrites
  // 2130706433, 0x7f000001, 0177.0.0.1 and 127.1 as 127.0.0.1); IPv6
  // literals without brackets.
  std::string host;
  int port = 0;     // as given, else the scheme's default
  std::string url;  // normalized by libcurl; the URL to store and POST to
};

enum class WebhookAddressClass {
  kPublic,
  kLoopback,  // allowed only with allow_loopback
  kPrivate,   // allowed only with allow_private
  kReserved,  // never allowed
};

// IPv6 addresses that carry an IPv4 address (mapped ::ffff:0:0/96,
// translated ::ffff:0:0:0/96, compatible ::/96, NAT64 64:ff9b::/96, 6to4
// 2002::/16) are classified by the IPv4 address they carry. Teredo, the
// rest of 2001::/23, documentation and everything outside global unicast
// 2000::/3 that is not listed above is kReserved.
WebhookAddressClass ClassifyAddress(const in_addr& address);
WebhookAddressClass ClassifyAddress(const in6_addr& address);

// True when the policy does not allow the address's class.
bool IsForbiddenAddress(const in_addr& address,
                        const WebhookTargetPolicy& policy);
bool IsForbiddenAddress(const in6_addr& address,
                        const WebhookTargetPolicy& policy);
// AF_INET or AF_INET6; any other family is forbidden.
// REQUIRES: `address` points at a sockaddr_in or sockaddr_in6 when its
// family says so.
bool IsForbiddenAddress(const sockaddr* address,
                        const WebhookTargetPolicy& policy);

// The address of an AF_INET or AF_INET6 sockaddr as inet_ntop writes it
// (no port), the form ResolveWebhookHost returns; "" for other families.
std::string SockaddrText(const sockaddr* address);

// Checks a webhook URL as text: at most 2048 bytes, printable, http or
// https with a host, no user information (not even an empty "@"), no
// fragment, a port in 1..65535, an ASCII host. https:// is required unless
// the policy allows loopback and the host is "localhost" or a loopback
// address literal. Does not resolve names (see ResolveWebhookHost).
// Errors: INVALID_ARGUMENT on field "webhook_endpoint.url".
absl::StatusOr<WebhookTarget> ParseWebhookUrl(
    absl::string_view url, const WebhookTargetPolicy& policy);

// Resolves the target's host (getaddrinfo, TCP, IPv4 and IPv6; address
// literals resolve to themselves) and checks every address it has: one
// forbidden address refuses the whole host, since a connection may use any
// of them. Returns the checked addresses as text (inet_ntop form, in
// resolver order, without repeats); a caller connects only to these.
// Blocks for as long as the system resolver does.
// Errors: INVALID_ARGUMENT on field "webhook_endpoint.url" with reason
// WEBHOOK_TARGET_NOT_ALLOWED when an address is forbidden; NOT_FOUND when
// the name has no addresses; UNAVAILABLE when the resolver failed
// (temporarily, or otherwise).
absl::StatusOr<std::vector<std::string>> ResolveWebhookHost(
    const WebhookTarget& target, const WebhookTargetPolicy& policy);

}  // namespace custos::notifications

#endif  // CUSTOS_SERVICES_NOTIFICATION_SERVICE_WEBHOOK_TARGET_H_
