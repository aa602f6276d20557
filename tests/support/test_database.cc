#include "tests/support/test_database.h"

#include <cstdio>
#include <cstdlib>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tests/support/postgres_server.h"

namespace custos::testing {
namespace {

struct SharedCluster {
  absl::Mutex mu;
  PostgresServer* server ABSL_GUARDED_BY(mu) = nullptr;
  // "dir/name" → URL.
  absl::flat_hash_map<std::string, std::string> urls ABSL_GUARDED_BY(mu);
};

SharedCluster& Cluster() {
  static auto* cluster = new SharedCluster;
  return *cluster;
}

void StopCluster() {
  absl::MutexLock lock(&Cluster().mu);
  delete Cluster().server;
  Cluster().server = nullptr;
}

}  // namespace

bool TestingPostgres() {
  const char* backend = std::getenv("CUSTOS_TEST_BACKEND");
  return backend != nullptr && std::string(backend) == "postgresql";
}

std::string TestDatabase(const std::string& dir, const std::string& name) {
  if (!TestingPostgres()) return absl::StrCat("sqlite:", dir, "/", name, ".db");
  SharedCluster& cluster = Cluster();
  absl::MutexLock lock(&cluster.mu);
  const std::string key = absl::StrCat(dir, "/", name);
  if (auto it = cluster.urls.find(key); it != cluster.urls.end()) {
    return it->second;
  }
  if (cluster.server == nullptr) {
    auto* server = new PostgresServer();
    std::string error;
    if (!server->Start(&error)) {
      std::fprintf(stderr, "cannot start PostgreSQL: %s\n", error.c_str());
      std::abort();
    }
    cluster.server = server;
    std::atexit(StopCluster);
  }
  const std::string url = cluster.server->CreateDatabase(
      absl::StrCat(name, "_", cluster.urls.size() + 1));
  if (url.empty()) {
    std::fprintf(stderr, "cannot create database %s\n", name.c_str());
    std::abort();
  }
  cluster.urls.emplace(key, url);
  return url;
}

}  // namespace custos::testing
