#include "replicate/apply_sql.hpp"

#include <algorithm>

#include "core/aggregate_version.hpp"
#include "core/log.hpp"
#include "core/pg.hpp"

namespace outbox::replicate {
namespace {

std::string int_array(const std::vector<int>& values) {
  std::string out = "'{";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + std::to_string(values[i]);
  return out + "}'::int[]";
}

// The mappings whose winners (the newest event of their row in the batch, batch_columns' $14)
// are written without being checked first: upserts of a versioned table, where the write's own
// guard (the row's version, under its lock) decides, and the number written is the number
// effective. Every other event is checked: the superseded (for the counts), deletes, and writes
// of tables without a version column.
std::vector<int> guarded_writes(const std::vector<ReplicaTable>& tables) {
  std::vector<int> mappings;
  for (const ReplicaTable& table : tables)
    if (table.versioned) mappings.insert(mappings.end(), table.upserts.begin(), table.upserts.end());
  std::sort(mappings.begin(), mappings.end());
  return mappings;
}

// Whether an event's aggregate version stored in outbox_aggregate_versions (a tombstone, or a
// write of a table without a version column) is older, as for every event: one index probe.
std::string aggregate_is_older(const std::string& event, const std::string& beatable) {
  return "NOT EXISTS (SELECT 1 FROM outbox_aggregate_versions s WHERE s.aggregate_type = " + event +
         ".at\n                          AND s.aggregate_id = " + event + ".ag AND s.version >= " + event + ".v AND NOT (" +
         beatable + "))";
}

// $1: the replica name; $2: ignore the aggregates' failed events; $5 .. $14: the batch, one binary
// array per column (batch_columns), read together; the payloads ($13) as one JSON array, which is
// read once. A jsonb[] cost more: as a text literal it was read twice (the array, then each
// element), and even in binary, one jsonb per element, the statement alone took 1.2-1.8 us more
// per event (bench/README, step 6).
// $14 (w) is the daemon's: 1 for the newest event of its row in the batch (by aggregate, table
// and key, as the payload spells the key), 0 for one superseded, -1 for an event id that came
// before in the batch (a duplicate). Sorting the batch here for that cost the replica more than
// anything but the writes.
// Event ids seen before are not looked up first: an applied event id implies a stored version at
// least as new as the event's, so the version guard already makes it a no-op. With $4
// (replicate.record_event_ids) the conflict on outbox_applied_events tells duplicates (no row
// inserted) from stale events (inserted, not effective); without it both count as stale.
// The stored versions (the aggregate's and, on a versioned table, the row's) are checked by
// correlated NOT EXISTS, one index probe each per checked event: as a join, the planner
// (estimating the batch at 10 rows) may hash the whole table. The winners of guarded_writes are
// not checked (unless $4 records whether they were effective): their write's own guard decides.
// The failed events of the batch's aggregates are probed only when the replica has any (one probe
// per batch, a one-time filter of the plan): they are rare, and otherwise each event is probed,
// by an EXISTS in the select list (OFFSET 0 keeps it there), so that it stays one index probe per
// event in the generic plan too, where a semi join could scan every failed event for each event.
//
// A typed statement (typed_apply_possible) gets each upserted table's columns as text arrays after
// $14 ($15 on, table by table, column by column; batch_columns fills them, from column_texts), and
// the payloads of those upserts as null: reading them as jsonb cost the replica about 2.5 us per
// event of its 13-14 (bench/README, "A lead for the replica's CPU"). In the statement each is the
// input's column c<table>_<column>, cast from text to the column's type as jsonb_populate_record
// casts a JSON scalar.
std::string typed_column(size_t table, size_t column) { return "c" + std::to_string(table) + "_" + std::to_string(column); }

struct TypedInput {
  std::string selected, read, names;  // for the input CTE: its columns, ROWS FROM's function, x's column names
};

TypedInput typed_input(const std::vector<ReplicaTable>& tables, bool typed) {
  TypedInput input;
  if (!typed) return input;
  int parameter = 15;
  std::string arrays;
  for (size_t t = 0; t < tables.size(); ++t) {
    if (!tables[t].typed_upserts()) continue;
    for (size_t c = 0; c < tables[t].columns.size(); ++c) {
      std::string name = typed_column(t, c);
      input.selected += ", x." + name;
      input.names += ", " + name;
      arrays += (arrays.empty() ? "" : ", ") + std::string("$") + std::to_string(parameter++) + "::text[]";
    }
  }
  if (!arrays.empty()) input.read = ", unnest(" + arrays + ")";
  return input;
}

// $3: replicate.max_clock_skew in milliseconds. A created_at later than the replica's clock plus
// it is "from the future" (a forged message, a primary clock running ahead): the event applies,
// but its time moves neither the applied position nor the heartbeat, and a time from the future
// stored before this check existed is replaced.
std::string checked_events(const std::string& beatable, const std::string& row_is_older, const std::string& guarded,
                           const TypedInput& typed) {
  return "WITH clock AS (SELECT clock_timestamp() + $3::bigint * interval '1 millisecond' AS latest\n"
         "), input AS (\n"
         "  SELECT x.i - 1 AS i, x.id, x.at, x.ag, x.v, x.m, x.t, x.pos, x.p, x.w" +
         typed.selected +
         ",\n"
         "         timestamptz 'epoch' + x.ts * interval '1 microsecond' AS ts,\n"
         "         coalesce(timestamptz 'epoch' + x.ts * interval '1 microsecond' > (SELECT latest FROM clock), false) AS "
         "future\n"
         "  FROM ROWS FROM (unnest($5::uuid[], $6::text[], $7::text[], $8::bigint[], $9::int[], $10::int[], $11::bigint[],\n"
         "                        $12::bigint[]), jsonb_array_elements($13::jsonb), unnest($14::int[])" +
         typed.read +
         ")\n"
         "       WITH ORDINALITY AS x(id, at, ag, v, m, t, pos, ts, p, w" +
         typed.names +
         ", i)\n"
         "), blocked AS (\n"
         "  SELECT b.i, b.w FROM (SELECT e.i, e.w, EXISTS (SELECT 1 FROM outbox_failed_events f WHERE f.replica = $1\n"
         "                     AND f.aggregate_type = e.at AND f.aggregate_id = e.ag) AS behind\n"
         "    FROM input e WHERE e.m >= 0 AND NOT $2::boolean AND EXISTS (SELECT 1 FROM outbox_failed_events WHERE replica = "
         "$1)\n"
         "    OFFSET 0) b WHERE b.behind\n"
         "), checked AS (\n"
         "  SELECT c.*, c.newer AND " +
         row_is_older + " AS ok\n  FROM (SELECT e.*, " + aggregate_is_older("e", beatable) +
         " AS newer\n"
         "        FROM input e WHERE e.m >= 0 AND e.w >= 0 AND ($4::boolean OR NOT (e.w = 1 AND e.m = ANY(" +
         guarded +
         ")))\n"
         "          AND e.i NOT IN (SELECT i FROM blocked) OFFSET 0) c\n"
         "), winners AS NOT MATERIALIZED (SELECT * FROM checked WHERE w = 1 AND ok AND NOT m = ANY(" +
         guarded + ")\n";
}

// The key of the row an event writes, per table: the key column from the payload, else the
// aggregate id. In a typed statement an upsert's key is its typed column, and its payload null.
std::string key_text(const ReplicaTable& table, size_t t, const std::string& event, bool typed) {
  std::string typed_key;
  if (typed && table.typed_upserts()) {
    size_t key = static_cast<size_t>(std::find(table.columns.begin(), table.columns.end(), table.key) - table.columns.begin());
    typed_key = event + "." + typed_column(t, key) + ", ";
  }
  return "coalesce(" + typed_key + event + ".p->>" + pg::quote_literal(table.key) + ", " + event + ".ag)";
}

constexpr const char* kVersion = "\"version\"";

// A version outside the valid range (left by a replicate from before the range was enforced) is
// beaten by any valid event: nothing valid could ever be newer, so it would freeze its row forever.
std::string outside_range(const std::string& version) {
  return version + " NOT BETWEEN " + std::to_string(kMinAggregateVersion) + " AND " + std::to_string(kMaxAggregateVersion);
}

// Whether the row a checked event writes is older than the event on a versioned table (true: no
// such row, another table, or a version outside the range). The key is cast to its column's type
// (without a length, which would cut it), so that the probe uses the key's index.
std::string row_is_older(const std::vector<ReplicaTable>& tables, bool typed) {
  std::string older;
  for (size_t t = 0; t < tables.size(); ++t)
    if (tables[t].versioned)
      older += " WHEN " + std::to_string(t) + " THEN NOT EXISTS (SELECT 1 FROM " + tables[t].quoted + " r\n           WHERE r." +
               pg::quote_identifier(tables[t].key) + " = " + key_text(tables[t], t, "c", typed) + "::" + tables[t].key_type +
               " AND r." + kVersion + " >= c.v AND NOT (" + outside_range(std::string("r.") + kVersion) + "))";
  return older.empty() ? "true" : "CASE c.t" + older + " ELSE true END";
}

// The newest checked winner per aggregate of those that need it sets its version (a delete keeps a
// tombstone version). Winners of an aggregate's several rows (an order and its lines) compete here.
std::string newest_versions(const std::vector<Mapping>& mappings, const std::vector<ReplicaTable>& tables,
                            const std::string& beatable) {
  std::vector<int> deletes, unversioned;
  for (size_t m = 0; m < mappings.size(); ++m)
    if (mappings[m].operation == Operation::remove) deletes.push_back(static_cast<int>(m));
  for (size_t t = 0; t < tables.size(); ++t)
    if (!tables[t].versioned) unversioned.push_back(static_cast<int>(t));
  // Only deletes and writes of tables without a version column need a version here.
  std::string needed = unversioned.size() == tables.size()
                           ? ""
                           : "WHERE m = ANY(" + int_array(deletes) + ") OR t = ANY(" + int_array(unversioned) + ") ";
  return "), newest AS (SELECT DISTINCT ON (at, ag) * FROM winners " + needed +
         "ORDER BY at, ag, v DESC, i DESC\n"
         "), w_versions AS (\n"
         "  INSERT INTO outbox_aggregate_versions AS s (aggregate_type, aggregate_id, version, deleted, updated_at)\n"
         "  SELECT at, ag, v, m = ANY(" +
         int_array(deletes) +
         "), clock_timestamp() FROM newest\n"
         "  ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = EXCLUDED.version,\n"
         "    deleted = EXCLUDED.deleted, updated_at = EXCLUDED.updated_at WHERE s.version < EXCLUDED.version OR " +
         beatable +
         "\n"
         "  RETURNING 1\n";
}

// `typed`: the row's values come from the input's typed columns (typed_input), cast from text to
// each column's type without its length or precision, so that the insert's own assignment checks
// them (a varchar(10) refuses a longer value, as jsonb_populate_record does, where a cast would cut it).
std::string upsert_rows(const ReplicaTable& table, size_t t, const std::string& beatable, bool typed) {
  typed = typed && table.typed_upserts();
  std::string n = std::to_string(t);
  std::string key = pg::quote_identifier(table.key);
  std::string columns, values, updates;
  for (size_t c = 0; c < table.columns.size(); ++c) {
    const std::string& column = table.columns[c];
    std::string quoted = pg::quote_identifier(column);
    columns += (columns.empty() ? "" : ", ") + quoted;
    std::string value = typed ? "CAST(w." + typed_column(t, c) + " AS " + table.column_types[c] + ")" : "r." + quoted;
    // A versioned row holds the version of the event that wrote it, whatever the payload says.
    values += (values.empty() ? "" : ", ") + (table.versioned && quoted == kVersion ? "w.v" : value);
    if (column != table.key) updates += (updates.empty() ? "" : ", ") + quoted + " = EXCLUDED." + quoted;
  }
  // The guard in the row, under its lock: for a versioned table the only check of the row's
  // version (guarded_writes); and a forged key of another part's aggregate cannot go back.
  std::string guard = table.versioned ? " WHERE t." + std::string(kVersion) + " < EXCLUDED." + kVersion + " OR " +
                                            outside_range(std::string("t.") + kVersion)
                                      : "";
  // A versioned table's winners come unchecked (guarded_writes): blocked aggregates and newer
  // aggregate versions (a tombstone) are left out here, and the row's version in the guard. The
  // probe stays in a select list (OFFSET 0): as a WHERE clause, NOT EXISTS became an anti join
  // that read all of outbox_aggregate_versions.
  std::string record = typed ? "" : "  CROSS JOIN LATERAL jsonb_populate_record(NULL::" + table.quoted + ", w.p) r\n";
  std::string source = table.versioned
                           ? " FROM (SELECT e.*, " + aggregate_is_older("e", beatable) +
                                 " AS newer\n        FROM input e WHERE e.w = 1 AND e.m = ANY(" + int_array(table.upserts) +
                                 ") AND e.i NOT IN (SELECT i FROM blocked) OFFSET 0) w\n" + record + "  WHERE w.newer\n"
                           : " FROM winners w\n" + record + "  WHERE w.m = ANY(" + int_array(table.upserts) + ")\n";
  return "), w_upsert_" + n + " AS (\n  INSERT INTO " + table.quoted + " AS t (" + columns + ")\n  SELECT " + values + source +
         "  ON CONFLICT (" + key + ") DO " + (updates.empty() ? "NOTHING" : "UPDATE SET " + updates + guard) +
         "\n  RETURNING 1\n";
}

// The key comes from the payload, else from the aggregate id. The rows are found by `key = ANY` of
// the batch's keys, not by a join alone: the generic plan (kApplyPlanSettings) is made once, maybe
// while the table looked empty, and a join planned then scans the whole table for every batch.
std::string delete_rows(const ReplicaTable& table, const std::string& n) {
  std::string key = pg::quote_identifier(table.key);
  std::string guard = table.versioned
                          ? " AND (t." + std::string(kVersion) + " < w.v OR " + outside_range(std::string("t.") + kVersion) + ")"
                          : "";
  std::string doomed = "SELECT w.v, (jsonb_populate_record(NULL::" + table.quoted + ", jsonb_build_object(" +
                       pg::quote_literal(table.key) + ", w.ag) || w.p))." + key + " AS k FROM winners w WHERE w.m = ANY(" +
                       int_array(table.deletes) + ")";
  return "), w_doomed_" + n + " AS (" + doomed + "\n), w_delete_" + n + " AS (\n  DELETE FROM " + table.quoted +
         " t USING w_doomed_" + n + " w\n  WHERE t." + key + " = ANY(ARRAY(SELECT k FROM w_doomed_" + n + ")) AND t." + key +
         " = w.k" + guard + "\n  RETURNING 1\n";
}

std::string row_writes(const std::vector<ReplicaTable>& tables, const std::string& beatable, bool typed) {
  std::string sql;
  for (size_t t = 0; t < tables.size(); ++t) {
    if (!tables[t].upserts.empty()) sql += upsert_rows(tables[t], t, beatable, typed);
    if (!tables[t].deletes.empty()) sql += delete_rows(tables[t], std::to_string(t));
  }
  return sql;
}

std::string applied_events() {
  return "), w_applied AS (\n"
         "  INSERT INTO outbox_applied_events (event_id, aggregate_type, aggregate_id, aggregate_version,\n"
         "    outbox_position, created_at, effective)\n"
         "  SELECT id, at, ag, v, pos, ts, ok FROM checked WHERE $4::boolean\n"
         "  ON CONFLICT (event_id) DO NOTHING\n"
         "  RETURNING event_id\n";
}

std::string applied_position() {
  return "), w_position AS (\n"
         "  INSERT INTO outbox_applied_position AS o (replica, last_event_id, last_position, last_created_at, applied_at)\n"
         "  SELECT $1, id, pos, ts, clock_timestamp() FROM input WHERE NOT future ORDER BY i DESC LIMIT 1\n"
         "  ON CONFLICT (replica) DO UPDATE SET last_event_id = EXCLUDED.last_event_id,\n"
         "    last_position = EXCLUDED.last_position, last_created_at = EXCLUDED.last_created_at,\n"
         "    applied_at = EXCLUDED.applied_at\n"
         // An event without created_at (not from the relay) moves the position too, except in
         // `outbox failed retry` ($2): the retry of an old event must not move it back.
         "  WHERE o.last_created_at IS NULL OR (EXCLUDED.last_created_at IS NULL AND NOT $2::boolean)\n"
         "    OR o.last_created_at <= EXCLUDED.last_created_at OR o.last_created_at > (SELECT latest FROM clock)\n"
         "  RETURNING 1\n";
}

// The heartbeat row keeps the newest created_at (the primary's clock) and, in applied_at, when a
// heartbeat was last applied here (the replica's clock), whether or not it was the newest: lag
// measures a stalled replicate by the replica's clock alone (ops/lag.hpp), so a heartbeat stamped
// ahead cannot hide a stall.
std::string heartbeat() {
  return "), w_heartbeat AS (\n"
         "  INSERT INTO outbox_heartbeat AS h (replica, relay, created_at, applied_at)\n"
         "  SELECT $1, p->>'relay', ts, clock_timestamp() FROM input WHERE m = -1 AND NOT future ORDER BY ts DESC LIMIT 1\n"
         "  ON CONFLICT (replica) DO UPDATE SET\n"
         "    relay = CASE WHEN h.created_at < EXCLUDED.created_at OR h.created_at > (SELECT latest FROM clock)\n"
         "                 THEN EXCLUDED.relay ELSE h.relay END,\n"
         "    created_at = CASE WHEN h.created_at < EXCLUDED.created_at OR h.created_at > (SELECT latest FROM clock)\n"
         "                      THEN EXCLUDED.created_at ELSE h.created_at END,\n"
         "    applied_at = EXCLUDED.applied_at\n"
         "  RETURNING 1\n"
         ")\n";
}

// The counts of replicate/apply.cpp's Counts, and the events left out (blocked) for the caller to
// record as waiting. Effective: the checked events found effective, and the rows that
// guarded_writes wrote. Without recorded event ids ($4 false), every event of the batch that was
// neither blocked nor a duplicate in it counts as recorded: a redelivery is then counted as
// stale, not as a duplicate.
std::string counts(const std::vector<ReplicaTable>& tables, const std::string& guarded) {
  std::string effective = "(SELECT count(*) FROM checked WHERE ok AND NOT (w = 1 AND m = ANY(" + guarded + ")))";
  for (size_t t = 0; t < tables.size(); ++t)
    if (tables[t].versioned && !tables[t].upserts.empty())
      effective += " + (SELECT count(*) FROM w_upsert_" + std::to_string(t) + ")";
  return "SELECT n.effective, greatest(0, n.recorded - n.effective), n.events - n.blocked - n.recorded, n.heartbeats,\n"
         "       n.blocked_list, n.future, n.ahead\n"
         "FROM (SELECT " +
         effective +
         " AS effective,\n"
         "             CASE WHEN $4::boolean THEN (SELECT count(*) FROM w_applied)\n"
         "                  ELSE c.fresh - (SELECT count(*) FROM blocked WHERE w >= 0) END AS recorded,\n"
         "             (SELECT count(*) FROM blocked) AS blocked,\n"
         "             (SELECT coalesce(array_agg(i ORDER BY i), '{}')::text FROM blocked) AS blocked_list, c.*\n"
         // The position entry (m = -2) repeats an event of the batch: not counted twice.
         "      FROM (SELECT count(*) FILTER (WHERE m >= 0) AS events, count(*) FILTER (WHERE m >= 0 AND w >= 0) AS fresh,\n"
         "                   count(*) FILTER (WHERE m = -1) AS heartbeats, count(*) FILTER (WHERE future AND m <> -2) AS "
         "future,\n"
         "                   coalesce(extract(epoch FROM max(ts) FILTER (WHERE future AND m <> -2) - clock_timestamp()), "
         "0)::float8\n"
         "                     AS ahead\n"
         "            FROM input) c) n";
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  out += log::json_escape(text);
  out += '"';
}

void append_optional(std::string& out, const std::optional<long long>& value) { out += value ? std::to_string(*value) : "null"; }

std::vector<ReplicaTable> tables_of(const std::vector<Mapping>& mappings, std::vector<int>& table_of_mapping) {
  std::vector<ReplicaTable> tables;
  table_of_mapping.assign(mappings.size(), 0);
  for (size_t m = 0; m < mappings.size(); ++m) {
    const Mapping& mapping = mappings[m];
    std::string quoted = pg::quote_qualified(mapping.table);
    auto found = std::find_if(tables.begin(), tables.end(), [&](const ReplicaTable& table) {
      return table.quoted == quoted && table.key == mapping.key_column;
    });
    if (found == tables.end()) {
      tables.push_back(ReplicaTable{mapping.table, quoted, mapping.key_column, {}, {}, {}, false, "", {}, false});
      found = tables.end() - 1;
    }
    (mapping.operation == Operation::upsert ? found->upserts : found->deletes).push_back(static_cast<int>(m));
    table_of_mapping[m] = static_cast<int>(found - tables.begin());
  }
  return tables;
}

bool typed_apply_possible(const std::vector<ReplicaTable>& tables) {
  bool any = false;
  for (const ReplicaTable& table : tables) {
    if (table.upserts.empty()) continue;
    if (!table.typed) return false;
    any = true;
  }
  return any;
}

std::string apply_statement(const std::vector<Mapping>& mappings, const std::vector<ReplicaTable>& tables, bool part,
                            bool typed) {
  typed = typed && typed_apply_possible(tables);
  std::string beatable = outside_range("s.version");
  std::string guarded = int_array(guarded_writes(tables));
  return checked_events(beatable, row_is_older(tables, typed), guarded, typed_input(tables, typed)) +
         newest_versions(mappings, tables, beatable) + row_writes(tables, beatable, typed) + applied_events() +
         (part ? "" : applied_position()) + heartbeat() + counts(tables, guarded);
}

}  // namespace outbox::replicate
