#include "services/notification_service/webhook_target.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace custos::notifications {
namespace {

constexpr absl::string_view kField = "webhook_endpoint.url";
constexpr size_t kMaxUrlBytes = 2048;

struct V4Range {
  uint32_t base;  // host byte order
  int bits;
  WebhookAddressClass address_class;
};

// IANA's special-purpose IPv4 registry, less the ranges that are globally
// reachable by design (anycast DNS and the like); RFC 6890 and successors.
constexpr V4Range kV4Ranges[] = {
    {0x00000000, 8, WebhookAddressClass::kReserved},   // 0/8, "this host"
    {0x0A000000, 8, WebhookAddressClass::kPrivate},    // 10/8
    {0x64400000, 10, WebhookAddressClass::kPrivate},   // 100.64/10, CGNAT
    {0x7F000000, 8, WebhookAddressClass::kLoopback},   // 127/8
    {0xA9FE0000, 16, WebhookAddressClass::kReserved},  // 169.254/16, metadata
    {0xAC100000, 12, WebhookAddressClass::kPrivate},   // 172.16/12
    {0xC0000000, 24, WebhookAddressClass::kReserved},  // 192.0.0/24, IETF
    {0xC0000200, 24, WebhookAddressClass::kReserved},  // 192.0.2/24, docs
    {0xC0586300, 24, WebhookAddressClass::kReserved},  // 192.88.99/24, 6to4
    {0xC0A80000, 16, WebhookAddressClass::kPrivate},   // 192.168/16
    {0xC6120000, 15, WebhookAddressClass::kReserved},  // 198.18/15, benchmarks
    {0xC6336400, 24, WebhookAddressClass::kReserved},  // 198.51.100/24, docs
    {0xCB007100, 24, WebhookAddressClass::kReserved},  // 203.0.113/24, docs
    {0xE0000000, 4, WebhookAddressClass::kReserved},   // 224/4, multicast
    {0xF0000000, 4, WebhookAddressClass::kReserved},   // 240/4, broadcast
};

WebhookAddressClass ClassifyV4(uint32_t address) {
  for (const V4Range& range : kV4Ranges) {
    const uint32_t mask = ~uint32_t{0} << (32 - range.bits);
    if ((address & mask) == range.base) return range.address_class;
  }
  return WebhookAddressClass::kPublic;
}

uint32_t V4At(const uint8_t* bytes) {
  return uint32_t{bytes[0]} << 24 | uint32_t{bytes[1]} << 16 |
         uint32_t{bytes[2]} << 8 | uint32_t{bytes[3]};
}

bool AllZero(const uint8_t* bytes, int count) {
  return std::all_of(bytes, bytes + count, [](uint8_t b) { return b == 0; });
}

bool Allowed(WebhookAddressClass address_class,
             const WebhookTargetPolicy& policy) {
  switch (address_class) {
    case WebhookAddressClass::kPublic:
      return true;
    case WebhookAddressClass::kLoopback:
      return policy.allow_loopback;
    case WebhookAddressClass::kPrivate:
      return policy.allow_private;
    case WebhookAddressClass::kReserved:
      return false;
  }
  return false;
}

absl::string_view Describe(WebhookAddressClass address_class) {
  switch (address_class) {
    case WebhookAddressClass::kPublic:
      return "a public";
    case WebhookAddressClass::kLoopback:
      return "a loopback";
    case WebhookAddressClass::kPrivate:
      return "a private-network";
    case WebhookAddressClass::kReserved:
      return "a link-local, multicast or otherwise reserved";
  }
  return "a reserved";
}

// An address literal's class; nullopt for a name.
std::optional<WebhookAddressClass> LiteralClass(const std::string& host) {
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return ClassifyAddress(v4);
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return ClassifyAddress(v6);
  return std::nullopt;
}

// AF_INET or AF_INET6; kReserved for any other family.
WebhookAddressClass ClassOf(const sockaddr* address) {
  if (address == nullptr) return WebhookAddressClass::kReserved;
  switch (address->sa_family) {
    case AF_INET:
      return ClassifyAddress(
          reinterpret_cast<const sockaddr_in*>(address)->sin_addr);
    case AF_INET6:
      return ClassifyAddress(
          reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr);
    default:
      return WebhookAddressClass::kReserved;
  }
}

struct UrlCleanup {
  void operator()(CURLU* url) const { curl_url_cleanup(url); }
};

// The part, or nullopt when the URL has none.
std::optional<std::string> Part(CURLU* url, CURLUPart part,
                                unsigned int flags = 0) {
  char* value = nullptr;
  if (curl_url_get(url, part, &value, flags) != CURLUE_OK) return std::nullopt;
  std::string result(value);
  curl_free(value);
  return result;
}

// The text between "scheme://" and the path, query or fragment.
absl::string_view RawAuthority(absl::string_view url) {
  const size_t start = url.find("://");
  if (start == absl::string_view::npos) return "";
  absl::string_view rest = url.substr(start + 3);
  return rest.substr(0, rest.find_first_of("/?#"));
}

}  // namespace

WebhookAddressClass ClassifyAddress(const in_addr& address) {
  return ClassifyV4(ntohl(address.s_addr));
}

WebhookAddressClass ClassifyAddress(const in6_addr& address) {
  const uint8_t* b = address.s6_addr;
  if (AllZero(b, 16)) return WebhookAddressClass::kReserved;  // ::
  if (AllZero(b, 15) && b[15] == 1) return WebhookAddressClass::kLoopback;
  // ::ffff:a.b.c.d (mapped): the kernel connects to the IPv4 address.
  if (AllZero(b, 10) && b[10] == 0xff && b[11] == 0xff) {
    return ClassifyV4(V4At(b + 12));
  }
  // ::ffff:0:a.b.c.d (translated, RFC 6145) and ::a.b.c.d (compatible).
  if ((AllZero(b, 8) && b[8] == 0xff && b[9] == 0xff && AllZero(b + 10, 2)) ||
      AllZero(b, 12)) {
    return ClassifyV4(V4At(b + 12));
  }
  // 64:ff9b::/96 (NAT64, RFC 6052): a translator connects to the IPv4
  // address; 64:ff9b:1::/48 (local-use NAT64) maps anything, refused.
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) {
    if (AllZero(b + 4, 8)) return ClassifyV4(V4At(b + 12));
    return WebhookAddressClass::kReserved;
  }
  if (b[0] == 0x20 && b[1] == 0x02) return ClassifyV4(V4At(b + 2));  // 6to4
  // 2001::/23: IETF protocol assignments, Teredo (2001::/32) among them.
  if (b[0] == 0x20 && b[1] == 0x01 && (b[2] & 0xfe) == 0) {
    return WebhookAddressClass::kReserved;
  }
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) {
    return WebhookAddressClass::kReserved;  // 2001:db8::/32, documentation
  }
  if (b[0] == 0x3f && b[1] == 0xff && (b[2] & 0xf0) == 0) {
    return WebhookAddressClass::kReserved;  // 3fff::/20, documentation
  }
  if ((b[0] & 0xfe) == 0xfc) return WebhookAddressClass::kPrivate;  // ULA
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) {
    return WebhookAddressClass::kPrivate;  // fec0::/10, site-local
  }
  // Link-local fe80::/10, multicast ff00::/8, discard 100::/64 and the
  // unassigned rest are outside global unicast.
  if ((b[0] & 0xe0) == 0x20) return WebhookAddressClass::kPublic;  // 2000::/3
  return WebhookAddressClass::kReserved;
}

bool IsForbiddenAddress(const in_addr& address,
                        const WebhookTargetPolicy& policy) {
  return !Allowed(ClassifyAddress(address), policy);
}

bool IsForbiddenAddress(const in6_addr& address,
                        const WebhookTargetPolicy& policy) {
  return !Allowed(ClassifyAddress(address), policy);
}

bool IsForbiddenAddress(const sockaddr* address,
                        const WebhookTargetPolicy& policy) {
  return !Allowed(ClassOf(address), policy);
}

std::string SockaddrText(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address == nullptr) return "";
  const void* bytes = nullptr;
  switch (address->sa_family) {
    case AF_INET:
      bytes = &reinterpret_cast<const sockaddr_in*>(address)->sin_addr;
      break;
    case AF_INET6:
      bytes = &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr;
      break;
    default:
      return "";
  }
  if (inet_ntop(address->sa_family, bytes, text, sizeof(text)) == nullptr) {
    return "";
  }
  return text;
}

absl::StatusOr<WebhookTarget> ParseWebhookUrl(
    absl::string_view url, const WebhookTargetPolicy& policy) {
  if (url.empty()) return InvalidField(kField, "is required");
  if (url.size() > kMaxUrlBytes) {
    return InvalidField(
        kField, absl::StrCat("must be at most ", kMaxUrlBytes, " bytes"));
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return InvalidField(kField,
                          "must not contain spaces or control characters");
    }
  }
  std::unique_ptr<CURLU, UrlCleanup> parsed(curl_url());
  if (!parsed) return absl::ResourceExhaustedError("curl_url failed");
  // No CURLU_NON_SUPPORT_SCHEME, CURLU_DEFAULT_SCHEME or CURLU_GUESS_SCHEME:
  // the URL must name a scheme libcurl itself speaks.
  const std::string text(url);
  if (curl_url_set(parsed.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) {
    return InvalidField(kField, "is not a valid URL");
  }
  WebhookTarget target;
  target.scheme =
      absl::AsciiStrToLower(Part(parsed.get(), CURLUPART_SCHEME).value_or(""));
  if (target.scheme != "https" && target.scheme != "http") {
    return InvalidField(kField, "must be an https:// URL");
  }
  // libcurl forgives "https:/host" and "https:///host"; a URL that does not
  // read as what it is contacted as is refused.
  const absl::string_view after_scheme = url.substr(target.scheme.size());
  if (!absl::StartsWith(after_scheme, "://") || after_scheme.size() == 3 ||
      after_scheme[3] == '/' || after_scheme[3] == '\\') {
    return InvalidField(kField, "must name a host");
  }
  // "user:password@" makes the host hard to read (http://127.0.0.1:1@x/ is
  // host x); receivers authenticate us by the signature, not by userinfo.
  if (Part(parsed.get(), CURLUPART_USER) ||
      Part(parsed.get(), CURLUPART_PASSWORD) ||
      Part(parsed.get(), CURLUPART_OPTIONS) ||
      RawAuthority(url).find('@') != absl::string_view::npos) {
    return InvalidField(kField, "must not contain user information (\"@\")");
  }
  if (url.find('#') != absl::string_view::npos) {
    return InvalidField(kField, "must not have a fragment");
  }
  if (Part(parsed.get(), CURLUPART_ZONEID)) {
    return InvalidField(kField, "must not have an IPv6 zone id");
  }
  std::string host =
      absl::AsciiStrToLower(Part(parsed.get(), CURLUPART_HOST).value_or(""));
  const std::string url_host = host;  // IPv6 literals keep their brackets
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return InvalidField(kField, "must name a host");
  // A non-ASCII name would be converted (IDNA) by libcurl after our checks.
  for (char c : host) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      return InvalidField(kField,
                          "must name an ASCII host (IDNA names in their "
                          "xn-- form)");
    }
  }
  int port = 0;
  if (!absl::SimpleAtoi(
          Part(parsed.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT).value_or(""),
          &port) ||
      port < 1 || port > 65535) {
    return InvalidField(kField, "must have a port from 1 to 65535");
  }
  if (target.scheme == "http") {
    const std::optional<WebhookAddressClass> literal = LiteralClass(host);
    const bool loopback =
        host == "localhost" || literal == WebhookAddressClass::kLoopback;
    if (!policy.allow_loopback || !loopback) {
      return InvalidField(kField, policy.allow_loopback
                                      ? "must be https:// (http:// only to "
                                        "loopback)"
                                      : "must be https://");
    }
  }
  if (curl_url_set(parsed.get(), CURLUPART_HOST, url_host.c_str(), 0) !=
      CURLUE_OK) {
    return InvalidField(kField, "is not a valid URL");
  }
  std::optional<std::string> normalized = Part(parsed.get(), CURLUPART_URL);
  if (!normalized || normalized->size() > kMaxUrlBytes) {
    return InvalidField(kField, "is not a valid URL");
  }
  target.host = std::move(host);
  target.port = port;
  target.url = *std::move(normalized);
  return target;
}

absl::StatusOr<std::vector<std::string>> ResolveWebhookHost(
    const WebhookTarget& target, const WebhookTargetPolicy& policy) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  addrinfo* found = nullptr;
  const std::string port = absl::StrCat(target.port);
  const int code =
      getaddrinfo(target.host.c_str(), port.c_str(), &hints, &found);
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(found,
                                                           &freeaddrinfo);
  if (code == EAI_NONAME
#ifdef EAI_NODATA
      || code == EAI_NODATA
#endif
  ) {
    return absl::NotFoundError(
        absl::StrCat(kField, ": the host has no address"));
  }
  if (code != 0) {
    return absl::UnavailableError(absl::StrCat(
        kField, ": cannot resolve the host: ", gai_strerror(code)));
  }
  const bool literal = LiteralClass(target.host).has_value();
  std::vector<std::string> addresses;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const WebhookAddressClass address_class = ClassOf(a->ai_addr);
    if (!Allowed(address_class, policy)) {
      // The message names the class, never the address: the caller may not
      // learn what an internal name resolves to.
      return WithReason(
          InvalidField(
              kField, absl::StrCat("must not ", literal ? "be " : "resolve to ",
                                   Describe(address_class), " address")),
          "WEBHOOK_TARGET_NOT_ALLOWED");
    }
    std::string text = SockaddrText(a->ai_addr);
    if (!text.empty() && std::find(addresses.begin(), addresses.end(), text) ==
                             addresses.end()) {
      addresses.push_back(std::move(text));
    }
  }
  if (addresses.empty()) {
    return absl::NotFoundError(
        absl::StrCat(kField, ": the host has no address"));
  }
  return addresses;
}

}  // namespace custos::notifications
