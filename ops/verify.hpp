#pragma once
// `outbox verify`: does a replica's read model equal the primary's write model? No CLI here.
//
// 1. A consistent point (wait_for_consistent_point). Reading both databases at "the same moment"
//    is impossible, so verify waits until the replica has applied everything the primary had
//    committed when verify started:
//      a. read P = max(position) of every outbox table on the primary;
//      b. wait until no row at or below P is unpublished (the relay has had every one of them
//         confirmed by the broker, i.e. enqueued in the replica's queue);
//      c. read T = clock_timestamp() on the primary; every event created after T was therefore
//         published after all events up to P, so it sits behind them in the replica's queue;
//      d. wait until the replica has applied an event created after T (outbox_applied_position
//         .last_created_at, or the newest relay heartbeat in outbox_heartbeat). Replicate applies
//         its queue in order and commits batch by batch, so everything up to P is applied too.
//    The relay's heartbeats (relay.heartbeat_interval, default 10s) make (d) come true on an
//    idle pipeline; any ordinary event does it sooner. Only the primary's clock is used.
// 2. The compare, online and chunked. The primary's key range is cut into chunks of
//    `chunk_rows` keys (keyset pagination over the key's btree, one short query per boundary).
//    Each chunk is summarised on both sides by one short statement (row count and md5 of the
//    chunk's rows as JSON, in key order); no transaction spans more than one statement, so
//    verify never holds back vacuum or locks anything. Only a chunk whose summaries differ is
//    read row by row and merged by key. The first chunk has no lower bound and the last no upper
//    bound, so rows only the replica has are found too. (Key ranges rather than buckets of a hash
//    of the key: a bucket query must scan the whole table, a key range is an index range scan.
//    For random uuid keys a key range is a hash range of the same size.)
// 3. The recheck. The chunks are read while writes continue, so a row written during the compare
//    may differ for a moment. Each differing row is therefore checked once more: its primary row
//    is read (S1), verify waits for a fresh consistent point (so the replica has applied S1), then
//    the replica row and the primary row again (S2) are read. A row is reported when the replica
//    differs from S1 and from S2. One recheck and not a loop: a replica that has really drifted
//    stays different however often it is read, and one extra wait bounds the run time. A row that
//    changes continuously may still be reported (the replica may show a state between S1 and
//    S2); run verify again.
//
// Tables. A TableSpec names a table that exists under the same name on both sides, its key
// column, and the columns to compare (default: every column the replica's table has that the
// primary's has too). The key must have the same type (and, for text, collation) on both sides.
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "core/duration.hpp"
#include "core/progress.hpp"

namespace outbox::verify {

struct TableSpec {
  std::string table;                 // "parking_slots" or "schema.table"
  std::string key = "uuid";          // key column
  std::vector<std::string> columns;  // compared columns besides the key; empty: the common columns
};

// What the consistent point was, for the report.
struct ConsistentPoint {
  std::vector<std::pair<std::string, std::optional<long long>>> positions;  // outbox table -> max position
  std::string primary_time;                                                 // T, ISO 8601 UTC
  std::string replica_time;  // created_at of the applied event that proved it, ISO 8601 UTC
  double waited_seconds = 0;
};

struct Row {
  std::string key;
  std::vector<std::string> values;  // each compared column as JSON text (SQL NULL: null)
  bool operator==(const Row&) const = default;
};

struct Difference {
  enum class Kind { missing, extra, different } kind;  // missing: only on the primary; extra: only on the replica
  std::string table, key_column, key;
  std::vector<std::string> columns;
  std::optional<Row> primary, replica;
};
std::string kind_name(Difference::Kind kind);

struct TableResult {
  std::string table, key;
  std::vector<std::string> columns;
  long long primary_rows = 0, replica_rows = 0, chunks = 0, chunks_read_by_row = 0;
  long long rechecked = 0;  // rows that differed at first and were read again
  long long settled = 0;    // of those, rows that were equal after the recheck
};

struct Result {
  std::string replica;
  ConsistentPoint point;
  std::vector<TableResult> tables;
  std::vector<Difference> differences;
  bool equal() const { return differences.empty(); }
};

struct Options {
  std::string replica = "main";  // its name: the row of outbox_applied_position
  std::string replica_role = "replica main";
  std::vector<std::string> outbox_tables = {"public.outbox"};
  Duration timeout{60000};  // for each wait for a consistent point
  long long chunk_rows = 10000;
  bool recheck = true;
  progress::Callback progress;  // each phase's progress (the waits, chunk i with its rows, the recheck); none: silent
};

// Waits as described above. Throws Error(tempfail) with a one-line reason naming the stage
// (the relay or the replica) when `timeout` passes first; Error(unavailable) when a database
// is lost; Error(config) when a table is missing.
ConsistentPoint wait_for_consistent_point(pqxx::connection& primary, pqxx::connection& replica, const Options& options);

// Waits for a consistent point, compares every table and rechecks what differed.
// Throws like wait_for_consistent_point; Error(config) for a table or column that is missing.
Result compare(pqxx::connection& primary, pqxx::connection& replica, const std::vector<TableSpec>& tables,
               const Options& options);

// "missing parking_slots uuid=...: primary {...}, replica main (none)"
std::string render_line(const Difference& difference, const std::string& replica_role);
std::string render_summary(const Result& result);
// One JSON document.
std::string render_json(const Result& result);

// Sets the session settings that make both sides print values alike (UTC, ISO dates, exact floats).
void prepare_session(pqxx::connection& connection);

}  // namespace outbox::verify
