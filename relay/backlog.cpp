#include "relay/backlog.hpp"

#include <iterator>
#include <utility>

#include "core/pg.hpp"
#include "core/settings.hpp"
#include "relay/parked_rows.hpp"
#include "relay/partitions.hpp"
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

// A row's created_at for its age: the writers' own, and an infinite one ('infinity', '-infinity')
// has none. Subtracted from now, it failed the statement ("cannot subtract infinite timestamps"),
// and `outbox lag` called the primary unreachable; its age now reads as unknown (NULL).
constexpr const char* kFiniteCreatedAt = "CASE WHEN isfinite(o.created_at) THEN o.created_at END";

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
      tx.exec_params1("SELECT count(*), extract(epoch FROM clock_timestamp() - (SELECT " + std::string(kFiniteCreatedAt) +
                          " FROM " + quoted + " o WHERE published_at IS NULL" + held +
                          " ORDER BY position LIMIT 1))::float8 FROM " + quoted + " o WHERE published_at IS NULL" + held,
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

OwnedStage read_owned_table(pqxx::transaction_base& tx, const std::string& table, int partitions,
                            const std::string& owned_partitions, long long count_limit) {
  OwnedStage stage;
  stage.table = table;
  std::string quoted = pg::quote_qualified(table);
  bool has_parked = tx.exec1(parked_rows::kExistsSql)[0].as<bool>();
  // The partition of a row is the relay's (relay/statements.cpp, read_owned).
  std::string owned = " AND " + relay::row_partition_sql("o.aggregate_id", "$2") + " = ANY($3::int[])";
  std::string held = has_parked ? " AND " + parked_rows::not_held("$1") : " AND $1::text IS NOT NULL";
  // The first count_limit unpublished rows by position, whoever owns them, and of those the ones
  // this relay owns. The limit applies before the ownership filter, so that the scan is bounded
  // whatever the relay owns: limited after it, a relay owning a few partitions (or none, as one
  // held back by another relay.partitions) would walk the whole backlog to find count_limit rows.
  const std::string first_rows =
      " FROM (SELECT * FROM " + quoted + " WHERE published_at IS NULL ORDER BY position LIMIT $4) o WHERE true" + held + owned;
  stage.unpublished =
      tx.exec_params1("SELECT count(*)" + first_rows, table, partitions, owned_partitions, count_limit)[0].as<long long>();
  pqxx::result first = tx.exec_params("SELECT extract(epoch FROM clock_timestamp() - " + std::string(kFiniteCreatedAt) +
                                          ")::float8" + first_rows + " ORDER BY o.position LIMIT 1",
                                      table, partitions, owned_partitions, count_limit);
  if (!first.empty()) stage.oldest_unpublished_age = pg::optional_field<double>(first[0][0]);
  if (has_parked)
    stage.parked = tx.exec_params1("SELECT count(*) FROM outbox_parked p JOIN " + quoted +
                                       " o ON o.position = p.position AND o.published_at IS NULL WHERE p.outbox_table = $1 "
                                       "AND p.parked_at IS NOT NULL AND " +
                                       relay::row_partition_sql("p.aggregate_id", "$2") + " = ANY($3::int[])",
                                   table, partitions, owned_partitions)[0]
                       .as<long long>();
  return stage;
}

namespace {
// The owned-backlog gauges, each with its help text, in the order of OwnedStage.
constexpr std::pair<const char*, const char*> kOwnedGauges[] = {
    {"outbox_relay_backlog_rows",
     "Unpublished rows in the partitions this relay owns (sum over relays), counted up to relay.backlog_count_limit"},
    {"outbox_relay_oldest_unpublished_seconds",
     "Age of the oldest unpublished row in the partitions this relay owns (0 when none waits; max over relays)"},
    {"outbox_relay_parked_rows",
     "Rows parked now because the broker can never take them, in the partitions this relay owns (outbox failed list "
     "--relay)"},
};
}  // namespace

void set_owned_gauges(metrics::Registry& registry, const OwnedStage& stage, const std::string& owner) {
  metrics::Labels labels = {{"table", stage.table}, {"owner", owner}};
  double values[] = {static_cast<double>(stage.unpublished), stage.oldest_unpublished_age.value_or(0),
                     static_cast<double>(stage.parked)};
  for (size_t i = 0; i < std::size(kOwnedGauges); ++i)
    registry.gauge(kOwnedGauges[i].first, kOwnedGauges[i].second, labels).set(values[i]);
}

void clear_owned_gauges(metrics::Registry& registry, const std::string& table, const std::string& owner) {
  for (const auto& [name, help] : kOwnedGauges) registry.gauge(name, help, {{"table", table}, {"owner", owner}}).clear();
}

}  // namespace outbox::lag
