#pragma once
// The text of the apply statement and its batch parameter (replicate/apply.hpp says what the
// statement does), built from the mappings and the replica's catalog alone: no database is
// needed, so a unit test pins both.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/amqp.hpp"
#include "replicate/event.hpp"

namespace outbox::replicate {

struct Item {
  const amqp::IncomingMessage* message = nullptr;
  Checked checked;
};

// A replica table that the mappings write, as its catalog describes it.
struct ReplicaTable {
  std::string name;                   // as configured
  std::string quoted;                 // "\"public\".\"parking_slots\""
  std::string key;                    // key column
  std::vector<std::string> columns;   // the writable columns, in the table's order (from the catalog)
  std::vector<int> upserts, deletes;  // mapping indexes
  // A table with an integer column "version" holds its rows' aggregate version (as parking_slots
  // does): the version guard reads and writes it there, and outbox_aggregate_versions only keeps
  // the tombstones of deletes (see apply_statement).
  bool versioned = false;
  std::string key_type;                   // the key column's type, as format_type() names it ("uuid")
  std::vector<std::string> column_types;  // each column's type, as format_type() names it without a modifier
  // Every column's type takes a JSON scalar's text through its input function alone (no json,
  // jsonb, array, composite or domain): the typed statement can write its rows (column_texts).
  bool typed = false;
  // The typed statement takes this table's columns as text arrays.
  bool typed_upserts() const { return typed && !upserts.empty(); }
};

// The tables the mappings write (one per table and key column, in the mappings' order), without
// their columns; `table_of_mapping` gets each mapping's index into them.
std::vector<ReplicaTable> tables_of(const std::vector<Mapping>& mappings, std::vector<int>& table_of_mapping);

// The apply statement. $1: the replica name; $2: ignore the aggregates' failed events; $3:
// replicate.max_clock_skew in milliseconds; $4: replicate.record_event_ids (each event id into
// outbox_applied_events); $5 .. $14: the batch (batch_columns). `part`: a part on a helper
// connection, which leaves the applied position to the main transaction.
//
// The version guard: an event is effective when its version is newer than its aggregate's in
// outbox_aggregate_versions (if any) and, on a versioned table, than the row it writes (if
// any). outbox_aggregate_versions is written only where the row cannot hold the version: for a
// delete (the tombstone, so that an older upsert redelivered later does not bring the row back)
// and for an upsert of a table without a version column. Versions it holds from before (a
// replica upgraded from the bookkeeping of every aggregate there) keep guarding.
// `typed`: the typed statement, which takes each upserted table's columns as text arrays after $14
// (BatchColumns::typed) instead of the upserts' payloads; only when typed_apply_possible.
std::string apply_statement(const std::vector<Mapping>& mappings, const std::vector<ReplicaTable>& tables, bool part,
                            bool typed = false);
// Whether every table that the mappings upsert is ReplicaTable::typed.
bool typed_apply_possible(const std::vector<ReplicaTable>& tables);

// What every apply transaction of table mappings sets first (with its advisory lock): the apply
// statement runs on a generic plan. Its custom plan cost the replica about 1.5 ms per batch, and
// under a steady stream batches are small (about 150 events at 15,000 events/s), so planning was
// a third of the replica's CPU. A generic plan is made once with the statistics of that moment,
// which on a new replica say "empty": without seq scans every table is read by its index (each
// probe keyed by the batch, see apply_statement), so the plan stays right as the tables grow.
// Not for handlers: their functions' own statements would be forced to generic plans too.
inline constexpr const char* kApplyPlanSettings =
    "set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true)";

// $5 .. $14 of the apply statement: the items column by column, each a binary array
// (pg::BinaryArray: uuid[], text[], text[], bigint[], int[], int[], bigint[], bigint[], and
// newest_of_rows as int[]), sent as binary parameters, and the payloads as one JSON array (text);
// `position_of`, if set, last as the position entry (m = -2).
struct BatchColumns {
  std::string ids, aggregate_types, aggregate_ids, versions, mappings, tables, positions, created_at, newest;
  std::string payloads;
  std::vector<std::string> typed;  // the typed statement's text arrays ($15 on), table by table, column by column
};
BatchColumns batch_columns(const std::vector<Item*>& items, const Item* position_of, const std::vector<int>& table_of_mapping);
// The typed statement's parameters: the upserts' columns read by column_texts, and their payloads
// null. Nullopt when a body cannot be read so (the batch then takes batch_columns and the JSON
// statement, which reads every body as jsonb).
std::optional<BatchColumns> typed_batch_columns(const std::vector<Item*>& items, const Item* position_of,
                                                const std::vector<int>& table_of_mapping,
                                                const std::vector<ReplicaTable>& tables);
// Per item: 1 for the newest event of its row in the batch (by aggregate, table and key as
// Event::row_key has it; the later of equal versions), 0 for one it supersedes, -1 for an event
// id that came before in the batch; 0 for heartbeats. The statement writes only the newest, so
// one INSERT ... ON CONFLICT never meets a row twice, unless the payloads spell one key in two
// ways ("1" and 1), and then the batch fails and its events are applied one by one.
std::vector<int> newest_of_rows(const std::vector<Item*>& items, const std::vector<int>& table_of_mapping);

// JSON pieces shared with the rows that park events: a string (escaped), a number or null.
void append_json_string(std::string& out, std::string_view text);
void append_optional(std::string& out, const std::optional<long long>& value);

}  // namespace outbox::replicate
