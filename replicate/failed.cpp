#include "replicate/failed.hpp"

#include "core/error.hpp"
#include "core/pg.hpp"
#include "core/utf8.hpp"
#include "migrate/runner.hpp"

namespace outbox::replicate {
namespace {

// The columns from_row reads, in its order; the body (bytea) last.
const char* kColumns =
    "id, replica, state, coalesce(event_id, ''), coalesce(event_type, ''), coalesce(routing_key, ''), "
    "coalesce(aggregate_type, ''), coalesce(aggregate_id, ''), aggregate_version, attempts, failed_at::text, error, "
    "properties::text, body";

FailedEvent from_row(const pqxx::row& row) {
  FailedEvent e;
  pg::read_fields(row, e.id, e.replica, e.state, e.event_id, e.event_type, e.routing_key, e.aggregate_type, e.aggregate_id,
                  e.version, e.attempts, e.failed_at, e.error, e.properties);
  e.body = pqxx::binarystring(row[13]).str();
  return e;
}

}  // namespace

FailedEvents::FailedEvents(pqxx::connection& connection, std::string replica, std::string role, std::vector<Mapping> mappings,
                           migrate::Target schema)
    : connection_(connection),
      replica_(std::move(replica)),
      role_(std::move(role)),
      applier_(connection, replica_, role_, std::move(mappings), log::get("failed " + replica_)) {
  migrate::require_current(connection_, schema, role_);
  applier_.prepare();
}

std::vector<FailedEvent> FailedEvents::list() {
  pqxx::read_transaction tx(connection_);
  std::vector<FailedEvent> out;
  for (const auto& row :
       tx.exec_params(std::string("SELECT ") + kColumns + " FROM outbox_failed_events WHERE replica = $1 ORDER BY id", replica_))
    out.push_back(from_row(row));
  return out;
}

FailedEvent FailedEvents::find(long long id) {
  pqxx::read_transaction tx(connection_);
  pqxx::result rows = tx.exec_params(
      std::string("SELECT ") + kColumns + " FROM outbox_failed_events WHERE replica = $1 AND id = $2", replica_, id);
  if (rows.empty()) throw data_error(role_ + ": no failed event #" + std::to_string(id) + " (see 'outbox failed list')");
  FailedEvent out = from_row(rows[0]);
  if (!out.aggregate_id.empty())
    for (const auto& row : tx.exec_params("SELECT id FROM outbox_failed_events WHERE replica = $1 AND aggregate_type = $2 "
                                          "AND aggregate_id = $3 AND id > $4 ORDER BY id",
                                          replica_, out.aggregate_type, out.aggregate_id, id))
      out.waiting.push_back(row[0].as<long long>());
  return out;
}

ChainResult FailedEvents::run_chain(long long id, bool drop_head, FailedEvent* dropped) {
  ChainResult result;
  result.head = id;
  pqxx::work tx(connection_, "failed");
  applier_.lock(tx);
  pqxx::result head = tx.exec_params(
      std::string("SELECT ") + kColumns + " FROM outbox_failed_events WHERE replica = $1 AND id = $2 FOR UPDATE", replica_, id);
  if (head.empty()) throw data_error(role_ + ": no failed event #" + std::to_string(id) + " (see 'outbox failed list')");
  FailedEvent first = from_row(head[0]);
  std::vector<FailedEvent> chain;
  // Rows parked by versions before 2026-11-30 may name half an aggregate: they block nothing either.
  if (first.aggregate_id.empty() || first.aggregate_type.empty()) {
    chain.push_back(first);
  } else {
    for (const auto& row : tx.exec_params(std::string("SELECT ") + kColumns +
                                              " FROM outbox_failed_events WHERE replica = $1 AND aggregate_type = $2 "
                                              "AND aggregate_id = $3 ORDER BY id FOR UPDATE",
                                          replica_, first.aggregate_type, first.aggregate_id))
      chain.push_back(from_row(row));
    if (chain.front().id != id)
      throw data_error(role_ + ": #" + std::to_string(id) + " waits behind #" + std::to_string(chain.front().id) +
                       " of the same aggregate (" + first.aggregate_type + " " + first.aggregate_id + "); retry or discard #" +
                       std::to_string(chain.front().id) + " first");
  }
  size_t start = 0;
  if (drop_head) {
    tx.exec_params("DELETE FROM outbox_failed_events WHERE id = $1", id);
    if (dropped) *dropped = chain.front();
    start = 1;
  }
  Counts counts;
  for (size_t i = start; i < chain.size(); ++i) {
    const FailedEvent& event = chain[i];
    amqp::IncomingMessage message = message_from_stored(event.properties, event.body);
    std::string error = applier_.apply_one(tx, message, counts);
    if (error.empty()) {
      tx.exec_params("DELETE FROM outbox_failed_events WHERE id = $1", event.id);
      result.applied.push_back(event.id);
      continue;
    }
    tx.exec_params(
        "UPDATE outbox_failed_events SET state = 'parked', attempts = attempts + 1, error = $2, "
        "failed_at = clock_timestamp() WHERE id = $1",
        event.id, utf8::storable_copy(error));
    result.failed = event.id;
    result.error = error;
    result.remaining = static_cast<long long>(chain.size() - i);
    break;
  }
  tx.commit();
  return result;
}

ChainResult FailedEvents::retry(long long id) { return run_chain(id, false, nullptr); }

ChainResult FailedEvents::discard(long long id, FailedEvent& discarded) { return run_chain(id, true, &discarded); }

std::vector<ChainResult> FailedEvents::retry_all() {
  std::vector<long long> heads;
  {
    pqxx::read_transaction tx(connection_);
    for (const auto& row : tx.exec_params(
             "SELECT f.id FROM outbox_failed_events f WHERE f.replica = $1 AND (f.aggregate_id IS NULL OR NOT EXISTS "
             "(SELECT 1 FROM outbox_failed_events g WHERE g.replica = f.replica AND g.aggregate_type = f.aggregate_type "
             "AND g.aggregate_id = f.aggregate_id AND g.id < f.id)) ORDER BY f.id",
             replica_))
      heads.push_back(row[0].as<long long>());
  }
  std::vector<ChainResult> out;
  for (long long id : heads) out.push_back(retry(id));
  return out;
}

}  // namespace outbox::replicate
