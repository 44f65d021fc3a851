#pragma once
// The RabbitMQ topology of outbox, declared by `outbox migrate`, the relay and `outbox replicate`
// alike, with the same arguments (RabbitMQ refuses a redeclaration with other arguments: 406).
//
//   exchange broker.exchange   topic, durable, alternate-exchange outbox.unroutable
//   exchange outbox.unroutable fanout, durable -> queue outbox.unroutable (unroutable events are kept;
//            this queue and outbox.dead-letter are quorum queues when broker.queue_type = "quorum")
//   exchange outbox.dead-letter fanout, durable -> queue outbox.dead-letter (messages a replica
//            queue dead-letters: rejected without requeue, or past a quorum queue's delivery limit)
//   queue outbox.replica.NAME  durable (quorum when replicas.NAME.queue_type = "quorum"),
//            x-dead-letter-exchange outbox.dead-letter, bound to broker.exchange with each of
//            replicas.NAME.binding_keys
//   queue outbox.consumer.NAME the same for the consumer of service NAME (services.NAME.queue_type,
//            services.NAME.binding_keys): a consumer's queue is a replica's queue by another name
//
// With relay.pack > 1 (packed messages, migrate/pack.hpp), also:
//   exchange relay.pack_exchange (outbox.packed)  topic, durable, alternate-exchange outbox.unroutable;
//            each replica and consumer queue is bound to it with its binding keys too
// Why a separate exchange: a consumer outside outbox, bound to broker.exchange, must never be
// handed a pack it cannot read; only queues bound to the pack exchange opted in.
//
// A partitioned replica (replicas.NAME.partitions = N > 1) has, instead of its one queue (and a
// partitioned consumer, services.NAME.partitions, the same with outbox.consumer.NAME in its names):
//   exchange outbox.replica.NAME.hash  x-consistent-hash on the aggregate_id header, bound to
//            broker.exchange with each of the binding keys
//   queue outbox.replica.NAME.p0 .. pN-1  as the one queue above, plus x-single-active-consumer,
//            each bound to the hash exchange with weight "1"
// Why the aggregate_id header: every event of an aggregate then lands in one queue, in the order
// the relay published it (the relay sets the header on every message, heartbeats included). Why
// single-active-consumer: the broker itself then never delivers one queue to two processes at once,
// whatever our own sharing (replicate/partition_share.hpp) does wrong.
// With packing on (relay.pack > 1), also:
//   exchange outbox.replica.NAME.packhash  x-consistent-hash on the outbox_partition header, bound
//            to relay.pack_exchange with each of the binding keys
//   each partition queue bound to it with weight "1" too
// Why another header: a pack holds several aggregates, so it has no one aggregate_id; but all its
// events are of one relay partition (migrate/pack.hpp), and all of an aggregate's events are in
// one relay partition, so every pack holding an aggregate's events lands in one queue, in the
// order the relay published them. The spread is over relay.partitions keys (16 by default), not
// over the aggregates: a larger relay.partitions spreads packs more evenly.
// Why relay.pack must not change while partition queues hold events: an aggregate's events then
// take the other hash exchange, and may land in another queue than its earlier events
// (check_pack_switch refuses it, on or off, while they hold messages).
// Why a changed N is refused (check_partitioning): the ring of the hash exchange moves aggregates to
// other queues when queues come or go, so events of one aggregate would sit in two queues, served
// by two processes, and could apply out of order. The procedure is: stop writes or the relay, let
// replicate drain every queue, stop replicate, delete the old queues (and the hash exchange),
// change N, start again.
#include <string>
#include <vector>

#include "core/amqp.hpp"
#include "core/config.hpp"

namespace outbox::topology {

inline constexpr const char* kUnroutable = "outbox.unroutable";
inline constexpr const char* kDeadLetter = "outbox.dead-letter";

struct ReplicaQueue {
  std::string replica;  // "main"
  std::string queue;    // "outbox.replica.main"
  bool quorum = false;
  std::vector<std::string> binding_keys;
  int partitions = 1;     // replicas.NAME.partitions: 1 is the one queue `queue`
  bool consumer = false;  // a service's consumer (services.NAME.*), for the option its errors name
  // relay.pack_exchange when relay.pack > 1: the queue is bound to it too, with the same keys, so
  // that it receives the packed stream (migrate/pack.hpp) as well as single events. "" when off.
  std::string pack_exchange;
  int pack = 1;  // relay.pack when pack_exchange is set: up to this many events per message
};

// relay.pack_exchange when relay.pack > 1, else "".
std::string pack_exchange(const config::Config& config);

std::string replica_queue_name(const std::string& replica);
ReplicaQueue replica_queue(const config::Config& config, const std::string& replica);
// The queue of service NAME's consumer ("outbox.consumer.NAME"), as a ReplicaQueue: `replica`
// holds the service name. Its binding keys are services.NAME.binding_keys, which may be empty (then
// the queue is declared unbound: `outbox consume` refuses to start without them); its partitions
// services.NAME.partitions.
std::string consumer_queue_name(const std::string& service);
ReplicaQueue consumer_queue(const config::Config& config, const std::string& service);

// "outbox.replica.main.p3": the queue of partition 3 of the replica whose queue is `queue`.
std::string partition_queue_name(const std::string& queue, int partition);
// "outbox.replica.main.hash": the consistent-hash exchange that spreads its events over the partitions.
std::string hash_exchange_name(const std::string& queue);
// "outbox.replica.main.packhash": the one that spreads packs over them, by relay partition.
std::string pack_hash_exchange_name(const std::string& queue);
// The queues the replica's events go to: its one queue, or its N partition queues.
std::vector<std::string> queue_names(const ReplicaQueue& replica);

// Throws Error(config) when the broker holds queues of another partitioning of the replica than
// replica.partitions (see above: a change splits the order of aggregates).
void check_partitioning(amqp::Connection& connection, const ReplicaQueue& replica);
// For a partitioned replica, whose pack hash exchange exists exactly while packing is on: throws
// Error(config) when packing turns on (relay.pack > 1, no pack hash exchange) or off (relay.pack =
// 1, the exchange exists) while its partition queues hold messages (see above). Turning off with
// empty queues deletes the exchange. A packing relay still running then sends its packs to
// outbox.unroutable: stop the relay before the switch, either way.
void check_pack_switch(amqp::Connection& connection, const ReplicaQueue& replica);

// The exchange events are published to, with its alternate exchange and queue (a quorum queue
// when `quorum_queues`: broker.queue_type).
void declare_exchange(amqp::Connection& connection, const std::string& exchange, bool quorum_queues = false);
// The dead-letter exchange and queue (quorum when `quorum_queues`), then the replica's (or
// consumer's) queue and its bindings, or its hash exchange and partition queues (after
// check_partitioning).
void declare_replica(amqp::Connection& connection, const std::string& exchange, const ReplicaQueue& replica,
                     bool quorum_queues = false);
// One line per object, for `outbox migrate` (and its dry run).
std::vector<std::string> describe(const std::string& exchange, const std::vector<ReplicaQueue>& replicas);

}  // namespace outbox::topology
