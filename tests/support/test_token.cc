#include "tests/support/test_token.h"

#include <utility>

#include "absl/time/clock.h"
#include "common/auth.h"

namespace custos::testing {

std::string TestToken(const std::string& secret, const std::string& subject,
                      std::vector<std::string> roles, absl::Duration ttl) {
  JwtClaims claims;
  claims.subject = subject;
  claims.roles = std::move(roles);
  claims.issued_at = absl::Now();
  claims.expires_at = absl::Now() + ttl;
  return SignJwtHs256(claims, secret);
}

}  // namespace custos::testing
