#include "relay/relay.hpp"

// The relay's upkeep of its outbox tables beside publishing, both off the loop: retention
// (partitions dropped and made, or rows deleted) every relay.maintenance_interval
// (relay/retention_worker.hpp), and the vacuum of the marks' dead row versions
// (relay/mark_vacuum.hpp).
namespace outbox::relay {

void Relay::run_retention() {
  if (!db_) {
    log_->debug("maintenance: the primary is not connected; the next tick comes within a second of connecting");
    return;
  }
  RetentionJob job{.partition_size = tunables_.partition_size,
                   .retention = tunables_.retention,
                   .interval = tunables_.maintenance_interval,
                   .delete_on_publish = tunables_.delete_on_publish};
  for (size_t table = 0; table < tables_.size(); ++table)
    job.tables.push_back(RetentionTask{tables_[table].name, tables_[table].quoted, layouts_[table]});
  if (!retention_worker_->start(std::move(job))) log_->debug("maintenance: the last tick still runs; this one is skipped");
}

void Relay::retained(const std::vector<RetentionOutcome>& outcomes) {
  for (const RetentionOutcome& outcome : outcomes) {
    const std::string task = "retention of " + outcome.name;
    if (outcome.problem) {
      side_problem(task, *outcome.problem);
      clear_partition_gauges(outcome.name);
      continue;
    }
    if (const std::optional<MaintenanceResult>& done = outcome.partitions) {
      if (done->created || done->dropped)
        log_->info("{}: created {} and dropped {} partition(s)", outcome.name, done->created, done->dropped);
      if (done->lock_busy)
        log_->debug("{}: partition maintenance waited too long for a lock; again at the next tick", outcome.name);
      if (done->skipped) log_->debug("{}: partition maintenance skipped: another relay holds its lock", outcome.name);
      if (done->cut_deferred)
        log_->debug("{}: no partition is cut while the default partition holds rows (retention empties it)", outcome.name);
      watch_partitions(outcome.name, *done);
    }
    side_task_works(task);
  }
}

namespace {

metrics::Gauge& partitions_ahead_gauge(metrics::Registry& registry, const std::string& table) {
  return registry.gauge("outbox_relay_partitions_ahead",
                        "Partitions of the outbox the relay aims to keep ahead of the writers, at this relay's last maintenance "
                        "of it",
                        {{"table", table}});
}

metrics::Gauge& default_partition_gauge(metrics::Registry& registry, const std::string& table) {
  return registry.gauge("outbox_relay_default_partition_in_use",
                        "1 while the outbox's default partition holds rows (no partition covered them when written), at this "
                        "relay's last maintenance of it",
                        {{"table", table}});
}

}  // namespace

// Left out while this relay's figures of the table are not current: another relay did the last
// tick, the tick failed, or the primary is lost. A stale 1 would keep the alert firing through
// max() after the relay that did the work saw the default partition empty.
void Relay::clear_partition_gauges(const std::string& table) {
  partitions_ahead_gauge(metrics_, table).clear();
  default_partition_gauge(metrics_, table).clear();
}

// Says once, when it changes, how many partitions the pace asks for ahead, and whether the
// default partition holds rows: rows no partition covered when they were written, most often
// because the writers passed the partitions ahead. The gauges say the same at every tick.
void Relay::watch_partitions(const std::string& table, const MaintenanceResult& done) {
  if (!done.surveyed) return clear_partition_gauges(table);
  partitions_ahead_gauge(metrics_, table).set(done.partitions_ahead);
  default_partition_gauge(metrics_, table).set(done.cut_deferred ? 1 : 0);
  PartitionWatch& watch = partition_watch_[table];
  if (done.partitions_ahead != watch.partitions_ahead)
    log_->info("{}: the pace now asks for {} partitions ahead of the writers (their fastest tick of late: {:.0f} positions/s)",
               table, done.partitions_ahead, done.peak_rate);
  if (done.cut_deferred && !watch.default_holds_rows)
    log_->warn(
        "{}: the default partition holds rows (up to position {}) that no partition covered when they were written; they "
        "stay there until relay.retention removes them, and no partition is cut meanwhile",
        table, done.highest_in_default);
  if (!done.cut_deferred && watch.default_holds_rows) log_->info("{}: the default partition is empty again", table);
  watch = {done.partitions_ahead, done.cut_deferred};
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
