#include "tests/support/http_receiver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace custos::testing {

HttpReceiver::HttpReceiver() {
  listener_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) !=
          0 ||
      listen(listener_, 64) != 0) {
    std::abort();
  }
  socklen_t size = sizeof(address);
  getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size);
  port_ = ntohs(address.sin_port);
  thread_ = std::thread([this] { Serve(); });
}

HttpReceiver::~HttpReceiver() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  shutdown(listener_, SHUT_RDWR);  // wakes accept()
  thread_.join();
  close(listener_);
}

void HttpReceiver::FailNext(int count, int status, std::string location) {
  absl::MutexLock lock(&mu_);
  failures_ = count;
  failure_status_ = status;
  failure_location_ = std::move(location);
}

std::vector<HttpReceiver::Request> HttpReceiver::requests() {
  absl::MutexLock lock(&mu_);
  return requests_;
}

bool HttpReceiver::AwaitRequests(size_t count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return requests_.size() >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

void HttpReceiver::Serve() {
  while (true) {
    const int connection = accept(listener_, nullptr, nullptr);
    if (connection < 0) {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      continue;
    }
    Handle(connection);
    close(connection);
  }
}

void HttpReceiver::Handle(int connection) {
  std::string data;
  char buffer[4096];
  size_t header_end = std::string::npos;
  size_t content_length = 0;
  while (true) {
    const ssize_t got = read(connection, buffer, sizeof(buffer));
    if (got <= 0) return;
    data.append(buffer, static_cast<size_t>(got));
    if (header_end == std::string::npos) {
      header_end = data.find("\r\n\r\n");
      if (header_end == std::string::npos) continue;
      for (absl::string_view line :
           absl::StrSplit(data.substr(0, header_end), "\r\n")) {
        const size_t colon = line.find(':');
        if (colon == absl::string_view::npos) continue;
        if (absl::AsciiStrToLower(line.substr(0, colon)) == "content-length") {
          (void)absl::SimpleAtoi(
              absl::StripAsciiWhitespace(line.substr(colon + 1)),
              &content_length);
        }
      }
    }
    if (data.size() >= header_end + 4 + content_length) break;
  }
  Request request;
  std::vector<std::string> lines =
      absl::StrSplit(data.substr(0, header_end), "\r\n");
  std::vector<std::string> request_line = absl::StrSplit(lines[0], ' ');
  if (request_line.size() > 1) request.path = request_line[1];
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    request.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  request.body = data.substr(header_end + 4, content_length);
  int status = 204;
  std::string location;
  {
    absl::MutexLock lock(&mu_);
    if (failures_ > 0) {
      --failures_;
      status = failure_status_;
      location = failure_location_;
    }
    requests_.push_back(std::move(request));
  }
  const std::string answer = absl::StrCat(
      "HTTP/1.1 ", status, " Test\r\n",
      location.empty() ? "" : absl::StrCat("Location: ", location, "\r\n"),
      "Content-Length: 0\r\nConnection: close\r\n\r\n");
  (void)write(connection, answer.data(), answer.size());
}

std::string HttpGet(int port, const std::string& path,
                    const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), absl::StrCat(port).c_str(), &hints, &found) !=
      0) {
    return "";
  }
  const int connection = socket(found->ai_family, SOCK_STREAM, 0);
  std::string response;
  if (connect(connection, found->ai_addr, found->ai_addrlen) == 0) {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host, "\r\n\r\n");
    if (write(connection, request.data(), request.size()) ==
        static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      ssize_t got = 0;
      while ((got = read(connection, buffer, sizeof(buffer))) > 0) {
        response.append(buffer, static_cast<size_t>(got));
      }
    }
  }
  freeaddrinfo(found);
  close(connection);
  return response;
}

std::string PromtoolCheckMetrics(const std::string& response) {
  const size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return "no HTTP body";
  char path[] = "/tmp/custos-scrape-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "cannot write a temporary file";
  const std::string text = response.substr(body + 4);
  const bool written =
      write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!written) return "cannot write a temporary file";
  FILE* pipe = popen(
      absl::StrCat("promtool check metrics < ", path, " 2>&1").c_str(), "r");
  std::string output;
  int status = -1;
  if (pipe != nullptr) {
    char buffer[512];
    while (fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
    status = pclose(pipe);
  }
  unlink(path);
  if (status == 0) return "";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    return "promtool is missing: apt-get install prometheus";
  }
  return output.empty() ? "promtool failed" : output;
}

}  // namespace custos::testing
