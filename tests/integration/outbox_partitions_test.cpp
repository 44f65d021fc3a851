// The partitioned outbox (migration 0004, relay/outbox_partitions.hpp) against real servers: the
// conversion of a populated outbox, retention by dropping partitions, writers during the drops, two
// relays maintaining at once.
#include "relay/outbox_partitions.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "migrate/runner.hpp"
#include "relay/mark_vacuum.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"

using namespace outbox::testing;

namespace {

// A relay with relay.retention=1s, a maintenance tick every second and partitions of `size`
// positions.
std::vector<std::string> fast_retention(int size = 100, const std::string& maintenance_interval = "1s") {
  return {"relay",
          "--set",
          "relay.heartbeat_interval=0",
          "--set",
          "relay.poll_interval=200ms",
          "--set",
          "relay.retention=1s",
          "--set",
          "relay.maintenance_interval=" + maintenance_interval,
          "--set",
          "relay.partition_size=" + std::to_string(size)};
}

std::string primary() { return servers().primary_url; }

std::string insert_events_sql(const std::string& event_type, int count, const std::string& aggregate_prefix = "agg-") {
  return "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
         "SELECT gen_random_uuid(), 'test', '" +
         aggregate_prefix + "' || (g % 7), g, '" + event_type + "', json_build_object('n', g) FROM generate_series(1, " +
         std::to_string(count) + ") g";
}

void insert_events(const std::string& event_type, int count, const std::string& aggregate_prefix = "agg-") {
  exec(primary(), insert_events_sql(event_type, count, aggregate_prefix));
}

std::set<std::string> partitions() {
  std::set<std::string> names;
  for (const auto& row : rows(primary(),
                              "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                              "WHERE i.inhparent = 'outbox'::regclass"))
    names.insert(row[0]);
  return names;
}

// Whether the partition `name` of public.outbox exists within a minute (the relay's maintenance
// ticks are relay.maintenance_interval apart, 10 s by default).
bool partition_made(const std::string& name) {
  return eventually([&] { return partitions().count(name) == 1; }, std::chrono::seconds(60));
}

// The partition's bound as PostgreSQL prints it: "FOR VALUES FROM ('1') TO ('101')".
std::string partition_bounds(const std::string& name) {
  return scalar(primary(), "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.relname = '" + name + "'");
}

// New rows start at 1,000,001, past the migration's first partition, in partitions of
// relay.partition_size that the relay makes there and the tests know by their positions.
void start_positions_past_the_first_partition() {
  exec(primary(), "SELECT setval(pg_get_serial_sequence('outbox', 'position'), 1000000)");
}

// The definition of the partition's unique index on event_id, as pg_indexes shows it ("" if none).
std::string event_id_index(const std::string& partition) {
  return scalar(primary(), "SELECT coalesce(string_agg(indexdef, '; '), '') FROM pg_indexes WHERE tablename = '" + partition +
                               "' AND indexdef LIKE 'CREATE UNIQUE INDEX %(event_id)%'");
}

constexpr const char* kWhileUnpublished = "USING btree (event_id) WHERE (published_at IS NULL)";

// Inserts a row of event id `id` into the outbox; whether it was taken (false: refused as a
// duplicate key).
bool insert_event_id(const std::string& id) {
  try {
    exec(primary(),
         "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) VALUES ('" + id +
             "', 'test', 'again', 1, 'again.evt', '{}')");
    return true;
  } catch (const pqxx::unique_violation&) {
    return false;
  }
}

}  // namespace

TEST(PartitionedOutbox, MigrateConvertsAPopulatedOutboxKeepingEveryRowInOrderAndTheRelayPublishesEachPendingRowOnce) {
  reset_databases();
  purge_outbox_queues();
  primary_at_version(3);
  insert_events("convert.evt", 300);
  exec(primary(), "UPDATE outbox SET published_at = now() WHERE position <= 100");
  // A parked row (aggregate "held"), and a later row of its aggregate that waits behind it.
  exec(primary(),
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) VALUES "
       "(gen_random_uuid(), 'test', 'held', 1, 'convert.evt', '{}'), (gen_random_uuid(), 'test', 'held', 2, 'convert.evt', '{}');"
       "INSERT INTO outbox_parked (outbox_table, position, event_id, aggregate_type, aggregate_id, error, parked_at) "
       "SELECT 'public.outbox', position, event_id::text, aggregate_type, aggregate_id, 'test', now() FROM outbox "
       "WHERE aggregate_id = 'held' AND aggregate_version = 1");
  const std::string every_row = "SELECT position, event_id, published_at IS NULL, payload::text FROM outbox ORDER BY position";
  auto before = rows(primary(), every_row);
  ASSERT_EQ(before.size(), 302u);

  ASSERT_TRUE(migrate_all());
  EXPECT_EQ(scalar(primary(), "SELECT relkind FROM pg_class WHERE oid = 'outbox'::regclass"), "p");
  EXPECT_EQ(rows(primary(), every_row), before) << "every row, in the same order, with the same position and state";
  EXPECT_EQ(scalar(primary(), "SELECT count(*) FROM outbox_parked"), "1");
  EXPECT_TRUE(partitions().count("outbox_default"));
  // The sequence goes on past the old rows: a new row comes after every old one, in a new partition.
  insert_events("convert.evt", 10, "new-");
  EXPECT_EQ(scalar(primary(), "SELECT min(position) > 302 FROM outbox WHERE aggregate_id LIKE 'new-%'"), "t");
  EXPECT_EQ(scalar(primary(), "SELECT count(DISTINCT tableoid) FROM outbox WHERE aggregate_id LIKE 'new-%'"), "1");

  TestQueue queue("test.convert", "convert.#");
  Daemon relay({"relay", "--set", "relay.heartbeat_interval=0", "--set", "relay.poll_interval=200ms"});
  // Pending: 200 old rows and 10 new ones; the parked row and the one behind it stay.
  const auto& messages = queue.collect(210);
  ASSERT_EQ(messages.size(), 210u) << relay.log();
  EXPECT_TRUE(eventually([] { return scalar(primary(), "SELECT count(*) FROM outbox WHERE published_at IS NULL") == "2"; }))
      << relay.log();
  relay.signal(SIGTERM);
  EXPECT_EQ(relay.wait_exit(std::chrono::seconds(20)), 0) << relay.log();
  // Exactly once: nothing more arrives once every pending row is marked.
  EXPECT_EQ(queue.collect_deliveries(211, std::chrono::seconds(2)).size(), 210u) << relay.log();
  std::set<std::string> published;
  for (const auto& row : rows(primary(), "SELECT event_id FROM outbox WHERE position > 100 AND aggregate_id <> 'held'"))
    published.insert(row[0]);
  std::set<std::string> received;
  for (const auto& message : messages) received.insert(message.message_id.value_or(""));
  EXPECT_EQ(received, published);
}

// Migration 0005: event_id is unique among the unpublished rows of a partition (a mark then adds
// no entry to that index, which was half of its cost). It converts the partitions that hold no row
// and leaves a partition with rows its full UNIQUE (event_id), rather than scan it under a lock.
TEST(PartitionedOutbox, MigrationMakesEventIdUniqueAmongTheUnpublishedRowsOfEachEmptyPartitionAndLeavesOneWithRowsAsItWas) {
  reset_databases();
  primary_at_version(4);
  insert_events("unique.evt", 10);  // into outbox_from_1, the migration's partition for new rows
  ASSERT_EQ(scalar(primary(), "SELECT count(*) FROM outbox_from_1"), "10");
  ASSERT_TRUE(migrate_all());
  EXPECT_NE(event_id_index("outbox_from_0").find(kWhileUnpublished), std::string::npos) << event_id_index("outbox_from_0");
  EXPECT_NE(event_id_index("outbox_default").find(kWhileUnpublished), std::string::npos) << event_id_index("outbox_default");
  EXPECT_EQ(event_id_index("outbox_from_1"),
            "CREATE UNIQUE INDEX outbox_from_1_event_id_key ON public.outbox_from_1 USING btree (event_id)");
  // The partition with rows still refuses an id of a published row.
  exec(primary(), "UPDATE outbox SET published_at = now()");
  EXPECT_FALSE(insert_event_id(scalar(primary(), "SELECT event_id FROM outbox ORDER BY position LIMIT 1")));
}

// In a partition the relay made: an event id is refused while a row with it waits to be published,
// and taken again once that row was published (what the partial index gives up; across partitions
// uniqueness rests on random UUIDs anyway).
TEST(PartitionedOutbox, AnEventIdIsRefusedWhileARowWithItWaitsToBePublishedAndTakenOnceThatRowWasPublished) {
  fresh_schema();
  start_positions_past_the_first_partition();
  {
    Daemon relay(
        {"relay", "--set", "relay.heartbeat_interval=0", "--set", "relay.retention=1h", "--set", "relay.partition_size=100"});
    ASSERT_TRUE(partition_made("outbox_from_1000101")) << relay.log();
  }
  EXPECT_NE(event_id_index("outbox_from_1000001").find(kWhileUnpublished), std::string::npos)
      << event_id_index("outbox_from_1000001");
  const std::string id = "7d1f3a52-8b0e-4c61-9f3e-2a5b6c7d8e9f";
  ASSERT_TRUE(insert_event_id(id));
  EXPECT_FALSE(insert_event_id(id)) << "the first row waits to be published";
  exec(primary(), "UPDATE outbox SET published_at = now() WHERE event_id = '" + id + "'");
  EXPECT_TRUE(insert_event_id(id)) << "the first row was published";
  EXPECT_EQ(scalar(primary(), "SELECT count(*) FROM outbox_from_1000001 WHERE event_id = '" + id + "'"), "2");
}

TEST(PartitionedOutbox, TheMigrationsMillionPositionPartitionIsCutToRelayPartitionSizeAtTheRelaysFirstTick) {
  fresh_schema();
  // The migration made [1, 1000001) for the new rows; 30 are written before the relay starts.
  ASSERT_EQ(partition_bounds("outbox_from_1"), "FOR VALUES FROM ('1') TO ('1000001')");
  insert_events("fit.evt", 30);
  TestQueue queue("test.fit", "fit.#");
  // relay.retention of an hour: no cut at the sequence for a low rate (half of it) in this test.
  Daemon relay({"relay", "--set", "relay.heartbeat_interval=0", "--set", "relay.poll_interval=200ms", "--set",
                "relay.retention=1h", "--set", "relay.partition_size=100"});
  ASSERT_TRUE(eventually([] { return partitions().count("outbox_from_201") == 1; }, std::chrono::seconds(60))) << relay.log();
  EXPECT_EQ(partition_bounds("outbox_from_1"), "FOR VALUES FROM ('1') TO ('101')") << relay.log();
  EXPECT_EQ(partition_bounds("outbox_from_101"), "FOR VALUES FROM ('101') TO ('201')") << relay.log();
  insert_events("fit.evt", 170);
  ASSERT_EQ(queue.collect(200).size(), 200u) << relay.log();
  // Each row is in the partition its position names; none went to the default partition.
  EXPECT_EQ(scalar(primary(), "SELECT count(*) FROM outbox_from_1"), "100");
  EXPECT_EQ(scalar(primary(), "SELECT count(*) FROM outbox_from_101"), "100");
  EXPECT_EQ(scalar(primary(), "SELECT count(*) FROM outbox_default"), "0");
  EXPECT_TRUE(eventually([] { return scalar(primary(), "SELECT count(*) FROM outbox WHERE published_at IS NULL") == "0"; }))
      << relay.log();
}

TEST(PartitionedOutbox, RetentionDropsOnlyFullyPublishedPartitionsPastRetentionNeverOneWithAnUnpublishedOrParkedRow) {
  fresh_schema();
  start_positions_past_the_first_partition();
  TestQueue queue("test.retain", "retain.#");
  // relay.retention=1s and partitions of 100 positions. Rows are written once their partitions
  // exist (two at least are kept ahead of the sequence), so that each lands where the test says:
  //   outbox_from_1000001  a row the broker can never take (an event type over AMQP's 255 bytes),
  //                        parked, and 99 published rows;
  //   outbox_from_1000101  a later row of its aggregate, waiting behind it unpublished, and 99 more;
  //   outbox_from_1000201  100 published rows, the one to be dropped; a few rows after it close it.
  Daemon relay(fast_retention());
  ASSERT_TRUE(partition_made("outbox_from_1000101")) << relay.log();
  // The row of aggregate "held" and the 99 others in one transaction: a tick between them, once
  // the first is half the retention old, would cut the partition right after it (at a low rate
  // the partition being written is cut at the sequence).
  auto insert_held_and_99 = [](int version, const std::string& event_type) {
    exec(primary(),
         "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
         "VALUES (gen_random_uuid(), 'test', 'held', " +
             std::to_string(version) + ", '" + event_type + "', '{}');" + insert_events_sql("retain.evt", 99));
  };
  insert_held_and_99(1, "retain." + std::string(300, 'x'));
  ASSERT_TRUE(partition_made("outbox_from_1000201")) << relay.log();
  insert_held_and_99(2, "retain.evt");
  ASSERT_TRUE(partition_made("outbox_from_1000301")) << relay.log();
  insert_events("retain.evt", 100);
  ASSERT_TRUE(partition_made("outbox_from_1000401")) << relay.log();
  insert_events("retain.evt", 5);
  ASSERT_EQ(queue.collect(303).size(), 303u) << relay.log();
  ASSERT_TRUE(eventually([] { return partitions().count("outbox_from_1000201") == 0; }, std::chrono::seconds(60))) << relay.log();
  // The tick that dropped it looked at the two before it first, and kept them.
  EXPECT_TRUE(partitions().count("outbox_from_1000001")) << relay.log();
  EXPECT_TRUE(partitions().count("outbox_from_1000101")) << relay.log();
  EXPECT_EQ(scalar(primary(), "SELECT count(*) FROM outbox WHERE position BETWEEN 1000001 AND 1000200"), "200");
  EXPECT_EQ(relay.log().find("failed, will retry"), std::string::npos) << relay.log();

  // lag and failed still read the partitioned outbox.
  RunResult failed = run_outbox({"failed", "list", "--relay"});
  ASSERT_EQ(failed.exit_code, 0) << failed;
  nlohmann::json parked = nlohmann::json::parse(failed.out.substr(0, failed.out.find('\n')));
  EXPECT_EQ(parked["aggregate_id"], "held") << failed;
  RunResult lag = run_outbox({"lag", "--json"});
  EXPECT_NE(lag.out.find("public.outbox"), std::string::npos) << lag;
  // Discarding the parked row (it is deleted) lets its aggregate go on; then both partitions go too.
  RunResult discard = run_outbox({"failed", "discard", std::to_string(parked["id"].get<long long>()), "--relay"});
  EXPECT_EQ(discard.exit_code, 0) << discard;
  EXPECT_TRUE(eventually([] { return partitions().count("outbox_from_1000101") == 0; }, std::chrono::seconds(60)))
      << relay.log() << run_outbox({"failed", "list", "--relay"});
  EXPECT_FALSE(partitions().count("outbox_from_1000001")) << relay.log();
}

// created_at is the writers' own. A row dated a year ahead (a writer's clock, a placeholder), the
// newest of its partition, kept the partition for good: a partition was dropped only once its
// newest row's created_at was older than relay.retention. Its age is now read from published_at.
TEST(PartitionedOutbox, APartitionWhoseNewestRowIsDatedAYearAheadIsDroppedOnceEveryRowWasPublishedPastRetention) {
  fresh_schema();
  start_positions_past_the_first_partition();
  TestQueue queue("test.ahead", "ahead.#");
  Daemon relay(fast_retention());
  ASSERT_TRUE(partition_made("outbox_from_1000101")) << relay.log();
  // Positions 1,000,001 to 1,000,100: 99 rows, then the one dated ahead.
  exec(primary(), insert_events_sql("ahead.evt", 99) +
                      ";INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, "
                      "created_at) VALUES (gen_random_uuid(), 'test', 'ahead', 1, 'ahead.evt', '{}', now() + interval '1 year')");
  insert_events("ahead.evt", 5);  // the next partition: the sequence is past the first
  ASSERT_EQ(queue.collect(105).size(), 105u) << relay.log();
  EXPECT_TRUE(eventually([] { return partitions().count("outbox_from_1000001") == 0; }, std::chrono::seconds(60))) << relay.log();
}

// At a low rate the partition being written is cut at the sequence once its first row is older
// than half of relay.retention. That age was the row's created_at, the writers' own: a first row
// dated a year ahead kept the partition open until it filled, and its rows outlived the retention
// meanwhile. It is now read from published_at, as the drop reads it.
TEST(PartitionedOutbox, AtALowRateThePartitionBeingWrittenIsCutEvenWhenItsFirstRowIsDatedAYearAhead) {
  fresh_schema();
  start_positions_past_the_first_partition();
  TestQueue queue("test.cut", "cut.#");
  Daemon relay(fast_retention());
  ASSERT_TRUE(partition_made("outbox_from_1000101")) << relay.log();
  // Positions 1,000,001 (dated ahead) to 1,000,003; the cut makes [1000004, 1000101).
  exec(primary(),
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, created_at) "
       "VALUES (gen_random_uuid(), 'test', 'ahead', 1, 'cut.evt', '{}', now() + interval '1 year');" +
           insert_events_sql("cut.evt", 2));
  ASSERT_EQ(queue.collect(3).size(), 3u) << relay.log();
  EXPECT_TRUE(partition_made("outbox_from_1000004")) << relay.log();
  EXPECT_EQ(scalar(primary(), "SELECT count(*) FROM outbox_default"), "0");
}

TEST(PartitionedOutbox, ASighupChangesHowOftenTheRelayLooksAfterItsPartitions) {
  fresh_schema();
  start_positions_past_the_first_partition();
  TestQueue queue("test.tick", "tick.#");
  auto settings = [](const std::string& interval) {
    return "[relay]\nmaintenance_interval = \"" + interval +
           "\"\nretention = \"1s\"\npartition_size = 100\nheartbeat_interval = \"0s\"\npoll_interval = \"200ms\"\n";
  };
  std::string config = write_file("maintenance.toml", settings("1h"));
  Daemon relay({"relay"}, {{"OUTBOX_CONFIG", config}});
  // The first tick comes a second after the start, whatever the interval: it makes two partitions
  // ahead of the sequence.
  ASSERT_TRUE(partition_made("outbox_from_1000101")) << relay.log();
  insert_events("tick.evt", 100);  // outbox_from_1000001, full
  insert_events("tick.evt", 5);    // the sequence is past it
  ASSERT_EQ(queue.collect(105).size(), 105u) << relay.log();
  ASSERT_TRUE(eventually([] { return scalar(primary(), "SELECT count(*) FROM outbox WHERE published_at IS NULL") == "0"; }))
      << relay.log();
  write_file("maintenance.toml", settings("1s"));
  relay.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return relay.log().find("maintenance_interval=1000ms") != std::string::npos; })) << relay.log();
  // Published and past its retention: the next tick drops it, and with an hourly tick that would
  // be an hour away.
  EXPECT_TRUE(eventually([] { return partitions().count("outbox_from_1000001") == 0; }, std::chrono::seconds(60))) << relay.log();
}

// The relay's first tick comes 1 s after its start. A relay started before `outbox migrate` (or
// while the primary is down) finds nothing to look after then; once connected, its next tick
// comes within a second, not a whole relay.maintenance_interval later.
TEST(PartitionedOutbox, ARelayStartedBeforeTheMigrationLooksAfterItsPartitionsOnceConnected) {
  reset_databases();
  Daemon relay({"relay", "--set", "log.level=debug", "--set", "relay.heartbeat_interval=0", "--set", "relay.max_backoff=1s",
                "--set", "relay.maintenance_interval=1h", "--set", "relay.retention=1h", "--set", "relay.partition_size=100"});
  ASSERT_TRUE(eventually([&] { return relay.log().find("maintenance: the primary is not connected") != std::string::npos; }))
      << relay.log();
  ASSERT_TRUE(migrate_all());
  // The migration's partition of a million positions is cut to 100, and the next one made.
  EXPECT_TRUE(partition_made("outbox_from_101")) << "an hourly tick would not have come yet\n" << relay.log();
  EXPECT_EQ(partition_bounds("outbox_from_1"), "FOR VALUES FROM ('1') TO ('101')") << relay.log();
}

// An INSERT routes its rows by the partitions it saw when it started. One that started before an
// ATTACH and sent a row of the new range to the default partition (the writers past the partitions
// ahead) failed once the ATTACH was done: "violates partition constraint" (bench/soak). So a
// partition is attached under a lock that waits for the inserts in flight: while a writer's
// transaction is open the tick gives up after its lock timeout, and attaches once it commits.
// Before, the ATTACH went ahead beside the open insert.
TEST(PartitionedOutbox, APartitionIsAttachedOnlyOnceTheInsertsInFlightHaveEnded) {
  fresh_schema();
  start_positions_past_the_first_partition();
  Daemon relay(with_args(fast_retention(), {"--set", "relay.retention=1h", "--set", "log.level=debug"}));
  ASSERT_TRUE(partition_made("outbox_from_1000101")) << relay.log();
  auto writer = connect(primary());
  pqxx::work insert(writer);
  insert.exec(insert_events_sql("inflight.evt", 1));  // position 1,000,001, not committed
  // The sequence past the partitions ahead: the next tick wants [1000201, 1000301).
  exec(primary(), "SELECT setval(pg_get_serial_sequence('outbox', 'position'), 1000150)");
  ASSERT_TRUE(eventually([&] {
    return relay.log().find("partition maintenance waited too long for a lock") != std::string::npos;
  })) << relay.log();
  EXPECT_EQ(partitions().count("outbox_from_1000201"), 0u) << relay.log();
  insert.commit();
  EXPECT_TRUE(partition_made("outbox_from_1000201")) << relay.log();
}

// Partitions of 100 positions and a tick a second: two partitions ahead last while the writers take
// fewer than 100 positions a second. Here they take 1,000 between two ticks (the sequence set
// forward, as a burst of writes would), and the relay keeps enough partitions ahead for two ticks
// at that rate (relay/partition_pace.hpp), so that the rows written next find their partition. With
// two partitions ahead, the partitions stopped 200 positions past the sequence, and the next rows
// went to the default partition.
TEST(PartitionedOutbox, TheRelayKeepsMorePartitionsAheadOnceTheWritersOutpaceTwoOfThemPerTick) {
  fresh_schema();
  start_positions_past_the_first_partition();
  Daemon relay(with_args(fast_retention(), {"--set", "relay.retention=1h"}));
  ASSERT_TRUE(partition_made("outbox_from_1000101")) << relay.log();
  exec(primary(), "SELECT setval(pg_get_serial_sequence('outbox', 'position'), 1001000)");
  // Over the next ticks (the rate seen, at least 1,000 positions in up to 5 s, holds for 30 ticks):
  // at least 500 positions ahead, five partitions from 1,001,100 (the first a partition past the
  // sequence, which had passed every partition).
  ASSERT_TRUE(partition_made("outbox_from_1001500")) << relay.log();
  EXPECT_TRUE(eventually([&] { return relay.log().find("the pace now asks for ") != std::string::npos; })) << relay.log();
  exec(primary(), "SELECT setval(pg_get_serial_sequence('outbox', 'position'), 1001099)");
  insert_events("burst.evt", 500);  // positions 1,001,100 to 1,001,599
  EXPECT_EQ(scalar(primary(), "SELECT count(*) FROM outbox_default"), "0") << relay.log();
  EXPECT_EQ(relay.log().find("the default partition holds rows (up to"), std::string::npos) << relay.log();
}

// A relay started while the writers take positions fast keeps enough partitions ahead from its
// first tick: its pace starts from the partition being written (its first row, 50,000 positions
// behind the sequence and written two seconds ago, a few seconds before the tick: thousands of
// positions/s). Without that it kept two ahead until its second tick, which at that rate is
// longer than they last; here, with no writes after the start, it kept two for good.
TEST(PartitionedOutbox, ARelayStartedWhileTheWritersAreFastKeepsEnoughPartitionsAheadFromItsFirstTick) {
  fresh_schema();
  exec(primary(),
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, created_at) "
       "VALUES (gen_random_uuid(), 'test', 'first', 1, 'seed.evt', '{}', now() - interval '2 seconds')");
  exec(primary(), "SELECT setval(pg_get_serial_sequence('outbox', 'position'), 50001)");
  Daemon relay(with_args(fast_retention(), {"--set", "relay.retention=1h"}));
  // The first tick cuts the migration's partition at 50,002 and keeps at least 900 positions ahead
  // (a rate of 350 positions/s or more: the first tick within two minutes of the insert).
  EXPECT_TRUE(partition_made("outbox_from_50802")) << relay.log();
}

// The partitions the relay makes are vacuumed by autovacuum but never analyzed: an analyze
// threshold no table reaches (relay/outbox_partitions.cpp, kNeverAnalyze). The migration's own
// partitions keep the server's defaults.
TEST(PartitionedOutbox, ThePartitionsTheRelayMakesAreNeverAnalyzedByAutovacuum) {
  fresh_schema();
  start_positions_past_the_first_partition();
  Daemon relay(fast_retention());
  ASSERT_TRUE(partition_made("outbox_from_1000101")) << relay.log();
  auto options = [](const std::string& partition) {
    return scalar(primary(),
                  "SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class WHERE relname = '" + partition + "'");
  };
  EXPECT_EQ(options("outbox_from_1000101"), "autovacuum_analyze_threshold=2147483647");
  EXPECT_EQ(options("outbox_default"), "");
}

// A maintenance tick reads partitions whole and changes the catalog: 100-300 ms when it drops
// partitions at the soak's rate, and longer behind a lock. It runs on a connection and a thread of
// its own (relay/retention_worker.hpp): here a tick held for a minute by a failpoint, and the relay
// publishes meanwhile. On the relay's session, the tick stopped its event loop: nothing was
// published, and no later tick came to be skipped, until the tick ended.
TEST(PartitionedOutbox, TheRelayPublishesWhileItsMaintenanceTickIsStillRunning) {
  fresh_schema();
  TestQueue queue("test.slowtick", "slowtick.#");
  Daemon relay(with_args(fast_retention(), {"--set", "log.level=debug"}), {{"OUTBOX_FAILPOINTS", "relay.retention=sleep:60000"}});
  // The first tick comes a second after the start and sleeps; the next ones find it running.
  ASSERT_TRUE(eventually([&] { return relay.log().find("maintenance: the last tick still runs") != std::string::npos; }))
      << relay.log();
  insert_events("slowtick.evt", 50);
  EXPECT_EQ(queue.collect(50).size(), 50u) << relay.log();
  EXPECT_TRUE(eventually([] { return scalar(primary(), "SELECT count(*) FROM outbox WHERE published_at IS NULL") == "0"; }))
      << relay.log();
  EXPECT_EQ(relay.log().find(" and dropped "), std::string::npos) << "the held tick ended early\n" << relay.log();
  relay.kill9();  // not a minute's wait for the held tick at the end
}

TEST(PartitionedOutbox, WritersKeepWritingWhileTwoRelaysCreateAndDropPartitionsAndEveryEventIsPublished) {
  fresh_schema();
  start_positions_past_the_first_partition();
  TestQueue queue("test.writers", "writers.#");
  // Partitions of 500 positions: at about 50 events/s the two kept ahead last longer than a tick.
  // Ticks 10 s apart (the default): at this low rate each tick cuts the partition being written,
  // under a lock the relays' reads wait for, and the test wants none of them to wait past its
  // lock_timeout; one cut a second would make that ten times likelier than it is in production.
  Daemon first(fast_retention(500, "10s"));
  Daemon second(fast_retention(500, "10s"));
  ASSERT_TRUE(eventually([] { return partitions().count("outbox_from_1000501") == 1; })) << first.log() << second.log();
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::string writer_error;
  std::thread writer([&] {
    try {
      pqxx::connection connection(primary());
      while (!stop) {
        pqxx::work tx(connection);
        tx.exec("SELECT outbox_emit('writers.evt', 'test', 'w-' || (random() * 5)::int, 1, '{}')");
        tx.commit();
        ++written;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    } catch (const std::exception& error) {
      writer_error = error.what();
    }
  });
  // The partitions are cut, made ahead and dropped meanwhile; the first the relays made goes.
  bool dropped =
      eventually([&] { return !writer_error.empty() || (partitions().count("outbox_from_1000001") == 0 && written > 600); },
                 std::chrono::seconds(90));
  stop = true;
  writer.join();
  EXPECT_TRUE(dropped) << first.log() << second.log();
  EXPECT_EQ(writer_error, "");
  EXPECT_EQ(queue.collect(static_cast<size_t>(written.load())).size(), static_cast<size_t>(written.load()))
      << first.log() << second.log();
  EXPECT_EQ(first.log().find("failed, will retry"), std::string::npos) << first.log();
  EXPECT_EQ(second.log().find("failed, will retry"), std::string::npos) << second.log();
  // What is left of the first range was cut off into a newer partition when the writer was slow
  // (the open partition's oldest row older than half the retention), and waits for its own
  // retention; the rows that went with the dropped partition were published first (the queue holds
  // every event), and none left behind is unpublished.
  EXPECT_TRUE(eventually([] {
    return scalar(primary(), "SELECT count(*) FROM outbox WHERE position <= 1000500 AND published_at IS NULL") == "0";
  })) << first.log()
      << second.log();
}

namespace {

// A backlog over three partitions of 100 positions and the DEFAULT partition, published by one
// relay: its marks (or deletes) name positions of every partition in one statement, whose plan
// is made once (relay/statements.hpp, mark_published) and skips, when it starts, the partitions
// outside the statement's least and greatest position. Every row is published exactly once.
void publish_a_backlog_over_several_partitions(const std::string& on_publish) {
  fresh_schema();
  start_positions_past_the_first_partition();
  for (int from : {1000001, 1000101, 1000201})
    exec(primary(), "CREATE TABLE outbox_test_" + std::to_string(from) + " PARTITION OF outbox FOR VALUES FROM (" +
                        std::to_string(from) + ") TO (" + std::to_string(from + 100) + ")");
  insert_events("spread.evt", 450);
  ASSERT_EQ(scalar(primary(), "SELECT count(DISTINCT tableoid) FROM outbox"), "4");
  TestQueue queue("test.spread", "spread.#");
  Daemon relay({"relay", "--set", "relay.heartbeat_interval=0", "--set", "relay.poll_interval=200ms", "--set",
                "relay.retention=1h", "--set", "relay.on_publish=" + on_publish});
  ASSERT_EQ(queue.collect(450).size(), 450u) << relay.log();
  const std::string left =
      on_publish == "delete" ? "SELECT count(*) FROM outbox" : "SELECT count(*) FROM outbox WHERE published_at IS NULL";
  EXPECT_TRUE(eventually([&] { return scalar(primary(), left) == "0"; })) << relay.log();
  relay.signal(SIGTERM);
  EXPECT_EQ(relay.wait_exit(std::chrono::seconds(20)), 0) << relay.log();
  // Nothing is published again: each row's mark (or delete) found it, in whichever partition.
  EXPECT_EQ(queue.collect_deliveries(451, std::chrono::seconds(2)).size(), 450u) << relay.log();
}

}  // namespace

TEST(PartitionedOutbox, MarksThatNamePositionsOfSeveralPartitionsMarkEveryRowOnce) {
  publish_a_backlog_over_several_partitions("mark");
}

TEST(PartitionedOutbox, DeletesThatNamePositionsOfSeveralPartitionsDeleteEveryRowOnce) {
  publish_a_backlog_over_several_partitions("delete");
}

// Each table's maintenance on its own: a table whose maintenance fails at every tick (here the
// name of the partition the relay must create is taken by another table) is named in the log, and
// the next table's retention still runs. Before, the first failure ended the tick for every table.
TEST(PartitionedOutbox, ATableWhoseMaintenanceFailsIsNamedAndTheOtherTablesRetentionStillRuns) {
  fresh_schema();
  // public.outbox: the fit to relay.partition_size=100 would create outbox_from_101, taken here.
  exec(primary(), "CREATE TABLE outbox_from_101 (x int)");
  // public.outbox_b, unpartitioned: a row published two hours ago, past relay.retention.
  exec(primary(),
       "CREATE TABLE outbox_b (LIKE outbox INCLUDING ALL);"
       "INSERT INTO outbox_b (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, created_at, "
       "published_at) VALUES (gen_random_uuid(), 'test', 'old', 1, 'old.evt', '{}', now() - interval '3 hours', "
       "now() - interval '2 hours')");
  std::string config = write_file("two-tables.toml",
                                  "[[relay.tables]]\nname = \"public.outbox\"\n"
                                  "[[relay.tables]]\nname = \"public.outbox_b\"\n");
  Daemon relay(
      {"relay", "--set", "relay.heartbeat_interval=0", "--set", "relay.retention=1h", "--set", "relay.partition_size=100"},
      {{"OUTBOX_CONFIG", config}});
  EXPECT_TRUE(eventually([] { return scalar(primary(), "SELECT count(*) FROM outbox_b") == "0"; })) << relay.log();
  EXPECT_TRUE(eventually([&] { return relay.log().find("retention of public.outbox failed, will retry") != std::string::npos; }))
      << relay.log();
  EXPECT_EQ(relay.log().find("retention of public.outbox_b failed"), std::string::npos) << relay.log();
}

// The maintenance lock is the table's, however a relay names it: a relay configured with
// "outbox" skips the maintenance while another session holds the lock of public.outbox, and does
// it once the lock is free. Keyed by the name as written, the two took different locks and both
// changed the partitions at once.
TEST(PartitionedOutbox, RelaysThatNameTheTableDifferentlyShareOneMaintenanceLock) {
  fresh_schema();
  auto holder = connect(primary());
  pqxx::nontransaction(holder).exec_params("SELECT pg_advisory_lock($1, hashint8('public.outbox'::regclass::oid::bigint))",
                                           outbox::relay::kOutboxPartitionLockClass);
  std::string config = write_file("unqualified-table.toml", "[[relay.tables]]\nname = \"outbox\"\n");
  Daemon relay({"relay", "--set", "log.level=debug", "--set", "relay.heartbeat_interval=0", "--set", "relay.retention=1h",
                "--set", "relay.partition_size=100", "--set", "relay.maintenance_interval=1s"},
               {{"OUTBOX_CONFIG", config}});
  EXPECT_TRUE(eventually([&] { return relay.log().find("outbox: partition maintenance skipped") != std::string::npos; }))
      << relay.log();
  EXPECT_EQ(partition_bounds("outbox_from_1"), "FOR VALUES FROM ('1') TO ('1000001')") << relay.log();
  pqxx::nontransaction(holder).exec("SELECT pg_advisory_unlock_all()");
  EXPECT_TRUE(eventually([] { return partition_bounds("outbox_from_1") == "FOR VALUES FROM ('1') TO ('101')"; },
                         std::chrono::seconds(60)))
      << relay.log();
}

// A row published long after the rows around it (a parked row released by `outbox failed retry`)
// is kept for relay.retention as they are: its partition stays while the next one, published as
// long ago everywhere, is dropped. Judged by the newest row by position, both were dropped.
TEST(PartitionedOutbox, APartitionWithARowPublishedLatelyIsKeptWhileAnOlderOneIsDropped) {
  fresh_schema();
  start_positions_past_the_first_partition();
  TestQueue queue("test.late", "late.#");
  Daemon relay({"relay", "--set", "relay.heartbeat_interval=0", "--set", "relay.poll_interval=200ms", "--set",
                "relay.retention=1h", "--set", "relay.partition_size=100", "--set", "relay.maintenance_interval=1s"});
  // Rows in outbox_from_1000001 and outbox_from_1000101, and a few past them to close both.
  ASSERT_TRUE(partition_made("outbox_from_1000101")) << relay.log();
  insert_events("late.evt", 100);
  ASSERT_TRUE(partition_made("outbox_from_1000201")) << relay.log();
  insert_events("late.evt", 100);
  ASSERT_TRUE(partition_made("outbox_from_1000301")) << relay.log();
  insert_events("late.evt", 3);
  ASSERT_EQ(queue.collect(203).size(), 203u) << relay.log();
  ASSERT_TRUE(eventually([] { return scalar(primary(), "SELECT count(*) FROM outbox WHERE published_at IS NULL") == "0"; }))
      << relay.log();
  // Written three hours ago and published two hours ago, but for one row of the first partition
  // published just now.
  exec(primary(),
       "UPDATE outbox SET created_at = now() - interval '3 hours', published_at = now() - interval '2 hours' "
       "WHERE position < 1000201; UPDATE outbox SET published_at = now() WHERE position = 1000050");
  EXPECT_TRUE(eventually([] { return partitions().count("outbox_from_1000101") == 0; }, std::chrono::seconds(60))) << relay.log();
  EXPECT_EQ(partitions().count("outbox_from_1000001"), 1u) << relay.log();
  EXPECT_EQ(scalar(primary(), "SELECT count(*) FROM outbox WHERE position < 1000101"), "100");
}

// While the default partition holds rows, no partition is cut: the cut's ATTACH would scan the
// default partition under the outbox's ACCESS EXCLUSIVE lock, and the writers would wait for it.
// Once retention has emptied it, the cut is made.
TEST(PartitionedOutbox, NoPartitionIsCutWhileTheDefaultPartitionHoldsRowsAndTheCutFollowsOnceItIsEmpty) {
  fresh_schema();
  insert_events("spill.evt", 30);
  // A row no partition covers (as written while the relay was behind), published long ago.
  exec(primary(),
       "INSERT INTO outbox (position, event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, "
       "created_at, published_at) OVERRIDING SYSTEM VALUE VALUES (5000000, gen_random_uuid(), 'test', 'spilled', 1, "
       "'spill.evt', '{}', now() - interval '3 hours', now() - interval '2 hours')");
  ASSERT_EQ(scalar(primary(), "SELECT count(*) FROM outbox_default"), "1");
  const int metrics_port = free_port();
  const std::string in_use = "outbox_relay_default_partition_in_use{table=\"public.outbox\"} ";
  auto gauge_reads = [&](const std::string& value) {
    return http_get(metrics_port, "/metrics").body.find(in_use + value + "\n") != std::string::npos;
  };
  Daemon relay({"relay", "--set", "log.level=debug", "--set", "relay.heartbeat_interval=0", "--set", "relay.retention=1h",
                "--set", "relay.partition_size=100", "--set", "metrics.listen=127.0.0.1:" + std::to_string(metrics_port)});
  EXPECT_TRUE(eventually([&] {
    return relay.log().find("public.outbox: no partition is cut while the default partition holds rows") != std::string::npos;
  })) << relay.log();
  EXPECT_EQ(partition_bounds("outbox_from_1"), "FOR VALUES FROM ('1') TO ('1000001')") << relay.log();
  EXPECT_TRUE(eventually([&] {
    return relay.log().find("public.outbox: the default partition holds rows (up to position 5000000)") != std::string::npos;
  })) << relay.log();
  EXPECT_TRUE(eventually([&] { return gauge_reads("1"); })) << http_get(metrics_port, "/metrics").body;
  // Retention (an hour) removes the spilled row; the next tick fits the first partition to 100.
  EXPECT_TRUE(eventually([] { return partition_bounds("outbox_from_1") == "FOR VALUES FROM ('1') TO ('101')"; },
                         std::chrono::seconds(60)))
      << relay.log();
  EXPECT_EQ(scalar(primary(), "SELECT count(*) FROM outbox_default"), "0");
  EXPECT_TRUE(eventually([&] {
    return relay.log().find("public.outbox: the default partition is empty again") != std::string::npos;
  })) << relay.log();
  EXPECT_TRUE(eventually([&] { return gauge_reads("0"); })) << http_get(metrics_port, "/metrics").body;
  // Said once, not at every tick while the rows stayed.
  const std::string log = relay.log();
  const std::string warning = "the default partition holds rows (up to";
  EXPECT_EQ(log.find(warning, log.find(warning) + 1), std::string::npos) << log;
}

// A table whose name is long in bytes (multibyte characters) still gets one partition per range:
// its partitions are named by its oid. Cut at 40 characters, the name passed PostgreSQL's 63
// bytes and lost its bound, so every partition after the first had the first one's name.
TEST(PartitionedOutbox, ATableWithALongMultibyteNameGetsAPartitionPerRange) {
  fresh_schema();
  std::string name = "ereignisse_";
  for (int i = 0; i < 35; ++i) name += "ü";
  const std::string quoted = "public.\"" + name + "\"";
  exec(primary(), "CREATE TABLE " + quoted +
                      " (LIKE outbox INCLUDING ALL) PARTITION BY RANGE (position);"
                      "CREATE TABLE long_name_first PARTITION OF " +
                      quoted + " FOR VALUES FROM (1) TO (101);CREATE TABLE long_name_default PARTITION OF " + quoted +
                      " DEFAULT");
  std::string config = write_file("long-name.toml", "[[relay.tables]]\nname = \"public." + name + "\"\n");
  Daemon relay({"relay", "--set", "relay.heartbeat_interval=0", "--set", "relay.retention=1h", "--set",
                "relay.partition_size=100", "--set", "relay.maintenance_interval=1s"},
               {{"OUTBOX_CONFIG", config}});
  const std::string partitions_of_table = "SELECT count(*) FROM pg_inherits WHERE inhparent = '" + quoted + "'::regclass";
  // The first, the default and one ahead; with 150 rows written, two more ahead at least (more at
  // the pace of those writes, relay/partition_pace.hpp).
  ASSERT_TRUE(eventually([&] { return scalar(primary(), partitions_of_table) == "3"; }, std::chrono::seconds(60))) << relay.log();
  exec(primary(), "INSERT INTO " + quoted +
                      " (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
                      "SELECT gen_random_uuid(), 'test', 'long', g, 'long.evt', '{}' FROM generate_series(1, 150) g");
  EXPECT_TRUE(eventually([&] { return std::stoi(scalar(primary(), partitions_of_table)) >= 5; }, std::chrono::seconds(60)))
      << scalar(primary(), partitions_of_table) << "\n"
      << relay.log();
  EXPECT_EQ(scalar(primary(), "SELECT count(*) FROM long_name_default"), "0");
  EXPECT_EQ(relay.log().find("failed, will retry"), std::string::npos) << relay.log();
}

namespace {

// The leaf partitions' statistics: "SELECT ... " + kLeafStatistics.
const std::string kLeafStatistics =
    "FROM pg_stat_user_tables WHERE relid IN (SELECT relid FROM pg_partition_tree('outbox') WHERE isleaf)";
const std::vector<std::string> kVacuumingRelay = {"relay",
                                                  "--set",
                                                  "relay.heartbeat_interval=0",
                                                  "--set",
                                                  "relay.poll_interval=200ms",
                                                  "--set",
                                                  "relay.vacuum_interval=1s",
                                                  "--set",
                                                  "log.level=debug"};

// Autovacuum off for every partition, so that only the relay can vacuum them; then 12,000 events,
// whose marks leave as many dead row versions.
void write_events_that_only_the_relay_vacuums() {
  for (const std::string& partition : partitions())
    exec(primary(), "ALTER TABLE " + partition + " SET (autovacuum_enabled = false)");
  insert_events("vacuum.evt", 12000);
}

bool every_row_marked() {
  return eventually([] { return scalar(primary(), "SELECT count(*) FROM outbox WHERE published_at IS NULL") == "0"; },
                    std::chrono::seconds(60));
}

}  // namespace

// Each mark leaves a dead row version (no mark is a HOT update), and autovacuum comes at most once
// per autovacuum_naptime: the relay vacuums the partitions that hold them (relay/mark_vacuum.hpp).
TEST(PartitionedOutbox, TheRelayVacuumsTheDeadRowVersionsItsMarksLeaveInThePartitionBeingWritten) {
  fresh_schema();
  write_events_that_only_the_relay_vacuums();
  TestQueue queue("test.vacuum", "vacuum.#");
  Daemon relay(kVacuumingRelay);
  ASSERT_TRUE(every_row_marked()) << relay.log();
  EXPECT_TRUE(eventually(
      [&] { return scalar(primary(), "SELECT sum(vacuum_count) > 0 AND sum(n_dead_tup) < 10000 " + kLeafStatistics) == "t"; },
      std::chrono::seconds(60)))
      << scalar(primary(), "SELECT sum(vacuum_count) || ' vacuums, ' || sum(n_dead_tup) || ' dead tuples' " + kLeafStatistics)
      << "\n"
      << relay.log();
  EXPECT_NE(relay.log().find("vacuumed 1 outbox partition(s)"), std::string::npos) << relay.log();
  EXPECT_EQ(scalar(primary(), "SELECT sum(autovacuum_count) " + kLeafStatistics), "0");
}

// A relay whose role owns neither the partitions nor the database cannot VACUUM them: it says so
// once per partition and leaves them to autovacuum, and it still relays. outbox_guest (made by
// scripts/servers) owns nothing; it is granted only what relaying needs.
TEST(PartitionedOutbox, ARelayWhoseRoleOwnsNeitherThePartitionNorTheDatabaseWarnsOnceAndLeavesItsDeadRowVersionsToAutovacuum) {
  fresh_schema();
  ASSERT_EQ(scalar(primary(), "SELECT count(*) FROM pg_roles WHERE rolname = 'outbox_guest'"), "1")
      << "the role outbox_guest is missing: restart the test servers with this tree's scripts/servers";
  exec(primary(), "GRANT USAGE ON SCHEMA public TO outbox_guest");
  exec(primary(), "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO outbox_guest");
  exec(primary(), "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO outbox_guest");
  write_events_that_only_the_relay_vacuums();
  const std::string owner_prefix = "postgresql://outbox:";
  std::string guest_url = primary();
  ASSERT_EQ(guest_url.rfind(owner_prefix, 0), 0u) << guest_url;
  guest_url.replace(0, owner_prefix.size(), "postgresql://outbox_guest:");
  TestQueue queue("test.vacuum", "vacuum.#");
  Daemon relay(kVacuumingRelay, {{"OUTBOX_PRIMARY_URL", guest_url}});
  ASSERT_TRUE(every_row_marked()) << relay.log();
  const std::string warning = "but the relay's role owns neither it nor the database and cannot VACUUM it";
  ASSERT_TRUE(eventually([&] { return relay.log().find(warning) != std::string::npos; }, std::chrono::seconds(60)))
      << relay.log();
  // Two rounds more find the partition again, and only the first said so at warning level.
  auto count = [&](const std::string& line) { return occurrences(relay.log(), line); };
  ASSERT_TRUE(eventually([&] { return count("vacuum left to autovacuum: not owned") >= 2; }, std::chrono::seconds(60)))
      << relay.log();
  EXPECT_EQ(count(warning), 1u) << relay.log();
  EXPECT_EQ(scalar(primary(), "SELECT sum(vacuum_count) " + kLeafStatistics), "0") << relay.log();
  EXPECT_EQ(relay.log().find("vacuumed "), std::string::npos) << relay.log();
}

// One relay vacuums a table: the one holding its vacuum lock. Here a session holds it, as a
// second relay's vacuum connection would: the relay skips its rounds until the lock is free.
TEST(PartitionedOutbox, ARelayLeavesTheVacuumToTheSessionHoldingTheTablesVacuumLockAndTakesItOverOnceFree) {
  fresh_schema();
  write_events_that_only_the_relay_vacuums();
  auto holder = connect(primary());
  pqxx::nontransaction(holder).exec_params("SELECT pg_advisory_lock($1, hashint8('public.outbox'::regclass::oid::bigint))",
                                           outbox::relay::kMarkVacuumLockClass);
  TestQueue queue("test.vacuum", "vacuum.#");
  Daemon relay(kVacuumingRelay);
  ASSERT_TRUE(every_row_marked()) << relay.log();
  // The marks' dead tuples are counted, and two rounds more were skipped since.
  ASSERT_TRUE(eventually([&] { return scalar(primary(), "SELECT sum(n_dead_tup) >= 10000 " + kLeafStatistics) == "t"; }))
      << relay.log();
  auto skips = [&] { return occurrences(relay.log(), "vacuum skipped"); };
  size_t before = skips();
  ASSERT_TRUE(eventually([&] { return skips() >= before + 2; })) << relay.log();
  EXPECT_EQ(scalar(primary(), "SELECT sum(vacuum_count) " + kLeafStatistics), "0") << relay.log();

  pqxx::nontransaction(holder).exec("SELECT pg_advisory_unlock_all()");
  EXPECT_TRUE(eventually([&] { return scalar(primary(), "SELECT sum(vacuum_count) > 0 " + kLeafStatistics) == "t"; },
                         std::chrono::seconds(60)))
      << relay.log();
}
