// Partitioned replicas (replicas.NAME.partitions) and consumers (services.NAME.partitions) against
// a real PostgreSQL and RabbitMQ: several replicate (or consume) processes share the partition
// queues, one takes over what a killed one served, and every aggregate's events still apply (are
// handled) once in effect and in order.
//
// With OUTBOX_PARTITIONS_ON_CLUSTER=1 (CTest `cluster.partitions`, label cluster) every test runs on
// the 3-node RabbitMQ cluster (scripts/servers start rabbitmq-cluster) with quorum queues, and the
// tests that kill a node run too (they are skipped on the single node).
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "examples/parking/parking.hpp"
#include "migrate/pack.hpp"
#include "migrate/topology.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/cluster.hpp"
#include "tests/integration/support/harness.hpp"

using namespace outbox::testing;
namespace amqp = outbox::amqp;
namespace parking = outbox::parking;
namespace topology = outbox::topology;
namespace pack = outbox::pack;

namespace {

// The queue types an operator of a cluster chooses (RabbitMQ 3.10, Debian's, has no default queue
// type for a vhost): read by every process the harness starts.
const std::string kQuorumQueues = "[broker]\nqueue_type = \"quorum\"\n[replicas.main]\nqueue_type = \"quorum\"\n";

bool on_cluster() {
  const char* value = std::getenv("OUTBOX_PARTITIONS_ON_CLUSTER");
  return value && std::string(value) == "1";
}

// The cluster is started once per binary, by the first test that needs it.
void use_cluster_if_asked() {
  static const bool started = [] {
    if (!on_cluster()) return false;
    const Cluster& nodes = start_cluster();
    if (nodes.broker_url.empty()) return false;
    use_broker(nodes.broker_url, kQuorumQueues);
    return true;
  }();
  if (on_cluster()) {
    ASSERT_TRUE(started && await_cluster_whole()) << "the 3-node cluster is not whole";
  }
}

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
  // Packing turns on again for the tests that pack (topology::check_pack_switch).
  connection->delete_exchange(topology::pack_hash_exchange_name("outbox.replica.main"));
}

// Empty databases and no queue of the replica "main", or its `partitions` queues declared by
// `outbox migrate` (so that no event the relay publishes is unroutable).
void fresh_start(int partitions = 0) {
  use_cluster_if_asked();
  delete_replica_queues();  // else migrate_all refuses another partitioning than its own
  reset_databases();
  ASSERT_TRUE(migrate_all());
  delete_replica_queues();
  if (partitions == 0) return;
  RunResult migrate = run_outbox({"migrate", "--set", "replicas.main.partitions=" + std::to_string(partitions)});
  ASSERT_EQ(migrate.exit_code, 0) << migrate;
}

// Replica "main" split into 4 partition queues, as migrate declares it from replicas.main.partitions.
topology::ReplicaQueue main_replica_in_four(bool quorum = false, std::vector<std::string> binding_keys = {}) {
  topology::ReplicaQueue replica;
  replica.replica = "main";
  replica.queue = "outbox.replica.main";
  replica.quorum = quorum;
  replica.binding_keys = std::move(binding_keys);
  replica.partitions = 4;
  return replica;
}

// One parking.update of each of eight slots, as a relay publishes them unpacked.
std::vector<amqp::OutgoingMessage> updates_of_eight_slots() {
  std::vector<amqp::OutgoingMessage> messages;
  for (int aggregate = 0; aggregate < 8; ++aggregate)
    messages.push_back(
        event_message("parking.update", "parking_slot", "slot-" + std::to_string(aggregate), 1, "{}", 1700000000000001LL));
  return messages;
}

void purge_partition_queues() {
  auto connection = broker_connection();
  for (const std::string& queue : topology::queue_names(main_replica_in_four())) connection->purge_queue(queue);
}

// What each partition queue and the dead letters hold, for a failure's message.
std::string queue_depths() {
  std::string out;
  auto connection = broker_connection();
  for (const std::string& queue : topology::queue_names(main_replica_in_four()))
    out += queue + " " + std::to_string(connection->inspect_queue(queue).first) + " ready; ";
  return out + "dead letters " + std::to_string(connection->inspect_queue(topology::kDeadLetter).first);
}

// In order: every event was newer than its aggregate's stored version when it was applied (an event
// applied after a newer one would be recorded as not effective, a stale no-op). Every event once,
// and none failed (heartbeats aside: they are not recorded as events).
void expect_every_event_applied_once_in_order() {
  EXPECT_EQ(scalar(servers().replica_url, "SELECT count(*) FROM outbox_applied_events WHERE NOT effective"), "0");
  EXPECT_EQ(scalar(servers().replica_url, "SELECT count(*) FROM outbox_failed_events"), "0");
  EXPECT_EQ(
      scalar(servers().replica_url, "SELECT count(*) FROM outbox_applied_events WHERE aggregate_type <> 'outbox.heartbeat'"),
      scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE aggregate_type <> 'outbox.heartbeat'"))
      << queue_depths();
}

std::vector<std::vector<std::string>> slots(const std::string& url) {
  return rows(url, "SELECT uuid::text, name, status, version::text FROM parking_slots ORDER BY uuid");
}

bool replica_equals_primary() { return slots(servers().replica_url) == slots(servers().primary_url); }

// The partitions a replicate (or consume) process serves now: its broker gauges at 1 (one per
// partition).
int served_partitions(int metrics_port) {
  Http metrics = http_get(metrics_port, "/metrics");
  if (metrics.status != 200) return -1;
  static const std::regex served(R"(outbox_(replicate|consume)_connected\{[^}]*peer="broker"[^}]*\} 1\b)");
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
  for (const std::string& queue : topology::queue_names(main_replica_in_four()))
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
  expect_every_event_applied_once_in_order();
}

TEST(Partitions, EveryEventOfAnAggregateGoesToOnePartitionQueue) {
  fresh_start();
  auto connection = broker_connection();
  const bool quorum = servers().broker_is_cluster;
  topology::ReplicaQueue replica = main_replica_in_four(quorum, {"#"});
  topology::declare_exchange(*connection, "outbox", quorum);
  topology::declare_replica(*connection, "outbox", replica, quorum);
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

// Packed messages (relay.pack > 1, migrate/pack.hpp) hold several aggregates, so they are spread
// by their relay partition, the outbox_partition header: every aggregate is in one relay partition.
TEST(Partitions, WithPackingEveryPackOfARelayPartitionGoesToOnePartitionQueueAndTheQueuesShareThem) {
  fresh_start();
  auto connection = broker_connection();
  const bool quorum = servers().broker_is_cluster;
  topology::ReplicaQueue replica = main_replica_in_four(quorum, {"#"});
  replica.pack_exchange = "outbox.packed";
  replica.pack = 50;
  topology::declare_exchange(*connection, "outbox", quorum);
  topology::declare_replica(*connection, "outbox", replica, quorum);
  std::vector<amqp::OutgoingMessage> packs;
  constexpr int kRelayPartitions = 16;
  for (int round = 0; round < 3; ++round)
    for (int partition = 0; partition < kRelayPartitions; ++partition) {
      pack::Builder builder;
      for (int version = 1; version <= 3; ++version)
        builder.add(event_message("parking.update", "parking_slot", "slot-" + std::to_string(partition), version, "{}",
                                  1700000000000000LL + version));
      packs.push_back(builder.take("outbox.packed", partition));
    }
  publish_all(packs, "outbox.replica.main.p0");
  std::map<long long, std::set<int>> queues_of;  // relay partition -> the partition queues its packs reached
  std::string spread;
  for (int partition = 0; partition < 4; ++partition) {
    std::string queue = topology::partition_queue_name(replica.queue, partition);
    auto reader = broker_connection();
    reader->consume(queue, "partitions-test");
    size_t taken = 0;
    // Every pack is routed by the time publish_all returns; a queue's last ones may still be on
    // their way to this reader: read until nothing came for a while.
    size_t before = 0;
    do {
      before = taken;
      take_deliveries(
          *reader,
          [&](const amqp::IncomingMessage& message) {
            ++taken;
            queues_of[std::get<long long>(message.headers.at(pack::kPartitionHeader))].insert(partition);
          },
          500ms);
    } while (taken > before);
    spread += queue + " " + std::to_string(taken) + "; ";
  }
  ASSERT_EQ(queues_of.size(), static_cast<size_t>(kRelayPartitions)) << "every pack was read: " << spread;
  std::set<int> used;
  for (const auto& [relay_partition, queues] : queues_of) {
    EXPECT_EQ(queues.size(), 1u) << "relay partition " << relay_partition << ": " << spread;
    used.insert(queues.begin(), queues.end());
  }
  // The broker's consistent hash spreads 16 keys, not the aggregates: unevenly, but over several queues.
  EXPECT_GE(used.size(), 2u) << spread;
}

TEST(Partitions, WithPackingTwoProcessesServeFourPartitionQueuesAndEveryEventIsAppliedOnceInOrder) {
  fresh_start();
  const std::vector<std::string> packing = {"--set", "relay.pack=50"};
  RunResult migrate = run_outbox(with_args({"migrate", "--set", "replicas.main.partitions=4"}, packing));
  ASSERT_EQ(migrate.exit_code, 0) << migrate;
  EXPECT_NE(migrate.out.find("outbox.replica.main.packhash (x-consistent-hash on header outbox_partition)"), std::string::npos)
      << migrate;
  TestQueue packs("test.partitions.packs", "#", "outbox.packed");
  int first_port = free_port(), second_port = free_port();
  Daemon first(with_args(partitioned_replicate(4, first_port), packing));
  Daemon second(with_args(partitioned_replicate(4, second_port), packing));
  EXPECT_TRUE(eventually([&] { return served_partitions(first_port) == 2 && served_partitions(second_port) == 2; }, 60s))
      << first.log() << second.log();
  // 40 slots created before the relay starts: its first reads pack several events of a partition.
  Load load(40);
  Daemon relay(with_args(kRelay, packing));
  int started = load.written();
  ASSERT_TRUE(eventually([&] { return load.written() > started + 400; }, 60s)) << "the load goes on";
  load.stop();
  EXPECT_TRUE(eventually(replica_equals_primary, 120s)) << first.log() << second.log() << relay.log();
  expect_every_event_applied_once_in_order();
  // The relay's heartbeats are outbox rows too, published one by one to every replica, never packed.
  size_t events = static_cast<size_t>(
      std::stoll(scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE event_type <> 'outbox.heartbeat'")));
  size_t packed_events = 0, largest = 0;
  // The relay stopped (its heartbeats too), the packs it published are read until none comes.
  relay.signal(SIGTERM);
  EXPECT_EQ(relay.wait_exit(60s), 0) << relay.log();
  packs.collect_while_progressing(events, 2s);
  for (const amqp::IncomingMessage& message : packs.messages()) {
    ASSERT_EQ(message.content_type.value_or(""), pack::kContentType);
    EXPECT_TRUE(message.headers.count(pack::kPartitionHeader)) << message.message_id.value_or("");
    size_t count = pack::unpack(message).size();
    packed_events += count;
    largest = std::max(largest, count);
  }
  EXPECT_GE(packed_events, events) << "every event went in a pack";
  EXPECT_GT(largest, 1u) << "some pack held several events";
}

TEST(Partitions, TurningPackingOnWhileThePartitionQueuesHoldUnpackedEventsIsRefusedWithExit78) {
  fresh_start(4);
  publish_all(updates_of_eight_slots(), "outbox.replica.main.p0");
  const std::vector<std::string> packing = {"--set", "replicas.main.partitions=4", "--set", "relay.pack=50"};
  RunResult refused = run_outbox(with_args({"migrate"}, packing));
  EXPECT_EQ(refused.exit_code, 78) << refused;
  EXPECT_NE(refused.err.find("replica main: relay.pack = 50 turns packing on, but its partition queues hold 8 message(s) "
                             "published unpacked"),
            std::string::npos)
      << refused;
  Daemon replicate(with_args(partitioned_replicate(4), {"--set", "relay.pack=50"}));
  EXPECT_EQ(replicate.wait_exit(60s), 78) << replicate.log();
  EXPECT_NE(replicate.log().find("relay.pack = 50 turns packing on"), std::string::npos) << replicate.log();
  EXPECT_FALSE(broker_connection()->exchange_exists(topology::pack_hash_exchange_name("outbox.replica.main")));
  // Drained, packing turns on.
  purge_partition_queues();
  auto connection = broker_connection();
  RunResult migrated = run_outbox(with_args({"migrate"}, packing));
  EXPECT_EQ(migrated.exit_code, 0) << migrated;
  EXPECT_TRUE(connection->exchange_exists(topology::pack_hash_exchange_name("outbox.replica.main")));
}

TEST(Partitions, TurningPackingOffWhileThePartitionQueuesHoldPacksIsRefusedWithExit78) {
  fresh_start();
  const std::vector<std::string> packing = {"--set", "replicas.main.partitions=4", "--set", "relay.pack=50"};
  const std::vector<std::string> unpacked = {"--set", "replicas.main.partitions=4"};
  RunResult packed = run_outbox(with_args({"migrate"}, packing));
  ASSERT_EQ(packed.exit_code, 0) << packed;
  const std::string pack_hash = topology::pack_hash_exchange_name("outbox.replica.main");
  ASSERT_TRUE(broker_connection()->exchange_exists(pack_hash));
  // A packing relay's pack, routed to a partition queue by its relay partition.
  pack::Builder builder;
  for (const amqp::OutgoingMessage& update : updates_of_eight_slots()) builder.add(update);
  publish_all({builder.take("outbox.packed", 3)}, topology::partition_queue_name("outbox.replica.main", 0));
  ASSERT_TRUE(eventually([&] {
    unsigned long long queued = 0;
    for (const std::string& queue : topology::queue_names(main_replica_in_four()))
      queued += broker_connection()->inspect_queue(queue).first;
    return queued == 1;
  })) << queue_depths();

  RunResult refused = run_outbox(with_args({"migrate"}, unpacked));
  EXPECT_EQ(refused.exit_code, 78) << refused;
  EXPECT_NE(refused.err.find("replica main: relay.pack = 1 turns packing off, but its partition queues hold 1 message(s) "
                             "that may be packs"),
            std::string::npos)
      << refused;
  Daemon replicate(partitioned_replicate(4));
  EXPECT_EQ(replicate.wait_exit(60s), 78) << replicate.log();
  EXPECT_NE(replicate.log().find("relay.pack = 1 turns packing off"), std::string::npos) << replicate.log();
  EXPECT_TRUE(broker_connection()->exchange_exists(pack_hash)) << "packing stays on while the queues hold packs";
  // Drained, packing turns off: the pack hash exchange goes, and turning it on again is a switch again.
  purge_partition_queues();
  auto connection = broker_connection();
  RunResult migrated = run_outbox(with_args({"migrate"}, unpacked));
  EXPECT_EQ(migrated.exit_code, 0) << migrated;
  EXPECT_FALSE(connection->exchange_exists(pack_hash));
  RunResult on_again = run_outbox(with_args({"migrate"}, packing));
  EXPECT_EQ(on_again.exit_code, 0) << on_again;
  EXPECT_TRUE(connection->exchange_exists(pack_hash));
}

TEST(Partitions, AChangedPartitionCountIsRefusedWithExit78NamingTheOptionAndTheQueues) {
  fresh_start();
  auto connection = broker_connection();
  const bool quorum = servers().broker_is_cluster;
  topology::declare_exchange(*connection, "outbox", quorum);
  topology::declare_replica(*connection, "outbox", main_replica_in_four(quorum, {"#"}), quorum);
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

namespace {

// The service "steps": its handler records each event it handles, in the order it handles them.
const char* kStepHandler = R"(
DROP SCHEMA IF EXISTS test_steps CASCADE;
CREATE SCHEMA test_steps;
CREATE TABLE test_steps.effects (seq bigserial, event_id uuid, aggregate_id text, version bigint);
CREATE TABLE test_steps.ticks (pid int, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION test_steps.tick() RETURNS void LANGUAGE sql AS $$ INSERT INTO test_steps.ticks (pid) VALUES (pg_backend_pid()) $$;
CREATE FUNCTION test_steps.on_step(e jsonb) RETURNS void LANGUAGE sql AS $$
  INSERT INTO test_steps.effects (event_id, aggregate_id, version)
  VALUES ((e->>'event_id')::uuid, e->>'aggregate_id', (e->>'aggregate_version')::bigint) $$;
)";

const std::string kStepsQueue = "outbox.consumer.steps";

std::string steps_config(int partitions, const std::string& more = "") {
  std::string queue_type = servers().broker_is_cluster ? "queue_type = \"quorum\"\n" : "";
  return (servers().broker_is_cluster ? "[broker]\nqueue_type = \"quorum\"\n" : "") + std::string("[services.steps]\nurl = \"") +
         servers().primary_url + "\"\nbinding_keys = [\"step.#\"]\npartitions = " + std::to_string(partitions) + "\n" +
         queue_type + "[[services.steps.handlers]]\nevent_type = \"step.done\"\nfunction = \"test_steps.on_step\"\n" + more;
}

// Empty databases, the service migrated and its `partitions` queues declared by `outbox migrate`.
std::string fresh_steps_service(int partitions, const std::string& more_config = "") {
  use_cluster_if_asked();
  reset_databases();
  auto connection = broker_connection();
  connection->delete_queue(kStepsQueue);
  for (int partition = 0; partition < 16; ++partition)
    connection->delete_queue(topology::partition_queue_name(kStepsQueue, partition));
  std::string config = write_file("steps.toml", steps_config(partitions, more_config));
  RunResult migrated = run_outbox({"migrate", "--service", "steps"}, {{"OUTBOX_CONFIG", config}});
  EXPECT_EQ(migrated.exit_code, 0) << migrated;
  exec(servers().primary_url, kStepHandler);
  return config;
}

// Publishes step.done events of `aggregates` aggregates, round by round (each round the next
// version of every aggregate), as the services' relays would, until stopped. With `relay_partitions`
// > 0 it publishes as a packing relay does (relay.pack > 1): each round, one pack per relay
// partition (aggregate number modulo relay_partitions) to the pack exchange, named in its
// outbox_partition header.
class StepPublisher {
 public:
  explicit StepPublisher(int aggregates, int relay_partitions = 0)
      : aggregates_(aggregates), relay_partitions_(relay_partitions) {
    thread_ = std::thread([this] { run(); });
  }
  ~StepPublisher() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  long long published() const { return published_; }
  std::string problem() const { return problem_; }

 private:
  // One connection with publisher confirms, as a relay publishes: a round counts once the broker
  // confirmed it (on a quorum queue, once a majority of its members wrote it). Without confirms a
  // message sent just before its connection closes may never reach a quorum queue.
  void run() {
    try {
      auto connection = broker_connection();
      connection->enable_confirms();
      for (long long version = 1; !stop_; ++version) {
        std::set<uint64_t> unconfirmed;
        auto event = [&](int aggregate) {
          return event_message("step.done", "step", "step-" + std::to_string(aggregate), version, "{}",
                               1796187600000000LL + version);
        };
        if (relay_partitions_ == 0) {
          for (int aggregate = 0; aggregate < aggregates_; ++aggregate) unconfirmed.insert(connection->publish(event(aggregate)));
        }
        for (int partition = 0; partition < relay_partitions_; ++partition) {
          pack::Builder builder;
          for (int aggregate = partition; aggregate < aggregates_; aggregate += relay_partitions_) builder.add(event(aggregate));
          if (!builder.empty()) unconfirmed.insert(connection->publish(builder.take(kPackExchange, partition)));
        }
        auto deadline = std::chrono::steady_clock::now() + 60s;
        while (!unconfirmed.empty()) {
          if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("round " + std::to_string(version) + " unconfirmed");
          connection->poll(
              [&](amqp::Event& event) {
                if (event.kind == amqp::Event::Kind::nack)
                  throw std::runtime_error("round " + std::to_string(version) + " nacked");
                if (event.kind != amqp::Event::Kind::ack) return;
                if (event.multiple)
                  unconfirmed.erase(unconfirmed.begin(), unconfirmed.upper_bound(event.delivery_tag));
                else
                  unconfirmed.erase(event.delivery_tag);
              },
              100ms);
        }
        published_ += aggregates_;
        std::this_thread::sleep_for(20ms);  // steady, not flat out: the point is a kill under load
      }
    } catch (const std::exception& error) {
      problem_ = error.what();
    }
  }
  static constexpr const char* kPackExchange = "outbox.packed";  // relay.pack_exchange's default
  int aggregates_;
  int relay_partitions_;
  std::atomic<bool> stop_{false};
  std::atomic<long long> published_{0};
  std::string problem_;
  std::thread thread_;
};

std::string steps(const std::string& sql) { return scalar(servers().primary_url, sql); }
long long handled() { return std::stoll(steps("SELECT count(*) FROM test_steps.effects")); }

std::vector<std::string> partitioned_consume(int metrics_port) {
  return {"consume", "--set", "replicate.max_backoff=1s", "--set", "metrics.listen=127.0.0.1:" + std::to_string(metrics_port)};
}

// Two consume processes share the 4 partition queues of `config`'s service "steps", one is killed
// with SIGKILL under a steady load (StepPublisher(40, relay_partitions)), the other serves all four:
// every event is handled once in effect, in its aggregate's order.
void two_consumers_share_four_partitions_through_a_kill9(const std::string& config, int relay_partitions) {
  std::map<std::string, std::string> env = {{"OUTBOX_CONFIG", config}};
  int first_port = free_port(), second_port = free_port();
  Daemon first(partitioned_consume(first_port), env);
  ASSERT_TRUE(eventually([&] { return served_partitions(first_port) == 4; }, 60s)) << first.log();
  Daemon second(partitioned_consume(second_port), env);
  EXPECT_TRUE(eventually([&] { return served_partitions(first_port) == 2 && served_partitions(second_port) == 2; }, 60s))
      << first.log() << second.log();
  for (int partition = 0; partition < 4; ++partition) {
    std::string queue = topology::partition_queue_name(kStepsQueue, partition);
    EXPECT_EQ(broker_connection()->inspect_queue(queue).second, 1u) << queue << " has one consumer";
  }
  StepPublisher publisher(40, relay_partitions);
  long long before_kill = handled();
  ASSERT_TRUE(eventually([&] { return handled() > before_kill + 400; }, 60s)) << "the consumers handle the load";
  second.kill9();
  second.wait_exit(10s);
  EXPECT_TRUE(eventually([&] { return served_partitions(first_port) == 4; }, 60s)) << first.log();
  long long after_kill = handled();
  ASSERT_TRUE(eventually([&] { return handled() > after_kill + 400; }, 60s)) << "the load goes on";
  publisher.stop();
  EXPECT_EQ(publisher.problem(), "");
  const long long published = publisher.published();
  EXPECT_TRUE(eventually([&] { return handled() >= published; }, 120s)) << handled() << " of " << published << first.log();
  // Every event reached the inbox, none after a newer one of its aggregate (that one would have
  // been skipped as stale: recorded, not effective, and its handler not run).
  EXPECT_EQ(steps("SELECT count(*) FROM outbox_applied_events WHERE aggregate_type = 'step'"), std::to_string(published));
  EXPECT_EQ(steps("SELECT count(*) FROM outbox_applied_events WHERE aggregate_type = 'step' AND NOT effective"), "0");
  // Once in effect: every event's effect once (the inbox turned the redelivered ones into no-ops).
  EXPECT_EQ(handled(), published);
  EXPECT_EQ(steps("SELECT count(DISTINCT event_id) FROM test_steps.effects"), std::to_string(published));
  // In order: each aggregate's events were handled version after version, none skipped or repeated.
  EXPECT_EQ(steps("SELECT count(*) FROM (SELECT version, lag(version) OVER (PARTITION BY aggregate_id ORDER BY seq) AS prev "
                  "FROM test_steps.effects) handled WHERE version <> coalesce(prev, 0) + 1"),
            "0");
  EXPECT_EQ(steps("SELECT count(*) FROM outbox_failed_events"), "0");
  RunResult verify = run_outbox({"verify", "--service", "steps"}, env);
  EXPECT_EQ(verify.exit_code, 0) << verify;
  EXPECT_NE(verify.out.find("ok       queue: the 4 partition queues of outbox.consumer.steps exist"), std::string::npos)
      << verify;
}

}  // namespace

TEST(Partitions, TwoConsumeProcessesShareFourPartitionsAndAfterAKillNineEveryEventIsHandledOnceInOrder) {
  two_consumers_share_four_partitions_through_a_kill9(fresh_steps_service(4), 0);
}

TEST(Partitions, WithPackingTwoConsumeProcessesShareFourPartitionsAndAfterAKillNineEveryEventIsHandledOnceInOrder) {
  // relay.pack > 1: migrate declares the packhash exchange, which routes each pack by its relay
  // partition, so an aggregate's packs all reach one partition queue.
  std::string config = fresh_steps_service(4, "[relay]\npack = 50\n");
  EXPECT_TRUE(broker_connection()->exchange_exists(kStepsQueue + ".packhash"));
  two_consumers_share_four_partitions_through_a_kill9(config, 8);
}

TEST(Partitions, AChangedConsumerPartitionCountIsRefusedWithExit78NamingTheServicesOption) {
  std::string config = fresh_steps_service(4);
  Daemon consume({"consume", "--set", "services.steps.partitions=2"}, {{"OUTBOX_CONFIG", config}});
  EXPECT_EQ(consume.wait_exit(60s), 78) << consume.log();
  EXPECT_NE(consume.log().find("consumer steps: services.steps.partitions = 2 but more partition queues exist "
                               "(outbox.consumer.steps.p2)"),
            std::string::npos)
      << consume.log();
  EXPECT_FALSE(broker_connection()->queue_exists(kStepsQueue));
}

TEST(Partitions, APartitionedConsumersDeadlinesRunInOneProcessAtATimeAndMoveWithPartitionZero) {
  std::string config = fresh_steps_service(2, "[[services.steps.deadlines]]\nfunction = \"test_steps.tick\"\nevery = \"50ms\"\n");
  std::map<std::string, std::string> env = {{"OUTBOX_CONFIG", config}};
  int first_port = free_port(), second_port = free_port();
  Daemon first(partitioned_consume(first_port), env);
  ASSERT_TRUE(eventually([&] { return served_partitions(first_port) == 2; }, 60s)) << first.log();
  Daemon second(partitioned_consume(second_port), env);
  ASSERT_TRUE(eventually([&] { return served_partitions(first_port) == 1 && served_partitions(second_port) == 1; }, 60s))
      << first.log() << second.log();
  // The deadline runs on one connection (one backend) while both processes serve a partition.
  auto ticks_since = [](const std::string& mark) {
    return std::stoll(steps("SELECT count(*) FROM test_steps.ticks WHERE at > '" + mark + "'"));
  };
  auto runners_since = [](const std::string& mark) {
    return steps("SELECT count(DISTINCT pid) FROM test_steps.ticks WHERE at > '" + mark + "'");
  };
  std::string shared = steps("SELECT clock_timestamp()::text");
  ASSERT_TRUE(eventually([&] { return ticks_since(shared) >= 20; }, 60s)) << first.log() << second.log();
  EXPECT_EQ(runners_since(shared), "1");
  std::string runner = steps("SELECT max(pid) FROM test_steps.ticks WHERE at > '" + shared + "'");
  // The first process kept partition 0 (one gives back its highest): killed, the other takes it,
  // and the deadline with it.
  first.kill9();
  first.wait_exit(10s);
  ASSERT_TRUE(eventually([&] { return served_partitions(second_port) == 2; }, 60s)) << second.log();
  std::string taken = steps("SELECT clock_timestamp()::text");
  ASSERT_TRUE(eventually([&] { return ticks_since(taken) >= 20; }, 60s)) << second.log();
  EXPECT_EQ(runners_since(taken), "1");
  EXPECT_NE(steps("SELECT max(pid) FROM test_steps.ticks WHERE at > '" + taken + "'"), runner);
}

// On the cluster only: the node that leads a partition queue is killed under load; the processes
// that used it move to another node, the queue gets a new leader, and nothing is lost or reordered.
TEST(Partitions, KillingTheNodeThatLeadsAPartitionQueueLosesNothingAndKeepsOrder) {
  if (!on_cluster()) GTEST_SKIP() << "needs the 3-node cluster: OUTBOX_PARTITIONS_ON_CLUSTER=1 (ctest -L cluster)";
  fresh_start(4);
  Daemon relay(kRelay);
  Load load(40);
  int first_port = free_port(), second_port = free_port();
  Daemon first(partitioned_replicate(4, first_port));
  Daemon second(partitioned_replicate(4, second_port));
  ASSERT_TRUE(eventually([&] { return served_partitions(first_port) == 2 && served_partitions(second_port) == 2; }, 120s))
      << first.log() << second.log();
  const std::string queue = topology::partition_queue_name("outbox.replica.main", 0);
  std::optional<int> leader;
  ASSERT_TRUE(eventually([&] { return (leader = leader_of_queue(queue)).has_value(); }, 120s));
  ASSERT_TRUE(kill_node(*leader));
  EXPECT_TRUE(eventually([&] { return leader_of_queue(queue).value_or(*leader) != *leader; }, 120s))
      << "no new leader for " << queue;
  EXPECT_TRUE(eventually([&] { return served_partitions(first_port) + served_partitions(second_port) == 4; }, 120s))
      << "every partition is served again" << first.log() << second.log();
  int after_kill = load.written();
  ASSERT_TRUE(eventually([&] { return load.written() > after_kill + 200; }, 60s)) << "the load goes on";
  ASSERT_TRUE(start_node(*leader));
  ASSERT_TRUE(await_cluster_whole());
  load.stop();
  EXPECT_TRUE(eventually(replica_equals_primary, 180s)) << first.log() << second.log();
  RunResult verify = run_outbox({"verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify;
  expect_every_event_applied_once_in_order();
}
