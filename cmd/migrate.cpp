// outbox migrate [--target primary|replica NAME|all] [--dry-run]
// outbox migrate status [--target ...]
// Applies the embedded schema migrations (migrate/runner.hpp) to the primary and the replicas.
#include <iostream>

#include "cmd/command.hpp"
#include "core/amqp.hpp"
#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"
#include "core/url.hpp"
#include "migrate/runner.hpp"
#include "migrate/topology.hpp"

namespace outbox::cmd {
namespace {

struct Database {
  std::string role;  // "primary", "replica main"
  migrate::Target target;
  std::string url;
};

// --target primary | replica NAME | replica:NAME | replica (every replica) | all (default).
std::vector<Database> select_databases(const config::Config& config, const std::vector<std::string>& target) {
  std::vector<std::string> words = target;
  if (words.size() == 1 && words[0].rfind("replica:", 0) == 0) words = {"replica", words[0].substr(8)};
  std::string what = words.empty() ? "all" : words[0];
  bool named = words.size() == 2;
  if ((what != "primary" && what != "replica" && what != "all") || (named && what != "replica"))
    throw usage_error("migrate: --target must be primary, replica NAME or all (got '" + target.front() +
                      (target.size() > 1 ? " " + target.back() : "") + "')");
  std::vector<Database> out;
  if (what == "primary" || what == "all") out.push_back({"primary", migrate::Target::primary, config::primary_url(config)});
  if (what == "replica" || what == "all") {
    std::vector<std::string> names = named ? std::vector<std::string>{words[1]} : config.replica_names();
    for (const std::string& name : names) {
      if (name.empty()) throw usage_error("migrate: --target replica needs a replica name (got an empty one)");
      out.push_back({"replica " + name, migrate::Target::replica, config::replica_url(config, name, "migrate")});
    }
    if (names.empty() && what == "replica")
      throw config_error("migrate: no replica is configured (set [replicas.NAME] url, or OUTBOX_REPLICA_URL)");
  }
  return out;
}

// By migrate::State, in its order.
constexpr std::string_view kStateText[] = {"applied", "pending", "CHECKSUM MISMATCH", "applied, unknown to this outbox"};

std::string_view state_text(migrate::State state) { return kStateText[static_cast<int>(state)]; }

// Once the databases are migrated, `outbox migrate` also declares the RabbitMQ topology (the
// exchange, each replica's durable queue and its bindings; migrate/topology.hpp) from the same config,
// so events published before the first `outbox replicate` run are kept. A dry run only prints it.
void declare_broker_topology(const config::Config& config, bool dry_run) {
  amqp::BrokerSettings settings = amqp::broker_settings(config);
  if (settings.urls.empty()) {
    std::cout << "broker: broker.url is not set; skipping the RabbitMQ topology (outbox replicate declares it at start)\n";
    return;
  }
  std::vector<topology::ReplicaQueue> replicas;
  for (const std::string& name : config.replica_names()) replicas.push_back(topology::replica_queue(config, name));
  if (dry_run) {
    for (const std::string& line : topology::describe(settings.exchange, replicas))
      std::cout << "-- broker: would declare " << line << "\n";
    return;
  }
  size_t node = 0;
  try {
    auto connection = amqp::Connection::open(settings, node, "outbox migrate");
    topology::declare_exchange(*connection, settings.exchange);
    for (const topology::ReplicaQueue& replica : replicas) topology::declare_replica(*connection, settings.exchange, replica);
  } catch (const Error& error) {
    throw error.with_context("broker (the databases are migrated; run 'outbox migrate' again once the broker is reachable)");
  }
  for (const std::string& line : topology::describe(settings.exchange, replicas))
    std::cout << "broker: declared " << line << "\n";
}

int run_migrate(const config::Config& config, const std::vector<std::string>& target, bool dry_run) {
  std::vector<Database> databases = select_databases(config, target);
  for (const Database& database : databases) {
    auto connection = pg::connect(database.url, database.role, "outbox migrate");
    migrate::ApplyOptions options;
    options.dry_run = dry_run;
    options.on_migration = [&](const migrate::Migration& migration) {
      if (dry_run) {
        std::cout << "-- " << database.role << ": would apply " << migration.file << " (sha256 " << migration.checksum << ")\n"
                  << migration.sql;
        if (!migration.sql.empty() && migration.sql.back() != '\n') std::cout << '\n';
      } else {
        std::cout << database.role << ": applied " << migration.file << "\n" << std::flush;
      }
    };
    migrate::ApplyResult result = migrate::apply(*connection, database.target, database.role, options);
    int latest = migrate::latest_version(database.target);
    if (dry_run)
      std::cout << "-- " << database.role << ": dry run, nothing changed (at version " << result.before << ", "
                << result.applied.size() << " to apply)\n";
    else if (result.applied.empty())
      std::cout << database.role << ": schema is current at version " << std::max(result.after, latest) << "\n";
    else
      std::cout << database.role << ": schema at version " << result.after << " (" << result.applied.size() << " applied)\n";
  }
  bool everything = target.empty() || target.front() == "all";
  if (everything) declare_broker_topology(config, dry_run);
  return 0;
}

int run_status(const config::Config& config, const std::vector<std::string>& target) {
  bool mismatch = false;
  for (const Database& database : select_databases(config, target)) {
    auto connection = pg::connect(database.url, database.role, "outbox migrate");
    migrate::Status state;
    try {
      state = migrate::status(*connection, database.target);
    } catch (const Error& error) {
      throw error.with_context(database.role);
    } catch (const std::exception& error) {
      throw Error(pg::is_connection_error(error) ? ExitCode::unavailable : ExitCode::software,
                  database.role + ": reading schema_migrations: " + first_line(error.what()));
    }
    std::cout << database.role << " (" << mask_url(database.url) << "): version " << state.current << ", latest " << state.latest
              << ", " << state.pending() << " pending\n";
    for (const migrate::Entry& entry : state.entries) {
      // A file name recorded by another binary comes from the database: escaped.
      std::cout << "  " << escape_controls(entry.file()) << "  " << state_text(entry.state);
      if (!entry.applied_at.empty()) std::cout << "  " << entry.applied_at;
      std::cout << "\n";
    }
    if (auto problem = migrate::history_problem(state, database.role)) {
      std::cerr << "outbox: " << escape_controls(*problem) << "\n";
      mismatch = true;
    }
  }
  return mismatch ? static_cast<int>(ExitCode::config) : 0;
}

}  // namespace

void add_migrate_commands(Registry& registry) {
  static std::vector<std::string> target;
  static bool dry_run = false;
  CLI::App* migrate = registry.add("migrate", "Apply the embedded schema migrations to the primary and every replica");
  migrate->add_option("--target", target, "primary, replica NAME, or all (default: the primary and every configured replica)")
      ->expected(1, 2)
      ->type_name("primary|replica NAME|all");
  migrate->add_flag("--dry-run", dry_run, "Print the SQL of the pending migrations and change nothing");
  CLI::App* status = migrate->add_subcommand("status", "Show the applied and pending migrations of each database");
  status->fallthrough();  // `migrate status --target primary`
  registry.on_run(migrate, [&registry] {
    config::Config config = load_config(registry.globals());
    if (registry.root().get_subcommand("migrate")->get_subcommand("status")->parsed()) {
      if (dry_run) throw usage_error("migrate status: --dry-run does not apply (status changes nothing)");
      return run_status(config, target);
    }
    return run_migrate(config, target, dry_run);
  });
}

}  // namespace outbox::cmd
