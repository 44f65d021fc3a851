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
};

std::string replica_queue_name(const std::string& replica);
ReplicaQueue replica_queue(const config::Config& config, const std::string& replica);
// The queue of service NAME's consumer ("outbox.consumer.NAME"), as a ReplicaQueue: `replica`
// holds the service name. Its binding keys are services.NAME.binding_keys, which may be empty (then
// the queue is declared unbound: `outbox consume` refuses to start without them).
std::string consumer_queue_name(const std::string& service);
ReplicaQueue consumer_queue(const config::Config& config, const std::string& service);

// The exchange events are published to, with its alternate exchange and queue (a quorum queue
// when `quorum_queues`: broker.queue_type).
void declare_exchange(amqp::Connection& connection, const std::string& exchange, bool quorum_queues = false);
// The dead-letter exchange and queue (quorum when `quorum_queues`), then the replica's (or
// consumer's) queue and its bindings.
void declare_replica(amqp::Connection& connection, const std::string& exchange, const ReplicaQueue& replica,
                     bool quorum_queues = false);
// One line per object, for `outbox migrate` (and its dry run).
std::vector<std::string> describe(const std::string& exchange, const std::vector<ReplicaQueue>& replicas);

}  // namespace outbox::topology
