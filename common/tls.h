#ifndef CUSTOS_COMMON_TLS_H_
#define CUSTOS_COMMON_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace custos {

// TLS for a listener: a certificate chain and key, and for mTLS the CA that
// client certificates must chain to. Files are watched: a rotated Secret
// (Kubernetes swaps the mounted directory atomically) is served from the
// next handshake on, without a restart.
struct ServerTlsFiles {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // set: client certificates are required
};

// TLS for calls to peers: the CA that peer certificates must chain to, and
// for mTLS a client certificate and key. Watched like ServerTlsFiles.
struct PeerTlsFiles {
  std::string ca_file;  // empty: plaintext peer channels
  std::string cert_file;
  std::string key_file;
};

// Insecure credentials when no file is set. INVALID_ARGUMENT naming the flag
// when a file is missing, unreadable or not PEM, or only one of a pair is
// set; checked here so a misconfigured service refuses to start instead of
// failing every handshake later.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const ServerTlsFiles& files, absl::Duration reload_interval);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> PeerCredentials(
    const PeerTlsFiles& files, absl::Duration reload_interval);

}  // namespace custos

#endif  // CUSTOS_COMMON_TLS_H_
