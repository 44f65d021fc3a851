// outbox verify [--replica NAME] [--json] [--timeout 60s] [--table TABLE [--key COLUMN]] [--chunk-rows N]
// Compares the primary with a replica at a consistent point (ops/verify.hpp has the method).
// Exit codes (like a monitoring plugin, so that cron and CI can tell them apart):
//   0 equal, 1 drift, 3 a database cannot be reached (the line names it),
//   75 no consistent point within --timeout (the relay or replicate is behind or down),
//   64 usage, 78 configuration (an unknown replica, a schema that is not current).
#include <iostream>
#include <set>

#include "cmd/command.hpp"
#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"
#include "migrate/runner.hpp"
#include "relay/settings.hpp"
#include "replicate/event.hpp"
#include "replicate/settings.hpp"

namespace outbox::cmd {
namespace {

struct Options {
  std::string replica = "main";
  bool json = false;
  std::string timeout = "60s";
  std::vector<std::string> tables;
  std::string key;
  long long chunk_rows = 10000;
};

}  // namespace

VerifySetup verify_setup(const config::Config& config, const std::string& replica, const std::string& timeout,
                         const std::string& application) {
  const std::string& replica_url = config::replica_url(config, replica);
  std::optional<Duration> wait = parse_duration(timeout);
  if (!wait || wait->count() <= 0) throw usage_error("--timeout: not a duration (got '" + timeout + "'; e.g. 30s, 2m)");
  VerifySetup setup;
  setup.options.replica = replica;
  setup.options.replica_role = "replica " + replica;
  setup.options.timeout = *wait;
  setup.options.outbox_tables.clear();
  for (const relay::TableSpec& table : relay::tables_from_config(config, "")) setup.options.outbox_tables.push_back(table.name);
  // The mapped tables of the replica: each distinct (table, key column) of replicate.mappings.
  for (const replicate::Mapping& mapping : replicate::mappings_from_config(config)) {
    bool seen = false;
    for (const verify::TableSpec& spec : setup.tables)
      seen = seen || (spec.table == mapping.table && spec.key == mapping.key_column);
    if (!seen) setup.tables.push_back({mapping.table, mapping.key_column, {}});
  }
  setup.primary = pg::connect(config::primary_url(config), "primary", application);
  setup.replica = pg::connect(replica_url, setup.options.replica_role, application);
  migrate::require_current(*setup.primary, migrate::Target::primary, "primary");
  migrate::require_current(*setup.replica, migrate::Target::replica, setup.options.replica_role);
  verify::prepare_session(*setup.primary);
  verify::prepare_session(*setup.replica);
  return setup;
}

void add_verify_command(Registry& registry) {
  static Options o;
  CLI::App* app =
      registry.add("verify", "Compare the primary with a replica at a consistent point; exit 0 equal, 1 drift, 3 unreachable");
  app->add_option("--replica", o.replica, "Replica to compare (default: main)")->type_name("NAME");
  app->add_flag("--json", o.json, "Print one JSON document instead of one line per differing row");
  app->add_option("--timeout", o.timeout, "Longest wait for the replica to reach the primary's position (default 60s)")
      ->type_name("DURATION");
  app->add_option("--table", o.tables, "Compare only this table (repeatable; default: every table of replicate.mappings)")
      ->type_name("TABLE");
  app->add_option("--key", o.key, "Key column of the --table tables (default: the mapping's key column, else uuid)")
      ->type_name("COLUMN");
  app->add_option("--chunk-rows", o.chunk_rows, "Rows per compared chunk (default 10000)")->check(CLI::Range(1LL, 10000000LL));
  registry.on_run(app, [&registry] {
    try {
      config::Config config = load_config(registry.globals());
      VerifySetup setup = verify_setup(config, o.replica, o.timeout, "outbox verify");
      if (!o.tables.empty()) {
        std::vector<verify::TableSpec> chosen;
        for (const std::string& table : o.tables) {
          verify::TableSpec spec{table, o.key.empty() ? "uuid" : o.key, {}};
          for (const verify::TableSpec& mapped : setup.tables)
            if (mapped.table == table && o.key.empty()) spec.key = mapped.key;
          chosen.push_back(spec);
        }
        setup.tables = chosen;
      } else if (!o.key.empty()) {
        throw usage_error("verify: --key goes with --table");
      }
      setup.options.chunk_rows = o.chunk_rows;
      verify::Result result = verify::compare(*setup.primary, *setup.replica, setup.tables, setup.options);
      if (o.json) {
        std::cout << verify::render_json(result) << "\n";
      } else {
        for (const verify::Difference& difference : result.differences)
          std::cout << verify::render_line(difference, setup.options.replica_role) << "\n";
        std::cout << verify::render_summary(result) << "\n";
      }
      return result.equal() ? 0 : 1;
    } catch (const Error& error) {
      if (error.code() != ExitCode::unavailable) throw;
      std::cerr << "outbox: verify: " << escape_controls(error.what()) << "\n";
      return 3;
    }
  });
}

}  // namespace outbox::cmd
