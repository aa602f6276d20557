// The role matrix loader: the default file is DESIGN's table, and every kind
// of mistake in a policy file is reported with its line.
#include "services/access_service/policy.h"

#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace custos::access {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

constexpr char kSiteRoles[] = R"(
permissions { name: "cases.self.view" }
permissions { name: "software.download" pilot_gated: true }
roles { name: "SITE_ROLE_VIEW_ONLY" permissions: "cases.self.view" }
roles { name: "SITE_ROLE_SITE_MEMBER" permissions: "cases.self.view" }
roles {
  name: "SITE_ROLE_SITE_ADMINISTRATOR"
  permissions: "cases.self.view"
  permissions: "software.download"
}
)";

std::string ErrorOf(const std::string& text) {
  auto policy = Policy::Parse(text, "p.textproto");
  EXPECT_FALSE(policy.ok());
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(policy.status().message());
}

TEST(PolicyTest, DefaultFileLoadsWithDesignsGrants) {
  auto policy =
      Policy::LoadFile(std::string(std::getenv("CUSTOS_SOURCE_DIR")) +
                       "/deploy/base/policy/default_policy.textproto");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_THAT(
      (*policy)->PermissionsOf(v1::SITE_ROLE_VIEW_ONLY),
      ElementsAre("cases.self.view", "software.download", "licenses.generate"));
  EXPECT_THAT((*policy)->PermissionsOfStaffRole("customer_care"),
              ElementsAre("site.requests.approve", "site.members.list",
                          "site.members.update_role", "site.members.remove"));
  EXPECT_THAT((*policy)->PermissionsOfStaffRole("platform_admin"), IsEmpty());
  // R9: exactly the two entitlement permissions are pilot-gated.
  EXPECT_TRUE((*policy)->IsPilotGated("software.download"));
  EXPECT_TRUE((*policy)->IsPilotGated("licenses.generate"));
  EXPECT_FALSE((*policy)->IsPilotGated("cases.self.view"));
  EXPECT_TRUE((*policy)->IsKnownPermission("site.members.remove"));
  EXPECT_FALSE((*policy)->IsKnownPermission("portal.login"));
}

TEST(PolicyTest, SyntaxErrorNamesLineAndColumn) {
  EXPECT_THAT(ErrorOf("permissions { name: \"a.b\" }\nroles { name: }\n"),
              StartsWith("p.textproto:2:"));
}

TEST(PolicyTest, UnknownRoleNamesItsLine) {
  std::string text = kSiteRoles;
  text += "roles { name: \"SITE_ROLE_OWNER\" }\n";
  EXPECT_THAT(ErrorOf(text), StartsWith("p.textproto:11:"));
  EXPECT_THAT(ErrorOf(text), HasSubstr("SITE_ROLE_OWNER"));
}

TEST(PolicyTest, UndeclaredPermissionNamesTheGrantsLine) {
  std::string text = kSiteRoles;
  text +=
      "roles {\n  name: \"customer_care\"\n  permissions: \"cases.all\"\n}\n";
  EXPECT_THAT(ErrorOf(text), StartsWith("p.textproto:13:"));
  EXPECT_THAT(ErrorOf(text), HasSubstr("cases.all"));
}

TEST(PolicyTest, DuplicatesAndBadNamesAreRefused) {
  EXPECT_THAT(ErrorOf(std::string(kSiteRoles) +
                      "permissions { name: \"cases.self.view\" }\n"),
              AllOf(StartsWith("p.textproto:11:"), HasSubstr("twice")));
  EXPECT_THAT(ErrorOf(std::string(kSiteRoles) +
                      "roles { name: \"SITE_ROLE_VIEW_ONLY\" }\n"),
              AllOf(StartsWith("p.textproto:11:"), HasSubstr("twice")));
  EXPECT_THAT(ErrorOf(std::string(kSiteRoles) +
                      "permissions { name: \"Cases.View\" }\n"),
              StartsWith("p.textproto:11:"));
}

TEST(PolicyTest, EverySiteRoleMustBeDeclared) {
  EXPECT_THAT(ErrorOf("permissions { name: \"a.b\" }\n"
                      "roles { name: \"SITE_ROLE_VIEW_ONLY\" }\n"),
              HasSubstr("SITE_ROLE_SITE_MEMBER is missing"));
}

TEST(PolicyTest, FingerprintFollowsTheContent) {
  auto a = Policy::Parse(kSiteRoles, "a");
  auto same = Policy::Parse(std::string("# a comment\n") + kSiteRoles, "b");
  std::string changed = kSiteRoles;
  changed.replace(changed.find("roles { name: \"SITE_ROLE_SITE_MEMBER\" "
                               "permissions: \"cases.self.view\" }"),
                  std::string("roles { name: \"SITE_ROLE_SITE_MEMBER\" "
                              "permissions: \"cases.self.view\" }")
                      .size(),
                  "roles { name: \"SITE_ROLE_SITE_MEMBER\" }");
  auto other = Policy::Parse(changed, "c");
  ASSERT_TRUE(a.ok() && same.ok() && other.ok());
  EXPECT_EQ((*a)->fingerprint(), (*same)->fingerprint());
  EXPECT_NE((*a)->fingerprint(), (*other)->fingerprint());
  EXPECT_EQ((*a)->fingerprint().size(), 16u);
}

}  // namespace
}  // namespace custos::access
