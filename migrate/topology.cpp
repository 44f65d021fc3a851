#include "migrate/topology.hpp"

namespace outbox::topology {

std::string replica_queue_name(const std::string& replica) { return "outbox.replica." + replica; }

ReplicaQueue replica_queue(const config::Config& config, const std::string& replica) {
  ReplicaQueue out;
  out.replica = replica;
  out.queue = replica_queue_name(replica);
  std::string prefix = "replicas." + replica + ".";
  if (config.values().count(prefix + "queue_type")) out.quorum = config.text(prefix + "queue_type") == "quorum";
  if (config.values().count(prefix + "binding_keys"))
    out.binding_keys = config.list(prefix + "binding_keys");
  else
    out.binding_keys = {"#"};
  return out;
}

std::string consumer_queue_name(const std::string& service) { return "outbox.consumer." + service; }

ReplicaQueue consumer_queue(const config::Config& config, const std::string& service) {
  ReplicaQueue out;
  out.replica = service;
  out.queue = consumer_queue_name(service);
  std::string prefix = "services." + service + ".";
  if (config.values().count(prefix + "queue_type")) out.quorum = config.text(prefix + "queue_type") == "quorum";
  if (config.values().count(prefix + "binding_keys")) out.binding_keys = config.list(prefix + "binding_keys");
  return out;
}

void declare_exchange(amqp::Connection& connection, const std::string& exchange, bool quorum_queues) {
  connection.declare_exchange(kUnroutable, "fanout");
  connection.declare_queue(kUnroutable, amqp::QueueOptions{.quorum = quorum_queues});
  connection.bind_queue(kUnroutable, kUnroutable, "");
  connection.declare_exchange(exchange, "topic", kUnroutable);
}

void declare_replica(amqp::Connection& connection, const std::string& exchange, const ReplicaQueue& replica, bool quorum_queues) {
  connection.declare_exchange(kDeadLetter, "fanout");
  connection.declare_queue(kDeadLetter, amqp::QueueOptions{.quorum = quorum_queues});
  connection.bind_queue(kDeadLetter, kDeadLetter, "");
  amqp::QueueOptions options;
  options.quorum = replica.quorum;
  options.dead_letter_exchange = kDeadLetter;
  connection.declare_queue(replica.queue, options);
  for (const std::string& key : replica.binding_keys) connection.bind_queue(replica.queue, exchange, key);
}

std::vector<std::string> describe(const std::string& exchange, const std::vector<ReplicaQueue>& replicas) {
  std::vector<std::string> out;
  out.push_back("exchange " + exchange + " (topic, durable, alternate exchange " + kUnroutable + ")");
  out.push_back(std::string("exchange ") + kUnroutable + " (fanout) and queue " + kUnroutable);
  out.push_back(std::string("exchange ") + kDeadLetter + " (fanout) and queue " + kDeadLetter);
  for (const ReplicaQueue& replica : replicas) {
    std::string keys;
    for (const std::string& key : replica.binding_keys) keys += (keys.empty() ? "" : ", ") + key;
    std::string queue =
        "queue " + replica.queue + " (" + (replica.quorum ? "quorum" : "classic") + ", dead-letter exchange " + kDeadLetter + ")";
    out.push_back(keys.empty() ? queue + " not bound (no binding_keys)" : queue + " bound to " + exchange + " with " + keys);
  }
  return out;
}

}  // namespace outbox::topology
