#ifndef CUSTOS_TESTS_SUPPORT_POSTGRES_SERVER_H_
#define CUSTOS_TESTS_SUPPORT_POSTGRES_SERVER_H_

#include <sys/types.h>

#include <string>

namespace custos::testing {

// A throwaway PostgreSQL cluster (Debian's postgresql package) in a temporary
// directory, listening on a loopback port, fsync off; stopped and removed by
// the destructor. When the tests run as root the server runs as the
// `postgres` user (PostgreSQL refuses root).
class PostgresServer {
 public:
  PostgresServer() = default;
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // initdb, start, and wait (at most 30 s) until it accepts connections;
  // false with the reason in `error` otherwise.
  bool Start(std::string* error);
  // Creates a database; returns its URL ("" on failure).
  std::string CreateDatabase(const std::string& name);
  // Runs one administrative statement (on the `postgres` database); false
  // with the reason in `error` when it fails.
  bool Exec(const std::string& sql, std::string* error);
  int port() const { return port_; }

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace custos::testing

#endif  // CUSTOS_TESTS_SUPPORT_POSTGRES_SERVER_H_
