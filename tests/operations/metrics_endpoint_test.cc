// Issue 13: the metrics endpoint of a real notification_service as an
// operator's Prometheus meets it: conventional gRPC server metric names and
// labels, process_* metrics, text that `promtool check metrics` accepts,
// IPv6, and scrapes answered within a second while a slow client trickles
// a request and dozens of idle connections sit open.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "custos/notifications/v1/notifications_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/http_receiver.h"
#include "tests/support/service_process.h"
#include "tests/support/test_token.h"

namespace custos {
namespace {

namespace nv1 = ::custos::notifications::v1;
using ::custos::testing::FreePort;
using ::custos::testing::HttpGet;
using ::custos::testing::LoopbackChannel;
using ::custos::testing::MakeTempDir;
using ::custos::testing::ServiceProcess;
using ::testing::HasSubstr;

constexpr char kSecret[] = "metrics-endpoint-test-secret-0123456789abc";
constexpr char kBinary[] = "services/notification_service/notification_service";

int Connect(int port) {
  const int connection = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(connection, reinterpret_cast<sockaddr*>(&address),
              sizeof(address)) != 0) {
    close(connection);
    return -1;
  }
  return connection;
}

class MetricsEndpointTest : public ::testing::Test {
 protected:
  void Start(const std::string& metrics_listen) {
    dir_ = MakeTempDir();
    ::custos::testing::WriteFile(dir_ + "/secret", kSecret);
    port_ = FreePort();
    service_ = std::make_unique<ServiceProcess>(
        kBinary, std::vector<std::string>{
                     absl::StrCat("--listen=127.0.0.1:", port_),
                     absl::StrCat("--jwt_hs256_secret_file=", dir_, "/secret"),
                     absl::StrCat("--database=sqlite:", dir_, "/n.db"),
                     "--customers_address=127.0.0.1:1",
                     absl::StrCat("--metrics_listen=", metrics_listen)});
    ASSERT_TRUE(service_->Start(absl::StrCat("127.0.0.1:", port_)).ok());
    // One call of each outcome: OK and a refused one.
    auto stub = nv1::NotificationService::NewStub(LoopbackChannel(port_));
    nv1::ListNotificationsRequest list;
    list.set_parent("users/una");
    nv1::ListNotificationsResponse response;
    grpc::ClientContext ok;
    ok.AddMetadata("authorization",
                   "Bearer " + ::custos::testing::TestToken(kSecret, "una"));
    ASSERT_TRUE(stub->ListNotifications(&ok, list, &response).ok());
    grpc::ClientContext refused;
    EXPECT_EQ(stub->ListNotifications(&refused, list, &response).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }

  std::string dir_;
  int port_ = 0;
  std::unique_ptr<ServiceProcess> service_;
};

TEST_F(MetricsEndpointTest, ConventionalNamesAndProcessMetricsPassPromtool) {
  const int metrics_port = FreePort();
  Start(absl::StrCat("127.0.0.1:", metrics_port));
  const std::string scrape = HttpGet(metrics_port, "/metrics");
  ASSERT_THAT(scrape, HasSubstr("HTTP/1.1 200 OK"));
  // go-grpc-prometheus names and labels, as stock dashboards query them.
  EXPECT_THAT(scrape,
              HasSubstr("grpc_server_handled_total{grpc_service=\"custos."
                        "notifications.v1.NotificationService\",grpc_method="
                        "\"ListNotifications\",grpc_type=\"unary\",grpc_code="
                        "\"OK\"} 1"));
  EXPECT_THAT(scrape, HasSubstr("grpc_code=\"Unauthenticated\"} 1"));
  EXPECT_THAT(scrape,
              HasSubstr("grpc_server_started_total{grpc_service=\"custos."
                        "notifications.v1.NotificationService\",grpc_method="
                        "\"ListNotifications\",grpc_type=\"unary\"} 2"));
  EXPECT_THAT(scrape, HasSubstr("grpc_server_handling_seconds_bucket{grpc_"
                                "service=\"custos.notifications.v1."
                                "NotificationService\",grpc_method=\"List"
                                "Notifications\",grpc_type=\"unary\",le="
                                "\"+Inf\"} 2"));
  for (const char* name :
       {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
        "process_start_time_seconds ", "process_open_fds ", "process_max_fds ",
        "custos_store_healthy 1"}) {
    EXPECT_THAT(scrape, HasSubstr(name));
  }
  // promtool (Debian's prometheus package) reads it as Prometheus would.
  EXPECT_EQ(::custos::testing::PromtoolCheckMetrics(scrape), "");
}

TEST_F(MetricsEndpointTest, ASlowClientAndIdleConnectionsDoNotDelayScrapes) {
  const int metrics_port = FreePort();
  Start(absl::StrCat("127.0.0.1:", metrics_port));
  // 20 connections that never send anything, and one that sends a byte
  // every 300 ms.
  std::vector<int> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(Connect(metrics_port));
  const int slow = Connect(metrics_port);
  ASSERT_GE(slow, 0);
  const std::string request = "GET /metrics HTTP/1.1\r\n\r\n";
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_EQ(write(slow, request.data() + i, 1), 1);
    absl::SleepFor(absl::Milliseconds(300));
    const absl::Time asked = absl::Now();
    const std::string scrape = HttpGet(metrics_port, "/metrics");
    const absl::Duration took = absl::Now() - asked;
    EXPECT_THAT(scrape, HasSubstr("HTTP/1.1 200 OK"));
    EXPECT_LT(took, absl::Seconds(1)) << "scrape " << i << " took " << took;
  }
  for (int connection : idle) close(connection);
  close(slow);
}

TEST_F(MetricsEndpointTest, ServesOnIpv6) {
  const int metrics_port = FreePort();
  Start(absl::StrCat("[::1]:", metrics_port));
  EXPECT_THAT(HttpGet(metrics_port, "/metrics", "::1"),
              HasSubstr("grpc_server_handled_total{"));
}

}  // namespace
}  // namespace custos
