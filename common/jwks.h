#ifndef CUSTOS_COMMON_JWKS_H_
#define CUSTOS_COMMON_JWKS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

// OpenSSL's EVP_PKEY, declared here so the header does not pull in OpenSSL.
struct evp_pkey_st;

namespace custos {

// JSON Web Key Sets (RFC 7517) for verifying JWS signatures (RFC 7515/7518):
// parsing, signature checks, and a KeySource that keeps a set fresh from a
// file, a URL or an OpenID Connect issuer.

// RFC 7515 base64url without padding, strict: padding, whitespace and
// non-zero trailing bits are rejected, so each byte string has exactly one
// accepted encoding. False (and `out` unspecified) on anything else.
bool Base64UrlDecode(absl::string_view in, std::string* out);

// One verification key.
struct VerificationKey {
  std::string kid;  // "" when the JWK has none.
  std::string alg;  // "RS256", "ES256" or "HS256"; pins what the key checks.
  // RS256: an RSA key of >= 2048 bits. ES256: an EC P-256 key. Else null.
  std::shared_ptr<evp_pkey_st> public_key;
  std::string secret;  // HS256: the raw secret bytes. Else empty.
};
using KeySet = std::vector<VerificationKey>;

// Parses RFC 7517 JWKS JSON `{"keys":[...]}` into its usable signature keys,
// in document order:
//   kty "RSA" with n, e (modulus 2048..16384 bits; alg absent or "RS256")
//     -> alg "RS256";
//   kty "EC", crv "P-256" with x, y of 32 bytes each, on the curve (alg absent
//     or "ES256") -> alg "ES256".
// Skipped, not failed on: "use" other than "sig"; "key_ops" without "verify";
// an unknown kty, crv or alg (including an alg that does not fit the kty);
// kty "oct" (a symmetric key never comes from a published key set).
// Returns INVALID_ARGUMENT when the JSON is not an object with a "keys" array,
// when an entry is not an object or a member has the wrong JSON type, when a
// key of a supported type is malformed or too weak (one bad key fails the
// whole set rather than silently shrinking it), when no usable key remains,
// or when two usable keys share a non-empty kid.
absl::StatusOr<KeySet> ParseJwks(absl::string_view json);

// Converts a PEM "PUBLIC KEY" (RSA or EC P-256) or an unencrypted PEM private
// key to the text of one JWK object, public parameters only:
// {"kty":..,"kid":..,"alg":..,"use":"sig",...} ("kid" omitted when empty).
// Does not judge RSA key strength; ParseJwks does. For tools and tests.
// INVALID_ARGUMENT when the PEM cannot be read or is another key type/curve.
absl::StatusOr<std::string> PemToPublicJwk(absl::string_view pem,
                                           absl::string_view kid);

// Whether `signature` (raw bytes, already base64url-decoded) is a valid
// signature over `signing_input` by `key` under key.alg. The key type must
// fit key.alg (RS256: RSA >= 2048 bits; ES256: EC P-256; HS256: non-empty
// secret, compared in constant time), else false. ES256 signatures are the
// 64-byte R||S form of RFC 7518 §3.4; any other length is false. Leaves
// OpenSSL's error queue clear. Thread-safe.
bool VerifyJwsSignature(const VerificationKey& key,
                        absl::string_view signing_input,
                        absl::string_view signature);

// Signs `signing_input` for alg "RS256" or "ES256" with an unencrypted PEM
// private key of the fitting type and returns the raw signature bytes (ES256:
// 64-byte R||S). INVALID_ARGUMENT for another alg or an unreadable or
// mismatched key; INTERNAL if OpenSSL fails to sign.
absl::StatusOr<std::string> SignJws(absl::string_view alg,
                                    absl::string_view private_key_pem,
                                    absl::string_view signing_input);

// Where keys come from; exactly one of jwks_file, jwks_url and oidc_issuer is
// set.
struct KeySourceOptions {
  // A JWKS JSON file, re-read when it changes (device, inode, size or mtime;
  // replace it by rename for an atomic update). RefreshSoon always re-reads.
  std::string jwks_file;
  // https:// URL of a JWKS.
  std::string jwks_url;
  // https:// issuer. Each load GETs <issuer>/.well-known/openid-configuration
  // and then its "jwks_uri"; the document's "issuer" must equal oidc_issuer
  // (one trailing slash ignored on both), else the load fails.
  std::string oidc_issuer;
  // CA bundle for HTTPS. Default: "" = libcurl's system default.
  std::string ca_file;
  // Default: 5 minutes. Must be positive.
  absl::Duration refresh_interval = absl::Minutes(5);
  // Minimum time between the starts of two loads caused by RefreshSoon.
  // Default: 10 s. Must not be negative.
  absl::Duration min_refresh_gap = absl::Seconds(10);
  // Whole-transfer limit of each HTTP request. Default: 5 s. Must be positive.
  absl::Duration fetch_timeout = absl::Seconds(5);
  // Tests/dev only: permit http:// URLs. Default: false, only https://.
  bool allow_http = false;
};

// Holds the current KeySet, reloaded on a background thread every
// refresh_interval and soon after RefreshSoon(). A failed reload keeps the
// last good set, logs a "warning" line (common/json_log.h) and counts in
// refresh_failure_count(). HTTP responses are capped at 1 MiB, redirects are
// not followed, and HTTP status must be 200.
//
// REQUIRES: for jwks_url / oidc_issuer, the process has called
// curl_global_init(CURL_GLOBAL_DEFAULT) (once, in main, before any thread
// starts) before Start.
//
// Thread-safe.
class KeySource {
 public:
  // Validates `options` (INVALID_ARGUMENT) and loads once synchronously, so
  // that a service refuses to start without keys: a failed first load returns
  // INVALID_ARGUMENT (bad content) or UNAVAILABLE (file or network) with a
  // message naming the source. Then starts the background thread.
  static absl::StatusOr<std::unique_ptr<KeySource>> Start(
      KeySourceOptions options);

  KeySource(const KeySource&) = delete;
  KeySource& operator=(const KeySource&) = delete;

  // Stops and joins the background thread; an HTTP transfer in progress is
  // aborted, so this does not wait out fetch_timeout.
  ~KeySource();

  // The current set; never null. Holding the snapshot keeps it alive across
  // a reload.
  std::shared_ptr<const KeySet> Keys() const;

  // Asks for an early reload, e.g. because a token named an unknown kid.
  // Non-blocking. A reload starts at once unless one started less than
  // min_refresh_gap ago, in which case it starts when the gap has passed;
  // requests made meanwhile coalesce into that one reload.
  // Returns whether that reload starts at once (not held back by the gap):
  // only then is it worth waiting for it on a caller's thread.
  bool RefreshSoon();

  // Blocks up to `timeout` until every RefreshSoon() made before this call
  // has been answered: a reload that started after that request has finished,
  // successfully or not (re-read Keys() afterwards). Returns whether that
  // happened; true at once when no request is outstanding, false on timeout
  // or when the source is being destroyed. Typical use on an unknown kid:
  // RefreshSoon(); if (AwaitRefresh(t)) look the kid up again. (Requests, not
  // "a reload that starts after this call", so that a reload which already
  // ran between the two calls counts.) If RefreshSoon was held back by
  // min_refresh_gap, the wait lasts until the gap has passed.
  bool AwaitRefresh(absl::Duration timeout);

  // Successful loads so far, the one in Start included. For tests.
  int64_t refresh_count() const;
  // Failed reloads so far (the first load never counts: Start fails instead).
  // For a metric, e.g. a Metrics::AddCollector in main.
  int64_t refresh_failure_count() const;

 private:
  // Identifies one version of jwks_file without reading it.
  struct FileVersion {
    uint64_t device = 0;
    uint64_t inode = 0;
    int64_t size = -1;
    int64_t mtime_ns = 0;
    bool operator==(const FileVersion& other) const;
  };

  explicit KeySource(KeySourceOptions options);

  // Fetches and parses the set. `*unchanged` is set when the file source saw
  // the version it last loaded and `force` was false; nothing is returned
  // then. Called only by Start (before the thread exists) and the thread.
  absl::StatusOr<std::shared_ptr<const KeySet>> Load(bool force,
                                                     bool* unchanged);
  absl::StatusOr<std::shared_ptr<const KeySet>> LoadFile(bool force,
                                                         bool* unchanged);
  absl::StatusOr<std::string> Fetch(const std::string& url) const;
  std::string Describe() const;
  void Run();

  const KeySourceOptions options_;
  // Set once at destruction; polled by HTTP transfers so they abort.
  std::atomic<bool> stopping_{false};
  // Touched only by Load, which never runs concurrently with itself.
  FileVersion loaded_version_;

  mutable absl::Mutex mu_;
  absl::CondVar wake_;  // Signalled on RefreshSoon and on stop.
  std::shared_ptr<const KeySet> keys_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool refresh_requested_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_load_start_ ABSL_GUARDED_BY(mu_);
  // RefreshSoon calls so far, and how many of them the last finished reload
  // answered (the count when it started).
  int64_t requests_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t requests_answered_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t refresh_count_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t refresh_failure_count_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread thread_;
};

}  // namespace custos

#endif  // CUSTOS_COMMON_JWKS_H_
