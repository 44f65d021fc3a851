// The apply statement and its batch parameter, pinned (replicate/apply_sql.hpp): a change of the
// SQL text shows here as a diff to review, not only as a behaviour in the integration tests.
#include "replicate/apply_sql.hpp"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "tests/support/binary_array.hpp"

using namespace outbox;
using namespace outbox::replicate;
using outbox::testing::binary_array_text;

namespace {

// Two tables: parking slots (upserted and deleted by uuid, with a quote in a column name, and a
// version column: the guard reads and writes the row's version) and order lines, whose only column
// is the key (an upsert then does nothing on conflict; its versions go to outbox_aggregate_versions).
std::vector<Mapping> mappings() {
  return {{"parking.create", "public.parking_slots", Operation::upsert, "uuid", ""},
          {"parking.delete", "public.parking_slots", Operation::remove, "uuid", ""},
          {"order.line_added", "order_lines", Operation::upsert, "line's id", ""}};
}

std::vector<ReplicaTable> tables(std::vector<int>& table_of_mapping) {
  std::vector<ReplicaTable> tables = tables_of(mappings(), table_of_mapping);
  tables[0].columns = {"uuid", "name", "free", "version"};
  tables[0].versioned = true;
  tables[0].key_type = "uuid";
  tables[1].columns = {"line's id"};
  tables[1].key_type = "text";
  return tables;
}

Item item(amqp::IncomingMessage& message, Event event) {
  Item item;
  item.message = &message;
  item.checked.event = std::move(event);
  return item;
}

// The statement for mappings(): read it as the SQL it is.
const char* kMainStatement = R"SQL(WITH clock AS (SELECT clock_timestamp() + $3::bigint * interval '1 millisecond' AS latest
), input AS (
  SELECT x.i - 1 AS i, x.id, x.at, x.ag, x.v, x.m, x.t, x.pos, x.p, x.w,
         timestamptz 'epoch' + x.ts * interval '1 microsecond' AS ts,
         coalesce(timestamptz 'epoch' + x.ts * interval '1 microsecond' > (SELECT latest FROM clock), false) AS future
  FROM ROWS FROM (unnest($5::uuid[], $6::text[], $7::text[], $8::bigint[], $9::int[], $10::int[], $11::bigint[],
                        $12::bigint[]), jsonb_array_elements($13::jsonb), unnest($14::int[]))
       WITH ORDINALITY AS x(id, at, ag, v, m, t, pos, ts, p, w, i)
), blocked AS (
  SELECT b.i, b.w FROM (SELECT e.i, e.w, EXISTS (SELECT 1 FROM outbox_failed_events f WHERE f.replica = $1
                     AND f.aggregate_type = e.at AND f.aggregate_id = e.ag) AS behind
    FROM input e WHERE e.m >= 0 AND NOT $2::boolean AND EXISTS (SELECT 1 FROM outbox_failed_events WHERE replica = $1)
    OFFSET 0) b WHERE b.behind
), checked AS (
  SELECT c.*, c.newer AND CASE c.t WHEN 0 THEN NOT EXISTS (SELECT 1 FROM "public"."parking_slots" r
           WHERE r."uuid" = coalesce(c.p->>'uuid', c.ag)::uuid AND r."version" >= c.v AND NOT (r."version" NOT BETWEEN 1 AND 9007199254740991)) ELSE true END AS ok
  FROM (SELECT e.*, NOT EXISTS (SELECT 1 FROM outbox_aggregate_versions s WHERE s.aggregate_type = e.at
                          AND s.aggregate_id = e.ag AND s.version >= e.v AND NOT (s.version NOT BETWEEN 1 AND 9007199254740991)) AS newer
        FROM input e WHERE e.m >= 0 AND e.w >= 0 AND ($4::boolean OR NOT (e.w = 1 AND e.m = ANY('{0}'::int[])))
          AND e.i NOT IN (SELECT i FROM blocked) OFFSET 0) c
), winners AS NOT MATERIALIZED (SELECT * FROM checked WHERE w = 1 AND ok AND NOT m = ANY('{0}'::int[])
), newest AS (SELECT DISTINCT ON (at, ag) * FROM winners WHERE m = ANY('{1}'::int[]) OR t = ANY('{1}'::int[]) ORDER BY at, ag, v DESC, i DESC
), w_versions AS (
  INSERT INTO outbox_aggregate_versions AS s (aggregate_type, aggregate_id, version, deleted, updated_at)
  SELECT at, ag, v, m = ANY('{1}'::int[]), clock_timestamp() FROM newest
  ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = EXCLUDED.version,
    deleted = EXCLUDED.deleted, updated_at = EXCLUDED.updated_at WHERE s.version < EXCLUDED.version OR s.version NOT BETWEEN 1 AND 9007199254740991
  RETURNING 1
), w_upsert_0 AS (
  INSERT INTO "public"."parking_slots" AS t ("uuid", "name", "free", "version")
  SELECT r."uuid", r."name", r."free", w.v FROM (SELECT e.*, NOT EXISTS (SELECT 1 FROM outbox_aggregate_versions s WHERE s.aggregate_type = e.at
                          AND s.aggregate_id = e.ag AND s.version >= e.v AND NOT (s.version NOT BETWEEN 1 AND 9007199254740991)) AS newer
        FROM input e WHERE e.w = 1 AND e.m = ANY('{0}'::int[]) AND e.i NOT IN (SELECT i FROM blocked) OFFSET 0) w
  CROSS JOIN LATERAL jsonb_populate_record(NULL::"public"."parking_slots", w.p) r
  WHERE w.newer
  ON CONFLICT ("uuid") DO UPDATE SET "name" = EXCLUDED."name", "free" = EXCLUDED."free", "version" = EXCLUDED."version" WHERE t."version" < EXCLUDED."version" OR t."version" NOT BETWEEN 1 AND 9007199254740991
  RETURNING 1
), w_doomed_0 AS (SELECT w.v, (jsonb_populate_record(NULL::"public"."parking_slots", jsonb_build_object('uuid', w.ag) || w.p))."uuid" AS k FROM winners w WHERE w.m = ANY('{1}'::int[])
), w_delete_0 AS (
  DELETE FROM "public"."parking_slots" t USING w_doomed_0 w
  WHERE t."uuid" = ANY(ARRAY(SELECT k FROM w_doomed_0)) AND t."uuid" = w.k AND (t."version" < w.v OR t."version" NOT BETWEEN 1 AND 9007199254740991)
  RETURNING 1
), w_upsert_1 AS (
  INSERT INTO "order_lines" AS t ("line's id")
  SELECT r."line's id" FROM winners w
  CROSS JOIN LATERAL jsonb_populate_record(NULL::"order_lines", w.p) r
  WHERE w.m = ANY('{2}'::int[])
  ON CONFLICT ("line's id") DO NOTHING
  RETURNING 1
), w_applied AS (
  INSERT INTO outbox_applied_events (event_id, aggregate_type, aggregate_id, aggregate_version,
    outbox_position, created_at, effective)
  SELECT id, at, ag, v, pos, ts, ok FROM checked WHERE $4::boolean
  ON CONFLICT (event_id) DO NOTHING
  RETURNING event_id
), w_position AS (
  INSERT INTO outbox_applied_position AS o (replica, last_event_id, last_position, last_created_at, applied_at)
  SELECT $1, id, pos, ts, clock_timestamp() FROM input WHERE NOT future ORDER BY i DESC LIMIT 1
  ON CONFLICT (replica) DO UPDATE SET last_event_id = EXCLUDED.last_event_id,
    last_position = EXCLUDED.last_position, last_created_at = EXCLUDED.last_created_at,
    applied_at = EXCLUDED.applied_at
  WHERE o.last_created_at IS NULL OR (EXCLUDED.last_created_at IS NULL AND NOT $2::boolean)
    OR o.last_created_at <= EXCLUDED.last_created_at OR o.last_created_at > (SELECT latest FROM clock)
  RETURNING 1
), w_heartbeat AS (
  INSERT INTO outbox_heartbeat AS h (replica, relay, created_at, applied_at)
  SELECT $1, p->>'relay', ts, clock_timestamp() FROM input WHERE m = -1 AND NOT future ORDER BY ts DESC LIMIT 1
  ON CONFLICT (replica) DO UPDATE SET
    relay = CASE WHEN h.created_at < EXCLUDED.created_at OR h.created_at > (SELECT latest FROM clock)
                 THEN EXCLUDED.relay ELSE h.relay END,
    created_at = CASE WHEN h.created_at < EXCLUDED.created_at OR h.created_at > (SELECT latest FROM clock)
                      THEN EXCLUDED.created_at ELSE h.created_at END,
    applied_at = EXCLUDED.applied_at
  RETURNING 1
)
SELECT n.effective, greatest(0, n.recorded - n.effective), n.events - n.blocked - n.recorded, n.heartbeats,
       n.blocked_list, n.future, n.ahead
FROM (SELECT (SELECT count(*) FROM checked WHERE ok AND NOT (w = 1 AND m = ANY('{0}'::int[]))) + (SELECT count(*) FROM w_upsert_0) AS effective,
             CASE WHEN $4::boolean THEN (SELECT count(*) FROM w_applied)
                  ELSE c.fresh - (SELECT count(*) FROM blocked WHERE w >= 0) END AS recorded,
             (SELECT count(*) FROM blocked) AS blocked,
             (SELECT coalesce(array_agg(i ORDER BY i), '{}')::text FROM blocked) AS blocked_list, c.*
      FROM (SELECT count(*) FILTER (WHERE m >= 0) AS events, count(*) FILTER (WHERE m >= 0 AND w >= 0) AS fresh,
                   count(*) FILTER (WHERE m = -1) AS heartbeats, count(*) FILTER (WHERE future AND m <> -2) AS future,
                   coalesce(extract(epoch FROM max(ts) FILTER (WHERE future AND m <> -2) - clock_timestamp()), 0)::float8
                     AS ahead
            FROM input) c) n)SQL";

}  // namespace

TEST(ApplySql, TheMappingsAreGroupedByTableAndKeyColumn) {
  std::vector<int> table_of_mapping;
  std::vector<ReplicaTable> grouped = tables_of(mappings(), table_of_mapping);
  ASSERT_EQ(grouped.size(), 2u);
  EXPECT_EQ(grouped[0].quoted, "\"public\".\"parking_slots\"");
  EXPECT_EQ(grouped[0].upserts, (std::vector<int>{0}));
  EXPECT_EQ(grouped[0].deletes, (std::vector<int>{1}));
  EXPECT_EQ(grouped[1].quoted, "\"order_lines\"");
  EXPECT_EQ(grouped[1].key, "line's id");
  EXPECT_EQ(table_of_mapping, (std::vector<int>{0, 0, 1}));
}

TEST(ApplySql, TheBatchColumnsListEachEventWithItsMappingTableAndPayloadAndThePositionEntryLast) {
  std::vector<int> table_of_mapping;
  tables(table_of_mapping);
  amqp::IncomingMessage create, heartbeat;
  create.body = R"({"uuid":"5a1","name":"A \"1\" \\"})";
  heartbeat.body = R"({"relay":"host:1"})";
  Item created = item(create, Event{"0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d", "parking.create", "parking_slot", "5a1", 7, 41,
                                    1700000000000000, 0, false});
  Item beat = item(heartbeat, Event{"1c1e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d", "outbox.heartbeat", "outbox.heartbeat",
                                    "heart \"beat\", {x}\\", 9, std::nullopt, std::nullopt, -1, true});
  std::vector<Item*> items{&created, &beat};
  BatchColumns batch = batch_columns(items, &created, table_of_mapping);
  EXPECT_EQ(binary_array_text(batch.ids),
            "{0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d,1c1e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d,0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d}");
  EXPECT_EQ(binary_array_text(batch.aggregate_types), R"({"parking_slot","outbox.heartbeat","parking_slot"})");
  // Quotes, commas, braces and backslashes stay inside their element.
  EXPECT_EQ(binary_array_text(batch.aggregate_ids), R"({"5a1","heart \"beat\", {x}\\","5a1"})");
  EXPECT_EQ(binary_array_text(batch.versions), "{7,9,7}");
  EXPECT_EQ(binary_array_text(batch.mappings), "{0,-1,-2}");
  EXPECT_EQ(binary_array_text(batch.tables), "{0,-1,-1}");
  EXPECT_EQ(binary_array_text(batch.positions), "{41,NULL,41}");
  EXPECT_EQ(binary_array_text(batch.created_at), "{1700000000000000,NULL,1700000000000000}");
  // The bodies as they came, as one JSON array.
  EXPECT_EQ(batch.payloads, R"([{"uuid":"5a1","name":"A \"1\" \\"},{"relay":"host:1"},{}])");
  EXPECT_EQ(binary_array_text(batch.newest), "{1,0,0}");
}

TEST(ApplySql, AnEmptyBatchWithOnlyAPositionEntryIsAnArrayOfOne) {
  std::vector<int> table_of_mapping;
  tables(table_of_mapping);
  amqp::IncomingMessage message;
  Item last = item(message, Event{"0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d", "parking.create", "parking_slot", "5a1", 7,
                                  std::nullopt, std::nullopt, 0, false});
  BatchColumns batch = batch_columns({}, &last, table_of_mapping);
  EXPECT_EQ(binary_array_text(batch.ids), "{0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d}");
  EXPECT_EQ(binary_array_text(batch.aggregate_ids), R"({"5a1"})");
  EXPECT_EQ(binary_array_text(batch.mappings), "{-2}");
  EXPECT_EQ(binary_array_text(batch.tables), "{-1}");
  EXPECT_EQ(binary_array_text(batch.positions), "{NULL}");
  EXPECT_EQ(binary_array_text(batch.created_at), "{NULL}");
  EXPECT_EQ(batch.payloads, "[{}]");
  EXPECT_EQ(binary_array_text(batch.newest), "{0}");
}

// An event of the batch as newest_of_rows sees it: mapping 0 (parking slots) or 2 (order lines).
Item row_event(amqp::IncomingMessage& message, const std::string& id, const std::string& aggregate, long long version,
               int mapping, std::optional<std::string> row_key) {
  Event event{id, "e", "slot", aggregate, version, std::nullopt, std::nullopt, mapping, false};
  event.row_key = std::move(row_key);
  return item(message, std::move(event));
}

TEST(ApplySql, OnlyTheNewestEventOfEachRowIsMarkedAndARepeatedEventIdIsADuplicate) {
  std::vector<int> table_of_mapping;
  tables(table_of_mapping);
  amqp::IncomingMessage message;
  std::vector<Item> batch = {
      row_event(message, "id-1", "a", 1, 0, std::nullopt),  // a's slot, superseded by id-3
      row_event(message, "id-2", "b", 1, 0, "sb"),          // b's slot, alone
      row_event(message, "id-3", "a", 2, 0, "sa"),          // a's slot: the key as written is the aggregate id
      row_event(message, "id-1", "a", 1, 0, std::nullopt),  // the event id again
      row_event(message, "id-4", "a", 2, 2, "sline 1"),     // a's order lines: another table, two keys
      row_event(message, "id-5", "a", 2, 2, "sline 2"),
      row_event(message, "id-6", "c", 5, 0, "s7"),  // equal versions of one row: the later one
      row_event(message, "id-7", "c", 5, 0, "s7"),
      row_event(message, "id-8", "d", 9, 0, "s8"),  // an older version later in the batch
      row_event(message, "id-9", "d", 3, 0, "s8"),
  };
  std::vector<Item*> items;
  for (Item& event : batch) items.push_back(&event);
  EXPECT_EQ(newest_of_rows(items, table_of_mapping), (std::vector<int>{0, 1, 1, -1, 1, 1, 0, 1, 1, 0}));
}

// Two spellings the statement would read as one key ("7" and 7) are two rows here: both are
// written, and a batch that meets one row twice fails and is applied event by event. Never the
// other way round, which would leave an event unwritten.
TEST(ApplySql, KeysOfDifferentJsonKindsAndObjectKeysAreNeverTakenForOneRow) {
  std::vector<int> table_of_mapping;
  tables(table_of_mapping);
  amqp::IncomingMessage message;
  std::vector<Item> batch = {
      row_event(message, "id-1", "a", 1, 0, "s7"),    row_event(message, "id-2", "a", 2, 0, "n7"),
      row_event(message, "id-3", "a", 3, 0, "x"),     row_event(message, "id-4", "a", 4, 0, "x"),
      row_event(message, "id-5", "a", 5, 0, "btrue"),
  };
  std::vector<Item*> items;
  for (Item& event : batch) items.push_back(&event);
  EXPECT_EQ(newest_of_rows(items, table_of_mapping), (std::vector<int>{1, 1, 1, 1, 1}));
}

// newest_of_rows keeps its tables in open addressing (replicate/apply_sql.cpp): a large batch with
// many collisions, repeated ids and rows met many times gives what a map of rows gives.
TEST(ApplySql, ALargeBatchGetsTheSameNewestOfEachRowAsAMapOfRowsWouldGive) {
  std::vector<int> table_of_mapping;
  tables(table_of_mapping);
  amqp::IncomingMessage message;
  std::vector<Item> batch;
  unsigned state = 12345;
  auto next = [&state](unsigned below) {
    state = state * 1103515245u + 12345u;
    return (state >> 8) % below;
  };
  for (int i = 0; i < 3000; ++i) {
    // Every seventh event repeats an earlier event id; rows: 400 aggregates, two tables, some keys.
    int id = i % 7 == 6 ? static_cast<int>(next(static_cast<unsigned>(i))) : i;
    std::string aggregate = "agg-" + std::to_string(next(400));
    int mapping = next(3) == 0 ? 2 : 0;
    std::optional<std::string> key;
    if (next(4) != 0) key = "s" + (mapping == 2 ? "line " + std::to_string(next(3)) : aggregate);
    batch.push_back(row_event(message, "id-" + std::to_string(id), aggregate, 1 + next(20), mapping, key));
  }
  std::vector<Item*> items;
  for (Item& event : batch) items.push_back(&event);

  std::vector<int> expected(items.size(), 0);
  std::set<std::string> ids;
  std::map<std::tuple<std::string, int, std::string>, size_t> newest;
  for (size_t i = 0; i < items.size(); ++i) {
    const Event& event = *items[i]->checked.event;
    if (!ids.insert(event.event_id).second) {
      expected[i] = -1;
      continue;
    }
    std::tuple<std::string, int, std::string> row{event.aggregate_id, table_of_mapping[static_cast<size_t>(event.mapping)],
                                                  event.row_key.value_or("s" + event.aggregate_id)};
    auto [found, added] = newest.try_emplace(row, i);
    if (added) {
      expected[i] = 1;
    } else if (event.version >= items[found->second]->checked.event->version) {
      expected[found->second] = 0;
      expected[i] = 1;
      found->second = i;
    }
  }
  EXPECT_EQ(newest_of_rows(items, table_of_mapping), expected);
}

TEST(ApplySql, TheStatementOfTheMainTransactionIsPinned) {
  std::vector<int> table_of_mapping;
  std::string sql = apply_statement(mappings(), tables(table_of_mapping), false);
  EXPECT_EQ(sql, kMainStatement);
}

TEST(ApplySql, AHelpersPartLeavesTheAppliedPositionToTheMainTransaction) {
  std::vector<int> table_of_mapping;
  std::string part = apply_statement(mappings(), tables(table_of_mapping), true);
  std::string main = apply_statement(mappings(), tables(table_of_mapping), false);
  size_t from = main.find("), w_position AS (");
  size_t to = main.find("), w_heartbeat AS (");
  ASSERT_NE(from, std::string::npos);
  ASSERT_NE(to, std::string::npos);
  EXPECT_EQ(part, main.substr(0, from) + main.substr(to));
}

namespace {

// tables() with each column's type, so that the typed statement is possible.
std::vector<ReplicaTable> typed_tables(std::vector<int>& table_of_mapping) {
  std::vector<ReplicaTable> typed = tables(table_of_mapping);
  typed[0].column_types = {"uuid", "text", "boolean", "bigint"};
  typed[0].typed = true;
  typed[1].column_types = {"text"};
  typed[1].typed = true;
  return typed;
}

}  // namespace

TEST(ApplySql, TheTypedStatementTakesEachUpsertedColumnAsTextAndCastsItToTheColumnsType) {
  std::vector<int> table_of_mapping;
  std::vector<ReplicaTable> typed = typed_tables(table_of_mapping);
  ASSERT_TRUE(typed_apply_possible(typed));
  std::string sql = apply_statement(mappings(), typed, false, true);
  for (const char* piece :
       {"x.p, x.w, x.c0_0, x.c0_1, x.c0_2, x.c0_3, x.c1_0,",
        "unnest($14::int[]), unnest($15::text[], $16::text[], $17::text[], $18::text[], $19::text[]))",
        "AS x(id, at, ag, v, m, t, pos, ts, p, w, c0_0, c0_1, c0_2, c0_3, c1_0, i)",
        "WHERE r.\"uuid\" = coalesce(c.c0_0, c.p->>'uuid', c.ag)::uuid",
        "SELECT CAST(w.c0_0 AS uuid), CAST(w.c0_1 AS text), CAST(w.c0_2 AS boolean), w.v FROM (SELECT e.*",
        "SELECT CAST(w.c1_0 AS text) FROM winners w\n  WHERE w.m = ANY('{2}'::int[])",
        // A delete reads its key from its payload, which the typed statement still gets.
        "(jsonb_populate_record(NULL::\"public\".\"parking_slots\", jsonb_build_object('uuid', w.ag) || w.p))"}) {
    SCOPED_TRACE(piece);
    EXPECT_NE(sql.find(piece), std::string::npos) << sql;
  }
  EXPECT_EQ(sql.find("CROSS JOIN LATERAL jsonb_populate_record"), std::string::npos) << sql;
  // Without a table's column types, there is only the statement that reads the payloads as jsonb.
  typed[1].typed = false;
  EXPECT_FALSE(typed_apply_possible(typed));
  EXPECT_EQ(apply_statement(mappings(), typed, false, true), kMainStatement);
}

TEST(ApplySql, TheTypedBatchSendsEachUpsertsColumnsAndLeavesItsPayloadOutOrIsRefusedForABodyJsonbMustRead) {
  std::vector<int> table_of_mapping;
  std::vector<ReplicaTable> typed = typed_tables(table_of_mapping);
  amqp::IncomingMessage create, heartbeat, remove;
  create.body = R"({"uuid":"5a1","name":"A \"1\"","free":true,"version":7,"extra":[1.5]})";
  heartbeat.body = R"({"relay":"host:1"})";
  remove.body = R"({"uuid":"5a2"})";
  Item created = item(create, Event{"0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d", "parking.create", "parking_slot", "5a1", 7, 41,
                                    1700000000000000, 0, false});
  Item beat = item(heartbeat, Event{"1c1e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d", "outbox.heartbeat", "outbox.heartbeat", "h", 9,
                                    std::nullopt, std::nullopt, -1, true});
  Item removed = item(remove, Event{"2c1e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d", "parking.delete", "parking_slot", "5a2", 3, 42,
                                    1700000000000001, 1, false});
  std::vector<Item*> items{&created, &beat, &removed};
  std::optional<BatchColumns> batch = typed_batch_columns(items, &removed, table_of_mapping, typed);
  ASSERT_TRUE(batch);
  EXPECT_EQ(batch->payloads, R"([null,{"relay":"host:1"},{"uuid":"5a2"},{}])");
  ASSERT_EQ(batch->typed.size(), 5u);
  EXPECT_EQ(binary_array_text(batch->typed[0]), R"({"5a1",NULL,NULL,NULL})");
  EXPECT_EQ(binary_array_text(batch->typed[1]), R"({"A \"1\"",NULL,NULL,NULL})");
  EXPECT_EQ(binary_array_text(batch->typed[2]), R"({"true",NULL,NULL,NULL})");
  EXPECT_EQ(binary_array_text(batch->typed[3]), R"({"7",NULL,NULL,NULL})");
  EXPECT_EQ(binary_array_text(batch->typed[4]), "{NULL,NULL,NULL,NULL}");
  // Everything else is what batch_columns sends.
  BatchColumns plain = batch_columns(items, &removed, table_of_mapping);
  EXPECT_EQ(batch->ids, plain.ids);
  EXPECT_EQ(batch->newest, plain.newest);
  // One upsert whose body jsonb must read (a fraction in a column) sends the batch to that statement.
  create.body = R"({"uuid":"5a1","name":"A","free":true,"version":7.0})";
  EXPECT_FALSE(typed_batch_columns(items, &removed, table_of_mapping, typed));
}
