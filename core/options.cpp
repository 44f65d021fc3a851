#include "core/options.hpp"

#include <array>
#include <string>

namespace outbox::config {
namespace {

constexpr long long kSecond = 1000;
constexpr long long kHour = 3600 * kSecond;
constexpr long long kDay = 24 * kHour;

// Both daemons' reconnect backoff.
constexpr Option max_backoff(std::string_view key) {
  return Option{.key = key,
                .type = Type::duration,
                .default_value = "30s",
                .min = 100,
                .max = kHour,
                .reloadable = true,
                .help = "Cap of the exponential backoff (with jitter) between reconnect attempts."};
}

// clang-format off
constexpr std::array kOptions{
  Option{.key = "primary.url", .type = Type::url, .required = true, .env = "OUTBOX_PRIMARY_URL",
         .help = "PostgreSQL URL of the primary (write) database that holds the outbox tables. TLS is set in the URL (sslmode, sslrootcert)."},
  Option{.key = "primary.password_file", .type = Type::string,
         .help = "File that holds only the password of primary.url, on one line (a trailing newline is ignored), relative to the config file's directory. The URL names the user and no password. Read at start and on reload; a file that group or other users can read draws a warning (chmod 0600, owned by the daemons' user). Not together with primary.password_credential."},
  Option{.key = "primary.password_credential", .type = Type::string,
         .help = "Name of the systemd credential that holds the password of primary.url: the file of that name in $CREDENTIALS_DIRECTORY, which systemd fills for a unit with LoadCredential=primary-password:/etc/outbox/primary-password (the source file may then be root's alone, mode 0600). The URL names the user and no password. Not together with primary.password_file."},

  Option{.key = "broker.url", .type = Type::url_list, .env = "OUTBOX_BROKER_URL",
         .help = "RabbitMQ URL (amqp:// or amqps://), or an array of node URLs of one cluster; on a connection failure the next node is tried. The environment variable takes a comma-separated list."},
  Option{.key = "broker.password_file", .type = Type::string,
         .help = "File that holds only the password of every node URL of broker.url, on one line (a trailing newline is ignored), relative to the config file's directory. The URL names the user and no password. Read at start and on reload; a file that group or other users can read draws a warning (chmod 0600, owned by the daemons' user). Not together with broker.password_credential."},
  Option{.key = "broker.password_credential", .type = Type::string,
         .help = "Name of the systemd credential that holds the password of every node URL of broker.url: the file of that name in $CREDENTIALS_DIRECTORY, which systemd fills for a unit with LoadCredential=broker-password:/etc/outbox/broker-password (the source file may then be root's alone, mode 0600). The URL names the user and no password. Not together with broker.password_file."},
  Option{.key = "broker.exchange", .type = Type::string, .default_value = "outbox",
         .help = "Topic exchange (durable) that events are published to and replica queues are bound to."},
  Option{.key = "broker.tls_ca", .type = Type::string,
         .help = "PEM file of the CA that signs the broker's certificate (amqps:// only). Empty: the system's CA bundle "
         "(SSL_CERT_FILE, else OpenSSL's default file). The host name in broker.url is checked against the "
         "certificate's DNS names: address the broker by name, not by IP address."},
  Option{.key = "broker.tls_cert", .type = Type::string,
         .help = "PEM client certificate for amqps:// (with broker.tls_key)."},
  Option{.key = "broker.tls_key", .type = Type::string,
         .help = "PEM private key of broker.tls_cert."},
  Option{.key = "broker.tls_verify", .type = Type::boolean, .default_value = "true",
         .help = "Verify the broker's certificate and host name for amqps://."},
  Option{.key = "broker.connect_timeout", .type = Type::duration, .default_value = "5s", .min = 100, .max = 60 * kSecond,
         .help = "How long to wait for a TCP connection (with TLS) to one broker node, and then for each step of the AMQP "
         "handshake and each declaration. The daemons try one node per attempt; while they wait they keep systemd's "
         "watchdog fed, and a signal is handled when the attempt ends."},
  Option{.key = "broker.heartbeat", .type = Type::duration, .default_value = "30s", .min = 0, .max = kHour,
         .help = "AMQP heartbeat interval; a connection silent for two intervals is treated as lost. 0 disables heartbeats."},

  Option{.key = "broker.queue_type", .type = Type::enumeration, .default_value = "classic", .allowed = "classic|quorum",
         .help = "Type of the queues outbox.unroutable and outbox.dead-letter, which every daemon checks when it connects. On a "
         "RabbitMQ cluster set quorum (with each replicas.NAME.queue_type and services.NAME.queue_type): a classic queue lives "
         "on one node, and while that node is down no daemon can connect to any node. Set before the first outbox migrate; "
         "RabbitMQ refuses to redeclare a queue with another type."},

  Option{.key = "relay.tables", .type = Type::table_array, .default_value = "[{ name = \"public.outbox\" }]",
         .help = "Outbox tables to relay, one [[relay.tables]] block each."},
  Option{.key = "relay.tables[].name", .type = Type::string, .required = true,
         .help = "Schema-qualified outbox table name, e.g. \"public.outbox\". The table must have the columns of the outbox created by outbox migrate."},
  Option{.key = "relay.tables[].exchange", .type = Type::string,
         .help = "Exchange for this table's events instead of broker.exchange."},
  Option{.key = "relay.tables[].routing_key", .type = Type::string,
         .help = "Fixed routing key for this table's events instead of the event type."},
  Option{.key = "relay.poll_interval", .type = Type::duration, .default_value = "1s", .min = 10, .max = kHour, .reloadable = true,
         .help = "Fallback poll interval; the relay wakes at once on LISTEN/NOTIFY."},
  Option{.key = "relay.notify_channel", .type = Type::string, .default_value = "outbox_events",
         .help = "LISTEN channel; the outbox trigger created by outbox migrate notifies outbox_events. Empty: no LISTEN, the relay "
         "polls every relay.poll_interval (for a primary behind a transaction-pooling pgbouncer, where LISTEN does not work)."},
  Option{.key = "relay.batch_size", .type = Type::integer, .default_value = "500", .min = 1, .max = 10000, .reloadable = true,
         .help = "Rows read per batch. With relay.pack above 1, a read takes relay.pack rows for each relay partition this relay owns when that is more (at most 10000), since a pack holds rows of one read."},
  Option{.key = "relay.max_unconfirmed", .type = Type::integer, .default_value = "6000", .min = 1, .max = 100000, .reloadable = true,
         .help = "Window of published but not yet confirmed events (outbox rows, whether each is its own message or in a pack); the relay reads ahead while confirms are pending, and marks a row only after its confirm."},
  Option{.key = "relay.confirm_timeout", .type = Type::duration, .default_value = "10s", .min = 100, .max = 10 * 60 * kSecond, .reloadable = true,
         .help = "How long the broker may go without confirming anything while messages wait for their publisher confirms; then the connection is reset and the unconfirmed rows are published again. Counted from the last confirm (or the batch's publication, if later), so a broker that confirms slowly but steadily never times out."},
  Option{.key = "relay.max_message_size", .type = Type::integer, .default_value = "134217728", .min = 1, .max = 536870912, .reloadable = true,
         .help = "Largest payload in bytes the relay publishes; a larger row is parked (outbox failed list --relay). Set it to the broker's max_message_size (RabbitMQ 3.x: 134217728; 4.x: 16777216)."},
  Option{.key = "relay.pack", .type = Type::integer, .default_value = "1", .min = 1, .max = 1000,
         .help = "Most events per AMQP message. 1 publishes each event as its own message, exactly as always. Above 1, the events of a table on broker.exchange go to relay.pack_exchange instead, as packs (content type application/vnd.outbox.pack+json, a JSON array of events) of rows of one relay partition with one routing key, in position order, built only from rows already read: at low rates a pack holds one event. Replica and consumer queues are bound to relay.pack_exchange too (partitioned ones through a hash of the outbox_partition header; turning packing on or off while they hold messages is refused). Consumers bound to broker.exchange get nothing of those tables while packing is on. Restart replicate and consume before the relay when changing it. Replicate's prefetch window counts packs: replicate.prefetch / relay.pack of them, but at least 50 (a window of a few packs would hold a trickle's small packs back and add to the latency), and never more than replicate.prefetch. Packs beyond the next batch wait compressed, so replicate holds about replicate.batch_size + relay.pack unpacked events whatever the window."},
  Option{.key = "relay.pack_exchange", .type = Type::string, .default_value = "outbox.packed",
         .help = "The topic exchange packs are published to when relay.pack > 1 (declared by outbox migrate, the relay, replicate and consume, with the alternate exchange outbox.unroutable)."},
  Option{.key = "relay.pack_compression", .type = Type::enumeration, .default_value = "none", .allowed = "none|zstd",
         .help = "How the body of a pack is encoded (relay.pack > 1). zstd: one zstd frame (content_encoding zstd), level 1; a pack of 100 parking events goes from about 40 KB to 5 KB, and the broker's CPU follows the bytes. Replicate and consume read both; a consumer outside outbox must decompress it first (outbox-relay(8)). Messages of one event are never compressed."},
  Option{.key = "relay.max_attempts", .type = Type::integer, .default_value = "3", .min = 1, .max = 100, .reloadable = true,
         .help = "How many times the broker may refuse a row (channel closed with 406, published alone) before it is parked."},
  Option{.key = "relay.partitions", .type = Type::integer, .default_value = "16", .min = 1, .max = 1024,
         .help = "Hash partitions of aggregate_id. Each is owned by one relay instance at a time (advisory lock). Relays with another value own no partition until every relay with the value in force has stopped, so order never splits; change it by restarting the relays one by one."},
  Option{.key = "relay.takeover_timeout", .type = Type::duration, .default_value = "10s", .min = 1 * kSecond, .max = kHour, .reloadable = true,
         .help = "Longest time before a live instance takes over the partitions of an instance that died."},
  Option{.key = "relay.on_publish", .type = Type::enumeration, .default_value = "mark", .allowed = "mark|delete", .reloadable = true,
         .help = "What to do with a confirmed row: mark it published (kept for relay.retention) or delete it."},
  Option{.key = "relay.retention", .type = Type::duration, .default_value = "24h", .min = 0, .max = 365 * kDay, .reloadable = true,
         .help = "How long published rows are kept before they are removed in small batches; 0 removes them at once. A partitioned outbox (migration 0004) drops a whole partition once every row in it was published longer ago than this."},
  Option{.key = "relay.maintenance_interval", .type = Type::duration, .default_value = "10s", .min = 1 * kSecond, .max = kHour,
         .reloadable = true,
         .help = "How often the relay looks after each outbox table's retention, as pgqd's maint_period does. A partitioned outbox (migration 0004) gets its partitions made ahead of the writers, cut and dropped, by one relay at a time (an advisory lock). A table that is not partitioned, and a partitioned one's default partition, lose their rows published more than relay.retention ago, at most 20,000 rows per tick: above that many per interval such a table grows. Partitions of relay.partition_size are kept ahead of the writers: two, or enough for two ticks at the fastest rate the position sequence advanced between two of the last 30 ticks (at the first tick, since the first row of the partition being written), plus one, at most 32. Rows that find no partition (the writers faster than 32 partitions last over two ticks, or a sudden burst) land in outbox_default, where they stay until relay.retention removes them, and no partition is cut meanwhile; the relay warns when it finds them. A cut and a drop each wait for a tick, so rows may stay up to two ticks longer than relay.retention alone would keep them. The first tick comes 1 s after the start, and at most 1 s after each connection to the primary. Each tick runs off the relay's event loop, on a connection of its own (application_name outbox-relay-maintenance), so publishing goes on meanwhile; a tick that comes while the last one still runs is skipped."},
  Option{.key = "relay.vacuum_interval", .type = Type::duration, .default_value = "10s", .min = 0, .max = kHour, .reloadable = true,
         .help = "How often the relay VACUUMs the partitions of a partitioned outbox (migration 0004) that hold at least 10,000 dead row versions, which each mark leaves behind. Autovacuum visits a table at most once per autovacuum_naptime (1 min by default), so at thousands of events a second the partition being written would carry hundreds of thousands of them. One relay does it (an advisory lock), off its event loop, on a connection of its own, skipping a partition that is locked. The relay's role must own the partitions or the database (otherwise they are left to autovacuum, and the relay says so once). 0 leaves them to autovacuum."},
  Option{.key = "relay.backlog_count_limit", .type = Type::integer, .default_value = "1000000", .min = 1, .max = 1000000000,
         .reloadable = true,
         .help = "The most unpublished rows the relay reads for outbox_relay_backlog_rows at each rebalance (every relay.takeover_timeout / 3): the first this many by position, whichever relay owns them, of which it counts its own; a larger backlog shows as at most this number. The read runs on the relay's event loop and costs the primary about 0.25 s per million rows, so an unbounded count of a backlog of tens of millions would stall publishing while the relay catches up."},
  Option{.key = "relay.partition_size", .type = Type::integer, .default_value = "1000000", .min = 1, .max = 1000000000, .reloadable = true,
         .help = "Positions per partition the relay creates ahead of the writers in a partitioned outbox (migration 0004); retention drops a partition whole. Choose it so that a partition fills in an hour or more: at 10M events a day, the default makes about ten. The migration's first partition of new rows (1,000,000 positions) is cut to it at the relay's first tick while it spans more than twice this size and holds fewer than 100,000 rows."},
  max_backoff("relay.max_backoff"),
  Option{.key = "relay.shutdown_timeout", .type = Type::duration, .default_value = "30s", .min = 100, .max = kHour, .reloadable = true,
         .help = "On SIGTERM, how long to wait for the in-flight batch to be confirmed and committed."},
  Option{.key = "relay.heartbeat_interval", .type = Type::duration, .default_value = "10s", .min = 0, .max = kHour, .reloadable = true,
         .help = "Interval of the heartbeat events that measure end-to-end lag; 0 disables them."},
  Option{.key = "relay.instance", .type = Type::string,
         .help = "Name of this relay instance in its logs, its AMQP connection name and its heartbeats; default host:pid."},

  Option{.key = "replicate.prefetch", .type = Type::integer, .default_value = "5000", .min = 1, .max = 65535,
         .help = "Unacknowledged messages the broker may send ahead (basic.qos); keep it several times replicate.batch_size, so that the next batches fill while one is applied and a pause of the broker does not idle the replica. With packs (relay.pack > 1) the window is replicate.prefetch / relay.pack packs, at least 50 (see relay.pack)."},
  Option{.key = "replicate.apply_connections", .type = Type::integer, .default_value = "1", .min = 1, .max = 8,
         .help = "Connections per replica database. With more than 1, a batch of 100 events or more is split by aggregate into parts applied at the same time, each part one transaction (its events, event ids and versions together), the part that moves the applied position committing last and the ack after all; for a replica server with cores to spare. 1: every batch is one transaction."},
  Option{.key = "replicate.batch_size", .type = Type::integer, .default_value = "500", .min = 1, .max = 10000, .reloadable = true,
         .help = "Events applied per replica transaction."},
  Option{.key = "replicate.batch_wait", .type = Type::duration, .default_value = "20ms", .min = 0, .max = 60 * kSecond, .reloadable = true,
         .help = "Longest wait for a batch to fill before it is applied."},
  Option{.key = "replicate.applied_retention", .type = Type::duration, .default_value = "7d", .min = 0, .max = 365 * kDay, .reloadable = true,
         .help = "How long the ids of applied events recorded by replicate.record_event_ids stay in outbox_applied_events (they tell a redelivery from a stale event, and serve audits) before they are removed in small batches; 0 keeps them forever. The per-aggregate versions, which make a redelivery a no-op, are never removed."},
  Option{.key = "replicate.max_attempts", .type = Type::integer, .default_value = "3", .min = 1, .max = 100, .reloadable = true,
         .help = "Attempts to apply a failing event before it is parked in the failed-events table."},
  Option{.key = "replicate.max_clock_skew", .type = Type::duration, .default_value = "1m", .min = 1 * kSecond, .max = kDay, .reloadable = true,
         .help = "How far ahead of the replica database's clock the created_at of an event or relay heartbeat (stamped by the "
         "primary's clock) may be. A later one (a forged message, or a primary whose clock runs ahead) is still applied, "
         "but its time moves neither the applied position nor the heartbeat that lag, check and verify read; it is "
         "counted in outbox_replicate_future_events_total and logged. The larger it is, the longer a forged heartbeat "
         "can hold the heartbeat's time back; a stalled replicate is still seen, by the replica's clock alone."},
  Option{.key = "replicate.record_event_ids", .type = Type::boolean, .default_value = "false", .reloadable = true,
         .help = "Record the id of every applied event in the replica's outbox_applied_events (with its aggregate, version, "
         "position and times), for tracing and audits. Not needed for correctness: every event has a version, and the "
         "version guard alone makes a redelivery a no-op; off, a redelivered event is counted as stale rather than as a "
         "duplicate, and each event costs the replica an insert and two index entries less."},
  max_backoff("replicate.max_backoff"),
  Option{.key = "replicate.shutdown_timeout", .type = Type::duration, .default_value = "30s", .min = 100, .max = kHour, .reloadable = true,
         .help = "On SIGTERM, how long to wait for the in-flight batch to commit; then it is cancelled and rolled back, to be redelivered."},
  Option{.key = "replicate.mappings", .type = Type::table_array,
         .help = "Event type to table mappings, one [[replicate.mappings]] block each. The parking mapping (parking.create and parking.update upsert parking_slots, parking.delete deletes) is built in."},
  Option{.key = "replicate.mappings[].event_type", .type = Type::string, .required = true,
         .help = "Event type (routing key) this mapping applies to."},
  Option{.key = "replicate.mappings[].table", .type = Type::string, .required = true,
         .help = "Replica table, optionally schema-qualified."},
  Option{.key = "replicate.mappings[].operation", .type = Type::enumeration, .default_value = "upsert", .allowed = "upsert|delete",
         .help = "upsert: the payload's fields become the row; delete: the row with the key is deleted (a tombstone version is kept)."},
  Option{.key = "replicate.mappings[].key_column", .type = Type::string, .default_value = "uuid",
         .help = "Key column of the table; the payload field of the same name holds the aggregate id."},

  Option{.key = "replicas.*.url", .type = Type::url, .required = true, .env = "OUTBOX_REPLICA_URL",
         .help = "PostgreSQL URL of the replica (read-model) database NAME. The environment variable sets the replica named main."},
  Option{.key = "replicas.*.password_file", .type = Type::string,
         .help = "File that holds only the password of replicas.NAME.url, on one line (a trailing newline is ignored), relative to the config file's directory. The URL names the user and no password. Read at start and on reload; a file that group or other users can read draws a warning (chmod 0600, owned by the daemons' user). Not together with replicas.*.password_credential."},
  Option{.key = "replicas.*.password_credential", .type = Type::string,
         .help = "Name of the systemd credential that holds the password of replicas.NAME.url: the file of that name in $CREDENTIALS_DIRECTORY, which systemd fills for a unit with LoadCredential=replica-NAME-password:/etc/outbox/replica-NAME-password (the source file may then be root's alone, mode 0600). The URL names the user and no password. Not together with replicas.*.password_file."},
  Option{.key = "replicas.*.queue_type", .type = Type::enumeration, .default_value = "classic", .allowed = "classic|quorum",
         .help = "Type of the replica's durable queue outbox.replica.NAME."},
  Option{.key = "replicas.*.binding_keys", .type = Type::string_list, .default_value = "[\"#\"]",
         .help = "Routing keys the replica's queue is bound with."},
  Option{.key = "replicas.*.partitions", .type = Type::integer, .default_value = "1", .min = 1, .max = 256,
         .help = "Partition queues of the replica: 1 is the one queue outbox.replica.NAME; N > 1 splits its events by a hash of "
         "the aggregate id (the broker's consistent-hash exchange outbox.replica.NAME.hash, plugin rabbitmq_consistent_hash_exchange) "
         "into the queues outbox.replica.NAME.p0 .. pN-1, each with a single active consumer, which several `outbox replicate` "
         "processes share (each takes its fair share; the others take over a dead one's). A changed count is refused (exit 78) "
         "while the old queues exist: drain them, stop replicate, delete them, then change it."},

  Option{.key = "services.*.url", .type = Type::url, .required = true,
         .help = "PostgreSQL URL of the service database NAME (database per service): its outbox, its inbox and its own "
         "state. `outbox relay --service NAME` relays its outbox, `outbox consume --service NAME` runs its handlers, "
         "`outbox migrate` prepares it."},
  Option{.key = "services.*.password_file", .type = Type::string,
         .help = "File that holds only the password of services.NAME.url, on one line (a trailing newline is ignored), relative to the config file's directory. The URL names the user and no password. Read at start and on reload; a file that group or other users can read draws a warning (chmod 0600, owned by the daemons' user). Not together with services.*.password_credential."},
  Option{.key = "services.*.password_credential", .type = Type::string,
         .help = "Name of the systemd credential that holds the password of services.NAME.url: the file of that name in $CREDENTIALS_DIRECTORY, which systemd fills for a unit with LoadCredential=service-NAME-password:/etc/outbox/service-NAME-password (the source file may then be root's alone, mode 0600). The URL names the user and no password. Not together with services.*.password_file."},
  Option{.key = "services.*.migrations", .type = Type::string,
         .help = "Directory of the service's own *.sql migrations (its schema and handler functions), relative to the "
         "config file's directory. `outbox migrate` applies them in name order, each once, after outbox's own."},
  Option{.key = "services.*.queue_type", .type = Type::enumeration, .default_value = "classic", .allowed = "classic|quorum",
         .help = "Type of the service consumer's durable queue outbox.consumer.NAME."},
  Option{.key = "services.*.partitions", .type = Type::integer, .default_value = "1", .min = 1, .max = 256,
         .help = "Partition queues of the service's consumer: 1 is the one queue outbox.consumer.NAME; N > 1 splits its "
         "events by a hash of the aggregate id (the consistent-hash exchange outbox.consumer.NAME.hash) into the queues "
         "outbox.consumer.NAME.p0 .. pN-1, each with a single active consumer, which several `outbox consume` processes "
         "share as replicas.NAME.partitions does (its deadlines run with partition 0). A changed count is refused (exit 78) "
         "while the old queues exist: drain them, stop consume, delete them, then change it."},
  Option{.key = "services.*.binding_keys", .type = Type::string_list, .default_value = "[]",
         .help = "Routing keys the consumer's queue is bound with (required by `outbox consume`): the events and "
         "commands it handles, and the reply-to key of its requests."},
  Option{.key = "services.*.handlers", .type = Type::table_array,
         .help = "The consumer's handlers, one [[services.NAME.handlers]] block each: an event type (or pattern) and the "
         "SQL function that handles it in the service database."},
  Option{.key = "services.*.handlers[].event_type", .type = Type::string, .required = true,
         .help = "Event type the handler takes, or an AMQP topic pattern on the type (* one word, # zero or more "
         "words). An exact type wins over a pattern; among patterns the first block wins."},
  Option{.key = "services.*.handlers[].function", .type = Type::string, .required = true,
         .help = "SQL function f(jsonb), optionally schema-qualified, called with the event's envelope in the "
         "transaction that records the event in the inbox."},
  Option{.key = "services.*.deadlines", .type = Type::table_array,
         .help = "Functions that `outbox consume` runs on a timer, one [[services.NAME.deadlines]] block each (for "
         "example to compensate a saga step that got no answer)."},
  Option{.key = "services.*.deadlines[].function", .type = Type::string, .required = true,
         .help = "SQL function f(), optionally schema-qualified, run in its own transaction."},
  Option{.key = "services.*.deadlines[].every", .type = Type::duration, .default_value = "1s", .min = 10, .max = kDay,
         .help = "How often the function runs."},
  Option{.key = "consume.inbox_retention", .type = Type::duration, .default_value = "7d", .min = 0, .max = 365 * kDay, .reloadable = true,
         .help = "How long a consumer keeps the ids of handled events (its inbox, the dedupe window); 0 keeps them "
         "forever. A message redelivered after its id was pruned is handled again, so keep it longer than any "
         "redelivery can take: a broker or consumer outage, a message parked and retried by hand."},

  Option{.key = "log.level", .type = Type::enumeration, .default_value = "info", .allowed = "trace|debug|info|warn|error", .reloadable = true, .env = "OUTBOX_LOG_LEVEL",
         .help = "Lowest level that is logged."},
  Option{.key = "log.format", .type = Type::enumeration, .default_value = "text", .allowed = "text|json", .reloadable = true, .env = "OUTBOX_LOG_FORMAT",
         .help = "text: one human-readable line per event; json: one JSON object per line."},

  Option{.key = "metrics.listen", .type = Type::string,
         .help = "host:port where the daemons serve /metrics and /healthz; empty disables it. The ports kept for outbox are 17181 "
         "(relay), 17182 (replicate) and 17183 (consume), outside the range of Prometheus exporters. The endpoint serves at most 48 "
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
    if (option.required)
      out += "Required.\n";
    else if (option.type != Type::table_array)
      out += (option.default_value.empty() ? std::string("Default: not set") : "Default: " + escape(option.default_value)) + "\n";
    out += option.reloadable ? "Reloadable with SIGHUP.\n" : "Needs a restart to change.\n";
    if (!option.env.empty()) out += "Environment: " + std::string(option.env) + "\n";
  }
  out += ".El\n";
  return out;
}

}  // namespace outbox::config
