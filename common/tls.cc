#include "common/tls.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace custos {
namespace {

// Reads `path` (named by `flag` in errors) and checks it holds a PEM block.
absl::Status CheckPemFile(const std::string& path, absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot read ", path));
  }
  std::stringstream contents;
  contents << in.rdbuf();
  if (!absl::StrContains(contents.str(), "-----BEGIN ")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": ", path, " holds no PEM block"));
  }
  return absl::OkStatus();
}

unsigned int ReloadSeconds(absl::Duration interval) {
  return static_cast<unsigned int>(
      std::max<int64_t>(1, absl::ToInt64Seconds(interval)));
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const ServerTlsFiles& files, absl::Duration reload_interval) {
  if (files.cert_file.empty() && files.key_file.empty()) {
    if (!files.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca_file needs --tls_cert_file and --tls_key_file");
    }
    return grpc::InsecureServerCredentials();
  }
  if (files.cert_file.empty() || files.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert_file and --tls_key_file must be set together");
  }
  if (absl::Status s = CheckPemFile(files.cert_file, "tls_cert_file"); !s.ok())
    return s;
  if (absl::Status s = CheckPemFile(files.key_file, "tls_key_file"); !s.ok())
    return s;
  if (!files.client_ca_file.empty()) {
    if (absl::Status s =
            CheckPemFile(files.client_ca_file, "tls_client_ca_file");
        !s.ok())
      return s;
  }
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          files.key_file, files.cert_file, files.client_ca_file,
          ReloadSeconds(reload_interval));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!files.client_ca_file.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> PeerCredentials(
    const PeerTlsFiles& files, absl::Duration reload_interval) {
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--peer_tls_cert_file and --peer_tls_key_file must be set together");
  }
  if (files.ca_file.empty()) {
    if (!files.cert_file.empty()) {
      return absl::InvalidArgumentError(
          "--peer_tls_cert_file needs --peer_tls_ca_file");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (absl::Status s = CheckPemFile(files.ca_file, "peer_tls_ca_file"); !s.ok())
    return s;
  if (!files.cert_file.empty()) {
    if (absl::Status s = CheckPemFile(files.cert_file, "peer_tls_cert_file");
        !s.ok())
      return s;
    if (absl::Status s = CheckPemFile(files.key_file, "peer_tls_key_file");
        !s.ok())
      return s;
  }
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          files.key_file, files.cert_file, files.ca_file,
          ReloadSeconds(reload_interval));
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  options.watch_root_certs();
  if (!files.cert_file.empty()) options.watch_identity_key_cert_pairs();
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace custos
