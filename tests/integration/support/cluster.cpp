#include "tests/integration/support/cluster.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/integration/support/harness.hpp"

namespace outbox::testing {
namespace {

Cluster g_cluster;
bool g_node_down[3] = {false, false, false};

std::string node_name(int node) { return "rabbitmq-" + std::to_string(node); }

// rabbitmqctl QUERY... --formatter json through the first node that is not known to be down;
// nullopt when none answered. A node that is up but slow (a shared machine) gets 60 s.
std::optional<nlohmann::json> ask_cluster(const std::vector<std::string>& query) {
  for (int node = 1; node <= 3; ++node) {
    if (g_node_down[node - 1]) continue;
    std::vector<std::string> args = {g_cluster.rabbitmqctl[node - 1], "-q"};
    args.insert(args.end(), query.begin(), query.end());
    args.insert(args.end(), {"--formatter", "json"});
    RunResult result = run_program(args, 60s);
    if (result.exit_code != 0) continue;
    nlohmann::json parsed = nlohmann::json::parse(result.out, nullptr, false);
    if (!parsed.is_discarded()) return parsed;
  }
  return std::nullopt;
}

// "outbox-0123456789-2@localhost" -> 2.
std::optional<int> node_number(const std::string& erlang_node) {
  size_t at = erlang_node.find('@');
  if (at == std::string::npos || at < 2 || erlang_node[at - 2] != '-') return std::nullopt;
  char digit = erlang_node[at - 1];
  if (digit < '1' || digit > '3') return std::nullopt;
  return digit - '0';
}

bool servers_action(const std::string& action, int node) {
  RunResult result = run_servers({action, node_name(node)});
  if (result.exit_code != 0) ADD_FAILURE() << "scripts/servers " << action << " " << node_name(node) << " failed:\n" << result;
  return result.exit_code == 0;
}

}  // namespace

const Cluster& start_cluster() {
  if (!g_cluster.broker_url.empty()) return g_cluster;
  RunResult started = run_servers({"start", "rabbitmq-cluster"}, 600s);
  if (started.exit_code != 0) {
    ADD_FAILURE() << "scripts/servers start rabbitmq-cluster failed:\n" << started;
    return g_cluster;
  }
  auto exports = servers_exports();
  std::string list = exports["OUTBOX_BROKER_CLUSTER_URL"];
  std::stringstream urls(list);
  for (std::string url; std::getline(urls, url, ',');) {
    g_cluster.node_urls.push_back(url);
    size_t colon = url.rfind(':');
    g_cluster.ports.push_back(std::stoi(url.substr(colon + 1)));
  }
  for (int node = 1; node <= 3; ++node) g_cluster.rabbitmqctl.push_back(exports["OUTBOX_RABBITMQCTL_" + std::to_string(node)]);
  if (g_cluster.node_urls.size() != 3) {
    ADD_FAILURE() << "scripts/servers env printed no 3-node OUTBOX_BROKER_CLUSTER_URL: " << list;
    return g_cluster;
  }
  g_cluster.broker_url = list;
  return g_cluster;
}

const Cluster& cluster() { return g_cluster; }

bool stop_node(int node) {
  g_node_down[node - 1] = true;
  return servers_action("stop", node);
}

bool kill_node(int node) {
  g_node_down[node - 1] = true;
  return servers_action("kill", node);
}

bool start_node(int node) {
  bool started = servers_action("start", node);
  g_node_down[node - 1] = !started;
  return started;
}

bool cluster_whole() {
  for (int node = 1; node <= 3; ++node) {
    if (g_node_down[node - 1]) return false;
  }
  auto status = ask_cluster({"cluster_status"});
  return status && status->contains("running_nodes") && (*status)["running_nodes"].size() == 3;
}

bool await_cluster_whole(std::chrono::milliseconds deadline) { return eventually(cluster_whole, deadline); }

std::optional<int> node_of_connection(const std::string& connection_name) {
  auto connections = ask_cluster({"list_connections", "port", "client_properties"});
  if (!connections || !connections->is_array()) return std::nullopt;
  for (const auto& connection : *connections) {
    // client_properties is a list of [key, type, value]; the dump is searched for the name.
    if (connection.value("client_properties", nlohmann::json()).dump().find("\"" + connection_name) == std::string::npos)
      continue;
    int port = connection.value("port", 0);
    for (int node = 1; node <= 3; ++node) {
      if (g_cluster.ports[node - 1] == port) return node;
    }
  }
  return std::nullopt;
}

std::optional<int> leader_of_queue(const std::string& queue) {
  auto queues = ask_cluster({"list_queues", "name", "leader"});
  if (!queues || !queues->is_array()) return std::nullopt;
  for (const auto& entry : *queues) {
    if (entry.value("name", "") == queue) return node_number(entry.value("leader", ""));
  }
  return std::nullopt;
}

}  // namespace outbox::testing
