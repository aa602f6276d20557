// Issue 13: the store's health shows in status codes and readiness, against
// real SQLite files and the real notification_service:
//  - corruption found while serving turns health NOT_SERVING (calls that hit
//    it are DATA_LOSS), with one clear log line;
//  - a corrupt store is refused at start and left as it is, never replaced
//    by an empty one; a missing one too when --create_database=false;
//  - a full disk is RESOURCE_EXHAUSTED (retry once there is room) and the
//    store is healthy again after the next write that fits.
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/database.h"
#include "common/status_macros.h"
#include "custos/notifications/v1/notifications_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/support/service_process.h"
#include "tests/support/test_token.h"

namespace custos {
namespace {

namespace nv1 = ::custos::notifications::v1;
using ::custos::testing::FreePort;
using ::custos::testing::LoopbackChannel;
using ::custos::testing::MakeTempDir;
using ::custos::testing::ServiceProcess;
using ::testing::HasSubstr;

constexpr char kSecret[] = "store-health-integration-secret-0123456789";
constexpr char kBinary[] = "services/notification_service/notification_service";

std::string Token(const std::string& subject,
                  std::vector<std::string> roles = {}) {
  return ::custos::testing::TestToken(kSecret, subject, std::move(roles));
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Overwrites every byte of `path` (when it exists) with noise, keeping its
// size: what a failing disk or a bad restore leaves behind.
void Scramble(const std::string& path) {
  const size_t size = ReadAll(path).size();
  std::mt19937 noise(7);
  std::string junk(size, '\0');
  for (char& c : junk) c = static_cast<char>(noise());
  std::ofstream out(path, std::ios::binary | std::ios::in | std::ios::out);
  out.write(junk.data(), static_cast<std::streamsize>(junk.size()));
}

class StoreHealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ::custos::testing::WriteFile(dir_ + "/secret", kSecret);
    port_ = FreePort();
    db_path_ = dir_ + "/notifications.db";
  }

  std::unique_ptr<ServiceProcess> Notifications(
      std::vector<std::string> more = {}) {
    std::vector<std::string> args = {
        absl::StrCat("--listen=127.0.0.1:", port_),
        absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
        absl::StrCat("--database=sqlite:", db_path_),
        "--customers_address=127.0.0.1:1"};
    args.insert(args.end(), more.begin(), more.end());
    return std::make_unique<ServiceProcess>(kBinary, args);
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + token);
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(10));
    return context;
  }

  void Notify(nv1::NotificationService::Stub& stub, const std::string& id) {
    nv1::NotifyRequest notice;
    notice.add_recipients("users/una");
    notice.set_category(nv1::CATEGORY_ACCOUNT);
    notice.set_severity(nv1::SEVERITY_INFO);
    notice.set_title("Hello");
    notice.set_body("A notice");
    notice.set_request_id(id);
    nv1::Alert alert;
    auto status = stub.Notify(As(Token("custos-peer", {"service"})).get(),
                              notice, &alert);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  std::string dir_;
  std::string db_path_;
  int port_ = 0;
};

TEST_F(StoreHealthTest, CorruptionFoundWhileServingTurnsHealthNotServing) {
  auto service = Notifications();
  ASSERT_TRUE(service->Start(absl::StrCat("127.0.0.1:", port_)).ok());
  auto channel = LoopbackChannel(port_);
  auto stub = nv1::NotificationService::NewStub(channel);
  for (int i = 0; i < 3; ++i) Notify(*stub, absl::StrCat("n", i));
  // The file and its write-ahead log turn to noise under the running
  // process; connections that have not cached the pages read the noise.
  Scramble(db_path_);
  Scramble(db_path_ + "-wal");
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckResponse answer;
  int data_loss = 0;
  const absl::Time by = absl::Now() + absl::Seconds(20);
  do {
    // Concurrent reads spread over the pool's connections.
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<nv1::ListNotificationsResponse> responses(8);
    std::vector<grpc::Status> statuses(8);
    grpc::CompletionQueue queue;
    std::vector<std::unique_ptr<
        grpc::ClientAsyncResponseReader<nv1::ListNotificationsResponse>>>
        calls;
    nv1::ListNotificationsRequest list;
    list.set_parent("users/una");
    for (int i = 0; i < 8; ++i) {
      contexts.push_back(As(Token("una")));
      calls.push_back(
          stub->AsyncListNotifications(contexts.back().get(), list, &queue));
      calls.back()->Finish(&responses[i], &statuses[i],
                           reinterpret_cast<void*>(static_cast<intptr_t>(i)));
    }
    for (int i = 0; i < 8; ++i) {
      void* tag = nullptr;
      bool ok = false;
      ASSERT_TRUE(queue.Next(&tag, &ok));
    }
    for (const grpc::Status& status : statuses) {
      if (status.error_code() == grpc::StatusCode::DATA_LOSS) ++data_loss;
      // Never a made-up answer from an empty store.
      EXPECT_TRUE(status.ok() ||
                  status.error_code() == grpc::StatusCode::DATA_LOSS ||
                  status.error_code() == grpc::StatusCode::UNAVAILABLE)
          << status.error_code() << " " << status.error_message();
    }
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    ASSERT_TRUE(health->Check(&context, request, &answer).ok());
    if (answer.status() == grpc::health::v1::HealthCheckResponse::NOT_SERVING) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  } while (absl::Now() < by);
  EXPECT_EQ(answer.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  // The service's own name goes NOT_SERVING too (what probes ask).
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest named;
  named.set_service("custos.notifications.v1.NotificationService");
  ASSERT_TRUE(health->Check(&context, named, &answer).ok());
  EXPECT_EQ(answer.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  std::printf("[ figure ] %d calls answered DATA_LOSS before NOT_SERVING\n",
              data_loss);
  service->Signal(SIGTERM);
  service->WaitForExit(absl::Seconds(20));
  const std::string log = service->ReadLog();
  EXPECT_THAT(log,
              HasSubstr("store is corrupt: not ready until it is restored"));
  EXPECT_THAT(log, HasSubstr("not ready: health NOT_SERVING"));
}

TEST_F(StoreHealthTest, ACorruptStoreIsRefusedAtStartAndKeptAsItIs) {
  {
    auto service = Notifications();
    ASSERT_TRUE(service->Start(absl::StrCat("127.0.0.1:", port_)).ok());
    auto stub = nv1::NotificationService::NewStub(LoopbackChannel(port_));
    Notify(*stub, "before");
    ASSERT_EQ(service->Stop(), 0);
  }
  Scramble(db_path_);
  const std::string scrambled = ReadAll(db_path_);
  auto service = Notifications();
  EXPECT_FALSE(
      service->Start(absl::StrCat("127.0.0.1:", port_), absl::Seconds(10))
          .ok());
  EXPECT_NE(service->WaitForExit(absl::Seconds(10)), 0);
  EXPECT_THAT(service->ReadLog(), HasSubstr("store is corrupt"));
  // Left for an operator to restore: not repaired, not replaced.
  EXPECT_EQ(ReadAll(db_path_), scrambled);
}

TEST_F(StoreHealthTest, AMissingStoreIsNotCreatedWhenItMustExist) {
  auto service = Notifications({"--create_database=false"});
  EXPECT_FALSE(
      service->Start(absl::StrCat("127.0.0.1:", port_), absl::Seconds(10))
          .ok());
  EXPECT_NE(service->WaitForExit(absl::Seconds(10)), 0);
  EXPECT_THAT(service->ReadLog(), HasSubstr("store is missing"));
  EXPECT_NE(access(db_path_.c_str(), F_OK), 0) << "an empty store was created";
}

// A disk with no room left, made real with SQLite's own page limit (the
// same SQLITE_FULL a full file system gives).
TEST(StoreFullTest, AFullDiskIsResourceExhaustedUntilThereIsRoom) {
  const std::string path = MakeTempDir() + "/full.db";
  DatabaseOptions options;
  options.connections = 1;  // the page limit is per connection
  auto db = OpenDatabase(
      absl::StrCat("sqlite:", path),
      {{1, "CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)"}}, options);
  ASSERT_TRUE(db.ok()) << db.status();
  auto insert = [&](int kib) {
    return (*db)->Write([&](Connection& c) -> absl::Status {
      auto statement = c.Prepare("INSERT INTO blobs(data) VALUES (?)");
      if (!statement.ok()) return statement.status();
      return statement->BindBlob(1, std::string(kib * 1024, 'x')).Run();
    });
  };
  ASSERT_TRUE(insert(4).ok());
  ASSERT_TRUE((*db)
                  ->Write([](Connection& c) {
                    return c.Exec("PRAGMA max_page_count = 8");
                  })
                  .ok());
  const absl::Status full = insert(64);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_THAT(std::string(full.message()), HasSubstr("store is full"));
  EXPECT_TRUE(IsStoreFull(full));
  EXPECT_TRUE(IsStoreFull((*db)->Health())) << (*db)->Health();
  // Reads still work while full.
  EXPECT_TRUE((*db)
                  ->Read([](Connection& c) {
                    return c.Exec("SELECT COUNT(*) FROM blobs");
                  })
                  .ok());
  ASSERT_TRUE((*db)
                  ->Write([](Connection& c) {
                    return c.Exec("PRAGMA max_page_count = 100000");
                  })
                  .ok());
  EXPECT_TRUE(insert(64).ok());
  EXPECT_TRUE((*db)->Health().ok()) << (*db)->Health();
}

// A body's own RESOURCE_EXHAUSTED or DATA_LOSS (a quota, a bad payload) says
// nothing about the store.
TEST(StoreFullTest, ABodysOwnErrorsDoNotMarkTheStore) {
  auto db = OpenDatabase(absl::StrCat("sqlite:", MakeTempDir(), "/own.db"), {});
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_FALSE((*db)
                   ->Write([](Connection&) {
                     return absl::ResourceExhaustedError("quota");
                   })
                   .ok());
  EXPECT_FALSE(
      (*db)->Read([](Connection&) { return absl::DataLossError("bad"); }).ok());
  EXPECT_TRUE((*db)->Health().ok()) << (*db)->Health();
}

// Group commit (issue 13): concurrent SQLite writers share transactions, each
// body in its own savepoint. More writers than one group holds (64), some of
// whose bodies fail after writing: every successful body's effect is there
// exactly once, a failed one's not at all, as if each had run alone.
TEST(SqliteGroupCommitTest, ConcurrentWritesCommitAsIfAloneAndFailuresAlone) {
  auto db = OpenDatabase(
      absl::StrCat("sqlite:", MakeTempDir(), "/group.db"),
      {{1,
        "CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter "
        "VALUES (0); CREATE TABLE rows (id TEXT PRIMARY KEY);"}});
  ASSERT_TRUE(db.ok()) << db.status();
  constexpr int kThreads = 80;
  constexpr int kWrites = 20;
  std::atomic<int> succeeded{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i) {
        const bool fail = (t * kWrites + i) % 7 == 0;
        absl::Status status = (*db)->Write([&](Connection& c) -> absl::Status {
          auto bump = c.Prepare("UPDATE counter SET n = n + 1");
          if (!bump.ok()) return bump.status();
          RETURN_IF_ERROR(bump->Run());
          auto insert = c.Prepare("INSERT INTO rows(id) VALUES (?)");
          if (!insert.ok()) return insert.status();
          RETURN_IF_ERROR(insert->Bind(1, absl::StrCat(t, "/", i)).Run());
          return fail ? absl::FailedPreconditionError("changed its mind")
                      : absl::OkStatus();
        });
        EXPECT_EQ(status.ok(), !fail) << status;
        if (status.ok()) succeeded.fetch_add(1);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  int64_t counter = -1, rows = -1;
  ASSERT_TRUE((*db)
                  ->Read([&](Connection& c) -> absl::Status {
                    auto n = c.Prepare(
                        "SELECT (SELECT n FROM counter), (SELECT COUNT(*) "
                        "FROM rows)");
                    if (!n.ok()) return n.status();
                    auto row = n->Step();
                    if (!row.ok()) return row.status();
                    counter = n->ColumnInt64(0);
                    rows = n->ColumnInt64(1);
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(succeeded.load(),
            kThreads * kWrites - (kThreads * kWrites + 6) / 7);
  EXPECT_EQ(counter, succeeded.load());
  EXPECT_EQ(rows, succeeded.load());
}

}  // namespace
}  // namespace custos
