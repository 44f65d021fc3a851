#include "replicate/settings.hpp"

#include "core/error.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"

namespace outbox::replicate {

std::vector<Mapping> mappings_from_config(const config::Config& config) {
  const auto& sections = config.sections("replicate.mappings");
  if (sections.empty()) return default_mappings();
  std::vector<Mapping> out;
  for (const config::Section& section : sections) {
    Mapping mapping;
    mapping.event_type = section.at("event_type").text;
    mapping.table = section.at("table").text;
    mapping.operation = section.at("operation").text == "delete" ? Operation::remove : Operation::upsert;
    mapping.key_column = section.at("key_column").text;
    const std::string& origin = section.at("table").origin;
    if (!pg::valid_qualified_name(mapping.table))
      throw config_error("config " + origin +
                         ": replicate.mappings.table: must be a table name, optionally schema-qualified (got \"" + mapping.table +
                         "\")");
    if (mapping.event_type.empty())
      throw config_error("config " + section.at("event_type").origin + ": replicate.mappings.event_type: must not be empty");
    if (mapping.event_type == kHeartbeatType)
      throw config_error("config " + section.at("event_type").origin +
                         ": replicate.mappings.event_type: " + std::string(kHeartbeatType) + " is reserved for relay heartbeats");
    if (mapping.key_column.empty())
      throw config_error("config " + section.at("key_column").origin + ": replicate.mappings.key_column: must not be empty");
    if (find_mapping(out, mapping.event_type) >= 0)
      throw config_error("config " + section.at("event_type").origin + ": replicate.mappings.event_type: \"" +
                         mapping.event_type + "\" is mapped twice");
    out.push_back(mapping);
  }
  return out;
}

Tunables tunables_from_config(const config::Config& config) {
  return Tunables{
      .batch_size = static_cast<size_t>(config.integer("replicate.batch_size")),
      .batch_wait = config.duration("replicate.batch_wait"),
      .max_attempts = static_cast<int>(config.integer("replicate.max_attempts")),
      .applied_retention = config.duration("replicate.applied_retention"),
      .max_clock_skew = config.duration("replicate.max_clock_skew"),
      .record_event_ids = config.boolean("replicate.record_event_ids"),
      .max_backoff = config.duration("replicate.max_backoff"),
      .shutdown_timeout = config.duration("replicate.shutdown_timeout"),
      .heartbeat_interval = static_cast<double>(config.duration("relay.heartbeat_interval").count()) / 1000.0,
  };
}

Settings settings_from_config(const config::Config& config, std::vector<std::string> replicas) {
  Settings settings;
  if (replicas.empty()) replicas = config.replica_names();
  if (replicas.empty())
    throw config_error("replicate: no replica is configured (set [replicas.NAME] url, or OUTBOX_REPLICA_URL)");
  for (const std::string& name : replicas)
    settings.replicas.push_back(
        {name, config::replica_url(config, name, "replicate"), topology::replica_queue(config, name), false, {}});
  settings.broker = amqp::broker_settings(config);
  settings.mappings = mappings_from_config(config);
  settings.prefetch = static_cast<int>(config.integer("replicate.prefetch"));
  settings.apply_connections = static_cast<int>(config.integer("replicate.apply_connections"));
  settings.tunables = tunables_from_config(config);
  return settings;
}

}  // namespace outbox::replicate
