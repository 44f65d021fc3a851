#pragma once
// The relay's settings, built and validated once from a configuration by settings_from_config:
// at start, on SIGHUP (a reload keeps the running settings when the build throws) and by
// `outbox config check`. Nothing else in the relay reads an option by its key.
#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "core/amqp.hpp"
#include "core/config.hpp"
#include "migrate/pack.hpp"

namespace outbox::relay {

struct TableSpec {
  std::string name;         // as configured: "public.outbox"
  std::string quoted;       // "\"public\".\"outbox\""
  std::string exchange;     // target exchange
  std::string routing_key;  // fixed routing key, or "" for the event type
  // relay.pack for a table on broker.exchange (its events go, packed, to pack_exchange instead:
  // migrate/pack.hpp); 1 for every other table, published one event per message as always.
  int pack = 1;
  std::string pack_exchange;
  pack::Compression pack_compression = pack::Compression::none;  // relay.pack_compression
};

// The options SIGHUP may change.
struct Tunables {
  int batch_size = 500;
  int max_unconfirmed = 6000;  // at least batch_size
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds confirm_timeout{10000};
  std::chrono::milliseconds takeover_timeout{10000};
  std::chrono::milliseconds retention{0};
  long long partition_size = 1000000;                     // positions per partition of a partitioned outbox
  long long backlog_count_limit = 1000000;                // rows counted at most for outbox_relay_backlog_rows
  std::chrono::milliseconds maintenance_interval{10000};  // retention: partitions made, cut, dropped; rows deleted
  std::chrono::milliseconds vacuum_interval{10000};       // 0: the marks' dead tuples are left to autovacuum
  std::chrono::milliseconds shutdown_timeout{30000};
  std::chrono::milliseconds heartbeat_interval{10000};
  std::chrono::milliseconds max_backoff{30000};
  size_t max_message_size = amqp::kDefaultMaxMessageSize;
  int max_attempts = 3;
  bool delete_on_publish = false;  // relay.on_publish = delete, or a retention of 0
};

struct Settings {
  std::string service;         // `outbox relay --service NAME`: "" for the primary
  std::string primary_url;     // primary.url, or services.NAME.url for a service's relay
  std::string notify_channel;  // "" = no LISTEN
  std::vector<TableSpec> tables;
  int partitions = 16;
  std::string instance;  // relay.instance; "" = host:pid
  amqp::BrokerSettings broker;
  Tunables tunables;
};

// The [[relay.tables]] of a configuration, validated (a valid name, each table once); throws a
// configuration error naming the key.
std::vector<TableSpec> tables_from_config(const config::Config& config, const std::string& default_exchange);
Tunables tunables_from_config(const config::Config& config);
// Everything above; primary.url must be set (or, for `service`, services.NAME.url: a service's relay
// relays that service's outbox, everything else the same). broker.url may be unset here: the daemon
// requires it when it starts (amqp::require_broker), `outbox config check` does not.
Settings settings_from_config(const config::Config& config, const std::string& service = "");

}  // namespace outbox::relay
