// Mints a development JWT accepted by the Custos services (DESIGN §3, §6).
//
//   mint_token --sub=alice --roles=customer_care,platform_admin --ttl=8h
//
// Prints the token and a newline on stdout; on error, prints a message on
// stderr and exits with status 2.

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/auth.h"

namespace {

constexpr char kSecretFileEnv[] = "CUSTOS_JWT_HS256_SECRET_FILE";

std::string SecretFileFromEnvironment() {
  const char* value = std::getenv(kSecretFileEnv);
  return value == nullptr ? "" : value;
}

}  // namespace

ABSL_FLAG(std::string, sub, "", "Token subject (user id); required.");
ABSL_FLAG(std::string, roles, "",
          "Comma-separated staff roles (customer_care, platform_admin, "
          "service); may be empty.");
ABSL_FLAG(absl::Duration, ttl, absl::Hours(1), "Token lifetime.");
ABSL_FLAG(std::string, secret_file, SecretFileFromEnvironment(),
          "File holding the raw HS256 secret. Default: "
          "$CUSTOS_JWT_HS256_SECRET_FILE.");
ABSL_FLAG(std::string, rs256_private_key_file, "",
          "PEM RSA private key; signs RS256 instead of HS256.");
ABSL_FLAG(std::string, issuer, "custos-dev", "The `iss` claim.");
ABSL_FLAG(std::string, audience, "custos", "The `aud` claim.");

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("--", flag, ": cannot read ", path));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(
        absl::StrCat("--", flag, ": error reading ", path));
  }
  return contents.str();
}

absl::StatusOr<std::string> Mint() {
  custos::JwtClaims claims;
  claims.subject = absl::GetFlag(FLAGS_sub);
  if (claims.subject.empty()) return absl::InvalidArgumentError("no --sub");
  for (absl::string_view role : absl::StrSplit(absl::GetFlag(FLAGS_roles), ',',
                                               absl::SkipWhitespace())) {
    claims.roles.emplace_back(absl::StripAsciiWhitespace(role));
  }
  const absl::Duration ttl = absl::GetFlag(FLAGS_ttl);
  if (ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--ttl must be positive");
  }
  claims.issuer = absl::GetFlag(FLAGS_issuer);
  claims.audience = absl::GetFlag(FLAGS_audience);
  claims.issued_at = absl::Now();
  claims.expires_at = claims.issued_at + ttl;

  const std::string rs256_key_file =
      absl::GetFlag(FLAGS_rs256_private_key_file);
  const std::string secret_file = absl::GetFlag(FLAGS_secret_file);
  if (!rs256_key_file.empty()) {
    // A secret file inherited from the environment is only a default, so an
    // explicit RS256 key overrides it; two explicit keys are ambiguous.
    if (!secret_file.empty() && secret_file != SecretFileFromEnvironment()) {
      return absl::InvalidArgumentError(
          "give only one of --secret_file and --rs256_private_key_file");
    }
    absl::StatusOr<std::string> pem =
        ReadFile(rs256_key_file, "rs256_private_key_file");
    if (!pem.ok()) return pem.status();
    return custos::SignJwtRs256(claims, *pem);
  }
  if (secret_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no --secret_file (nor $", kSecretFileEnv,
                     ") and no --rs256_private_key_file"));
  }
  absl::StatusOr<std::string> secret = ReadFile(secret_file, "secret_file");
  if (!secret.ok()) return secret.status();
  if (secret->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--secret_file: ", secret_file, " is empty"));
  }
  return custos::SignJwtHs256(claims, *secret);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Mints a development JWT for Custos and prints it.\n"
      "  mint_token --sub=USER [--roles=a,b] [--ttl=1h] "
      "[--secret_file=F | --rs256_private_key_file=F]");
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::cerr << "mint_token: unexpected argument: " << positional[1]
              << std::endl;
    return 2;
  }
  absl::StatusOr<std::string> token = Mint();
  if (!token.ok()) {
    std::cerr << "mint_token: " << token.status().message() << std::endl;
    return 2;
  }
  std::cout << *token << std::endl;
  return std::cout.good() ? 0 : 2;
}
