#include "ops/check.hpp"

#include <algorithm>
#include <cstdio>
#include <iterator>

#include "core/escape.hpp"
#include "migrate/topology.hpp"

namespace outbox::check {
namespace {

// Seconds as Nagios perfdata thresholds: 30, 120, 0.5.
std::string number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", value);
  return buffer;
}

std::string threshold_text(double seconds) { return format_duration(Duration(static_cast<long long>(seconds * 1000 + 0.5))); }

// Perfdata labels may not hold '=' or a quote; names with spaces would need quoting.
std::string label(const std::string& name) {
  std::string out;
  for (char c : name) out += (c == '=' || c == '\'' || c == ' ' || c == '|') ? '_' : c;
  return out;
}

// The text part must not contain '|', which starts the perfdata, nor newlines; other control
// characters (from a server's error, a name) are escaped.
std::string clean(std::string text) {
  for (char& c : text)
    if (c == '|')
      c = '/';
    else if (c == '\n')
      c = ' ';
  return escape_controls(text);
}

std::string plural(long long count, const std::string& word) {
  return std::to_string(count) + " " + word + (count == 1 ? "" : "s");
}

// Adds the ready messages of the replica's queue to `backlog` (a partitioned replica's queues are
// outbox.replica.NAME.p0.., a consumer's outbox.consumer.NAME.p0.., each a row of the report with
// its `replica`: the service checked alone has no replica rows); returns the missing ones.
std::vector<std::string> add_queue_backlog(const lag::BrokerStage& broker, const std::string& queue_name,
                                           const std::string& replica, long long& backlog) {
  std::vector<const lag::QueueStage*> queues;
  for (const lag::QueueStage& queue : broker.queues)
    if (queue.queue == queue_name || (!replica.empty() && queue.replica == replica)) queues.push_back(&queue);
  if (queues.empty()) return {queue_name};
  std::vector<std::string> missing;
  for (const lag::QueueStage* queue : queues) {
    if (queue->exists)
      backlog += queue->ready;
    else
      missing.push_back(queue->queue);
  }
  return missing;
}

}  // namespace

std::string_view status_name(Status status) {
  // By Status, in its order (the plugin exit codes 0..3).
  static constexpr std::string_view kNames[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};
  auto index = static_cast<size_t>(status);
  return index < std::size(kNames) ? kNames[index] : "UNKNOWN";
}

Result unknown(const std::string& reason) { return {Status::unknown, "OUTBOX UNKNOWN - " + clean(reason)}; }

Result evaluate(const lag::Report& report, const Thresholds& thresholds) {
  Status status = Status::ok;
  auto raise = [&status](Status to) { status = std::max(status, to); };
  std::vector<std::string> unreachable, parts;
  // Per service (--service NAME), the consumer stands where a replica stands (ops/lag.hpp).
  bool service = !report.service.empty();
  std::string database = service ? "service " + report.service : "primary";
  if (!report.primary.error.empty()) unreachable.push_back("database " + database + " unreachable: " + report.primary.error);
  if (!report.broker.error.empty()) unreachable.push_back("broker unreachable: " + report.broker.error);

  long long backlog = report.primary.unpublished(), failed = 0;
  std::string perf;
  for (const lag::TableStage& table : report.primary.tables) {
    if (table.parked + table.waiting == 0) continue;
    raise(Status::warning);
    std::string part = "outbox " + table.table + " has " + plural(table.parked, "row") + " parked";
    if (table.waiting > 0) part += " and " + std::to_string(table.waiting) + " waiting behind";
    parts.push_back(part + " (see outbox failed list --relay)");
    failed += table.parked + table.waiting;
  }
  for (const lag::ReplicaStage& replica : report.replicas) {
    std::string name = (service ? "consumer " : "replica ") + replica.name;
    std::string queue_name = service ? topology::consumer_queue_name(replica.name) : topology::replica_queue_name(replica.name);
    if (!replica.error.empty()) {
      unreachable.push_back("database " + (service ? database : name) + " unreachable: " + replica.error);
      perf += "lag_" + label(replica.name) + "=U;" + number(thresholds.warning) + ";" + number(thresholds.critical) + ";0 ";
      continue;
    }
    if (replica.seconds_behind) {
      double behind = *replica.seconds_behind;
      std::string part = name + " " + format_seconds(behind) + " behind";
      if (behind >= thresholds.critical) {
        raise(Status::critical);
        part += " (critical at " + threshold_text(thresholds.critical) + ")";
      } else if (behind >= thresholds.warning) {
        raise(Status::warning);
        part += " (warning at " + threshold_text(thresholds.warning) + ")";
      }
      parts.push_back(part);
      char value[32];
      std::snprintf(value, sizeof value, "%.1fs", behind);
      perf += "lag_" + label(replica.name) + "=" + value + ";";
    } else {
      raise(Status::warning);
      parts.push_back(name + " lag unknown (" + replica.behind_source + ")");
      perf += "lag_" + label(replica.name) + "=U;";
    }
    perf += number(thresholds.warning) + ";" + number(thresholds.critical) + ";0 ";
    if (replica.parked + replica.waiting > 0) {
      raise(Status::warning);
      std::string part = name + " has " + plural(replica.parked, "failed event") + " parked";
      if (replica.waiting > 0) part += " and " + std::to_string(replica.waiting) + " waiting behind";
      parts.push_back(part + " (see outbox failed list " + (service ? "--consumer " : "--replica ") + replica.name + ")");
    }
    failed += replica.parked + replica.waiting;
    if (report.broker.error.empty()) {
      std::vector<std::string> missing = add_queue_backlog(report.broker, queue_name, replica.name, backlog);
      if (!missing.empty()) raise(Status::warning);
      for (const std::string& queue : missing) parts.push_back("queue " + queue + " missing (run outbox migrate)");
    }
  }
  perf += "backlog=" + std::to_string(backlog) + ";;;0 failed=" + std::to_string(failed) + ";;;0";

  if (report.replicas.empty()) unreachable.push_back("no replica is configured (set [replicas.NAME] url, or OUTBOX_REPLICA_URL)");
  std::string text;
  if (!unreachable.empty()) {
    status = Status::unknown;
    for (const std::string& reason : unreachable) text += (text.empty() ? "" : "; ") + reason;
  } else {
    for (const std::string& part : parts) text += part + ", ";
    text += "backlog " + std::to_string(backlog);
  }
  return {status, "OUTBOX " + std::string(status_name(status)) + " - " + clean(text) + " | " + perf};
}

}  // namespace outbox::check
