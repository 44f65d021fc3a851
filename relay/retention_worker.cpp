#include "relay/retention_worker.hpp"

#include "core/failpoint.hpp"
#include "core/pg.hpp"
#include "relay/statements.hpp"

namespace outbox::relay {

RetentionWorker::RetentionWorker(loop::Loop& loop, std::string url, std::string role,
                                 std::function<void(std::vector<RetentionOutcome>)> done)
    : session_(std::move(url), std::move(role), "outbox-relay-maintenance", configure_session),
      done_(std::move(done)),
      worker_(loop) {}

RetentionWorker::~RetentionWorker() {
  // The statement then ends at once (or at most at its lock timeout), and the worker is joined.
  if (worker_.busy()) session_.cancel();
}

bool RetentionWorker::start(RetentionJob job) {
  if (worker_.busy()) return false;
  worker_.run([this, job = std::move(job)] { outcomes_ = tick(job); }, [this] { done_(std::move(outcomes_)); });
  return true;
}

std::vector<RetentionOutcome> RetentionWorker::tick(const RetentionJob& job) {
  std::vector<RetentionOutcome> outcomes;
  // Each table on its own: one table's failure (a name taken, a lock, a privilege) is named and
  // tried again at the next tick, and leaves the other tables' retention to run.
  for (const RetentionTask& table : job.tables) {
    RetentionOutcome& outcome = outcomes.emplace_back();
    outcome.name = table.name;
    try {
      failpoint("relay.retention");
      pqxx::connection& session = session_.get();
      if (table.layout.partitioned)
        outcome.partitions = maintain_outbox_partitions(session, table.name, table.quoted, job.partition_size,
                                                        job.delete_on_publish ? std::chrono::milliseconds(0) : job.retention,
                                                        paces_[table.quoted], job.interval);
      // A partitioned outbox loses its old rows by dropping partitions; rows are deleted only in
      // its default partition. Any other table keeps the row-deleting retention.
      if (!job.delete_on_publish && (!table.layout.partitioned || table.layout.default_partition))
        delete_retained_rows(session, table.layout.partitioned ? *table.layout.default_partition : table.quoted, job.retention);
    } catch (const std::exception& error) {
      outcome.problem = error.what();
      if (pg::is_connection_error(error)) {
        session_.reset();  // a new session at the next tick; the tables after this one wait for it
        break;
      }
    }
  }
  return outcomes;
}

}  // namespace outbox::relay
