#ifndef CUSTOS_TESTS_SUPPORT_HTTP_RECEIVER_H_
#define CUSTOS_TESTS_SUPPORT_HTTP_RECEIVER_H_

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace custos::testing {

// A real HTTP/1.1 server on 127.0.0.1 that records every POST it gets and
// answers its first `failures` requests with 503, the rest with 204: the
// webhook receiver of the tests. Stops (and joins) when destroyed.
class HttpReceiver {
 public:
  struct Request {
    std::string path;
    // Header names lower-cased.
    std::map<std::string, std::string> headers;
    std::string body;
  };

  // Listens on a free loopback port.
  HttpReceiver();
  ~HttpReceiver();
  HttpReceiver(const HttpReceiver&) = delete;
  HttpReceiver& operator=(const HttpReceiver&) = delete;

  int port() const { return port_; }
  // Answers the next `count` requests with `status` (default 503), and a
  // `Location` header when `location` is not empty (for redirects).
  void FailNext(int count, int status = 503, std::string location = "");
  std::vector<Request> requests();
  // Waits until `count` requests arrived (at most `timeout`).
  bool AwaitRequests(size_t count, absl::Duration timeout);

 private:
  void Serve();
  void Handle(int connection);

  int listener_ = -1;
  int port_ = 0;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  int failures_ ABSL_GUARDED_BY(mu_) = 0;
  int failure_status_ ABSL_GUARDED_BY(mu_) = 503;
  std::string failure_location_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

// GET http://127.0.0.1:port/path; the whole response (status line,
// headers, body), or "" when nothing answered.
std::string HttpGet(int port, const std::string& path,
                    const std::string& host = "127.0.0.1");

// Runs `promtool check metrics` (Debian's prometheus package) on the body of
// an HTTP `response`; "" when promtool accepts it, else what it said (or
// that promtool is missing).
std::string PromtoolCheckMetrics(const std::string& response);

}  // namespace custos::testing

#endif  // CUSTOS_TESTS_SUPPORT_HTTP_RECEIVER_H_
