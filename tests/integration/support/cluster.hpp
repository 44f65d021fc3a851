#pragma once
// A 3-node RabbitMQ cluster for the tests that need one (scripts/servers start rabbitmq-cluster),
// beside the single node every test binary gets: which node a daemon is connected to, which node
// leads a quorum queue, and faults of one node (stop, SIGKILL, start).
//
// The nodes are numbered 1..3 (rabbitmq-1..3 in scripts/servers). A node is found by the AMQP port
// a connection reached (rabbitmqctl list_connections port) and by its Erlang node name, which ends
// in "-N@localhost".
#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace outbox::testing {

using namespace std::chrono_literals;

struct Cluster {
  std::string broker_url;                // every node's URL, comma-separated (broker.url as OUTBOX_BROKER_URL takes it)
  std::vector<std::string> node_urls;    // [0..2]: amqp://...@127.0.0.1:PORT/ of nodes 1..3
  std::vector<int> ports;                // [0..2]: their AMQP ports
  std::vector<std::string> rabbitmqctl;  // [0..2]: rabbitmqctl bound to each node
};

// Starts the cluster once per test binary (a failure is a fatal test failure) and returns it.
const Cluster& start_cluster();
const Cluster& cluster();

// scripts/servers stop|kill|start rabbitmq-N. A failure is a test failure; returns success.
bool stop_node(int node);
bool kill_node(int node);
bool start_node(int node);

// Asked through a node that is up: are all three nodes running in one cluster?
bool cluster_whole();
// Waits until the cluster is whole again (after a node was started).
bool await_cluster_whole(std::chrono::milliseconds deadline = 180s);

// The node (1..3) that the connection whose connection_name client property starts with
// `connection_name` is connected to, asked through any node that is up; nullopt when there is no
// such connection (the daemon is between nodes).
std::optional<int> node_of_connection(const std::string& connection_name);
// The node (1..3) that leads quorum queue `queue`, asked through any node that is up.
std::optional<int> leader_of_queue(const std::string& queue);

}  // namespace outbox::testing
