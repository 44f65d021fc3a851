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

// The part of a table's stage in the partitions one relay owns: what its /metrics export, so that a
// sum over every relay's is the table's (each relay exporting the whole table counted it once per
// relay). `owned_partitions` is an int array literal such as "{0,3}" of `partitions`.
// The relay reads it on its event loop at every rebalance, so its cost is bounded: only the first
// `count_limit` unpublished rows by position are read (relay.backlog_count_limit), whatever this
// relay owns, and of them the ones it owns are counted; the age is the first owned one's among
// them (not a min() over the whole backlog), none when it owns none of them.
struct OwnedStage {
  std::string table;
  long long unpublished = 0;  // as TableStage: parked rows and rows held behind them apart; of the first count_limit
  std::optional<double> oldest_unpublished_age;  // seconds; none when nothing is unpublished
  long long parked = 0;
};
OwnedStage read_owned_table(pqxx::transaction_base& tx, const std::string& table, int partitions,
                            const std::string& owned_partitions, long long count_limit);

// Gauges for /metrics, labelled {table, owner}: outbox_relay_backlog_rows,
// outbox_relay_oldest_unpublished_seconds (0 when nothing waits) and outbox_relay_parked_rows.
void set_owned_gauges(metrics::Registry& registry, const OwnedStage& stage, const std::string& owner);
// The relay no longer knows them (its database connection is gone): the series are left out.
void clear_owned_gauges(metrics::Registry& registry, const std::string& table, const std::string& owner);

}  // namespace outbox::lag
