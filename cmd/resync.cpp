// outbox resync [--replica NAME] (--uuid UUID ... | --all) [--timeout 60s]
// Repairs drift through the normal outbox path (ops/resync.hpp has the method): fresh full-state
// parking.update events for rows the primary has, parking.delete events for rows it no longer has.
// --all resyncs every row that `outbox verify --replica NAME` finds different.
#include "ops/resync.hpp"

#include <iostream>
#include <set>

#include "cmd/command.hpp"
#include "core/error.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"
#include "examples/parking/parking.hpp"
#include "ops/verify_setup.hpp"

namespace outbox::cmd {
namespace {

struct Options {
  std::string replica = "main";
  std::vector<std::string> uuids;
  bool all = false;
  std::string timeout = "60s";
};

}  // namespace

void add_resync_command(Registry& registry) {
  static Options o;
  CLI::App* app =
      registry.add("resync", "Repair drift: emit fresh full-state events for the chosen parking slots through the outbox");
  CLI::Option* replica =
      app->add_option("--replica", o.replica, "With --all: the replica to compare against (default: main)")->type_name("NAME");
  CLI::Option* uuid = app->add_option("--uuid", o.uuids, "A parking slot to resync (repeatable)")->type_name("UUID");
  CLI::Option* all = app->add_flag("--all", o.all, "Resync every row that verify finds different on --replica");
  uuid->excludes(all);
  CLI::Option* timeout = app->add_option("--timeout", o.timeout, "With --all: longest wait for a consistent point (default 60s)")
                             ->type_name("DURATION");
  // Read only with --all: silently ignoring them would hide a mistake.
  replica->needs(all);
  timeout->needs(all);
  registry.on_run(app, [&registry] {
    if (o.uuids.empty() && !o.all) throw usage_error("resync: give --uuid UUID (repeatable) or --all");
    std::vector<std::string> uuids;
    std::set<std::string> seen;
    for (const std::string& text : o.uuids) {
      std::string canonical = parking::normalize_uuid(text);
      if (seen.insert(canonical).second) uuids.push_back(canonical);
    }
    config::Config config = load_config(registry.globals());
    std::string outbox_table(kDefaultOutboxTable);
    auto primary = pg::connect(config::primary_url(config), "primary", "outbox resync");
    // Every configured replica: the new versions must beat each one's (ops/resync.hpp).
    std::vector<std::unique_ptr<pqxx::connection>> connections;
    std::vector<resync::Replica> replicas;
    for (const std::string& name : config.replica_names()) {
      connections.push_back(pg::connect(config::replica_url(config, name), "replica " + name, "outbox resync"));
      replicas.push_back({"replica " + name, connections.back().get()});
    }
    if (o.all) {
      verify::Setup setup = verify::set_up(config, o.replica, o.timeout, "outbox resync");
      std::vector<verify::TableSpec> tables;
      for (const verify::TableSpec& spec : setup.tables)
        if (spec.table == "parking_slots" || spec.table == "public.parking_slots") tables.push_back(spec);
      if (tables.empty())
        throw config_error("resync: replicate.mappings maps no parking_slots table; resync repairs parking slots");
      verify::Result result = verify::compare(*setup.primary, *setup.replica, tables, setup.options);
      for (const verify::Difference& difference : result.differences)
        if (seen.insert(difference.key).second) uuids.push_back(difference.key);
      if (uuids.empty()) {
        std::cout << "resync: replica " << o.replica << " equals the primary; nothing to resync\n";
        return 0;
      }
    }
    std::vector<resync::Outcome> outcomes = resync::resync(*primary, replicas, uuids, {outbox_table});
    long long updates = 0, deletes = 0, unknown = 0, failed = 0;
    for (const resync::Outcome& outcome : outcomes) {
      switch (outcome.action) {
        case resync::Outcome::Action::update:
          ++updates;
          std::cout << "resynced " << outcome.uuid << ": parking.update v" << outcome.version << "\n";
          break;
        case resync::Outcome::Action::remove:
          ++deletes;
          std::cout << "resynced " << outcome.uuid << ": parking.delete v" << outcome.version << "\n";
          break;
        case resync::Outcome::Action::unknown:
          ++unknown;
          std::cerr << "outbox: resync: parking slot " << outcome.uuid
                    << " is on neither the primary nor any replica; nothing to resync\n";
          break;
        case resync::Outcome::Action::failed:
          ++failed;
          std::cerr << "outbox: resync: parking slot " << outcome.uuid << " cannot be repaired: " << outcome.problem << "\n";
          break;
      }
    }
    // Nothing resynced: the lines above say why, and a "0 row(s) resynced" would only read like success.
    if (updates + deletes > 0)
      std::cout << "resync: " << (updates + deletes) << " row(s) resynced (" << updates << " parking.update, " << deletes
                << " parking.delete) through " << outbox_table << "; every replica applies them\n";
    return unknown + failed > 0 ? static_cast<int>(ExitCode::data) : 0;
  });
}

}  // namespace outbox::cmd
