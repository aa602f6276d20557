// Unit tests of the webhook target rules (R12, SSRF): address classes,
// URL parsing and resolution, without a server.
#include "services/notification_service/webhook_target.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace custos::notifications {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr WebhookTargetPolicy kDefault;
constexpr WebhookTargetPolicy kLoopback{true, false};
constexpr WebhookTargetPolicy kPrivate{false, true};
constexpr WebhookTargetPolicy kBoth{true, true};

// The class of an IPv4 or IPv6 address written as text.
WebhookAddressClass ClassOf(const std::string& text) {
  in_addr v4;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return ClassifyAddress(v4);
  in6_addr v6;
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return ClassifyAddress(v6);
  ADD_FAILURE() << text << " is not an address";
  return WebhookAddressClass::kPublic;
}

TEST(WebhookTargetTest, R12_AddressesAreClassified) {
  const struct {
    const char* address;
    WebhookAddressClass expected;
  } cases[] = {
      {"8.8.8.8", WebhookAddressClass::kPublic},
      {"93.184.216.34", WebhookAddressClass::kPublic},
      {"172.15.255.255", WebhookAddressClass::kPublic},
      {"172.32.0.1", WebhookAddressClass::kPublic},
      {"100.63.255.255", WebhookAddressClass::kPublic},
      {"100.128.0.1", WebhookAddressClass::kPublic},
      {"198.20.0.1", WebhookAddressClass::kPublic},
      {"223.255.255.255", WebhookAddressClass::kPublic},
      {"127.0.0.1", WebhookAddressClass::kLoopback},
      {"127.255.255.254", WebhookAddressClass::kLoopback},
      {"10.0.0.1", WebhookAddressClass::kPrivate},
      {"172.16.0.1", WebhookAddressClass::kPrivate},
      {"172.31.255.255", WebhookAddressClass::kPrivate},
      {"192.168.1.1", WebhookAddressClass::kPrivate},
      {"100.64.0.1", WebhookAddressClass::kPrivate},
      {"100.127.255.255", WebhookAddressClass::kPrivate},
      {"0.0.0.0", WebhookAddressClass::kReserved},
      {"0.1.2.3", WebhookAddressClass::kReserved},
      {"169.254.169.254", WebhookAddressClass::kReserved},
      {"169.254.0.1", WebhookAddressClass::kReserved},
      {"192.0.0.8", WebhookAddressClass::kReserved},
      {"192.0.2.1", WebhookAddressClass::kReserved},
      {"192.88.99.1", WebhookAddressClass::kReserved},
      {"198.18.0.1", WebhookAddressClass::kReserved},
      {"198.19.255.255", WebhookAddressClass::kReserved},
      {"198.51.100.1", WebhookAddressClass::kReserved},
      {"203.0.113.1", WebhookAddressClass::kReserved},
      {"224.0.0.1", WebhookAddressClass::kReserved},
      {"239.255.255.250", WebhookAddressClass::kReserved},
      {"240.0.0.1", WebhookAddressClass::kReserved},
      {"255.255.255.255", WebhookAddressClass::kReserved},
      // IPv6.
      {"2606:4700:4700::1111", WebhookAddressClass::kPublic},
      {"2001:4860:4860::8888", WebhookAddressClass::kPublic},
      {"2a00:1450:4001::1", WebhookAddressClass::kPublic},
      {"::", WebhookAddressClass::kReserved},
      {"::1", WebhookAddressClass::kLoopback},
      {"fc00::1", WebhookAddressClass::kPrivate},
      {"fd12:3456::1", WebhookAddressClass::kPrivate},
      {"fec0::1", WebhookAddressClass::kPrivate},
      {"fe80::1", WebhookAddressClass::kReserved},
      {"febf::1", WebhookAddressClass::kReserved},
      {"ff02::1", WebhookAddressClass::kReserved},
      {"100::1", WebhookAddressClass::kReserved},
      {"2001:db8::1", WebhookAddressClass::kReserved},
      {"3fff::1", WebhookAddressClass::kReserved},
      {"2001::1", WebhookAddressClass::kReserved},  // Teredo
      {"2001:0:4136:e378:8000:63bf:3fff:fdd2", WebhookAddressClass::kReserved},
      // IPv6 carrying IPv4: classified by the IPv4 address.
      {"::ffff:127.0.0.1", WebhookAddressClass::kLoopback},
      {"::ffff:7f00:1", WebhookAddressClass::kLoopback},
      {"::ffff:169.254.169.254", WebhookAddressClass::kReserved},
      {"::ffff:10.0.0.1", WebhookAddressClass::kPrivate},
      {"::ffff:8.8.8.8", WebhookAddressClass::kPublic},
      {"::ffff:0:127.0.0.1", WebhookAddressClass::kLoopback},
      {"::127.0.0.1", WebhookAddressClass::kLoopback},
      {"::169.254.169.254", WebhookAddressClass::kReserved},
      {"::8.8.8.8", WebhookAddressClass::kPublic},
      {"64:ff9b::127.0.0.1", WebhookAddressClass::kLoopback},
      {"64:ff9b::169.254.169.254", WebhookAddressClass::kReserved},
      {"64:ff9b::10.1.2.3", WebhookAddressClass::kPrivate},
      {"64:ff9b::8.8.8.8", WebhookAddressClass::kPublic},
      {"64:ff9b:1::8.8.8.8", WebhookAddressClass::kReserved},
      {"2002:a9fe:a9fe::1", WebhookAddressClass::kReserved},
      {"2002:7f00:1::", WebhookAddressClass::kLoopback},
      {"2002:a00:1::", WebhookAddressClass::kPrivate},
      {"2002:808:808::1", WebhookAddressClass::kPublic},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(ClassOf(c.address), c.expected) << c.address;
  }
}

TEST(WebhookTargetTest, R12_OnlyTheFlagsAllowLoopbackAndPrivateNetworks) {
  in_addr loopback, private_network, metadata, public_address;
  ASSERT_EQ(inet_pton(AF_INET, "127.0.0.1", &loopback), 1);
  ASSERT_EQ(inet_pton(AF_INET, "192.168.0.10", &private_network), 1);
  ASSERT_EQ(inet_pton(AF_INET, "169.254.169.254", &metadata), 1);
  ASSERT_EQ(inet_pton(AF_INET, "1.1.1.1", &public_address), 1);

  EXPECT_TRUE(IsForbiddenAddress(loopback, kDefault));
  EXPECT_FALSE(IsForbiddenAddress(loopback, kLoopback));
  EXPECT_TRUE(IsForbiddenAddress(loopback, kPrivate));
  EXPECT_TRUE(IsForbiddenAddress(private_network, kDefault));
  EXPECT_TRUE(IsForbiddenAddress(private_network, kLoopback));
  EXPECT_FALSE(IsForbiddenAddress(private_network, kPrivate));
  // Link-local (the metadata service) is never allowed.
  for (const WebhookTargetPolicy& policy : {kDefault, kLoopback, kBoth}) {
    EXPECT_TRUE(IsForbiddenAddress(metadata, policy));
    EXPECT_FALSE(IsForbiddenAddress(public_address, policy));
  }

  in6_addr v6_loopback, mapped_metadata;
  ASSERT_EQ(inet_pton(AF_INET6, "::1", &v6_loopback), 1);
  ASSERT_EQ(inet_pton(AF_INET6, "::ffff:169.254.169.254", &mapped_metadata), 1);
  EXPECT_TRUE(IsForbiddenAddress(v6_loopback, kDefault));
  EXPECT_FALSE(IsForbiddenAddress(v6_loopback, kLoopback));
  EXPECT_TRUE(IsForbiddenAddress(mapped_metadata, kBoth));
}

TEST(WebhookTargetTest, R12_SockaddrsAreCheckedByFamily) {
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  ASSERT_EQ(inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr), 1);
  const auto* v4_address = reinterpret_cast<const sockaddr*>(&v4);
  EXPECT_TRUE(IsForbiddenAddress(v4_address, kDefault));
  EXPECT_FALSE(IsForbiddenAddress(v4_address, kLoopback));
  EXPECT_EQ(SockaddrText(v4_address), "127.0.0.1");

  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  ASSERT_EQ(inet_pton(AF_INET6, "::ffff:10.0.0.1", &v6.sin6_addr), 1);
  const auto* v6_address = reinterpret_cast<const sockaddr*>(&v6);
  EXPECT_TRUE(IsForbiddenAddress(v6_address, kLoopback));
  EXPECT_FALSE(IsForbiddenAddress(v6_address, kPrivate));
  EXPECT_EQ(SockaddrText(v6_address), "::ffff:10.0.0.1");

  sockaddr_un local{};
  local.sun_family = AF_UNIX;
  const auto* local_address = reinterpret_cast<const sockaddr*>(&local);
  EXPECT_TRUE(IsForbiddenAddress(local_address, kBoth));
  EXPECT_EQ(SockaddrText(local_address), "");
  EXPECT_TRUE(IsForbiddenAddress(static_cast<const sockaddr*>(nullptr), kBoth));
}

TEST(WebhookTargetTest, R12_MalformedOrAmbiguousUrlsAreRefused) {
  const std::vector<std::string> refused = {
      "",
      absl::StrCat("https://example.com/", std::string(2048, 'a')),
      "https://exa mple.com/",
      "https://example.com/\x01",
      "ftp://example.com/",
      "gopher://example.com/",
      "file:///etc/passwd",
      "example.com/hook",
      "https://",
      "https:///example.com/",
      "https:/example.com/",
      "http:/127.0.0.1/",
      // User information, which hides the real host.
      "http://127.0.0.1:1@127.0.0.2:8080/x",
      "http://localhost:80@169.254.169.254/",
      "https://a@example.com/",
      "https://a:b@example.com/",
      "https://:@example.com/",
      "https://@example.com/",
      "https://example.com%2f@evil.example/",
      "https://example.com\\@evil.example/",
      // Ports.
      "https://example.com:0/",
      "https://example.com:65536/",
      "https://example.com:-1/",
      "https://example.com:99999999999999999999/",
      // Fragments, zone ids, non-ASCII hosts.
      "https://example.com/#top",
      "https://example.com/#",
      "https://[fe80::1%25eth0]/",
      "https://\xc3\xbc.example/",
      // http:// only to loopback, and only when loopback is allowed.
      "http://example.com/",
      "http://10.0.0.1/",
      "http://169.254.169.254/latest/meta-data/",
  };
  for (const WebhookTargetPolicy& policy : {kDefault, kLoopback, kBoth}) {
    for (const std::string& url : refused) {
      absl::StatusOr<WebhookTarget> target = ParseWebhookUrl(url, policy);
      EXPECT_EQ(target.status().code(), absl::StatusCode::kInvalidArgument)
          << url;
      EXPECT_EQ(FieldOf(target.status()), "webhook_endpoint.url") << url;
    }
  }
  for (const char* url :
       {"http://127.0.0.1:8080/x", "http://localhost/", "http://[::1]:81/",
        "http://2130706433/", "http://127.1/", "http://[::ffff:127.0.0.1]/"}) {
    EXPECT_EQ(ParseWebhookUrl(url, kDefault).status().code(),
              absl::StatusCode::kInvalidArgument)
        << url;
    EXPECT_EQ(ParseWebhookUrl(url, kPrivate).status().code(),
              absl::StatusCode::kInvalidArgument)
        << url;
    EXPECT_TRUE(ParseWebhookUrl(url, kLoopback).ok()) << url;
  }
}

TEST(WebhookTargetTest, R12_UrlsAreNormalizedByLibcurl) {
  const struct {
    const char* url;
    WebhookTargetPolicy policy;
    const char* scheme;
    const char* host;
    int port;
    const char* normalized;
  } cases[] = {
      {"https://Hooks.Example.COM/In?x=1", kDefault, "https",
       "hooks.example.com", 443, "https://hooks.example.com/In?x=1"},
      {"HTTPS://example.com:8443/x", kDefault, "https", "example.com", 8443,
       "https://example.com:8443/x"},
      {"https://example.com:/x", kDefault, "https", "example.com", 443,
       "https://example.com/x"},
      // Numeric IPv4 forms become the address they mean, so the address
      // checks see 127.0.0.1.
      {"https://2130706433:81/", kDefault, "https", "127.0.0.1", 81,
       "https://127.0.0.1:81/"},
      {"https://0x7f000001/", kDefault, "https", "127.0.0.1", 443,
       "https://127.0.0.1/"},
      {"https://0177.0.0.1/", kDefault, "https", "127.0.0.1", 443,
       "https://127.0.0.1/"},
      {"https://127.1/", kDefault, "https", "127.0.0.1", 443,
       "https://127.0.0.1/"},
      {"https://[::1]:8443/", kDefault, "https", "::1", 8443,
       "https://[::1]:8443/"},
      {"http://2130706433:81/x", kLoopback, "http", "127.0.0.1", 81,
       "http://127.0.0.1:81/x"},
      {"http://localhost/hook", kLoopback, "http", "localhost", 80,
       "http://localhost/hook"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<WebhookTarget> target = ParseWebhookUrl(c.url, c.policy);
    ASSERT_TRUE(target.ok()) << c.url << ": " << target.status();
    EXPECT_EQ(target->scheme, c.scheme) << c.url;
    EXPECT_EQ(target->host, c.host) << c.url;
    EXPECT_EQ(target->port, c.port) << c.url;
    EXPECT_EQ(target->url, c.normalized) << c.url;
  }
}

// Resolves `url` (which must parse) under `policy`.
absl::StatusOr<std::vector<std::string>> Resolve(
    const std::string& url, const WebhookTargetPolicy& policy) {
  absl::StatusOr<WebhookTarget> target = ParseWebhookUrl(url, policy);
  EXPECT_TRUE(target.ok()) << url << ": " << target.status();
  if (!target.ok()) return target.status();
  return ResolveWebhookHost(*target, policy);
}

TEST(WebhookTargetTest, R12_EveryResolvedAddressIsChecked) {
  for (const char* url :
       {"https://127.1/", "https://0x7f000001:8443/", "https://[::1]/",
        "https://[::ffff:127.0.0.1]/", "https://localhost/",
        "https://10.0.0.1/", "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:169.254.169.254]/", "https://0.0.0.0/",
        "https://[::]/"}) {
    absl::StatusOr<std::vector<std::string>> addresses = Resolve(url, kDefault);
    EXPECT_EQ(addresses.status().code(), absl::StatusCode::kInvalidArgument)
        << url;
    EXPECT_EQ(ReasonOf(addresses.status()), "WEBHOOK_TARGET_NOT_ALLOWED")
        << url;
    EXPECT_EQ(FieldOf(addresses.status()), "webhook_endpoint.url") << url;
    // The refusal never says which address it found.
    EXPECT_THAT(std::string(addresses.status().message()),
                Not(::testing::HasSubstr("127.0.0.1")))
        << url;
  }
  // The metadata service stays refused whatever the flags.
  for (const char* url :
       {"https://169.254.169.254/", "https://[::ffff:169.254.169.254]/",
        "https://[fe80::1]/"}) {
    EXPECT_EQ(Resolve(url, kBoth).status().code(),
              absl::StatusCode::kInvalidArgument)
        << url;
  }

  auto loopback = Resolve("https://127.1/", kLoopback);
  ASSERT_TRUE(loopback.ok()) << loopback.status();
  EXPECT_THAT(*loopback, ElementsAre("127.0.0.1"));
  auto localhost = Resolve("http://localhost/", kLoopback);
  ASSERT_TRUE(localhost.ok()) << localhost.status();
  EXPECT_THAT(*localhost, Not(IsEmpty()));
  for (const std::string& address : *localhost) {
    EXPECT_TRUE(address == "127.0.0.1" || address == "::1") << address;
  }
  auto private_network = Resolve("https://10.0.0.1/", kPrivate);
  ASSERT_TRUE(private_network.ok()) << private_network.status();
  EXPECT_THAT(*private_network, ElementsAre("10.0.0.1"));
  EXPECT_FALSE(Resolve("https://10.0.0.1/", kLoopback).ok());
  auto public_address = Resolve("https://8.8.8.8/", kDefault);
  ASSERT_TRUE(public_address.ok()) << public_address.status();
  EXPECT_THAT(*public_address, ElementsAre("8.8.8.8"));
  EXPECT_THAT(*public_address, Each(Not(IsEmpty())));
}

TEST(WebhookTargetTest, R12_ANameWithoutAddressIsNotAnAddressRefusal) {
  // .invalid never resolves (RFC 6761); without a reachable resolver the
  // answer is UNAVAILABLE instead, and either way it is not "not allowed".
  const absl::Status status =
      Resolve("https://webhooks.invalid/", kDefault).status();
  EXPECT_TRUE(absl::IsNotFound(status) || absl::IsUnavailable(status))
      << status;
}

}  // namespace
}  // namespace custos::notifications
