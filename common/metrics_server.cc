#include "common/metrics_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace custos {
namespace {

// The files' modification times: a rotated Secret changes them.
std::string FileVersion(const MetricsTls& tls) {
  std::string version;
  for (const std::string& path : {tls.cert_file, tls.key_file}) {
    struct stat info {};
    if (stat(path.c_str(), &info) != 0) return "";
    absl::StrAppend(&version, info.st_mtim.tv_sec, ".", info.st_mtim.tv_nsec,
                    ";");
  }
  return version;
}

std::shared_ptr<SSL_CTX> LoadTlsContext(const MetricsTls& tls) {
  std::shared_ptr<SSL_CTX> context(SSL_CTX_new(TLS_server_method()),
                                   &SSL_CTX_free);
  if (context == nullptr ||
      SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION) != 1 ||
      SSL_CTX_use_certificate_chain_file(context.get(),
                                         tls.cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(context.get(), tls.key_file.c_str(),
                                  SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(context.get()) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  return context;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, Metrics* metrics, MetricsTls tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "metrics over TLS needs --tls_cert_file and --tls_key_file");
  }
  if (!tls.cert_file.empty() && LoadTlsContext(tls) == nullptr) {
    return absl::InvalidArgumentError(
        "metrics over TLS: cannot load --tls_cert_file / --tls_key_file");
  }
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_listen must be host:port, got ", listen));
  }
  // IPv4 ("0.0.0.0", "127.0.0.1") or IPv6 in brackets ("[::]", "[::1]").
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "0.0.0.0";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), absl::StrCat(port).c_str(), &hints, &found) !=
          0 ||
      found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics_listen needs an IP address (IPv6 in brackets), got ", host));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> address(found,
                                                             &freeaddrinfo);
  const int listener =
      socket(address->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int yes = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  if (address->ai_family == AF_INET6) {
    // "[::]" takes IPv4 clients too.
    const int no = 0;
    setsockopt(listener, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof(no));
  }
  if (bind(listener, address->ai_addr, address->ai_addrlen) != 0 ||
      ::listen(listener, 64) != 0) {
    const std::string error = std::strerror(errno);
    close(listener);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, ": ", error));
  }
  sockaddr_storage bound{};
  socklen_t size = sizeof(bound);
  getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &size);
  const int bound_port =
      bound.ss_family == AF_INET6
          ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
          : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return std::unique_ptr<MetricsServer>(
      new MetricsServer(listener, bound_port, metrics, std::move(tls)));
}

MetricsServer::MetricsServer(int listener, int port, Metrics* metrics,
                             MetricsTls tls)
    : listener_(listener),
      port_(port),
      metrics_(metrics),
      tls_(std::move(tls)) {
  thread_ = std::thread([this] { Serve(); });
}

MetricsServer::~MetricsServer() {
  shutdown(listener_, SHUT_RDWR);  // ends accept()
  thread_.join();
  close(listener_);
  // Connections end within their deadline.
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return connections_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
}

std::shared_ptr<SSL_CTX> MetricsServer::TlsContext() {
  const std::string version = FileVersion(tls_);
  absl::MutexLock lock(&tls_mu_);
  if (tls_context_ == nullptr || version != tls_version_) {
    // A half-rotated pair (new certificate, old key) fails to load; the
    // previous context serves until both files match.
    if (std::shared_ptr<SSL_CTX> fresh = LoadTlsContext(tls_)) {
      tls_context_ = std::move(fresh);
      tls_version_ = version;
    }
  }
  return tls_context_;
}

void MetricsServer::Serve() {
  while (true) {
    const int connection = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    {
      absl::MutexLock lock(&mu_);
      // Each connection on its own thread, so one slow or idle client never
      // holds up another scrape; beyond the cap, new ones are turned away.
      if (connections_ >= kMaxConnections) {
        close(connection);
        continue;
      }
      ++connections_;
    }
    std::thread([this, connection] {
      Answer(connection);
      absl::MutexLock lock(&mu_);
      --connections_;
    }).detach();
  }
}

void MetricsServer::Answer(int connection) {
  // A client gets this long for its whole request, however it trickles in.
  const absl::Time deadline = absl::Now() + absl::Seconds(2);
  timeval timeout{1, 0};
  setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  // Plain reads and writes, or TLS ones over the same socket.
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(nullptr, &SSL_free);
  std::function<ssize_t(char*, size_t)> receive = [connection](char* data,
                                                               size_t size) {
    return read(connection, data, size);
  };
  std::function<ssize_t(const char*, size_t)> send =
      [connection](const char* data, size_t size) {
        return write(connection, data, size);
      };
  if (!tls_.cert_file.empty()) {
    std::shared_ptr<SSL_CTX> context = TlsContext();
    if (context != nullptr) ssl.reset(SSL_new(context.get()));
    if (ssl == nullptr || SSL_set_fd(ssl.get(), connection) != 1 ||
        SSL_accept(ssl.get()) != 1) {
      ERR_clear_error();
      close(connection);
      return;
    }
    receive = [s = ssl.get()](char* data, size_t size) -> ssize_t {
      return SSL_read(s, data, static_cast<int>(size));
    };
    send = [s = ssl.get()](const char* data, size_t size) -> ssize_t {
      return SSL_write(s, data, static_cast<int>(size));
    };
  }
  std::string request;
  char buffer[2048];
  while (request.find("\r\n\r\n") == std::string::npos &&
         request.size() < 16384 && absl::Now() < deadline) {
    const ssize_t got = receive(buffer, sizeof(buffer));
    if (got <= 0) break;
    request.append(buffer, static_cast<size_t>(got));
  }
  if (request.find("\r\n\r\n") == std::string::npos) {
    // Incomplete in time: no answer, and the thread is free again.
    if (ssl != nullptr) SSL_shutdown(ssl.get());
    ERR_clear_error();
    close(connection);
    return;
  }
  std::string status = "404 Not Found";
  std::string body = "not found\n";
  std::string type = "text/plain";
  if (absl::StartsWith(request, "GET /metrics ") ||
      absl::StartsWith(request, "GET /metrics?")) {
    status = "200 OK";
    body = metrics_->Render();
    type = "text/plain; version=0.0.4; charset=utf-8";
  }
  const std::string answer =
      absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", type,
                   "\r\nContent-Length: ", body.size(),
                   "\r\nConnection: close\r\n\r\n", body);
  size_t sent = 0;
  while (sent < answer.size()) {
    const ssize_t wrote = send(answer.data() + sent,
                               std::min<size_t>(answer.size() - sent, 1 << 20));
    if (wrote <= 0) break;
    sent += static_cast<size_t>(wrote);
  }
  if (ssl != nullptr) SSL_shutdown(ssl.get());
  ERR_clear_error();
  close(connection);
}

}  // namespace custos
