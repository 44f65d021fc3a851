// outbox failed list [--replica NAME | --consumer NAME | --relay]
// outbox failed show ID [--replica NAME | --consumer NAME | --relay]
// outbox failed retry (ID | --all) [--replica NAME | --consumer NAME | --relay]
// outbox failed discard ID [--replica NAME | --consumer NAME | --relay]
// Inspect and redrive the events replicate parked (replicate/failed.hpp has the semantics), the
// events a consumer's handlers failed on (`outbox consume`: the same engine and tables, in the
// service database, retried through the handlers), and, with --relay, the outbox rows the relay
// parked on the primary (relay/parked.hpp).
#include "replicate/failed.hpp"

#include <charconv>
#include <iostream>

#include "cmd/command.hpp"
#include "consume/settings.hpp"
#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/log.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"
#include "relay/parked.hpp"
#include "relay/settings.hpp"
#include "replicate/settings.hpp"

namespace outbox::cmd {
namespace {

struct FailedOptions {
  std::vector<std::string> replicas;
  std::vector<std::string> consumers;
  long long id = 0;
  bool all = false;
  bool relay = false;
};

// Which of list, show, retry and discard was given.
struct Verb {
  bool list = false, show = false, retry = false, discard = false;
};

std::string json_string(const std::string& text) { return "\"" + log::json_escape(text) + "\""; }

// Checked as text, before CLI11 converts it: a number out of range must not become another id.
const CLI::Validator kFailedId(
    [](const std::string& text) -> std::string {
      long long id = 0;
      auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), id);
      if (error != std::errc() || end != text.data() + text.size() || id < 1)
        return "a failed event id is a positive integer (see 'outbox failed list'), got '" + text + "'";
      return "";
    },
    "ID");

// What an event parked from a message carries may be any text: escape_controls before printing.
std::string describe(const replicate::FailedEvent& event) {
  std::string out = "#" + std::to_string(event.id) + " (" + (event.event_type.empty() ? "?" : event.event_type);
  if (!event.aggregate_id.empty()) out += " " + event.aggregate_type + " " + event.aggregate_id;
  if (event.version) out += " v" + std::to_string(*event.version);
  return escape_controls(out + ")");
}

std::string ids(const std::vector<long long>& values) {
  std::string out;
  for (long long value : values) out += (out.empty() ? "#" : ", #") + std::to_string(value);
  return out;
}

// Prints one chain's outcome; returns whether it ended without a failure.
bool report(const std::string& role, const std::string& verb, const replicate::ChainResult& result) {
  std::cout << role << ": " << verb << " #" << result.head << ": " << result.applied.size() << " event(s) applied";
  if (!result.applied.empty()) std::cout << " (" << ids(result.applied) << ")";
  if (result.failed) {
    std::cout << "; #" << result.failed << " failed again and stays parked with " << (result.remaining - 1)
              << " event(s) waiting behind it: " << escape_controls(result.error);
  }
  std::cout << "\n";
  return result.failed == 0;
}

std::string describe(const relay::ParkedRow& row) {
  return escape_controls("#" + std::to_string(row.id) + " (" + row.table + " position " + std::to_string(row.position) + ", " +
                         (row.event_type.empty() ? "?" : row.event_type) + " " + row.aggregate_type + " " + row.aggregate_id +
                         ")");
}

std::string waiting_text(long long waiting) {
  return std::to_string(waiting) + " row(s) waiting behind it are released and published in order";
}

// `failed ... --relay`: the outbox rows the relay parked on the primary.
int run_relay_side(const config::Config& config, const FailedOptions& o, const Verb& verb) {
  auto connection = pg::connect(config::primary_url(config), "primary", "outbox failed");
  try {
    relay::Settings settings = relay::settings_from_config(config);
    relay::ParkedRows parked(*connection, settings.tables, settings.tunables.max_message_size, settings.notify_channel);
    if (verb.list) {
      for (const relay::ParkedRow& row : parked.list())
        std::cout << "{\"relay\": " << json_string(row.table) << ", \"id\": " << row.id
                  << ", \"state\": " << json_string(row.state) << ", \"position\": " << row.position
                  << ", \"event_id\": " << json_string(row.event_id) << ", \"event_type\": " << json_string(row.event_type)
                  << ", \"aggregate_type\": " << json_string(row.aggregate_type)
                  << ", \"aggregate_id\": " << json_string(row.aggregate_id) << ", \"attempts\": " << row.attempts
                  << ", \"failed_at\": " << json_string(row.last_failed_at)
                  << ", \"parked_at\": " << (row.parked_at.empty() ? "null" : json_string(row.parked_at))
                  << ", \"waiting\": " << row.waiting << ", \"error\": " << json_string(row.error) << "}\n";
    } else if (verb.show) {
      relay::ParkedRow row = parked.find(o.id);
      // Everything but the numbers and times came from a producer's row: escaped.
      std::cout << "id:           " << row.id << "\ntable:        " << escape_controls(row.table)
                << "\nposition:     " << row.position << "\nstate:        " << row.state
                << "\nevent_id:     " << escape_controls(row.event_id) << "\nevent_type:   " << escape_controls(row.event_type)
                << "\naggregate:    " << escape_controls(row.aggregate_type + " " + row.aggregate_id)
                << "\nattempts:     " << row.attempts << "\nfirst_failed: " << row.first_failed_at
                << "\nlast_failed:  " << row.last_failed_at << "\nparked_at:    " << (row.parked_at.empty() ? "-" : row.parked_at)
                << "\nerror:        " << escape_controls(row.error)
                << "\npayload:      " << (row.payload ? json_string(*row.payload) : std::string("(the outbox row is gone)"))
                << "\nwaiting:      " << row.waiting << "\n";
    } else if (verb.retry && o.all) {
      std::vector<std::string> refused;
      std::vector<relay::ParkedRow> released = parked.retry_all(refused);
      if (released.empty() && refused.empty()) std::cout << "relay: nothing to retry\n";
      for (const relay::ParkedRow& row : released)
        std::cout << "relay: released " << describe(row) << " for publishing; " << waiting_text(row.waiting) << "\n";
      for (const std::string& line : refused) std::cout << "relay: " << escape_controls(line) << "\n";
      return refused.empty() ? 0 : static_cast<int>(ExitCode::data);
    } else if (verb.retry) {
      relay::ParkedRow row = parked.retry(o.id);
      std::cout << "relay: released " << describe(row) << " for publishing (the relay parks it again if the broker "
                << "still refuses it); " << waiting_text(row.waiting) << "\n";
    } else if (verb.discard) {
      relay::ParkedRow row = parked.discard(o.id);
      std::cout << "relay: discarded " << describe(row) << ": the outbox row is deleted and never published; "
                << waiting_text(row.waiting) << "\n";
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    throw Error(pg::is_connection_error(error) ? ExitCode::unavailable : ExitCode::software,
                "primary: " + replicate::one_line(error.what()));
  }
  return 0;
}

// Whose failed events: a replica's (table mappings) or a consumer's (handlers, in a service database).
struct Target {
  std::string kind;  // "replica" or "consumer"
  std::string name;
  std::string url;
  std::vector<replicate::Mapping> mappings;
  migrate::Target schema = migrate::Target::replica;
  std::string role() const { return kind + " " + name; }
};

void print_list_line(const Target& target, const replicate::FailedEvent& event) {
  std::cout << "{\"" << target.kind << "\": " << json_string(target.name) << ", \"id\": " << event.id
            << ", \"state\": " << json_string(event.state) << ", \"event_id\": " << json_string(event.event_id)
            << ", \"event_type\": " << json_string(event.event_type)
            << ", \"aggregate_type\": " << json_string(event.aggregate_type)
            << ", \"aggregate_id\": " << json_string(event.aggregate_id)
            << ", \"aggregate_version\": " << (event.version ? std::to_string(*event.version) : "null")
            << ", \"attempts\": " << event.attempts << ", \"failed_at\": " << json_string(event.failed_at)
            << ", \"error\": " << json_string(event.error) << "}\n";
}

// What an event parked from a message carries may be any text: escaped.
void print_details(const Target& target, const replicate::FailedEvent& event) {
  auto e = [](const std::string& text) { return escape_controls(text); };
  std::cout << "id:          " << event.id << "\n"
            << (target.kind + ":").append(12 - target.kind.size(), ' ') << target.name << "\nstate:       " << e(event.state)
            << "\nevent_id:    " << e(event.event_id) << "\nevent_type:  " << e(event.event_type)
            << "\nrouting_key: " << e(event.routing_key)
            << "\naggregate:   " << (event.aggregate_id.empty() ? "(none)" : e(event.aggregate_type + " " + event.aggregate_id))
            << "\nversion:     " << (event.version ? std::to_string(*event.version) : "(none)")
            << "\nattempts:    " << event.attempts << "\nfailed_at:   " << e(event.failed_at)
            << "\nerror:       " << e(event.error) << "\nproperties:  " << e(event.properties)
            << "\nbody:        " << json_string(event.body) << "\nwaiting:     "
            << (event.waiting.empty() ? "none" : std::to_string(event.waiting.size()) + " (" + ids(event.waiting) + ")") << "\n";
}

// The verb on one replica's failed events; returns its exit code (65 when a retried event failed again).
int run_on_target(const config::Config& config, const FailedOptions& o, const Verb& verb, const Target& target) {
  std::string role = target.role();
  auto connection = pg::connect(target.url, role, "outbox failed");
  int exit_code = 0;
  auto failed_again = [&exit_code](bool ok) {
    if (!ok) exit_code = static_cast<int>(ExitCode::data);
  };
  try {
    replicate::FailedEvents events(*connection, target.name, role, target.mappings, target.schema);
    events.set_max_clock_skew(replicate::tunables_from_config(config).max_clock_skew);
    events.set_record_event_ids(replicate::tunables_from_config(config).record_event_ids);
    if (verb.list) {
      for (const replicate::FailedEvent& event : events.list()) print_list_line(target, event);
    } else if (verb.show) {
      print_details(target, events.find(o.id));
    } else if (verb.retry && o.all) {
      std::vector<replicate::ChainResult> results = events.retry_all();
      if (results.empty()) std::cout << role << ": nothing to retry\n";
      for (const auto& result : results) failed_again(report(role, "retried", result));
    } else if (verb.retry) {
      failed_again(report(role, "retried", events.retry(o.id)));
    } else if (verb.discard) {
      replicate::FailedEvent dropped;
      replicate::ChainResult result = events.discard(o.id, dropped);
      std::cout << role << ": discarded " << describe(dropped) << "\n";
      if (result.applied.size() + (result.failed ? 1 : 0) > 0)
        failed_again(report(role, "released the events waiting behind", result));
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    throw Error(pg::is_connection_error(error) ? ExitCode::unavailable : ExitCode::software,
                role + ": " + replicate::one_line(error.what()));
  }
  return exit_code;
}

// `failed ...` without --relay: the events replicate parked on the replicas.
int run_replica_side(const config::Config& config, const FailedOptions& o, const Verb& verb) {
  bool many = verb.list || (verb.retry && o.all);
  std::vector<std::string> names = without_repeats(o.replicas);
  if (names.empty()) names = many ? config.replica_names() : std::vector<std::string>{"main"};
  if (names.empty()) throw config_error("failed: no replica is configured (set [replicas.NAME] url, or OUTBOX_REPLICA_URL)");
  if (!many && names.size() > 1) throw usage_error("failed: give one --replica for show, retry ID and discard");
  std::vector<replicate::Mapping> mappings = replicate::mappings_from_config(config);
  int exit_code = 0;
  for (const std::string& name : names) {
    Target target{"replica", name, config::replica_url(config, name, "failed"), mappings, migrate::Target::replica};
    if (int code = run_on_target(config, o, verb, target); code != 0) exit_code = code;
  }
  return exit_code;
}

// `failed ... --consumer NAME`: the events a consumer's handlers failed on, in the service database.
int run_consumer_side(const config::Config& config, const FailedOptions& o, const Verb& verb) {
  bool many = verb.list || (verb.retry && o.all);
  std::vector<std::string> names = without_repeats(o.consumers);
  if (!many && names.size() > 1) throw usage_error("failed: give one --consumer for show, retry ID and discard");
  int exit_code = 0;
  for (const std::string& name : names) {
    Target target{"consumer", name, config::service_url(config, name, "failed"), consume::handlers_from_config(config, name),
                  migrate::Target::service};
    if (target.mappings.empty())
      throw config_error("failed: service " + name + " has no handlers (add [[services." + name + ".handlers]] blocks)");
    if (int code = run_on_target(config, o, verb, target); code != 0) exit_code = code;
  }
  return exit_code;
}

}  // namespace

void add_failed_commands(Registry& registry) {
  static FailedOptions o;
  CLI::App* failed = registry.add(
      "failed",
      "Inspect and redrive events that replicate parked (poison events), or with --relay the outbox rows the relay parked");
  failed->require_subcommand(1);
  auto replica_option = [](CLI::App* app, const std::string& help) {
    CLI::Option* replica = app->add_option("--replica", o.replicas, help)->type_name("NAME");
    CLI::Option* consumer =
        app->add_option("--consumer", o.consumers, "The events the handlers of the service's consumer (outbox consume) failed on")
            ->type_name("NAME")
            ->excludes(replica);
    app->add_flag("--relay", o.relay, "The outbox rows the relay parked on the primary, instead of a replica's events")
        ->excludes(replica)
        ->excludes(consumer);
  };
  CLI::App* list = failed->add_subcommand("list", "List parked and waiting events, one JSON object per line");
  replica_option(list, "Only this replica (repeatable; default: every configured replica)");
  CLI::App* show = failed->add_subcommand("show", "Show one failed event: its message, error and what waits behind it");
  show->add_option("ID", o.id, "Failed event id (from list)")->required()->check(kFailedId);
  replica_option(show, "Replica (default: main)");
  CLI::App* retry = failed->add_subcommand(
      "retry", "Apply a parked event again, then the events waiting behind it, in order; each success is removed");
  retry->add_option("ID", o.id, "Failed event id (the first of its aggregate)")->check(kFailedId);
  retry->add_flag("--all", o.all, "Retry every parked event, oldest first");
  replica_option(retry, "Replica (default: main; with --all: every configured replica)");
  CLI::App* discard = failed->add_subcommand(
      "discard", "Drop a parked event; the events waiting behind it are then applied in order (as retry does)");
  discard->add_option("ID", o.id, "Failed event id (the first of its aggregate)")->required()->check(kFailedId);
  replica_option(discard, "Replica (default: main)");

  registry.on_run(failed, [&registry, list, show, retry, discard] {
    config::Config config = load_config(registry.globals());
    if (retry->parsed() && o.all == (o.id != 0)) throw usage_error("failed retry: give either an ID or --all");
    Verb verb{list->parsed(), show->parsed(), retry->parsed(), discard->parsed()};
    if (o.relay) return run_relay_side(config, o, verb);
    if (!o.consumers.empty()) return run_consumer_side(config, o, verb);
    return run_replica_side(config, o, verb);
  });
}

}  // namespace outbox::cmd
