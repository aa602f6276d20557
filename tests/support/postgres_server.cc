#include "tests/support/postgres_server.h"

#include <glob.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/support/service_process.h"

namespace custos::testing {
namespace {

// /usr/lib/postgresql/<version>/bin, newest first; "" when not installed.
std::string BinDir() {
  glob_t found;
  std::string dir;
  if (glob("/usr/lib/postgresql/*/bin/postgres", 0, nullptr, &found) == 0 &&
      found.gl_pathc > 0) {
    dir = found.gl_pathv[found.gl_pathc - 1];
    dir.resize(dir.rfind('/'));
  }
  globfree(&found);
  return dir;
}

// Runs `argv` as the postgres user when we are root; returns its pid.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  const passwd* user = getuid() == 0 ? getpwnam("postgres") : nullptr;
  pid_t pid = fork();
  if (pid == 0) {
    if (user != nullptr) {
      if (setgid(user->pw_gid) != 0 || setuid(user->pw_uid) != 0) _exit(126);
    }
    FILE* out = freopen(log.c_str(), "a", stdout);
    (void)out;
    dup2(1, 2);
    std::vector<char*> args;
    for (const std::string& arg : argv)
      args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

std::string Url(int port, const std::string& database) {
  return absl::StrCat("postgresql://custos@127.0.0.1:", port, "/", database,
                      "?connect_timeout=5");
}

}  // namespace

PostgresServer::~PostgresServer() {
  if (pid_ > 0) {
    kill(pid_, SIGINT);  // fast shutdown
    waitpid(pid_, nullptr, 0);
  }
  if (!dir_.empty()) {
    (void)std::system(absl::StrCat("rm -rf '", dir_, "'").c_str());
  }
}

bool PostgresServer::Start(std::string* error) {
  const std::string bin = BinDir();
  if (bin.empty()) {
    *error = "PostgreSQL is not installed (apt-get install postgresql)";
    return false;
  }
  dir_ = MakeTempDir();
  if (getuid() == 0) {
    const passwd* user = getpwnam("postgres");
    if (user == nullptr ||
        chown(dir_.c_str(), user->pw_uid, user->pw_gid) != 0) {
      *error = "cannot hand the data directory to the postgres user";
      return false;
    }
  }
  const std::string data = dir_ + "/data";
  const std::string log = dir_ + "/postgres.log";
  pid_t init = Spawn({bin + "/initdb", "-D", data, "-U", "custos",
                      "--auth=trust", "-E", "UTF8", "--no-sync"},
                     log);
  int status = 0;
  waitpid(init, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *error = absl::StrCat("initdb failed; see ", log);
    return false;
  }
  port_ = FreePort();
  pid_ = Spawn(
      {bin + "/postgres", "-D", data, "-p", absl::StrCat(port_), "-c",
       "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + dir_,
       "-c", "fsync=off", "-c", "synchronous_commit=off", "-c",
       "full_page_writes=off", "-c", "max_connections=200"},
      log);
  const std::string url = Url(port_, "postgres");
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (absl::Now() < give_up) {
    if (PQping(url.c_str()) == PQPING_OK) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  *error = absl::StrCat("PostgreSQL did not start; see ", log);
  return false;
}

std::string PostgresServer::CreateDatabase(const std::string& name) {
  pg_conn* conn = PQconnectdb(Url(port_, "postgres").c_str());
  pg_result* result =
      PQexec(conn, absl::StrCat("CREATE DATABASE \"", name, "\"").c_str());
  const bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
  PQclear(result);
  PQfinish(conn);
  return ok ? Url(port_, name) : "";
}

bool PostgresServer::Exec(const std::string& sql, std::string* error) {
  pg_conn* conn = PQconnectdb(Url(port_, "postgres").c_str());
  pg_result* result = PQexec(conn, sql.c_str());
  const bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
  if (!ok) *error = PQerrorMessage(conn);
  PQclear(result);
  PQfinish(conn);
  return ok;
}

}  // namespace custos::testing
