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

namespace {

// The database name at the end of a test URL.
std::string DatabaseNameOf(const std::string& url) {
  const size_t start = url.rfind('/') + 1;
  return url.substr(start, url.find('?', start) - start);
}

bool CopySqliteFiles(const std::string& from, const std::string& to,
                     std::string* error) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string source = absl::StrCat(from, suffix);
    const std::string target = absl::StrCat(to, suffix);
    std::remove(target.c_str());
    std::FILE* in = std::fopen(source.c_str(), "rb");
    if (in == nullptr) continue;  // no WAL after a clean stop
    std::FILE* out = std::fopen(target.c_str(), "wb");
    if (out == nullptr) {
      std::fclose(in);
      *error = absl::StrCat("cannot write ", target);
      return false;
    }
    char buffer[1 << 16];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), in)) > 0) {
      std::fwrite(buffer, 1, n, out);
    }
    std::fclose(in);
    std::fclose(out);
  }
  return true;
}

}  // namespace

bool SnapshotTestDatabase(const std::string& dir, const std::string& name,
                          const std::string& snapshot, std::string* error) {
  if (!TestingPostgres()) {
    return CopySqliteFiles(absl::StrCat(dir, "/", name, ".db"),
                           absl::StrCat(dir, "/", snapshot, ".snapshot"),
                           error);
  }
  const std::string source = DatabaseNameOf(TestDatabase(dir, name));
  absl::MutexLock lock(&Cluster().mu);
  return Cluster().server->Exec(
      absl::StrCat("CREATE DATABASE \"", source, "_", snapshot,
                   "\" TEMPLATE \"", source, "\""),
      error);
}

bool RestoreTestDatabase(const std::string& dir, const std::string& name,
                         const std::string& snapshot, std::string* error) {
  if (!TestingPostgres()) {
    return CopySqliteFiles(absl::StrCat(dir, "/", snapshot, ".snapshot"),
                           absl::StrCat(dir, "/", name, ".db"), error);
  }
  const std::string target = DatabaseNameOf(TestDatabase(dir, name));
  absl::MutexLock lock(&Cluster().mu);
  return Cluster().server->Exec(
             absl::StrCat("DROP DATABASE \"", target, "\" WITH (FORCE)"),
             error) &&
         Cluster().server->Exec(
             absl::StrCat("CREATE DATABASE \"", target, "\" TEMPLATE \"",
                          target, "_", snapshot, "\""),
             error);
}

}  // namespace custos::testing
