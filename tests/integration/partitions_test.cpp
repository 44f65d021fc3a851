// Partitioned replicas (replicas.NAME.partitions) against a real PostgreSQL and RabbitMQ: several
// replicate processes share the partition queues, one takes over what a killed one served, and
// every aggregate's events still apply in order.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <regex>
#include <thread>

#include "examples/parking/parking.hpp"
#include "migrate/topology.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"

using namespace outbox::testing;
namespace amqp = outbox::amqp;
namespace parking = outbox::parking;
namespace topology = outbox::topology;

namespace {

const std::vector<std::string> kRelay = {"relay", "--set", "relay.heartbeat_interval=1s", "--set", "relay.poll_interval=200ms"};

std::vector<std::string> partitioned_replicate(int partitions, int metrics_port = 0) {
  // replicate.record_event_ids: the checks count each applied event and its `effective` flag.
  std::vector<std::string> args = {"replicate",
                                   "--set",
                                   "replicate.max_backoff=1s",
                                   "--set",
                                   "replicate.record_event_ids=true",
                                   "--set",
                                   "replicas.main.partitions=" + std::to_string(partitions)};
  if (metrics_port) args = with_args(args, {"--set", "metrics.listen=127.0.0.1:" + std::to_string(metrics_port)});
  return args;
}

// Every queue of the replica "main" deleted: each test declares the partitioning it needs
// (migrate_all declared the unpartitioned queue).
void delete_replica_queues() {
  auto connection = broker_connection();
  connection->delete_queue("outbox.replica.main");
  for (int partition = 0; partition < 16; ++partition)
    connection->delete_queue(topology::partition_queue_name("outbox.replica.main", partition));
}

// Empty databases and no queue of the replica "main", or its `partitions` queues declared by
// `outbox migrate` (so that no event the relay publishes is unroutable).
void fresh_start(int partitions = 0) {
  delete_replica_queues();  // else migrate_all refuses another partitioning than its own
  reset_databases();
  ASSERT_TRUE(migrate_all());
  delete_replica_queues();
  if (partitions == 0) return;
  RunResult migrate = run_outbox({"migrate", "--set", "replicas.main.partitions=" + std::to_string(partitions)});
  ASSERT_EQ(migrate.exit_code, 0) << migrate;
}

// What each partition queue and the dead letters hold, for a failure's message.
std::string queue_depths() {
  std::string out;
  auto connection = broker_connection();
  for (const std::string& queue : topology::queue_names(topology::ReplicaQueue{"main", "outbox.replica.main", false, {}, 4}))
    out += queue + " " + std::to_string(connection->inspect_queue(queue).first) + " ready; ";
  return out + "dead letters " + std::to_string(connection->inspect_queue(topology::kDeadLetter).first);
}

std::vector<std::vector<std::string>> slots(const std::string& url) {
  return rows(url, "SELECT uuid::text, name, status, version::text FROM parking_slots ORDER BY uuid");
}

bool replica_equals_primary() { return slots(servers().replica_url) == slots(servers().primary_url); }

// The partitions a replicate process serves now: its broker gauges at 1 (one per partition).
int served_partitions(int metrics_port) {
  Http metrics = http_get(metrics_port, "/metrics");
  if (metrics.status != 200) return -1;
  static const std::regex served(R"(outbox_replicate_connected\{[^}]*peer="broker"[^}]*\} 1\b)");
  return static_cast<int>(
      std::distance(std::sregex_iterator(metrics.body.begin(), metrics.body.end(), served), std::sregex_iterator()));
}

// A steady write load on the primary: `aggregates` parking slots created, then updated at random
// (each update a new version of its aggregate) until stopped.
class Load {
 public:
  explicit Load(int aggregates) {
    auto connection = connect(servers().primary_url);
    for (int i = 0; i < aggregates; ++i) {
      pqxx::work tx(connection);
      uuids_.push_back(parking::create(tx, "slot-" + std::to_string(i)).uuid);
      tx.commit();
    }
    thread_ = std::thread([this] { run(); });
  }
  ~Load() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int written() const { return written_; }

 private:
  void run() {
    auto connection = connect(servers().primary_url);
    std::mt19937 random(7);
    const char* statuses[] = {"available", "reserved", "blocked"};
    while (!stop_) {
      pqxx::work tx(connection);
      parking::update(tx, uuids_[random() % uuids_.size()], std::nullopt, statuses[random() % 3]);
      tx.commit();
      ++written_;
    }
  }
  std::vector<std::string> uuids_;
  std::atomic<bool> stop_{false};
  std::atomic<int> written_{0};
  std::thread thread_;
};

}  // namespace

TEST(Partitions, TwoProcessesShareFourPartitionsAndAfterAKillNineTheOtherServesAllInOrderWithNoDrift) {
  fresh_start(4);
  Daemon relay(kRelay);
  Load load(40);
  int first_port = free_port(), second_port = free_port();
  Daemon first(partitioned_replicate(4, first_port));
  ASSERT_TRUE(eventually([&] { return served_partitions(first_port) == 4; }, 60s)) << first.log();
  Daemon second(partitioned_replicate(4, second_port));
  // The first gives two partitions back, the second takes them: two each.
  EXPECT_TRUE(eventually([&] { return served_partitions(first_port) == 2 && served_partitions(second_port) == 2; }, 60s))
      << first.log() << second.log();
  for (const std::string& queue : topology::queue_names(topology::ReplicaQueue{"main", "outbox.replica.main", false, {}, 4}))
    EXPECT_EQ(broker_connection()->inspect_queue(queue).second, 1u) << queue << " has one consumer";
  int before_kill = load.written();
  ASSERT_TRUE(eventually([&] { return load.written() > before_kill + 200; }, 60s)) << "the load goes on";
  second.kill9();
  second.wait_exit(10s);
  EXPECT_TRUE(eventually([&] { return served_partitions(first_port) == 4; }, 60s)) << first.log();
  int after_kill = load.written();
  ASSERT_TRUE(eventually([&] { return load.written() > after_kill + 200; }, 60s)) << "the load goes on";
  load.stop();
  EXPECT_TRUE(eventually(replica_equals_primary, 120s)) << first.log();
  RunResult verify = run_outbox({"verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify;
  EXPECT_NE(verify.out.find("verify: replica main equals the primary"), std::string::npos) << verify;
  // In order: every event was newer than its aggregate's stored version when it was applied (an
  // event applied after a newer one would be recorded as not effective, a stale no-op).
  EXPECT_EQ(scalar(servers().replica_url, "SELECT count(*) FROM outbox_applied_events WHERE NOT effective"), "0");
  // Every event once (heartbeats aside: they are not recorded as events).
  EXPECT_EQ(scalar(servers().replica_url, "SELECT count(*) FROM outbox_failed_events"), "0");
  EXPECT_EQ(
      scalar(servers().replica_url, "SELECT count(*) FROM outbox_applied_events WHERE aggregate_type <> 'outbox.heartbeat'"),
      scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE aggregate_type <> 'outbox.heartbeat'"))
      << queue_depths();
}

TEST(Partitions, EveryEventOfAnAggregateGoesToOnePartitionQueue) {
  fresh_start();
  auto connection = broker_connection();
  topology::ReplicaQueue replica{"main", "outbox.replica.main", false, {"#"}, 4};
  topology::declare_exchange(*connection, "outbox");
  topology::declare_replica(*connection, "outbox", replica);
  std::vector<amqp::OutgoingMessage> messages;
  for (int aggregate = 0; aggregate < 40; ++aggregate)
    for (int version = 1; version <= 5; ++version)
      messages.push_back(event_message("parking.update", "parking_slot", "slot-" + std::to_string(aggregate), version, "{}",
                                       1700000000000000LL + version));
  publish_all(messages, "outbox.replica.main.p0");
  ASSERT_TRUE(eventually([&] {
    uint32_t total = 0;
    for (const std::string& queue : topology::queue_names(replica)) total += connection->inspect_queue(queue).first;
    return total == messages.size();
  })) << "every event reached one partition queue";
  std::map<std::string, std::set<int>> queues_of;  // aggregate -> the partitions its events reached
  for (int partition = 0; partition < 4; ++partition) {
    std::string queue = topology::partition_queue_name(replica.queue, partition);
    const size_t depth = connection->inspect_queue(queue).first;
    auto reader = broker_connection();
    reader->consume(queue, "partitions-test");
    size_t taken = 0;
    // One poll returns what has arrived so far: read until the queue's whole depth is taken.
    EXPECT_TRUE(eventually([&] {
      take_deliveries(*reader, [&](const amqp::IncomingMessage& message) {
        ++taken;
        queues_of[std::get<std::string>(message.headers.at("aggregate_id"))].insert(partition);
      });
      return taken >= depth;
    })) << queue
        << ": " << taken << " of " << depth;
    EXPECT_GT(taken, 0u) << queue << " gets a share";
  }
  ASSERT_EQ(queues_of.size(), 40u) << "every aggregate's events were read";
  for (const auto& [aggregate, partitions] : queues_of) EXPECT_EQ(partitions.size(), 1u) << aggregate;
}

TEST(Partitions, AChangedPartitionCountIsRefusedWithExit78NamingTheOptionAndTheQueues) {
  fresh_start();
  auto connection = broker_connection();
  topology::declare_exchange(*connection, "outbox");
  topology::declare_replica(*connection, "outbox", topology::ReplicaQueue{"main", "outbox.replica.main", false, {"#"}, 4});
  struct Case {
    int partitions;
    std::string found;
  };
  for (const Case& change : std::vector<Case>{{2, "but more partition queues exist (outbox.replica.main.p2)"},
                                              {8, "but fewer partition queues exist (no outbox.replica.main.p7)"},
                                              {1, "but partition queues outbox.replica.main.p0... exist"}}) {
    SCOPED_TRACE(change.partitions);
    Daemon replicate(partitioned_replicate(change.partitions));
    EXPECT_EQ(replicate.wait_exit(60s), 78) << replicate.log();
    EXPECT_NE(replicate.log().find("replicas.main.partitions = " + std::to_string(change.partitions) + " " + change.found),
              std::string::npos)
        << replicate.log();
    RunResult migrate = run_outbox({"migrate", "--set", "replicas.main.partitions=" + std::to_string(change.partitions)});
    EXPECT_EQ(migrate.exit_code, 78) << migrate;
    EXPECT_NE(migrate.err.find("outbox: broker (the databases are migrated): replica main: replicas.main.partitions = " +
                               std::to_string(change.partitions) + " " + change.found),
              std::string::npos)
        << migrate;
  }
  // Nothing was half declared: the four queues are all there is.
  EXPECT_FALSE(broker_connection()->queue_exists("outbox.replica.main"));
  EXPECT_FALSE(broker_connection()->queue_exists("outbox.replica.main.p4"));
  EXPECT_TRUE(broker_connection()->queue_exists("outbox.replica.main.p3"));
}
