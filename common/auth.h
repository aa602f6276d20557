#ifndef CUSTOS_COMMON_AUTH_H_
#define CUSTOS_COMMON_AUTH_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/jwks.h"

// OpenSSL's EVP_PKEY, declared here so the header does not pull in OpenSSL.
struct evp_pkey_st;

namespace custos {

// Staff roles carried in a token's `roles` claim (DESIGN §3).
inline constexpr absl::string_view kRoleCustomerCare = "customer_care";
inline constexpr absl::string_view kRolePlatformAdmin = "platform_admin";
inline constexpr absl::string_view kRoleService = "service";

// Who is calling: the token's `sub` and its staff `roles`. Partner or customer
// membership is never taken from the token; services look it up.
struct Principal {
  std::string subject;
  std::vector<std::string> roles;

  bool HasRole(absl::string_view role) const;
};

// HS256 secrets shorter than this are refused (RFC 7518 §3.2: at least the
// hash size).
inline constexpr size_t kMinHs256SecretBytes = 32;

struct JwtVerifierOptions {
  // Raw bytes of the HS256 secret; empty disables HS256.
  std::string hs256_secret;
  // PEM of an RS256 public key (no `kid`); empty: none.
  std::string rs256_public_key_pem;
  // The identity provider's keys (RS256, ES256), chosen by the token's `kid`;
  // null: none. A `kid` it does not hold asks it for an early refresh.
  std::shared_ptr<KeySource> key_source;
  // How long a call whose `kid` is unknown waits for the key set reload it
  // triggered.
  absl::Duration unknown_kid_wait = absl::Seconds(2);
  // Required `iss` and `aud` (aud may be a string or an array containing it).
  std::string issuer = "custos-dev";
  std::string audience = "custos";
  // Dotted path of the claim holding staff roles (a JSON array of strings):
  // "roles", or Keycloak's "realm_access.roles".
  std::string roles_claim = "roles";
  // Tolerance applied to `exp` and `nbf`. Default: 60 s.
  absl::Duration max_clock_skew = absl::Seconds(60);
};

// Verifies compact-serialized JWTs (JWS) signed with HS256, RS256 or ES256.
// Thread-safe after construction.
class JwtVerifier {
 public:
  // Fails with INVALID_ARGUMENT when no key is given, the PEM is bad or the
  // HS256 secret is too short.
  static absl::StatusOr<JwtVerifier> Create(JwtVerifierOptions options,
                                            const Clock* clock);

  // Returns the principal, or UNAUTHENTICATED saying why (malformed, bad
  // signature, algorithm not enabled, expired, not yet valid, wrong issuer or
  // audience, missing `sub` or `exp`).
  //
  // Verify runs on every RPC, so successful verifications are cached by
  // token (bounded); `exp`/`nbf` are still checked against the clock on each
  // hit.
  absl::StatusOr<Principal> Verify(absl::string_view token) const;

  // As Verify, but never waits: where Verify would wait for the key set to
  // be fetched again (a `kid` not known yet, up to
  // JwtVerifierOptions::unknown_kid_wait), it returns at once a status for
  // which NeedsKeyRefresh is true. For gRPC's reaction threads, which must
  // not block; the caller then verifies on a thread that may wait.
  absl::StatusOr<Principal> VerifyWithoutWaiting(absl::string_view token) const;

 private:
  // What a successful verification yields, kept in the cache so a hit can
  // re-check the validity window against the clock.
  struct Verified {
    Principal principal;
    absl::Time not_before;  // InfinitePast when the token has no `nbf`.
    absl::Time expires_at;
    // The key source's refresh count when verified: a changed key set
    // (a key withdrawn) verifies the token again.
    int64_t key_generation = 0;
  };
  // Defined in auth.cc: a mutex and the map it guards. Held by pointer so the
  // verifier stays copyable and movable (StatusOr returns it by value); copies
  // share the cache, which is sound because they share the configuration.
  struct Cache;

  JwtVerifier(JwtVerifierOptions options, const Clock* clock,
              std::shared_ptr<evp_pkey_st> rs256_key);

  absl::StatusOr<Principal> Verify(absl::string_view token,
                                   bool may_wait) const;
  absl::StatusOr<Verified> VerifyUncached(absl::string_view token,
                                          bool may_wait) const;
  absl::Status CheckValidityWindow(const Verified& verified) const;
  absl::Status CheckSignature(const std::string& alg, const std::string& kid,
                              absl::string_view signing_input,
                              absl::string_view signature, bool may_wait) const;
  int64_t KeyGeneration() const;

  JwtVerifierOptions options_;
  const Clock* clock_;
  std::shared_ptr<evp_pkey_st> rs256_key_;  // Null when RS256 is disabled.
  std::shared_ptr<Cache> cache_;
};

// Whether `status` (from JwtVerifier::VerifyWithoutWaiting) means the token
// can only be verified after waiting for the key set.
bool NeedsKeyRefresh(const absl::Status& status);

// Claims of a token to mint (tools/mint-token, tests).
struct JwtClaims {
  std::string subject;
  std::vector<std::string> roles;
  std::string issuer = "custos-dev";
  std::string audience = "custos";
  absl::Time issued_at;
  absl::Time not_before = absl::InfinitePast();  // InfinitePast: no `nbf`.
  absl::Time expires_at;
};

// Signs `claims` as an HS256 JWT with the raw secret bytes.
std::string SignJwtHs256(const JwtClaims& claims, absl::string_view secret);

// Signs `claims` as an RS256 JWT with a PEM private key; INVALID_ARGUMENT if
// the key cannot be read.
absl::StatusOr<std::string> SignJwtRs256(const JwtClaims& claims,
                                         absl::string_view private_key_pem);

// Signs `claims` as an RS256 or ES256 JWT with a PEM private key, naming
// `kid` in the header (omitted when empty).
absl::StatusOr<std::string> SignJwt(const JwtClaims& claims,
                                    absl::string_view alg,
                                    absl::string_view kid,
                                    absl::string_view private_key_pem);

}  // namespace custos

#endif  // CUSTOS_COMMON_AUTH_H_
