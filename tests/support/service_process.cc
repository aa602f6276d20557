#include "tests/support/service_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace custos::testing {

std::string BuildDir() {
  const char* dir = std::getenv("CUSTOS_BUILD_DIR");
  return dir != nullptr ? dir : "build";
}

std::string MakeTempDir() {
  std::string pattern = "/tmp/custos-test-XXXXXX";
  char* dir = mkdtemp(pattern.data());
  return dir != nullptr ? dir : "/tmp";
}

namespace {

bool Bindable(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool free =
      bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return free;
}

}  // namespace

int FreePort() {
  // Below the kernel's ephemeral range (32768-60999 by default): a port the
  // kernel hands out for bind(0) is also what outgoing connections (gRPC
  // clients redialling peers) take as their local port, so one could be
  // taken between this call and the server's bind. Test binaries run in
  // parallel (ctest -j2), so the ports handed out in the last two minutes
  // are kept in a registry under a file lock: two binaries never get the
  // same port while one of them is still starting its server.
  constexpr char kRegistry[] = "/tmp/custos-test-ports";
  constexpr int64_t kHeldSeconds = 120;
  const int lock = open("/tmp/custos-test-ports.lock", O_CREAT | O_RDWR, 0600);
  if (lock >= 0) flock(lock, LOCK_EX);
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  std::map<int, int64_t> held;
  {
    std::ifstream in(kRegistry);
    int port = 0;
    int64_t when = 0;
    while (in >> port >> when) {
      if (now - when < kHeldSeconds) held[port] = when;
    }
  }
  static std::atomic<uint64_t> state{
      static_cast<uint64_t>(getpid()) * 2654435761u ^
      static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()))};
  int chosen = 0;
  for (int attempt = 0; attempt < 2000 && chosen == 0; ++attempt) {
    const uint64_t next =
        state.fetch_add(0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
    const int port = 20000 + static_cast<int>((next >> 33) % 12000);
    if (held.count(port) == 0 && Bindable(port)) chosen = port;
  }
  if (chosen != 0) {
    held[chosen] = now;
    std::ofstream out(kRegistry, std::ios::trunc);
    for (const auto& [port, when] : held) out << port << " " << when << "\n";
  }
  if (lock >= 0) {
    flock(lock, LOCK_UN);
    close(lock);
  }
  return chosen;
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
}

std::shared_ptr<grpc::Channel> LoopbackChannel(int port) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                             grpc::InsecureChannelCredentials());
}

ServiceProcess::ServiceProcess(std::string binary,
                               std::vector<std::string> args)
    : binary_(std::move(binary)), args_(std::move(args)) {}

ServiceProcess::~ServiceProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

absl::Status ServiceProcess::Start(const std::string& address,
                                   absl::Duration timeout) {
  static int counter = 0;
  log_path_ = absl::StrCat(MakeTempDir(), "/service-", ++counter, ".log");
  std::string path = absl::StrCat(BuildDir(), "/", binary_);
  pid_ = fork();
  if (pid_ == 0) {
    int log = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(log, 1);
    dup2(log, 2);
    // Tests control configuration through flags only.
    std::vector<std::string> inherited;
    for (char** env = environ; *env != nullptr; ++env) {
      std::string entry(*env);
      if (entry.rfind("CUSTOS_", 0) == 0) {
        inherited.push_back(entry.substr(0, entry.find('=')));
      }
    }
    for (const std::string& name : inherited) unsetenv(name.c_str());
    std::vector<char*> argv;
    argv.push_back(path.data());
    // Tests drive writes far faster than one person would; the write rate
    // limit is off unless a test sets it (a later flag wins).
    std::string unlimited = "--write_rate_per_second=0";
    argv.push_back(unlimited.data());
    for (std::string& arg : args_) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat(binary_, " exited at start: ", ReadLog()));
    }
    // A fresh channel with its own subchannel each time: a channel that saw
    // the port closed would only retry after gRPC's reconnect backoff
    // (1 s and growing), which made every start take seconds.
    grpc::ChannelArguments fresh;
    fresh.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto health = grpc::health::v1::Health::NewStub(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), fresh));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(500));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    if (health->Check(&context, request, &response).ok() &&
        response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(binary_, " not serving on ", address, ": ", ReadLog()));
}

void ServiceProcess::Signal(int signal) {
  if (pid_ > 0) kill(pid_, signal);
}

int ServiceProcess::WaitForExit(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (pid_ > 0 && absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return -1;
}

int ServiceProcess::Stop() {
  Signal(SIGTERM);
  return WaitForExit(absl::Seconds(30));
}

std::string ServiceProcess::ReadLog() const {
  std::ifstream in(log_path_);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

}  // namespace custos::testing
