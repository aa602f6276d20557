#ifndef CUSTOS_COMMON_SERVICE_TOKEN_H_
#define CUSTOS_COMMON_SERVICE_TOKEN_H_

#include <ctime>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"

namespace custos {

// The bearer token (role `service`) a service presents to its peers, read
// from a file that the platform rotates: the file is read again when its
// modification time changes, checked at most once a second.
// Thread-safe.
class ServiceToken {
 public:
  // Empty `path`: no token (calls go out unauthenticated and are refused).
  explicit ServiceToken(std::string path) : path_(std::move(path)) {}

  // The current token, without trailing whitespace.
  std::string Get();

  // Adds `authorization: Bearer <token>` and a deadline of now + `timeout`,
  // and makes the call wait for a connection within that deadline.
  void Prepare(grpc::ClientContext* context, absl::Duration timeout);

 private:
  const std::string path_;
  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  std::timespec modified_ ABSL_GUARDED_BY(mu_) = {0, 0};
  absl::Time checked_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace custos

#endif  // CUSTOS_COMMON_SERVICE_TOKEN_H_
