#include "common/jwks.h"

#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/json_log.h"
#include "common/status_macros.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace custos {
namespace {

using ::google::protobuf::Struct;
using ::google::protobuf::Value;

// Bounds what one key set can cost: a JWKS is a few KiB; anything near this
// is not one, and reading it whole would only waste memory.
constexpr size_t kMaxDocumentBytes = 1 << 20;
// RS256 verification cost grows with the modulus; OpenSSL refuses more than
// this anyway (OPENSSL_RSA_MAX_MODULUS_BITS).
constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 16384;
constexpr size_t kP256CoordinateBytes = 32;
constexpr size_t kEs256SignatureBytes = 2 * kP256CoordinateBytes;
// OpenSSL's name for NIST P-256.
constexpr char kP256GroupName[] = "prime256v1";

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using BnPtr = std::unique_ptr<BIGNUM, decltype(&BN_free)>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)>;
using ParamBldPtr =
    std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)>;

const unsigned char* Bytes(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

bool ParseJsonObject(absl::string_view json, Struct* out) {
  return google::protobuf::util::JsonStringToMessage(std::string(json), out)
      .ok();
}

// Refuses encrypted PEMs instead of letting OpenSSL prompt on the terminal.
int NoPassphrase(char*, int, int, void*) { return -1; }

BioPtr MemBio(absl::string_view data) {
  if (data.size() > INT_MAX) return BioPtr(nullptr, &BIO_free);
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())),
                &BIO_free);
}

PkeyPtr ReadPrivateKeyPem(absl::string_view pem) {
  BioPtr bio = MemBio(pem);
  EVP_PKEY* raw =
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr)
          : nullptr;
  if (raw == nullptr) ERR_clear_error();
  return PkeyPtr(raw, &EVP_PKEY_free);
}

PkeyPtr ReadPublicOrPrivateKeyPem(absl::string_view pem) {
  BioPtr bio = MemBio(pem);
  EVP_PKEY* raw =
      bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, NoPassphrase, nullptr)
          : nullptr;
  if (raw != nullptr) return PkeyPtr(raw, &EVP_PKEY_free);
  ERR_clear_error();
  return ReadPrivateKeyPem(pem);
}

bool IsP256(const EVP_PKEY* key) {
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) return false;
  char name[64];
  size_t len = 0;
  if (EVP_PKEY_get_group_name(key, name, sizeof(name), &len) != 1) {
    ERR_clear_error();
    return false;
  }
  return absl::string_view(name, len) == kP256GroupName;
}

// The key type an algorithm requires. Checked at every use, not only at
// parse time, because a VerificationKey can be built by hand: an ES256 token
// must never be checked against an RSA key or the reverse.
bool KeyFitsAlg(const EVP_PKEY* key, absl::string_view alg) {
  if (key == nullptr) return false;
  if (alg == "RS256") {
    return EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA &&
           EVP_PKEY_get_bits(key) >= kMinRsaBits;
  }
  if (alg == "ES256") return IsP256(key);
  return false;
}

// ---- JWK parsing ----------------------------------------------------------

absl::Status BadKey(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("JWKS ", where, ": ", what));
}

// A member that must be a string when present; nullopt when absent.
absl::StatusOr<std::optional<std::string>> OptionalString(
    const Struct& jwk, absl::string_view name, absl::string_view where) {
  auto it = jwk.fields().find(std::string(name));
  if (it == jwk.fields().end()) return std::nullopt;
  if (it->second.kind_case() != Value::kStringValue) {
    return BadKey(where, absl::StrCat("\"", name, "\" is not a string"));
  }
  return it->second.string_value();
}

absl::StatusOr<std::string> RequiredBase64Url(const Struct& jwk,
                                              absl::string_view name,
                                              absl::string_view where) {
  ASSIGN_OR_RETURN(std::optional<std::string> text,
                   OptionalString(jwk, name, where));
  if (!text.has_value()) {
    return BadKey(where, absl::StrCat("\"", name, "\" is missing"));
  }
  std::string bytes;
  if (!Base64UrlDecode(*text, &bytes) || bytes.empty()) {
    return BadKey(where, absl::StrCat("\"", name, "\" is not base64url"));
  }
  return bytes;
}

absl::StatusOr<std::shared_ptr<EVP_PKEY>> PublicKeyFromParams(
    const char* type, const OSSL_PARAM* params) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr),
                 &EVP_PKEY_CTX_free);
  EVP_PKEY* raw = nullptr;
  if (ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY,
                        const_cast<OSSL_PARAM*>(params)) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("OpenSSL refused the key");
  }
  return std::shared_ptr<EVP_PKEY>(raw, &EVP_PKEY_free);
}

absl::StatusOr<std::shared_ptr<EVP_PKEY>> RsaKeyFromJwk(
    const Struct& jwk, absl::string_view where) {
  ASSIGN_OR_RETURN(std::string n_bytes, RequiredBase64Url(jwk, "n", where));
  ASSIGN_OR_RETURN(std::string e_bytes, RequiredBase64Url(jwk, "e", where));
  BnPtr n(BN_bin2bn(Bytes(n_bytes), static_cast<int>(n_bytes.size()), nullptr),
          &BN_free);
  BnPtr e(BN_bin2bn(Bytes(e_bytes), static_cast<int>(e_bytes.size()), nullptr),
          &BN_free);
  if (n == nullptr || e == nullptr) {
    ERR_clear_error();
    return absl::ResourceExhaustedError("out of memory decoding RSA key");
  }
  // RFC 7518 asks for minimal encodings, but leading zero octets are common
  // in the wild and harmless, so the size is judged on the value itself.
  const int bits = BN_num_bits(n.get());
  if (bits < kMinRsaBits) {
    return BadKey(where,
                  absl::StrCat("RSA modulus has ", bits, " bits; at least ",
                               kMinRsaBits, " are required"));
  }
  if (bits > kMaxRsaBits) {
    return BadKey(where,
                  absl::StrCat("RSA modulus has ", bits, " bits; at most ",
                               kMaxRsaBits, " are accepted"));
  }
  // An even modulus or exponent, or e = 1, is not an RSA key; OpenSSL's
  // import does not check this.
  if (!BN_is_odd(n.get()) || !BN_is_odd(e.get()) || BN_is_one(e.get()) ||
      BN_cmp(e.get(), n.get()) >= 0) {
    return BadKey(where, "RSA n or e is not valid");
  }
  ParamBldPtr bld(OSSL_PARAM_BLD_new(), &OSSL_PARAM_BLD_free);
  if (bld == nullptr ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
    ERR_clear_error();
    return absl::ResourceExhaustedError("out of memory building RSA key");
  }
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()), &OSSL_PARAM_free);
  if (params == nullptr) {
    ERR_clear_error();
    return absl::ResourceExhaustedError("out of memory building RSA key");
  }
  auto key = PublicKeyFromParams("RSA", params.get());
  if (!key.ok()) return BadKey(where, "RSA key is not valid");
  return key;
}

absl::StatusOr<std::shared_ptr<EVP_PKEY>> P256KeyFromJwk(
    const Struct& jwk, absl::string_view where) {
  ASSIGN_OR_RETURN(std::string x, RequiredBase64Url(jwk, "x", where));
  ASSIGN_OR_RETURN(std::string y, RequiredBase64Url(jwk, "y", where));
  // RFC 7518 §6.2.1.2: coordinates are the full field size, never shortened.
  if (x.size() != kP256CoordinateBytes || y.size() != kP256CoordinateBytes) {
    return BadKey(where, "P-256 x and y must be 32 bytes each");
  }
  std::string point = absl::StrCat("\x04", x, y);  // SEC1 uncompressed.
  char group[] = "prime256v1";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                        point.size()),
      OSSL_PARAM_construct_end()};
  // The import already refuses a point off the curve; the explicit check
  // keeps that guarantee (invalid-curve attacks) from resting on an
  // implementation detail.
  auto key = PublicKeyFromParams("EC", params);
  if (!key.ok()) return BadKey(where, "EC point is not on the P-256 curve");
  PkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key->get(), nullptr),
                   &EVP_PKEY_CTX_free);
  if (check == nullptr || EVP_PKEY_public_check(check.get()) != 1) {
    ERR_clear_error();
    return BadKey(where, "EC point is not on the P-256 curve");
  }
  return key;
}

// nullopt: a key this verifier has no use for, skipped by design.
absl::StatusOr<std::optional<VerificationKey>> ParseJwk(const Struct& jwk,
                                                        int index) {
  std::string where = absl::StrCat("key ", index);
  ASSIGN_OR_RETURN(std::optional<std::string> kid,
                   OptionalString(jwk, "kid", where));
  if (kid.has_value()) absl::StrAppend(&where, " (kid \"", *kid, "\")");
  ASSIGN_OR_RETURN(std::optional<std::string> kty,
                   OptionalString(jwk, "kty", where));
  if (!kty.has_value()) return BadKey(where, "\"kty\" is missing");
  ASSIGN_OR_RETURN(std::optional<std::string> use,
                   OptionalString(jwk, "use", where));
  ASSIGN_OR_RETURN(std::optional<std::string> alg,
                   OptionalString(jwk, "alg", where));

  if (use.has_value() && *use != "sig") return std::nullopt;
  auto ops_it = jwk.fields().find("key_ops");
  if (ops_it != jwk.fields().end()) {
    if (ops_it->second.kind_case() != Value::kListValue) {
      return BadKey(where, "\"key_ops\" is not an array");
    }
    const auto& ops = ops_it->second.list_value().values();
    const bool verify = std::any_of(ops.begin(), ops.end(), [](const Value& v) {
      return v.kind_case() == Value::kStringValue &&
             v.string_value() == "verify";
    });
    if (!verify) return std::nullopt;
  }

  VerificationKey key;
  key.kid = kid.value_or("");
  if (*kty == "RSA") {
    if (alg.has_value() && *alg != "RS256") return std::nullopt;
    key.alg = "RS256";
    ASSIGN_OR_RETURN(key.public_key, RsaKeyFromJwk(jwk, where));
  } else if (*kty == "EC") {
    ASSIGN_OR_RETURN(std::optional<std::string> crv,
                     OptionalString(jwk, "crv", where));
    if (!crv.has_value()) return BadKey(where, "\"crv\" is missing");
    if (*crv != "P-256") return std::nullopt;
    if (alg.has_value() && *alg != "ES256") return std::nullopt;
    key.alg = "ES256";
    ASSIGN_OR_RETURN(key.public_key, P256KeyFromJwk(jwk, where));
  } else {
    // "oct" included: a shared secret published in a key set is no secret.
    return std::nullopt;
  }
  return key;
}

// ---- Signatures -----------------------------------------------------------

bool VerifyHs256(absl::string_view secret, absl::string_view signing_input,
                 absl::string_view signature) {
  // An empty secret would make every HS256 signature forgeable.
  if (secret.empty() || secret.size() > INT_MAX) return false;
  // The expected length is public, so checking it first leaks nothing.
  if (signature.size() != SHA256_DIGEST_LENGTH) return false;
  unsigned char mac[SHA256_DIGEST_LENGTH];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           Bytes(signing_input), signing_input.size(), mac,
           &mac_len) == nullptr ||
      mac_len != SHA256_DIGEST_LENGTH) {
    ERR_clear_error();
    return false;
  }
  return CRYPTO_memcmp(mac, signature.data(), SHA256_DIGEST_LENGTH) == 0;
}

bool DigestVerifySha256(EVP_PKEY* key, absl::string_view signing_input,
                        absl::string_view der_or_raw_signature) {
  MdCtxPtr ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  return ctx != nullptr &&
         EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) ==
             1 &&
         EVP_DigestVerify(ctx.get(), Bytes(der_or_raw_signature),
                          der_or_raw_signature.size(), Bytes(signing_input),
                          signing_input.size()) == 1;
}

// JWS carries ECDSA signatures as fixed-width R||S; OpenSSL wants DER.
std::optional<std::string> RawEcdsaToDer(absl::string_view raw) {
  if (raw.size() != kEs256SignatureBytes) return std::nullopt;
  EcdsaSigPtr sig(ECDSA_SIG_new(), &ECDSA_SIG_free);
  BIGNUM* r = BN_bin2bn(Bytes(raw), kP256CoordinateBytes, nullptr);
  BIGNUM* s = BN_bin2bn(Bytes(raw) + kP256CoordinateBytes, kP256CoordinateBytes,
                        nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr ||
      ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return std::nullopt;
  }
  // From here `sig` owns r and s.
  const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return std::nullopt;
  std::string der(static_cast<size_t>(len), '\0');
  unsigned char* p = reinterpret_cast<unsigned char*>(&der[0]);
  if (i2d_ECDSA_SIG(sig.get(), &p) != len) return std::nullopt;
  return der;
}

std::optional<std::string> DerEcdsaToRaw(absl::string_view der) {
  const unsigned char* p = Bytes(der);
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())),
                  &ECDSA_SIG_free);
  if (sig == nullptr) return std::nullopt;
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string raw(kEs256SignatureBytes, '\0');
  unsigned char* out = reinterpret_cast<unsigned char*>(&raw[0]);
  constexpr int kWidth = static_cast<int>(kP256CoordinateBytes);
  if (BN_bn2binpad(r, out, kWidth) != kWidth ||
      BN_bn2binpad(s, out + kWidth, kWidth) != kWidth) {
    return std::nullopt;
  }
  return raw;
}

// ---- JWK output -----------------------------------------------------------

std::string BnToBase64Url(const BIGNUM* bn, int width) {
  std::string bytes(width > 0 ? width : BN_num_bytes(bn), '\0');
  unsigned char* out = reinterpret_cast<unsigned char*>(&bytes[0]);
  if (width > 0) {
    BN_bn2binpad(bn, out, width);
  } else {
    BN_bn2bin(bn, out);
  }
  // absl's web-safe variant omits padding, as JWK requires.
  return absl::WebSafeBase64Escape(bytes);
}

absl::StatusOr<std::string> GetBnParamBase64Url(const EVP_PKEY* key,
                                                const char* name, int width) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read key parameter ", name));
  }
  BnPtr bn(raw, &BN_free);
  if (width > 0 && BN_num_bytes(bn.get()) > width) {
    return absl::InvalidArgumentError(
        absl::StrCat("key parameter ", name, " is too large"));
  }
  return BnToBase64Url(bn.get(), width);
}

void AppendMember(std::string* out, absl::string_view name,
                  absl::string_view value) {
  if (out->size() > 1) out->push_back(',');
  AppendJsonString(out, name);
  out->push_back(':');
  AppendJsonString(out, value);
}

// ---- Fetching -------------------------------------------------------------

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::unique_ptr<FILE, decltype(&std::fclose)> file(
      std::fopen(path.c_str(), "rb"), &std::fclose);
  if (file == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::string contents;
  char buf[16384];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), file.get())) > 0) {
    contents.append(buf, n);
    if (contents.size() > kMaxDocumentBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is larger than 1 MiB"));
    }
  }
  if (std::ferror(file.get())) {
    return absl::UnavailableError(absl::StrCat("cannot read ", path));
  }
  return contents;
}

struct Transfer {
  std::string body;
  bool too_large = false;
  const std::atomic<bool>* cancel = nullptr;
};

size_t WriteBody(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (transfer->body.size() + n > kMaxDocumentBytes) {
    transfer->too_large = true;
    return 0;  // Anything but n makes libcurl fail with CURLE_WRITE_ERROR.
  }
  transfer->body.append(data, n);
  return n;
}

int TransferProgress(void* user, curl_off_t, curl_off_t, curl_off_t,
                     curl_off_t) {
  // Non-zero aborts the transfer, so destruction need not wait it out.
  return static_cast<Transfer*>(user)->cancel->load() ? 1 : 0;
}

bool HasAllowedScheme(absl::string_view url, bool allow_http) {
  return absl::StartsWithIgnoreCase(url, "https://") ||
         (allow_http && absl::StartsWithIgnoreCase(url, "http://"));
}

// GET `url`; the body of a 200 response of at most 1 MiB.
absl::StatusOr<std::string> HttpGet(const std::string& url,
                                    const KeySourceOptions& options,
                                    const std::atomic<bool>* cancel) {
  if (!HasAllowedScheme(url, options.allow_http)) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing non-https URL ", url));
  }
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(),
                                                           &curl_easy_cleanup);
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  Transfer transfer;
  transfer.cancel = cancel;
  char error[CURL_ERROR_SIZE] = {0};
  const long timeout_ms = std::max<long>(
      1, static_cast<long>(std::min<int64_t>(
             absl::ToInt64Milliseconds(options.fetch_timeout), LONG_MAX)));
  CURL* c = curl.get();
  // The scheme allow-list is enforced by libcurl too, so no later code path
  // (a proxy, a future redirect option) can switch to another protocol.
  bool ok =
      curl_easy_setopt(c, CURLOPT_URL, url.c_str()) == CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR,
                       options.allow_http ? "http,https" : "https") ==
          CURLE_OK &&
      // A redirect could lead off the host whose certificate vouched for
      // the keys; key documents have no reason to move.
      curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
      // Signals (SIGALRM for DNS timeouts) are unsafe in a threaded process.
      curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms) == CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms) == CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE,
                       static_cast<curl_off_t>(kMaxDocumentBytes)) ==
          CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &WriteBody) == CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_WRITEDATA, &transfer) == CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) == CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &TransferProgress) ==
          CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_XFERINFODATA, &transfer) == CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error) == CURLE_OK &&
      curl_easy_setopt(c, CURLOPT_USERAGENT, "custos-jwks") == CURLE_OK;
  if (ok && !options.ca_file.empty()) {
    ok = curl_easy_setopt(c, CURLOPT_CAINFO, options.ca_file.c_str()) ==
         CURLE_OK;
  }
  if (!ok) return absl::InternalError("cannot configure libcurl");

  const CURLcode rc = curl_easy_perform(c);
  if (transfer.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    return absl::UnavailableError(
        absl::StrCat("GET ", url, ": response larger than 1 MiB"));
  }
  if (rc == CURLE_ABORTED_BY_CALLBACK) {
    return absl::CancelledError(absl::StrCat("GET ", url, ": cancelled"));
  }
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat(
        "GET ", url, ": ", error[0] != '\0' ? error : curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    return absl::UnavailableError(
        absl::StrCat("GET ", url, ": HTTP status ", status));
  }
  return std::move(transfer.body);
}

// OpenID Connect Discovery §4.3: the document's issuer must be the one asked
// for, so a compromised or misconfigured host cannot vouch for another.
absl::StatusOr<std::string> JwksUriFromDiscovery(
    absl::string_view document, absl::string_view expected_issuer,
    bool allow_http) {
  Struct doc;
  if (!ParseJsonObject(document, &doc)) {
    return absl::InvalidArgumentError(
        "OpenID configuration is not a JSON object");
  }
  auto issuer_it = doc.fields().find("issuer");
  if (issuer_it == doc.fields().end() ||
      issuer_it->second.kind_case() != Value::kStringValue) {
    return absl::InvalidArgumentError(
        "OpenID configuration has no \"issuer\" string");
  }
  if (absl::StripSuffix(issuer_it->second.string_value(), "/") !=
      absl::StripSuffix(expected_issuer, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("OpenID configuration names issuer \"",
                     issuer_it->second.string_value(), "\", expected \"",
                     expected_issuer, "\""));
  }
  auto uri_it = doc.fields().find("jwks_uri");
  if (uri_it == doc.fields().end() ||
      uri_it->second.kind_case() != Value::kStringValue) {
    return absl::InvalidArgumentError(
        "OpenID configuration has no \"jwks_uri\" string");
  }
  const std::string& uri = uri_it->second.string_value();
  if (!HasAllowedScheme(uri, allow_http)) {
    return absl::InvalidArgumentError(
        absl::StrCat("OpenID configuration's jwks_uri is not https: ", uri));
  }
  return uri;
}

absl::Status ValidateOptions(const KeySourceOptions& options) {
  const int sources = !options.jwks_file.empty() + !options.jwks_url.empty() +
                      !options.oidc_issuer.empty();
  if (sources != 1) {
    return absl::InvalidArgumentError(
        "set exactly one of jwks_file, jwks_url and oidc_issuer");
  }
  for (const std::string* url : {&options.jwks_url, &options.oidc_issuer}) {
    if (!url->empty() && !HasAllowedScheme(*url, options.allow_http)) {
      return absl::InvalidArgumentError(
          absl::StrCat("key source URL must be https://: ", *url));
    }
  }
  if (options.refresh_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("refresh_interval must be positive");
  }
  if (options.min_refresh_gap < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("min_refresh_gap must not be negative");
  }
  if (options.fetch_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("fetch_timeout must be positive");
  }
  return absl::OkStatus();
}

}  // namespace

// ---- Public functions -----------------------------------------------------

absl::StatusOr<KeySet> ParseJwks(absl::string_view json) {
  Struct doc;
  if (!ParseJsonObject(json, &doc)) {
    return absl::InvalidArgumentError("JWKS is not a JSON object");
  }
  auto keys_it = doc.fields().find("keys");
  if (keys_it == doc.fields().end() ||
      keys_it->second.kind_case() != Value::kListValue) {
    return absl::InvalidArgumentError("JWKS has no \"keys\" array");
  }
  KeySet keys;
  absl::flat_hash_set<std::string> kids;
  const auto& entries = keys_it->second.list_value().values();
  for (int i = 0; i < entries.size(); ++i) {
    const Value& entry = entries[i];
    if (entry.kind_case() != Value::kStructValue) {
      return BadKey(absl::StrCat("key ", i), "not an object");
    }
    ASSIGN_OR_RETURN(std::optional<VerificationKey> key,
                     ParseJwk(entry.struct_value(), i));
    if (!key.has_value()) continue;
    // With two keys under one kid, which one checks a token would depend on
    // document order; refuse instead of guessing.
    if (!key->kid.empty() && !kids.insert(key->kid).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("JWKS has two usable keys with kid \"", key->kid, "\""));
    }
    keys.push_back(*std::move(key));
  }
  if (keys.empty()) {
    return absl::InvalidArgumentError(
        "JWKS has no usable signature key (RSA or EC P-256)");
  }
  return keys;
}

absl::StatusOr<std::string> PemToPublicJwk(absl::string_view pem,
                                           absl::string_view kid) {
  PkeyPtr key = ReadPublicOrPrivateKeyPem(pem);
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        "not a PEM public key or unencrypted PEM private key");
  }
  std::string out = "{";
  if (EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_RSA) {
    ASSIGN_OR_RETURN(std::string n,
                     GetBnParamBase64Url(key.get(), OSSL_PKEY_PARAM_RSA_N, 0));
    ASSIGN_OR_RETURN(std::string e,
                     GetBnParamBase64Url(key.get(), OSSL_PKEY_PARAM_RSA_E, 0));
    AppendMember(&out, "kty", "RSA");
    if (!kid.empty()) AppendMember(&out, "kid", kid);
    AppendMember(&out, "alg", "RS256");
    AppendMember(&out, "use", "sig");
    AppendMember(&out, "n", n);
    AppendMember(&out, "e", e);
  } else if (IsP256(key.get())) {
    ASSIGN_OR_RETURN(std::string x,
                     GetBnParamBase64Url(key.get(), OSSL_PKEY_PARAM_EC_PUB_X,
                                         kP256CoordinateBytes));
    ASSIGN_OR_RETURN(std::string y,
                     GetBnParamBase64Url(key.get(), OSSL_PKEY_PARAM_EC_PUB_Y,
                                         kP256CoordinateBytes));
    AppendMember(&out, "kty", "EC");
    if (!kid.empty()) AppendMember(&out, "kid", kid);
    AppendMember(&out, "alg", "ES256");
    AppendMember(&out, "use", "sig");
    AppendMember(&out, "crv", "P-256");
    AppendMember(&out, "x", x);
    AppendMember(&out, "y", y);
  } else {
    return absl::InvalidArgumentError("key is neither RSA nor EC P-256");
  }
  out.push_back('}');
  return out;
}

bool VerifyJwsSignature(const VerificationKey& key,
                        absl::string_view signing_input,
                        absl::string_view signature) {
  if (key.alg == "HS256") {
    return VerifyHs256(key.secret, signing_input, signature);
  }
  if (!KeyFitsAlg(key.public_key.get(), key.alg)) {
    ERR_clear_error();
    return false;
  }
  bool ok;
  if (key.alg == "ES256") {
    std::optional<std::string> der = RawEcdsaToDer(signature);
    ok = der.has_value() &&
         DigestVerifySha256(key.public_key.get(), signing_input, *der);
  } else {
    ok = DigestVerifySha256(key.public_key.get(), signing_input, signature);
  }
  // Leave no stale errors for unrelated OpenSSL users on this thread (TLS).
  if (!ok) ERR_clear_error();
  return ok;
}

absl::StatusOr<std::string> SignJws(absl::string_view alg,
                                    absl::string_view private_key_pem,
                                    absl::string_view signing_input) {
  if (alg != "RS256" && alg != "ES256") {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot sign for algorithm \"", alg, "\""));
  }
  PkeyPtr key = ReadPrivateKeyPem(private_key_pem);
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        "signing key is not an unencrypted PEM private key");
  }
  if (!KeyFitsAlg(key.get(), alg)) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        alg == "RS256" ? "RS256 needs an RSA key of at least 2048 bits"
                       : "ES256 needs an EC P-256 key");
  }
  MdCtxPtr ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  size_t sig_len = 0;
  std::string signature;
  bool ok = ctx != nullptr &&
            EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                               key.get()) == 1 &&
            EVP_DigestSign(ctx.get(), nullptr, &sig_len, Bytes(signing_input),
                           signing_input.size()) == 1;
  if (ok) {
    signature.resize(sig_len);
    ok = EVP_DigestSign(
             ctx.get(), reinterpret_cast<unsigned char*>(&signature[0]),
             &sig_len, Bytes(signing_input), signing_input.size()) == 1;
  }
  if (!ok) {
    ERR_clear_error();
    return absl::InternalError(absl::StrCat(alg, " signing failed"));
  }
  signature.resize(sig_len);
  if (alg == "ES256") {
    std::optional<std::string> raw = DerEcdsaToRaw(signature);
    if (!raw.has_value()) {
      ERR_clear_error();
      return absl::InternalError("ES256 signature has an unexpected form");
    }
    return *std::move(raw);
  }
  return signature;
}

// ---- KeySource ------------------------------------------------------------

bool KeySource::FileVersion::operator==(const FileVersion& other) const {
  return device == other.device && inode == other.inode && size == other.size &&
         mtime_ns == other.mtime_ns;
}

KeySource::KeySource(KeySourceOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<KeySource>> KeySource::Start(
    KeySourceOptions options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  // The constructor is private, so make_unique cannot reach it.
  std::unique_ptr<KeySource> source(new KeySource(std::move(options)));
  const absl::Time started = absl::Now();
  bool unchanged = false;
  absl::StatusOr<std::shared_ptr<const KeySet>> keys =
      source->Load(/*force=*/true, &unchanged);
  if (!keys.ok()) {
    return absl::Status(keys.status().code(),
                        absl::StrCat("loading keys from ", source->Describe(),
                                     ": ", keys.status().message()));
  }
  {
    absl::MutexLock lock(&source->mu_);
    source->keys_ = *std::move(keys);
    source->last_load_start_ = started;
    source->refresh_count_ = 1;
  }
  source->thread_ = std::thread([s = source.get()] { s->Run(); });
  return source;
}

KeySource::~KeySource() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    wake_.SignalAll();
  }
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const KeySet> KeySource::Keys() const {
  absl::ReaderMutexLock lock(&mu_);
  return keys_;
}

bool KeySource::RefreshSoon() {
  absl::MutexLock lock(&mu_);
  ++requests_;
  const bool starts_now =
      absl::Now() >= last_load_start_ + options_.min_refresh_gap;
  // Already pending: the reload it schedules will answer this request too.
  if (refresh_requested_) return starts_now;
  refresh_requested_ = true;
  wake_.Signal();
  return starts_now;
}

bool KeySource::AwaitRefresh(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const int64_t target = requests_;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || requests_answered_ >= target;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return !stop_ && requests_answered_ >= target;
}

int64_t KeySource::refresh_count() const {
  absl::ReaderMutexLock lock(&mu_);
  return refresh_count_;
}

int64_t KeySource::refresh_failure_count() const {
  absl::ReaderMutexLock lock(&mu_);
  return refresh_failure_count_;
}

std::string KeySource::Describe() const {
  if (!options_.jwks_file.empty()) return options_.jwks_file;
  if (!options_.jwks_url.empty()) return options_.jwks_url;
  return absl::StrCat("OpenID issuer ", options_.oidc_issuer);
}

absl::StatusOr<std::string> KeySource::Fetch(const std::string& url) const {
  return HttpGet(url, options_, &stopping_);
}

absl::StatusOr<std::shared_ptr<const KeySet>> KeySource::LoadFile(
    bool force, bool* unchanged) {
  struct stat st;
  if (::stat(options_.jwks_file.c_str(), &st) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot stat ", options_.jwks_file, ": ", std::strerror(errno)));
  }
  // Taken before the read: a change during the read then differs from it and
  // is picked up next time, never missed.
  FileVersion version;
  version.device = static_cast<uint64_t>(st.st_dev);
  version.inode = static_cast<uint64_t>(st.st_ino);
  version.size = static_cast<int64_t>(st.st_size);
  version.mtime_ns =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  if (!force && version == loaded_version_) {
    *unchanged = true;
    return nullptr;
  }
  ASSIGN_OR_RETURN(std::string json, ReadSmallFile(options_.jwks_file));
  ASSIGN_OR_RETURN(KeySet keys, ParseJwks(json));
  loaded_version_ = version;
  return std::make_shared<const KeySet>(std::move(keys));
}

absl::StatusOr<std::shared_ptr<const KeySet>> KeySource::Load(bool force,
                                                              bool* unchanged) {
  *unchanged = false;
  if (!options_.jwks_file.empty()) return LoadFile(force, unchanged);
  std::string jwks_url = options_.jwks_url;
  if (!options_.oidc_issuer.empty()) {
    // Discovered on every load, so a provider moving its jwks_uri is followed.
    const std::string discovery =
        absl::StrCat(absl::StripSuffix(options_.oidc_issuer, "/"),
                     "/.well-known/openid-configuration");
    ASSIGN_OR_RETURN(std::string document, Fetch(discovery));
    ASSIGN_OR_RETURN(jwks_url,
                     JwksUriFromDiscovery(document, options_.oidc_issuer,
                                          options_.allow_http));
  }
  ASSIGN_OR_RETURN(std::string json, Fetch(jwks_url));
  ASSIGN_OR_RETURN(KeySet keys, ParseJwks(json));
  return std::make_shared<const KeySet>(std::move(keys));
}

void KeySource::Run() {
  mu_.Lock();
  while (!stop_) {
    absl::Time due = last_load_start_ + options_.refresh_interval;
    if (refresh_requested_) {
      due = std::min(due, last_load_start_ + options_.min_refresh_gap);
    }
    const absl::Time now = absl::Now();
    if (now < due) {
      // Woken early by RefreshSoon or the destructor; the loop re-decides.
      wake_.WaitWithDeadline(&mu_, due);
      continue;
    }
    const bool force = refresh_requested_;
    refresh_requested_ = false;
    last_load_start_ = now;
    // Every request so far is answered by this reload, which starts now.
    const int64_t answers = requests_;

    mu_.Unlock();
    bool unchanged = false;
    absl::StatusOr<std::shared_ptr<const KeySet>> keys =
        Load(force, &unchanged);
    if (!keys.ok() && !stopping_.load()) {
      Log("warning", "key set refresh failed; keeping the last good keys",
          {{"source", Describe()}, {"error", keys.status().ToString()}});
    }
    mu_.Lock();

    if (keys.ok() && !unchanged) {
      keys_ = *std::move(keys);
      ++refresh_count_;
    } else if (!keys.ok() && !stop_) {
      ++refresh_failure_count_;
    }
    requests_answered_ = answers;
  }
  mu_.Unlock();
}

bool Base64UrlDecode(absl::string_view in, std::string* out) {
  if (in.size() % 4 == 1) return false;
  out->clear();
  out->reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '-') {
      v = 62;
    } else if (c == '_') {
      v = 63;
    } else {
      return false;
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xFF));
      acc &= (1u << bits) - 1;
    }
  }
  return acc == 0;
}

}  // namespace custos
