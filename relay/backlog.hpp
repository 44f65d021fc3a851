#pragma once
// The relay's stage of the lag measure (ops/lag.hpp has the whole measure): how many rows of an
// outbox table wait to be published and for how long. Read by the relay for its gauges and by
// `outbox lag` and `outbox check`, so they all agree.
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/metrics.hpp"

namespace outbox::lag {

struct TableStage {
  std::string table;  // "public.outbox"
  // Unpublished rows the relay will publish: parked rows and the rows waiting behind them are
  // counted apart, so that one poison row does not make the whole pipeline look ever further behind.
  long long unpublished = 0;
  std::optional<double> oldest_unpublished_age;  // seconds; none when nothing is unpublished
  std::optional<std::string> last_published_at;  // ISO 8601 UTC; none in on_publish = delete mode
  std::optional<double> last_published_age;
  long long parked = 0;   // rows the relay parked (outbox_parked): the broker can never take them
  long long waiting = 0;  // unpublished rows of an aggregate with a parked row, held back in order
};

// Reads the table's stage in the caller's transaction.
TableStage read_table(pqxx::transaction_base& tx, const std::string& table);

// Every table of relay.tables on the primary.
struct PrimaryStage {
  std::string error;  // "" when it was read; else why not (unreachable, not migrated)
  std::vector<TableStage> tables;
  long long unpublished() const;
  std::optional<double> oldest_unpublished_age() const;
};

// Connects to the primary (or, for `service`, to services.NAME.url: the outbox its relay
// publishes) and reads every relay table's stage; a database that cannot be read leaves `error`
// set (never throws for that, but for a service that is not configured: Error(config)).
PrimaryStage read_primary(const config::Config& config, const std::string& service = "");

// Gauges for /metrics: outbox_relay_backlog, outbox_relay_oldest_unpublished_seconds and
// outbox_relay_parked{table}.
void set_table_gauges(metrics::Registry& registry, const TableStage& table);

}  // namespace outbox::lag
