#include "relay/settings.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"

namespace outbox::relay {

std::vector<TableSpec> tables_from_config(const config::Config& config, const std::string& default_exchange) {
  std::vector<TableSpec> tables;
  for (const config::Section& section : config.sections("relay.tables")) {
    TableSpec table;
    table.name = section.at("name").text;
    if (!pg::valid_qualified_name(table.name))
      throw config_error("config " + section.at("name").origin +
                         ": relay.tables.name: must be a table name, optionally schema-qualified (got \"" + table.name + "\")");
    table.quoted = pg::quote_qualified(table.name);
    // A table listed twice would have each of its events published twice. Only the very same name
    // is known to be the same table: "outbox" may resolve to another schema than "public".
    for (size_t earlier = 0; earlier < tables.size(); ++earlier)
      if (tables[earlier].quoted == table.quoted)
        throw config_error("config " + section.at("name").origin + ": relay.tables.name: \"" + table.name +
                           "\" is listed twice (first at " + config.sections("relay.tables")[earlier].at("name").origin +
                           "); list each outbox table once");
    table.exchange = section.at("exchange").text.empty() ? default_exchange : section.at("exchange").text;
    table.routing_key = section.at("routing_key").text;
    tables.push_back(table);
  }
  if (tables.empty()) throw config_error("config: relay.tables: at least one outbox table is needed");
  return tables;
}

Tunables tunables_from_config(const config::Config& config) {
  int batch_size = static_cast<int>(config.integer("relay.batch_size"));
  std::chrono::milliseconds retention = config.duration("relay.retention");
  return Tunables{
      .batch_size = batch_size,
      .max_unconfirmed = std::max(static_cast<int>(config.integer("relay.max_unconfirmed")), batch_size),
      .poll_interval = config.duration("relay.poll_interval"),
      .confirm_timeout = config.duration("relay.confirm_timeout"),
      .takeover_timeout = config.duration("relay.takeover_timeout"),
      .retention = retention,
      .partition_size = config.integer("relay.partition_size"),
      .backlog_count_limit = config.integer("relay.backlog_count_limit"),
      .maintenance_interval = config.duration("relay.maintenance_interval"),
      .vacuum_interval = config.duration("relay.vacuum_interval"),
      .shutdown_timeout = config.duration("relay.shutdown_timeout"),
      .heartbeat_interval = config.duration("relay.heartbeat_interval"),
      .max_backoff = config.duration("relay.max_backoff"),
      .max_message_size = static_cast<size_t>(config.integer("relay.max_message_size")),
      .max_attempts = static_cast<int>(config.integer("relay.max_attempts")),
      // Retention 0 means "delete at once", which is what on_publish = delete does.
      .delete_on_publish = config.text("relay.on_publish") == "delete" || retention.count() == 0,
  };
}

Settings settings_from_config(const config::Config& config, const std::string& service) {
  Settings settings;
  settings.broker = amqp::broker_settings(config);
  settings.service = service;
  settings.primary_url = service.empty() ? config::primary_url(config) : config::service_url(config, service, "relay");
  settings.notify_channel = config.text("relay.notify_channel");
  settings.partitions = static_cast<int>(config.integer("relay.partitions"));
  settings.instance = config.text("relay.instance");
  settings.tables = tables_from_config(config, settings.broker.exchange);
  // Only tables on broker.exchange are packed: a table with its own exchange has its own consumers,
  // who never opted in to packs.
  int pack = static_cast<int>(config.integer("relay.pack"));
  for (TableSpec& table : settings.tables)
    if (pack > 1 && table.exchange == settings.broker.exchange) {
      table.pack = pack;
      table.pack_exchange = config.text("relay.pack_exchange");
      if (config.text("relay.pack_compression") == "zstd") table.pack_compression = pack::Compression::zstd;
    }
  settings.tunables = tunables_from_config(config);
  return settings;
}

}  // namespace outbox::relay
