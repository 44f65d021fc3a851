// The parking-slot commands of the example (the seed's `python -m app.cli`, with its dual-write bug
// fixed): each write commits its row and its outbox event in one transaction on the primary.
//   create_parking_slot --name NAME [--status STATUS]
//   parking_slot_list [--from primary|replica[:NAME]] [--max-staleness DURATION]   (default: replica main)
//   parking_slot_details --uuid UUID [--from primary|replica[:NAME]]
//   update_parking_slot --uuid UUID [--name NAME] [--status STATUS]
//   delete_parking_slot --uuid UUID
#include "examples/parking/parking.hpp"

#include <iostream>
#include <optional>

#include "cmd/command.hpp"
#include "core/error.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"
#include "ops/lag.hpp"

namespace outbox::cmd {
namespace {

struct Source {
  std::string role;  // "primary", "replica main"
  std::string url;
};

// --from primary | replica | replica:NAME
Source resolve_source(const config::Config& config, const std::string& from) {
  if (from == "primary") return {"primary", config::primary_url(config)};
  std::string name;
  if (from == "replica")
    name = "main";
  else if (from.rfind("replica:", 0) == 0 && from.size() > 8)
    name = from.substr(8);
  else
    throw usage_error("--from must be primary, replica or replica:NAME (got '" + from + "')");
  return {"replica " + name, config::replica_url(config, name)};
}

// Runs `body` in a transaction of the given kind on the database, mapping server errors to
// one-line errors with the database's name.
template <typename Transaction, typename Body>
auto with_transaction(const Source& source, Body body) {
  auto connection = pg::connect(source.url, source.role);
  try {
    Transaction tx(*connection);
    auto result = body(tx);
    tx.commit();
    return result;
  } catch (const Error&) {
    throw;
  } catch (const pqxx::undefined_table& error) {
    throw config_error(source.role + ": parking_slots or the outbox table does not exist; run 'outbox migrate'");
  } catch (const pqxx::integrity_constraint_violation& error) {
    throw data_error(source.role +
                     ": rejected by the database: " + std::string(error.what()).substr(0, std::string(error.what()).find('\n')));
  } catch (const pqxx::in_doubt_error& error) {
    // The commit may have happened: say so, and how to find out, instead of calling it a bug.
    throw unavailable_error(source.role +
                            ": the connection was lost while committing; the change may or may not have been made (check "
                            "with --from primary)");
  } catch (const std::exception& error) {
    std::string reason = error.what();
    reason = reason.substr(0, reason.find('\n'));
    throw Error(pg::is_connection_error(error) ? ExitCode::unavailable : ExitCode::software, source.role + ": " + reason);
  }
}

// --max-staleness: refuses (exit 75, one line) to answer from a replica that is further behind
// than `limit` by the measure of `outbox lag` (ops/lag.hpp). The primary is never stale.
void require_fresh(const config::Config& config, const std::string& from, const std::string& limit) {
  std::optional<Duration> max = parse_duration(limit);
  if (!max) throw usage_error("--max-staleness: not a duration (got '" + limit + "'; e.g. 500ms, 30s, 2m)");
  Source source = resolve_source(config, from);
  if (source.role == "primary") return;
  std::string name = source.role.substr(std::string("replica ").size());
  lag::Scope scope;
  scope.broker = false;
  scope.replicas = {name};
  lag::ReplicaStage replica = lag::collect(config, scope).replicas.front();
  if (!replica.error.empty()) throw replica.unmigrated ? config_error(replica.error) : unavailable_error(replica.error);
  double seconds = static_cast<double>(max->count()) / 1000.0;
  if (!replica.seconds_behind)
    throw Error(ExitCode::tempfail, "replica " + name + ": staleness unknown (" + replica.behind_source +
                                        "), so it cannot promise --max-staleness " + limit +
                                        "; read --from primary or retry later");
  if (*replica.seconds_behind > seconds)
    throw Error(ExitCode::tempfail, "replica " + name + " is " + format_seconds(*replica.seconds_behind) +
                                        " behind, more than --max-staleness " + limit + "; read --from primary or retry later");
}

struct Options {
  std::string name, status, uuid, from = "replica", max_staleness;
  std::optional<std::string> new_name, new_status;
};

}  // namespace

void add_parking_commands(Registry& registry) {
  static Options o;
  auto primary = [&registry] {
    config::Config config = load_config(registry.globals());
    return Source{"primary", config::primary_url(config)};
  };
  auto from = [&registry] { return resolve_source(load_config(registry.globals()), o.from); };
  const std::string from_help = "primary, replica (the replica named main; the default) or replica:NAME";

  CLI::App* create =
      registry.add("create_parking_slot", "Create a parking slot; its row and parking.create event commit together");
  create->add_option("--name", o.name, "Name, 1..200 characters")->required();
  create->add_option("--status", o.status, "available (default), blocked or reserved")
      ->default_val(std::string(parking::kDefaultStatus));
  registry.on_run(create, [primary] {
    parking::validate_name(o.name);
    parking::validate_status(o.status);
    parking::Slot slot = with_transaction<pqxx::work>(primary(), [](auto& tx) { return parking::create(tx, o.name, o.status); });
    std::cout << parking::details(slot);
    return 0;
  });

  CLI::App* list = registry.add("parking_slot_list", "List parking slots, one JSON object per line");
  list->add_option("--from", o.from, from_help);
  list->add_option("--max-staleness", o.max_staleness,
                   "Refuse (exit 75) when the replica is further behind than this, e.g. 5s (see outbox lag)")
      ->type_name("DURATION");
  registry.on_run(list, [&registry, from, list] {
    // Given, even empty, it is checked: an empty value must not switch the check off unseen.
    if (list->count("--max-staleness")) require_fresh(load_config(registry.globals()), o.from, o.max_staleness);
    auto slots = with_transaction<pqxx::read_transaction>(from(), [](auto& tx) { return parking::list(tx); });
    for (const parking::Slot& slot : slots) std::cout << parking::json_line(slot) << "\n";
    return 0;
  });

  CLI::App* details = registry.add("parking_slot_details", "Show one parking slot");
  details->add_option("--uuid", o.uuid, "The slot's uuid")->required();
  details->add_option("--from", o.from, from_help);
  registry.on_run(details, [from] {
    std::string uuid = parking::normalize_uuid(o.uuid);
    Source source = from();
    auto slot = with_transaction<pqxx::read_transaction>(source, [&](auto& tx) { return parking::find(tx, uuid); });
    if (!slot) throw data_error("parking slot " + uuid + " not found in " + source.role);
    std::cout << parking::details(*slot);
    return 0;
  });

  CLI::App* update = registry.add("update_parking_slot", "Change a parking slot's name or status; emits parking.update");
  update->add_option("--uuid", o.uuid, "The slot's uuid")->required();
  update->add_option("--name", o.new_name, "New name, 1..200 characters");
  update->add_option("--status", o.new_status, "New status: available, blocked or reserved");
  registry.on_run(update, [primary] {
    if (!o.new_name && !o.new_status) throw usage_error("update_parking_slot: give --name or --status (or both)");
    std::string uuid = parking::normalize_uuid(o.uuid);
    if (o.new_name) parking::validate_name(*o.new_name);
    if (o.new_status) parking::validate_status(*o.new_status);
    parking::Slot slot =
        with_transaction<pqxx::work>(primary(), [&](auto& tx) { return parking::update(tx, uuid, o.new_name, o.new_status); });
    std::cout << parking::details(slot);
    return 0;
  });

  CLI::App* remove = registry.add("delete_parking_slot", "Delete a parking slot; emits parking.delete");
  remove->add_option("--uuid", o.uuid, "The slot's uuid")->required();
  registry.on_run(remove, [primary] {
    std::string uuid = parking::normalize_uuid(o.uuid);
    parking::Slot slot = with_transaction<pqxx::work>(primary(), [&](auto& tx) { return parking::remove(tx, uuid); });
    std::cout << "deleted: " << slot.uuid << "\n";
    return 0;
  });
}

}  // namespace outbox::cmd
