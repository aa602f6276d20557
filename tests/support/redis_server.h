#ifndef CUSTOS_TESTS_SUPPORT_REDIS_SERVER_H_
#define CUSTOS_TESTS_SUPPORT_REDIS_SERVER_H_

#include <sys/types.h>

namespace custos::testing {

// A real redis-server on a loopback port, with nothing persisted, killed by
// the destructor. Start() again after Kill() brings it back on the same port.
class RedisServer {
 public:
  explicit RedisServer(int port) : port_(port) {}
  ~RedisServer() { Kill(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts it and waits (at most 5 s) until it accepts connections; false if
  // it did not.
  bool Start();
  // SIGKILL, and waits for it to be gone.
  void Kill();
  int port() const { return port_; }

 private:
  int port_;
  pid_t pid_ = -1;
};

}  // namespace custos::testing

#endif  // CUSTOS_TESTS_SUPPORT_REDIS_SERVER_H_
