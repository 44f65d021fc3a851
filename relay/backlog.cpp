#include "relay/backlog.hpp"

#include "core/pg.hpp"
#include "core/settings.hpp"
#include "relay/parked_rows.hpp"
#include "relay/settings.hpp"

namespace outbox::lag {

long long PrimaryStage::unpublished() const {
  long long total = 0;
  for (const TableStage& table : tables) total += table.unpublished;
  return total;
}

std::optional<double> PrimaryStage::oldest_unpublished_age() const {
  std::optional<double> oldest;
  for (const TableStage& table : tables)
    if (table.oldest_unpublished_age && (!oldest || *table.oldest_unpublished_age > *oldest))
      oldest = table.oldest_unpublished_age;
  return oldest;
}

PrimaryStage read_primary(const config::Config& config, const std::string& service) {
  PrimaryStage stage;
  std::string role = service.empty() ? "primary" : "service " + service;
  std::string url = service.empty() ? std::string() : config::service_url(config, service, "lag");
  try {
    std::vector<relay::TableSpec> tables = relay::tables_from_config(config, "");
    auto connection = pg::connect(service.empty() ? config::primary_url(config) : url, role, "outbox lag");
    pqxx::read_transaction tx(*connection);
    for (const relay::TableSpec& table : tables) stage.tables.push_back(read_table(tx, table.name));
  } catch (const std::exception& error) {
    stage.error = pg::failure_line(error, role);
  }
  return stage;
}

TableStage read_table(pqxx::transaction_base& tx, const std::string& table) {
  TableStage stage;
  stage.table = table;
  std::string quoted = pg::quote_qualified(table);
  // A primary not yet migrated to parked rows has none.
  bool has_parked = tx.exec1(parked_rows::kExistsSql)[0].as<bool>();
  // Rows of an aggregate with a parked row wait behind it: not part of the backlog the relay works on.
  std::string held = has_parked ? " AND " + parked_rows::not_held("$1") : "";
  // Both use the outbox's indexes: the partial index of unpublished rows, and the primary key
  // walked backwards from the newest position (unpublished rows are few and at the end).
  pqxx::row backlog =
      tx.exec_params1("SELECT count(*), extract(epoch FROM clock_timestamp() - (SELECT created_at FROM " + quoted +
                          " o WHERE published_at IS NULL" + held + " ORDER BY position LIMIT 1))::float8 FROM " + quoted +
                          " o WHERE published_at IS NULL" + held,
                      table);
  stage.unpublished = backlog[0].as<long long>();
  stage.oldest_unpublished_age = pg::optional_field<double>(backlog[1]);
  if (has_parked) {
    pqxx::row parked = tx.exec_params1(
        "SELECT count(*) FILTER (WHERE o.position = p.position), count(*) FILTER (WHERE o.position > p.position) "
        "FROM outbox_parked p JOIN " +
            quoted +
            " o ON o.aggregate_type = p.aggregate_type AND o.aggregate_id = p.aggregate_id AND o.position >= p.position "
            "AND o.published_at IS NULL WHERE p.outbox_table = $1 AND p.parked_at IS NOT NULL",
        table);
    stage.parked = parked[0].as<long long>();
    stage.waiting = parked[1].as<long long>();
  }
  pqxx::result last =
      tx.exec("SELECT " + pg::iso_utc("published_at") + ", extract(epoch FROM clock_timestamp() - published_at)::float8 FROM " +
              quoted + " WHERE published_at IS NOT NULL ORDER BY position DESC LIMIT 1");
  if (!last.empty()) {
    stage.last_published_at = pg::optional_field<std::string>(last[0][0]);
    stage.last_published_age = pg::optional_field<double>(last[0][1]);
  }
  return stage;
}

void set_table_gauges(metrics::Registry& registry, const TableStage& table) {
  metrics::Labels labels = {{"table", table.table}};
  registry.gauge("outbox_relay_backlog", "Unpublished rows in the outbox table", labels)
      .set(static_cast<double>(table.unpublished));
  registry.gauge("outbox_relay_oldest_unpublished_seconds", "Age of the oldest unpublished row (0 when none)", labels)
      .set(table.oldest_unpublished_age.value_or(0));
  registry.gauge("outbox_relay_parked", "Rows parked because the broker can never take them (outbox failed list --relay)", labels)
      .set(static_cast<double>(table.parked));
}

}  // namespace outbox::lag
