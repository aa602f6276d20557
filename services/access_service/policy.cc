#include "services/access_service/policy.h"

#include <openssl/sha.h>

#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/text_format.h"

namespace custos::access {
namespace {

using google::protobuf::TextFormat;

// Keeps the first syntax error with its position (0-based from protobuf).
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (message_.empty()) {
      line_ = line;
      column_ = column;
      message_ = message;
    }
  }
  int line_ = 0;
  int column_ = 0;
  std::string message_;
};

bool IsStaffRoleName(absl::string_view name) {
  return name == "customer_care" || name == "platform_admin" ||
         name == "service";
}

bool IsPermissionName(absl::string_view name) {
  if (name.empty() || name.front() == '.' || name.back() == '.') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '.')) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<const Policy>> Policy::Parse(
    absl::string_view text, absl::string_view source) {
  auto policy = std::unique_ptr<Policy>(new Policy);
  TextFormat::Parser parser;
  FirstError errors;
  TextFormat::ParseInfoTree tree;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(std::string(text), &policy->proto_)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", errors.line_ + 1, ":", errors.column_ + 1,
                     ": ", errors.message_));
  }
  const v1::Policy& proto = policy->proto_;
  const auto* descriptor = v1::Policy::descriptor();
  // "<source>:<line>:<column>: " of the index-th element of a field.
  auto at = [&](absl::string_view field, int index,
                const TextFormat::ParseInfoTree* in = nullptr) {
    TextFormat::ParseLocation location =
        (in != nullptr ? in : &tree)
            ->GetLocation(
                (in != nullptr ? v1::Policy::Role::descriptor() : descriptor)
                    ->FindFieldByName(std::string(field)),
                index);
    return absl::StrCat(source, ":", location.line + 1, ":",
                        location.column + 1, ": ");
  };
  for (int i = 0; i < proto.permissions_size(); ++i) {
    const auto& permission = proto.permissions(i);
    if (!IsPermissionName(permission.name())) {
      return absl::InvalidArgumentError(absl::StrCat(
          at("permissions", i), "permission name \"", permission.name(),
          "\" must be lowercase words joined by '.'"));
    }
    if (!policy->permissions_.insert(permission.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(at("permissions", i), "permission \"", permission.name(),
                       "\" is declared twice"));
    }
    if (permission.pilot_gated()) policy->gated_.insert(permission.name());
  }
  for (int i = 0; i < proto.roles_size(); ++i) {
    const auto& role = proto.roles(i);
    v1::SiteRole site_role;
    const bool is_site_role = v1::SiteRole_Parse(role.name(), &site_role) &&
                              site_role != v1::SITE_ROLE_UNSPECIFIED;
    if (!is_site_role && !IsStaffRoleName(role.name())) {
      return absl::InvalidArgumentError(
          absl::StrCat(at("roles", i), "unknown role \"", role.name(),
                       "\"; expected a SITE_ROLE_* name or customer_care, "
                       "platform_admin, service"));
    }
    if (policy->grants_.contains(role.name())) {
      return absl::InvalidArgumentError(absl::StrCat(
          at("roles", i), "role \"", role.name(), "\" is declared twice"));
    }
    std::vector<std::string>& grants = policy->grants_[role.name()];
    const TextFormat::ParseInfoTree* role_tree =
        tree.GetTreeForNested(descriptor->FindFieldByName("roles"), i);
    for (int j = 0; j < role.permissions_size(); ++j) {
      if (!policy->permissions_.contains(role.permissions(j))) {
        return absl::InvalidArgumentError(absl::StrCat(
            role_tree != nullptr ? at("permissions", j, role_tree)
                                 : at("roles", i),
            "role \"", role.name(), "\" grants undeclared permission \"",
            role.permissions(j), "\""));
      }
      grants.push_back(role.permissions(j));
    }
  }
  for (int value = v1::SITE_ROLE_VIEW_ONLY;
       value <= v1::SITE_ROLE_SITE_ADMINISTRATOR; ++value) {
    const std::string& name =
        v1::SiteRole_Name(static_cast<v1::SiteRole>(value));
    if (!policy->grants_.contains(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ":1:1: site role ", name, " is missing"));
    }
  }
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  {
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    proto.SerializeToCodedStream(&coded);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
         digest);
  policy->fingerprint_ = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), 8));
  return std::unique_ptr<const Policy>(std::move(policy));
}

absl::StatusOr<std::unique_ptr<const Policy>> Policy::LoadFile(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read policy file ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

bool Policy::IsKnownPermission(absl::string_view permission) const {
  return permissions_.contains(permission);
}

bool Policy::IsPilotGated(absl::string_view permission) const {
  return gated_.contains(permission);
}

const std::vector<std::string>& Policy::PermissionsOf(v1::SiteRole role) const {
  return PermissionsOfStaffRole(v1::SiteRole_Name(role));
}

const std::vector<std::string>& Policy::PermissionsOfStaffRole(
    absl::string_view staff_role) const {
  static const auto* none = new std::vector<std::string>;
  auto it = grants_.find(staff_role);
  return it == grants_.end() ? *none : it->second;
}

}  // namespace custos::access
