#pragma once
// The marks' dead row versions, vacuumed by the relay (issue 19, part 3: an outbox that does not
// bloat).
//
// A mark is an UPDATE that is never HOT: published_at is named by the partial index of unpublished
// rows, and PostgreSQL makes no update HOT that changes a column an index names. So every published
// row leaves a dead version, and index entries, in the partition being written. Autovacuum visits a
// table at most once per autovacuum_naptime (1 min by default, for the whole server): at 8,000 events
// a second that was a sawtooth between 50,000 and 500,000 dead tuples (bench/soak). As pgqd does
// for PgQ's tables, the relay vacuums them itself every relay.vacuum_interval, so that they stay
// near the interval's worth of marks whatever the server's naptime.
//
// - Only the leaf partitions of a partitioned outbox (migration 0004) are vacuumed, and only those
//   with at least kMinDeadTuples dead tuples: the partition being written, and the one before it
//   for a while. An unpartitioned outbox is left to autovacuum: a VACUUM of a whole day of rows
//   every few seconds would cost more than the dead tuples it removes.
// - The VACUUM runs off the event loop (loop::Worker) on a connection of its own: publishing never
//   waits for it. VACUUM (SKIP_LOCKED) never waits for a lock either: a partition being detached or
//   dropped is skipped until the next round.
// - One relay vacuums a table: the one whose vacuum connection holds the session advisory lock
//   (kMarkVacuumLockClass, the table's oid). Another relay's round skips it, and takes over when
//   that session ends.
// - VACUUM needs the table's owner (or the database's). A role that owns neither leaves the
//   partition to autovacuum, and the relay says so once.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <vector>

#include "core/loop.hpp"
#include "relay/side_session.hpp"

namespace outbox::relay {

inline constexpr int kMarkVacuumLockClass = 0x6F627836;  // (class, hashint8(table oid)): one vacuuming relay per table
inline constexpr long long kMinDeadTuples = 10000;

// What one round did, reported on the loop thread.
struct VacuumRound {
  int vacuumed = 0;                    // partitions vacuumed
  long long dead_before = 0;           // their dead tuples before (pg_stat_user_tables)
  std::vector<std::string> not_owned;  // partitions with dead tuples that this role cannot vacuum
  std::vector<std::string> skipped;    // tables another relay vacuums (it holds their lock)
  std::optional<std::string> problem;  // why the round failed (tried again at the next)
};

class MarkVacuum {
 public:
  // `quoted_tables`: the outbox tables, quoted and qualified. `done` runs on the loop thread after
  // each round.
  MarkVacuum(loop::Loop& loop, std::string url, std::string role, std::vector<std::string> quoted_tables,
             std::function<void(const VacuumRound&)> done);
  // Cancels a VACUUM that runs and waits for it to end.
  ~MarkVacuum();
  MarkVacuum(const MarkVacuum&) = delete;
  MarkVacuum& operator=(const MarkVacuum&) = delete;
  // Rounds every `interval` from now (0: none); a round that runs goes on.
  void set_interval(std::chrono::milliseconds interval);

 private:
  void start_round();
  // On the worker thread.
  VacuumRound round();

  SideSession session_;
  std::vector<std::string> tables_;
  std::function<void(const VacuumRound&)> done_;
  std::set<std::string> locked_;  // tables whose advisory lock the session holds
  VacuumRound result_;
  loop::Worker worker_;
  loop::Timer timer_;
};

}  // namespace outbox::relay
