#include "common/server.h"

#include <signal.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/json_log.h"
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "common/proto_input_guard.h"
#include "common/tls.h"
#include "grpc/health/v1/health.pb.h"
#include "grpc/support/log.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"

namespace custos {
namespace {

// gRPC core's own log lines (a failed TLS handshake, a bad peer) go into
// the JSON log like everything else, so the log stays one JSON object per
// line.
void LogGrpcCore(gpr_log_func_args* args) {
  const char* level = args->severity == GPR_LOG_SEVERITY_ERROR  ? "error"
                      : args->severity == GPR_LOG_SEVERITY_INFO ? "info"
                                                                : "debug";
  Log(level, args->message,
      {{"source", "grpc"},
       {"file", args->file != nullptr ? args->file : ""},
       {"line", absl::StrCat(args->line)}});
}

sigset_t TerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

}  // namespace

void BlockTerminationSignals() {
  // A peer that resets a connection mid-write (a scraper of /metrics) must
  // cost an EPIPE, not the process.
  signal(SIGPIPE, SIG_IGN);
  gpr_set_log_function(&LogGrpcCore);
  sigset_t signals = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

absl::Status ServeUntilTerminated(const ServerOptions& options,
                                  const std::vector<grpc::Service*>& services) {
  // Keeps grpc.health.v1's generated descriptors linked in, so reflection can
  // describe the health service that gRPC implements without them.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  // Debian's Abseil is built with deadlock detection on, which records every
  // lock order in a global graph: measurable on each RPC, and our lock order
  // is fixed by construction (tests run with sanitizers instead).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // libprotobuf's own lines become JSON; a request that does not parse
  // (invalid UTF-8 in a string field) is INVALID_ARGUMENT naming the field.
  InstallProtobufLogHandler();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  auto credentials = ServerCredentials(
      {options.tls_cert_file, options.tls_key_file, options.tls_client_ca_file},
      options.tls_reload_interval);
  if (!credentials.ok()) return credentials.status();
  if (options.metrics_tls && options.tls_cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--metrics_tls needs --tls_cert_file and --tls_key_file");
  }
  std::unique_ptr<MetricsServer> metrics;
  if (!options.metrics_listen.empty()) {
    auto started = MetricsServer::Start(
        options.metrics_listen, &Metrics::Default(),
        options.metrics_tls
            ? MetricsTls{options.tls_cert_file, options.tls_key_file}
            : MetricsTls{});
    if (!started.ok()) return started.status();
    metrics = *std::move(started);
    Log("info", "serving metrics",
        {{"listen", options.metrics_listen},
         {"port", absl::StrCat(metrics->port())}});
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, *credentials, &port);
  // Detect dead peers within ~40 s and let clients keep idle connections
  // warm with pings every 10 s.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // gRPC adds ±10% jitter to the age, so replicas started together do not
  // send every client away at once.
  if (options.max_connection_age != absl::InfiniteDuration()) {
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_MS,
        static_cast<int>(std::min<int64_t>(
            absl::ToInt64Milliseconds(options.max_connection_age), INT32_MAX)));
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
        static_cast<int>(std::min<int64_t>(
            absl::ToInt64Milliseconds(options.max_connection_age_grace),
            INT32_MAX)));
  }
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(InvalidInputInterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen));
  }
  // Probes that cannot speak TLS (Kubernetes' gRPC probe) ask a plaintext
  // listener that serves grpc.health.v1 and nothing else.
  std::unique_ptr<grpc::Server> health_server;
  if (!options.health_listen.empty()) {
    // gRPC's reflection plugin is registered process-wide, so this listener
    // also describes the (public) contracts; it serves no method of them.
    grpc::ServerBuilder health_builder;
    int health_port = 0;
    health_builder.AddListeningPort(
        options.health_listen, grpc::InsecureServerCredentials(), &health_port);
    health_server = health_builder.BuildAndStart();
    if (health_server == nullptr || health_port == 0) {
      server->Shutdown();
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options.health_listen));
    }
    Log("info", "serving health",
        {{"listen", options.health_listen},
         {"port", absl::StrCat(health_port)}});
  }
  std::vector<grpc::HealthCheckServiceInterface*> healths = {
      server->GetHealthCheckService()};
  if (health_server) healths.push_back(health_server->GetHealthCheckService());
  for (grpc::HealthCheckServiceInterface* health : healths) {
    for (const std::string& name : options.health_service_names) {
      health->SetServingStatus(name, true);
    }
  }
  Log("info", "serving",
      {{"listen", options.listen},
       {"port", absl::StrCat(port)},
       {"tls", options.tls_cert_file.empty()
                   ? "off"
                   : (options.tls_client_ca_file.empty() ? "on" : "mtls")}});

  // Readiness follows the store: polled on its own thread until the drain.
  absl::Mutex readiness_mu;
  bool draining = false;
  std::thread readiness_watch;
  if (options.readiness) {
    readiness_watch = std::thread([&] {
      bool ready = true;
      absl::MutexLock lock(&readiness_mu);
      while (!readiness_mu.AwaitWithTimeout(absl::Condition(&draining),
                                            absl::Seconds(1))) {
        readiness_mu.Unlock();
        const absl::Status status = options.readiness();
        readiness_mu.Lock();
        if (draining || status.ok() == ready) continue;
        ready = status.ok();
        Log(ready ? "info" : "error",
            ready ? "ready again: health SERVING"
                  : "not ready: health NOT_SERVING",
            {{"reason", status.ToString()}});
        for (grpc::HealthCheckServiceInterface* health : healths) {
          health->SetServingStatus(ready);
        }
      }
    });
  }

  sigset_t signals = TerminationSignals();
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  if (readiness_watch.joinable()) {
    {
      absl::MutexLock lock(&readiness_mu);
      draining = true;
    }
    readiness_watch.join();
  }

  Log("info", "shutting down",
      {{"signal", absl::StrCat(signal_number)},
       {"grace_seconds",
        absl::StrCat(absl::ToInt64Seconds(options.shutdown_grace))}});
  // Readiness probes and load balancers see NOT_SERVING first.
  for (grpc::HealthCheckServiceInterface* health : healths) health->Shutdown();
  if (options.on_shutdown) options.on_shutdown();
  server->Shutdown(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(options.shutdown_grace));
  server->Wait();
  if (health_server) {
    health_server->Shutdown();
    health_server->Wait();
  }
  Log("info", "stopped");
  return absl::OkStatus();
}

}  // namespace custos
