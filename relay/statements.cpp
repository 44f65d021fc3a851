#include "relay/statements.hpp"

#include <algorithm>

#include "relay/outbox_row.hpp"
#include "relay/parked_rows.hpp"
#include "relay/partitions.hpp"

namespace outbox::relay {

std::string statement(const char* kind, size_t table) { return std::string(kind) + "_" + std::to_string(table); }

namespace {

void prepare_reads(pqxx::connection& connection, size_t index, const std::string& table) {
  std::string selected;
  {
    pqxx::read_transaction tx(connection);
    selected = row_columns(tx, table);
  }
  // Rows of an aggregate with a parked row wait behind it (outbox_parked is normally empty). The
  // row's partition ($4 partitions) comes last (kPartitionColumn): packs are built per partition.
  // The positions in flight ($2, up to relay.max_unconfirmed) are an anti-join with their unnest,
  // not NOT (position = ANY($2)): for that, the planner estimated each element's selectivity, 21 ms
  // for 6,000 positions against an execution of 4 ms, and a generic plan searched the array
  // linearly for each row (61 ms). The anti-join plans in 0.6 ms and runs in 2 ms (bench/README,
  // "The relay's read").
  const std::string partition = row_partition_sql("aggregate_id", "$4");
  std::string columns = "SELECT " + selected + ", " + partition + " FROM " + table +
                        " o WHERE published_at IS NULL AND NOT EXISTS (SELECT FROM unnest($2::bigint[]) AS in_flight(position) "
                        "WHERE in_flight.position = o.position) AND " +
                        parked_rows::not_held("$1");
  connection.prepare(statement("read_all", index), columns + " ORDER BY position LIMIT $3");
  connection.prepare(statement("read_owned", index),
                     columns + " AND " + partition + " = ANY($5::int[]) ORDER BY position LIMIT $3");
}

void prepare_park(pqxx::connection& connection, size_t index, const std::string& table) {
  // Records a row the broker cannot take; it is parked when its attempts reach $4.
  connection.prepare(statement("park", index),
                     "INSERT INTO outbox_parked AS p (outbox_table, position, event_id, event_type, aggregate_type, "
                     "aggregate_id, error, parked_at) SELECT $1, position, event_id::text, event_type, aggregate_type, "
                     "aggregate_id, $3, CASE WHEN 1 >= $4 THEN clock_timestamp() END FROM " +
                         table +
                         " WHERE position = $2 ON CONFLICT (outbox_table, position) DO UPDATE SET attempts = "
                         "p.attempts + 1, error = EXCLUDED.error, last_failed_at = clock_timestamp(), parked_at = "
                         "coalesce(p.parked_at, CASE WHEN p.attempts + 1 >= $4 THEN clock_timestamp() END) "
                         "RETURNING parked_at IS NOT NULL, attempts, coalesce(event_id, ''), coalesce(event_type, ''), "
                         "coalesce(aggregate_type, ''), coalesce(aggregate_id, '')");
}

}  // namespace

void prepare_statements(pqxx::connection& connection, size_t index, const std::string& table) {
  prepare_reads(connection, index, table);
  // $2 and $3, the least and the greatest of the positions, let a generic plan (mark_published) skip
  // the partitions that hold none of them when it starts, as a custom plan does when it is made.
  const std::string marked = " WHERE position = ANY($1::bigint[]) AND position BETWEEN $2 AND $3";
  connection.prepare(statement("mark", index),
                     "UPDATE " + table + " SET published_at = clock_timestamp()" + marked + " AND published_at IS NULL");
  connection.prepare(statement("delete", index), "DELETE FROM " + table + marked);
  prepare_park(connection, index, table);
  connection.prepare(statement("heartbeat", index),
                     "INSERT INTO " + table +
                         " (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
                         "VALUES (gen_random_uuid(), 'outbox.heartbeat', 'heartbeat', "
                         "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint, 'outbox.heartbeat', "
                         "json_build_object('relay', $1::text, 'at', clock_timestamp()))");
}

void mark_published(pqxx::transaction_base& tx, const std::vector<std::vector<long long>>& positions, bool delete_rows) {
  // The plans of marks and deletes are made once and kept (a generic plan): a custom plan is made
  // again for each statement, and for thousands of positions making it took longer than running
  // it (the planner estimates each element of the array, and prunes the partitions for each): 7 ms
  // of planning against 5 ms of running for 4,000 deletes (bench/README, "The relay's marks").
  // Without a sequential scan: the plan may be made while the partition being written is still
  // empty, and is kept while it fills.
  tx.exec("SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off");
  for (size_t table = 0; table < positions.size(); ++table) {
    if (positions[table].empty()) continue;
    auto [least, greatest] = std::minmax_element(positions[table].begin(), positions[table].end());
    tx.exec_prepared(statement(delete_rows ? "delete" : "mark", table), int_array_literal(positions[table]), *least, *greatest);
  }
}

void delete_retained_rows(pqxx::connection& connection, const std::string& target, std::chrono::milliseconds retention) {
  constexpr int kBatch = 1000;
  constexpr int kBatchesPerTick = 20;
  // The window bounds how far past the first old row a batch looks: a walk that went on until
  // kBatch old rows were found would read the whole retention window, a day of rows, at every tick
  // once retention keeps up. Only positions within it of the oldest published row are looked at
  // (a range of the primary key).
  constexpr int kWindow = 4 * kBatch;
  const std::string sql = "DELETE FROM " + target + " WHERE position IN (SELECT position FROM " + target +
                          " WHERE position < (SELECT min(position) FROM " + target +
                          " WHERE published_at IS NOT NULL) + $3 AND published_at < clock_timestamp() - $1::interval "
                          "ORDER BY position LIMIT $2 FOR UPDATE SKIP LOCKED)";
  const std::string interval = std::to_string(retention.count()) + " milliseconds";
  for (int round = 0; round < kBatchesPerTick; ++round) {
    pqxx::work tx(connection);
    pqxx::result removed = tx.exec_params(sql, interval, kBatch, kWindow);
    tx.commit();
    if (removed.affected_rows() < kBatch) break;
  }
}

void configure_session(pqxx::connection& connection) {
  pqxx::nontransaction tx(connection);
  // A mark lost in a crash only means the row is published again (at least once, same
  // message_id), so marks need not wait for the WAL flush; this halves the drain time.
  tx.exec("SET synchronous_commit = off");
  // The relay's statements run on the event loop: a table lock held elsewhere (a migration, a
  // manual LOCK) must not freeze signals, confirms and the watchdog. A statement that gives up is
  // retried at the next poll. The retention's session (relay/retention_worker.hpp) is set up the
  // same way, so that a shutdown never waits long for its tick.
  tx.exec("SET lock_timeout = '1s'");
}

int heartbeat_partition(pqxx::connection& connection, int partitions) {
  pqxx::nontransaction tx(connection);
  // The heartbeat row's aggregate id, through the same expression as the reads route its row by.
  return tx.exec_params1("SELECT " + row_partition_sql("'heartbeat'", "$1"), partitions)[0].as<int>();
}

}  // namespace outbox::relay
