// The lean apply (issue 19, part 2): every replicated event has a version, so the version guard
// alone makes a redelivery a no-op and replicate records no event ids by default;
// replicate.record_event_ids records them again, for tracing. (Events without a version are a
// consumer's: its inbox stays their duplicate guard, Consume.AHandlerRunsOnceAndADuplicateDeliveryIsACountedNoOp.)
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <set>

#include "core/pg_array.hpp"
#include "examples/parking/parking.hpp"
#include "replicate/apply.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"
#include "tests/support/delivered.hpp"

using namespace outbox::testing;
namespace amqp = outbox::amqp;
using outbox::parking::random_uuid;

namespace {

const std::vector<std::string> kReplicate = {"replicate", "--set", "replicate.max_backoff=1s"};

std::string count(const std::string& sql) { return scalar(servers().replica_url, "SELECT count(*) FROM " + sql); }

amqp::OutgoingMessage slot_event(const std::string& type, const std::string& uuid, long long version, const std::string& name) {
  std::string body = nlohmann::json{{"uuid", uuid}, {"name", name}, {"status", "available"}, {"version", version}}.dump();
  return event_message(type, "parking_slot", uuid, version, body, 1700000000000000LL + version);
}

void publish(const std::vector<amqp::OutgoingMessage>& messages) { publish_all(messages, "outbox.replica.main"); }

// One replica queue, one consumer: events apply in queue order, so once `uuid`'s row is there,
// everything published before it has been applied (or ignored).
bool applied_up_to(const std::string& uuid) {
  return eventually([&] { return count("parking_slots WHERE uuid = '" + uuid + "'") == "1"; });
}

struct Scenario {
  std::string slot = random_uuid(), deleted = random_uuid();
  amqp::OutgoingMessage create = slot_event("parking.create", slot, 1, "first");
  amqp::OutgoingMessage update = slot_event("parking.update", slot, 2, "second");
  amqp::OutgoingMessage create_deleted = slot_event("parking.create", deleted, 1, "gone");
  amqp::OutgoingMessage remove = event_message("parking.delete", "parking_slot", deleted, 2,
                                               "{\"uuid\": \"" + deleted + "\", \"version\": 2}", 1700000000000002LL);

  // Applies the events once, then redelivers each of them (same message ids), then a marker.
  void run(const std::vector<std::string>& replicate_args) {
    fresh_schema();
    Daemon replicate(replicate_args);
    publish({create, update, create_deleted, remove});
    std::string first_marker = random_uuid(), second_marker = random_uuid();
    publish({slot_event("parking.create", first_marker, 1, "marker")});
    ASSERT_TRUE(applied_up_to(first_marker)) << replicate.log();
    publish({create, update, create_deleted, remove, slot_event("parking.create", second_marker, 1, "marker")});
    ASSERT_TRUE(applied_up_to(second_marker)) << replicate.log();
  }

  void expect_applied_once() const {
    EXPECT_EQ(rows(servers().replica_url, "SELECT name, version::text FROM parking_slots WHERE uuid = '" + slot + "'"),
              (std::vector<std::vector<std::string>>{{"second", "2"}}));
    EXPECT_EQ(count("parking_slots WHERE uuid = '" + deleted + "'"), "0");
    EXPECT_EQ(scalar(servers().replica_url,
                     "SELECT version || ' ' || deleted FROM outbox_aggregate_versions WHERE aggregate_id = '" + deleted + "'"),
              "2 true");
    EXPECT_EQ(count("outbox_failed_events"), "0");
  }
};

}  // namespace

TEST(LeanApply, ARedeliveredVersionedEventIsANoOpAndNoEventIdIsRecorded) {
  Scenario scenario;
  scenario.run(kReplicate);
  scenario.expect_applied_once();
  EXPECT_EQ(count("outbox_applied_events"), "0");
  EXPECT_EQ(count("outbox_applied_position WHERE replica = 'main' AND last_created_at IS NOT NULL"), "1");
}

TEST(LeanApply, WithRecordEventIdsEveryAppliedEventIdIsRecordedOnceAndARedeliveryIsStillANoOp) {
  Scenario scenario;
  scenario.run(with_args(kReplicate, {"--set", "replicate.record_event_ids=true"}));
  scenario.expect_applied_once();
  // The four events and the two markers, each once; the redeliveries added none.
  EXPECT_EQ(count("outbox_applied_events"), "6");
  EXPECT_EQ(count("outbox_applied_events WHERE event_id = '" + scenario.update.message_id + "' AND effective"), "1");
}

// Where the mapped table has a version column (parking_slots), the row keeps its version and
// guards itself: an upsert adds nothing to outbox_aggregate_versions (before, every aggregate had
// a row there, a second upsert per event), and an older redelivery is still a no-op.
TEST(LeanApply, AnUpsertOfAVersionedTableKeepsTheVersionInTheRowAloneAndAnOlderRedeliveryIsStillANoOp) {
  Scenario scenario;
  scenario.run(kReplicate);
  scenario.expect_applied_once();
  EXPECT_EQ(count("outbox_aggregate_versions WHERE aggregate_id = '" + scenario.slot + "'"), "0");
  EXPECT_EQ(count("outbox_aggregate_versions"), "1");  // the delete's tombstone alone
}

// The tombstone of a delete stays in outbox_aggregate_versions: an older create or update
// redelivered after the delete, in a later batch or in the same one, does not bring the row back.
TEST(LeanApply, AnOlderUpsertRedeliveredAfterADeleteDoesNotBringTheRowBack) {
  fresh_schema();
  Daemon replicate(kReplicate);
  std::string slot = random_uuid(), other = random_uuid(), marker = random_uuid();
  amqp::OutgoingMessage create = slot_event("parking.create", slot, 1, "first");
  amqp::OutgoingMessage update = slot_event("parking.update", slot, 2, "second");
  amqp::OutgoingMessage remove = event_message("parking.delete", "parking_slot", slot, 3,
                                               "{\"uuid\": \"" + slot + "\", \"version\": 3}", 1700000000000003LL);
  publish({create, update, remove, slot_event("parking.create", other, 1, "other")});
  ASSERT_TRUE(applied_up_to(other)) << replicate.log();
  // A late update with a new event id (an older version), the old ones redelivered, a delete
  // redelivered between them, and a marker.
  publish({slot_event("parking.update", slot, 2, "late"), update, create, remove, create,
           slot_event("parking.create", marker, 1, "marker")});
  ASSERT_TRUE(applied_up_to(marker)) << replicate.log();
  EXPECT_EQ(count("parking_slots WHERE uuid = '" + slot + "'"), "0");
  EXPECT_EQ(scalar(servers().replica_url,
                   "SELECT version || ' ' || deleted FROM outbox_aggregate_versions WHERE aggregate_id = '" + slot + "'"),
            "3 true");
  // A newer create brings it back; its version is in the row.
  amqp::OutgoingMessage again = slot_event("parking.create", slot, 4, "again");
  publish({again, create, update});
  ASSERT_TRUE(applied_up_to(slot)) << replicate.log();
  publish({slot_event("parking.create", random_uuid(), 1, "marker"), remove, create});
  std::string last = random_uuid();
  publish({slot_event("parking.create", last, 1, "marker")});
  ASSERT_TRUE(applied_up_to(last)) << replicate.log();
  EXPECT_EQ(rows(servers().replica_url, "SELECT name, version::text FROM parking_slots WHERE uuid = '" + slot + "'"),
            (std::vector<std::vector<std::string>>{{"again", "4"}}));
  EXPECT_EQ(count("outbox_failed_events"), "0");
}

// A replica upgraded from the bookkeeping where every aggregate had its version in
// outbox_aggregate_versions: those versions keep guarding, also where the row holds an older one
// (the old apply stored the payload's version in the row, the event's in the table).
TEST(LeanApply, AReplicaUpgradedFromTheOldBookkeepingKeepsGuardingWithTheVersionsItHolds) {
  fresh_schema();
  std::string same = random_uuid(), behind = random_uuid(), marker = random_uuid();
  exec(servers().replica_url,
       "INSERT INTO parking_slots VALUES ('" + same + "', 'old', 'available', 5), ('" + behind +
           "', 'old', 'available', 1); INSERT INTO outbox_aggregate_versions (aggregate_type, aggregate_id, version) "
           "VALUES ('parking_slot', '" +
           same + "', 5), ('parking_slot', '" + behind + "', 5)");
  Daemon replicate(kReplicate);
  publish({slot_event("parking.update", same, 4, "stale"), slot_event("parking.update", behind, 3, "stale"),
           slot_event("parking.update", behind, 5, "stale"), slot_event("parking.create", marker, 1, "marker")});
  ASSERT_TRUE(applied_up_to(marker)) << replicate.log();
  EXPECT_EQ(count("parking_slots WHERE name = 'old'"), "2");
  std::string newer = random_uuid();
  publish({slot_event("parking.update", same, 6, "new"), slot_event("parking.update", behind, 6, "new"),
           slot_event("parking.create", newer, 1, "marker")});
  ASSERT_TRUE(applied_up_to(newer)) << replicate.log();
  EXPECT_EQ(rows(servers().replica_url, "SELECT name, version::text FROM parking_slots WHERE uuid IN ('" + same + "', '" +
                                            behind + "') ORDER BY version"),
            (std::vector<std::vector<std::string>>{{"new", "6"}, {"new", "6"}}));
}

// A mapped table without a version column keeps its aggregates' versions in
// outbox_aggregate_versions, as before: a redelivery and an older event are no-ops there too.
TEST(LeanApply, ATableWithoutAVersionColumnStillDeduplicatesByItsAggregatesVersion) {
  fresh_schema();
  exec(servers().replica_url,
       "DROP SCHEMA IF EXISTS shop CASCADE; CREATE SCHEMA shop; "
       "CREATE TABLE shop.notes (note_id text PRIMARY KEY, body text NOT NULL)");
  std::string config = write_file("notes.toml", R"([[replicate.mappings]]
event_type = "note.written"
table = "shop.notes"
operation = "upsert"
key_column = "note_id"

[[replicate.mappings]]
event_type = "parking.create"
table = "parking_slots"
operation = "upsert"
key_column = "uuid"
)");
  auto note = [](const std::string& id, long long version, const std::string& body) {
    return event_message("note.written", "note", id, version, nlohmann::json{{"note_id", id}, {"body", body}}.dump(),
                         1700000000000000LL + version);
  };
  Daemon replicate(kReplicate, {{"OUTBOX_CONFIG", config}});
  amqp::OutgoingMessage first = note("n1", 1, "first"), second = note("n1", 2, "second");
  std::string marker = random_uuid();
  publish({first, second, slot_event("parking.create", marker, 1, "marker")});
  ASSERT_TRUE(applied_up_to(marker)) << replicate.log();
  std::string last = random_uuid();
  publish({first, note("n1", 2, "again"), note("n1", 1, "older"), slot_event("parking.create", last, 1, "marker")});
  ASSERT_TRUE(applied_up_to(last)) << replicate.log();
  EXPECT_EQ(scalar(servers().replica_url, "SELECT body FROM shop.notes WHERE note_id = 'n1'"), "second");
  EXPECT_EQ(scalar(servers().replica_url,
                   "SELECT version || ' ' || deleted FROM outbox_aggregate_versions WHERE aggregate_type = 'note'"),
            "2 false");
  EXPECT_EQ(count("outbox_failed_events"), "0");
}

// Group commit (Replicator::linger_after): while events keep arriving during each batch, the next
// batch waits for more, but only about as long as the last one took, never replicate.batch_wait:
// here a minute (its longest), and a batch_size no stream fills: a longer wait would fail the test.
TEST(LeanApply, UnderAStreamTheNextBatchWaitsForMoreOnlyAsLongAsTheLastOneTookNotForBatchWait) {
  fresh_schema();
  Daemon replicate(with_args(kReplicate, {"--set", "replicate.batch_wait=1m", "--set", "replicate.batch_size=10000"}));
  std::string last;
  for (int wave = 0; wave < 20; ++wave) {
    std::vector<amqp::OutgoingMessage> events;
    for (int i = 0; i < 200; ++i) {
      last = random_uuid();
      events.push_back(slot_event("parking.create", last, 1, "streamed"));
    }
    publish(events);
  }
  ASSERT_TRUE(applied_up_to(last)) << replicate.log();
  EXPECT_EQ(count("parking_slots WHERE name = 'streamed'"), "4000");
}

namespace {

// Every node of `plan` that reads a table (it has a "Relation Name"), but not the ModifyTable nodes.
void table_reads(const nlohmann::json& plan, std::vector<const nlohmann::json*>& reads) {
  if (plan.contains("Relation Name") && plan.value("Node Type", "") != "ModifyTable") reads.push_back(&plan);
  if (plan.contains("Plans"))
    for (const auto& child : plan["Plans"]) table_reads(child, reads);
}

}  // namespace

// The apply statement is planned once per connection (replicate/apply_sql.hpp, kApplyPlanSettings),
// maybe while the replica's tables are empty. So that the plan stays right as they grow, it must
// read each table by an index condition keyed by the batch, never scan a whole table or index.
TEST(LeanApply, TheApplyRunsOnAGenericPlanThatReadsEveryTableByAnIndexConditionEvenWhenPlannedOnEmptyTables) {
  fresh_schema();
  pqxx::connection connection = connect(servers().replica_url);
  pqxx::nontransaction(connection).exec("VACUUM ANALYZE parking_slots, outbox_aggregate_versions, outbox_failed_events");
  outbox::replicate::Applier applier(connection, "main", "replica main", outbox::replicate::default_mappings(),
                                     std::make_shared<spdlog::logger>("lean_apply_test"));
  applier.prepare();
  Scenario scenario;
  for (const amqp::OutgoingMessage* sent : {&scenario.create, &scenario.update, &scenario.create_deleted, &scenario.remove}) {
    amqp::IncomingMessage message = delivered(*sent);
    outbox::replicate::Item item;
    item.message = &message;
    item.checked = outbox::replicate::check_message(message, applier.mappings());
    ASSERT_EQ(item.checked.error, "");
    applier.apply({&item});
  }
  scenario.expect_applied_once();
  // A payload with a Unicode escape goes to the statement that reads it as jsonb.
  amqp::OutgoingMessage escaped =
      event_message("parking.update", "parking_slot", scenario.slot, 3,
                    "{\"uuid\": \"" + scenario.slot + "\", \"name\": \"th\\u0069rd\", \"status\": \"available\", \"version\": 3}",
                    1700000000000003LL);
  amqp::IncomingMessage escaped_message = delivered(escaped);
  outbox::replicate::Item escaped_item{&escaped_message, outbox::replicate::check_message(escaped_message, applier.mappings())};
  applier.apply({&escaped_item});
  EXPECT_EQ(scalar(servers().replica_url, "SELECT name FROM parking_slots WHERE uuid = '" + scenario.slot + "'"), "third");

  // Two statements: the one that reads the payloads as jsonb, which took the last batch, and the
  // typed one, which took the four before (strings and integers) and has a text array per column more.
  pqxx::result prepared = pqxx::nontransaction(connection)
                              .exec(
                                  "SELECT name, generic_plans, custom_plans, cardinality(parameter_types) "
                                  "FROM pg_prepared_statements WHERE statement LIKE 'WITH clock AS%' ORDER BY name");
  ASSERT_EQ(prepared.size(), 2u);
  EXPECT_EQ(prepared[0][0].as<std::string>(), "replicate_apply");
  EXPECT_EQ(prepared[0][1].as<long long>(), 1) << "generic plans of the jsonb statement";
  EXPECT_EQ(prepared[1][0].as<std::string>(), "replicate_apply_typed");
  EXPECT_EQ(prepared[1][1].as<long long>(), 4) << "generic plans of the typed statement";
  for (const auto& statement : prepared) {
    std::string name = statement[0].as<std::string>();
    SCOPED_TRACE(name);
    EXPECT_EQ(statement[2].as<long long>(), 0) << "custom plans";
    pqxx::work tx(connection);
    tx.exec(std::string("SELECT ") + outbox::replicate::kApplyPlanSettings);
    std::string arguments = "'main', false, 60000, false, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '[]', '{}'";
    for (int extra = 14; extra < statement[3].as<int>(); ++extra) arguments += ", '{}'";
    nlohmann::json plan = nlohmann::json::parse(
        tx.exec1("EXPLAIN (FORMAT JSON) EXECUTE " + tx.quote_name(name) + "(" + arguments + ")")[0].as<std::string>());
    std::vector<const nlohmann::json*> reads;
    table_reads(plan[0]["Plan"], reads);
    std::set<std::string> tables;
    for (const nlohmann::json* read : reads) {
      std::string table = read->value("Relation Name", ""), type = read->value("Node Type", "");
      tables.insert(table);
      EXPECT_TRUE(type == "Index Scan" || type == "Index Only Scan") << table << " is read by a " << type << ": " << read->dump();
      EXPECT_TRUE(read->contains("Index Cond")) << table << " is read without an index condition: " << read->dump();
    }
    EXPECT_EQ(tables, (std::set<std::string>{"parking_slots", "outbox_aggregate_versions", "outbox_failed_events"}));
  }
}

// The batch's columns go to the server as binary arrays (core/pg_array.hpp): the server reads
// each one as the array it stands for, the NULLs and every byte of a text included.
TEST(LeanApply, TheServerReadsTheBinaryArraysOfABatchAsTheValuesTheyWereBuiltFrom) {
  using outbox::pg::BinaryArray;
  BinaryArray ids(BinaryArray::Element::uuid), texts(BinaryArray::Element::text), big(BinaryArray::Element::int8),
      small(BinaryArray::Element::int4), empty(BinaryArray::Element::int8);
  ids.add_uuid("0B0E6F8E-8a4e-4c1e-9d51-3a4b8e1f2c3d");
  ids.add_null();
  texts.add_text("a\"b\\c,{}");
  texts.add_text("");
  texts.add_text("Zürich\t");
  big.add_int8(-9223372036854775807LL - 1);
  big.add_null();
  big.add_int8(9223372036854775807LL);
  small.add_int4(-2);
  small.add_int4(2147483647);
  pqxx::connection connection = connect(servers().replica_url);
  pqxx::nontransaction tx(connection);
  pqxx::row read = tx.exec_params1(
      "SELECT $1::uuid[]::text, $2::text[] = ARRAY[E'a\"b\\\\c,{}', '', E'Z\\u00fcrich\\t'], $3::bigint[]::text, "
      "$4::int[]::text, "
      "cardinality($5::bigint[])",
      pqxx::binarystring(ids.bytes()), pqxx::binarystring(texts.bytes()), pqxx::binarystring(big.bytes()),
      pqxx::binarystring(small.bytes()), pqxx::binarystring(empty.bytes()));
  EXPECT_EQ(read[0].as<std::string>(), "{0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d,NULL}");
  EXPECT_TRUE(read[1].as<bool>());
  EXPECT_EQ(read[2].as<std::string>(), "{-9223372036854775808,NULL,9223372036854775807}");
  EXPECT_EQ(read[3].as<std::string>(), "{-2,2147483647}");
  EXPECT_EQ(read[4].as<int>(), 0);
  // An array of another element type than the statement's is refused, not misread.
  EXPECT_THROW(tx.exec_params1("SELECT $1::bigint[]", pqxx::binarystring(small.bytes())), pqxx::sql_error);
}

// The parking mappings' applier on its own connection to the replica, prepared.
struct ParkingApplier {
  pqxx::connection connection = connect(servers().replica_url);
  outbox::replicate::Applier applier{connection, "main", "replica main", outbox::replicate::default_mappings(),
                                     std::make_shared<spdlog::logger>("lean_apply_test")};
  ParkingApplier() { applier.prepare(); }
};

// One batch through the applier, as replicate hands it over (the daemon's batching aside).
outbox::replicate::Counts apply_batch(outbox::replicate::Applier& applier, const std::vector<amqp::OutgoingMessage>& sent) {
  std::vector<amqp::IncomingMessage> messages;
  for (const amqp::OutgoingMessage& message : sent) messages.push_back(delivered(message));
  std::vector<outbox::replicate::Item> items(messages.size());
  std::vector<outbox::replicate::Item*> batch;
  for (size_t i = 0; i < messages.size(); ++i) {
    items[i].message = &messages[i];
    items[i].checked = outbox::replicate::check_message(messages[i], applier.mappings());
    EXPECT_EQ(items[i].checked.error, "");
    batch.push_back(&items[i]);
  }
  return applier.apply(batch);
}

// The statement writes only the newest event of each row in a batch (replicate/apply_sql.hpp,
// newest_of_rows) and lets the write's own guard decide for it; each other event is checked by
// its own version, so the counts are those of events applied one at a time.
TEST(LeanApply, OneBatchWritesTheNewestEventOfEachRowAndCountsEveryEventByItsOwnVersion) {
  fresh_schema();
  ParkingApplier parking;
  outbox::replicate::Applier& applier = parking.applier;
  std::string fresh = random_uuid(), ahead = random_uuid(), stale = random_uuid();
  exec(servers().replica_url, "INSERT INTO parking_slots VALUES ('" + ahead + "', 'stored', 'available', 3), ('" + stale +
                                  "', 'stored', 'available', 9)");
  amqp::OutgoingMessage repeated = slot_event("parking.update", fresh, 2, "second");
  outbox::replicate::Counts counts = apply_batch(
      applier, {slot_event("parking.create", fresh, 1, "first"), repeated, slot_event("parking.update", ahead, 2, "older"),
                slot_event("parking.update", ahead, 5, "newer"), slot_event("parking.update", ahead, 4, "between"),
                slot_event("parking.update", stale, 8, "stale"), repeated});
  EXPECT_EQ(rows(servers().replica_url, "SELECT uuid::text, name, version::text FROM parking_slots ORDER BY version"),
            (std::vector<std::vector<std::string>>{{fresh, "second", "2"}, {ahead, "newer", "5"}, {stale, "stored", "9"}}));
  // fresh 1 and 2, ahead 5 and 4 (3 is stored); ahead 2 and stale 8 are older than their rows.
  EXPECT_EQ(counts.applied, 4);
  EXPECT_EQ(counts.stale, 2);
  EXPECT_EQ(counts.duplicate, 1);
  EXPECT_EQ(count("outbox_failed_events"), "0");
}

// A key the payloads spell in two ways (a uuid in capitals and in small letters) is two rows to
// the daemon and one to the table: the batch meets the row twice and fails, and its events are
// then applied one by one, so the newest still wins and nothing is parked.
TEST(LeanApply, AKeySpelledTwoWaysInOneBatchIsStillAppliedNewestLast) {
  fresh_schema();
  ParkingApplier parking;
  outbox::replicate::Applier& applier = parking.applier;
  std::string slot = random_uuid(), capitals = slot;
  for (char& c : capitals) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto spelled = [&](const std::string& key, long long version, const std::string& name) {
    return event_message("parking.update", "parking_slot", slot, version,
                         nlohmann::json{{"uuid", key}, {"name", name}, {"status", "available"}, {"version", version}}.dump(),
                         1700000000000000LL + version);
  };
  outbox::replicate::Counts counts = apply_batch(applier, {spelled(slot, 1, "small"), spelled(capitals, 2, "capitals")});
  EXPECT_EQ(rows(servers().replica_url, "SELECT name, version::text FROM parking_slots"),
            (std::vector<std::vector<std::string>>{{"capitals", "2"}}));
  EXPECT_EQ(counts.applied, 2);
  EXPECT_EQ(counts.parked, 0);
  EXPECT_EQ(count("outbox_failed_events"), "0");
}
