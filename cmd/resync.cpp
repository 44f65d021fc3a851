// outbox resync [--table TABLE] [--replica NAME] (--uuid UUID ... | --key KEY ... | --all) [--timeout 60s]
//               [--aggregate-type TYPE] [--progress auto|always|never]
// Repairs drift of a mapped table through the normal outbox path (ops/resync.hpp has the method):
// fresh full-state events of its upsert mapping for rows the primary has, of its delete mapping for
// rows it no longer has. --all resyncs every row of the table that `outbox verify --replica NAME`
// finds different. The table is parking_slots unless --table names another.
#include "ops/resync.hpp"

#include <unistd.h>

#include <iostream>
#include <set>

#include "cmd/command.hpp"
#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/pg.hpp"
#include "core/progress.hpp"
#include "core/settings.hpp"
#include "examples/parking/parking.hpp"
#include "ops/verify_setup.hpp"
#include "replicate/settings.hpp"

namespace outbox::cmd {
namespace {

struct ResyncOptions {
  std::string table = "parking_slots";
  std::string replica = "main";
  std::vector<std::string> uuids, keys;
  bool all = false;
  std::string timeout = "60s";
  std::string aggregate_type;
  std::string progress = "auto";
};

// "parking_slots" and "public.parking_slots" are one table.
bool same_table(const std::string& a, const std::string& b) { return a == b || "public." + a == b || a == "public." + b; }
bool is_parking(const std::string& table) { return same_table(table, "parking_slots"); }

// The aggregate type of the table's events, from those still in the primary's outbox: exactly one,
// or the user names it (a guess would give the repair events versions in another scope than the
// writer's, and an older event in flight could then overwrite the repaired row).
std::string aggregate_type_in_outbox(pqxx::connection& primary, const std::string& outbox_table, const std::string& table,
                                     const std::vector<std::string>& event_types) {
  std::vector<std::string> found;
  pg::with_context("primary", [&] {
    pqxx::nontransaction tx(primary);
    for (const auto& row : tx.exec_params("SELECT DISTINCT aggregate_type FROM " + pg::quote_qualified(outbox_table) +
                                              " WHERE event_type = ANY($1::text[]) ORDER BY 1 LIMIT 2",
                                          pg::array_literal(event_types)))
      found.push_back(row[0].as<std::string>());
    return 0;
  });
  if (found.size() == 1) return found[0];
  throw usage_error("resync: " + escape_controls(table) + ": " +
                    (found.empty() ? std::string("no event of its mappings is left in ") + outbox_table
                                   : "its events in " + outbox_table + " have several aggregate types (" +
                                         escape_controls(found[0] + ", " + found[1]) + ")") +
                    ", so the aggregate type of its rows is not known; give --aggregate-type TYPE");
}

// The table and its events, from replicate.mappings: the last upsert mapping of the table (any of
// them writes the row alike; for parking_slots that is parking.update) and its delete mapping.
resync::Table table_of(const config::Config& config, const ResyncOptions& o, pqxx::connection& primary,
                       const std::string& outbox_table) {
  resync::Table table;
  table.table = o.table;
  table.upsert_event.clear();
  table.delete_event.clear();
  std::vector<std::string> event_types;
  for (const replicate::Mapping& mapping : replicate::mappings_from_config(config)) {
    if (mapping.is_handler() || !same_table(mapping.table, o.table)) continue;
    table.table = mapping.table;
    table.key_column = mapping.key_column;
    event_types.push_back(mapping.event_type);
    if (mapping.operation == replicate::Operation::upsert)
      table.upsert_event = mapping.event_type;
    else if (table.delete_event.empty())
      table.delete_event = mapping.event_type;
  }
  if (table.upsert_event.empty())
    throw config_error("resync: replicate.mappings has no upsert mapping for table " + escape_controls(o.table) +
                       "; resync repairs a mapped table");
  if (!o.aggregate_type.empty())
    table.aggregate_type = o.aggregate_type;
  else if (is_parking(table.table))
    table.aggregate_type = parking::kAggregateType;
  else
    table.aggregate_type = aggregate_type_in_outbox(primary, outbox_table, o.table, event_types);
  return table;
}

// "parking slot UUID" or "row products sku=KEY": how a line names the row.
std::string row_name(const resync::Table& table, const std::string& key) {
  if (is_parking(table.table)) return "parking slot " + key;
  return "row " + escape_controls(table.table + " " + table.key_column + "=" + key);
}

// Prints one line per row and the summary; returns the exit status.
int report(const resync::Table& table, const std::vector<resync::Outcome>& outcomes, const std::string& outbox_table) {
  long long updates = 0, deletes = 0, unknown = 0, failed = 0;
  for (const resync::Outcome& outcome : outcomes) {
    switch (outcome.action) {
      case resync::Outcome::Action::update:
        ++updates;
        std::cout << "resynced " << escape_controls(outcome.key) << ": " << table.upsert_event << " v" << outcome.version << "\n";
        break;
      case resync::Outcome::Action::remove:
        ++deletes;
        std::cout << "resynced " << escape_controls(outcome.key) << ": " << table.delete_event << " v" << outcome.version << "\n";
        break;
      case resync::Outcome::Action::unknown:
        ++unknown;
        std::cerr << "outbox: resync: " << row_name(table, outcome.key)
                  << " is on neither the primary nor any replica; nothing to resync\n";
        break;
      case resync::Outcome::Action::failed:
        ++failed;
        std::cerr << "outbox: resync: " << row_name(table, outcome.key)
                  << " cannot be repaired: " << escape_controls(outcome.problem) << "\n";
        break;
    }
  }
  // Nothing resynced: the lines above say why, and a "0 row(s) resynced" would only read like success.
  if (updates + deletes > 0)
    std::cout << "resync: " << (updates + deletes) << " row(s) resynced (" << updates << " " << table.upsert_event << ", "
              << deletes << " " << (table.delete_event.empty() ? "delete" : table.delete_event) << ") through " << outbox_table
              << "; every replica applies them\n";
  return unknown + failed > 0 ? static_cast<int>(ExitCode::data) : 0;
}

// The keys of the rows of `table` that verify finds different on --replica.
std::vector<std::string> drifted_keys(const config::Config& config, const ResyncOptions& o, const resync::Table& table,
                                      const progress::Callback& progress) {
  verify::Setup setup = verify::set_up(config, o.replica, o.timeout, "outbox resync");
  std::vector<verify::TableSpec> tables;
  for (const verify::TableSpec& spec : setup.tables)
    if (same_table(spec.table, table.table) && spec.key == table.key_column) tables.push_back(spec);
  setup.options.progress = progress;
  verify::Result result = verify::compare(*setup.primary, *setup.replica, tables, setup.options);
  std::vector<std::string> keys;
  for (const verify::Difference& difference : result.differences) keys.push_back(difference.key);
  return keys;
}

int run(Registry& registry, const ResyncOptions& o) {
  progress::Mode mode = progress::parse_mode(o.progress, "--progress");
  if (o.uuids.empty() && o.keys.empty() && !o.all)
    throw usage_error("resync: give --uuid UUID or --key KEY (repeatable), or --all");
  std::vector<std::string> keys;
  for (const std::string& text : o.uuids) keys.push_back(parking::normalize_uuid(text));
  keys.insert(keys.end(), o.keys.begin(), o.keys.end());
  config::Config config = load_config(registry.globals());
  std::string outbox_table(kDefaultOutboxTable);
  auto primary = pg::connect(config::primary_url(config), "primary", "outbox resync");
  resync::Table table = table_of(config, o, *primary, outbox_table);
  // Every configured replica: the new versions must beat each one's (ops/resync.hpp).
  std::vector<std::unique_ptr<pqxx::connection>> connections;
  std::vector<resync::Replica> replicas;
  for (const std::string& name : config.replica_names()) {
    connections.push_back(pg::connect(config::replica_url(config, name), "replica " + name, "outbox resync"));
    replicas.push_back({"replica " + name, connections.back().get()});
  }
  progress::Reporter reporter(STDERR_FILENO, progress::enabled(mode, STDERR_FILENO));
  if (o.all) {
    std::vector<std::string> drifted = drifted_keys(config, o, table, reporter.callback());
    if (drifted.empty()) {
      reporter.clear();
      std::cout << "resync: replica " << o.replica << " equals the primary in " << escape_controls(table.table)
                << "; nothing to resync\n";
      return 0;
    }
    keys.insert(keys.end(), drifted.begin(), drifted.end());
  }
  resync::Options options;
  options.outbox_table = outbox_table;
  options.table = table;
  options.progress = reporter.callback();
  std::vector<resync::Outcome> outcomes = resync::resync(*primary, replicas, keys, options);
  reporter.clear();
  return report(table, outcomes, outbox_table);
}

}  // namespace

void add_resync_command(Registry& registry) {
  static ResyncOptions o;
  CLI::App* app = registry.add("resync",
                               "Repair drift: emit fresh full-state events for the chosen rows of a mapped table (parking slots "
                               "by default) through the outbox");
  app->add_option("--table", o.table, "The mapped table to repair (default: parking_slots)")->type_name("TABLE");
  CLI::Option* replica =
      app->add_option("--replica", o.replica, "With --all: the replica to compare against (default: main)")->type_name("NAME");
  CLI::Option* uuid = app->add_option("--uuid", o.uuids, "A row to resync by its uuid key (repeatable)")->type_name("UUID");
  CLI::Option* key =
      app->add_option("--key", o.keys, "A row to resync by its key, of any key type (repeatable)")->type_name("KEY");
  CLI::Option* all = app->add_flag("--all", o.all, "Resync every row of the table that verify finds different on --replica");
  uuid->excludes(all);
  key->excludes(all);
  CLI::Option* timeout = app->add_option("--timeout", o.timeout, "With --all: longest wait for a consistent point (default 60s)")
                             ->type_name("DURATION");
  app->add_option("--aggregate-type", o.aggregate_type,
                  "Aggregate type of the table's events (default: parking_slot for parking_slots, else the one in the outbox)")
      ->type_name("TYPE");
  app->add_option("--progress", o.progress,
                  "Progress and ETA on stderr: auto (when stderr is a terminal), always or never (default auto)")
      ->type_name("WHEN");
  // Read only with --all: silently ignoring them would hide a mistake.
  replica->needs(all);
  timeout->needs(all);
  registry.on_run(app, [&registry] { return run(registry, o); });
}

}  // namespace outbox::cmd
