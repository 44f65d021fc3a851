#include "relay/parked.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "core/pg.hpp"
#include "relay/outbox_row.hpp"

namespace outbox::relay {
namespace {

// The columns parked_from reads, in its order.
const std::string kParkedColumns =
    "p.id, p.outbox_table, CASE WHEN p.parked_at IS NULL THEN 'retrying' ELSE 'parked' END, p.position, "
    "coalesce(p.event_id, ''), coalesce(p.event_type, ''), coalesce(p.aggregate_type, ''), coalesce(p.aggregate_id, ''), "
    "p.attempts, " +
    pg::iso_utc("p.first_failed_at", true) + ", " + pg::iso_utc("p.last_failed_at", true) + ", coalesce(" +
    pg::iso_utc("p.parked_at", true) + ", ''), p.error";

ParkedRow parked_from(const pqxx::row& row) {
  ParkedRow p;
  pg::read_fields(row, p.id, p.table, p.state, p.position, p.event_id, p.event_type, p.aggregate_type, p.aggregate_id, p.attempts,
                  p.first_failed_at, p.last_failed_at, p.parked_at, p.error);
  return p;
}

// Unpublished rows of the parked row's aggregate after it: they wait for it.
long long waiting_behind(pqxx::transaction_base& tx, const TableSpec& table, const ParkedRow& row) {
  return tx
      .exec_params1("SELECT count(*) FROM " + table.quoted +
                        " WHERE published_at IS NULL AND aggregate_type = $1 AND aggregate_id = $2 AND position > $3",
                    row.aggregate_type, row.aggregate_id, row.position)[0]
      .as<long long>();
}

}  // namespace

ParkedRows::ParkedRows(pqxx::connection& connection, std::vector<TableSpec> tables, size_t max_message_size,
                       std::string notify_channel)
    : connection_(connection),
      tables_(std::move(tables)),
      max_message_size_(max_message_size),
      notify_channel_(std::move(notify_channel)) {
  pqxx::nontransaction tx(connection_);
  if (!tx.exec1("SELECT to_regclass('outbox_parked') IS NOT NULL")[0].as<bool>())
    throw config_error("primary: outbox_parked is missing (run 'outbox migrate --target primary')");
}

const TableSpec& ParkedRows::table_of(const ParkedRow& row) const {
  for (const TableSpec& table : tables_)
    if (table.name == row.table) return table;
  throw config_error("parked row #" + std::to_string(row.id) + " belongs to outbox table '" + row.table +
                     "', which is not in relay.tables");
}

std::vector<ParkedRow> ParkedRows::list() {
  pqxx::read_transaction tx(connection_);
  std::vector<ParkedRow> rows;
  for (const pqxx::row& row : tx.exec("SELECT " + kParkedColumns + " FROM outbox_parked p ORDER BY p.id"))
    rows.push_back(parked_from(row));
  for (ParkedRow& row : rows) {
    auto table = std::find_if(tables_.begin(), tables_.end(), [&row](const TableSpec& spec) { return spec.name == row.table; });
    if (table == tables_.end()) continue;
    row.waiting = waiting_behind(tx, *table, row);
  }
  return rows;
}

ParkedRow ParkedRows::find(long long id) {
  pqxx::read_transaction tx(connection_);
  pqxx::result found = tx.exec_params("SELECT " + kParkedColumns + " FROM outbox_parked p WHERE p.id = $1", id);
  if (found.empty()) throw data_error("no parked outbox row #" + std::to_string(id) + " (see outbox failed list --relay)");
  ParkedRow row = parked_from(found[0]);
  const TableSpec& table = table_of(row);
  pqxx::result payload = tx.exec_params("SELECT payload::text FROM " + table.quoted + " WHERE position = $1", row.position);
  if (!payload.empty() && !payload[0][0].is_null()) row.payload = payload[0][0].c_str();
  row.waiting = waiting_behind(tx, table, row);
  return row;
}

std::string ParkedRows::still_unpublishable(pqxx::transaction_base& tx, const ParkedRow& row) const {
  const TableSpec& table = table_of(row);
  pqxx::result current =
      tx.exec_params("SELECT " + row_columns(tx, table.quoted) + " FROM " + table.quoted + " WHERE position = $1", row.position);
  if (current.empty()) return "";  // the row is gone: releasing its record only lets the others go
  return message_from_row(current[0], table, amqp::kFrameMax, max_message_size_).problem;
}

void ParkedRows::wake_relay(pqxx::transaction_base& tx, const ParkedRow& row) const {
  if (!notify_channel_.empty()) tx.exec_params("SELECT pg_notify($1, $2)", notify_channel_, row.table);
}

ParkedRow ParkedRows::retry(long long id) {
  ParkedRow row = find(id);
  pqxx::work tx(connection_);
  if (std::string problem = still_unpublishable(tx, row); !problem.empty())
    throw data_error("parked outbox row #" + std::to_string(id) + " still cannot be published: " + problem +
                     " (fix the row, or discard it)");
  tx.exec_params("DELETE FROM outbox_parked WHERE id = $1", id);
  wake_relay(tx, row);
  tx.commit();
  return row;
}

std::vector<ParkedRow> ParkedRows::retry_all(std::vector<std::string>& refused) {
  std::vector<ParkedRow> released;
  for (const ParkedRow& listed : list()) {
    if (listed.state != "parked") continue;
    try {
      released.push_back(retry(listed.id));
    } catch (const Error& error) {
      if (error.code() != ExitCode::data) throw;
      refused.push_back(error.what());
    }
  }
  return released;
}

ParkedRow ParkedRows::discard(long long id) {
  ParkedRow row = find(id);
  const TableSpec& table = table_of(row);
  pqxx::work tx(connection_);
  tx.exec_params("DELETE FROM " + table.quoted + " WHERE position = $1", row.position);
  tx.exec_params("DELETE FROM outbox_parked WHERE id = $1", id);
  wake_relay(tx, row);
  tx.commit();
  return row;
}

}  // namespace outbox::relay
