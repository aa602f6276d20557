#include "common/auth.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/resource_id.h"
#include "common/status_macros.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace custos {

struct JwtVerifier::Cache {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, Verified> entries ABSL_GUARDED_BY(mu);
};

namespace {

constexpr char kKeyRefreshPayload[] = "type.custos.dev/needs-key-refresh";

absl::Status NeedsKeyRefreshError() {
  absl::Status status =
      absl::UnavailableError("the token's key id is not known yet");
  status.SetPayload(kKeyRefreshPayload, absl::Cord("1"));
  return status;
}

using ::google::protobuf::Struct;
using ::google::protobuf::Value;

// Clearing everything when full is crude but keeps the cache bounded without
// per-entry bookkeeping; a refill costs one verification per live token.
constexpr size_t kMaxCacheEntries = 10000;
// gRPC's default metadata limit is 8 KiB; anything longer is not a token we
// issued, and the bound caps the memory one cache entry can take.
constexpr size_t kMaxTokenBytes = 16 * 1024;

absl::Status Unauthenticated(absl::string_view reason) {
  return absl::UnauthenticatedError(reason);
}

std::string Base64UrlEncode(absl::string_view in) {
  // absl's web-safe variant already omits padding, as JWS requires.
  return absl::WebSafeBase64Escape(in);
}

bool ParseJsonObject(absl::string_view json, Struct* out) {
  return google::protobuf::util::JsonStringToMessage(std::string(json), out)
      .ok();
}

void AppendJsonString(absl::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

std::string SigningInput(absl::string_view alg, const JwtClaims& claims,
                         absl::string_view kid = "") {
  std::string header = absl::StrCat(R"({"alg":")", alg, R"(","typ":"JWT")");
  if (!kid.empty()) {
    header.append(R"(,"kid":)");
    AppendJsonString(kid, &header);
  }
  header.push_back('}');

  std::string payload = R"({"sub":)";
  AppendJsonString(claims.subject, &payload);
  payload.append(R"(,"roles":[)");
  for (size_t i = 0; i < claims.roles.size(); ++i) {
    if (i > 0) payload.push_back(',');
    AppendJsonString(claims.roles[i], &payload);
  }
  payload.append(R"(],"iss":)");
  AppendJsonString(claims.issuer, &payload);
  payload.append(R"(,"aud":)");
  AppendJsonString(claims.audience, &payload);
  absl::StrAppend(&payload, R"(,"iat":)",
                  absl::ToUnixSeconds(claims.issued_at));
  if (claims.not_before != absl::InfinitePast()) {
    absl::StrAppend(&payload, R"(,"nbf":)",
                    absl::ToUnixSeconds(claims.not_before));
  }
  absl::StrAppend(&payload, R"(,"exp":)",
                  absl::ToUnixSeconds(claims.expires_at), "}");

  return absl::StrCat(Base64UrlEncode(header), ".", Base64UrlEncode(payload));
}

bool HmacSha256(absl::string_view key, absl::string_view data,
                unsigned char mac[SHA256_DIGEST_LENGTH]) {
  // OpenSSL 3.0's HMAC() fails on a null key even with length 0.
  static const unsigned char kEmptyKey = 0;
  const void* key_data =
      key.empty() ? static_cast<const void*>(&kEmptyKey) : key.data();
  unsigned int mac_len = 0;
  if (key.size() > INT_MAX ||
      HMAC(EVP_sha256(), key_data, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(),
           mac, &mac_len) == nullptr ||
      mac_len != SHA256_DIGEST_LENGTH) {
    ERR_clear_error();
    return false;
  }
  return true;
}

bool VerifyHs256(absl::string_view secret, absl::string_view signing_input,
                 absl::string_view signature) {
  // The expected length is public, so checking it first leaks nothing.
  if (signature.size() != SHA256_DIGEST_LENGTH) return false;
  unsigned char mac[SHA256_DIGEST_LENGTH];
  if (!HmacSha256(secret, signing_input, mac)) return false;
  return CRYPTO_memcmp(mac, signature.data(), SHA256_DIGEST_LENGTH) == 0;
}

using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

bool VerifyRs256(EVP_PKEY* key, absl::string_view signing_input,
                 absl::string_view signature) {
  MdCtxPtr ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  const bool ok =
      ctx != nullptr &&
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) ==
          1 &&
      EVP_DigestVerify(
          ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
          signature.size(),
          reinterpret_cast<const unsigned char*>(signing_input.data()),
          signing_input.size()) == 1;
  // Leave no stale errors for unrelated OpenSSL users on this thread (TLS).
  if (!ok) ERR_clear_error();
  return ok;
}

// Refuses encrypted PEMs instead of letting OpenSSL prompt on the terminal.
int NoPassphrase(char*, int, int, void*) { return -1; }

BioPtr MemBio(absl::string_view data) {
  if (data.size() > INT_MAX) return BioPtr(nullptr, &BIO_free);
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())),
                &BIO_free);
}

absl::StatusOr<std::shared_ptr<EVP_PKEY>> LoadRsaPublicKey(
    absl::string_view pem) {
  BioPtr bio = MemBio(pem);
  EVP_PKEY* raw =
      bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, NoPassphrase, nullptr)
          : nullptr;
  if (raw == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "RS256 public key is not a PEM \"PUBLIC KEY\"");
  }
  std::shared_ptr<EVP_PKEY> key(raw, &EVP_PKEY_free);
  // Accepting any key type would let RS256 tokens be checked with, say, an EC
  // key; the algorithm must pin the key type.
  if (EVP_PKEY_get_base_id(raw) != EVP_PKEY_RSA) {
    return absl::InvalidArgumentError("RS256 public key is not an RSA key");
  }
  if (EVP_PKEY_get_bits(raw) < 2048) {
    return absl::InvalidArgumentError(
        "RS256 public key is shorter than 2048 bits");
  }
  return key;
}

absl::StatusOr<std::string> StringClaim(const Struct& claims,
                                        absl::string_view name) {
  auto it = claims.fields().find(std::string(name));
  if (it == claims.fields().end() ||
      it->second.kind_case() != Value::kStringValue) {
    return Unauthenticated(absl::StrCat("missing ", name));
  }
  return it->second.string_value();
}

// Absent → `absent`; present but not a number → error.
absl::StatusOr<absl::Time> TimeClaim(const Struct& claims,
                                     absl::string_view name,
                                     std::optional<absl::Time> absent) {
  auto it = claims.fields().find(std::string(name));
  if (it == claims.fields().end()) {
    if (absent.has_value()) return *absent;
    return Unauthenticated(absl::StrCat("missing ", name));
  }
  if (it->second.kind_case() != Value::kNumberValue) {
    return Unauthenticated(absl::StrCat("bad ", name));
  }
  // Seconds(double) saturates to an infinite duration for huge values.
  return absl::UnixEpoch() + absl::Seconds(it->second.number_value());
}

bool AudienceMatches(const Value& aud, absl::string_view audience) {
  if (aud.kind_case() == Value::kStringValue) {
    return aud.string_value() == audience;
  }
  if (aud.kind_case() == Value::kListValue) {
    for (const Value& v : aud.list_value().values()) {
      if (v.kind_case() == Value::kStringValue &&
          v.string_value() == audience) {
        return true;
      }
    }
  }
  return false;
}

// The claim at a dotted path ("roles", Keycloak's "realm_access.roles");
// null when any step is missing or not an object.
const Value* FindClaim(const Struct& claims, absl::string_view path) {
  const Struct* object = &claims;
  std::vector<absl::string_view> steps = absl::StrSplit(path, '.');
  for (size_t i = 0; i < steps.size(); ++i) {
    auto it = object->fields().find(std::string(steps[i]));
    if (it == object->fields().end()) return nullptr;
    if (i + 1 == steps.size()) return &it->second;
    if (it->second.kind_case() != Value::kStructValue) return nullptr;
    object = &it->second.struct_value();
  }
  return nullptr;
}

}  // namespace

bool Principal::HasRole(absl::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

JwtVerifier::JwtVerifier(JwtVerifierOptions options, const Clock* clock,
                         std::shared_ptr<evp_pkey_st> rs256_key)
    : options_(std::move(options)),
      clock_(clock),
      rs256_key_(std::move(rs256_key)),
      cache_(std::make_shared<Cache>()) {}

absl::StatusOr<JwtVerifier> JwtVerifier::Create(JwtVerifierOptions options,
                                                const Clock* clock) {
  if (options.hs256_secret.empty() && options.rs256_public_key_pem.empty() &&
      options.key_source == nullptr) {
    return absl::InvalidArgumentError(
        "no JWT verification key: give a key set (JWKS file, URL or OIDC "
        "issuer), an RS256 public key or, for development, an HS256 secret");
  }
  // An empty expectation would accept tokens minted for any issuer/audience.
  if (options.issuer.empty()) {
    return absl::InvalidArgumentError("JWT issuer must not be empty");
  }
  if (options.audience.empty()) {
    return absl::InvalidArgumentError("JWT audience must not be empty");
  }
  // Shorter HS256 secrets can be guessed offline from any one token.
  if (!options.hs256_secret.empty() &&
      options.hs256_secret.size() < kMinHs256SecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "HS256 secret must be at least ", kMinHs256SecretBytes, " bytes"));
  }
  if (options.roles_claim.empty() ||
      absl::StrContains(absl::StrCat(".", options.roles_claim, "."), "..")) {
    return absl::InvalidArgumentError(
        "JWT roles claim must be a dotted claim path such as "
        "\"realm_access.roles\"");
  }
  if (options.max_clock_skew < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "JWT max_clock_skew must not be negative");
  }
  std::shared_ptr<EVP_PKEY> rs256_key;
  if (!options.rs256_public_key_pem.empty()) {
    ASSIGN_OR_RETURN(rs256_key, LoadRsaPublicKey(options.rs256_public_key_pem));
  }
  if (clock == nullptr) clock = RealClock::Get();
  return JwtVerifier(std::move(options), clock, std::move(rs256_key));
}

absl::Status JwtVerifier::CheckValidityWindow(const Verified& verified) const {
  const absl::Time now = clock_->Now();
  if (now >= verified.expires_at + options_.max_clock_skew) {
    return Unauthenticated("token expired");
  }
  if (now < verified.not_before - options_.max_clock_skew) {
    return Unauthenticated("token not yet valid");
  }
  return absl::OkStatus();
}

bool NeedsKeyRefresh(const absl::Status& status) {
  return status.GetPayload(kKeyRefreshPayload).has_value();
}

absl::StatusOr<Principal> JwtVerifier::Verify(absl::string_view token) const {
  return Verify(token, /*may_wait=*/true);
}

absl::StatusOr<Principal> JwtVerifier::VerifyWithoutWaiting(
    absl::string_view token) const {
  return Verify(token, /*may_wait=*/false);
}

absl::StatusOr<Principal> JwtVerifier::Verify(absl::string_view token,
                                              bool may_wait) const {
  if (token.size() > kMaxTokenBytes) return Unauthenticated("token too large");

  std::optional<Verified> cached;
  {
    absl::ReaderMutexLock lock(&cache_->mu);
    auto it = cache_->entries.find(token);
    if (it != cache_->entries.end()) cached = it->second;
  }
  if (cached.has_value() && cached->key_generation == KeyGeneration()) {
    RETURN_IF_ERROR(CheckValidityWindow(*cached));
    return std::move(cached->principal);
  }

  ASSIGN_OR_RETURN(Verified verified, VerifyUncached(token, may_wait));
  RETURN_IF_ERROR(CheckValidityWindow(verified));
  {
    absl::MutexLock lock(&cache_->mu);
    if (cache_->entries.size() >= kMaxCacheEntries) cache_->entries.clear();
    cache_->entries.insert_or_assign(std::string(token), verified);
  }
  return std::move(verified.principal);
}

absl::StatusOr<JwtVerifier::Verified> JwtVerifier::VerifyUncached(
    absl::string_view token, bool may_wait) const {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) return Unauthenticated("malformed token");

  std::string header_json;
  Struct header;
  if (!Base64UrlDecode(parts[0], &header_json) ||
      !ParseJsonObject(header_json, &header)) {
    return Unauthenticated("malformed token header");
  }
  auto alg_it = header.fields().find("alg");
  if (alg_it == header.fields().end() ||
      alg_it->second.kind_case() != Value::kStringValue) {
    return Unauthenticated("malformed token header");
  }
  // No extension is understood, so RFC 7515 §4.1.11 requires rejecting any.
  if (header.fields().contains("crit")) {
    return Unauthenticated("unsupported critical header");
  }
  const std::string& alg = alg_it->second.string_value();
  if (alg != "HS256" && alg != "RS256" && alg != "ES256") {
    return Unauthenticated("unsupported algorithm");
  }
  std::string kid;
  if (auto kid_it = header.fields().find("kid");
      kid_it != header.fields().end()) {
    if (kid_it->second.kind_case() != Value::kStringValue) {
      return Unauthenticated("malformed token header");
    }
    kid = kid_it->second.string_value();
  }

  std::string signature;
  if (!Base64UrlDecode(parts[2], &signature)) {
    return Unauthenticated("malformed token signature");
  }
  const absl::string_view signing_input =
      token.substr(0, parts[0].size() + 1 + parts[1].size());
  const int64_t key_generation = KeyGeneration();
  RETURN_IF_ERROR(CheckSignature(alg, kid, signing_input, signature, may_wait));

  std::string payload_json;
  Struct claims;
  if (!Base64UrlDecode(parts[1], &payload_json) ||
      !ParseJsonObject(payload_json, &claims)) {
    return Unauthenticated("malformed token payload");
  }

  Verified verified;
  verified.key_generation = key_generation;
  ASSIGN_OR_RETURN(verified.principal.subject, StringClaim(claims, "sub"));
  if (verified.principal.subject.empty()) return Unauthenticated("missing sub");
  // The subject becomes `users/{sub}` in names, audit events and notices; a
  // `/` or `..` in it would name someone else (DESIGN §3).
  if (!IsValidUserId(verified.principal.subject)) {
    return Unauthenticated("token sub is not a valid user id");
  }
  ASSIGN_OR_RETURN(verified.expires_at,
                   TimeClaim(claims, "exp", /*absent=*/std::nullopt));
  ASSIGN_OR_RETURN(verified.not_before,
                   TimeClaim(claims, "nbf", absl::InfinitePast()));
  // `iat` is informational, but a non-number means a sloppy or hostile minter.
  RETURN_IF_ERROR(TimeClaim(claims, "iat", absl::InfinitePast()).status());

  auto iss_it = claims.fields().find("iss");
  if (iss_it == claims.fields().end() ||
      iss_it->second.kind_case() != Value::kStringValue ||
      iss_it->second.string_value() != options_.issuer) {
    return Unauthenticated("wrong issuer");
  }
  auto aud_it = claims.fields().find("aud");
  if (aud_it == claims.fields().end() ||
      !AudienceMatches(aud_it->second, options_.audience)) {
    return Unauthenticated("wrong audience");
  }

  if (const Value* roles = FindClaim(claims, options_.roles_claim);
      roles != nullptr) {
    if (roles->kind_case() != Value::kListValue) {
      return Unauthenticated("bad roles");
    }
    for (const Value& role : roles->list_value().values()) {
      if (role.kind_case() != Value::kStringValue) {
        return Unauthenticated("bad roles");
      }
      verified.principal.roles.push_back(role.string_value());
    }
  }
  return verified;
}

int64_t JwtVerifier::KeyGeneration() const {
  return options_.key_source ? options_.key_source->refresh_count() : 0;
}

absl::Status JwtVerifier::CheckSignature(const std::string& alg,
                                         const std::string& kid,
                                         absl::string_view signing_input,
                                         absl::string_view signature,
                                         bool may_wait) const {
  // The algorithm is chosen by configuration, never by the token: an RS256
  // deployment must not accept an HS256 token keyed with its public key, and
  // each key checks only the algorithm it is published for.
  if (alg == "HS256") {
    if (options_.hs256_secret.empty()) {
      return Unauthenticated("algorithm not enabled");
    }
    if (!VerifyHs256(options_.hs256_secret, signing_input, signature)) {
      return Unauthenticated("bad signature");
    }
    return absl::OkStatus();
  }
  if (alg == "RS256" && rs256_key_ != nullptr &&
      VerifyRs256(rs256_key_.get(), signing_input, signature)) {
    return absl::OkStatus();
  }
  if (options_.key_source == nullptr) {
    return Unauthenticated(rs256_key_ != nullptr && alg == "RS256"
                               ? "bad signature"
                               : "algorithm not enabled");
  }
  // Keys of this algorithm that the `kid` names (all of them without one).
  auto candidates = [&](const KeySet& keys) {
    std::vector<const VerificationKey*> found;
    for (const VerificationKey& key : keys) {
      if (key.alg == alg && (kid.empty() || key.kid == kid)) {
        found.push_back(&key);
      }
    }
    return found;
  };
  std::shared_ptr<const KeySet> keys = options_.key_source->Keys();
  std::vector<const VerificationKey*> found = candidates(*keys);
  // A `kid` we do not know yet: the provider may have just rotated. Waiting
  // is worth it only for a reload that starts now; the gap between reloads
  // keeps made-up kids from holding threads or hammering the provider.
  if (found.empty() && !kid.empty() && !may_wait) {
    return NeedsKeyRefreshError();
  }
  if (found.empty() && !kid.empty() && options_.key_source->RefreshSoon() &&
      options_.key_source->AwaitRefresh(options_.unknown_kid_wait)) {
    keys = options_.key_source->Keys();
    found = candidates(*keys);
  }
  if (found.empty()) {
    return Unauthenticated(kid.empty() ? "no key for the token's algorithm"
                                       : "unknown key id");
  }
  for (const VerificationKey* key : found) {
    if (VerifyJwsSignature(*key, signing_input, signature)) {
      return absl::OkStatus();
    }
  }
  return Unauthenticated("bad signature");
}

std::string SignJwtHs256(const JwtClaims& claims, absl::string_view secret) {
  std::string token = SigningInput("HS256", claims);
  unsigned char mac[SHA256_DIGEST_LENGTH];
  // Fails only if OpenSSL cannot compute SHA-256 at all; an unsigned token
  // must never leave this function.
  if (!HmacSha256(secret, token, mac)) std::abort();
  absl::StrAppend(&token, ".",
                  Base64UrlEncode(absl::string_view(
                      reinterpret_cast<const char*>(mac), sizeof(mac))));
  return token;
}

absl::StatusOr<std::string> SignJwtRs256(const JwtClaims& claims,
                                         absl::string_view private_key_pem) {
  BioPtr bio = MemBio(private_key_pem);
  EVP_PKEY* raw =
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr)
          : nullptr;
  if (raw == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "RS256 private key is not an unencrypted PEM private key");
  }
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(raw, &EVP_PKEY_free);
  if (EVP_PKEY_get_base_id(raw) != EVP_PKEY_RSA) {
    return absl::InvalidArgumentError("RS256 private key is not an RSA key");
  }

  std::string token = SigningInput("RS256", claims);
  MdCtxPtr ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  size_t sig_len = 0;
  std::string signature;
  bool ok = ctx != nullptr &&
            EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                               key.get()) == 1 &&
            EVP_DigestSign(ctx.get(), nullptr, &sig_len,
                           reinterpret_cast<const unsigned char*>(token.data()),
                           token.size()) == 1;
  if (ok) {
    signature.resize(sig_len);
    ok = EVP_DigestSign(
             ctx.get(), reinterpret_cast<unsigned char*>(&signature[0]),
             &sig_len, reinterpret_cast<const unsigned char*>(token.data()),
             token.size()) == 1;
  }
  if (!ok) {
    ERR_clear_error();
    return absl::InternalError("RS256 signing failed");
  }
  signature.resize(sig_len);
  absl::StrAppend(&token, ".", Base64UrlEncode(signature));
  return token;
}

absl::StatusOr<std::string> SignJwt(const JwtClaims& claims,
                                    absl::string_view alg,
                                    absl::string_view kid,
                                    absl::string_view private_key_pem) {
  std::string token = SigningInput(alg, claims, kid);
  ASSIGN_OR_RETURN(std::string signature, SignJws(alg, private_key_pem, token));
  absl::StrAppend(&token, ".", Base64UrlEncode(signature));
  return token;
}

}  // namespace custos
