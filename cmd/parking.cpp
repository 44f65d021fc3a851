// The parking-slot commands of the example (the seed's `python -m app.cli`, with its dual-write bug
// fixed): each write commits its row and its outbox event in one transaction on the primary.
//   create_parking_slot --name NAME [--status STATUS]
//   parking_slot_list [--from primary|replica[:NAME]] [--max-staleness DURATION]   (default: replica main)
//   parking_slot_details --uuid UUID [--from primary|replica[:NAME]] [--json]
//   update_parking_slot --uuid UUID [--name NAME] [--status STATUS]
//   delete_parking_slot --uuid UUID
#include "examples/parking/parking.hpp"

#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cmd/command.hpp"
#include "core/error.hpp"
#include "examples/parking/database.hpp"

namespace outbox::cmd {
namespace {

struct ParkingOptions {
  std::string name, status, uuid, from = "replica", max_staleness;
  std::optional<std::string> new_name, new_status;
  bool json = false;
};

}  // namespace

void add_parking_commands(Registry& registry) {
  static ParkingOptions o;
  auto primary = [&registry] { return parking::primary_source(load_config(registry.globals())); };
  auto from = [&registry] { return parking::resolve_source(load_config(registry.globals()), o.from); };
  const std::string from_help = "primary, replica (the replica named main; the default) or replica:NAME";

  CLI::App* create =
      registry.add("create_parking_slot", "Create a parking slot; its row and parking.create event commit together");
  create->add_option("--name", o.name, "Name, 1..200 characters")->required();
  create->add_option("--status", o.status, "available (default), blocked or reserved")
      ->default_val(std::string(parking::kDefaultStatus));
  registry.on_run(create, [primary] {
    parking::validate_name(o.name);
    parking::validate_status(o.status);
    parking::Slot slot =
        parking::with_transaction<pqxx::work>(primary(), [](auto& tx) { return parking::create(tx, o.name, o.status); });
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
    if (list->count("--max-staleness")) parking::require_fresh(load_config(registry.globals()), o.from, o.max_staleness);
    auto slots = parking::with_transaction<pqxx::read_transaction>(from(), [](auto& tx) { return parking::list(tx); });
    for (const parking::Slot& slot : slots) std::cout << parking::json_line(slot) << "\n";
    return 0;
  });

  CLI::App* details = registry.add("parking_slot_details", "Show one parking slot");
  details->add_option("--uuid", o.uuid, "The slot's uuid")->required();
  details->add_option("--from", o.from, from_help);
  details->add_flag("--json", o.json, "Print one JSON object (uuid, name, status) instead of one line per field");
  registry.on_run(details, [from] {
    std::string uuid = parking::normalize_uuid(o.uuid);
    parking::Source source = from();
    auto slot = parking::with_transaction<pqxx::read_transaction>(source, [&](auto& tx) { return parking::find(tx, uuid); });
    if (!slot) throw data_error("parking slot " + uuid + " not found in " + source.role);
    if (!o.json) {
      std::cout << parking::details(*slot);
      return 0;
    }
    // ASCII only: a replica's row may hold control characters (see parking::details), escaped here.
    nlohmann::ordered_json object = {{"uuid", slot->uuid}, {"name", slot->name}, {"status", slot->status}};
    std::cout << object.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace) << "\n";
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
    parking::Slot slot = parking::with_transaction<pqxx::work>(
        primary(), [&](auto& tx) { return parking::update(tx, uuid, o.new_name, o.new_status); });
    std::cout << parking::details(slot);
    return 0;
  });

  CLI::App* remove = registry.add("delete_parking_slot", "Delete a parking slot; emits parking.delete");
  remove->add_option("--uuid", o.uuid, "The slot's uuid")->required();
  registry.on_run(remove, [primary] {
    std::string uuid = parking::normalize_uuid(o.uuid);
    parking::Slot slot = parking::with_transaction<pqxx::work>(primary(), [&](auto& tx) { return parking::remove(tx, uuid); });
    std::cout << "deleted: " << slot.uuid << "\n";
    return 0;
  });
}

}  // namespace outbox::cmd
