#include "ops/lag.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "core/amqp.hpp"
#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"
#include "migrate/topology.hpp"
#include "relay/parked_rows.hpp"
#include "relay/settings.hpp"

namespace outbox::lag {
namespace {

std::string now_iso() {
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  long long ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                utc.tm_hour, utc.tm_min, utc.tm_sec, ms);
  return buffer;
}

void read_broker(const config::Config& config, const std::vector<std::string>& replicas, const std::string& service,
                 BrokerStage& stage) {
  std::vector<QueueStage> queues;
  // A partitioned replica (replicas.NAME.partitions) or consumer (services.NAME.partitions) has one
  // row per partition queue.
  for (const std::string& replica : replicas)
    for (const std::string& queue : topology::queue_names(topology::replica_queue(config, replica)))
      queues.push_back({queue, replica});
  if (!service.empty())
    for (const std::string& queue : topology::queue_names(topology::consumer_queue(config, service)))
      queues.push_back({queue, service});
  queues.push_back({topology::kUnroutable, ""});
  queues.push_back({topology::kDeadLetter, ""});
  try {
    amqp::BrokerSettings settings = amqp::broker_settings(config);
    size_t node = 0;
    std::unique_ptr<amqp::Connection> connection;
    for (QueueStage& queue : queues) {
      // A passive declare of a missing queue closes the channel (404): open a new connection then.
      if (!connection) connection = amqp::Connection::open(settings, node, "outbox lag");
      try {
        auto [ready, consumers] = connection->inspect_queue(queue.queue);
        queue.exists = true;
        queue.ready = ready;
        queue.consumers = consumers;
      } catch (const Error& error) {
        if (error.code() != ExitCode::data) throw;
        connection.reset();
      }
    }
    stage.queues = std::move(queues);
  } catch (const std::exception& error) {
    stage.error = first_line(error.what());
  }
}

std::string pad(const std::string& text, size_t width, bool right = false) {
  if (text.size() >= width) return text;
  std::string fill(width - text.size(), ' ');
  return right ? fill + text : text + fill;
}

// Rows of cells as aligned columns; a column is right-aligned when `right[i]`.
std::string columns(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right) {
  std::vector<size_t> widths;
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) {
      if (widths.size() <= i) widths.push_back(0);
      widths[i] = std::max(widths[i], row[i].size());
    }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      bool last = i + 1 == row.size();
      line += last && !right[i] ? row[i] : pad(row[i], widths[i], right[i]);
      if (!last) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string age_text(std::optional<double> seconds) {
  if (!seconds) return "-";
  double s = std::max(0.0, *seconds);
  char buffer[64];
  if (s < 120) return format_seconds(s);
  long long whole = static_cast<long long>(s);
  if (whole < 3600)
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", whole / 60, whole % 60);
  else if (whole < 86400)
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", whole / 3600, whole % 3600 / 60);
  else
    std::snprintf(buffer, sizeof buffer, "%lldd%02lldh", whole / 86400, whole % 86400 / 3600);
  return buffer;
}

std::string ago(std::optional<double> seconds) { return seconds ? age_text(seconds) + " ago" : "-"; }

template <typename T>
nlohmann::ordered_json optional_json(const std::optional<T>& value) {
  return value ? nlohmann::ordered_json(*value) : nlohmann::ordered_json(nullptr);
}

nlohmann::ordered_json error_json(const std::string& error) {
  return error.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(error);
}

}  // namespace

void compute_behind(ReplicaStage& replica, const PrimaryStage* primary, double heartbeat_interval) {
  std::optional<double> oldest;
  if (primary && primary->error.empty()) oldest = primary->oldest_unpublished_age();
  compute_behind(replica, oldest, heartbeat_interval);
}

const QueueStage* BrokerStage::find(const std::string& queue) const {
  for (const QueueStage& stage : queues)
    if (stage.queue == queue) return &stage;
  return nullptr;
}

ReplicaStage read_consumer(const config::Config& config, const std::string& name) {
  return read_stage("service " + name, name, [&] { return config::service_url(config, name); });
}

namespace {

Report collect_service(const config::Config& config, const Scope& scope, Report report) {
  report.service = scope.service;
  config::service_url(config, scope.service, "lag");  // a config error for a service that is not configured
  if (scope.primary)
    report.primary = read_primary(config, scope.service);
  else
    report.primary.error = "not read";
  if (scope.broker)
    read_broker(config, {}, scope.service, report.broker);
  else
    report.broker.error = "not read";
  ReplicaStage consumer = read_consumer(config, scope.service);
  // Not this service's backlog: the consumer reads the others' outboxes (see the header).
  compute_behind(consumer, nullptr, report.heartbeat_interval);
  report.replicas.push_back(std::move(consumer));
  return report;
}

}  // namespace

Report collect(const config::Config& config, const Scope& scope) {
  Report report;
  report.at = now_iso();
  report.heartbeat_interval = static_cast<double>(relay::tunables_from_config(config).heartbeat_interval.count()) / 1000.0;
  if (!scope.service.empty()) return collect_service(config, scope, std::move(report));
  std::vector<std::string> names = scope.replicas.empty() ? config.replica_names() : scope.replicas;
  for (const std::string& name : names) config::replica_url(config, name);
  if (scope.primary)
    report.primary = read_primary(config);
  else
    report.primary.error = "not read";
  if (scope.broker)
    read_broker(config, names, "", report.broker);
  else
    report.broker.error = "not read";
  for (const std::string& name : names) {
    ReplicaStage stage = read_replica(config, name);
    compute_behind(stage, scope.primary ? &report.primary : nullptr, report.heartbeat_interval);
    report.replicas.push_back(std::move(stage));
  }
  return report;
}

std::string render_text(const Report& report) {
  // Names come from the config, errors from the servers: escaped, one line each.
  auto e = [](const std::string& text) { return escape_controls(text); };
  bool service = !report.service.empty();
  std::string database = service ? "service " + e(report.service) : "primary";
  std::string out = "outbox lag " + (service ? "of service " + e(report.service) + " " : "") + "at " + report.at +
                    " (relay heartbeat every " +
                    format_duration(Duration(static_cast<long long>(report.heartbeat_interval * 1000))) + ")\n\n";

  std::vector<std::vector<std::string>> rows = {{"OUTBOX TABLE", "UNPUBLISHED", "OLDEST", "LAST PUBLISH", "PARKED", "WAITING"}};
  for (const TableStage& table : report.primary.tables)
    rows.push_back({e(table.table), std::to_string(table.unpublished), age_text(table.oldest_unpublished_age),
                    ago(table.last_published_age), std::to_string(table.parked), std::to_string(table.waiting)});
  out += columns(rows, {false, true, true, false, true, true});
  if (!report.primary.error.empty()) out += "  " + database + " unreachable: " + e(report.primary.error) + "\n";

  out += "\n";
  rows = {{"BROKER QUEUE", "READY", "CONSUMERS"}};
  for (const QueueStage& queue : report.broker.queues)
    rows.push_back({e(queue.queue), queue.exists ? std::to_string(queue.ready) : "missing",
                    queue.exists ? std::to_string(queue.consumers) : "-"});
  out += columns(rows, {false, true, true});
  if (!report.broker.error.empty()) out += "  broker unreachable: " + e(report.broker.error) + "\n";

  out += "\n";
  std::string kind = service ? "consumer" : "replica";
  rows = {
      {service ? "CONSUMER" : "REPLICA", "BEHIND", "HEARTBEAT", service ? "LAST HANDLED" : "LAST APPLIED", "PARKED", "WAITING"}};
  for (const ReplicaStage& replica : report.replicas) {
    if (!replica.error.empty()) {
      rows.push_back({e(replica.name), "?", "-", "-", "-", "-"});
      continue;
    }
    std::string heartbeat = ago(replica.heartbeat_age);
    if (replica.heartbeat_transit) heartbeat += " (took " + age_text(replica.heartbeat_transit) + ")";
    std::string applied = replica.last_event_id ? e(*replica.last_event_id) + " " + ago(replica.last_applied_age) : "-";
    rows.push_back({e(replica.name), replica.seconds_behind ? age_text(replica.seconds_behind) : "?", heartbeat, applied,
                    std::to_string(replica.parked), std::to_string(replica.waiting)});
  }
  out += columns(rows, {false, true, false, false, true, true});
  for (const ReplicaStage& replica : report.replicas) {
    if (!replica.error.empty())
      out += "  " + kind + " " + e(replica.name) + " unreachable: " + e(replica.error) + "\n";
    else if (!replica.seconds_behind)
      out += "  " + kind + " " + e(replica.name) + ": " + e(replica.behind_source) + "\n";
  }
  return out;
}

nlohmann::ordered_json to_json(const Report& report) {
  nlohmann::ordered_json tables = nlohmann::ordered_json::array();
  for (const TableStage& table : report.primary.tables)
    tables.push_back({{"table", table.table},
                      {"unpublished", table.unpublished},
                      {"oldest_unpublished_age_seconds", optional_json(table.oldest_unpublished_age)},
                      {"last_published_at", optional_json(table.last_published_at)},
                      {"last_published_age_seconds", optional_json(table.last_published_age)},
                      {"parked", table.parked},
                      {"waiting", table.waiting}});
  nlohmann::ordered_json queues = nlohmann::ordered_json::array();
  for (const QueueStage& queue : report.broker.queues)
    queues.push_back(
        {{"queue", queue.queue},
         {"replica", queue.replica.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(queue.replica)},
         {"exists", queue.exists},
         {"ready", queue.exists ? nlohmann::ordered_json(queue.ready) : nlohmann::ordered_json(nullptr)},
         {"consumers", queue.exists ? nlohmann::ordered_json(queue.consumers) : nlohmann::ordered_json(nullptr)}});
  auto depth = [&](const char* name) {
    const QueueStage* queue = report.broker.find(name);
    return queue && queue->exists ? nlohmann::ordered_json(queue->ready) : nlohmann::ordered_json(nullptr);
  };
  nlohmann::ordered_json replicas = nlohmann::ordered_json::array();
  for (const ReplicaStage& replica : report.replicas)
    replicas.push_back({{"name", replica.name},
                        {"error", error_json(replica.error)},
                        {"seconds_behind", optional_json(replica.seconds_behind)},
                        {"behind_source", replica.behind_source},
                        {"last_applied",
                         {{"event_id", optional_json(replica.last_event_id)},
                          {"position", optional_json(replica.last_position)},
                          {"created_at", optional_json(replica.last_created_at)},
                          {"applied_at", optional_json(replica.last_applied_at)},
                          {"age_seconds", optional_json(replica.last_applied_age)}}},
                        {"heartbeat",
                         {{"relay", optional_json(replica.heartbeat_relay)},
                          {"created_at", optional_json(replica.heartbeat_created_at)},
                          {"applied_at", optional_json(replica.heartbeat_applied_at)},
                          {"age_seconds", optional_json(replica.heartbeat_age)},
                          {"transit_seconds", optional_json(replica.heartbeat_transit)},
                          {"applied_age_seconds", optional_json(replica.heartbeat_applied_age)}}},
                        {"failed", {{"parked", replica.parked}, {"waiting", replica.waiting}}}});
  return {{"at", report.at},
          {"service", report.service.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(report.service)},
          {"heartbeat_interval_seconds", report.heartbeat_interval},
          {"outbox", {{"error", error_json(report.primary.error)}, {"tables", tables}}},
          {"broker",
           {{"error", error_json(report.broker.error)},
            {"queues", queues},
            {"unroutable", depth(topology::kUnroutable)},
            {"dead_letter", depth(topology::kDeadLetter)}}},
          {"replicas", replicas}};
}

}  // namespace outbox::lag
