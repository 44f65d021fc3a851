#include "relay/outbox_partitions.hpp"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace outbox::relay {
namespace {

// How long a maintenance statement may wait for a lock: writers queued behind it wait no longer.
constexpr const char* kLockTimeout = "200ms";
constexpr long long kNeverAnalyze = 2147483647;  // autovacuum_analyze_threshold's maximum
// At most this many partitions are dropped per tick (and created, unless the pace asks for more
// ahead): a relay started after a long outage catches up over a few ticks instead of holding its
// session for long.
constexpr int kMaxChangesPerTick = 4;
// The most rows a partition may hold to be cut (cut_open_partition): the cut scans it under lock.
constexpr long long kMaxRowsToCut = 100000;

std::string interval(std::chrono::milliseconds duration) { return std::to_string(duration.count()) + " milliseconds"; }

// A range partition; `lower` is LLONG_MIN for MINVALUE, `upper` LLONG_MAX for MAXVALUE.
struct RangePartition {
  std::string quoted;
  long long lower = 0;
  long long upper = 0;
};

struct Catalog {
  std::string schema, relname;
  std::vector<RangePartition> ranges;  // by upper bound
  std::optional<std::string> default_partition;
  long long last_position = 0;       // the sequence's last value, or the highest row
  long long highest_in_default = 0;  // 0 when the default partition is empty or missing
  bool default_holds_rows = false;
};

// The last position taken: the sequence's (rows of transactions still open included), else the highest row.
long long last_position(pqxx::transaction_base& tx, const std::string& quoted) {
  return tx
      .exec_params1(
          "SELECT coalesce((SELECT pg_sequence_last_value(pg_get_serial_sequence($1, 'position')::regclass)), "
          "(SELECT max(position) FROM " +
              quoted + "), 0)",
          quoted)[0]
      .as<long long>();
}

Catalog read_catalog(pqxx::connection& connection, const std::string& quoted) {
  pqxx::read_transaction tx(connection);
  Catalog catalog;
  pqxx::row names = tx.exec_params1(
      "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass",
      quoted);
  catalog.schema = names[0].as<std::string>();
  catalog.relname = names[1].as<std::string>();
  // The bounds as PostgreSQL prints them: FROM ('1') TO ('1000001'), MINVALUE and MAXVALUE unquoted.
  for (const pqxx::row& row :
       tx.exec_params("SELECT format('%I.%I', n.nspname, c.relname), b = 'DEFAULT', "
                      "coalesce((regexp_match(b, 'FROM \\(''(-?\\d+)''\\)'))[1]::bigint, -9223372036854775808), "
                      "coalesce((regexp_match(b, 'TO \\(''(-?\\d+)''\\)'))[1]::bigint, 9223372036854775807) "
                      "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace, "
                      "pg_get_expr(c.relpartbound, c.oid) b WHERE i.inhparent = $1::regclass ORDER BY 4",
                      quoted)) {
    if (row[1].as<bool>())
      catalog.default_partition = row[0].as<std::string>();
    else
      catalog.ranges.push_back({row[0].as<std::string>(), row[2].as<long long>(), row[3].as<long long>()});
  }
  catalog.last_position = last_position(tx, quoted);
  if (catalog.default_partition) {
    pqxx::row highest = tx.exec1("SELECT max(position) FROM " + *catalog.default_partition);
    catalog.default_holds_rows = !highest[0].is_null();
    catalog.highest_in_default = catalog.default_holds_rows ? highest[0].as<long long>() : 0;
  }
  return catalog;
}

// Creates the partition [lower, upper) as a table of its own, then attaches it, under SHARE ROW
// EXCLUSIVE on the outbox (a cut holds ACCESS EXCLUSIVE already). ATTACH alone takes SHARE UPDATE
// EXCLUSIVE, which writers do not wait for. But an INSERT routes its rows by the list of
// partitions it read when it started: one that started before the ATTACH and sent a row of the
// new range to the default partition (the writers past the partitions ahead) then waited for the
// default partition's lock, which ATTACH holds for its scan, and failed once it had it: "new row
// for relation outbox_default violates partition constraint" (bench/soak at 9,700 events/s,
// partitions of 50,000 and a 10 s tick). A lock that conflicts with the writers' ROW EXCLUSIVE
// makes the ATTACH wait for the inserts in flight and the next ones wait for it, and read the new
// list; the relay's reads go on (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE, which
// they wait for too). The CHECK spares ATTACH a scan; the default partition is scanned (empty,
// unless the writers outran the partitions ahead).
// Autovacuum never ANALYZEs it (an analyze threshold no partition reaches; it still VACUUMs it).
// Nothing the relay or the tools read needs its column statistics: rows are found by position,
// through the partial index of unpublished rows, and the relay's VACUUM keeps the row and page
// counts current. But autovacuum analyzes a table once its changes pass a tenth of its rows
// (each row is two: the insert and the mark), so a partition being filled was analyzed again
// every one to few minutes, each time reading up to 30,000 of its pages; and at the soak's rate each
// autovacuum round analyzed the eight partitions filled since the last, 0.4 s each, a burst that
// took the pipeline's headroom (bench/README, "A soak at a fixed rate").
void create_partition(pqxx::transaction_base& tx, const Catalog& catalog, const std::string& quoted, long long lower,
                      long long upper) {
  tx.exec("LOCK TABLE ONLY " + quoted + " IN SHARE ROW EXCLUSIVE MODE");
  std::string from = std::to_string(lower), to = std::to_string(upper);
  // A name PostgreSQL keeps whole (63 bytes): the table's name and the lower bound. A name longer
  // than 36 bytes is replaced by the table's oid: cut by characters, a name of multibyte
  // characters could pass 63 bytes and lose its bound (every partition one name), and two tables
  // sharing a prefix would share their partitions' names.
  std::string partition = tx.exec_params1(
                                "SELECT format('%I.%I', $1::text, CASE WHEN octet_length($2::text) <= 36 THEN $2::text "
                                "ELSE 'outbox_' || $4::regclass::oid END || '_from_' || $3::text)",
                                catalog.schema, catalog.relname, from, quoted)[0]
                              .as<std::string>();
  tx.exec("CREATE TABLE " + partition + " (LIKE " + quoted +
          " INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE) WITH (autovacuum_analyze_threshold = " +
          std::to_string(kNeverAnalyze) + ")");
  // Unique among the unpublished rows only: a mark then adds no entry to it (migration 0005).
  tx.exec("CREATE UNIQUE INDEX ON " + partition + " (event_id) WHERE published_at IS NULL");
  tx.exec("ALTER TABLE " + partition + " ADD CONSTRAINT outbox_partition_bound CHECK (position >= " + from + " AND position < " +
          to + ")");
  tx.exec("ALTER TABLE " + quoted + " ATTACH PARTITION " + partition + " FOR VALUES FROM (" + from + ") TO (" + to + ")");
  tx.exec("ALTER TABLE " + partition + " DROP CONSTRAINT outbox_partition_bound");
}

void begin_short(pqxx::transaction_base& tx) { tx.exec(std::string("SET LOCAL lock_timeout = '") + kLockTimeout + "'"); }

int create_ahead(pqxx::connection& connection, const Catalog& catalog, const std::string& quoted, long long size, int ahead) {
  long long top = catalog.ranges.empty() ? catalog.last_position + 1 : catalog.ranges.back().upper;
  if (top == std::numeric_limits<long long>::max()) return 0;  // a MAXVALUE partition takes every new row
  int created = 0;
  // While the default partition holds rows, each attach scans it under a lock the writers wait
  // for: no more of those per tick than before the pace.
  const int most = catalog.default_holds_rows ? kMaxChangesPerTick : std::max(kMaxChangesPerTick, ahead);
  while (created < most && top <= catalog.last_position + ahead * size) {
    // Rows already in the default partition stay there: a new range must not cover them. While
    // the writers are past every partition (their rows go to the default partition now), the new
    // one starts a partition's length past them, out of reach of the rows written meanwhile.
    long long lower = std::max(top, catalog.highest_in_default + 1);
    if (catalog.last_position >= top) lower = std::max(lower, catalog.last_position + size);
    pqxx::work tx(connection);
    begin_short(tx);
    create_partition(tx, catalog, quoted, lower, lower + size);
    tx.commit();
    top = lower + size;
    ++created;
  }
  return created;
}

// Whether `partition` holds fewer than kMaxRowsToCut rows: a cut scans it under lock.
bool holds_few_rows(pqxx::connection& connection, const RangePartition& partition) {
  pqxx::read_transaction tx(connection);
  return tx.exec_params1("SELECT count(*) < $1 FROM (SELECT FROM " + partition.quoted + " LIMIT $1) few", kMaxRowsToCut)[0]
      .as<bool>();
}

// The age of the partition's first row: since it was published, by the server's clock, as the drop
// reads it. created_at is the writers' own: a first row dated ahead kept the partition open until
// it filled, and a writer whose rows are dated behind would have had one cut at every tick. Only a
// row not published yet is aged by it.
bool oldest_row_older_than(pqxx::connection& connection, const RangePartition& partition, std::chrono::milliseconds age) {
  pqxx::read_transaction tx(connection);
  return tx
      .exec_params1("SELECT coalesce((SELECT coalesce(published_at, created_at) < clock_timestamp() - $1::interval FROM " +
                        partition.quoted + " ORDER BY position LIMIT 1), false)",
                    interval(age))[0]
      .as<bool>();
}

// Under the outbox's ACCESS EXCLUSIVE lock (taken by the caller, with the sequence read after it):
// `partition` is attached again as [lower, cut), closed, and [cut, upper) is created. The CHECK
// spares the ATTACH a second scan.
void cut_at(pqxx::transaction_base& tx, const Catalog& catalog, const std::string& quoted, const RangePartition& partition,
            long long cut, long long upper) {
  bool from_min = partition.lower == std::numeric_limits<long long>::min();
  std::string lower = from_min ? "MINVALUE" : std::to_string(partition.lower);
  tx.exec("ALTER TABLE " + quoted + " DETACH PARTITION " + partition.quoted);
  tx.exec("ALTER TABLE " + partition.quoted + " ADD CONSTRAINT outbox_partition_bound CHECK (position < " + std::to_string(cut) +
          (from_min ? "" : " AND position >= " + lower) + ")");
  tx.exec("ALTER TABLE " + quoted + " ATTACH PARTITION " + partition.quoted + " FOR VALUES FROM (" + lower + ") TO (" +
          std::to_string(cut) + ")");
  tx.exec("ALTER TABLE " + partition.quoted + " DROP CONSTRAINT outbox_partition_bound");
  create_partition(tx, catalog, quoted, cut, upper);
}

// The partition the sequence is in: the one being written. None when the writers are past every partition.
const RangePartition* open_partition(const Catalog& catalog) {
  auto open = std::find_if(catalog.ranges.begin(), catalog.ranges.end(), [&](const RangePartition& range) {
    return range.lower <= catalog.last_position && catalog.last_position < range.upper;
  });
  return open == catalog.ranges.end() ? nullptr : &*open;
}

// A pace that has seen no tick yet (the relay's first, after a start or a restart) would keep two
// partitions ahead until its second tick, a relay.maintenance_interval later, which at a high rate
// is longer than they last. So it starts from the partition being written: its first row, how
// many positions behind the sequence and how long ago it was written (by the server's clock, as
// the sequence). Only an age between a second (a partition just begun gives no rate) and a
// month is taken (created_at is the writers': an infinite or a placeholder date gives none). Best
// effort: a statement that fails leaves the pace to learn from the next ticks, and the tick goes on.
void seed_pace(pqxx::connection& connection, const Catalog& catalog, PartitionPace& pace, PartitionPace::Clock::time_point now) {
  const RangePartition* open = open_partition(catalog);
  if (!open) return;
  std::optional<std::pair<long long, double>> first;
  try {
    pqxx::read_transaction tx(connection);
    pqxx::result row = tx.exec(
        "SELECT position, extract(epoch FROM clock_timestamp() - created_at)::float8 FROM (SELECT position, created_at FROM " +
        open->quoted +
        " ORDER BY position LIMIT 1) f WHERE isfinite(created_at) AND created_at BETWEEN clock_timestamp() - interval '30 "
        "days' AND clock_timestamp() - interval '1 second'");
    if (!row.empty()) first.emplace(row[0][0].as<long long>(), row[0][1].as<double>());
  } catch (const pqxx::sql_error& error) {
    if (error.sqlstate() == "57014") throw;  // cancelled at the shutdown: the tick ends here
    return;                                  // a lock, a privilege, a column changed by hand: the next ticks measure the pace
  }
  if (!first) return;
  pace.observe(first->first,
               now - std::chrono::duration_cast<PartitionPace::Clock::duration>(std::chrono::duration<double>(first->second)));
}

// At a low rate the partition being written would stay open for months, and its rows would outlive
// relay.retention. Once its first row was published more than half of it ago (and it holds few
// rows, as it does at such a rate), it is cut at the sequence, under a short ACCESS EXCLUSIVE lock
// on the outbox: [lower, last + 1) is attached again, now closed, and a new partition takes
// [last + 1, upper).
bool cut_open_partition(pqxx::connection& connection, const Catalog& catalog, const std::string& quoted,
                        std::chrono::milliseconds retention) {
  const RangePartition* open = open_partition(catalog);
  // No retention (relay.on_publish = delete): the rows go as they are confirmed, and a cut at
  // every tick would only take the lock at every tick.
  if (retention.count() == 0 || !open || open->upper == std::numeric_limits<long long>::max()) return false;
  if (!oldest_row_older_than(connection, *open, retention / 2) || !holds_few_rows(connection, *open)) return false;
  pqxx::work tx(connection);
  begin_short(tx);
  tx.exec("LOCK TABLE ONLY " + quoted + " IN ACCESS EXCLUSIVE MODE");
  long long cut = last_position(tx, quoted) + 1;
  if (cut >= open->upper) return false;
  cut_at(tx, catalog, quoted, *open, cut, open->upper);
  tx.commit();
  return true;
}

// Migration 0004 makes the first partition of new rows 1,000,000 positions long whatever
// relay.partition_size says: its text is checksummed, so it cannot read the relay's settings.
// While the writers are in the last partition, and it spans more than twice relay.partition_size
// and holds few rows, it is cut to the size: at lower + size, or just past the sequence if the
// writers are beyond that already. [cut, cut + size) is created in the same transaction, so the
// writers never reach the default partition. This is the migration's partition when the relay
// first starts after it; partitions the relay made ahead are never the last while writers are in
// them, and keep their length.
bool fit_open_partition(pqxx::connection& connection, const Catalog& catalog, const std::string& quoted, long long size) {
  long long next = catalog.last_position + 1;
  if (catalog.ranges.empty()) return false;
  const RangePartition& last = catalog.ranges.back();
  if (last.lower == std::numeric_limits<long long>::min() || last.upper == std::numeric_limits<long long>::max() ||
      next < last.lower || next >= last.upper || last.upper - last.lower <= 2 * size)
    return false;
  if (!holds_few_rows(connection, last)) return false;
  pqxx::work tx(connection);
  begin_short(tx);
  tx.exec("LOCK TABLE ONLY " + quoted + " IN ACCESS EXCLUSIVE MODE");
  long long cut = std::max(last.lower + size, last_position(tx, quoted) + 1);
  if (cut > last.upper - size) return false;
  cut_at(tx, catalog, quoted, last, cut, cut + size);
  tx.commit();
  return true;
}

// Whether nothing in the partition is needed any more (see the header). Its age is read from
// published_at, the relay's stamp by the server's clock, never from created_at: that is the
// writers' own, and one row dated ahead (a writer's clock, a placeholder date) kept its partition
// for good when the newest row's created_at had to be older than relay.retention. A row is written
// before it is published, so "published more than relay.retention ago" implies "written".
bool droppable(pqxx::transaction_base& tx, const RangePartition& partition, const std::string& name,
               std::chrono::milliseconds retention) {
  return tx
      .exec_params1("SELECT NOT EXISTS (SELECT 1 FROM " + partition.quoted +
                        " WHERE published_at IS NULL) AND NOT EXISTS (SELECT 1 FROM outbox_parked WHERE outbox_table = $1 "
                        "AND position >= $2 AND position < $3) AND coalesce((SELECT published_at < clock_timestamp() - "
                        "$4::interval FROM " +
                        partition.quoted + " ORDER BY position DESC LIMIT 1), true)",
                    name, partition.lower, partition.upper, interval(retention))[0]
      .as<bool>();
}

// Whether every row of the partition was published more than relay.retention ago. The newest row
// by position is not enough: a row released from outbox_parked by `outbox failed retry` is published
// long after the rows around it, and is kept for relay.retention as they are. This reads the whole
// partition (no index names published_at), so it runs once the cheap checks pass and outside the
// lock: under it, no row can be published anew, as none is unpublished or parked.
bool none_published_lately(pqxx::transaction_base& tx, const RangePartition& partition, std::chrono::milliseconds retention) {
  return tx
      .exec_params1(
          "SELECT NOT EXISTS (SELECT 1 FROM " + partition.quoted + " WHERE published_at >= clock_timestamp() - $1::interval)",
          interval(retention))[0]
      .as<bool>();
}

// Locks the outbox (ONLY: its partitions are not locked with it, autovacuum on them is not waited
// for) and the partition, checks again (a row may have been written since), detaches and drops it.
bool drop_partition(pqxx::connection& connection, const RangePartition& partition, const std::string& name,
                    const std::string& quoted, std::chrono::milliseconds retention) {
  pqxx::work tx(connection);
  begin_short(tx);
  tx.exec("LOCK TABLE ONLY " + quoted + " IN ACCESS EXCLUSIVE MODE");
  tx.exec("LOCK TABLE " + partition.quoted + " IN ACCESS EXCLUSIVE MODE");
  if (!droppable(tx, partition, name, retention)) return false;
  tx.exec("ALTER TABLE " + quoted + " DETACH PARTITION " + partition.quoted);
  tx.exec("DROP TABLE " + partition.quoted);
  tx.commit();
  return true;
}

int drop_old(pqxx::connection& connection, const Catalog& catalog, const std::string& name, const std::string& quoted,
             std::chrono::milliseconds retention) {
  int dropped = 0;
  for (const RangePartition& partition : catalog.ranges) {
    // Open ranges are still being written (the sequence has not passed them): never dropped.
    if (partition.upper - 1 > catalog.last_position || dropped == kMaxChangesPerTick) break;
    bool candidate = false;
    {
      pqxx::read_transaction tx(connection);
      candidate = droppable(tx, partition, name, retention) && none_published_lately(tx, partition, retention);
    }
    if (candidate && drop_partition(connection, partition, name, quoted, retention)) ++dropped;
  }
  return dropped;
}

// The maintenance lock, held by one relay at a time, given back however the tick ends.
class MaintenanceLock {
 public:
  // The key is kept for the unlock: the table may be gone (dropped, renamed) by then.
  MaintenanceLock(pqxx::connection& connection, const std::string& quoted) : connection_(connection) {
    pqxx::nontransaction tx(connection_);
    pqxx::row row = tx.exec_params1(
        "SELECT key, pg_try_advisory_lock($1, key) FROM (SELECT hashint8($2::regclass::oid::bigint) AS key) table_key",
        kOutboxPartitionLockClass, quoted);
    key_ = row[0].as<int>();
    held_ = row[1].as<bool>();
  }
  ~MaintenanceLock() {
    if (!held_) return;
    try {
      pqxx::nontransaction tx(connection_);
      tx.exec_params("SELECT pg_advisory_unlock($1, $2)", kOutboxPartitionLockClass, key_);
    } catch (const std::exception&) {
      // The session is gone, and its lock with it.
    }
  }
  MaintenanceLock(const MaintenanceLock&) = delete;
  MaintenanceLock& operator=(const MaintenanceLock&) = delete;
  bool held() const { return held_; }

 private:
  pqxx::connection& connection_;
  int key_ = 0;
  bool held_ = false;
};

}  // namespace

OutboxLayout read_outbox_layout(pqxx::connection& connection, const std::string& quoted) {
  pqxx::read_transaction tx(connection);
  pqxx::row row = tx.exec_params1(
      "SELECT c.relkind = 'p', (SELECT format('%I.%I', n.nspname, d.relname) FROM pg_partitioned_table p JOIN pg_class d "
      "ON d.oid = p.partdefid JOIN pg_namespace n ON n.oid = d.relnamespace WHERE p.partrelid = c.oid) "
      "FROM pg_class c WHERE c.oid = $1::regclass",
      quoted);
  OutboxLayout layout;
  layout.partitioned = row[0].as<bool>();
  if (!row[1].is_null()) layout.default_partition = row[1].as<std::string>();
  return layout;
}

MaintenanceResult maintain_outbox_partitions(pqxx::connection& connection, const std::string& name, const std::string& quoted,
                                             long long partition_size, std::chrono::milliseconds retention, PartitionPace& pace,
                                             std::chrono::milliseconds interval) {
  MaintenanceResult result;
  MaintenanceLock lock(connection, quoted);
  if (!lock.held()) {
    result.skipped = true;
    return result;
  }
  try {
    Catalog catalog = read_catalog(connection, quoted);
    const PartitionPace::Clock::time_point now = PartitionPace::Clock::now();
    if (!pace.seen()) seed_pace(connection, catalog, pace, now);
    pace.observe(catalog.last_position, now);
    result.partitions_ahead = pace.partitions_ahead(partition_size, interval);
    result.peak_rate = pace.peak_rate();
    result.surveyed = true;
    result.cut_deferred = catalog.default_holds_rows;
    result.highest_in_default = catalog.highest_in_default;
    if (!result.cut_deferred && (fit_open_partition(connection, catalog, quoted, partition_size) ||
                                 cut_open_partition(connection, catalog, quoted, retention))) {
      result.created = 1;
      catalog = read_catalog(connection, quoted);
    }
    result.created += create_ahead(connection, catalog, quoted, partition_size, result.partitions_ahead);
    result.dropped = drop_old(connection, catalog, name, quoted, retention);
  } catch (const pqxx::sql_error& error) {
    // 55P03 lock_not_available: a lock not had within kLockTimeout (a long transaction on the
    // outbox, autovacuum on the partition). Nothing was changed by the step that waited; the next
    // tick tries again. Any other error is the caller's.
    if (error.sqlstate() != "55P03") throw;
    result.lock_busy = true;
  }
  return result;
}

}  // namespace outbox::relay
