// RedisClient against a real redis-server: round trips, TTLs, and what
// happens when Redis dies and comes back (DESIGN §1: slower, never wrong).
#include "common/redis_client.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/redis_server.h"
#include "tests/support/service_process.h"

namespace custos {
namespace {

using ::custos::testing::FreePort;
using ::custos::testing::RedisServer;

class RedisClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<RedisServer>(FreePort());
    ASSERT_TRUE(server_->Start());
    RedisOptions options;
    options.address = absl::StrCat("127.0.0.1:", server_->port());
    options.retry_interval = absl::Milliseconds(200);
    client_ = std::make_unique<RedisClient>(options);
  }
  std::unique_ptr<RedisServer> server_;
  std::unique_ptr<RedisClient> client_;
};

TEST_F(RedisClientTest, RoundTripsBinaryValuesAndMissesAreNullopt) {
  const std::string value("a\0b\r\nc", 6);
  ASSERT_TRUE(client_->SetEx("k", value, absl::Minutes(1)).ok());
  auto got = client_->Get("k");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, value);
  ASSERT_TRUE(client_->Del("k").ok());
  got = client_->Get("k");
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
  EXPECT_EQ(client_->stats().hits, 1);
  EXPECT_EQ(client_->stats().misses, 1);
}

TEST_F(RedisClientTest, EntriesExpireAfterTheirTtl) {
  ASSERT_TRUE(client_->SetEx("short", "v", absl::Milliseconds(50)).ok());
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
    auto got = client_->Get("short");
    ASSERT_TRUE(got.ok());
    gone = !got->has_value();
  }
  EXPECT_TRUE(gone);
}

TEST_F(RedisClientTest, DeadRedisDegradesFastAndRecovers) {
  ASSERT_TRUE(client_->Ping().ok());
  server_->Kill();
  const absl::Time start = absl::Now();
  EXPECT_EQ(client_->Get("k").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(client_->degraded());
  // Degraded: fails without touching the network.
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(client_->Get("k").status().code(),
              absl::StatusCode::kUnavailable);
  }
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(180));
  EXPECT_GE(client_->stats().fast_failures, 100);

  ASSERT_TRUE(server_->Start());
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
    back = client_->Ping().ok();
  }
  EXPECT_TRUE(back);
  EXPECT_FALSE(client_->degraded());
}

TEST(RedisClientDisabledTest, NoAddressMeansDisabledAndUnavailable) {
  RedisClient client(RedisOptions{});
  EXPECT_FALSE(client.enabled());
  EXPECT_EQ(client.Get("k").status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace custos
