// The transactional outbox on a real SQLite file, with a test clock and a
// peer that fails on demand (DESIGN §1: nothing lost, retried with backoff).
#include "common/outbox.h"

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/database.h"
#include "custos/common/v1/audit.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/service_process.h"
#include "tests/support/test_database.h"

namespace custos {
namespace {

using ::testing::ElementsAre;

class TestClock final : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

const std::vector<Migration>& Migrations() {
  static const auto* migrations =
      new std::vector<Migration>{{1, kOutboxSchema},
                                 {2, kOutboxByDestinationSchema},
                                 {3, kOutboxLeasesSchema},
                                 {4, kOutboxDeadLettersSchema}};
  return *migrations;
}

// A peer that records what it acknowledged and fails its next `failures`;
// each call takes `delay`.
struct Peer {
  std::vector<std::string> received;
  int failures = 0;
  // Request ids the peer refuses for good (INVALID_ARGUMENT).
  std::set<std::string> refused;
  absl::Duration delay;
  absl::Mutex mu;  // replicas may call at once
  absl::Status Deliver(const OutboxMessage& message) {
    absl::SleepFor(delay);
    absl::MutexLock lock(&mu);
    if (failures > 0) {
      --failures;
      return absl::UnavailableError("peer down");
    }
    custos::common::v1::AuditEvent event;
    EXPECT_TRUE(event.ParseFromString(message.payload));
    if (refused.count(event.request_id()) > 0) {
      return absl::InvalidArgumentError("recipient: not a user name");
    }
    received.push_back(event.request_id());
    return absl::OkStatus();
  }
};

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = ::custos::testing::TestDatabase(::custos::testing::MakeTempDir(),
                                            "outbox");
    Open();
  }
  void Open() {
    auto db = OpenDatabase(spec_, Migrations());
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
  }
  std::unique_ptr<OutboxWorker> Worker(const std::string& destination = "peer",
                                       Peer* peer = nullptr,
                                       Database* db = nullptr) {
    if (peer == nullptr) peer = &peer_;
    return std::make_unique<OutboxWorker>(
        db != nullptr ? db : db_.get(), &clock_, destination, OutboxOptions(),
        [peer](const OutboxMessage& m) { return peer->Deliver(m); });
  }
  absl::Status Enqueue(std::vector<std::string> ids, bool commit = true,
                       const std::string& destination = "peer") {
    return db_->Write([&](Connection& db) -> absl::Status {
      for (const std::string& id : ids) {
        custos::common::v1::AuditEvent event;
        event.set_request_id(id);
        absl::Status status = EnqueueOutbox(db, destination, "/pkg.Peer/Hear",
                                            event, clock_.Now());
        if (!status.ok()) return status;
      }
      return commit ? absl::OkStatus() : absl::AbortedError("rolled back");
    });
  }
  int64_t NextAttemptMicros() {
    int64_t next = 0;
    EXPECT_TRUE(db_->Read([&](Connection& db) -> absl::Status {
                     auto select = db.Prepare(
                         "SELECT next_attempt_micros FROM outbox LIMIT 1");
                     if (!select.ok()) return select.status();
                     auto row = select->Step();
                     if (row.ok() && *row) next = select->ColumnInt64(0);
                     return absl::OkStatus();
                   })
                    .ok());
    return next;
  }

  std::string spec_;
  std::unique_ptr<Database> db_;
  TestClock clock_;
  Peer peer_;
};

TEST_F(OutboxTest, DeliversInOrderOnceAndForgetsDeliveredMessages) {
  ASSERT_TRUE(Enqueue({"a", "b", "c"}).ok());
  auto worker = Worker();
  EXPECT_EQ(*worker->Depth(), 3);
  ASSERT_TRUE(worker->DeliverPending(absl::Seconds(5)).ok());
  EXPECT_THAT(peer_.received, ElementsAre("a", "b", "c"));
  EXPECT_EQ(*worker->Depth(), 0);
  ASSERT_TRUE(worker->DeliverPending(absl::Seconds(5)).ok());
  EXPECT_EQ(peer_.received.size(), 3u);  // nothing twice
}

TEST_F(OutboxTest, FailuresBackOffWithJitterAndAreRetriedUntilAcknowledged) {
  ASSERT_TRUE(Enqueue({"a", "b"}).ok());
  peer_.failures = 3;
  auto worker = Worker();
  const absl::Time start = clock_.Now();
  EXPECT_FALSE(worker->DeliverPending(absl::Seconds(5)).ok());
  // First retry within the initial backoff (full jitter: 0..100 ms).
  EXPECT_LE(NextAttemptMicros(),
            absl::ToUnixMicros(start + absl::Milliseconds(100)));
  // While backing off, a write does not wait on the peer again.
  EXPECT_EQ(worker->DeliverPending(absl::Seconds(5)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(peer_.failures, 2);
  for (int i = 0; i < 10 && peer_.received.size() < 2; ++i) {
    clock_.Advance(absl::Seconds(1));
    (void)worker->DeliverPending(absl::Seconds(5));
  }
  // Order kept: "a" failed first, so it was never overtaken by "b".
  EXPECT_THAT(peer_.received, ElementsAre("a", "b"));
  EXPECT_EQ(*worker->Depth(), 0);
}

TEST_F(OutboxTest, OnePeersOutageDoesNotHoldUpAnothersMessages) {
  Peer down;
  down.failures = 1000;
  ASSERT_TRUE(Enqueue({"n1"}, true, "notifications").ok());
  ASSERT_TRUE(Enqueue({"a1"}).ok());
  ASSERT_TRUE(Enqueue({"n2"}, true, "notifications").ok());
  auto to_down_peer = Worker("notifications", &down);
  auto to_peer = Worker();
  EXPECT_FALSE(to_down_peer->DeliverPending(absl::Seconds(5)).ok());
  ASSERT_TRUE(to_peer->DeliverPending(absl::Seconds(5)).ok());
  EXPECT_THAT(peer_.received, ElementsAre("a1"));
  EXPECT_EQ(*to_peer->Depth(), 0);
  EXPECT_EQ(*to_down_peer->Depth(), 2);
  down.failures = 0;
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(to_down_peer->DeliverPending(absl::Seconds(5)).ok());
  EXPECT_THAT(down.received, ElementsAre("n1", "n2"));
}

TEST_F(OutboxTest, RolledBackChangesSendNothing) {
  EXPECT_FALSE(Enqueue({"ghost"}, /*commit=*/false).ok());
  auto worker = Worker();
  ASSERT_TRUE(worker->DeliverPending(absl::Seconds(5)).ok());
  EXPECT_TRUE(peer_.received.empty());
  EXPECT_EQ(*worker->Depth(), 0);
}

TEST_F(OutboxTest, UndeliveredMessagesSurviveARestart) {
  ASSERT_TRUE(Enqueue({"a"}).ok());
  peer_.failures = 1;
  {
    auto worker = Worker();
    EXPECT_FALSE(worker->DeliverPending(absl::Seconds(5)).ok());
  }
  db_.reset();
  Open();  // a new process on the same database
  clock_.Advance(absl::Seconds(1));
  auto worker = Worker();
  ASSERT_TRUE(worker->DeliverPending(absl::Seconds(5)).ok());
  EXPECT_THAT(peer_.received, ElementsAre("a"));
}

TEST_F(OutboxTest, BackgroundLoopDeliversWithoutBeingAsked) {
  ASSERT_TRUE(Enqueue({"a"}).ok());
  auto worker = Worker();
  worker->Start();
  worker->Wake();
  for (int i = 0; i < 200 && *worker->Depth() > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  worker->Stop();
  EXPECT_THAT(peer_.received, ElementsAre("a"));
}

TEST_F(OutboxTest, ReplicasDeliverEachMessageOnceAndInOrderBetweenThem) {
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(absl::StrCat("m", 100 + i));
  ASSERT_TRUE(Enqueue(ids).ok());
  peer_.delay = absl::Milliseconds(2);  // so that passes overlap
  // A second replica: its own connections to the same database.
  auto other = OpenDatabase(spec_, Migrations());
  ASSERT_TRUE(other.ok()) << other.status();
  auto first = Worker();
  auto second = Worker("peer", &peer_, other->get());
  auto keep_delivering = [](OutboxWorker* worker) {
    for (int i = 0; i < 200 && *worker->Depth() > 0; ++i) {
      (void)worker->DeliverPending(absl::Seconds(5));
    }
  };
  std::thread one(keep_delivering, first.get());
  std::thread two(keep_delivering, second.get());
  one.join();
  two.join();
  EXPECT_THAT(peer_.received, ::testing::ElementsAreArray(ids));
}

TEST_F(OutboxTest, ADeadReplicasLeaseIsTakenOverWhenItRunsOut) {
  ASSERT_TRUE(Enqueue({"a"}).ok());
  // Another replica took the destination and died mid-pass.
  ASSERT_TRUE(
      db_->Write([&](Connection& db) -> absl::Status {
           auto insert = db.Prepare(
               "INSERT INTO outbox_leases(destination, holder, "
               "expire_micros) VALUES ('peer', 'dead-replica', ?)");
           if (!insert.ok()) return insert.status();
           return insert
               ->Bind(1, absl::ToUnixMicros(clock_.Now() + absl::Seconds(10)))
               .Run();
         })
          .ok());
  auto worker = Worker();
  EXPECT_EQ(worker->DeliverPending(absl::Milliseconds(50)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(peer_.received.empty());
  clock_.Advance(absl::Seconds(11));
  ASSERT_TRUE(worker->DeliverPending(absl::Seconds(5)).ok());
  EXPECT_THAT(peer_.received, ElementsAre("a"));
}

// Issue 12: a message the peer refuses for good (a name it will never
// accept) is not retried forever, holding up everything behind it: it moves
// to the dead letters, listable with its error, and the rest goes out.
TEST_F(OutboxTest, APermanentRefusalIsDeadLetteredAndTheRestFlows) {
  peer_.refused = {"b"};
  ASSERT_TRUE(Enqueue({"a", "b", "c"}).ok());
  auto worker = Worker();
  ASSERT_TRUE(worker->DeliverPending(absl::Seconds(5)).ok());
  EXPECT_THAT(peer_.received, ElementsAre("a", "c"));
  EXPECT_EQ(*worker->Depth(), 0);
  EXPECT_EQ(*worker->DeadLetterCount(), 1);
  EXPECT_EQ(worker->dead_lettered(), 1);
  auto letters = ListDeadLetters(*db_, 0, 10);
  ASSERT_TRUE(letters.ok()) << letters.status();
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ((*letters)[0].message.method, "/pkg.Peer/Hear");
  EXPECT_EQ((*letters)[0].message.attempts, 1);
  EXPECT_THAT((*letters)[0].error, ::testing::HasSubstr("not a user name"));
  custos::common::v1::AuditEvent event;
  ASSERT_TRUE(event.ParseFromString((*letters)[0].message.payload));
  EXPECT_EQ(event.request_id(), "b");
  // Paging past the last one ends the list.
  EXPECT_TRUE(ListDeadLetters(*db_, (*letters)[0].message.id, 10)->empty());
}

// Only answers no retry can change are dead letters: an outage or a
// rejected service token (fixed by the operator) keeps the message queued.
TEST(OutboxRefusalTest, OnlyPermanentAnswersAreDeadLettered) {
  EXPECT_TRUE(IsPermanentRefusal(absl::InvalidArgumentError("")));
  EXPECT_TRUE(IsPermanentRefusal(absl::NotFoundError("")));
  EXPECT_TRUE(IsPermanentRefusal(absl::PermissionDeniedError("")));
  EXPECT_TRUE(IsPermanentRefusal(absl::FailedPreconditionError("")));
  EXPECT_TRUE(IsPermanentRefusal(absl::UnimplementedError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::UnavailableError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::DeadlineExceededError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::UnauthenticatedError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::ResourceExhaustedError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::AbortedError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::InternalError("")));
}

}  // namespace
}  // namespace custos
