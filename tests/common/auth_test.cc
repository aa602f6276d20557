#include "common/auth.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace custos {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr absl::string_view kSecret = "0123456789abcdef0123456789abcdef";

class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time now) : now_(now) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

struct RsaKeyPair {
  std::string public_pem;
  std::string private_pem;
};

std::string DrainBio(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

RsaKeyPair GenerateRsaKeyPair() {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}), &EVP_PKEY_free);
  EXPECT_NE(key, nullptr);
  std::unique_ptr<BIO, decltype(&BIO_free)> pub(BIO_new(BIO_s_mem()),
                                                &BIO_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> priv(BIO_new(BIO_s_mem()),
                                                 &BIO_free);
  EXPECT_EQ(PEM_write_bio_PUBKEY(pub.get(), key.get()), 1);
  EXPECT_EQ(PEM_write_bio_PrivateKey(priv.get(), key.get(), nullptr, nullptr, 0,
                                     nullptr, nullptr),
            1);
  return {DrainBio(pub.get()), DrainBio(priv.get())};
}

// Key generation is slow, and tests only need two distinct pairs.
const RsaKeyPair& TestKeys() {
  static const RsaKeyPair* keys = new RsaKeyPair(GenerateRsaKeyPair());
  return *keys;
}
const RsaKeyPair& OtherTestKeys() {
  static const RsaKeyPair* keys = new RsaKeyPair(GenerateRsaKeyPair());
  return *keys;
}

std::string B64(absl::string_view s) { return absl::WebSafeBase64Escape(s); }

// Signs arbitrary header/payload JSON, for tokens SignJwtHs256 cannot produce.
std::string HandMadeHs256(absl::string_view header_json,
                          absl::string_view payload_json,
                          absl::string_view secret = kSecret) {
  std::string input = absl::StrCat(B64(header_json), ".", B64(payload_json));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
       &mac_len);
  return absl::StrCat(
      input, ".",
      B64(absl::string_view(reinterpret_cast<const char*>(mac), mac_len)));
}

constexpr absl::string_view kHs256Header = R"({"alg":"HS256","typ":"JWT"})";

class JwtTest : public ::testing::Test {
 protected:
  const absl::Time kNow = absl::FromUnixSeconds(1700000000);

  JwtTest() : clock_(kNow) {}

  JwtClaims Claims() const {
    JwtClaims claims;
    claims.subject = "user-1";
    claims.issued_at = kNow;
    claims.expires_at = kNow + absl::Hours(1);
    return claims;
  }

  JwtVerifier Hs256Verifier() {
    JwtVerifierOptions options;
    options.hs256_secret = std::string(kSecret);
    absl::StatusOr<JwtVerifier> verifier =
        JwtVerifier::Create(std::move(options), &clock_);
    EXPECT_TRUE(verifier.ok()) << verifier.status();
    return *std::move(verifier);
  }

  JwtVerifier Rs256Verifier() {
    JwtVerifierOptions options;
    options.rs256_public_key_pem = TestKeys().public_pem;
    absl::StatusOr<JwtVerifier> verifier =
        JwtVerifier::Create(std::move(options), &clock_);
    EXPECT_TRUE(verifier.ok()) << verifier.status();
    return *std::move(verifier);
  }

  FakeClock clock_;
};

void ExpectUnauthenticated(const absl::StatusOr<Principal>& result,
                           absl::string_view reason) {
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated)
      << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr(reason));
}

TEST_F(JwtTest, Hs256RoundTrip) {
  absl::StatusOr<Principal> principal =
      Hs256Verifier().Verify(SignJwtHs256(Claims(), kSecret));
  ASSERT_TRUE(principal.ok()) << principal.status();
  EXPECT_EQ(principal->subject, "user-1");
  EXPECT_THAT(principal->roles, IsEmpty());
}

TEST_F(JwtTest, Rs256RoundTrip) {
  absl::StatusOr<std::string> token =
      SignJwtRs256(Claims(), TestKeys().private_pem);
  ASSERT_TRUE(token.ok()) << token.status();
  absl::StatusOr<Principal> principal = Rs256Verifier().Verify(*token);
  ASSERT_TRUE(principal.ok()) << principal.status();
  EXPECT_EQ(principal->subject, "user-1");
}

TEST_F(JwtTest, Rs256SignedByOtherKeyRejected) {
  absl::StatusOr<std::string> token =
      SignJwtRs256(Claims(), OtherTestKeys().private_pem);
  ASSERT_TRUE(token.ok()) << token.status();
  ExpectUnauthenticated(Rs256Verifier().Verify(*token), "bad signature");
}

TEST_F(JwtTest, BothAlgorithmsEnabled) {
  JwtVerifierOptions options;
  options.hs256_secret = std::string(kSecret);
  options.rs256_public_key_pem = TestKeys().public_pem;
  absl::StatusOr<JwtVerifier> verifier =
      JwtVerifier::Create(std::move(options), &clock_);
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  absl::StatusOr<std::string> rs256 =
      SignJwtRs256(Claims(), TestKeys().private_pem);
  ASSERT_TRUE(rs256.ok());
  EXPECT_TRUE(verifier->Verify(*rs256).ok());
  EXPECT_TRUE(verifier->Verify(SignJwtHs256(Claims(), kSecret)).ok());
}

TEST_F(JwtTest, ExpiredTokenRejected) {
  JwtClaims claims = Claims();
  claims.expires_at = kNow - absl::Minutes(5);
  ExpectUnauthenticated(Hs256Verifier().Verify(SignJwtHs256(claims, kSecret)),
                        "token expired");
}

TEST_F(JwtTest, ExpiryWithinSkewAccepted) {
  JwtClaims claims = Claims();
  claims.expires_at = kNow - absl::Seconds(30);  // Default skew is 60 s.
  EXPECT_TRUE(Hs256Verifier().Verify(SignJwtHs256(claims, kSecret)).ok());
}

TEST_F(JwtTest, ExpiryExactlyAtSkewRejected) {
  JwtClaims claims = Claims();
  claims.expires_at = kNow - absl::Seconds(60);
  ExpectUnauthenticated(Hs256Verifier().Verify(SignJwtHs256(claims, kSecret)),
                        "token expired");
}

TEST_F(JwtTest, NotBeforeInFutureRejected) {
  JwtClaims claims = Claims();
  claims.not_before = kNow + absl::Minutes(5);
  ExpectUnauthenticated(Hs256Verifier().Verify(SignJwtHs256(claims, kSecret)),
                        "not yet valid");
}

TEST_F(JwtTest, NotBeforeWithinSkewAccepted) {
  JwtClaims claims = Claims();
  claims.not_before = kNow + absl::Seconds(30);
  EXPECT_TRUE(Hs256Verifier().Verify(SignJwtHs256(claims, kSecret)).ok());
}

TEST_F(JwtTest, WrongIssuerRejected) {
  JwtClaims claims = Claims();
  claims.issuer = "someone-else";
  ExpectUnauthenticated(Hs256Verifier().Verify(SignJwtHs256(claims, kSecret)),
                        "wrong issuer");
}

TEST_F(JwtTest, WrongAudienceRejected) {
  JwtClaims claims = Claims();
  claims.audience = "other-service";
  ExpectUnauthenticated(Hs256Verifier().Verify(SignJwtHs256(claims, kSecret)),
                        "wrong audience");
}

TEST_F(JwtTest, AudienceArrayContainingAudienceAccepted) {
  std::string token = HandMadeHs256(
      kHs256Header,
      R"({"sub":"u","iss":"custos-dev","aud":["other","custos"],"exp":1700003600})");
  EXPECT_TRUE(Hs256Verifier().Verify(token).ok());
}

TEST_F(JwtTest, AudienceArrayWithoutAudienceRejected) {
  std::string token = HandMadeHs256(
      kHs256Header,
      R"({"sub":"u","iss":"custos-dev","aud":["other"],"exp":1700003600})");
  ExpectUnauthenticated(Hs256Verifier().Verify(token), "wrong audience");
}

TEST_F(JwtTest, ForgedSignatureRejected) {
  std::string token =
      SignJwtHs256(Claims(), "a-different-secret-of-the-same-size!");
  ExpectUnauthenticated(Hs256Verifier().Verify(token), "bad signature");
}

TEST_F(JwtTest, TamperedPayloadRejected) {
  std::string token = SignJwtHs256(Claims(), kSecret);
  JwtClaims escalated = Claims();
  escalated.roles = {std::string(kRolePlatformAdmin)};
  std::string other = SignJwtHs256(escalated, kSecret);
  // Graft the escalated payload onto the original signature.
  const size_t dot1 = token.find('.');
  const size_t dot2 = token.rfind('.');
  const size_t other_dot1 = other.find('.');
  const size_t other_dot2 = other.rfind('.');
  std::string tampered =
      absl::StrCat(token.substr(0, dot1 + 1),
                   other.substr(other_dot1 + 1, other_dot2 - other_dot1 - 1),
                   token.substr(dot2));
  ExpectUnauthenticated(Hs256Verifier().Verify(tampered), "bad signature");
}

TEST_F(JwtTest, AlgNoneRejected) {
  std::string token = absl::StrCat(
      B64(R"({"alg":"none","typ":"JWT"})"), ".",
      B64(R"({"sub":"u","iss":"custos-dev","aud":"custos","exp":1700003600})"),
      ".");
  ExpectUnauthenticated(Hs256Verifier().Verify(token), "unsupported algorithm");
  ExpectUnauthenticated(Rs256Verifier().Verify(token), "unsupported algorithm");
}

TEST_F(JwtTest, OtherAlgorithmRejected) {
  std::string token = HandMadeHs256(
      R"({"alg":"HS512"})",
      R"({"sub":"u","iss":"custos-dev","aud":"custos","exp":1700003600})");
  ExpectUnauthenticated(Hs256Verifier().Verify(token), "unsupported algorithm");
}

// The classic confusion attack: HMAC keyed with the (public) RSA key PEM.
TEST_F(JwtTest, Hs256RejectedWhenOnlyRs256Enabled) {
  std::string token = SignJwtHs256(Claims(), TestKeys().public_pem);
  ExpectUnauthenticated(Rs256Verifier().Verify(token), "algorithm not enabled");
}

TEST_F(JwtTest, Rs256RejectedWhenOnlyHs256Enabled) {
  absl::StatusOr<std::string> token =
      SignJwtRs256(Claims(), TestKeys().private_pem);
  ASSERT_TRUE(token.ok());
  ExpectUnauthenticated(Hs256Verifier().Verify(*token),
                        "algorithm not enabled");
}

TEST_F(JwtTest, MalformedTokensRejected) {
  JwtVerifier verifier = Hs256Verifier();
  const std::string good = SignJwtHs256(Claims(), kSecret);
  for (const std::string& token : {
           std::string(""), std::string("a.b"), std::string("a.b.c.d"),
           std::string("!!!.@@@.###"),
           absl::StrCat(good, "="),       // Padding is not allowed.
           absl::StrCat(good, ".extra"),  // Too many segments.
           absl::StrCat("e30", good.substr(good.find('.'))),  // `{}`: no alg.
           absl::StrCat(" ", good),  // Whitespace is not base64url.
           std::string("eyJhbGciOiJIUzI1NiJ9.e30"),  // Only two segments.
       }) {
    SCOPED_TRACE(token);
    absl::StatusOr<Principal> result = verifier.Verify(token);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated);
    // Tokens are credentials and must never reach logs via status messages.
    if (!token.empty()) {
      EXPECT_THAT(result.status().message(), Not(HasSubstr(token)));
    }
  }
}

TEST_F(JwtTest, NonJsonPayloadRejected) {
  std::string token = HandMadeHs256(kHs256Header, "not json");
  ExpectUnauthenticated(Hs256Verifier().Verify(token), "malformed");
}

TEST_F(JwtTest, OversizedTokenRejected) {
  JwtClaims claims = Claims();
  claims.subject = std::string(20000, 'x');
  ExpectUnauthenticated(Hs256Verifier().Verify(SignJwtHs256(claims, kSecret)),
                        "too large");
}

TEST_F(JwtTest, MissingSubRejected) {
  std::string token = HandMadeHs256(
      kHs256Header, R"({"iss":"custos-dev","aud":"custos","exp":1700003600})");
  ExpectUnauthenticated(Hs256Verifier().Verify(token), "missing sub");
}

TEST_F(JwtTest, EmptySubRejected) {
  JwtClaims claims = Claims();
  claims.subject = "";
  ExpectUnauthenticated(Hs256Verifier().Verify(SignJwtHs256(claims, kSecret)),
                        "missing sub");
}

TEST_F(JwtTest, MissingExpRejected) {
  std::string token = HandMadeHs256(
      kHs256Header, R"({"sub":"u","iss":"custos-dev","aud":"custos"})");
  ExpectUnauthenticated(Hs256Verifier().Verify(token), "missing exp");
}

TEST_F(JwtTest, NonNumericExpRejected) {
  std::string token = HandMadeHs256(
      kHs256Header,
      R"({"sub":"u","iss":"custos-dev","aud":"custos","exp":"1700003600"})");
  ExpectUnauthenticated(Hs256Verifier().Verify(token), "bad exp");
}

TEST_F(JwtTest, RolesParsed) {
  JwtClaims claims = Claims();
  claims.roles = {std::string(kRoleCustomerCare), std::string(kRoleService)};
  absl::StatusOr<Principal> principal =
      Hs256Verifier().Verify(SignJwtHs256(claims, kSecret));
  ASSERT_TRUE(principal.ok()) << principal.status();
  EXPECT_THAT(principal->roles, ElementsAre("customer_care", "service"));
  EXPECT_TRUE(principal->HasRole(kRoleCustomerCare));
  EXPECT_TRUE(principal->HasRole(kRoleService));
  EXPECT_FALSE(principal->HasRole(kRolePlatformAdmin));
}

TEST_F(JwtTest, NonStringRoleRejected) {
  std::string token = HandMadeHs256(
      kHs256Header,
      R"({"sub":"u","iss":"custos-dev","aud":"custos","exp":1700003600,"roles":["service",1]})");
  ExpectUnauthenticated(Hs256Verifier().Verify(token), "bad roles");
}

TEST_F(JwtTest, RolesNotArrayRejected) {
  std::string token = HandMadeHs256(
      kHs256Header,
      R"({"sub":"u","iss":"custos-dev","aud":"custos","exp":1700003600,"roles":"service"})");
  ExpectUnauthenticated(Hs256Verifier().Verify(token), "bad roles");
}

TEST_F(JwtTest, SpecialCharactersInClaimsRoundTrip) {
  JwtClaims claims = Claims();
  claims.roles = {"a\"b\\c\nd\x01\xc3\xa9"};
  absl::StatusOr<Principal> principal =
      Hs256Verifier().Verify(SignJwtHs256(claims, kSecret));
  ASSERT_TRUE(principal.ok()) << principal.status();
  EXPECT_EQ(principal->roles, claims.roles);
}

// DESIGN §3: a `sub` outside the user-id syntax would name someone else once
// it is turned into `users/{sub}`.
TEST_F(JwtTest, SubOutsideUserIdSyntaxRejected) {
  for (const char* subject :
       {"x/../vic", "vic/", "/vic", "..", "Vic", "a b", "a\"b", "-vic", "vic\n",
        "users/vic", "\xc3\xa9"}) {
    JwtClaims claims = Claims();
    claims.subject = subject;
    ExpectUnauthenticated(Hs256Verifier().Verify(SignJwtHs256(claims, kSecret)),
                          "not a valid user id");
  }
}

TEST_F(JwtTest, ShortHs256SecretRefused) {
  JwtVerifierOptions options;
  options.hs256_secret = std::string(31, 'x');
  absl::StatusOr<JwtVerifier> verifier =
      JwtVerifier::Create(options, RealClock::Get());
  EXPECT_EQ(verifier.status().code(), absl::StatusCode::kInvalidArgument);
  options.hs256_secret = "k";
  EXPECT_EQ(JwtVerifier::Create(options, RealClock::Get()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, CacheHitStillRejectsAfterExpiry) {
  JwtVerifier verifier = Hs256Verifier();
  JwtClaims claims = Claims();
  claims.roles = {std::string(kRoleService)};
  const std::string token = SignJwtHs256(claims, kSecret);
  ASSERT_TRUE(verifier.Verify(token).ok());
  absl::StatusOr<Principal> again = verifier.Verify(token);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->subject, "user-1");
  EXPECT_THAT(again->roles, ElementsAre("service"));

  clock_.Advance(absl::Hours(1) + absl::Seconds(60));
  ExpectUnauthenticated(verifier.Verify(token), "token expired");
}

TEST_F(JwtTest, CopiesVerifyIndependently) {
  JwtVerifier verifier = Hs256Verifier();
  JwtVerifier copy = verifier;
  const std::string token = SignJwtHs256(Claims(), kSecret);
  EXPECT_TRUE(verifier.Verify(token).ok());
  EXPECT_TRUE(copy.Verify(token).ok());
}

TEST(JwtVerifierCreateTest, NoKeyIsInvalidArgument) {
  FakeClock clock(absl::UnixEpoch());
  EXPECT_EQ(JwtVerifier::Create(JwtVerifierOptions(), &clock).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(JwtVerifierCreateTest, BadPemIsInvalidArgument) {
  FakeClock clock(absl::UnixEpoch());
  JwtVerifierOptions options;
  options.rs256_public_key_pem = "-----BEGIN PUBLIC KEY-----\nnope\n";
  EXPECT_EQ(JwtVerifier::Create(options, &clock).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A private key where the public one belongs is a configuration mistake.
  options.rs256_public_key_pem = TestKeys().private_pem;
  EXPECT_EQ(JwtVerifier::Create(options, &clock).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(JwtVerifierCreateTest, EmptyIssuerIsInvalidArgument) {
  FakeClock clock(absl::UnixEpoch());
  JwtVerifierOptions options;
  options.hs256_secret = std::string(kSecret);
  options.issuer = "";
  EXPECT_EQ(JwtVerifier::Create(options, &clock).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SignJwtRs256Test, BadKeyIsInvalidArgument) {
  JwtClaims claims;
  claims.subject = "u";
  EXPECT_EQ(SignJwtRs256(claims, "not a key").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SignJwtRs256(claims, TestKeys().public_pem).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace custos
