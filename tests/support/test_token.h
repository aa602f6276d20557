#ifndef CUSTOS_TESTS_SUPPORT_TEST_TOKEN_H_
#define CUSTOS_TESTS_SUPPORT_TEST_TOKEN_H_

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace custos::testing {

// A bearer token for `subject` with staff `roles`, signed HS256 with
// `secret` (what the services read from --jwt_hs256_secret_file), issued
// now and valid for `ttl`, with the services' default issuer and audience.
std::string TestToken(const std::string& secret, const std::string& subject,
                      std::vector<std::string> roles = {},
                      absl::Duration ttl = absl::Hours(2));

}  // namespace custos::testing

#endif  // CUSTOS_TESTS_SUPPORT_TEST_TOKEN_H_
