#include "ops/verify_setup.hpp"

#include <optional>

#include "core/duration.hpp"
#include "core/error.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"
#include "migrate/runner.hpp"
#include "relay/settings.hpp"
#include "replicate/event.hpp"
#include "replicate/settings.hpp"

namespace outbox::verify {

Setup set_up(const config::Config& config, const std::string& replica, const std::string& timeout,
             const std::string& application) {
  const std::string& replica_url = config::replica_url(config, replica);
  std::optional<Duration> wait = parse_duration(timeout);
  if (!wait || wait->count() <= 0) throw usage_error("--timeout: not a duration (got '" + timeout + "'; e.g. 30s, 2m)");
  Setup setup;
  setup.options.replica = replica;
  setup.options.replica_role = "replica " + replica;
  setup.options.timeout = *wait;
  setup.options.outbox_tables.clear();
  for (const relay::TableSpec& table : relay::tables_from_config(config, "")) setup.options.outbox_tables.push_back(table.name);
  // The mapped tables of the replica: each distinct (table, key column) of replicate.mappings.
  for (const replicate::Mapping& mapping : replicate::mappings_from_config(config)) {
    bool seen = false;
    for (const TableSpec& spec : setup.tables) seen = seen || (spec.table == mapping.table && spec.key == mapping.key_column);
    if (!seen) setup.tables.push_back({mapping.table, mapping.key_column, {}});
  }
  setup.primary = pg::connect(config::primary_url(config), "primary", application);
  setup.replica = pg::connect(replica_url, setup.options.replica_role, application);
  migrate::require_current(*setup.primary, migrate::Target::primary, "primary");
  migrate::require_current(*setup.replica, migrate::Target::replica, setup.options.replica_role);
  prepare_session(*setup.primary);
  prepare_session(*setup.replica);
  return setup;
}

}  // namespace outbox::verify
