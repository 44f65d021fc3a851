#include "relay/mark_vacuum.hpp"

namespace outbox::relay {

MarkVacuum::MarkVacuum(loop::Loop& loop, std::string url, std::string role, std::vector<std::string> quoted_tables,
                       std::function<void(const VacuumRound&)> done)
    : session_(std::move(url), std::move(role), "outbox-relay-vacuum"),
      tables_(std::move(quoted_tables)),
      done_(std::move(done)),
      worker_(loop),
      timer_(loop, [this] { start_round(); }) {}

MarkVacuum::~MarkVacuum() {
  timer_.stop();
  // The VACUUM then ends at once, or runs to its end, which the worker's destructor waits for.
  if (worker_.busy()) session_.cancel();
}

void MarkVacuum::set_interval(std::chrono::milliseconds interval) {
  if (interval.count() > 0)
    timer_.start(interval, interval);
  else
    timer_.stop();
}

void MarkVacuum::start_round() {
  if (worker_.busy()) return;  // a long VACUUM: this round is skipped
  worker_.run([this] { result_ = round(); }, [this] { done_(result_); });
}

VacuumRound MarkVacuum::round() {
  VacuumRound result;
  try {
    pqxx::connection& connection = session_.get();
    for (const std::string& table : tables_) {
      pqxx::nontransaction tx(connection);
      if (tx.exec_params1("SELECT relkind <> 'p' FROM pg_class WHERE oid = $1::regclass", table)[0].as<bool>()) continue;
      if (!locked_.count(table)) {
        if (!tx.exec_params1("SELECT pg_try_advisory_lock($1, hashint8($2::regclass::oid::bigint))", kMarkVacuumLockClass,
                             table)[0]
                 .as<bool>()) {
          result.skipped.push_back(table);  // another relay vacuums this table
          continue;
        }
        locked_.insert(table);
      }
      // The statistics lag by up to a second (each backend sends its counts at most once a
      // second), which only moves a partition to the next round.
      pqxx::result partitions = tx.exec_params(
          "SELECT format('%I.%I', s.schemaname, s.relname), s.n_dead_tup, pg_has_role(c.relowner, 'USAGE') OR "
          "pg_has_role(d.datdba, 'USAGE') "
          "FROM pg_partition_tree($1::regclass) t JOIN pg_stat_user_tables s ON s.relid = t.relid "
          "JOIN pg_class c ON c.oid = t.relid JOIN pg_database d ON d.datname = current_database() WHERE t.isleaf AND "
          "s.n_dead_tup >= $2 ORDER BY s.n_dead_tup DESC",
          table, kMinDeadTuples);
      for (const pqxx::row& partition : partitions) {
        std::string name = partition[0].as<std::string>();
        if (!partition[2].as<bool>()) {
          result.not_owned.push_back(name);
          continue;
        }
        tx.exec("VACUUM (SKIP_LOCKED) " + name);
        ++result.vacuumed;
        result.dead_before += partition[1].as<long long>();
      }
    }
  } catch (const std::exception& error) {
    result.problem = error.what();
    // A new session at the next round: this one may be broken, and its advisory locks go with it.
    session_.reset();
    locked_.clear();
  }
  return result;
}

}  // namespace outbox::relay
