// Packed messages (relay.pack > 1, migrate/pack.hpp) against a real PostgreSQL and RabbitMQ: the
// relay packs what it has read, replicate and consume unpack each event and treat it as before
// (order, the version guard, a poison event parked alone), through duplicates, kill -9 and a
// broker restart; a consumer bound to the plain exchange never receives a pack.
#include "migrate/pack.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "examples/parking/parking.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"

using namespace outbox::testing;
namespace amqp = outbox::amqp;
namespace pack = outbox::pack;
using outbox::parking::random_uuid;

namespace {

const std::vector<std::string> kRelay = {"relay", "--set", "relay.heartbeat_interval=0", "--set", "relay.poll_interval=200ms"};
const std::vector<std::string> kReplicate = {"replicate", "--set", "replicate.max_backoff=1s", "--set",
                                             "replicate.record_event_ids=true"};

// The configuration every process of a packed test reads (relay, replicate, migrate).
std::map<std::string, std::string> packed_env(int pack = 50) {
  return {{"OUTBOX_CONFIG", write_file("pack.toml", "[relay]\npack = " + std::to_string(pack) + "\n")}};
}

// Empty databases and queues; the replica's queue bound to the pack exchange too.
void fresh_packed_start() {
  try {
    reset_databases();
  } catch (const std::exception& error) {
    std::cerr << "[pack_test] reset_databases failed, retrying: " << error.what() << "\n";
    reset_databases();
  }
  ASSERT_TRUE(migrate_all());
  RunResult migrated = run_outbox({"migrate"}, packed_env());
  ASSERT_EQ(migrated.exit_code, 0) << migrated;
  EXPECT_NE(migrated.out.find("bound to outbox and outbox.packed"), std::string::npos) << migrated;
  purge_outbox_queues();
}

// `slots` parking slots, each created and then updated up to version `versions`, written straight
// into the primary's outbox in position order, versions interleaved across slots.
void write_slot_events(int slots, int versions, int first_version = 1) {
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
       "SELECT gen_random_uuid(), 'parking_slot', u::text, v, CASE WHEN v = 1 THEN 'parking.create' ELSE "
       "'parking.update' END, json_build_object('uuid', u, 'name', 'v' || v, 'status', 'available', 'version', v) "
       "FROM generate_series(" +
           std::to_string(first_version) + ", " + std::to_string(versions) +
           ") v, LATERAL (SELECT a, md5('slot' || a)::uuid AS u FROM generate_series(1, " + std::to_string(slots) +
           ") a) s ORDER BY v, a");
}

std::string count(const std::string& url, const std::string& sql) { return scalar(url, "SELECT count(*) FROM " + sql); }
int unpublished() { return std::stoi(count(servers().primary_url, "outbox WHERE published_at IS NULL")); }

// Every slot on the replica at its last version, with the name that version wrote.
bool replica_has_every_slot_at(int slots, int version) {
  return count(servers().replica_url, "parking_slots WHERE version = " + std::to_string(version) + " AND name = 'v" +
                                          std::to_string(version) + "'") == std::to_string(slots);
}

// Each event applied once: every event id recorded once, none parked.
void expect_each_event_once(int events) {
  EXPECT_TRUE(eventually([&] { return count(servers().replica_url, "outbox_applied_events") == std::to_string(events); }))
      << count(servers().replica_url, "outbox_applied_events") << " of " << events << " event ids recorded";
  EXPECT_EQ(count(servers().replica_url, "outbox_failed_events"), "0");
}

amqp::OutgoingMessage slot_event(const std::string& uuid, long long version, const std::string& body) {
  return event_message(version == 1 ? "parking.create" : "parking.update", "parking_slot", uuid, version, body,
                       1700000000000000LL + version);
}

std::string slot_json(const std::string& uuid, const std::string& name, long long version) {
  return nlohmann::json{{"uuid", uuid}, {"name", name}, {"status", "available"}, {"version", version}}.dump();
}

// The events as one pack (routing key of the first, every element with its own).
amqp::OutgoingMessage packed(const std::vector<amqp::OutgoingMessage>& events, const std::string& exchange = "outbox") {
  pack::Builder builder;
  for (const amqp::OutgoingMessage& event : events) builder.add(event);
  return builder.take(exchange, 0);
}

std::vector<nlohmann::json> failed_list() {
  RunResult list = run_outbox({"failed", "list"});
  EXPECT_EQ(list.exit_code, 0) << list;
  std::vector<nlohmann::json> failed;
  for (size_t at = 0, end; (end = list.out.find('\n', at)) != std::string::npos; at = end + 1)
    failed.push_back(nlohmann::json::parse(list.out.substr(at, end - at)));
  return failed;
}

}  // namespace

TEST(Pack, APoisonEventInTheMiddleOfAPackIsParkedAloneWhileTheOthersOfThePackApply) {
  fresh_packed_start();
  std::string a = random_uuid(), poisoned = random_uuid(), b = random_uuid(), broken = random_uuid();
  amqp::OutgoingMessage bad_body = slot_event(poisoned, 1, R"({"uuid": ")" + poisoned + R"(", )");
  amqp::OutgoingMessage first =
      packed({slot_event(a, 1, slot_json(a, "one", 1)), bad_body, slot_event(poisoned, 2, slot_json(poisoned, "behind", 2)),
              slot_event(b, 1, slot_json(b, "one", 1))});
  // A second pack whose middle element is not an event at all: the elements around it apply.
  amqp::OutgoingMessage second =
      packed({slot_event(a, 2, slot_json(a, "two", 2)), slot_event(broken, 1, "{}"), slot_event(b, 2, slot_json(b, "two", 2))});
  std::string body = second.body;
  size_t element = body.find("},{\"message_id\"") + 2;
  size_t next = body.find("},{\"message_id\"", element) + 2;
  second.body = body.substr(0, element) + R"({"message_id": ")" + random_uuid() +
                R"(", "headers": {"aggregate_type": "parking_slot", "aggregate_id": ")" + broken +
                R"(", "aggregate_version": 1}},)" + body.substr(next);
  publish_all({first, second}, "outbox.replica.main");
  Daemon replicate(kReplicate);
  ASSERT_TRUE(eventually([&] {
    return count(servers().replica_url, "parking_slots WHERE version = 2 AND name = 'two'") == "2" &&
           count(servers().replica_url, "outbox_failed_events") == "3";
  })) << replicate.log();
  EXPECT_EQ(count(servers().replica_url, "parking_slots WHERE uuid = '" + poisoned + "'"), "0");

  std::vector<nlohmann::json> failed = failed_list();
  ASSERT_EQ(failed.size(), 3u);
  EXPECT_EQ(failed[0]["aggregate_id"], poisoned);
  EXPECT_EQ(failed[0]["state"], "parked");
  EXPECT_NE(failed[0]["error"].get<std::string>().find("malformed JSON"), std::string::npos) << failed[0];
  EXPECT_EQ(failed[1]["aggregate_id"], poisoned);
  EXPECT_EQ(failed[1]["state"], "waiting");  // its aggregate waits behind it, as with single messages
  EXPECT_EQ(failed[2]["aggregate_id"], broken);
  EXPECT_EQ(failed[2]["state"], "parked");
  EXPECT_NE(failed[2]["error"].get<std::string>().find("pack element 1: no payload"), std::string::npos) << failed[2];
  EXPECT_TRUE(eventually([] { return broker_connection()->inspect_queue("outbox.replica.main").first == 0; }));
}

TEST(Pack, DuplicatesAcrossPacksHaveEachEffectOnce) {
  fresh_packed_start();
  std::vector<amqp::OutgoingMessage> events;
  std::vector<std::string> uuids;
  for (int slot = 0; slot < 20; ++slot) uuids.push_back(random_uuid());
  for (long long version = 1; version <= 5; ++version)
    for (const std::string& uuid : uuids)
      events.push_back(slot_event(uuid, version, slot_json(uuid, "v" + std::to_string(version), version)));
  // Overlapping packs, as a republish after a confirm timeout or a replayed pack delivers them.
  auto range = [&](size_t from, size_t to) {
    return std::vector<amqp::OutgoingMessage>(events.begin() + static_cast<long>(from), events.begin() + static_cast<long>(to));
  };
  publish_all({packed(range(0, 40)), packed(range(20, 70)), packed(range(0, 40)), packed(range(60, 100)), packed(range(50, 100))},
              "outbox.replica.main");
  Daemon replicate(with_args(kReplicate, {"--set", "replicate.batch_size=30"}));
  ASSERT_TRUE(eventually([] { return replica_has_every_slot_at(20, 5); })) << replicate.log();
  expect_each_event_once(100);
}

TEST(Pack, TheRelayPacksWhatItHasReadAndAPlainExchangeConsumerNeverReceivesAPack) {
  fresh_packed_start();
  TestQueue plain("test.pack.plain", "#");
  TestQueue packs("test.pack.packs", "#", "outbox.packed");
  write_slot_events(40, 25);  // 1,000 events
  Daemon relay(kRelay, packed_env());
  ASSERT_TRUE(eventually([] { return unpublished() == 0; }, 60s)) << relay.log();
  Daemon replicate(kReplicate, packed_env());
  ASSERT_TRUE(eventually([] { return replica_has_every_slot_at(40, 25); }, 60s)) << replicate.log();
  expect_each_event_once(1000);

  // Fewer messages than events, each a pack of at most relay.pack events with one routing key and
  // of one relay partition, whose elements are that partition's events in position order; an
  // aggregate's events all in packs of one partition.
  std::set<std::string> ids;
  std::map<long long, long long> last_position;              // relay partition -> the last position seen
  std::map<std::string, std::set<long long>> partitions_of;  // aggregate -> relay partitions of its packs
  size_t events = 0;
  const auto& messages = packs.collect_deliveries(20, 30s);
  ASSERT_TRUE(eventually([&] {
    packs.collect_deliveries(messages.size() + 1, 200ms);
    size_t seen = 0;
    for (const auto& message : packs.messages()) seen += pack::unpack(message).size();
    return seen >= 1000;
  })) << relay.log();
  for (const amqp::IncomingMessage& message : packs.messages()) {
    ASSERT_TRUE(pack::is_pack(message));
    std::vector<pack::Unpacked> unpacked = pack::unpack(message);
    EXPECT_LE(unpacked.size(), 50u);
    EXPECT_EQ(header_number(message, pack::kCountHeader), static_cast<long long>(unpacked.size()));
    long long partition = header_number(message, pack::kPartitionHeader);
    EXPECT_TRUE(partition >= 0 && partition < 16) << partition;
    for (const pack::Unpacked& event : unpacked) {
      EXPECT_EQ(event.problem, "");
      EXPECT_EQ(event.message.routing_key, message.routing_key);
      long long position = header_number(event.message, "outbox_position");
      EXPECT_GT(position, last_position[partition]);
      last_position[partition] = position;
      partitions_of[header_text(event.message, "aggregate_id")].insert(partition);
      ids.insert(*event.message.message_id);
      ++events;
    }
  }
  EXPECT_EQ(events, 1000u);
  EXPECT_EQ(ids.size(), 1000u);
  for (const auto& [aggregate, partitions] : partitions_of) EXPECT_EQ(partitions.size(), 1u) << aggregate;
  EXPECT_GT(last_position.size(), 1u) << "40 aggregates fall in more than one relay partition";
  EXPECT_LT(packs.messages().size(), 1000u / 5) << "packs of about relay.pack events were expected from a backlog";
  EXPECT_EQ(TestQueue::depth("test.pack.plain"), 0u) << "the plain exchange received something while packing";
  EXPECT_TRUE(plain.messages().empty());

  // At a low rate a pack holds the one event there is.
  write_slot_events(1, 26, 26);
  ASSERT_TRUE(eventually([&] {
    packs.collect_deliveries(packs.messages().size() + 1, 200ms);
    return pack::unpack(packs.messages().back()).size() == 1 &&
           header_number(pack::unpack(packs.messages().back())[0].message, "aggregate_version") == 26;
  })) << relay.log();
  EXPECT_EQ(TestQueue::depth("test.pack.plain"), 0u);
}

// relay.pack_compression = zstd: every pack on the wire is one zstd frame (content_encoding zstd)
// that decodes to the events, and replicate applies them as it applies any pack.
TEST(Pack, CompressedPacksSayContentEncodingZstdAndReplicateAppliesEachOfTheirEventsOnce) {
  fresh_packed_start();
  std::map<std::string, std::string> env = {
      {"OUTBOX_CONFIG", write_file("pack-zstd.toml", "[relay]\npack = 50\npack_compression = \"zstd\"\n")}};
  TestQueue packs("test.pack.zstd", "#", "outbox.packed");
  write_slot_events(40, 25);  // 1,000 events
  Daemon replicate(kReplicate, env);
  Daemon relay(kRelay, env);
  ASSERT_TRUE(eventually([] { return unpublished() == 0; }, 60s)) << relay.log();
  ASSERT_TRUE(eventually([] { return replica_has_every_slot_at(40, 25); }, 60s)) << replicate.log();
  expect_each_event_once(1000);
  size_t events = 0;
  ASSERT_TRUE(eventually([&] {
    packs.collect_deliveries(packs.messages().size() + 1, 200ms);
    events = 0;
    for (const auto& message : packs.messages()) events += pack::unpack(message).size();
    return events >= 1000;
  })) << relay.log();
  EXPECT_EQ(events, 1000u);
  for (const amqp::IncomingMessage& message : packs.messages()) {
    EXPECT_EQ(message.content_encoding.value_or("(none)"), "zstd");
    EXPECT_EQ(message.body.substr(0, 4), std::string("\x28\xB5\x2F\xFD"));  // the zstd frame's magic number
    for (const pack::Unpacked& event : pack::unpack(message)) EXPECT_EQ(event.problem, "");
  }
}

// relay.pack = 500 and replicate.prefetch = 5,000: a window of 10 packs would hold a trickle's
// small packs back behind each ack, so it is 50 (replicate_window). Memory does not follow it:
// while a batch is applied, packs are unpacked only until the next batch is whole.
TEST(Pack, TheWindowHoldsFiftyPacksButOnlyTheNextBatchIsUnpackedWhileOneIsApplied) {
  fresh_packed_start();
  int port = free_port();
  Daemon replicate(with_args(kReplicate, {"--set", "replicate.batch_size=100", "--set", "replicate.prefetch=5000", "--set",
                                          "metrics.listen=127.0.0.1:" + std::to_string(port)}),
                   packed_env(500));
  std::string first = random_uuid();
  publish_all({packed({slot_event(first, 1, slot_json(first, "v1", 1))})}, "outbox.replica.main");
  ASSERT_TRUE(eventually([&] { return count(servers().replica_url, "parking_slots") == "1"; })) << replicate.log();

  // The next batch waits for this lock: it stays in flight while the broker fills the window.
  pqxx::connection blocker(servers().replica_url);
  pqxx::work hold(blocker);
  hold.exec("LOCK TABLE parking_slots IN ACCESS EXCLUSIVE MODE");
  std::vector<amqp::OutgoingMessage> packs;
  for (int pack = 0; pack < 60; ++pack) {
    std::vector<amqp::OutgoingMessage> events;
    for (int event = 0; event < 20; ++event) {
      std::string uuid = random_uuid();
      events.push_back(slot_event(uuid, 1, slot_json(uuid, "v1", 1)));
    }
    packs.push_back(packed(events));
  }
  publish_all(packs, "outbox.replica.main");
  const std::string label = "replica=\"main\"";
  ASSERT_TRUE(eventually([&] {
    return broker_connection()->inspect_queue("outbox.replica.main").first == 10 &&
           metric(port, "outbox_replicate_unacked_messages", label) == 50;
  })) << "ready "
      << broker_connection()->inspect_queue("outbox.replica.main").first << ", unacked "
      << metric(port, "outbox_replicate_unacked_messages", label) << "\n"
      << replicate.log();
  // The batch in flight (100 events, 5 packs) and the next one (another 5): not 50 packs' 1,000.
  EXPECT_LE(metric(port, "outbox_replicate_unpacked_events", label), 2 * 100 + 20);

  hold.abort();
  ASSERT_TRUE(eventually([&] { return count(servers().replica_url, "parking_slots") == "1201"; })) << replicate.log();
  expect_each_event_once(1201);
  EXPECT_TRUE(eventually([] { return broker_connection()->inspect_queue("outbox.replica.main").first == 0; }));
}

TEST(Pack, AKillNineOfTheRelayMidPackLosesNothingAndAppliesNothingTwice) {
  fresh_packed_start();
  write_slot_events(50, 40);  // 2,000 events
  std::map<std::string, std::string> env = packed_env();
  env["OUTBOX_FAILPOINTS"] = "relay.after_confirm=crash";
  Daemon crashing(kRelay, env);
  auto status = crashing.wait_exit(60s);
  ASSERT_TRUE(status.has_value()) << crashing.log();
  EXPECT_EQ(*status, 128 + SIGKILL);
  EXPECT_EQ(unpublished(), 2000) << "nothing may be marked when the relay dies before its commit";

  Daemon replicate(kReplicate, packed_env());
  Daemon relay(kRelay, packed_env());
  ASSERT_TRUE(eventually([] { return unpublished() == 0; }, 60s)) << relay.log();
  ASSERT_TRUE(eventually([] { return replica_has_every_slot_at(50, 40); }, 60s)) << replicate.log();
  expect_each_event_once(2000);
}

TEST(Pack, ABrokerRestartSplittingAPackRepublishesItsRowsAndEachEffectHappensOnce) {
  fresh_packed_start();
  write_slot_events(100, 100);  // 10,000 events
  Daemon replicate(kReplicate, packed_env());
  Daemon relay(kRelay, packed_env());
  ASSERT_TRUE(eventually([] { return unpublished() < 10000; })) << relay.log();
  std::atomic<bool> writing{true};
  std::atomic<int> version{101};
  std::thread writer([&] {
    while (writing && version < 400) {
      write_slot_events(100, version, version);
      ++version;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  bool stopped = stop_server("rabbitmq");
  bool started = stopped && start_server("rabbitmq");
  bool reconnected = started && eventually([&] { return relay.log().find("broker connected again") != std::string::npos; }, 60s);
  writing = false;
  writer.join();
  ASSERT_TRUE(reconnected) << relay.log();
  int last = version - 1;
  ASSERT_TRUE(eventually([] { return unpublished() == 0; }, 120s)) << relay.log();
  ASSERT_TRUE(eventually([&] { return replica_has_every_slot_at(100, last); }, 120s)) << replicate.log();
  expect_each_event_once(100 * last);
}

TEST(Pack, AnInboxServiceHandlesEachEventOfAPackOnceAndParksTheOneThatRaises) {
  reset_databases();
  std::string config =
      write_file("pack-consume.toml", "[relay]\npack = 50\n\n[services.booking]\nurl = \"" + servers().primary_url +
                                          "\"\nbinding_keys = [\"booking.#\"]\n\n"
                                          "[[services.booking.handlers]]\nevent_type = \"booking.#\"\n"
                                          "function = \"test_pack.on_command\"\n");
  RunResult migrated = run_outbox({"migrate"}, {{"OUTBOX_CONFIG", config}});
  ASSERT_EQ(migrated.exit_code, 0) << migrated;
  exec(servers().primary_url, R"(
DROP SCHEMA IF EXISTS test_pack CASCADE;
CREATE SCHEMA test_pack;
CREATE TABLE test_pack.seen (event_id uuid, aggregate_id text);
CREATE FUNCTION test_pack.on_command(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e->>'event_type' = 'booking.fail' THEN RAISE EXCEPTION 'booking % refused', e->>'aggregate_id'; END IF;
  INSERT INTO test_pack.seen VALUES ((e->>'event_id')::uuid, e->>'aggregate_id');
END $$;
)");
  purge_outbox_queues();
  std::vector<amqp::OutgoingMessage> commands;
  for (int i = 0; i < 9; ++i)
    commands.push_back(event_message(i == 4 ? "booking.fail" : "booking.create", "booking", "b" + std::to_string(i), 1, "{}",
                                     1796187600000000LL));
  amqp::OutgoingMessage pack_of_nine = packed(commands, "outbox.packed");
  // Delivered twice: the inbox makes the second a no-op.
  publish_all({pack_of_nine, pack_of_nine}, "outbox.consumer.booking");
  Daemon consume({"consume", "--set", "replicate.max_backoff=1s"}, {{"OUTBOX_CONFIG", config}});
  ASSERT_TRUE(eventually([] {
    return count(servers().primary_url, "test_pack.seen") == "8" &&
           count(servers().primary_url, "outbox_failed_events WHERE state = 'parked'") == "1";
  })) << consume.log();
  EXPECT_EQ(count(servers().primary_url, "(SELECT DISTINCT event_id FROM test_pack.seen) s"), "8");
  EXPECT_EQ(count(servers().primary_url, "test_pack.seen WHERE aggregate_id = 'b4'"), "0");
}

TEST(Pack, APackTheBrokerRefusesIsTakenApartAndOnlyTheEventItCannotTakeIsParked) {
  fresh_packed_start();
  // The broker takes at most 4 KB; the relay does not know (its own limit is the default 128 MiB).
  BrokerMessageSizeLimit broker_limit(4096);
  ASSERT_TRUE(broker_limit.applied());
  TestQueue packs("test.pack.refused", "refused.#", "outbox.packed");
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
       "SELECT gen_random_uuid(), 'refused', 'agg-' || g, 1, 'refused.small', json_build_object('n', g) "
       "FROM generate_series(1, 20) g");
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
       "VALUES (gen_random_uuid(), 'refused', 'big', 1, 'refused.small', json_build_object('blob', repeat('b', 10000)))");
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
       "SELECT gen_random_uuid(), 'refused', 'agg-' || g, 2, 'refused.small', json_build_object('n', g) "
       "FROM generate_series(1, 20) g");
  Daemon relay(with_args(kRelay, {"--set", "relay.max_attempts=2", "--set", "relay.max_backoff=1s"}), packed_env());
  // Every event but the big one arrives (some more than once: the refused pack was in flight).
  std::set<std::string> ids;
  ASSERT_TRUE(eventually(
      [&] {
        packs.collect_deliveries(packs.messages().size() + 1, 200ms);
        ids.clear();
        for (const auto& message : packs.messages())
          for (const pack::Unpacked& event : pack::unpack(message)) ids.insert(*event.message.message_id);
        return ids.size() == 40;
      },
      90s))
      << relay.log();
  ASSERT_TRUE(eventually([] { return count(servers().primary_url, "outbox_parked WHERE parked_at IS NOT NULL") == "1"; }))
      << relay.log();
  EXPECT_EQ(scalar(servers().primary_url, "SELECT aggregate_id FROM outbox_parked"), "big");
  EXPECT_EQ(unpublished(), 1);
}
