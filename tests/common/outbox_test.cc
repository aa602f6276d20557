// The transactional outbox on a real SQLite file, with a test clock and a
// peer that fails on demand (DESIGN §1: nothing lost, retried with backoff).
#include "common/outbox.h"

#include <atomic>
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
                                 {4, kOutboxDeadLettersSchema},
                                 {5, kOutboxTraceSchema}};
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

// Issue 13: a group of messages is handed to the peer at once (PeerDelivery
// sends them concurrently) and its outcome recorded in one transaction; a
// retryable failure in a group keeps that message queued, records the
// others, and ends the pass.
TEST_F(OutboxTest, GroupsGoOutTogetherAndAFailureKeepsOnlyItsMessage) {
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(absl::StrCat("m", 100 + i));
  ASSERT_TRUE(Enqueue(ids).ok());
  OutboxOptions options;
  options.max_in_flight = 8;
  std::vector<size_t> group_sizes;
  std::vector<std::string> received;
  OutboxWorker worker(
      db_.get(), &clock_, "peer", options,
      [&](const std::vector<OutboxMessage>& group) {
        group_sizes.push_back(group.size());
        std::vector<absl::Status> results;
        for (const OutboxMessage& message : group) {
          custos::common::v1::AuditEvent event;
          EXPECT_TRUE(event.ParseFromString(message.payload));
          if (event.request_id() == "m110") {
            results.push_back(absl::UnavailableError("peer restarting"));
          } else {
            received.push_back(event.request_id());
            results.push_back(absl::OkStatus());
          }
        }
        return results;
      });
  EXPECT_EQ(worker.DeliverPending(absl::Seconds(5)).code(),
            absl::StatusCode::kUnavailable);
  // Two groups of 8; the pass ended with the second, which held m110.
  EXPECT_THAT(group_sizes, ElementsAre(8, 8));
  EXPECT_EQ(received.size(), 15u);
  EXPECT_EQ(*worker.Depth(), 5);  // m110 (retried later) and m116..m119
  EXPECT_EQ(worker.delivered(), 15);
  EXPECT_EQ(worker.failed_attempts(), 1);
}

// Issue 13: after a kill -9, the restarted process (same replica name)
// takes its predecessor's lease at once; any other replica still waits.
TEST_F(OutboxTest, ARestartedReplicaTakesItsOwnLeaseAtOnce) {
  ASSERT_TRUE(Enqueue({"a"}).ok());
  ASSERT_TRUE(
      db_->Write([&](Connection& db) -> absl::Status {
           auto insert = db.Prepare(
               "INSERT INTO outbox_leases(destination, holder, "
               "expire_micros) VALUES ('peer', 'pod-0/0.0.0.0:50051', ?)");
           if (!insert.ok()) return insert.status();
           return insert
               ->Bind(1, absl::ToUnixMicros(clock_.Now() + absl::Seconds(10)))
               .Run();
         })
          .ok());
  OutboxOptions other_name;
  other_name.holder = "pod-1/0.0.0.0:50051";
  OutboxWorker other(db_.get(), &clock_, "peer", other_name,
                     [&](const OutboxMessage& m) { return peer_.Deliver(m); });
  EXPECT_EQ(other.DeliverPending(absl::Milliseconds(50)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(peer_.received.empty());
  OutboxOptions same_name;
  same_name.holder = "pod-0/0.0.0.0:50051";
  OutboxWorker successor(
      db_.get(), &clock_, "peer", same_name,
      [&](const OutboxMessage& m) { return peer_.Deliver(m); });
  ASSERT_TRUE(successor.DeliverPending(absl::Seconds(5)).ok());
  EXPECT_THAT(peer_.received, ElementsAre("a"));
}

// Issue 13: Stop ends a pass after the group in flight, gives the lease up
// and leaves the backlog to the next owner, whatever its size.
TEST_F(OutboxTest, StopEndsAPassAfterTheGroupInFlightAndFreesTheLease) {
  std::vector<std::string> ids;
  for (int i = 0; i < 2000; ++i) ids.push_back(absl::StrCat("m", i));
  ASSERT_TRUE(Enqueue(ids).ok());
  OutboxOptions options;
  options.max_in_flight = 10;
  std::atomic<int> groups{0};
  auto worker = std::make_unique<OutboxWorker>(
      db_.get(), &clock_, "peer", options,
      [&](const std::vector<OutboxMessage>& group) {
        absl::SleepFor(absl::Milliseconds(20));  // a slow peer
        groups.fetch_add(1);
        return std::vector<absl::Status>(group.size(), absl::OkStatus());
      });
  worker->Start();
  const absl::Time by = absl::Now() + absl::Seconds(10);
  while (groups.load() < 2 && absl::Now() < by) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GE(groups.load(), 2);
  const absl::Time stop_started = absl::Now();
  worker->Stop();
  const absl::Duration stop_took = absl::Now() - stop_started;
  // One group in flight at most (20 ms), not the 200 groups queued (4 s).
  EXPECT_LT(stop_took, absl::Seconds(1)) << stop_took;
  EXPECT_EQ(worker->DeliverPending(absl::Seconds(1)).code(),
            absl::StatusCode::kUnavailable);
  const int64_t left = *worker->Depth();
  EXPECT_GT(left, 1000);
  EXPECT_EQ(left, 2000 - 10 * groups.load());
  // The lease was given up: another replica carries on at once.
  OutboxOptions next_options;
  next_options.holder = "next-owner";
  OutboxWorker next(db_.get(), &clock_, "peer", next_options,
                    [&](const OutboxMessage& m) { return peer_.Deliver(m); });
  ASSERT_TRUE(next.DeliverPending(absl::Seconds(30)).ok());
  EXPECT_EQ(static_cast<int64_t>(peer_.received.size()), left);
}

// Only answers no retry can change are dead letters: an outage, a rejected
// service token (fixed by the operator) or a method the receiver does not
// know yet (a rolling upgrade under way) keeps the message queued.
TEST(OutboxRefusalTest, OnlyPermanentAnswersAreDeadLettered) {
  EXPECT_TRUE(IsPermanentRefusal(absl::InvalidArgumentError("")));
  EXPECT_TRUE(IsPermanentRefusal(absl::NotFoundError("")));
  EXPECT_TRUE(IsPermanentRefusal(absl::PermissionDeniedError("")));
  EXPECT_TRUE(IsPermanentRefusal(absl::FailedPreconditionError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::UnimplementedError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::UnavailableError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::DeadlineExceededError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::UnauthenticatedError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::ResourceExhaustedError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::AbortedError("")));
  EXPECT_FALSE(IsPermanentRefusal(absl::InternalError("")));
}

}  // namespace
}  // namespace custos
