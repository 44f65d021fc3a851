#pragma once
// The relay's SQL: the prepared statements of each outbox table, on the relay's primary session.
// Each is prepared under its name and the table's index ("read_all_0", "mark_1"): call them
// through statement().
#include <chrono>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace outbox::relay {

// The statements of one table, prepared by prepare_statements():
//   read_all    ($1 table name, $2 positions in flight, $3 limit): unpublished rows in position order,
//               without the ones in flight and the ones held behind a parked row.
//   read_owned  (the same, $4 partitions, $5 owned partitions): only the owned partitions' rows.
//   mark        ($1 positions, $2 the least of them, $3 the greatest): sets published_at.
//   delete      (the same): deletes published rows (relay.on_publish = delete).
//   park        ($1 table name, $2 position, $3 error, $4 attempts to park after): records a refusal.
//   heartbeat   ($1 instance): inserts a heartbeat event.
std::string statement(const char* kind, size_t table);

// Prepares the statements of the table at `index` (`quoted`: its quoted, qualified name).
void prepare_statements(pqxx::connection& connection, size_t index, const std::string& quoted);

// Deletes the rows of `target` (quoted, qualified: an outbox table, or the DEFAULT partition of a
// partitioned one, whose other partitions are dropped whole, relay/outbox_partitions.hpp) published
// more than `retention` ago, in batches of their own transaction, so that no lock is held long,
// until a batch finds fewer rows than it may delete or a tick's share of batches is done. Runs on
// the retention's own session (relay/retention_worker.hpp).
void delete_retained_rows(pqxx::connection& connection, const std::string& target, std::chrono::milliseconds retention);

// Marks (or deletes, `delete_rows`) the published rows of each table (`positions`, by table index)
// in the caller's transaction, with plans made once and kept (see statements.cpp).
void mark_published(pqxx::transaction_base& tx, const std::vector<std::vector<long long>>& positions, bool delete_rows);

// Sets up a relay session (the relay's, the retention's): marks and retention deletes need not
// wait for the WAL flush, and no statement waits long for a lock.
void configure_session(pqxx::connection& connection);

// Which partition the heartbeat aggregate hashes to.
int heartbeat_partition(pqxx::connection& connection, int partitions);

// Values as a PostgreSQL array literal, for a bound array parameter: "{1,5,7}".
template <typename Values>
std::string int_array_literal(const Values& values) {
  std::string out = "{";
  for (const auto& value : values) {
    if (out.size() > 1) out += ',';
    out += std::to_string(value);
  }
  return out + "}";
}

// Advisory lock statements of partition ownership (relay/ownership.hpp).
inline constexpr const char* kTryLock = "SELECT pg_try_advisory_lock($1, $2)";
inline constexpr const char* kUnlock = "SELECT pg_advisory_unlock($1, $2)";
// The live relay instances to share the partitions with: the granted member locks of this
// database, but not those of instances with another relay.partitions, which own nothing while this
// count is in force ($2: the count lock class, $3: this instance's count).
inline constexpr const char* kCountMembers =
    "SELECT count(*) FROM pg_locks m WHERE m.locktype = 'advisory' AND m.granted AND m.classid = $1::bigint::oid "
    "AND m.objsubid = 2 AND m.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND NOT EXISTS (SELECT 1 FROM pg_locks c WHERE c.pid = m.pid AND c.database = m.database AND c.locktype = 'advisory' "
    "AND c.granted AND c.classid = $2::bigint::oid AND c.objsubid = 2 AND c.objid::bigint <> $3)";
// relay.partitions agreement (relay/ownership.hpp): each instance holds a shared lock keyed by its
// count, and partitions are taken only under the rebalance lock.
inline constexpr const char* kLockShared = "SELECT pg_advisory_lock_shared($1, $2)";
inline constexpr const char* kUnlockShared = "SELECT pg_advisory_unlock_shared($1, $2)";
inline constexpr const char* kLock = "SELECT pg_advisory_lock($1, $2)";
// The partition counts of the other live instances that own partitions now, with one pid each.
inline constexpr const char* kOtherPartitionCounts =
    "SELECT c.objid::bigint, min(c.pid) FROM pg_locks c JOIN pg_locks p ON p.pid = c.pid AND p.database = c.database "
    "AND p.locktype = 'advisory' AND p.granted AND p.classid = $2::bigint::oid AND p.objsubid = 2 "
    "WHERE c.locktype = 'advisory' AND c.granted AND c.classid = $1::bigint::oid AND c.objsubid = 2 "
    "AND c.pid <> pg_backend_pid() AND c.objid::bigint <> $3 "
    "AND c.database = (SELECT oid FROM pg_database WHERE datname = current_database()) GROUP BY 1 ORDER BY 1";

}  // namespace outbox::relay
