// access_service: sites, members and roles, access requests and approvals,
// pilots, and permission checks cached in Redis (DESIGN §1, R1, R5-R9).
#include <algorithm>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/executor.h"
#include "common/flags.h"
#include "common/ids.h"
#include "common/json_log.h"
#include "common/metrics.h"
#include "common/peer_delivery.h"
#include "common/periodic.h"
#include "common/redis_client.h"
#include "common/retention.h"
#include "common/server.h"
#include "common/service_flags.h"
#include "common/service_token.h"
#include "common/store_identity.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "services/access_service/access_logic.h"
#include "services/access_service/access_service.h"
#include "services/access_service/access_store.h"
#include "services/access_service/answer_cache.h"
#include "services/access_service/customer_facts_grpc.h"
#include "services/access_service/customer_feed.h"
#include "services/access_service/fact_versions.h"
#include "services/access_service/permission_change_log.h"
#include "services/access_service/permission_engine.h"
#include "services/access_service/policy.h"
#include "services/access_service/site_facts_loader.h"
#include "services/access_service/watch_stream.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "host:port to serve gRPC on");
ABSL_FLAG(std::string, database, "sqlite:access.db",
          "the service's database: sqlite:PATH or postgresql://...");
ABSL_FLAG(std::string, policy_file,
          "deploy/base/policy/default_policy.textproto",
          "the role matrix, text-format custos.access.v1.Policy");
ABSL_FLAG(std::string, redis, "",
          "host:port of Redis for the shared permission cache; empty = none");
ABSL_FLAG(int, redis_timeout_ms, 50,
          "connect and command timeout for Redis; past it, answers come "
          "from the store");
ABSL_FLAG(std::string, customers_address, "127.0.0.1:50052",
          "customer_management_service, for customers/{c} checks");
ABSL_FLAG(int, peer_timeout_ms, 500, "deadline of calls to peer services");
ABSL_FLAG(absl::Duration, decided_request_retention, absl::Hours(24 * 90),
          "how long decided access requests are kept after the decision "
          "(their audit events stay for --audit_retention); inf = forever");
ABSL_FLAG(std::string, notifications_address, "",
          "notification_service host:port, told of access requests and "
          "decisions (R8) through the outbox; empty = none");
ABSL_FLAG(absl::Duration, cache_ttl, absl::Minutes(10),
          "upper bound on how long any cached permission answer lives");
ABSL_FLAG(absl::Duration, access_request_ttl, absl::Hours(24 * 30),
          "pending access requests expire after this long (R6)");
ABSL_FLAG(absl::Duration, expiry_sweep_interval, absl::Minutes(1),
          "how often expired access requests are marked EXPIRED");
ABSL_FLAG(absl::Duration, version_sync_interval, absl::Seconds(1),
          "how often the write sequence is read, so that writes through "
          "other replicas reach this one's answers (the bound on staleness "
          "for checks without a consistency token)");

ABSL_FLAG(absl::Duration, customer_feed_interval, absl::Milliseconds(200),
          "how often customer_management_service's change feed is read");
ABSL_FLAG(absl::Duration, customer_feed_max_lag, absl::Seconds(1),
          "bound on how stale a cached customers/ answer may be: past it "
          "without a complete read of the change feed, customer answers are "
          "read through to customer_management_service");

ABSL_FLAG(absl::Duration, watch_retention, absl::Hours(24),
          "how long the Watch log keeps a change; a WatchPermissionChanges "
          "resume token older than this is OUT_OF_RANGE");
ABSL_FLAG(absl::Duration, watch_poll_interval, absl::Milliseconds(200),
          "how often each WatchPermissionChanges stream reads what is new");
ABSL_FLAG(int, max_watch_streams, 100,
          "WatchPermissionChanges streams served at once by this replica");

using custos::Die;

int main(int argc, char** argv) {
  custos::BlockTerminationSignals();
  custos::ParseFlagsWithEnvironment(argc, argv);
  custos::ApplyLogFlags();

  const custos::JwtVerifier verifier = custos::VerifierFromFlags();

  auto policy =
      custos::access::Policy::LoadFile(absl::GetFlag(FLAGS_policy_file));
  if (!policy.ok()) Die("bad policy file: " + policy.status().ToString());

  auto db = custos::access::AccessStore::Open(
      absl::GetFlag(FLAGS_database), custos::DatabaseOptionsFromFlags());
  if (!db.ok()) Die("cannot open database: " + db.status().ToString());
  custos::Metrics::Default().AddCollector(custos::DatabaseMetrics(db->get()));

  custos::RedisOptions redis_options;
  redis_options.address = absl::GetFlag(FLAGS_redis);
  redis_options.connect_timeout =
      absl::Milliseconds(absl::GetFlag(FLAGS_redis_timeout_ms));
  redis_options.command_timeout = redis_options.connect_timeout;
  custos::RedisClient redis(redis_options);

  auto identity = custos::LoadStoreIdentity(**db);
  if (!identity.ok()) {
    Die("cannot read the store: " + identity.status().ToString());
  }
  if (identity->created) {
    custos::Log("info", "store created",
                {{"incarnation", identity->incarnation}});
  }

  custos::ServiceToken token(custos::ServiceTokenFileFlag());
  const auto peer_credentials = custos::PeerCredentialsFromFlags();
  custos::access::GrpcCustomerSource customers(
      custos::customers::v1::CustomerManagementService::NewStub(
          custos::PeerChannel(absl::GetFlag(FLAGS_customers_address),
                              peer_credentials)),
      &token, absl::Milliseconds(absl::GetFlag(FLAGS_peer_timeout_ms)));

  // The permission engine, composed here (permission_engine.h).
  custos::access::FactVersions versions;
  custos::access::SiteFactsLoader site_facts(db->get());
  custos::access::CustomerFeedOptions feed_options;
  feed_options.max_lag = absl::GetFlag(FLAGS_customer_feed_max_lag);
  const absl::Duration feed_interval =
      absl::GetFlag(FLAGS_customer_feed_interval);
  if (feed_interval <= absl::ZeroDuration() ||
      feed_interval >= feed_options.max_lag) {
    Die("--customer_feed_interval must be > 0 and below "
        "--customer_feed_max_lag");
  }
  custos::access::CustomerFeedFollower feed(
      &customers, &versions, custos::RealClock::Get(), feed_options);
  custos::access::AnswerCacheOptions cache_options;
  cache_options.ttl = absl::GetFlag(FLAGS_cache_ttl);
  // v2: values carry a MAC; the incarnation keeps stores apart.
  cache_options.redis_prefix =
      absl::StrCat("custos:perm:v2:", identity->incarnation, ":");
  cache_options.mac_key = identity->cache_key;
  custos::access::AnswerCache cache(&redis, custos::RealClock::Get(),
                                    cache_options);
  custos::access::PermissionEngine engine(policy->get(), &site_facts,
                                          &customers, &feed, &versions, &cache);
  // R8 notices go out through the outbox (DESIGN §1).
  std::unique_ptr<custos::OutboxWorker> notifications_outbox;
  if (const std::string address = absl::GetFlag(FLAGS_notifications_address);
      !address.empty()) {
    notifications_outbox = std::make_unique<custos::OutboxWorker>(
        db->get(), custos::RealClock::Get(), "notifications",
        custos::OutboxOptionsFromFlags(absl::GetFlag(FLAGS_listen)),
        custos::PeerDelivery(
            custos::PeerChannel(address, peer_credentials), &token,
            absl::Milliseconds(absl::GetFlag(FLAGS_peer_timeout_ms))));
    notifications_outbox->Start();
  }
  custos::RandomIdGenerator ids;
  custos::access::AccessLogicOptions logic_options;
  logic_options.request_ttl = absl::GetFlag(FLAGS_access_request_ttl);
  logic_options.incarnation = identity->incarnation;
  custos::access::PermissionChangeLog change_log(db->get(), &customers,
                                                 identity->incarnation);
  custos::access::AccessLogic logic(db->get(), policy->get(), &engine,
                                    &change_log, &customers,
                                    custos::RealClock::Get(), &ids,
                                    logic_options, notifications_outbox.get());
  if (absl::Status started = logic.Start(); !started.ok()) {
    Die("cannot start: " + started.ToString());
  }

  // R6: expired requests are written down periodically (reads already
  // treat them as expired). Every replica sweeps: the sweep is one
  // transaction, so a request expires, and its requester is told, once.
  auto sweeper = std::make_unique<custos::Periodic>(
      absl::GetFlag(FLAGS_expiry_sweep_interval), [&logic] {
        absl::StatusOr<int> expired = logic.ExpireRequests();
        if (!expired.ok()) {
          custos::Log("warning", "expiring access requests failed",
                      {{"error", expired.status().ToString()}});
        }
      });
  // Customer changes reach this replica's answers within the feed's max
  // lag; until the first read succeeds, customer answers are read through.
  feed.Poll().IgnoreError();
  bool feed_failing = false;
  auto feed_poll = std::make_unique<custos::Periodic>(feed_interval, [&] {
    absl::Status polled = feed.Poll();
    if (polled.ok() == !feed_failing) return;
    feed_failing = !polled.ok();
    if (feed_failing) {
      custos::Log("warning",
                  "customer change feed unreadable; customer answers are "
                  "read through until it is back",
                  {{"error", polled.ToString()}});
    } else {
      custos::Log("info", "customer change feed readable again");
    }
  });
  // Writes made through other replicas reach this one's answers within
  // the interval (a consistency token makes it wait for no interval).
  auto version_sync = std::make_unique<custos::Periodic>(
      absl::GetFlag(FLAGS_version_sync_interval), [&engine] {
        absl::Status synced = engine.SyncWithStore();
        if (!synced.ok()) {
          custos::Log("warning", "reading the write sequence failed",
                      {{"error", synced.ToString()}});
        }
      });

  custos::Metrics::Default().AddCollector(
      [&engine, &redis, &feed](custos::MetricsText& out) {
        const auto cache = engine.stats();
        out.Family("custos_permission_cache_lookups_total", "counter",
                   "Permission-set lookups, by where the answer came from.");
        out.Sample("custos_permission_cache_lookups_total",
                   {{"result", "memory_hit"}},
                   static_cast<double>(cache.memory_hits));
        out.Sample("custos_permission_cache_lookups_total",
                   {{"result", "redis_hit"}},
                   static_cast<double>(cache.redis_hits));
        out.Sample("custos_permission_cache_lookups_total",
                   {{"result", "miss"}}, static_cast<double>(cache.computed));
        out.Family("custos_permission_cache_forged_total", "counter",
                   "Redis values refused because their MAC did not match "
                   "(written by something other than Custos).");
        out.Sample("custos_permission_cache_forged_total", {},
                   static_cast<double>(cache.forged));
        out.Family("custos_customer_feed_fresh", "gauge",
                   "1 while the customer change feed was read within "
                   "--customer_feed_max_lag; 0: customer answers are read "
                   "through to customer_management_service.");
        out.Sample("custos_customer_feed_fresh", {}, feed.Fresh() ? 1 : 0);
        out.Family("custos_customer_feed_resets_total", "counter",
                   "Times the customer change feed could not be continued "
                   "and every customer version was forgotten.");
        out.Sample("custos_customer_feed_resets_total", {},
                   static_cast<double>(feed.resets()));
        out.Family("custos_redis_degraded", "gauge",
                   "1 while Redis is unreachable or slow and answers are "
                   "computed from the store.");
        out.Sample("custos_redis_degraded", {},
                   redis.enabled() && redis.degraded() ? 1 : 0);
        const auto calls = redis.stats();
        out.Family("custos_redis_errors_total", "counter",
                   "Redis commands that failed or timed out.");
        out.Sample("custos_redis_errors_total", {},
                   static_cast<double>(calls.errors));
      });
  if (notifications_outbox) {
    custos::Metrics::Default().AddCollector(
        custos::OutboxMetrics({notifications_outbox.get()}));
  }
  const absl::Duration watch_retention = absl::GetFlag(FLAGS_watch_retention);
  if (watch_retention <= absl::ZeroDuration()) {
    Die("--watch_retention must be > 0");
  }
  auto watch_prune = std::make_unique<custos::Periodic>(
      std::min(watch_retention, absl::Minutes(1)), [&] {
        absl::Status pruned =
            change_log.Prune(watch_retention, custos::RealClock::Get()->Now());
        if (!pruned.ok()) {
          custos::Log("warning", "pruning the Watch log failed",
                      {{"error", pruned.ToString()}});
        }
      });
  std::vector<custos::RetentionRule> retention =
      custos::SharedRetentionRules(db->get());
  retention.push_back(
      {"decided_access_requests",
       absl::GetFlag(FLAGS_decided_request_retention),
       [database = db->get()](absl::Time older_than, int batch) {
         return custos::access::AccessStore::PruneDecidedRequests(
             *database, older_than, batch);
       }});
  auto retention_pruner = std::make_unique<custos::RetentionPruner>(
      std::move(retention), custos::RealClock::Get());
  custos::access::WatchHub watch_hub(&change_log,
                                     absl::GetFlag(FLAGS_watch_poll_interval),
                                     absl::GetFlag(FLAGS_max_watch_streams));
  custos::Executor executor(custos::WorkerThreadsFlag(),
                            /*inline_reads=*/!(*db)->ReadsMayBlock());
  custos::access::AccessService service(&logic, &watch_hub, &verifier,
                                        &executor);

  custos::ServerOptions options = custos::ServerOptionsFromFlags(
      absl::GetFlag(FLAGS_listen), {"custos.access.v1.AccessService"},
      db->get());
  // Open Watch streams end when the drain starts, telling clients to
  // reconnect with their resume token.
  options.on_shutdown = [&watch_hub] { watch_hub.Shutdown(); };
  absl::Status status = custos::ServeUntilTerminated(options, {&service});
  executor.Shutdown();
  sweeper.reset();
  version_sync.reset();
  feed_poll.reset();
  watch_prune.reset();
  retention_pruner.reset();
  if (notifications_outbox) notifications_outbox->Stop();
  if (!status.ok()) Die(status.ToString());
  custos::FlushLogs();
  return 0;
}
