#include "core/options.hpp"

#include <array>
#include <string>

#include "core/duration.hpp"

namespace outbox::config {
namespace {

constexpr long long kSecond = 1000;
constexpr long long kHour = 3600 * kSecond;
constexpr long long kDay = 24 * kHour;

// clang-format off
constexpr std::array kOptions{
  Option{"primary.url", Type::url, "", 0, 0, "", false, "OUTBOX_PRIMARY_URL",
         "PostgreSQL URL of the primary (write) database that holds the outbox tables. TLS is set in the URL (sslmode, sslrootcert)."},

  Option{"broker.url", Type::url_list, "", 0, 0, "", false, "OUTBOX_BROKER_URL",
         "RabbitMQ URL (amqp:// or amqps://), or an array of node URLs of one cluster; on a connection failure the next node is tried. The environment variable takes a comma-separated list."},
  Option{"broker.exchange", Type::string, "outbox", 0, 0, "", false, "",
         "Topic exchange (durable) that events are published to and replica queues are bound to."},
  Option{"broker.tls_ca", Type::string, "", 0, 0, "", false, "",
         "PEM file of the CA that signs the broker's certificate (amqps:// only). Empty: the system's CA bundle "
         "(SSL_CERT_FILE, else OpenSSL's default file). The host name in broker.url is checked against the "
         "certificate's DNS names: address the broker by name, not by IP address."},
  Option{"broker.tls_cert", Type::string, "", 0, 0, "", false, "",
         "PEM client certificate for amqps:// (with broker.tls_key)."},
  Option{"broker.tls_key", Type::string, "", 0, 0, "", false, "",
         "PEM private key of broker.tls_cert."},
  Option{"broker.tls_verify", Type::boolean, "true", 0, 0, "", false, "",
         "Verify the broker's certificate and host name for amqps://."},
  Option{"broker.connect_timeout", Type::duration, "5s", 100, 60 * kSecond, "", false, "",
         "How long to wait for a TCP connection (with TLS) to one broker node, and then for each step of the AMQP "
         "handshake and each declaration. The daemons try one node per attempt; while they wait they keep systemd's "
         "watchdog fed, and a signal is handled when the attempt ends."},
  Option{"broker.heartbeat", Type::duration, "30s", 0, kHour, "", false, "",
         "AMQP heartbeat interval; a connection silent for two intervals is treated as lost. 0 disables heartbeats."},

  Option{"relay.tables", Type::table_array, "[{ name = \"public.outbox\" }]", 0, 0, "", false, "",
         "Outbox tables to relay, one [[relay.tables]] block each."},
  Option{"relay.tables[].name", Type::string, "", 0, 0, "", false, "",
         "Schema-qualified outbox table name, e.g. \"public.outbox\". The table must have the columns of the outbox created by outbox migrate."},
  Option{"relay.tables[].exchange", Type::string, "", 0, 0, "", false, "",
         "Exchange for this table's events instead of broker.exchange."},
  Option{"relay.tables[].routing_key", Type::string, "", 0, 0, "", false, "",
         "Fixed routing key for this table's events instead of the event type."},
  Option{"relay.poll_interval", Type::duration, "1s", 10, kHour, "", true, "",
         "Fallback poll interval; the relay wakes at once on LISTEN/NOTIFY."},
  Option{"relay.notify_channel", Type::string, "outbox_events", 0, 0, "", false, "",
         "LISTEN channel; the outbox trigger created by outbox migrate notifies outbox_events. Empty: no LISTEN, the relay "
         "polls every relay.poll_interval (for a primary behind a transaction-pooling pgbouncer, where LISTEN does not work)."},
  Option{"relay.batch_size", Type::integer, "500", 1, 10000, "", true, "",
         "Rows read per batch."},
  Option{"relay.max_unconfirmed", Type::integer, "6000", 1, 100000, "", true, "",
         "Window of published but not yet confirmed messages; the relay reads ahead while confirms are pending."},
  Option{"relay.confirm_timeout", Type::duration, "10s", 100, 10 * 60 * kSecond, "", true, "",
         "How long to wait for the broker's publisher confirms of a batch before the connection is reset and the rows are published again."},
  Option{"relay.max_message_size", Type::integer, "134217728", 1, 536870912, "", true, "",
         "Largest payload in bytes the relay publishes; a larger row is parked (outbox failed list --relay). Set it to the broker's max_message_size (RabbitMQ 3.x: 134217728; 4.x: 16777216)."},
  Option{"relay.max_attempts", Type::integer, "3", 1, 100, "", true, "",
         "How many times the broker may refuse a row (channel closed with 406, published alone) before it is parked."},
  Option{"relay.partitions", Type::integer, "16", 1, 1024, "", false, "",
         "Hash partitions of aggregate_id. Each is owned by one relay instance at a time (advisory lock); all instances must use the same value."},
  Option{"relay.takeover_timeout", Type::duration, "10s", 1 * kSecond, kHour, "", true, "",
         "Longest time before a live instance takes over the partitions of an instance that died."},
  Option{"relay.on_publish", Type::enumeration, "mark", 0, 0, "mark|delete", true, "",
         "What to do with a confirmed row: mark it published (kept for relay.retention) or delete it."},
  Option{"relay.retention", Type::duration, "24h", 0, 365 * kDay, "", true, "",
         "How long published rows are kept before they are removed in small batches; 0 removes them at once."},
  Option{"relay.max_backoff", Type::duration, "30s", 100, kHour, "", true, "",
         "Cap of the exponential backoff (with jitter) between reconnect attempts."},
  Option{"relay.shutdown_timeout", Type::duration, "30s", 100, kHour, "", true, "",
         "On SIGTERM, how long to wait for the in-flight batch to be confirmed and committed."},
  Option{"relay.heartbeat_interval", Type::duration, "10s", 0, kHour, "", true, "",
         "Interval of the heartbeat events that measure end-to-end lag; 0 disables them."},
  Option{"relay.instance", Type::string, "", 0, 0, "", false, "",
         "Name of this relay instance in its logs, its AMQP connection name and its heartbeats; default host:pid."},

  Option{"replicate.prefetch", Type::integer, "5000", 1, 65535, "", false, "",
         "Unacknowledged messages the broker may send ahead (basic.qos); keep it several times replicate.batch_size, so that the next batches fill while one is applied and a pause of the broker does not idle the replica."},
  Option{"replicate.apply_connections", Type::integer, "1", 1, 8, "", false, "",
         "Connections per replica database. With more than 1, a batch of 100 events or more is split by aggregate into parts applied at the same time, each part one transaction (its events, event ids and versions together), the part that moves the applied position committing last and the ack after all; for a replica server with cores to spare. 1: every batch is one transaction."},
  Option{"replicate.batch_size", Type::integer, "500", 1, 10000, "", true, "",
         "Events applied per replica transaction."},
  Option{"replicate.batch_wait", Type::duration, "20ms", 0, 60 * kSecond, "", true, "",
         "Longest wait for a batch to fill before it is applied."},
  Option{"replicate.applied_retention", Type::duration, "7d", 0, 365 * kDay, "", true, "",
         "How long the ids of applied events stay in outbox_applied_events (they tell a redelivery from a stale event, and serve audits) before they are removed in small batches; 0 keeps them forever. The per-aggregate versions, which make a redelivery a no-op, are never removed."},
  Option{"replicate.max_attempts", Type::integer, "3", 1, 100, "", true, "",
         "Attempts to apply a failing event before it is parked in the failed-events table."},
  Option{"replicate.max_clock_skew", Type::duration, "1m", 1 * kSecond, kDay, "", true, "",
         "How far ahead of the replica database's clock the created_at of an event or relay heartbeat (stamped by the "
         "primary's clock) may be. A later one (a forged message, or a primary whose clock runs ahead) is still applied, "
         "but its time moves neither the applied position nor the heartbeat that lag, check and verify read; it is "
         "counted in outbox_replicate_future_events_total and logged. The larger it is, the longer a forged heartbeat "
         "can hold the heartbeat's time back; a stalled replicate is still seen, by the replica's clock alone."},
  Option{"replicate.max_backoff", Type::duration, "30s", 100, kHour, "", true, "",
         "Cap of the exponential backoff (with jitter) between reconnect attempts."},
  Option{"replicate.shutdown_timeout", Type::duration, "30s", 100, kHour, "", true, "",
         "On SIGTERM, how long to wait for the in-flight batch to commit; then it is cancelled and rolled back, to be redelivered."},
  Option{"replicate.mappings", Type::table_array, "", 0, 0, "", false, "",
         "Event type to table mappings, one [[replicate.mappings]] block each. The parking mapping (parking.create and parking.update upsert parking_slots, parking.delete deletes) is built in."},
  Option{"replicate.mappings[].event_type", Type::string, "", 0, 0, "", false, "",
         "Event type (routing key) this mapping applies to."},
  Option{"replicate.mappings[].table", Type::string, "", 0, 0, "", false, "",
         "Replica table, optionally schema-qualified."},
  Option{"replicate.mappings[].operation", Type::enumeration, "upsert", 0, 0, "upsert|delete", false, "",
         "upsert: the payload's fields become the row; delete: the row with the key is deleted (a tombstone version is kept)."},
  Option{"replicate.mappings[].key_column", Type::string, "uuid", 0, 0, "", false, "",
         "Key column of the table; the payload field of the same name holds the aggregate id."},

  Option{"replicas.*.url", Type::url, "", 0, 0, "", false, "OUTBOX_REPLICA_URL",
         "PostgreSQL URL of the replica (read-model) database NAME. The environment variable sets the replica named main."},
  Option{"replicas.*.queue_type", Type::enumeration, "classic", 0, 0, "classic|quorum", false, "",
         "Type of the replica's durable queue outbox.replica.NAME."},
  Option{"replicas.*.binding_keys", Type::string_list, "[\"#\"]", 0, 0, "", false, "",
         "Routing keys the replica's queue is bound with."},

  Option{"log.level", Type::enumeration, "info", 0, 0, "trace|debug|info|warn|error", true, "OUTBOX_LOG_LEVEL",
         "Lowest level that is logged."},
  Option{"log.format", Type::enumeration, "text", 0, 0, "text|json", true, "OUTBOX_LOG_FORMAT",
         "text: one human-readable line per event; json: one JSON object per line."},

  Option{"metrics.listen", Type::string, "", 0, 0, "", false, "",
         "host:port where the daemons serve /metrics and /healthz; empty disables it. The endpoint serves at most 48 "
         "connections (16 per client address), and a new one beyond them closes the oldest; it closes a connection "
         "whose request is not answered within 10 s of its start or that is 5 s idle, and drops request bodies. It has "
         "no authentication, so bind it to a loopback or internal address."},
};
// clang-format on

bool key_matches(std::string_view pattern, std::string_view key) {
  size_t star = pattern.find('*');
  if (star == std::string_view::npos) return pattern == key;
  std::string_view prefix = pattern.substr(0, star), suffix = pattern.substr(star + 1);
  if (key.size() <= prefix.size() + suffix.size()) return false;
  if (key.substr(0, prefix.size()) != prefix || key.substr(key.size() - suffix.size()) != suffix) return false;
  std::string_view name = key.substr(prefix.size(), key.size() - prefix.size() - suffix.size());
  return name.find('.') == std::string_view::npos;
}

}  // namespace

std::span<const Option> options() { return kOptions; }

const Option* find_option(std::string_view key) {
  for (const Option& option : kOptions)
    if (key_matches(option.key, key)) return &option;
  return nullptr;
}

std::string_view type_name(Type type) {
  switch (type) {
    case Type::string:
      return "string";
    case Type::url:
      return "url";
    case Type::url_list:
      return "url or array of urls";
    case Type::integer:
      return "integer";
    case Type::duration:
      return "duration";
    case Type::boolean:
      return "boolean";
    case Type::enumeration:
      return "enum";
    case Type::string_list:
      return "array of strings";
    case Type::table_array:
      return "array of tables";
  }
  return "?";
}

std::string allowed_text(const Option& option) {
  switch (option.type) {
    case Type::integer:
      return std::to_string(option.min) + ".." + std::to_string(option.max);
    case Type::duration:
      return format_duration(Duration(option.min)) + ".." + format_duration(Duration(option.max));
    case Type::enumeration:
      return std::string(option.allowed);
    case Type::boolean:
      return "true|false";
    default:
      return "";
  }
}

}  // namespace outbox::config

namespace outbox::config {

std::string mdoc_reference() {
  auto escape = [](std::string_view text) {
    std::string out;
    for (char c : text) {
      if (c == '\\')
        out += "\\e";
      else
        out += c;
    }
    // mdoc wants each sentence on its own line.
    for (size_t at = out.find(". "); at != std::string::npos; at = out.find(". ", at)) out.replace(at, 2, ".\n");
    return out;
  };
  std::string out = ".Bl -tag -width Ds\n";
  for (const Option& option : options()) {
    out += ".It Cm " + std::string(option.key) + "\n";
    out += escape(option.help) + "\n.Pp\n";
    out += "Type: " + std::string(type_name(option.type));
    if (std::string allowed = allowed_text(option); !allowed.empty() && option.type != Type::boolean) out += ", " + allowed;
    out += ".\n";
    if (option.type != Type::table_array) {
      out += option.default_value.empty() ? std::string("Default: not set") : "Default: " + escape(option.default_value);
      out += "\n";
    }
    out += option.reloadable ? "Reloadable with SIGHUP.\n" : "Needs a restart to change.\n";
    if (!option.env.empty()) out += "Environment: " + std::string(option.env) + "\n";
  }
  out += ".El\n";
  return out;
}

}  // namespace outbox::config
