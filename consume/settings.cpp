#include "consume/settings.hpp"

#include "core/error.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"

namespace outbox::consume {
namespace {

std::string key(const std::string& service, const std::string& rest) { return "services." + service + "." + rest; }

// Where a block's field came from, for the one-line error: "outbox.toml:12:3: services.booking.handlers.function".
std::string where(const config::Section& section, const std::string& field, const std::string& name) {
  auto found = section.find(field);
  std::string origin = found == section.end() ? std::string() : found->second.origin;
  return "config " + (origin.empty() ? std::string() : origin + ": ") + name;
}

const std::string& field(const config::Section& section, const std::string& name) {
  static const std::string empty;
  auto found = section.find(name);
  return found == section.end() ? empty : found->second.text;
}

}  // namespace

std::vector<replicate::Mapping> handlers_from_config(const config::Config& config, const std::string& service) {
  std::vector<replicate::Mapping> out;
  const std::string blocks = key(service, "handlers");
  for (const config::Section& section : config.sections(blocks)) {
    replicate::Mapping handler;
    handler.event_type = field(section, "event_type");
    handler.function = field(section, "function");
    if (handler.event_type.empty())
      throw config_error(where(section, "event_type", blocks + ".event_type") + ": must not be empty");
    if (handler.event_type == replicate::kHeartbeatType)
      throw config_error(where(section, "event_type", blocks + ".event_type") + ": " + std::string(replicate::kHeartbeatType) +
                         " is reserved for relay heartbeats");
    for (const replicate::Mapping& earlier : out)
      if (earlier.event_type == handler.event_type)
        throw config_error(where(section, "event_type", blocks + ".event_type") + ": \"" + handler.event_type +
                           "\" is handled twice");
    if (!pg::valid_qualified_name(handler.function))
      throw config_error(where(section, "function", blocks + ".function") +
                         ": must be a function name, optionally schema-qualified (got \"" + handler.function + "\")");
    out.push_back(std::move(handler));
  }
  return out;
}

std::vector<Deadline> deadlines_from_config(const config::Config& config, const std::string& service) {
  std::vector<Deadline> out;
  const std::string blocks = key(service, "deadlines");
  for (const config::Section& section : config.sections(blocks)) {
    Deadline deadline;
    deadline.function = field(section, "function");
    if (auto every = section.find("every"); every != section.end() && every->second.number > 0)
      deadline.every = std::chrono::milliseconds(every->second.number);
    if (!pg::valid_qualified_name(deadline.function))
      throw config_error(where(section, "function", blocks + ".function") +
                         ": must be a function name, optionally schema-qualified (got \"" + deadline.function + "\")");
    out.push_back(std::move(deadline));
  }
  return out;
}

replicate::Tunables tunables_from_config(const config::Config& config) {
  replicate::Tunables tunables = replicate::tunables_from_config(config);
  tunables.applied_retention = config.duration("consume.inbox_retention");
  return tunables;
}

Settings settings_from_config(const config::Config& config, std::vector<std::string> services) {
  Settings settings;
  if (services.empty()) {
    for (const std::string& name : config.service_names())
      if (!config.sections(key(name, "handlers")).empty()) services.push_back(name);
    if (services.empty())
      throw config_error("consume: no service has handlers (add [[services.NAME.handlers]] blocks with event_type and function)");
  }
  for (const std::string& name : services) {
    const std::string& url = config::service_url(config, name, "consume");
    std::vector<replicate::Mapping> handlers = handlers_from_config(config, name);
    if (handlers.empty())
      throw config_error("consume: service " + name + " has no handlers (add [[services." + name +
                         ".handlers]] blocks with event_type and function)");
    topology::ReplicaQueue queue = topology::consumer_queue(config, name);
    if (queue.binding_keys.empty())
      throw config_error("consume: services." + name +
                         ".binding_keys is empty: the consumer's queue would receive nothing (set the routing keys of "
                         "the events it handles, e.g. [\"booking.*\"])");
    settings.engine.replicas.push_back(replicate::ReplicaSettings{
        .name = name, .url = url, .queue = std::move(queue), .consumer = true, .handlers = std::move(handlers)});
    settings.deadlines.push_back(deadlines_from_config(config, name));
  }
  settings.engine.broker = amqp::broker_settings(config);
  settings.engine.prefetch = static_cast<int>(config.integer("replicate.prefetch"));
  settings.engine.apply_connections = 1;  // consumers apply in one transaction (replicate/apply.hpp)
  settings.engine.tunables = tunables_from_config(config);
  return settings;
}

}  // namespace outbox::consume
