// customer_management_service: partners, partner users, customers, products,
// customer users and management settings (DESIGN §1, R1-R4).
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/executor.h"
#include "common/flags.h"
#include "common/ids.h"
#include "common/json_log.h"
#include "common/metrics.h"
#include "common/outbox.h"
#include "common/peer_delivery.h"
#include "common/periodic.h"
#include "common/retention.h"
#include "common/server.h"
#include "common/service_flags.h"
#include "common/service_token.h"
#include "common/store_identity.h"
#include "services/customer_management_service/customer_management.h"
#include "services/customer_management_service/customer_management_service.h"
#include "services/customer_management_service/customer_store.h"
#include "services/customer_management_service/site_directory.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50052", "host:port to serve gRPC on");
ABSL_FLAG(std::string, database, "sqlite:customers.db",
          "the service's database: sqlite:PATH or postgresql://...");
ABSL_FLAG(std::string, access_address, "",
          "access_service host:port, told about customer changes through the "
          "outbox; empty = none");
ABSL_FLAG(std::string, notifications_address, "",
          "notification_service host:port, sent account alerts when "
          "management settings change, through the outbox; empty = none");
ABSL_FLAG(int, peer_timeout_ms, 1000, "deadline of calls to peer services");
ABSL_FLAG(absl::Duration, change_retention, absl::Hours(24 * 7),
          "how long the change feed (ListCustomerChanges) keeps a change; a "
          "follower further behind must re-read what it keeps");

using custos::Die;

int main(int argc, char** argv) {
  custos::BlockTerminationSignals();
  custos::ParseFlagsWithEnvironment(argc, argv);
  custos::ApplyLogFlags();

  const custos::JwtVerifier verifier = custos::VerifierFromFlags();

  auto db = custos::customers::CustomerStore::Open(
      absl::GetFlag(FLAGS_database), custos::DatabaseOptionsFromFlags());
  if (!db.ok()) Die("cannot open database: " + db.status().ToString());
  custos::Metrics::Default().AddCollector(custos::DatabaseMetrics(db->get()));
  auto identity = custos::LoadStoreIdentity(**db);
  if (!identity.ok())
    Die("cannot read the store: " + identity.status().ToString());
  if (identity->created) {
    custos::Log("info", "store created",
                {{"incarnation", identity->incarnation}});
  }

  // Outboxes to the peers (DESIGN §1), one worker per peer so that one
  // peer's outage never delays another's messages.
  custos::ServiceToken token(custos::ServiceTokenFileFlag());
  const auto peer_credentials = custos::PeerCredentialsFromFlags();
  const absl::Duration timeout =
      absl::Milliseconds(absl::GetFlag(FLAGS_peer_timeout_ms));
  auto outbox_to = [&](const std::string& destination,
                       const std::string& address) {
    std::unique_ptr<custos::OutboxWorker> worker;
    if (address.empty()) return worker;
    worker = std::make_unique<custos::OutboxWorker>(
        db->get(), custos::RealClock::Get(), destination,
        custos::OutboxOptionsFromFlags(absl::GetFlag(FLAGS_listen)),
        custos::PeerDelivery(custos::PeerChannel(address, peer_credentials),
                             &token, timeout));
    worker->Start();
    return worker;
  };
  std::unique_ptr<custos::OutboxWorker> access_outbox =
      outbox_to("access", absl::GetFlag(FLAGS_access_address));
  std::unique_ptr<custos::OutboxWorker> notifications_outbox =
      outbox_to("notifications", absl::GetFlag(FLAGS_notifications_address));
  std::vector<custos::OutboxWorker*> outboxes;
  for (auto* worker : {access_outbox.get(), notifications_outbox.get()}) {
    if (worker != nullptr) outboxes.push_back(worker);
  }
  custos::Metrics::Default().AddCollector(custos::OutboxMetrics(outboxes));
  custos::RandomIdGenerator ids;
  // Customer.sites is read from AccessService, which owns the link.
  std::unique_ptr<custos::customers::GrpcSiteDirectory> sites;
  if (const std::string address = absl::GetFlag(FLAGS_access_address);
      !address.empty()) {
    sites = std::make_unique<custos::customers::GrpcSiteDirectory>(
        custos::access::v1::AccessService::NewStub(
            custos::PeerChannel(address, peer_credentials)),
        &token, timeout);
  }
  custos::customers::CustomerManagement logic(
      db->get(), custos::RealClock::Get(), &ids, identity->incarnation,
      access_outbox.get(), notifications_outbox.get(), sites.get());
  if (absl::StatusOr<int> recorded = logic.RecordUnnumberedCustomers();
      !recorded.ok()) {
    Die("cannot number customers in the change feed: " +
        recorded.status().ToString());
  }
  if (absl::StatusOr<int> moved = logic.MigrateSiteLinks(); !moved.ok()) {
    Die("cannot hand site links to access_service: " +
        moved.status().ToString());
  } else if (*moved > 0) {
    custos::Log("info", "site links handed to access_service",
                {{"links", absl::StrCat(*moved)}});
  }
  const absl::Duration retention = absl::GetFlag(FLAGS_change_retention);
  if (retention <= absl::ZeroDuration()) Die("--change_retention must be > 0");
  custos::Periodic prune_changes(std::min(retention, absl::Minutes(1)), [&] {
    absl::Status pruned = logic.PruneChanges(retention);
    if (!pruned.ok()) {
      custos::Log("warning", "pruning the change feed failed",
                  {{"error", pruned.ToString()}});
    }
  });
  custos::RetentionPruner retention_pruner(
      custos::SharedRetentionRules(db->get()), custos::RealClock::Get());
  custos::Executor executor(custos::WorkerThreadsFlag(),
                            /*inline_reads=*/!(*db)->ReadsMayBlock());
  custos::customers::CustomerManagementService service(&logic, &verifier,
                                                       &executor);

  custos::ServerOptions options = custos::ServerOptionsFromFlags(
      absl::GetFlag(FLAGS_listen),
      {"custos.customers.v1.CustomerManagementService"}, db->get());
  absl::Status status = custos::ServeUntilTerminated(options, {&service});
  executor.Shutdown();
  if (access_outbox) access_outbox->Stop();
  if (notifications_outbox) notifications_outbox->Stop();
  if (!status.ok()) Die(status.ToString());
  custos::FlushLogs();
  return 0;
}
