#include "core/pg.hpp"
#include "relay/relay.hpp"
#include "relay/statements.hpp"

// The relay's upkeep of its outbox tables beside publishing: retention (partitions dropped and
// made, or rows deleted) every relay.maintenance_interval on the relay's session, and the vacuum
// of the marks' dead row versions (relay/mark_vacuum.hpp) off the loop.
namespace outbox::relay {

using std::chrono::milliseconds;

void Relay::run_retention() {
  if (!db_) {
    log_->debug("maintenance: the primary is not connected; the next tick comes within a second of connecting");
    return;
  }
  // Each table on its own: one table's failure (a name taken, a lock, a privilege) is named and
  // tried again at the next tick, and leaves the other tables' maintenance to run.
  for (size_t table = 0; table < tables_.size(); ++table) {
    const std::string task = "retention of " + tables_[table].name;
    try {
      if (layouts_[table].partitioned) {
        MaintenanceResult done =
            maintain_outbox_partitions(*db_, tables_[table].name, tables_[table].quoted, tunables_.partition_size,
                                       tunables_.delete_on_publish ? milliseconds(0) : tunables_.retention);
        if (done.created || done.dropped)
          log_->info("{}: created {} and dropped {} partition(s)", tables_[table].name, done.created, done.dropped);
        if (done.lock_busy)
          log_->debug("{}: partition maintenance waited too long for a lock; again at the next tick", tables_[table].name);
        if (done.skipped) log_->debug("{}: partition maintenance skipped: another relay holds its lock", tables_[table].name);
        if (done.cut_deferred)
          log_->debug("{}: no partition is cut while the default partition holds rows (retention empties it)",
                      tables_[table].name);
      }
      if ((!layouts_[table].partitioned || layouts_[table].default_partition) && !tunables_.delete_on_publish)
        delete_retained_rows(*db_, table, tunables_.retention);
      side_task_works(task);
    } catch (const std::exception& error) {
      if (pg::is_connection_error(error)) return database_lost(error.what());
      side_problem(task, error.what());
    }
  }
}

std::unique_ptr<MarkVacuum> Relay::make_mark_vacuum() {
  std::vector<std::string> quoted;
  for (const TableSpec& table : tables_) quoted.push_back(table.quoted);
  return std::make_unique<MarkVacuum>(runtime_.loop(), primary_url_, database_role_, std::move(quoted),
                                      [this](const VacuumRound& round) { vacuumed(round); });
}

void Relay::vacuumed(const VacuumRound& round) {
  const std::string task = "vacuuming the marks' dead row versions";
  if (round.problem) return side_problem(task, *round.problem);
  side_task_works(task);
  for (const std::string& partition : round.not_owned)
    if (not_owned_warned_.insert(partition).second)
      log_->warn(
          "{} holds the marks' dead row versions, but the relay's role owns neither it nor the database and cannot "
          "VACUUM it: they are left to autovacuum (relay.vacuum_interval)",
          partition);
    else
      log_->debug("{}: vacuum left to autovacuum: not owned", partition);
  for (const std::string& table : round.skipped) log_->debug("{}: vacuum skipped: another relay vacuums it", table);
  metrics_.counter("outbox_relay_vacuums_total", "").add(static_cast<uint64_t>(round.vacuumed));
  if (round.vacuumed)
    log_->debug("vacuumed {} outbox partition(s) holding {} dead row versions", round.vacuumed, round.dead_before);
}

}  // namespace outbox::relay
