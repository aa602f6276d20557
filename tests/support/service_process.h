#ifndef CUSTOS_TESTS_SUPPORT_SERVICE_PROCESS_H_
#define CUSTOS_TESTS_SUPPORT_SERVICE_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace custos::testing {

// The build and source trees, from the environment ctest sets.
std::string BuildDir();
// A fresh, empty directory under the system temp dir.
std::string MakeTempDir();
// A loopback port nobody listens on right now.
int FreePort();
void WriteFile(const std::string& path, const std::string& contents);

// A real service binary started for a test: bound to 127.0.0.1, stdout and
// stderr captured in a log file, killed (SIGKILL) by the destructor if still
// running, so tests never leave processes behind.
class ServiceProcess {
 public:
  // `binary` is relative to the build dir, e.g.
  // "services/customer_management_service/customer_management_service".
  ServiceProcess(std::string binary, std::vector<std::string> args);
  ~ServiceProcess();

  // Starts the process and waits until grpc.health.v1 reports SERVING on
  // `address` (at most `timeout`).
  absl::Status Start(const std::string& address,
                     absl::Duration timeout = absl::Seconds(20));
  // Sends `signal` without waiting.
  void Signal(int signal);
  // Waits for exit; returns the exit code, or -1 on timeout / killed.
  int WaitForExit(absl::Duration timeout);
  // SIGTERM and wait; the exit code.
  int Stop();
  bool running() const { return pid_ > 0; }
  std::string ReadLog() const;

 private:
  std::string binary_;
  std::vector<std::string> args_;
  std::string log_path_;
  pid_t pid_ = -1;
};

// A plaintext channel to 127.0.0.1:port.
std::shared_ptr<grpc::Channel> LoopbackChannel(int port);

}  // namespace custos::testing

#endif  // CUSTOS_TESTS_SUPPORT_SERVICE_PROCESS_H_
