// outbox migrate [--target primary|replica NAME|all | --service NAME...] [--dry-run]
// outbox migrate status [--target ... | --service NAME...] [--json]
// Applies the embedded schema migrations (migrate/runner.hpp) to the primary, the replicas and the
// service databases, then each service's own migrations (migrate/service_migrations.hpp).
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/command.hpp"
#include "core/amqp.hpp"
#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"
#include "core/url.hpp"
#include "migrate/runner.hpp"
#include "migrate/service_migrations.hpp"
#include "migrate/topology.hpp"

namespace outbox::cmd {
namespace {

struct Database {
  std::string role;  // "primary", "replica main", "service booking"
  migrate::Target target;
  std::string url;
  std::string service;  // the service's name (Target::service)
};

// What a run covers: --target primary | replica NAME | replica:NAME | replica (every replica) | all
// (default: the primary, every replica and every service), or --service NAME... (only those).
struct Selection {
  std::vector<std::string> target;
  std::vector<std::string> services;
  std::vector<std::string> recreate_queues;  // replica or service names (--recreate-queue)
  bool everything() const { return services.empty() && (target.empty() || target.front() == "all"); }
};

std::vector<Database> service_databases(const config::Config& config, const std::vector<std::string>& names) {
  std::vector<Database> out;
  for (const std::string& name : names)
    out.push_back({"service " + name, migrate::Target::service, config::service_url(config, name, "migrate"), name});
  return out;
}

std::vector<Database> select_databases(const config::Config& config, const Selection& selection) {
  if (!selection.services.empty()) {
    if (!selection.target.empty())
      throw usage_error("migrate: --service and --target do not combine (--service NAME migrates only that service)");
    return service_databases(config, selection.services);
  }
  const std::vector<std::string>& target = selection.target;
  std::vector<std::string> words = target;
  if (words.size() == 1 && words[0].rfind("replica:", 0) == 0) words = {"replica", words[0].substr(8)};
  std::string what = words.empty() ? "all" : words[0];
  bool named = words.size() == 2;
  if ((what != "primary" && what != "replica" && what != "all") || (named && what != "replica"))
    throw usage_error("migrate: --target must be primary, replica NAME or all (got '" + target.front() +
                      (target.size() > 1 ? " " + target.back() : "") + "')");
  std::vector<Database> out;
  // A config of service databases only (no primary.url) migrates those; otherwise primary.url is required.
  bool services_only = what == "all" && config.text("primary.url").empty() && !config.service_names().empty();
  if (what == "primary" || (what == "all" && !services_only))
    out.push_back({"primary", migrate::Target::primary, config::primary_url(config), ""});
  if (what == "replica" || what == "all") {
    std::vector<std::string> names = named ? std::vector<std::string>{words[1]} : config.replica_names();
    for (const std::string& name : names) {
      if (name.empty()) throw usage_error("migrate: --target replica needs a replica name (got an empty one)");
      out.push_back({"replica " + name, migrate::Target::replica, config::replica_url(config, name, "migrate"), ""});
    }
    if (names.empty() && what == "replica")
      throw config_error("migrate: no replica is configured (set [replicas.NAME] url, or OUTBOX_REPLICA_URL)");
  }
  if (what == "all")
    for (Database& service : service_databases(config, config.service_names())) out.push_back(std::move(service));
  return out;
}

// By migrate::State, in its order.
constexpr std::string_view kStateText[] = {"applied", "pending", "CHECKSUM MISMATCH", "applied, unknown to this outbox"};

// The queues of this run (as declare_broker_topology selects them).
std::vector<topology::ReplicaQueue> selected_queues(const config::Config& config, const Selection& selection) {
  std::vector<topology::ReplicaQueue> queues;
  if (selection.everything())
    for (const std::string& name : config.replica_names()) queues.push_back(topology::replica_queue(config, name));
  for (const std::string& name : selection.services.empty() ? config.service_names() : selection.services)
    if (topology::ReplicaQueue consumer = topology::consumer_queue(config, name); !consumer.binding_keys.empty())
      queues.push_back(consumer);
  return queues;
}

// --recreate-queue: a queue's type (or another argument) cannot change in place, RabbitMQ refuses
// the redeclaration (406). So the queue is deleted and declared again, and to lose nothing it is
// deleted only when it is empty with no consumer: the relays are stopped (events wait in the
// outbox), replicate or consume has drained it and is stopped. The broker checks both conditions
// in the delete itself, so nothing arriving in between is lost; the check first is for the message.
// A quorum queue cannot be deleted on these conditions (RabbitMQ answers 540 and closes the
// connection): then, on a new connection, it is checked again and deleted outright. Between that
// check and the delete only a publisher could add a message, and the procedure has the relays
// stopped.
void recreate_queue(std::unique_ptr<amqp::Connection>& connection, const topology::ReplicaQueue& queue,
                    const amqp::BrokerSettings& settings, size_t& node) {
  std::pair<uint32_t, uint32_t> state;
  try {
    state = connection->inspect_queue(queue.queue);
  } catch (const Error& error) {
    if (error.code() != ExitCode::data) throw;
    std::cout << "broker: queue " << queue.queue << " does not exist yet; declaring it\n";
    connection = amqp::Connection::open(settings, node, "outbox migrate");  // a 404 closed the channel
    return;
  }
  auto refuse_if_in_use = [&](uint32_t messages, uint32_t consumers) {
    if (consumers > 0)
      throw Error(ExitCode::tempfail, "queue " + queue.queue + " has " + std::to_string(consumers) +
                                          " consumer(s): stop the outbox replicate or outbox consume that reads it, then "
                                          "run this again");
    if (messages > 0)
      throw Error(ExitCode::tempfail, "queue " + queue.queue + " still holds " + std::to_string(messages) +
                                          " message(s): stop the relays, let the queue drain, stop its reader, then run "
                                          "this again");
  };
  refuse_if_in_use(state.first, state.second);
  try {
    connection->delete_unused_empty_queue(queue.queue);
  } catch (const Error& error) {
    if (error.code() != ExitCode::software) throw;
    connection = amqp::Connection::open(settings, node, "outbox migrate");
    state = connection->inspect_queue(queue.queue);
    refuse_if_in_use(state.first, state.second);
    connection->delete_queue(queue.queue);
  }
  std::cout << "broker: deleted the empty queue " << queue.queue << " to declare it again\n";
}

// Once the databases are migrated, `outbox migrate` also declares the RabbitMQ topology (the
// exchange, each replica's and each service consumer's durable queue and its bindings;
// migrate/topology.hpp) from the same config, so events published before the first `outbox
// replicate` or `outbox consume` run are kept. A dry run only prints it. With --service, only
// those services' consumer queues. A service without binding_keys has no consumer: no queue.
void declare_broker_topology(const config::Config& config, const Selection& selection, bool dry_run) {
  amqp::BrokerSettings settings = amqp::broker_settings(config);
  if (settings.urls.empty()) {
    std::cout << "broker: broker.url is not set; skipping the RabbitMQ topology (outbox replicate and outbox consume "
                 "declare it at start)\n";
    return;
  }
  std::vector<topology::ReplicaQueue> replicas = selected_queues(config, selection);
  if (dry_run) {
    for (const std::string& name : selection.recreate_queues)
      std::cout << "-- broker: would delete the queue of " << escape_controls(name)
                << " if it is empty with no consumer, and declare it again\n";
    for (const std::string& line : topology::describe(settings.exchange, replicas))
      std::cout << "-- broker: would declare " << line << "\n";
    return;
  }
  size_t node = 0;
  try {
    auto connection = amqp::Connection::open(settings, node, "outbox migrate");
    for (const topology::ReplicaQueue& replica : replicas)
      if (std::find(selection.recreate_queues.begin(), selection.recreate_queues.end(), replica.replica) !=
          selection.recreate_queues.end())
        recreate_queue(connection, replica, settings, node);
    topology::declare_exchange(*connection, settings.exchange, settings.quorum_queues);
    // Packs (relay.pack > 1) have their own exchange, for consumers outside outbox too.
    if (config.integer("relay.pack") > 1)
      topology::declare_exchange(*connection, config.text("relay.pack_exchange"), settings.quorum_queues);
    for (const topology::ReplicaQueue& replica : replicas)
      topology::declare_replica(*connection, settings.exchange, replica, settings.quorum_queues);
  } catch (const Error& error) {
    if (error.code() == ExitCode::tempfail) throw error.with_context("broker (the databases are migrated)");
    if (std::string(error.what()).find("inequivalent arg") != std::string::npos)
      throw error.with_context(
          "broker (the databases are migrated; a queue's type cannot change in place: see outbox migrate --recreate-queue)");
    // Another partitioning on the broker says what to do itself.
    if (error.code() == ExitCode::config) throw error.with_context("broker (the databases are migrated)");
    throw error.with_context("broker (the databases are migrated; run 'outbox migrate' again once the broker is reachable)");
  }
  for (const std::string& line : topology::describe(settings.exchange, replicas))
    std::cout << "broker: declared " << line << "\n";
}

// A service's own migrations directory (services.NAME.migrations), after the embedded service set.
void apply_service_migrations(const config::Config& config, const Database& database, pqxx::connection& connection,
                              bool dry_run) {
  std::string dir = config::service_migrations_dir(config, database.service);
  if (dir.empty()) return;
  std::vector<migrate::OwnMigration> files = migrate::read_own_migrations(dir, database.role);
  migrate::OwnApplyOptions options;
  options.dry_run = dry_run;
  options.on_file = [&](const migrate::OwnMigration& file) {
    if (dry_run) {
      std::cout << "-- " << database.role << ": would apply " << escape_controls(dir) << "/" << escape_controls(file.file)
                << " (sha256 " << file.checksum << ")\n";
      // The operator's file, line by line: its line breaks kept, any other control character escaped.
      for (size_t start = 0; start < file.sql.size();) {
        size_t end = std::min(file.sql.find('\n', start), file.sql.size());
        std::cout << escape_controls(std::string_view(file.sql).substr(start, end - start)) << "\n";
        start = end + 1;
      }
    } else {
      std::cout << database.role << ": applied " << escape_controls(dir) << "/" << escape_controls(file.file) << "\n"
                << std::flush;
    }
  };
  int applied = migrate::apply_own(connection, files, database.role, options);
  std::cout << (dry_run ? "-- " : "") << database.role << ": " << files.size() << " own migration(s) in " << escape_controls(dir)
            << ", " << applied << (dry_run ? " to apply" : " applied") << "\n";
}

int run_migrate(const config::Config& config, const Selection& selection, bool dry_run) {
  std::vector<Database> databases = select_databases(config, selection);
  // A name that names no queue of this run is refused before anything is migrated.
  std::vector<topology::ReplicaQueue> queues = selected_queues(config, selection);
  for (const std::string& name : selection.recreate_queues)
    if (std::none_of(queues.begin(), queues.end(), [&](const auto& queue) { return queue.replica == name; }))
      throw config_error("--recreate-queue " + escape_controls(name) +
                         ": no replica or service consumer queue of that name in this run of outbox migrate");
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
    if (database.target == migrate::Target::service) apply_service_migrations(config, database, *connection, dry_run);
  }
  if (selection.everything() || !selection.services.empty()) declare_broker_topology(config, selection, dry_run);
  return 0;
}

// By migrate::State and migrate::OwnState, in their order: the words of --json.
constexpr std::string_view kStateWord[] = {"applied", "pending", "checksum_mismatch", "unknown"};
constexpr std::string_view kOwnStateWord[] = {"applied", "pending", "changed"};

// A service's own migrations, or an empty object when it has none; their problems go to stderr and
// make `ok` false.
nlohmann::ordered_json own_status(const config::Config& config, const Database& database, pqxx::connection& connection,
                                  bool& ok) {
  std::string dir = config::service_migrations_dir(config, database.service);
  if (dir.empty()) return nlohmann::ordered_json::object();
  std::vector<migrate::OwnMigration> files = migrate::read_own_migrations(dir, database.role);
  std::vector<migrate::OwnEntry> entries;
  try {
    entries = migrate::own_status(connection, files);
  } catch (const std::exception& error) {
    throw migrate::server_error(error, database.role + ": reading outbox_service_migrations");
  }
  nlohmann::ordered_json own = {{"dir", dir}, {"files", nlohmann::ordered_json::array()}};
  for (const migrate::OwnEntry& entry : entries) {
    own["files"].push_back(
        {{"file", entry.migration->file},
         {"state", kOwnStateWord[static_cast<int>(entry.state)]},
         {"applied_at", entry.applied_at.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(entry.applied_at)}});
    if (entry.state == migrate::OwnState::changed) {
      std::cerr << "outbox: " << database.role << ": migration " << escape_controls(entry.migration->file)
                << " changed since it was applied; an applied migration must never change\n";
      ok = false;
    }
  }
  return own;
}

// One database's status as a JSON object (what the text form prints, too); its problems go to
// stderr and make `ok` false.
nlohmann::ordered_json database_status(const config::Config& config, const Database& database, bool& ok) {
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
  nlohmann::ordered_json out = {{"role", database.role},
                                {"target", std::string(migrate::target_name(database.target))},
                                {"url", mask_url(database.url)},
                                {"version", state.current},
                                {"latest", state.latest},
                                {"pending", state.pending()},
                                {"migrations", nlohmann::ordered_json::array()},
                                {"checksum_mismatches", nlohmann::ordered_json::array()}};
  for (const migrate::Entry& entry : state.entries) {
    out["migrations"].push_back(
        {{"version", entry.version},
         {"file", entry.file()},
         {"state", kStateWord[static_cast<int>(entry.state)]},
         {"applied_at", entry.applied_at.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(entry.applied_at)},
         {"checksum", entry.checksum.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(entry.checksum)},
         {"expected_checksum", entry.expected.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(entry.expected)}});
    if (entry.state == migrate::State::mismatch) out["checksum_mismatches"].push_back(entry.file());
  }
  out["problem"] = nullptr;
  if (auto problem = migrate::history_problem(state, database.role)) {
    std::cerr << "outbox: " << escape_controls(*problem) << "\n";
    out["problem"] = *problem;
    ok = false;
  }
  if (database.target == migrate::Target::service) {
    bool own_ok = true;
    out["own_migrations"] = own_status(config, database, *connection, own_ok);
    for (const auto& file : out["own_migrations"].value("files", nlohmann::ordered_json::array()))
      if (file["state"] == "changed") out["checksum_mismatches"].push_back(file["file"]);
    ok = ok && own_ok;
  }
  return out;
}

// The text form of one database's status.
void print_status(const nlohmann::ordered_json& database) {
  auto text = [](const nlohmann::ordered_json& value) { return escape_controls(value.get<std::string>()); };
  std::cout << text(database["role"]) << " (" << text(database["url"]) << "): version " << database["version"] << ", latest "
            << database["latest"] << ", " << database["pending"] << " pending\n";
  for (size_t i = 0; i < database["migrations"].size(); ++i) {
    const nlohmann::ordered_json& entry = database["migrations"][i];
    std::string word = entry["state"].get<std::string>();
    size_t state = std::find(std::begin(kStateWord), std::end(kStateWord), word) - std::begin(kStateWord);
    // A file name recorded by another binary comes from the database: escaped.
    std::cout << "  " << text(entry["file"]) << "  " << kStateText[state];
    if (!entry["applied_at"].is_null()) std::cout << "  " << text(entry["applied_at"]);
    std::cout << "\n";
  }
  if (!database.contains("own_migrations") || database["own_migrations"].empty()) return;
  const nlohmann::ordered_json& own = database["own_migrations"];
  std::cout << "  own migrations in " << text(own["dir"]) << ":\n";
  constexpr std::string_view kOwnStateText[] = {"applied", "pending", "CHANGED SINCE APPLIED"};
  for (const nlohmann::ordered_json& entry : own["files"]) {
    std::string word = entry["state"].get<std::string>();
    size_t state = std::find(std::begin(kOwnStateWord), std::end(kOwnStateWord), word) - std::begin(kOwnStateWord);
    std::cout << "  " << text(entry["file"]) << "  " << kOwnStateText[state];
    if (!entry["applied_at"].is_null()) std::cout << "  " << text(entry["applied_at"]);
    std::cout << "\n";
  }
}

// Text: one block per database as it is read. --json: one document at the end,
// {"databases": [...], "ok": bool}. The exit status is the same: 78 on a checksum mismatch or a
// history problem.
int run_status(const config::Config& config, const Selection& selection, bool json) {
  bool ok = true;
  nlohmann::ordered_json document = {{"databases", nlohmann::ordered_json::array()}};
  for (const Database& database : select_databases(config, selection)) {
    nlohmann::ordered_json status = database_status(config, database, ok);
    if (json)
      document["databases"].push_back(status);
    else
      print_status(status);
  }
  if (json) {
    document["ok"] = ok;
    std::cout << document.dump(2, ' ', true, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  }
  return ok ? 0 : static_cast<int>(ExitCode::config);
}

}  // namespace

void add_migrate_commands(Registry& registry) {
  static Selection selection;
  static bool dry_run = false;
  CLI::App* migrate =
      registry.add("migrate", "Apply the embedded schema migrations to the primary, every replica and every service");
  migrate
      ->add_option("--target", selection.target,
                   "primary, replica NAME, or all (default: the primary, every configured replica and every service)")
      ->expected(1, 2)
      ->type_name("primary|replica NAME|all");
  migrate
      ->add_option("--service", selection.services,
                   "Only this service database, its own migrations and its consumer queue (repeatable)")
      ->type_name("NAME");
  migrate
      ->add_option("--recreate-queue", selection.recreate_queues,
                   "Delete this replica's or service's queue when it is empty with no consumer, and declare it again "
                   "(to change replicas.NAME.queue_type; repeatable)")
      ->type_name("NAME");
  migrate->add_flag("--dry-run", dry_run, "Print the SQL of the pending migrations and change nothing");
  CLI::App* status = migrate->add_subcommand("status", "Show the applied and pending migrations of each database");
  status->fallthrough();  // `migrate status --target primary`
  static bool json = false;
  status->add_flag("--json", json, "Print one JSON document: per database its target, version, migrations and mismatches");
  registry.on_run(migrate, [&registry] {
    config::Config config = load_config(registry.globals());
    if (registry.root().get_subcommand("migrate")->get_subcommand("status")->parsed()) {
      if (dry_run) throw usage_error("migrate status: --dry-run does not apply (status changes nothing)");
      return run_status(config, selection, json);
    }
    return run_migrate(config, selection, dry_run);
  });
}

}  // namespace outbox::cmd
