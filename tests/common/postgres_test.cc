// common/postgres against a real throwaway PostgreSQL cluster on loopback.
#include "common/postgres.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/postgres_server.h"

namespace custos {
namespace {

using ::custos::testing::PostgresServer;

const std::vector<PostgresMigration>& Migrations() {
  static const auto* migrations = new std::vector<PostgresMigration>{
      {1,
       "CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT NOT NULL, "
       "payload BYTEA, created_micros BIGINT)"},
      {2,
       "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT "
       "NULL); INSERT INTO counters VALUES ('hits', 0)"},
  };
  return *migrations;
}

class PostgresTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new PostgresServer();
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  std::unique_ptr<PostgresDatabase> Open(const std::string& url) {
    PostgresOptions options;
    options.url = url;
    auto db = PostgresDatabase::Open(options, Migrations());
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? *std::move(db) : nullptr;
  }

  std::string NewDatabase() {
    static int counter = 0;
    std::string url = server_->CreateDatabase(absl::StrCat("t", ++counter));
    EXPECT_FALSE(url.empty());
    return url;
  }

  static PostgresServer* server_;
};

PostgresServer* PostgresTest::server_ = nullptr;

TEST(PostgresParametersTest, NumbersSqliteStyleParametersOutsideQuotes) {
  EXPECT_EQ(PostgresParameters("SELECT ?, ? FROM t WHERE a = '?'"),
            "SELECT $1, $2 FROM t WHERE a = '?'");
  EXPECT_EQ(PostgresParameters("UPDATE t SET a = ?2 WHERE id = ?1 OR b = ?2"),
            "UPDATE t SET a = $2 WHERE id = $1 OR b = $2");
  EXPECT_EQ(PostgresParameters("VALUES (?10, ?)"), "VALUES ($10, $11)");
}

TEST_F(PostgresTest, ReplicasStartingAtOnceApplyEachMigrationOnce) {
  const std::string url = NewDatabase();
  std::vector<std::thread> replicas;
  std::vector<absl::Status> results(4);
  for (int i = 0; i < 4; ++i) {
    replicas.emplace_back([&, i] {
      PostgresOptions options;
      options.url = url;
      results[i] = PostgresDatabase::Open(options, Migrations()).status();
    });
  }
  for (auto& replica : replicas) replica.join();
  for (const auto& status : results) EXPECT_TRUE(status.ok()) << status;
  auto db = Open(url);
  ASSERT_NE(db, nullptr);
  int64_t versions = 0;
  int64_t hits_rows = 0;
  ASSERT_TRUE(db->Read([&](PostgresConnection& c) -> absl::Status {
                  auto count =
                      c.Prepare("SELECT COUNT(*) FROM schema_migrations");
                  if (!count.ok()) return count.status();
                  auto row = count->Step();
                  if (!row.ok()) return row.status();
                  versions = count->ColumnInt64(0);
                  auto hits = c.Prepare("SELECT COUNT(*) FROM counters");
                  if (!hits.ok()) return hits.status();
                  row = hits->Step();
                  if (!row.ok()) return row.status();
                  hits_rows = hits->ColumnInt64(0);
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(versions, 2);
  EXPECT_EQ(hits_rows, 1);  // migration 2's INSERT ran once
}

TEST_F(PostgresTest, BindsReadsAndMapsErrors) {
  auto db = Open(NewDatabase());
  ASSERT_NE(db, nullptr);
  const std::string bytes("\0\x01\xff binary", 10);
  ASSERT_TRUE(db->Write([&](PostgresConnection& c) -> absl::Status {
                  auto insert = c.Prepare(
                      "INSERT INTO items(id, n, payload, created_micros) "
                      "VALUES (?, ?, ?, ?)");
                  if (!insert.ok()) return insert.status();
                  insert->Bind(1, "a").Bind(2, int64_t{1} << 40);
                  insert->BindBlob(3, bytes).BindNull(4);
                  return insert->Run();
                }).ok());
  // A duplicate key is ALREADY_EXISTS, and the transaction left nothing.
  absl::Status duplicate = db->Write([&](PostgresConnection& c) {
    auto insert = c.Prepare("INSERT INTO items(id, n) VALUES (?, ?)");
    if (!insert.ok()) return insert.status();
    absl::Status first = insert->Bind(1, "b").Bind(2, 2).Run();
    if (!first.ok()) return first;
    insert->Reset();
    return insert->Bind(1, "a").Bind(2, 3).Run();
  });
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists) << duplicate;
  absl::Status read = db->Read([&](PostgresConnection& c) -> absl::Status {
    // A parameter first seen where PostgreSQL cannot infer its type
    // needs a CAST (which SQLite reads the same way).
    auto select = c.Prepare(
        "SELECT id, n, payload, created_micros FROM items "
        "WHERE (CAST(?1 AS BIGINT) IS NULL OR n > ?1) ORDER BY id");
    if (!select.ok()) return select.status();
    select->BindNull(1);
    std::vector<std::string> ids;
    while (true) {
      auto row = select->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      ids.push_back(select->ColumnText(0));
      EXPECT_EQ(select->ColumnInt64(1), int64_t{1} << 40);
      EXPECT_EQ(select->ColumnText(2), bytes);
      EXPECT_TRUE(select->ColumnIsNull(3));
    }
    EXPECT_EQ(ids, std::vector<std::string>{"a"});
    return absl::OkStatus();
  });
  ASSERT_TRUE(read.ok()) << read;
  // A body's own ABORTED (a stale etag) is returned at once, not retried.
  int runs = 0;
  absl::Status stale = db->Write([&](PostgresConnection&) {
    ++runs;
    return absl::AbortedError("stale etag");
  });
  EXPECT_EQ(stale.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(runs, 1);
}

TEST_F(PostgresTest, ConcurrentWritesBehaveAsIfAlone) {
  auto db = Open(NewDatabase());
  ASSERT_NE(db, nullptr);
  constexpr int kThreads = 4;
  constexpr int kIncrements = 50;
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        // Read-modify-write: lost updates would show under weaker isolation.
        absl::Status status =
            db->Write([](PostgresConnection& c) -> absl::Status {
              auto read =
                  c.Prepare("SELECT value FROM counters WHERE name = ?");
              if (!read.ok()) return read.status();
              auto row = read->Bind(1, "hits").Step();
              if (!row.ok()) return row.status();
              const int64_t value = read->ColumnInt64(0);
              auto write =
                  c.Prepare("UPDATE counters SET value = ? WHERE name = ?");
              if (!write.ok()) return write.status();
              return write->Bind(1, value + 1).Bind(2, "hits").Run();
            });
        if (!status.ok()) ++failures;
      }
    });
  }
  for (auto& writer : writers) writer.join();
  EXPECT_EQ(failures.load(), 0);
  int64_t value = 0;
  ASSERT_TRUE(db->Read([&](PostgresConnection& c) -> absl::Status {
                  auto read = c.Prepare(
                      "SELECT value FROM counters WHERE name = 'hits'");
                  if (!read.ok()) return read.status();
                  auto row = read->Step();
                  if (!row.ok()) return row.status();
                  value = read->ColumnInt64(0);
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(value, kThreads * kIncrements);
}

}  // namespace
}  // namespace custos
