// The relay against a real PostgreSQL and RabbitMQ: every committed row arrives, with the right
// properties, in per-aggregate order, at least once through crashes and broker restarts.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "migrate/runner.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"
#include "tests/integration/support/throttled_proxy.hpp"

using namespace outbox::testing;
using outbox::amqp::IncomingMessage;

namespace {

const std::vector<std::string> kQuietRelay = {
    "relay", "--set", "relay.heartbeat_interval=0", "--set", "relay.poll_interval=200ms", "--set", "relay.takeover_timeout=3s"};

std::vector<std::string> relay_args(const std::vector<std::string>& extra = {}) { return with_args(kQuietRelay, extra); }

// Inserts `count` events of `aggregates` aggregates (versions increase per aggregate) in one transaction.
void insert_events(const std::string& event_type, int count, int aggregates, int first = 1) {
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
       "SELECT gen_random_uuid(), 'test', 'agg-' || (g % " +
           std::to_string(aggregates) + "), g, '" + event_type + "', json_build_object('n', g) FROM generate_series(" +
           std::to_string(first) + ", " + std::to_string(first + count - 1) + ") g");
}

int unpublished() { return std::stoi(scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE published_at IS NULL")); }

std::set<std::string> ids_of(const std::vector<IncomingMessage>& messages) {
  std::set<std::string> ids;
  for (const auto& message : messages) ids.insert(message.message_id.value_or(""));
  return ids;
}

std::set<std::string> event_ids_in_outbox(const std::string& event_type) {
  std::set<std::string> ids;
  for (const auto& row : rows(servers().primary_url, "SELECT event_id FROM outbox WHERE event_type = '" + event_type + "'"))
    ids.insert(row[0]);
  return ids;
}

// Per aggregate, the versions in the order they first arrived must increase.
void expect_per_aggregate_order(const std::vector<IncomingMessage>& messages) {
  std::map<std::string, long long> last_version;
  std::set<std::string> seen;
  for (const auto& message : messages) {
    if (!seen.insert(*message.message_id).second) continue;  // a duplicate of an earlier delivery
    std::string aggregate = header_text(message, "aggregate_id");
    long long version = header_number(message, "aggregate_version");
    auto found = last_version.find(aggregate);
    if (found != last_version.end()) {
      ASSERT_GT(version, found->second) << "aggregate " << aggregate << " went from version " << found->second << " to "
                                        << version;
    }
    last_version[aggregate] = version;
  }
}

// A stand-in for systemd's notify socket; the daemon's WATCHDOG_USEC asks for a feed every 200 ms.
struct NotifySocket {
  NotifySocket() : path(servers().dir + "/notify.sock") {
    ::unlink(path.c_str());
    fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) ADD_FAILURE() << "bind " << path;
  }
  ~NotifySocket() { ::close(fd); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;
  std::map<std::string, std::string> env() const { return {{"NOTIFY_SOCKET", path}, {"WATCHDOG_USEC", "400000"}}; }
  // Everything received so far, one message per line.
  const std::string& read() {
    char buffer[4096];
    for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT)) > 0;) received += std::string(buffer, n) + "\n";
    return received;
  }
  std::string path, received;
  int fd = -1;
};

}  // namespace

TEST(Relay, EveryCommittedRowReachesTheQueueWithItsPropertiesAndBody) {
  fresh_schema();
  TestQueue queue("test.properties", "props.#");
  std::string payload = R"({"b": 1,   "a" : "x \u00e9 ü", "nested": {"k": [1, 2]}})";
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, created_at) "
       "VALUES ('11111111-2222-3333-4444-555555555555', 'parking_slot', 'agg-1', 7, 'props.created', '" +
           payload + "', '2026-01-02 03:04:05.123456+00')");
  Daemon relay(relay_args());
  const auto& messages = queue.collect(1);
  ASSERT_EQ(messages.size(), 1u) << relay.log();
  const IncomingMessage& message = messages[0];
  EXPECT_EQ(message.body, payload);
  EXPECT_EQ(message.routing_key, "props.created");
  EXPECT_EQ(message.exchange, "outbox");
  EXPECT_EQ(message.message_id, "11111111-2222-3333-4444-555555555555");
  EXPECT_EQ(message.type, "props.created");
  EXPECT_EQ(message.content_type, "application/json");
  EXPECT_EQ(message.app_id, "outbox");
  EXPECT_EQ(message.timestamp_seconds, 1767323045);
  EXPECT_EQ(header_text(message, "aggregate_type"), "parking_slot");
  EXPECT_EQ(header_text(message, "aggregate_id"), "agg-1");
  EXPECT_EQ(header_number(message, "aggregate_version"), 7);
  EXPECT_EQ(header_number(message, "created_at"), 1767323045123456);
  EXPECT_EQ(header_number(message, "outbox_position"), std::stoll(scalar(servers().primary_url, "SELECT position FROM outbox")));
  EXPECT_TRUE(eventually([] { return unpublished() == 0; })) << relay.log();
}

TEST(Relay, ASagaRowCarriesItsCorrelationReplyToAndCausationAndGoesToItsOwnRoutingKey) {
  fresh_schema();
  TestQueue commands("test.saga.commands", "parking.block");
  TestQueue events("test.saga.events", "saga.#");
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, correlation_id, "
       "causation_id, reply_to, routing_key) VALUES "
       "('11111111-0000-0000-0000-000000000001', 'booking', 'b1', 1, 'saga.block_slot', '{}', 'saga-1', 'event-0', "
       "'reply.booking', 'parking.block'), "
       "('11111111-0000-0000-0000-000000000002', 'booking', 'b2', 1, 'saga.created', '{}', NULL, NULL, NULL, NULL)");
  Daemon relay(relay_args());
  ASSERT_EQ(commands.collect(1).size(), 1u) << relay.log();
  const IncomingMessage& command = commands.messages()[0];
  EXPECT_EQ(command.routing_key, "parking.block");
  EXPECT_EQ(command.type, "saga.block_slot");
  EXPECT_EQ(command.correlation_id, "saga-1");
  EXPECT_EQ(command.reply_to, "reply.booking");
  EXPECT_EQ(header_text(command, "causation_id"), "event-0");

  // Without them: the type is the routing key, and neither property nor header is there.
  ASSERT_EQ(events.collect(1).size(), 1u) << relay.log();
  const IncomingMessage& plain = events.messages()[0];
  EXPECT_EQ(plain.routing_key, "saga.created");
  EXPECT_EQ(plain.correlation_id, std::nullopt);
  EXPECT_EQ(plain.reply_to, std::nullopt);
  EXPECT_EQ(plain.headers.count("causation_id"), 0u);
}

TEST(Relay, ARowWhoseRoutingKeyOrCorrelationIdIsOverAmqpsLimitIsParkedAndTheOthersArePublished) {
  fresh_schema();
  TestQueue queue("test.saga.limits", "limits.#");
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, routing_key, "
       "correlation_id) VALUES "
       "(gen_random_uuid(), 'test', 'long-key', 1, 'limits.a', '{}', repeat('k', 300), NULL), "
       "(gen_random_uuid(), 'test', 'long-correlation', 1, 'limits.b', '{}', NULL, repeat('c', 300)), "
       "(gen_random_uuid(), 'test', 'fine', 1, 'limits.c', '{}', NULL, 'saga-1')");
  Daemon relay(relay_args());
  ASSERT_EQ(queue.collect(1).size(), 1u) << relay.log();
  EXPECT_EQ(header_text(queue.messages()[0], "aggregate_id"), "fine");
  EXPECT_TRUE(eventually([] {
    return scalar(servers().primary_url, "SELECT count(*) FROM outbox_parked WHERE parked_at IS NOT NULL") == "2";
  })) << relay.log();
  auto errors = rows(servers().primary_url, "SELECT error FROM outbox_parked ORDER BY aggregate_id");
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0][0].find("the correlation id"), std::string::npos) << errors[0][0];
  EXPECT_NE(errors[1][0].find("the routing key"), std::string::npos) << errors[1][0];
}

TEST(Relay, AnOutboxTableWithoutTheSagaColumnsIsPublishedAsBefore) {
  fresh_schema();
  TestQueue queue("test.old_table", "old.#");
  exec(servers().primary_url,
       "CREATE TABLE old_outbox (LIKE outbox INCLUDING ALL); ALTER TABLE old_outbox DROP COLUMN correlation_id, "
       "DROP COLUMN causation_id, DROP COLUMN reply_to, DROP COLUMN routing_key; "
       "INSERT INTO old_outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
       "VALUES (gen_random_uuid(), 'test', 'a', 1, 'old.evt', '{}')");
  std::string config = write_file("old.toml", "[[relay.tables]]\nname = \"public.old_outbox\"\n");
  Daemon relay(relay_args(), {{"OUTBOX_CONFIG", config}});
  ASSERT_EQ(queue.collect(1).size(), 1u) << relay.log();
  EXPECT_EQ(queue.messages()[0].routing_key, "old.evt");
  EXPECT_EQ(queue.messages()[0].correlation_id, std::nullopt);
  relay.signal(SIGTERM);
  relay.wait_exit();
  exec(servers().primary_url, "DROP TABLE old_outbox");
}

TEST(Relay, ARowWhoseTransactionCommitsLateWithALowerPositionIsStillPublished) {
  fresh_schema();
  TestQueue queue("test.late", "late.#");
  Daemon relay(relay_args());
  pqxx::connection slow = connect(servers().primary_url);
  pqxx::work open_transaction(slow);
  open_transaction.exec(
      "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
      "VALUES (gen_random_uuid(), 'test', 'slow', 1, 'late.slow', '{}')");
  long long slow_position = open_transaction.exec1("SELECT max(position) FROM outbox")[0].as<long long>();
  insert_events("late.fast", 50, 10);
  ASSERT_EQ(queue.collect(50).size(), 50u) << relay.log();
  ASSERT_TRUE(eventually([] { return unpublished() == 0; })) << relay.log();
  open_transaction.commit();
  const auto& messages = queue.collect(51);
  ASSERT_EQ(messages.size(), 51u) << relay.log();
  EXPECT_EQ(messages.back().routing_key, "late.slow");
  EXPECT_EQ(header_number(messages.back(), "outbox_position"), slow_position);
  for (size_t i = 0; i < 50; ++i) EXPECT_GT(header_number(messages[i], "outbox_position"), slow_position);
  EXPECT_TRUE(eventually([] { return unpublished() == 0; })) << relay.log();
}

TEST(Relay, TwoInstancesShareTheWorkAndKeepPerAggregateOrderAndOneTakesOverWhenTheOtherDies) {
  fresh_schema();
  TestQueue queue("test.order", "order.#");
  Daemon first(relay_args({"--instance", "first"}));
  Daemon second(relay_args({"--instance", "second"}));
  ASSERT_TRUE(eventually([&] {
    return first.log().find("owning 8 of 16") != std::string::npos && second.log().find("owning 8 of 16") != std::string::npos;
  })) << first.log()
      << second.log();
  // Concurrent writers, each committing many small transactions over 300 aggregates.
  std::vector<std::thread> writers;
  constexpr int kWriters = 4, kTransactions = 50, kPerTransaction = 20;
  for (int writer = 0; writer < kWriters; ++writer)
    writers.emplace_back([writer] {
      pqxx::connection connection = connect(servers().primary_url);
      for (int t = 0; t < kTransactions; ++t) {
        pqxx::work tx(connection);
        // Each writer owns its own aggregates and numbers their versions itself.
        int base = (writer * kTransactions + t) * kPerTransaction;
        tx.exec(
            "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
            "SELECT gen_random_uuid(), 'test', 'w" +
            std::to_string(writer) + "-' || (g % 75), " + std::to_string(base) +
            " + g, 'order.evt', '{}' FROM generate_series(1, " + std::to_string(kPerTransaction) + ") g");
        tx.commit();
      }
    });
  for (auto& writer : writers) writer.join();
  constexpr size_t kTotal = kWriters * kTransactions * kPerTransaction;
  const auto& messages = queue.collect(kTotal);
  ASSERT_GE(messages.size(), kTotal) << first.log() << second.log();
  EXPECT_EQ(ids_of(messages), event_ids_in_outbox("order.evt"));
  expect_per_aggregate_order(messages);

  // Kill one: the survivor owns every partition within relay.takeover_timeout (3s here).
  first.kill9();
  ASSERT_TRUE(eventually([&] { return second.log().find("owning 16 of 16") != std::string::npos; }, std::chrono::seconds(10)))
      << second.log();
  insert_events("order.evt", 500, 50, 100000);
  const auto& after = queue.collect(kTotal + 500);
  ASSERT_GE(after.size(), kTotal + 500) << second.log();
  EXPECT_EQ(ids_of(after), event_ids_in_outbox("order.evt"));
  expect_per_aggregate_order(after);
}

TEST(Relay, ASecondInstanceGetsItsShareWhileTheFirstIsBusyWithABacklogAndOrderHolds) {
  fresh_schema();
  TestQueue queue("test.scaleout", "scaleout.#");
  constexpr int kEvents = 30000;
  insert_events("scaleout.evt", kEvents, 500);
  Daemon first(relay_args({"--instance", "first"}));
  ASSERT_TRUE(eventually([] { return unpublished() < kEvents; })) << first.log();
  // Rows keep being committed until the hand-over is done, so it happens under load however fast
  // the first instance drains the backlog.
  std::atomic<bool> writing{true};
  std::atomic<int> next{kEvents + 1};
  std::thread writer([&] {
    while (writing) {
      insert_events("scaleout.evt", 200, 500, next);
      next += 200;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  Daemon second(relay_args({"--instance", "second"}));
  // The first one's window is never empty by itself under this load; it must pause to hand over.
  bool handed_over = eventually([&] { return second.log().find("owning 8 of 16") != std::string::npos; }, 15s);
  writing = false;
  writer.join();
  ASSERT_TRUE(handed_over) << first.log() << second.log();
  size_t total = static_cast<size_t>(next - 1);
  const auto& messages = queue.collect_while_progressing(total, 30s);
  ASSERT_GE(messages.size(), total) << unpublished() << " row(s) unpublished\n" << first.log() << second.log();
  expect_per_aggregate_order(messages);
  EXPECT_TRUE(eventually([] { return unpublished() == 0; })) << first.log() << second.log();
}

TEST(Relay, AnInstanceWithAnotherPartitionCountOwnsNothingUntilTheOthersStopSoOrderNeverSplits) {
  fresh_schema();
  TestQueue queue("test.order", "order.#");
  Daemon first(relay_args({"--instance", "first"}));
  ASSERT_TRUE(eventually([&] { return first.log().find("owning 16 of 16") != std::string::npos; })) << first.log();
  // With 8 partitions an aggregate falls in another partition than with 16: were both to own
  // some, one aggregate could be published by both, out of order.
  Daemon second(relay_args({"--instance", "second", "--set", "relay.partitions=8"}));
  ASSERT_TRUE(eventually([&] {
    return second.log().find("relay.partitions is 8 here but 16 in a live relay") != std::string::npos;
  })) << second.log();
  // The first keeps all 16: an instance that owns nothing is not one to share with. Three of the
  // first's rebalances (one per takeover_timeout / 3) would have given half of them away.
  EXPECT_FALSE(eventually([&] { return first.log().find("owning 8 of 16") != std::string::npos; }, 3s)) << first.log();
  insert_events("order.evt", 400, 40);
  const auto& messages = queue.collect(400);
  ASSERT_GE(messages.size(), 400u) << first.log() << second.log();
  expect_per_aggregate_order(messages);
  EXPECT_EQ(second.log().find("owning"), std::string::npos) << second.log();
  EXPECT_EQ(first.log().find("owning"), first.log().rfind("owning")) << "the first gave up partitions\n" << first.log();

  // When the last relay with the old count stops, the new count takes over.
  first.signal(SIGTERM);
  ASSERT_TRUE(eventually([&] { return second.log().find("owning 8 of 8") != std::string::npos; }, std::chrono::seconds(15)))
      << second.log();
  insert_events("order.evt", 200, 40, 1000);
  const auto& after = queue.collect(600);
  ASSERT_GE(after.size(), 600u) << second.log();
  EXPECT_EQ(ids_of(after), event_ids_in_outbox("order.evt"));
  expect_per_aggregate_order(after);
}

TEST(Relay, AKillBetweenConfirmAndCommitRepublishesEveryEventWithTheSameMessageId) {
  fresh_schema();
  TestQueue queue("test.crash", "crash.#");
  insert_events("crash.evt", 2000, 100);
  Daemon crashing(relay_args(), {{"OUTBOX_FAILPOINTS", "relay.after_confirm=crash"}});
  auto status = crashing.wait_exit(std::chrono::seconds(60));
  ASSERT_TRUE(status.has_value()) << crashing.log();
  EXPECT_EQ(*status, 128 + SIGKILL);
  EXPECT_EQ(unpublished(), 2000) << "nothing may be marked when the relay dies before its commit";
  queue.collect(1);  // the broker had confirmed at least the first batch before the crash

  Daemon relay(relay_args());
  ASSERT_TRUE(eventually([] { return unpublished() == 0; }, std::chrono::seconds(60))) << relay.log();
  // Every event is confirmed by now, so the queue holds each one once from this run, and before
  // them the first run's confirmed ones (at least one): more than 2000 deliveries, in any order
  // across partitions, so first every distinct event, then one delivery more.
  queue.collect(2000);
  const auto& messages = queue.collect_deliveries(2001);
  EXPECT_EQ(ids_of(messages), event_ids_in_outbox("crash.evt"));
  EXPECT_GT(messages.size(), 2000u) << "the confirmed but unmarked batch is published again";
  std::map<std::string, std::string> body_of;
  for (const auto& message : messages) {
    auto [it, inserted] = body_of.emplace(*message.message_id, message.body);
    if (!inserted) {
      EXPECT_EQ(it->second, message.body) << "a duplicate must be the same event";
    }
  }
  expect_per_aggregate_order(messages);
}

TEST(Relay, ARabbitMQRestartInTheMiddleOfADrainLosesNothing) {
  fresh_schema();
  TestQueue queue("test.restart", "restart.#");
  insert_events("restart.evt", 10000, 500);
  Daemon relay(relay_args());
  ASSERT_TRUE(eventually([] { return unpublished() < 10000; })) << relay.log();
  // Rows keep being committed through the outage, so the broker goes away mid-drain whatever the
  // relay's speed.
  std::atomic<bool> writing{true};
  std::atomic<int> next{10001};
  std::thread writer([&] {
    while (writing) {
      insert_events("restart.evt", 100, 500, next);
      next += 100;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  bool stopped = stop_server("rabbitmq");
  bool started = stopped && start_server("rabbitmq");
  bool reconnected = started && eventually([&] { return relay.log().find("broker connected again") != std::string::npos; },
                                           std::chrono::seconds(60));
  writing = false;
  writer.join();
  ASSERT_TRUE(reconnected) << relay.log();
  int total = next - 1;
  ASSERT_TRUE(eventually([] { return unpublished() == 0; }, std::chrono::seconds(120))) << relay.log();
  const auto& messages = queue.collect(static_cast<size_t>(total), std::chrono::seconds(120));
  EXPECT_EQ(ids_of(messages), event_ids_in_outbox("restart.evt")) << relay.log();
  expect_per_aggregate_order(messages);
}

TEST(Relay, AnEventThatNoQueueWantsIsStoredInTheUnroutableQueue) {
  fresh_schema();
  TestQueue queue("test.routable", "routable.#");  // declares outbox.unroutable
  uint32_t before = TestQueue::depth("outbox.unroutable");
  insert_events("nobody.listens", 3, 3);
  // An exchange that no queue is bound to (the replica queues are bound to "outbox").
  std::string config = write_file("lonely.toml", "[[relay.tables]]\nname = \"public.outbox\"\nexchange = \"lonely\"\n");
  Daemon relay(relay_args({"--config", config}));
  ASSERT_TRUE(eventually([] { return unpublished() == 0; })) << relay.log();
  EXPECT_TRUE(eventually([&] { return TestQueue::depth("outbox.unroutable") == before + 3; })) << relay.log();
}

TEST(Relay, SigtermFinishesTheInFlightBatchAndExitsZero) {
  fresh_schema();
  TestQueue queue("test.sigterm", "sigterm.#");
  insert_events("sigterm.evt", 20000, 100);
  Daemon relay(relay_args());
  ASSERT_TRUE(eventually([] { return unpublished() < 20000; })) << relay.log();
  relay.signal(SIGTERM);
  auto status = relay.wait_exit(std::chrono::seconds(30));
  ASSERT_TRUE(status.has_value()) << relay.log();
  EXPECT_EQ(*status, 0) << relay.log();
  EXPECT_NE(relay.log().find("shutdown end"), std::string::npos) << relay.log();
  // Everything marked as published is in the queue.
  int published = std::stoi(scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"));
  EXPECT_GT(published, 0);
  EXPECT_GE(queue.collect(published).size(), static_cast<size_t>(published));
}

TEST(Relay, ABadConfigOnSighupKeepsTheRunningOne) {
  fresh_schema();
  TestQueue queue("test.reload", "reload.#");
  std::string config = write_file("reload.toml", "[relay]\nheartbeat_interval = \"0s\"\npoll_interval = \"200ms\"\n");
  Daemon relay({"relay"}, {{"OUTBOX_CONFIG", config}});
  insert_events("reload.evt", 5, 5);
  ASSERT_EQ(queue.collect(5).size(), 5u) << relay.log();
  write_file("reload.toml", "[relay]\nbatch_size = 0\n");
  relay.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] {
    return relay.log().find("reload failed, keeping the running configuration") != std::string::npos;
  })) << relay.log();
  EXPECT_NE(relay.log().find("relay.batch_size: must be 1..10000 (got 0)"), std::string::npos) << relay.log();
  EXPECT_TRUE(relay.running());
  // Valid option by option, refused as a whole (as at start and by `config check`): kept too.
  write_file("reload.toml", "[relay]\nheartbeat_interval = \"0s\"\n[[relay.tables]]\nname = \"a.b.c\"\n");
  relay.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return relay.log().find("relay.tables.name: must be a table name") != std::string::npos; }))
      << relay.log();
  EXPECT_EQ(relay.log().find("new configuration in effect"), std::string::npos) << relay.log();
  insert_events("reload.evt", 5, 5, 100);
  EXPECT_EQ(queue.collect(10).size(), 10u) << relay.log();
  write_file("reload.toml", "[relay]\nheartbeat_interval = \"0s\"\nbatch_size = 7\n");
  relay.signal(SIGHUP);
  EXPECT_TRUE(eventually([&] { return relay.log().find("reloaded: batch_size=7") != std::string::npos; })) << relay.log();
}

TEST(Relay, WithAnEmptyNotifyChannelItDoesNotListenAndPublishesByPolling) {
  fresh_schema();
  TestQueue queue("test.poll", "poll.#");
  Daemon relay(relay_args({"--set", "relay.notify_channel="}));
  insert_events("poll.evt", 5, 5);
  EXPECT_EQ(queue.collect(5).size(), 5u) << relay.log();
}

TEST(Relay, ASighupChangesTheHeartbeatIntervalOfARunningHeartbeat) {
  fresh_schema();
  std::string config = write_file("heartbeat.toml", "[relay]\nheartbeat_interval = \"1h\"\npoll_interval = \"200ms\"\n");
  Daemon relay({"relay"}, {{"OUTBOX_CONFIG", config}});
  auto heartbeats = [] {
    return std::stoi(scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE event_type = 'outbox.heartbeat'"));
  };
  ASSERT_TRUE(eventually([&] { return heartbeats() == 1; })) << "the first heartbeat comes at once\n" << relay.log();
  write_file("heartbeat.toml", "[relay]\nheartbeat_interval = \"100ms\"\npoll_interval = \"200ms\"\n");
  relay.signal(SIGHUP);
  EXPECT_TRUE(eventually([&] { return heartbeats() >= 5; })) << "an hourly heartbeat would still be at 1\n" << relay.log();
  write_file("heartbeat.toml", "[relay]\nheartbeat_interval = \"0s\"\npoll_interval = \"200ms\"\n");
  relay.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return relay.log().find("reloaded:", relay.log().find("reloaded:") + 1) != std::string::npos; }))
      << relay.log();
  int after_off = heartbeats();
  // Absence needs a window: ten periods of the 100 ms heartbeat it replaced.
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1); std::chrono::steady_clock::now() < until;)
    ASSERT_EQ(heartbeats(), after_off) << relay.log();
}

TEST(Relay, DeleteModeRemovesConfirmedRowsAndRetentionRemovesOldPublishedRows) {
  fresh_schema();
  TestQueue queue("test.delete", "delete.#");
  insert_events("delete.evt", 100, 10);
  {
    Daemon relay(relay_args({"--set", "relay.on_publish=delete"}));
    ASSERT_EQ(queue.collect(100).size(), 100u) << relay.log();
    EXPECT_TRUE(eventually([] { return scalar(servers().primary_url, "SELECT count(*) FROM outbox") == "0"; })) << relay.log();
  }
  insert_events("delete.evt", 100, 10, 1000);
  Daemon relay(relay_args({"--set", "relay.retention=1s", "--set", "relay.maintenance_interval=1s"}));
  ASSERT_EQ(queue.collect(200).size(), 200u) << relay.log();
  EXPECT_TRUE(
      eventually([] { return scalar(servers().primary_url, "SELECT count(*) FROM outbox") == "0"; }, std::chrono::seconds(30)))
      << relay.log();
}

TEST(Relay, AMissingOutboxTableIsReportedAndTheRelayWaitsForIt) {
  reset_databases();
  Daemon relay(relay_args());
  // No schema at all is a schema older than the binary: the relay waits for `outbox migrate`.
  EXPECT_TRUE(eventually([&] {
    return relay.log().find("primary: schema is at version 0 but this outbox needs " +
                            std::to_string(outbox::migrate::latest_version(outbox::migrate::Target::primary)) +
                            "; run 'outbox migrate'; waiting for it (not ready until then)") != std::string::npos;
  })) << relay.log();
  EXPECT_TRUE(relay.running());
  ASSERT_TRUE(migrate_all());
  TestQueue queue("test.missing", "missing.#");
  insert_events("missing.evt", 3, 3);
  EXPECT_EQ(queue.collect(3, std::chrono::seconds(60)).size(), 3u) << relay.log();
}

TEST(Relay, ABadConfigValueStopsTheRelayWithExitCode78) {
  RunResult result = run_outbox({"relay", "--set", "relay.batch_size=0"});
  EXPECT_EQ(result.exit_code, 78) << result;
  EXPECT_EQ(result.err, "outbox: config --set relay.batch_size: relay.batch_size: must be 1..10000 (got 0)\n") << result;
}

TEST(Relay, ABrokerUrlItCannotUseStopsTheRelayWithExitCode78) {
  fresh_schema();
  RunResult result = run_outbox({"relay"}, {{"OUTBOX_BROKER_URL", "amqp://outbox:secret@127.0.0.1:notaport/"}}, 30s);
  EXPECT_EQ(result.exit_code, 78) << result;
  // The daemon's log lines, then the one line of the error.
  EXPECT_NE(result.err.find("\noutbox: outbox-relay "), std::string::npos) << result;
  EXPECT_NE(result.err.find("amqp://outbox:****@127.0.0.1:notaport/: invalid URL: could not parse AMQP URL\n"), std::string::npos)
      << result;
  EXPECT_EQ(result.err.find("secret"), std::string::npos) << result;
}

TEST(Relay, AVhostTheBrokerUserMayNotUseIsRetriedUntilThePermissionIsGranted) {
  fresh_schema();
  auto rabbitmqctl = [](const std::string& args) {
    return std::system((servers().rabbitmqctl + " " + args + " >/dev/null 2>&1").c_str());
  };
  rabbitmqctl("delete_vhost locked");
  ASSERT_EQ(rabbitmqctl("add_vhost locked"), 0);
  std::string url = servers().broker_url;
  url = url.substr(0, url.rfind('/')) + "/locked";
  Daemon relay(relay_args({"--set", "relay.max_backoff=1s"}), {{"OUTBOX_BROKER_URL", url}});
  ASSERT_TRUE(eventually([&] { return relay.log().find("NOT_ALLOWED") != std::string::npos; })) << relay.log();
  EXPECT_TRUE(relay.running()) << "a refusal the broker's admin can lift is not a config error\n" << relay.log();
  ASSERT_EQ(rabbitmqctl("set_permissions -p locked outbox '.*' '.*' '.*'"), 0);
  EXPECT_TRUE(eventually([&] { return relay.log().find("broker connected again") != std::string::npos; })) << relay.log();
  relay.signal(SIGTERM);
  EXPECT_EQ(relay.wait_exit(), 0) << relay.log();
  rabbitmqctl("delete_vhost locked");
}

TEST(Relay, AFailingHeartbeatIsLoggedOnceAndKeepsTheSessionItsPartitionsAndThePublishing) {
  fresh_schema();
  // Heartbeat rows are refused; ordinary events are not.
  exec(servers().primary_url,
       "ALTER TABLE outbox ADD CONSTRAINT no_heartbeats CHECK (event_type <> 'outbox.heartbeat') NOT VALID");
  TestQueue queue("test.sidetask", "sidetask.#");
  Daemon relay({"relay", "--set", "relay.heartbeat_interval=100ms", "--set", "relay.poll_interval=100ms"});
  ASSERT_TRUE(eventually([&] { return relay.log().find("writing the heartbeat failed, will retry") != std::string::npos; }))
      << relay.log();
  insert_events("sidetask.evt", 5, 5);
  EXPECT_EQ(queue.collect(5).size(), 5u) << relay.log();
  std::string log = relay.log();
  EXPECT_EQ(log.find("writing the heartbeat failed"), log.rfind("writing the heartbeat failed")) << "logged once\n" << log;
  EXPECT_EQ(log.find("primary connection lost"), std::string::npos) << log;
  EXPECT_EQ(log.find("owning 16 of 16"), log.rfind("owning 16 of 16")) << "its partitions were never given up\n" << log;
  exec(servers().primary_url, "ALTER TABLE outbox DROP CONSTRAINT no_heartbeats");
}

TEST(Relay, WhileTheBrokerIsDownTheRelayGivesUpItsPartitionsAndTakesThemBackAfter) {
  fresh_schema();
  TestQueue queue("test.release", "release.#");
  Daemon relay(relay_args());
  ASSERT_TRUE(eventually([&] { return relay.log().find("owning 16 of 16") != std::string::npos; })) << relay.log();
  auto partition_locks = [] {
    return scalar(servers().primary_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = " +
                                             std::to_string(0x6F627832) + " AND granted");
  };
  EXPECT_EQ(partition_locks(), "16");
  ASSERT_TRUE(stop_server("rabbitmq"));
  // Another instance, with a broker, could now take them all.
  EXPECT_TRUE(eventually([&] { return partition_locks() == "0"; }, 30s)) << relay.log();
  EXPECT_NE(relay.log().find("released 16 partition(s) while the broker is unavailable"), std::string::npos) << relay.log();
  insert_events("release.evt", 20, 5);
  ASSERT_TRUE(start_server("rabbitmq"));
  EXPECT_EQ(queue.collect(20, 60s).size(), 20u) << relay.log();
  EXPECT_EQ(partition_locks(), "16");
}

TEST(Relay, ALockHeldOnTheOutboxTableDoesNotFreezeTheRelayAndPublishingResumesAfter) {
  fresh_schema();
  TestQueue queue("test.locked", "locked.#");
  Daemon relay(relay_args());
  ASSERT_TRUE(eventually([&] { return relay.log().find("owning 16 of 16") != std::string::npos; })) << relay.log();
  insert_events("locked.evt", 10, 5);
  pqxx::connection blocker(servers().primary_url);
  auto lock = std::make_unique<pqxx::work>(blocker);
  lock->exec("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE");
  ASSERT_TRUE(eventually([&] { return relay.log().find("reading the outbox failed, will retry") != std::string::npos; }))
      << relay.log();
  EXPECT_EQ(relay.log().find("primary connection lost"), std::string::npos) << relay.log();
  lock->abort();
  EXPECT_EQ(queue.collect(10).size(), 10u) << relay.log();
  EXPECT_TRUE(eventually([] { return unpublished() == 0; })) << relay.log();
  EXPECT_TRUE(eventually([&] { return relay.log().find("reading the outbox works again") != std::string::npos; })) << relay.log();
  // And while locked again, SIGTERM is handled at once.
  pqxx::work again(blocker);
  again.exec("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE");
  relay.signal(SIGTERM);
  EXPECT_EQ(relay.wait_exit(20s), 0) << relay.log();
}

namespace {

// A [[relay.tables]] table like the outbox whose `nullable_column` allows NULL (a user's own
// table); returns the config file that names it. The test drops it at its end.
std::string make_loose_table(const std::string& nullable_column) {
  exec(servers().primary_url, "CREATE TABLE loose_outbox (LIKE outbox INCLUDING ALL); ALTER TABLE loose_outbox ALTER " +
                                  nullable_column + " DROP NOT NULL");
  return write_file("loose.toml", "[[relay.tables]]\nname = \"public.loose_outbox\"\n");
}

// Two rows into the loose table: one with the given aggregate id and version (SQL literals), then
// a good one of aggregate "b".
void insert_loose_rows(const std::string& first_aggregate_id, const std::string& first_version) {
  exec(servers().primary_url,
       "INSERT INTO loose_outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, "
       "payload) VALUES (gen_random_uuid(), 'test', " +
           first_aggregate_id + ", " + first_version +
           ", 'loose.evt', '{}'), (gen_random_uuid(), 'test', 'b', 1, 'loose.evt', '{}')");
}

// Whether the relay parked the loose table's row with `error`.
bool loose_row_parked_with(const std::string& error) {
  return scalar(servers().primary_url, "SELECT error FROM outbox_parked WHERE outbox_table = 'public.loose_outbox'") == error;
}

}  // namespace

TEST(Relay, ARowWithANullColumnInALooseTableIsParkedAndTheOthersArePublished) {
  fresh_schema();
  TestQueue queue("test.loose", "loose.#");
  std::string config = make_loose_table("aggregate_version");
  insert_loose_rows("'a'", "NULL");
  Daemon relay(relay_args(), {{"OUTBOX_CONFIG", config}});
  ASSERT_EQ(queue.collect(1).size(), 1u) << relay.log();
  EXPECT_EQ(header_text(queue.messages()[0], "aggregate_id"), "b");
  EXPECT_TRUE(eventually([] { return loose_row_parked_with("aggregate_version is NULL"); })) << relay.log();
  // The broker's confirm reaches the queue before the relay marks the row published: poll for it.
  EXPECT_TRUE(eventually([] {
    return scalar(servers().primary_url, "SELECT count(*) FROM loose_outbox WHERE published_at IS NULL") == "1";
  })) << relay.log();
  EXPECT_TRUE(relay.running());
  relay.signal(SIGTERM);
  relay.wait_exit();
  exec(servers().primary_url, "DROP TABLE loose_outbox");
}

// A row of a loose table with no aggregate id has no relay partition ((hashtext(NULL) & ...) is
// NULL). A relay that owns every partition reads the whole table and parks it; but with two
// relays, each reading only its own partitions, neither read it: it stayed unpublished for good,
// neither published nor parked. It now belongs to the empty id's partition, whose owner parks it.
TEST(Relay, ARowWithoutAnAggregateIdIsParkedWhenTwoRelaysShareThePartitions) {
  fresh_schema();
  TestQueue queue("test.loose", "loose.#");
  std::string config = make_loose_table("aggregate_id");
  Daemon first(relay_args({"--instance", "first"}), {{"OUTBOX_CONFIG", config}});
  Daemon second(relay_args({"--instance", "second"}), {{"OUTBOX_CONFIG", config}});
  ASSERT_TRUE(eventually([&] {
    return first.log().find("owning 8 of 16") != std::string::npos && second.log().find("owning 8 of 16") != std::string::npos;
  })) << first.log()
      << second.log();
  insert_loose_rows("NULL", "1");
  ASSERT_EQ(queue.collect(1).size(), 1u) << first.log() << second.log();
  EXPECT_EQ(header_text(queue.messages()[0], "aggregate_id"), "b");
  EXPECT_TRUE(eventually([] { return loose_row_parked_with("aggregate_id is NULL"); })) << first.log() << second.log();
  first.signal(SIGTERM);
  second.signal(SIGTERM);
  first.wait_exit();
  second.wait_exit();
  exec(servers().primary_url, "DROP TABLE loose_outbox");
}

// created_at is the writers' own, and timestamptz takes 'infinity' and '-infinity'. Such a row has
// no time for the message's timestamp and created_at header: it is parked with the reason, and the
// rows after it go on. Before, the read's conversion of created_at to microseconds failed ("cannot
// convert infinity to bigint") for the whole read, at every poll: no row of the outbox was
// published again. And `outbox lag` called the primary unreachable ("cannot subtract infinite
// timestamps"): it now counts such a row, with its age unknown.
TEST(Relay, ARowCreatedAtInfinityIsParkedAndTheOthersArePublished) {
  fresh_schema();
  TestQueue queue("test.infinite", "infinite.#");
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, created_at) "
       "VALUES (gen_random_uuid(), 'test', 'a', 1, 'infinite.evt', '{}', 'infinity'), "
       "(gen_random_uuid(), 'test', 'b', 1, 'infinite.evt', '{}', '-infinity'), "
       "(gen_random_uuid(), 'test', 'c', 1, 'infinite.evt', '{}', DEFAULT)");
  // Before the relay parks them, `outbox lag` counts them (their age is unknown).
  RunResult lag = run_outbox({"lag", "--json"});
  ASSERT_EQ(lag.exit_code, 0) << lag;
  const nlohmann::json table = nlohmann::json::parse(lag.out)["outbox"]["tables"][0];
  EXPECT_EQ(table["unpublished"], 3) << lag;
  EXPECT_TRUE(table["oldest_unpublished_age_seconds"].is_null()) << lag;
  Daemon relay(relay_args());
  ASSERT_EQ(queue.collect(1).size(), 1u) << relay.log();
  EXPECT_EQ(header_text(queue.messages()[0], "aggregate_id"), "c");
  EXPECT_TRUE(eventually([] {
    return scalar(servers().primary_url,
                  "SELECT string_agg(aggregate_id || ': ' || error, '; ' ORDER BY position) FROM "
                  "outbox_parked") ==
           "a: created_at is not a time a message can carry (infinity, -infinity or past the year 294000); b: created_at "
           "is not a time a message can carry (infinity, -infinity or past the year 294000)";
  })) << relay.log();
  EXPECT_TRUE(relay.running());
}

namespace {

// The relay's view of its parked rows: `outbox failed list --relay` as JSON objects.
std::vector<nlohmann::json> parked_list() {
  RunResult listed = run_outbox({"failed", "list", "--relay"});
  EXPECT_EQ(listed.exit_code, 0) << listed;
  std::vector<nlohmann::json> rows;
  std::istringstream lines(listed.out);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

// Waits until the relay has parked a row; returns it (null, and a test failure, unless it is the
// only one).
nlohmann::json the_one_parked_row(const Daemon& relay) {
  EXPECT_TRUE(eventually([] { return parked_list().size() == 1; })) << relay.log();
  std::vector<nlohmann::json> parked = parked_list();
  EXPECT_EQ(parked.size(), 1u) << relay.log();
  return parked.size() == 1 ? parked.front() : nlohmann::json();
}

void insert_row(const std::string& aggregate, long long version, const std::string& event_type_sql,
                const std::string& payload_sql = "'{}'::json") {
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) VALUES "
       "(gen_random_uuid(), 'test', " +
           aggregate + ", " + std::to_string(version) + ", " + event_type_sql + ", " + payload_sql + ")");
}

}  // namespace

TEST(Relay, AnEventTypeLongerThanAmqpAllowsIsParkedItsAggregateWaitsAndEveryOtherAggregateGoesOn) {
  fresh_schema();
  TestQueue queue("test.poison", "poison.#");
  insert_row("'victim'", 1, "'poison.' || repeat('x', 300)");
  insert_row("'victim'", 2, "'poison.after'");
  insert_events("poison.other", 40, 8);
  Daemon relay(relay_args());
  // Every other aggregate, on every partition, is published.
  ASSERT_EQ(ids_of(queue.collect(40)).size(), 40u) << relay.log();
  nlohmann::json parked = the_one_parked_row(relay);
  ASSERT_FALSE(parked.is_null());
  EXPECT_EQ(parked["state"], "parked");
  EXPECT_EQ(parked["aggregate_id"], "victim");
  EXPECT_EQ(parked["attempts"], 1);
  EXPECT_EQ(parked["waiting"], 1);
  EXPECT_NE(parked["error"].get<std::string>().find("the event type is 307 bytes, AMQP allows at most 255"), std::string::npos)
      << parked;
  // Not deleted, not marked: both rows of the aggregate stay unpublished, in order behind the parked one.
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE aggregate_id = 'victim' AND published_at IS NULL"),
            "2");
  EXPECT_NE(relay.log().find("parked outbox row public.outbox position"), std::string::npos) << relay.log();
  // lag and check show it.
  RunResult lag = run_outbox({"lag", "--json"});
  ASSERT_EQ(lag.exit_code, 0) << lag;
  nlohmann::json table = nlohmann::json::parse(lag.out)["outbox"]["tables"][0];
  EXPECT_EQ(table["parked"], 1) << lag;
  EXPECT_EQ(table["waiting"], 1) << lag;
  EXPECT_EQ(table["unpublished"], 0) << lag;
  RunResult check = run_outbox({"check"});
  EXPECT_NE(check.out.find("outbox public.outbox has 1 row parked and 1 waiting behind (see outbox failed list --relay)"),
            std::string::npos)
      << check;
  EXPECT_GE(check.exit_code, 1) << check;  // WARNING or worse
  // A new slot of another aggregate still goes through while the row is parked.
  insert_events("poison.later", 1, 1, 100);
  EXPECT_EQ(ids_of(queue.collect(41)).size(), 41u) << relay.log();

  std::string id = std::to_string(parked["id"].get<long long>());
  RunResult shown = run_outbox({"failed", "show", id, "--relay"});
  ASSERT_EQ(shown.exit_code, 0) << shown;
  EXPECT_NE(shown.out.find("\nstate:        parked\n"), std::string::npos) << shown;
  EXPECT_NE(shown.out.find("\npayload:      \"{}\"\nwaiting:      1\n"), std::string::npos) << shown;
  RunResult missing = run_outbox({"failed", "show", "999", "--relay"});
  EXPECT_EQ(missing.exit_code, 65) << missing;
  EXPECT_EQ(missing.err, "outbox: no parked outbox row #999 (see outbox failed list --relay)\n") << missing;
  // While the row is unchanged, retry refuses it and keeps it parked.
  RunResult refused = run_outbox({"failed", "retry", id, "--relay"});
  EXPECT_EQ(refused.exit_code, 65) << refused;
  EXPECT_NE(refused.err.find("still cannot be published: the event type is 307 bytes"), std::string::npos) << refused;
  EXPECT_EQ(parked_list().size(), 1u);
  // Fixed by hand, retry releases it and the row behind it, in order.
  exec(servers().primary_url,
       "UPDATE outbox SET event_type = 'poison.fixed' WHERE aggregate_id = 'victim' AND aggregate_version = 1");
  RunResult retried = run_outbox({"failed", "retry", id, "--relay"});
  ASSERT_EQ(retried.exit_code, 0) << retried;
  EXPECT_NE(retried.out.find("relay: released #" + id), std::string::npos) << retried;
  const auto& all = queue.collect(43);
  ASSERT_EQ(ids_of(all).size(), 43u) << relay.log();
  std::vector<std::string> victim_types;
  for (const auto& message : all)
    if (header_text(message, "aggregate_id") == "victim") victim_types.push_back(message.type.value_or(""));
  EXPECT_EQ(victim_types, (std::vector<std::string>{"poison.fixed", "poison.after"}));
  expect_per_aggregate_order(all);
  EXPECT_TRUE(parked_list().empty());
}

TEST(Relay, AnAggregateIdTooLargeForAFrameIsParkedAndDiscardReleasesTheRowsBehindIt) {
  fresh_schema();
  TestQueue queue("test.huge", "huge.#");
  insert_row("repeat('h', 300000)", 1, "'huge.created'");
  insert_row("repeat('h', 300000)", 2, "'huge.changed'");
  insert_events("huge.other", 10, 3);
  Daemon relay(relay_args());
  ASSERT_EQ(ids_of(queue.collect(10)).size(), 10u) << relay.log();
  nlohmann::json parked = the_one_parked_row(relay);
  ASSERT_FALSE(parked.is_null());
  EXPECT_NE(parked["error"].get<std::string>().find("more than the broker's frame size of 131072"), std::string::npos) << parked;
  // The log line cuts the 300 KB id.
  std::string log = relay.log();
  EXPECT_NE(log.find("...(300000 bytes)"), std::string::npos) << log.substr(0, 4000);
  EXPECT_EQ(log.find(std::string(1000, 'h')), std::string::npos);

  RunResult discarded = run_outbox({"failed", "discard", std::to_string(parked["id"].get<long long>()), "--relay"});
  ASSERT_EQ(discarded.exit_code, 0) << discarded;
  EXPECT_NE(discarded.out.find("the outbox row is deleted and never published; 1 row(s) waiting behind it"), std::string::npos)
      << discarded;
  // The row behind it is checked on its own, and parked for the same reason: nothing is skipped silently.
  ASSERT_TRUE(eventually([] {
    auto rows = parked_list();
    return rows.size() == 1 && rows[0]["event_type"] == "huge.changed";
  })) << relay.log();
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE event_type = 'huge.created'"), "0");
}

TEST(Relay, APayloadOverMaxMessageSizeIsParkedAndAVersionOutsideTheValidRangeToo) {
  fresh_schema();
  TestQueue queue("test.sizes", "sizes.#");
  // The primary refuses a version outside 1 .. 2^53-1 ...
  EXPECT_THROW(insert_row("'v0'", 0, "'sizes.zero'"), std::exception);
  EXPECT_THROW(insert_row("'v0'", 9007199254740992LL, "'sizes.huge'"), std::exception);
  // ... and the relay parks one written before that check existed.
  exec(servers().primary_url, "ALTER TABLE outbox DROP CONSTRAINT outbox_aggregate_version_range");
  insert_row("'neg'", -5, "'sizes.negative'");
  insert_row("'big'", 1, "'sizes.big'", "json_build_object('blob', repeat('b', 5000))");
  insert_row("'small'", 1, "'sizes.small'");
  Daemon relay(relay_args({"--set", "relay.max_message_size=4096"}));
  ASSERT_EQ(queue.collect(1).size(), 1u) << relay.log();
  EXPECT_EQ(queue.messages()[0].type, "sizes.small");
  ASSERT_TRUE(eventually([] { return parked_list().size() == 2; })) << relay.log();
  std::string errors = scalar(servers().primary_url, "SELECT string_agg(error, ' | ' ORDER BY position) FROM outbox_parked");
  EXPECT_NE(errors.find("aggregate_version -5 is outside 1..9007199254740991"), std::string::npos) << errors;
  EXPECT_NE(errors.find("over relay.max_message_size (4096)"), std::string::npos) << errors;
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM outbox_parked WHERE parked_at IS NOT NULL AND attempts = 1"),
            "2");
}

TEST(Relay, AMessageTheBrokerRefusesIsFoundInItsWindowParkedAfterMaxAttemptsAndReconnectsBackOff) {
  fresh_schema();
  TestQueue queue("test.refused", "refused.#");
  // The broker takes at most 4 KB; the relay does not know (its own limit is the default 128 MiB).
  BrokerMessageSizeLimit broker_limit(4096);
  ASSERT_TRUE(broker_limit.applied());
  insert_events("refused.before", 20, 5);
  insert_row("'refused'", 1, "'refused.big'", "json_build_object('blob', repeat('b', 10000))");
  insert_row("'refused'", 2, "'refused.after'");
  insert_events("refused.later", 20, 5, 100);
  Daemon relay(relay_args({"--set", "relay.max_attempts=3", "--set", "log.level=debug"}));
  // Messages in flight when the broker closed the channel are published again (at least once).
  const auto& messages = queue.collect(40);
  EXPECT_EQ(ids_of(messages).size(), 40u) << relay.log();
  nlohmann::json parked = the_one_parked_row(relay);
  ASSERT_FALSE(parked.is_null());
  EXPECT_EQ(parked["state"], "parked");
  EXPECT_EQ(parked["attempts"], 3);
  EXPECT_EQ(parked["event_type"], "refused.big");
  EXPECT_NE(parked["error"].get<std::string>().find("larger than configured max size"), std::string::npos) << parked;
  expect_per_aggregate_order(messages);
  // Each refusal was followed by a longer wait: the attempts count on, they do not restart at 1.
  std::string log = relay.log();
  EXPECT_NE(log.find("reconnect attempt 3 in"), std::string::npos) << log;
  ASSERT_TRUE(broker_limit.lift());
  // Once the broker takes it, retry publishes it and the row behind it.
  RunResult retried = run_outbox({"failed", "retry", "--all", "--relay"});
  ASSERT_EQ(retried.exit_code, 0) << retried;
  const auto& all = queue.collect(42);
  ASSERT_EQ(ids_of(all).size(), 42u) << relay.log();
  expect_per_aggregate_order(all);
}

TEST(Relay, ConfirmedRowsWaitingForALockToBeMarkedAreNotTakenForAConfirmTimeout) {
  fresh_schema();
  TestQueue queue("test.marklock", "marklock.#");
  insert_events("marklock.evt", 20, 20);
  // Row share locks: the relay reads and publishes them, but its marks wait.
  pqxx::connection blocker(servers().primary_url);
  auto lock = std::make_unique<pqxx::work>(blocker);
  lock->exec("SELECT position FROM outbox FOR SHARE");
  NotifySocket systemd;
  Daemon relay(relay_args({"--set", "relay.confirm_timeout=1s"}), systemd.env());
  ASSERT_TRUE(eventually([&] { return relay.log().find("marking published rows failed, will retry") != std::string::npos; }))
      << relay.log();
  // Absence needs a window: three confirm timeouts.
  for (auto until = std::chrono::steady_clock::now() + 3s; std::chrono::steady_clock::now() < until;)
    ASSERT_EQ(relay.log().find("publisher confirms timed out"), std::string::npos) << relay.log();
  // Past two confirm timeouts without progress, and still alive for the watchdog: waiting for a
  // lock is not being stuck (systemd would otherwise kill it, and the restart would wait again).
  systemd.read();
  systemd.received.clear();
  EXPECT_TRUE(eventually([&] { return systemd.read().find("WATCHDOG=1") != std::string::npos; }, 2s)) << relay.log();
  lock->abort();
  EXPECT_TRUE(eventually([] { return unpublished() == 0; })) << relay.log();
  EXPECT_EQ(queue.collect_deliveries(20).size(), 20u) << "published once, not again after a false timeout";
  EXPECT_TRUE(eventually([&] { return relay.log().find("marking published rows works again") != std::string::npos; }))
      << relay.log();
}

// A slow link to the broker: it confirms steadily, but a batch published behind a full window waits
// far longer than relay.confirm_timeout for its confirm. Timed from publication, every such batch
// "timed out", the window was published again, and the relay duplicated its backlog round after
// round. Timed from the last confirm, nothing times out while confirms come.
TEST(Relay, ABrokerThatConfirmsSlowlyButSteadilyIsNotTakenForATimeoutAndEachEventIsPublishedOnce) {
  fresh_schema();
  TestQueue queue("test.slowlink", "slowlink.#");
  const int events = 3000;
  insert_events("slowlink.evt", events, 50);
  // About 300 messages a second get through: a window of 2000 takes ~6 s to confirm, 3x the timeout,
  // while a batch of 100 is confirmed every ~0.3 s.
  const std::string& url = servers().broker_url;
  size_t port_at = url.rfind(':') + 1;
  int broker_port = std::stoi(url.substr(port_at));
  ThrottledProxy slow_link(broker_port, 100 * 1024);
  std::string slow_url = url.substr(0, port_at) + std::to_string(slow_link.port()) + "/";
  Daemon relay(relay_args({"--set", "broker.url=" + slow_url, "--set", "relay.confirm_timeout=2s", "--set",
                           "relay.max_unconfirmed=2000", "--set", "relay.batch_size=100"}));
  ASSERT_TRUE(eventually([] { return unpublished() == 0; }, 180s)) << relay.log();
  EXPECT_EQ(relay.log().find("publisher confirms timed out"), std::string::npos) << relay.log();
  const auto& deliveries = queue.collect_deliveries(events + 1, 3s);
  EXPECT_EQ(deliveries.size(), static_cast<size_t>(events)) << "each event published once";
  EXPECT_EQ(ids_of(deliveries).size(), static_cast<size_t>(events));
}

TEST(Relay, ABrokerListMovesToTheNextNodeWhenOneIsDown) {
  fresh_schema();
  TestQueue queue("test.cluster", "cluster.#");
  insert_events("cluster.evt", 10, 10);
  std::string nodes = "[\"amqp://outbox:outbox@127.0.0.1:1/\", \"" + servers().broker_url + "\"]";
  Daemon relay(relay_args({"--set", "broker.url=" + nodes}));
  EXPECT_EQ(queue.collect(10).size(), 10u) << relay.log();
  EXPECT_TRUE(eventually([] { return unpublished() == 0; })) << relay.log();
}

TEST(Relay, APrimaryRestartIsSurvivedAndTheRelayCarriesOn) {
  fresh_schema();
  TestQueue queue("test.pgrestart", "pgrestart.#");
  Daemon relay(relay_args());
  insert_events("pgrestart.evt", 10, 10);
  ASSERT_EQ(ids_of(queue.collect(10)).size(), 10u) << relay.log();
  ASSERT_TRUE(stop_server("primary"));
  ASSERT_TRUE(eventually([&] { return relay.log().find("primary connection lost") != std::string::npos; })) << relay.log();
  ASSERT_TRUE(start_server("primary"));
  insert_events("pgrestart.evt", 10, 10, 100);
  EXPECT_EQ(queue.collect(20, std::chrono::seconds(60)).size(), 20u) << relay.log();
  EXPECT_TRUE(relay.running());
  EXPECT_NE(relay.log().find("primary connected again"), std::string::npos) << relay.log();
}

TEST(Relay, ItTellsSystemdWhenItIsReadyStoppingAndAlive) {
  fresh_schema();
  NotifySocket systemd;
  Daemon relay(relay_args(), systemd.env());
  EXPECT_TRUE(eventually([&] { return systemd.read().find("READY=1") != std::string::npos; })) << relay.log();
  EXPECT_TRUE(eventually([&] { return systemd.read().find("WATCHDOG=1") != std::string::npos; })) << systemd.received;
  EXPECT_TRUE(eventually([&] { return systemd.read().find("STATUS=relaying; partitions 16/16") != std::string::npos; }))
      << systemd.received;
  relay.signal(SIGTERM);
  EXPECT_EQ(relay.wait_exit(), 0) << relay.log();
  EXPECT_NE(systemd.read().find("STOPPING=1"), std::string::npos) << systemd.received;
}

TEST(Relay, WhileItWaitsForABrokerThatDoesNotAnswerItStillFeedsTheWatchdog) {
  fresh_schema();
  // A listening socket that never accepts: TCP connects, the AMQP handshake waits for its timeout.
  int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(silent, 16), 0);
  socklen_t length = sizeof address;
  ::getsockname(silent, reinterpret_cast<sockaddr*>(&address), &length);
  std::string url = "amqp://outbox:outbox@127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/";
  NotifySocket systemd;
  auto env = systemd.env();
  env["OUTBOX_BROKER_URL"] = url;
  Daemon relay(relay_args({"--set", "broker.connect_timeout=5s", "--set", "relay.max_backoff=200ms"}), env);
  ASSERT_TRUE(eventually([&] { return relay.log().find("broker unavailable") != std::string::npos; })) << relay.log();
  // The loop spends nearly all its time in 5-second handshakes now; each second still has a feed.
  for (int second = 0; second < 6; ++second) {
    systemd.read();
    systemd.received.clear();
    ASSERT_TRUE(eventually([&] { return systemd.read().find("WATCHDOG=1") != std::string::npos; }, 1s))
        << "second " << second << "\n"
        << relay.log();
  }
  ::close(silent);
}

TEST(Relay, JsonLogsAreOneObjectPerLineAndNeverShowThePassword) {
  fresh_schema();
  Daemon relay(relay_args({"--set", "log.format=json"}));
  ASSERT_TRUE(eventually([&] { return relay.log().find("owning 16 of 16") != std::string::npos; })) << relay.log();
  relay.signal(SIGTERM);
  ASSERT_EQ(relay.wait_exit(), 0) << relay.log();
  std::istringstream lines(relay.log());
  int parsed = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    auto document = nlohmann::json::parse(line);  // throws (fails the test) when a line is not JSON
    EXPECT_TRUE(document.contains("msg") && document.contains("level") && document.contains("ts")) << line;
    ++parsed;
  }
  EXPECT_GE(parsed, 3);
  EXPECT_EQ(relay.log().find(":outbox@"), std::string::npos) << "a password reached the log: " << relay.log();
  EXPECT_NE(relay.log().find(":****@"), std::string::npos) << relay.log();
}

TEST(Relay, ItPublishesOverTlsToBothPostgresqlAndRabbitMQ) {
  fresh_schema();
  TestQueue queue("test.tls", "tls.#");
  insert_events("tls.evt", 10, 10);
  std::string primary_tls = servers().primary_url + "?sslmode=verify-full&sslrootcert=" + servers().tls_ca;
  Daemon relay(relay_args({"--set", "broker.tls_ca=" + servers().tls_ca}),
               {{"OUTBOX_BROKER_URL", servers().broker_tls_url}, {"OUTBOX_PRIMARY_URL", primary_tls}});
  EXPECT_EQ(queue.collect(10).size(), 10u) << relay.log();
  EXPECT_NE(relay.log().find("broker connected (amqps://outbox:****@localhost:"), std::string::npos) << relay.log();
  EXPECT_EQ(scalar(servers().primary_url,
                   "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                   "WHERE ssl AND application_name = 'outbox-relay'"),
            "1");
}

TEST(Relay, WithoutBrokerTlsCaTheSystemCaBundleVerifiesTheBroker) {
  fresh_schema();
  TestQueue queue("test.system-ca", "system-ca.#");
  insert_events("system-ca.evt", 3, 3);
  // SSL_CERT_FILE is how OpenSSL's default bundle is pointed elsewhere; here, at the test CA.
  Daemon relay(relay_args(), {{"OUTBOX_BROKER_URL", servers().broker_tls_url}, {"SSL_CERT_FILE", servers().tls_ca}});
  EXPECT_EQ(queue.collect(3).size(), 3u) << relay.log();
  EXPECT_NE(relay.log().find("broker connected (amqps://"), std::string::npos) << relay.log();
}

TEST(Relay, AnUntrustedBrokerCertificateIsRefused) {
  fresh_schema();
  Daemon relay(relay_args(), {{"OUTBOX_BROKER_URL", servers().broker_tls_url}});
  EXPECT_TRUE(eventually([&] { return relay.log().find("broker unavailable") != std::string::npos; })) << relay.log();
  EXPECT_EQ(relay.log().find("broker connected"), std::string::npos) << relay.log();
}
