#pragma once
// Retention for an outbox table partitioned by RANGE (position) (migration 0004; issue 19, part 3).
// Not to be confused with relay.partitions, the hash buckets of aggregate ids that relays own.
//
// Marking a row published is an UPDATE and deleting it a DELETE: at 10M events a day either leaves
// millions of dead tuples and a bloated index behind, and a retention that deletes rows makes it
// worse. On a partitioned outbox the relay instead drops a whole partition once nothing in it is
// needed any more, and creates the next partitions before the writers reach them:
//
// - Ahead: while fewer partitions of relay.partition_size positions lie past the position sequence
//   than its pace asks for (relay/partition_pace.hpp: two, or enough for two ticks at the fastest
//   rate of the recent ticks), one more is created. It is made as a table of its own and then attached
//   under SHARE ROW EXCLUSIVE on the outbox: the inserts in flight end first, the next ones wait
//   for the ATTACH (a few milliseconds with an empty default partition), and none routes a row by
//   the list of partitions from before it (which failed the insert). The relay's reads go on.
//   Should the relay fall behind anyway, the DEFAULT partition takes the rows: the write path never
//   fails for a missing partition. A new partition starts past the highest row of the default partition, so the
//   two never overlap; such rows are removed by the row-deleting retention, on that partition only.
// - Fit and cut (below) are skipped while the default partition holds rows: their ATTACH scans it
//   under the outbox's ACCESS EXCLUSIVE lock, so writers would wait for the scan. Retention empties
//   it in time, and both resume.
// - Fit: migration 0004 makes the first partition of new rows 1,000,000 positions long, as it
//   cannot read the relay's settings. While the writers are in the last partition, it spans more
//   than twice relay.partition_size and holds few rows, it is cut to the size (or just past the
//   sequence) and the next partition is made in the same transaction.
// - Cut: at a low rate the partition being written would stay open for months and its rows would
//   outlive relay.retention. Once its first row was published more than half of relay.retention
//   ago (and it holds few rows), it is cut where the sequence is: closed below, a new partition
//   above. Rows are so kept between relay.retention and about 1.5 times it, plus up to two
//   relay.maintenance_interval (the cut and the drop each wait for a tick).
// - Drop: a partition is dropped when its range is closed (the sequence is past it), no row in it is
//   unpublished, no row of it is in outbox_parked, and every row was published more than
//   relay.retention ago (by the server's clock: created_at, the writers' own, is not trusted; a
//   parked row retried late is kept as long as the others; with relay.on_publish = delete: at
//   once, as it is then empty). DETACH
//   CONCURRENTLY is not allowed beside a DEFAULT partition, so the partition is first locked, checked
//   again under the lock, then detached and dropped in one short transaction whose locks wait at most
//   kLockTimeout: writers wait for that at most, none fails, and a lock that is not had in time only
//   means a retry at the next tick.
// - Several relays: each tick runs under a session advisory lock taken with pg_try_advisory_lock, so
//   one relay does the work and the others skip it. The lock is keyed by the table's oid, not by
//   its name as configured: relays that spell it differently ("outbox", "public.outbox") take the
//   same lock.
#include <chrono>
#include <optional>
#include <pqxx/pqxx>
#include <string>

#include "relay/partition_pace.hpp"

namespace outbox::relay {

inline constexpr int kOutboxPartitionLockClass = 0x6F627835;  // (class, hashint8(table oid)): one maintenance at a time

// What the catalog says of an outbox table: whether it is partitioned, and its DEFAULT partition.
struct OutboxLayout {
  bool partitioned = false;
  std::optional<std::string> default_partition;  // quoted, qualified; none when not partitioned or not made
};
// `quoted`: the table's quoted, qualified name.
OutboxLayout read_outbox_layout(pqxx::connection& connection, const std::string& quoted);

struct MaintenanceResult {
  bool skipped = false;  // another relay holds the maintenance lock
  int created = 0;
  int dropped = 0;
  bool lock_busy = false;  // a step gave up waiting for a lock; tried again at the next tick
  // The default partition holds rows, so no partition was cut: a cut's ATTACH scans the default
  // partition under the outbox's ACCESS EXCLUSIVE lock, which writers wait for.
  bool cut_deferred = false;
  bool surveyed = false;                    // the catalog was read: cut_deferred and the fields below are this tick's
  long long highest_in_default = 0;         // the default partition's highest position, when it holds rows
  int partitions_ahead = kPartitionsAhead;  // what the pace asked for at this tick
  double peak_rate = 0;                     // the pace's fastest advance, positions per second
};

// One tick of maintenance of the partitioned outbox `quoted` (configured as `name`, the key of its
// rows in outbox_parked). Runs outside any transaction, on the retention's own session
// (relay/retention_worker.hpp), whose session advisory lock it takes for the tick. `retention` is 0
// with relay.on_publish = delete: a partition goes once nothing in it waits, and none is cut.
// `pace` is the table's, kept by the caller from tick to tick, which are `interval` apart.
MaintenanceResult maintain_outbox_partitions(pqxx::connection& connection, const std::string& name, const std::string& quoted,
                                             long long partition_size, std::chrono::milliseconds retention, PartitionPace& pace,
                                             std::chrono::milliseconds interval);

}  // namespace outbox::relay
