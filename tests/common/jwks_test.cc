#include "common/jwks.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace custos {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

// Generous: these only bound how long a broken build hangs, never how long a
// passing run takes.
constexpr absl::Duration kWait = absl::Seconds(30);
constexpr absl::string_view kInput = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0";

struct KeyPair {
  std::string public_pem;
  std::string private_pem;
};

std::string DrainBio(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

KeyPair ToPems(EVP_PKEY* key) {
  KeyPair pair;
  std::unique_ptr<BIO, decltype(&BIO_free)> pub(BIO_new(BIO_s_mem()),
                                                &BIO_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> priv(BIO_new(BIO_s_mem()),
                                                 &BIO_free);
  EXPECT_EQ(PEM_write_bio_PUBKEY(pub.get(), key), 1);
  EXPECT_EQ(PEM_write_bio_PrivateKey(priv.get(), key, nullptr, nullptr, 0,
                                     nullptr, nullptr),
            1);
  pair.public_pem = DrainBio(pub.get());
  pair.private_pem = DrainBio(priv.get());
  EVP_PKEY_free(key);
  return pair;
}

KeyPair MakeRsa(size_t bits) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits);
  EXPECT_NE(key, nullptr);
  return ToPems(key);
}

KeyPair MakeP256() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  EXPECT_NE(key, nullptr);
  return ToPems(key);
}

std::string Jwk(const KeyPair& pair, absl::string_view kid) {
  absl::StatusOr<std::string> jwk = PemToPublicJwk(pair.public_pem, kid);
  EXPECT_TRUE(jwk.ok()) << jwk.status();
  return jwk.value_or("");
}

std::string Jwks(const std::vector<std::string>& jwks) {
  std::string out = R"({"keys":[)";
  for (size_t i = 0; i < jwks.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append(jwks[i]);
  }
  out.append("]}");
  return out;
}

google::protobuf::Struct ParseObject(absl::string_view json) {
  google::protobuf::Struct out;
  EXPECT_TRUE(
      google::protobuf::util::JsonStringToMessage(std::string(json), &out).ok())
      << json;
  return out;
}

std::string ToJson(const google::protobuf::Struct& object) {
  std::string out;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(object, &out).ok());
  return out;
}

// `jwk` with member `name` set to the string `value`.
std::string WithMember(absl::string_view jwk, const std::string& name,
                       const std::string& value) {
  google::protobuf::Struct object = ParseObject(jwk);
  (*object.mutable_fields())[name].set_string_value(value);
  return ToJson(object);
}

TEST(ParseJwksTest, RsaRoundTripSignAndVerify) {
  const KeyPair pair = MakeRsa(2048);
  const std::string jwk = Jwk(pair, "rsa-1");
  // The private key yields the same public JWK.
  absl::StatusOr<std::string> from_private =
      PemToPublicJwk(pair.private_pem, "rsa-1");
  ASSERT_TRUE(from_private.ok()) << from_private.status();
  EXPECT_EQ(*from_private, jwk);
  EXPECT_THAT(jwk, HasSubstr(R"("use":"sig")"));
  EXPECT_THAT(jwk, ::testing::Not(HasSubstr(R"("d")")));

  absl::StatusOr<KeySet> keys = ParseJwks(Jwks({jwk}));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_THAT(*keys, SizeIs(1));
  EXPECT_EQ((*keys)[0].kid, "rsa-1");
  EXPECT_EQ((*keys)[0].alg, "RS256");
  ASSERT_NE((*keys)[0].public_key, nullptr);

  absl::StatusOr<std::string> sig = SignJws("RS256", pair.private_pem, kInput);
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_TRUE(VerifyJwsSignature((*keys)[0], kInput, *sig));
  EXPECT_FALSE(VerifyJwsSignature((*keys)[0], absl::StrCat(kInput, "x"), *sig));
  std::string flipped = *sig;
  flipped[10] ^= 1;
  EXPECT_FALSE(VerifyJwsSignature((*keys)[0], kInput, flipped));
  EXPECT_EQ(ERR_peek_error(), 0u);

  absl::StatusOr<KeySet> other = ParseJwks(Jwks({Jwk(MakeRsa(2048), "")}));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ((*other)[0].kid, "");
  EXPECT_FALSE(VerifyJwsSignature((*other)[0], kInput, *sig));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(ParseJwksTest, Es256RoundTripSignAndVerify) {
  const KeyPair pair = MakeP256();
  const std::string jwk = Jwk(pair, "ec-1");
  EXPECT_THAT(jwk, HasSubstr(R"("crv":"P-256")"));
  absl::StatusOr<KeySet> keys = ParseJwks(Jwks({jwk}));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_THAT(*keys, SizeIs(1));
  const VerificationKey& key = (*keys)[0];
  EXPECT_EQ(key.kid, "ec-1");
  EXPECT_EQ(key.alg, "ES256");

  absl::StatusOr<std::string> sig = SignJws("ES256", pair.private_pem, kInput);
  ASSERT_TRUE(sig.ok()) << sig.status();
  ASSERT_EQ(sig->size(), 64u);
  EXPECT_TRUE(VerifyJwsSignature(key, kInput, *sig));
  EXPECT_FALSE(VerifyJwsSignature(key, absl::StrCat(kInput, "x"), *sig));
  // Only the raw 64-byte form is accepted (DER would be 70-72 bytes).
  EXPECT_FALSE(VerifyJwsSignature(key, kInput, sig->substr(0, 63)));
  EXPECT_FALSE(VerifyJwsSignature(key, kInput,
                                  absl::StrCat(*sig, std::string(1, '\0'))));
  EXPECT_FALSE(VerifyJwsSignature(key, kInput, ""));
  EXPECT_EQ(ERR_peek_error(), 0u);

  absl::StatusOr<KeySet> other = ParseJwks(Jwks({Jwk(MakeP256(), "ec-2")}));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_FALSE(VerifyJwsSignature((*other)[0], kInput, *sig));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(VerifyJwsSignatureTest, AlgorithmPinsKeyType) {
  const KeyPair rsa = MakeRsa(2048);
  absl::StatusOr<KeySet> keys = ParseJwks(Jwks({Jwk(rsa, "r")}));
  ASSERT_TRUE(keys.ok()) << keys.status();
  absl::StatusOr<std::string> sig = SignJws("RS256", rsa.private_pem, kInput);
  ASSERT_TRUE(sig.ok());
  VerificationKey relabelled = (*keys)[0];
  relabelled.alg = "ES256";
  EXPECT_FALSE(VerifyJwsSignature(relabelled, kInput, *sig));
  relabelled.alg = "none";
  EXPECT_FALSE(VerifyJwsSignature(relabelled, kInput, *sig));

  EXPECT_EQ(SignJws("ES256", rsa.private_pem, kInput).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SignJws("RS256", MakeP256().private_pem, kInput).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SignJws("HS256", rsa.private_pem, kInput).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SignJws("RS256", "not a pem", kInput).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(VerifyJwsSignatureTest, Hs256) {
  const std::string secret = "0123456789abcdef0123456789abcdef";
  unsigned char mac[32];
  unsigned int mac_len = 0;
  ASSERT_NE(HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
                 reinterpret_cast<const unsigned char*>(kInput.data()),
                 kInput.size(), mac, &mac_len),
            nullptr);
  const std::string sig(reinterpret_cast<const char*>(mac), mac_len);
  VerificationKey key;
  key.alg = "HS256";
  key.secret = secret;
  EXPECT_TRUE(VerifyJwsSignature(key, kInput, sig));
  EXPECT_FALSE(VerifyJwsSignature(key, absl::StrCat(kInput, "x"), sig));
  EXPECT_FALSE(VerifyJwsSignature(key, kInput, sig.substr(1)));
  key.secret.clear();
  EXPECT_FALSE(VerifyJwsSignature(key, kInput, sig));
}

TEST(ParseJwksTest, RefusesShortRsaKey) {
  const KeyPair weak = MakeRsa(1024);
  absl::StatusOr<KeySet> keys = ParseJwks(Jwks({Jwk(weak, "weak")}));
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(keys.status().message(), HasSubstr("1024"));
  EXPECT_EQ(SignJws("RS256", weak.private_pem, kInput).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseJwksTest, SkipsOctEncryptionAndUnknownKeys) {
  const std::string good = Jwk(MakeP256(), "good");
  const std::string oct = R"({"kty":"oct","kid":"sym","k":"c2VjcmV0"})";
  const std::string enc = WithMember(Jwk(MakeRsa(2048), "enc"), "use", "enc");
  const std::string ps256 =
      WithMember(Jwk(MakeRsa(2048), "pss"), "alg", "PS256");
  const std::string p384 =
      R"({"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA"})";
  const std::string okp = R"({"kty":"OKP","crv":"Ed25519","x":"AAAA"})";
  absl::StatusOr<KeySet> keys =
      ParseJwks(Jwks({oct, enc, ps256, p384, okp, good}));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_THAT(*keys, SizeIs(1));
  EXPECT_EQ((*keys)[0].kid, "good");

  // Nothing usable left is an error, not an empty set.
  EXPECT_EQ(ParseJwks(Jwks({oct, enc})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseJwks(R"({"keys":[]})").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseJwksTest, RefusesMalformedDocuments) {
  for (absl::string_view json :
       {"", "[]", "not json", R"({"keys":{}})", R"({"other":[]})",
        R"({"keys":["x"]})", R"({"keys":[{"kid":"no-kty"}]})",
        R"({"keys":[{"kty":"RSA","n":"AQAB"}]})",
        R"({"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]})",
        R"({"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]})"}) {
    EXPECT_EQ(ParseJwks(json).status().code(),
              absl::StatusCode::kInvalidArgument)
        << json;
  }
}

TEST(ParseJwksTest, RefusesDuplicateKids) {
  const std::string a = Jwk(MakeP256(), "same");
  const std::string b = Jwk(MakeRsa(2048), "same");
  absl::StatusOr<KeySet> keys = ParseJwks(Jwks({a, b}));
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(keys.status().message(), HasSubstr("same"));

  // A skipped key does not collide, and keys without a kid never do.
  EXPECT_TRUE(ParseJwks(Jwks({a, WithMember(b, "use", "enc")})).ok());
  EXPECT_TRUE(ParseJwks(Jwks({Jwk(MakeP256(), ""), Jwk(MakeP256(), "")})).ok());
}

TEST(ParseJwksTest, RefusesPointNotOnCurve) {
  google::protobuf::Struct jwk = ParseObject(Jwk(MakeP256(), "ec"));
  std::string y;
  ASSERT_TRUE(
      absl::WebSafeBase64Unescape(jwk.fields().at("y").string_value(), &y));
  ASSERT_EQ(y.size(), 32u);
  y[31] ^= 1;
  (*jwk.mutable_fields())["y"].set_string_value(absl::WebSafeBase64Escape(y));
  absl::StatusOr<KeySet> keys = ParseJwks(Jwks({ToJson(jwk)}));
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(keys.status().message(), HasSubstr("curve"));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// ---- KeySource with a file --------------------------------------------------

class KeySourceFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir_template = ::testing::TempDir() + "/jwks_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template.data()), nullptr);
    dir_ = dir_template;
    path_ = dir_ + "/jwks.json";
  }
  void TearDown() override {
    std::remove(path_.c_str());
    std::remove((path_ + ".tmp").c_str());
    rmdir(dir_.c_str());
  }

  // Replaces the file by rename, as a deployment would, so a reader never
  // sees it half-written.
  void WriteJwks(absl::string_view contents) {
    const std::string tmp = path_ + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(contents.data(), 1, contents.size(), f),
              contents.size());
    ASSERT_EQ(std::fclose(f), 0);
    ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  }

  KeySourceOptions Options() const {
    KeySourceOptions options;
    options.jwks_file = path_;
    // Reloads in these tests come from RefreshSoon only.
    options.refresh_interval = absl::Hours(1);
    options.min_refresh_gap = absl::ZeroDuration();
    return options;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(KeySourceFileTest, PicksUpRewrittenFileAndKeepsLastGoodSet) {
  WriteJwks(Jwks({Jwk(MakeP256(), "first")}));
  absl::StatusOr<std::unique_ptr<KeySource>> source =
      KeySource::Start(Options());
  ASSERT_TRUE(source.ok()) << source.status();
  KeySource& keys = **source;
  ASSERT_NE(keys.Keys(), nullptr);
  ASSERT_THAT(*keys.Keys(), SizeIs(1));
  EXPECT_EQ((*keys.Keys())[0].kid, "first");
  EXPECT_EQ(keys.refresh_count(), 1);
  // Nothing outstanding: returns at once.
  EXPECT_TRUE(keys.AwaitRefresh(kWait));

  const std::shared_ptr<const KeySet> before = keys.Keys();
  WriteJwks(Jwks({Jwk(MakeP256(), "second"), Jwk(MakeRsa(2048), "third")}));
  keys.RefreshSoon();
  ASSERT_TRUE(keys.AwaitRefresh(kWait));
  ASSERT_THAT(*keys.Keys(), SizeIs(2));
  EXPECT_EQ((*keys.Keys())[0].kid, "second");
  EXPECT_EQ((*keys.Keys())[1].kid, "third");
  EXPECT_EQ(keys.refresh_count(), 2);
  // An old snapshot stays valid after the swap.
  EXPECT_EQ((*before)[0].kid, "first");

  WriteJwks("{ this is not a key set");
  keys.RefreshSoon();
  ASSERT_TRUE(keys.AwaitRefresh(kWait));
  EXPECT_EQ(keys.refresh_failure_count(), 1);
  EXPECT_EQ(keys.refresh_count(), 2);
  ASSERT_THAT(*keys.Keys(), SizeIs(2));
  EXPECT_EQ((*keys.Keys())[0].kid, "second");

  // Recovers once the file is good again.
  WriteJwks(Jwks({Jwk(MakeP256(), "fourth")}));
  keys.RefreshSoon();
  ASSERT_TRUE(keys.AwaitRefresh(kWait));
  EXPECT_EQ((*keys.Keys())[0].kid, "fourth");
  EXPECT_EQ(keys.refresh_count(), 3);
}

TEST_F(KeySourceFileTest, FirstLoadMustSucceed) {
  absl::StatusOr<std::unique_ptr<KeySource>> missing =
      KeySource::Start(Options());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(missing.status().message(), HasSubstr(path_));

  WriteJwks(R"({"keys":[]})");
  EXPECT_EQ(KeySource::Start(Options()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KeySourceFileTest, RefreshSoonIsRateLimited) {
  WriteJwks(Jwks({Jwk(MakeP256(), "first")}));
  KeySourceOptions options = Options();
  options.min_refresh_gap = absl::Hours(1);
  absl::StatusOr<std::unique_ptr<KeySource>> source = KeySource::Start(options);
  ASSERT_TRUE(source.ok()) << source.status();
  WriteJwks(Jwks({Jwk(MakeP256(), "second")}));
  (*source)->RefreshSoon();
  // The first load started just now, so the reload waits out the gap. The
  // short timeout is an upper bound on the wait, not a timing assumption.
  EXPECT_FALSE((*source)->AwaitRefresh(absl::Milliseconds(50)));
  EXPECT_EQ((*(*source)->Keys())[0].kid, "first");
  EXPECT_EQ((*source)->refresh_count(), 1);
  // Destruction does not wait for the pending reload.
}

// Issue 13: gRPC's reaction threads never wait for a key set. A token whose
// `kid` is not known yet is answered at once with NeedsKeyRefresh by
// VerifyWithoutWaiting (the caller moves it to a thread that may wait);
// Verify waits for the reload and accepts it once the provider has the key.
TEST_F(KeySourceFileTest, VerifyWithoutWaitingNeverWaitsForAnUnknownKid) {
  const KeyPair first = MakeP256();
  const KeyPair second = MakeP256();
  WriteJwks(Jwks({Jwk(first, "first")}));
  absl::StatusOr<std::unique_ptr<KeySource>> source =
      KeySource::Start(Options());
  ASSERT_TRUE(source.ok()) << source.status();
  JwtVerifierOptions options;
  options.key_source = std::shared_ptr<KeySource>(std::move(*source));
  options.unknown_kid_wait = kWait;
  absl::StatusOr<JwtVerifier> verifier =
      JwtVerifier::Create(options, RealClock::Get());
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  JwtClaims claims;
  claims.subject = "joan";
  claims.issued_at = absl::Now();
  claims.expires_at = absl::Now() + absl::Hours(1);
  absl::StatusOr<std::string> known =
      SignJwt(claims, "ES256", "first", first.private_pem);
  absl::StatusOr<std::string> rotated =
      SignJwt(claims, "ES256", "second", second.private_pem);
  ASSERT_TRUE(known.ok() && rotated.ok());
  EXPECT_TRUE(verifier->VerifyWithoutWaiting(*known).ok());

  const absl::Time asked = absl::Now();
  absl::StatusOr<Principal> inline_answer =
      verifier->VerifyWithoutWaiting(*rotated);
  // An upper bound on "at once", far below the 30 s it could wait.
  EXPECT_LT(absl::Now() - asked, absl::Seconds(5));
  EXPECT_TRUE(NeedsKeyRefresh(inline_answer.status()))
      << inline_answer.status();

  // The provider publishes the new key; the waiting path picks it up.
  WriteJwks(Jwks({Jwk(first, "first"), Jwk(second, "second")}));
  absl::StatusOr<Principal> waited = verifier->Verify(*rotated);
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->subject, "joan");
  // Unknown and made-up kids alike are never UNAUTHENTICATED inline: the
  // decision is left to the thread that may wait.
  EXPECT_FALSE(NeedsKeyRefresh(absl::UnauthenticatedError("bad signature")));
}

TEST(KeySourceOptionsTest, RefusesBadOptions) {
  KeySourceOptions none;
  EXPECT_EQ(KeySource::Start(none).status().code(),
            absl::StatusCode::kInvalidArgument);
  KeySourceOptions two;
  two.jwks_file = "/nonexistent";
  two.jwks_url = "https://example.invalid/jwks";
  EXPECT_EQ(KeySource::Start(two).status().code(),
            absl::StatusCode::kInvalidArgument);
  KeySourceOptions plain;
  plain.jwks_url = "http://127.0.0.1:1/jwks";
  EXPECT_EQ(KeySource::Start(plain).status().code(),
            absl::StatusCode::kInvalidArgument);
  KeySourceOptions ftp;
  ftp.jwks_url = "ftp://127.0.0.1/jwks";
  ftp.allow_http = true;
  EXPECT_EQ(KeySource::Start(ftp).status().code(),
            absl::StatusCode::kInvalidArgument);
  KeySourceOptions zero;
  zero.jwks_file = "/nonexistent";
  zero.refresh_interval = absl::ZeroDuration();
  EXPECT_EQ(KeySource::Start(zero).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- KeySource over HTTP ----------------------------------------------------

// Serves fixed responses by path on 127.0.0.1, one request per connection.
class TinyHttpServer {
 public:
  struct Response {
    int status = 200;
    std::string body;
    std::string extra_headers;  // Each ends in "\r\n".
  };

  TinyHttpServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen";
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }

  ~TinyHttpServer() {
    // Wakes the blocked accept().
    shutdown(fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }

  std::string base() const { return absl::StrCat("http://127.0.0.1:", port_); }

  void Set(const std::string& path, Response response) {
    absl::MutexLock lock(&mu_);
    routes_[path] = std::move(response);
  }

 private:
  void Serve() {
    while (true) {
      const int conn = accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos &&
             request.size() < 65536) {
        const ssize_t n = read(conn, buf, sizeof(buf));
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      std::vector<std::string> line =
          absl::StrSplit(request.substr(0, request.find("\r\n")), ' ');
      Response response{404, "not found", ""};
      if (line.size() >= 2) {
        absl::MutexLock lock(&mu_);
        auto it = routes_.find(line[1]);
        if (it != routes_.end()) response = it->second;
      }
      const std::string reply =
          absl::StrCat("HTTP/1.1 ", response.status,
                       " X\r\nContent-Length: ", response.body.size(),
                       "\r\nConnection: close\r\n", response.extra_headers,
                       "\r\n", response.body);
      size_t sent = 0;
      while (sent < reply.size()) {
        const ssize_t n =
            send(conn, reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      close(conn);
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Response> routes_ ABSL_GUARDED_BY(mu_);
};

class KeySourceHttpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // KeySource's REQUIRES; main does this in a service.
    ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
  }

  KeySourceOptions Options() const {
    KeySourceOptions options;
    options.allow_http = true;
    options.refresh_interval = absl::Hours(1);
    options.min_refresh_gap = absl::ZeroDuration();
    return options;
  }

  TinyHttpServer server_;
};

TEST_F(KeySourceHttpTest, LoadsFromUrl) {
  server_.Set("/jwks", {200, Jwks({Jwk(MakeP256(), "web")}), ""});
  KeySourceOptions options = Options();
  options.jwks_url = server_.base() + "/jwks";
  absl::StatusOr<std::unique_ptr<KeySource>> source = KeySource::Start(options);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ((*(*source)->Keys())[0].kid, "web");

  // A failing server keeps the last good set.
  server_.Set("/jwks", {500, "oops", ""});
  (*source)->RefreshSoon();
  ASSERT_TRUE((*source)->AwaitRefresh(kWait));
  EXPECT_EQ((*source)->refresh_failure_count(), 1);
  EXPECT_EQ((*(*source)->Keys())[0].kid, "web");
}

TEST_F(KeySourceHttpTest, RefusesRedirectsBadStatusAndHugeBodies) {
  server_.Set("/jwks", {200, Jwks({Jwk(MakeP256(), "web")}), ""});
  server_.Set("/moved", {302, "", "Location: /jwks\r\n"});
  server_.Set("/huge", {200, std::string(2 << 20, ' '), ""});
  KeySourceOptions options = Options();
  options.jwks_url = server_.base() + "/moved";
  absl::StatusOr<std::unique_ptr<KeySource>> moved = KeySource::Start(options);
  EXPECT_EQ(moved.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(moved.status().message(), HasSubstr("302"));

  options.jwks_url = server_.base() + "/huge";
  absl::StatusOr<std::unique_ptr<KeySource>> huge = KeySource::Start(options);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(huge.status().message(), HasSubstr("1 MiB"));

  options.jwks_url = server_.base() + "/missing";
  EXPECT_EQ(KeySource::Start(options).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(KeySourceHttpTest, OidcDiscoveryChecksIssuer) {
  const std::string issuer = server_.base();
  server_.Set("/jwks", {200, Jwks({Jwk(MakeRsa(2048), "oidc")}), ""});
  server_.Set("/.well-known/openid-configuration",
              {200,
               absl::StrCat(R"({"issuer":")", issuer, R"(/","jwks_uri":")",
                            issuer, R"(/jwks"})"),
               ""});
  KeySourceOptions options = Options();
  options.oidc_issuer = issuer;  // The document's trailing slash is ignored.
  absl::StatusOr<std::unique_ptr<KeySource>> source = KeySource::Start(options);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ((*(*source)->Keys())[0].kid, "oidc");

  server_.Set("/.well-known/openid-configuration",
              {200,
               absl::StrCat(R"({"issuer":"https://evil.example","jwks_uri":")",
                            issuer, R"(/jwks"})"),
               ""});
  absl::StatusOr<std::unique_ptr<KeySource>> wrong = KeySource::Start(options);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("issuer"));
}

}  // namespace
}  // namespace custos
