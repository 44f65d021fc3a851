#include "migrate/topology.hpp"

#include "core/error.hpp"
#include "migrate/pack.hpp"

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
  if (config.values().count(prefix + "partitions")) out.partitions = static_cast<int>(config.integer(prefix + "partitions"));
  out.pack_exchange = pack_exchange(config);
  if (!out.pack_exchange.empty()) out.pack = static_cast<int>(config.integer("relay.pack"));
  return out;
}

std::string pack_exchange(const config::Config& config) {
  if (config.integer("relay.pack") <= 1) return "";
  return config.text("relay.pack_exchange");
}

std::string consumer_queue_name(const std::string& service) { return "outbox.consumer." + service; }

ReplicaQueue consumer_queue(const config::Config& config, const std::string& service) {
  ReplicaQueue out;
  out.replica = service;
  out.queue = consumer_queue_name(service);
  std::string prefix = "services." + service + ".";
  if (config.values().count(prefix + "queue_type")) out.quorum = config.text(prefix + "queue_type") == "quorum";
  if (config.values().count(prefix + "binding_keys")) out.binding_keys = config.list(prefix + "binding_keys");
  if (config.values().count(prefix + "partitions")) out.partitions = static_cast<int>(config.integer(prefix + "partitions"));
  out.consumer = true;
  out.pack_exchange = pack_exchange(config);
  if (!out.pack_exchange.empty()) out.pack = static_cast<int>(config.integer("relay.pack"));
  return out;
}

std::string partition_queue_name(const std::string& queue, int partition) { return queue + ".p" + std::to_string(partition); }

std::string hash_exchange_name(const std::string& queue) { return queue + ".hash"; }

std::string pack_hash_exchange_name(const std::string& queue) { return queue + ".packhash"; }

std::vector<std::string> queue_names(const ReplicaQueue& replica) {
  if (replica.partitions <= 1) return {replica.queue};
  std::vector<std::string> out;
  for (int partition = 0; partition < replica.partitions; ++partition)
    out.push_back(partition_queue_name(replica.queue, partition));
  return out;
}

void check_partitioning(amqp::Connection& connection, const ReplicaQueue& replica) {
  const int n = replica.partitions;
  const std::string daemon = replica.consumer ? "consume" : "replicate";
  std::string option = (replica.consumer ? "services." : "replicas.") + replica.replica + ".partitions = " + std::to_string(n);
  std::string procedure =
      "; drain them (stop the relay, wait for " + daemon + "), stop " + daemon + ", delete them, then start again";
  std::string found;
  if (n <= 1) {
    if (connection.queue_exists(partition_queue_name(replica.queue, 0)))
      found = "partition queues " + partition_queue_name(replica.queue, 0) + "... exist";
  } else if (connection.queue_exists(replica.queue)) {
    found = "the unpartitioned queue " + replica.queue + " exists";
  } else if (connection.queue_exists(partition_queue_name(replica.queue, n))) {
    found = "more partition queues exist (" + partition_queue_name(replica.queue, n) + ")";
  } else if (connection.queue_exists(partition_queue_name(replica.queue, 0)) &&
             !connection.queue_exists(partition_queue_name(replica.queue, n - 1))) {
    found = "fewer partition queues exist (no " + partition_queue_name(replica.queue, n - 1) + ")";
  }
  if (!found.empty())
    throw config_error((replica.consumer ? "consumer " : "replica ") + replica.replica + ": " + option + " but " + found +
                       ": another partitioning would split the order of an aggregate's events" + procedure);
}

void check_pack_switch(amqp::Connection& connection, const ReplicaQueue& replica) {
  if (replica.partitions <= 1) return;
  // The pack hash exchange exists exactly while packing is on for these queues: it is the state.
  const std::string pack_hash = pack_hash_exchange_name(replica.queue);
  const bool packing = !replica.pack_exchange.empty();
  if (packing == connection.exchange_exists(pack_hash)) return;
  unsigned long long queued = 0;
  for (const std::string& queue : queue_names(replica))
    if (connection.queue_exists(queue)) queued += connection.inspect_queue(queue).first;
  const std::string who = (replica.consumer ? "consumer " : "replica ") + replica.replica;
  const std::string daemon = replica.consumer ? "consume" : "replicate";
  if (queued != 0 && packing)
    throw config_error(who + ": relay.pack = " + std::to_string(replica.pack) +
                       " turns packing on, but its partition queues hold " + std::to_string(queued) +
                       " message(s) published unpacked: packs go to the queues by relay partition, so an aggregate's "
                       "next events could land in another queue than these and be handled first; drain them (stop the "
                       "relay, wait for " +
                       daemon + "), then start " + daemon + " and the relay again");
  if (queued != 0)
    throw config_error(who + ": relay.pack = 1 turns packing off, but its partition queues hold " + std::to_string(queued) +
                       " message(s) that may be packs, which went to the queues by relay partition: an aggregate's next "
                       "events, published unpacked, could land in another queue than these and be handled first; drain "
                       "them with packing still on (stop the relay, wait for " +
                       daemon + "), then start " + daemon + " and the relay with relay.pack = 1");
  // Packing is off and the queues are empty: without its hash exchange, the next start with
  // packing on is a switch again (checked above).
  if (!packing) connection.delete_exchange(pack_hash);
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
  check_partitioning(connection, replica);
  check_pack_switch(connection, replica);
  if (replica.partitions <= 1) {
    connection.declare_queue(replica.queue, options);
    for (const std::string& key : replica.binding_keys) connection.bind_queue(replica.queue, exchange, key);
    if (!replica.pack_exchange.empty()) {
      declare_exchange(connection, replica.pack_exchange, quorum_queues);
      for (const std::string& key : replica.binding_keys) connection.bind_queue(replica.queue, replica.pack_exchange, key);
    }
    return;
  }
  std::string hash = hash_exchange_name(replica.queue);
  connection.declare_exchange(hash, "x-consistent-hash", "", "aggregate_id");
  for (const std::string& key : replica.binding_keys) connection.bind_exchange(hash, exchange, key);
  std::string pack_hash;
  if (!replica.pack_exchange.empty()) {
    declare_exchange(connection, replica.pack_exchange, quorum_queues);
    pack_hash = pack_hash_exchange_name(replica.queue);
    connection.declare_exchange(pack_hash, "x-consistent-hash", "", pack::kPartitionHeader);
    for (const std::string& key : replica.binding_keys) connection.bind_exchange(pack_hash, replica.pack_exchange, key);
  }
  options.single_active_consumer = true;
  for (const std::string& queue : queue_names(replica)) {
    connection.declare_queue(queue, options);
    connection.bind_queue(queue, hash, "1");  // equal weights: each queue an equal share of the ring
    if (!pack_hash.empty()) connection.bind_queue(queue, pack_hash, "1");
  }
}

std::vector<std::string> describe(const std::string& exchange, const std::vector<ReplicaQueue>& replicas) {
  std::vector<std::string> out;
  out.push_back("exchange " + exchange + " (topic, durable, alternate exchange " + kUnroutable + ")");
  out.push_back(std::string("exchange ") + kUnroutable + " (fanout) and queue " + kUnroutable);
  out.push_back(std::string("exchange ") + kDeadLetter + " (fanout) and queue " + kDeadLetter);
  for (const ReplicaQueue& replica : replicas) {
    std::string keys;
    for (const std::string& key : replica.binding_keys) keys += (keys.empty() ? "" : ", ") + key;
    std::string type = std::string(replica.quorum ? "quorum" : "classic") + ", dead-letter exchange " + kDeadLetter;
    if (replica.partitions > 1) {
      std::string hash = hash_exchange_name(replica.queue);
      out.push_back("exchange " + hash + " (x-consistent-hash on header aggregate_id) bound to " + exchange + " with " + keys);
      std::string bound_to = hash;
      if (!replica.pack_exchange.empty()) {
        std::string pack_hash = pack_hash_exchange_name(replica.queue);
        out.push_back("exchange " + pack_hash + " (x-consistent-hash on header " + pack::kPartitionHeader + ") bound to " +
                      replica.pack_exchange + " with " + keys);
        bound_to += " and " + pack_hash;
      }
      out.push_back("queues " + partition_queue_name(replica.queue, 0) + " .. " +
                    partition_queue_name(replica.queue, replica.partitions - 1) + " (" + type +
                    ", single active consumer) bound to " + bound_to + " with weight 1");
      continue;
    }
    std::string queue = "queue " + replica.queue + " (" + type + ")";
    std::string to = replica.pack_exchange.empty() ? exchange : exchange + " and " + replica.pack_exchange;
    out.push_back(keys.empty() ? queue + " not bound (no binding_keys)" : queue + " bound to " + to + " with " + keys);
  }
  return out;
}

}  // namespace outbox::topology
