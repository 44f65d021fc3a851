#include "ops/verify_service.hpp"

#include <algorithm>

#include "core/amqp.hpp"
#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/pg.hpp"
#include "core/settings.hpp"
#include "migrate/runner.hpp"
#include "migrate/service_migrations.hpp"
#include "migrate/topology.hpp"

namespace outbox::verify {
namespace {

ServiceCheck schema_check(pqxx::connection& connection, const std::string& role) {
  migrate::Status status = migrate::status(connection, migrate::Target::service);
  if (auto problem = migrate::checksum_problem(status, role)) return {"schema", false, *problem};
  if (status.pending() > 0)
    return {"schema", false,
            std::to_string(status.pending()) + " migration(s) of the service set pending (run 'outbox migrate --service ...')"};
  return {"schema", true, "at version " + std::to_string(status.current)};
}

ServiceCheck own_migrations_check(const config::Config& config, const std::string& service, pqxx::connection& connection,
                                  const std::string& role) {
  std::string dir = config::service_migrations_dir(config, service);
  if (dir.empty()) return {"own migrations", true, "none configured"};
  std::vector<migrate::OwnMigration> files;
  try {
    files = migrate::read_own_migrations(dir, role);
  } catch (const Error& error) {
    return {"own migrations", false, error.what()};
  }
  std::vector<migrate::OwnEntry> entries = migrate::own_status(connection, files);
  std::string changed, pending;
  for (const migrate::OwnEntry& entry : entries) {
    std::string& list = entry.state == migrate::OwnState::changed ? changed : pending;
    if (entry.state != migrate::OwnState::applied) list += (list.empty() ? "" : ", ") + entry.migration->file;
  }
  if (!changed.empty()) return {"own migrations", false, "changed since applied: " + changed};
  if (!pending.empty()) return {"own migrations", false, "pending (run 'outbox migrate'): " + pending};
  return {"own migrations", true, std::to_string(files.size()) + " applied"};
}

// Each function named by the config exists with the arguments the consumer calls it with.
ServiceCheck handlers_check(const config::Config& config, const std::string& service, pqxx::connection& connection) {
  std::vector<std::string> missing;
  int count = 0;
  auto look_up = [&](const std::string& function, const std::string& arguments) {
    ++count;
    pqxx::nontransaction tx(connection);
    bool found = false;
    try {
      // to_regprocedure: NULL for a function that does not exist; a name it cannot parse raises.
      found = tx.exec_params1("SELECT to_regprocedure($1) IS NOT NULL", function + arguments)[0].as<bool>();
    } catch (const pqxx::sql_error&) {
    }
    if (!found) missing.push_back(function + arguments);
  };
  std::string prefix = "services." + service + ".";
  for (const config::Section& handler : config.sections(prefix + "handlers")) look_up(handler.at("function").text, "(jsonb)");
  for (const config::Section& deadline : config.sections(prefix + "deadlines")) look_up(deadline.at("function").text, "()");
  if (count == 0) return {"handlers", true, "none configured"};
  if (!missing.empty()) {
    std::string list;
    for (const std::string& name : missing) list += (list.empty() ? "" : ", ") + name;
    return {"handlers", false, "missing in the database: " + list};
  }
  return {"handlers", true, std::to_string(count) + " function(s) found"};
}

std::vector<ServiceCheck> stuck_checks(pqxx::connection& connection, const std::string& service) {
  pqxx::read_transaction tx(connection);
  long long parked_rows = tx.exec1("SELECT count(*) FROM outbox_parked WHERE parked_at IS NOT NULL")[0].as<long long>();
  pqxx::row failed = tx.exec_params1(
      "SELECT count(*) FILTER (WHERE state = 'parked'), count(*) FILTER (WHERE state = 'waiting') FROM outbox_failed_events "
      "WHERE replica = $1",
      service);
  long long parked = failed[0].as<long long>(), waiting = failed[1].as<long long>();
  return {{"relay", parked_rows == 0,
           parked_rows == 0 ? "no outbox row parked"
                            : std::to_string(parked_rows) + " outbox row(s) parked (see outbox failed list --relay)"},
          {"consumer", parked + waiting == 0,
           parked + waiting == 0 ? "no failed event"
                                 : std::to_string(parked) + " event(s) parked and " + std::to_string(waiting) +
                                       " waiting (see outbox failed list --consumer " + service + ")"}};
}

ServiceCheck queue_check(const config::Config& config, const std::string& service) {
  topology::ReplicaQueue queue = topology::consumer_queue(config, service);
  bool handles = !config.sections("services." + service + ".handlers").empty();
  if (queue.binding_keys.empty())
    return {"queue", !handles,
            handles ? "services." + service + ".binding_keys is empty: outbox consume cannot start"
                    : "no consumer (no binding_keys)"};
  amqp::BrokerSettings settings = amqp::broker_settings(config);
  if (settings.urls.empty()) return {"queue", false, "broker.url is not set"};
  size_t node = 0;
  auto connection = amqp::Connection::open(settings, node, "outbox verify");
  // A partitioned consumer (services.NAME.partitions): its N queues, summed.
  std::vector<std::string> names = topology::queue_names(queue);
  unsigned long long ready = 0, consumers = 0;
  for (const std::string& name : names) {
    try {
      auto [queue_ready, queue_consumers] = connection->inspect_queue(name);
      ready += queue_ready;
      consumers += queue_consumers;
    } catch (const Error& error) {
      if (error.code() != ExitCode::data) throw;
      return {"queue", false, name + " does not exist (run 'outbox migrate')"};
    }
  }
  std::string what = names.size() == 1 ? queue.queue + " exists"
                                       : "the " + std::to_string(names.size()) + " partition queues of " + queue.queue + " exist";
  return {"queue", true, what + ": " + std::to_string(ready) + " ready, " + std::to_string(consumers) + " consumer(s)"};
}

}  // namespace

bool ServiceReport::ok() const {
  return std::all_of(checks.begin(), checks.end(), [](const ServiceCheck& check) { return check.ok; });
}

ServiceReport verify_service(const config::Config& config, const std::string& service) {
  const std::string& url = config::service_url(config, service, "verify");
  std::string role = "service " + service;
  ServiceReport report;
  report.service = service;
  auto connection = pg::connect(url, role, "outbox verify");
  try {
    report.checks.push_back(schema_check(*connection, role));
    report.checks.push_back(own_migrations_check(config, service, *connection, role));
    report.checks.push_back(handlers_check(config, service, *connection));
    // Without the service set's tables there is nothing stuck to count.
    if (report.checks.front().ok)
      for (ServiceCheck& check : stuck_checks(*connection, service)) report.checks.push_back(std::move(check));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    throw Error(pg::is_connection_error(error) ? ExitCode::unavailable : ExitCode::software, pg::failure_line(error, role));
  }
  try {
    report.checks.push_back(queue_check(config, service));
  } catch (const Error& error) {
    throw error.with_context("broker");
  }
  return report;
}

std::string render_service_text(const ServiceReport& report) {
  std::string out;
  for (const ServiceCheck& check : report.checks)
    out += std::string(check.ok ? "ok       " : "PROBLEM  ") + check.name + ": " + escape_controls(check.detail) + "\n";
  long long problems = std::count_if(report.checks.begin(), report.checks.end(), [](const ServiceCheck& c) { return !c.ok; });
  out += "service " + escape_controls(report.service) + ": " +
         (problems == 0 ? "ready, nothing stuck" : std::to_string(problems) + " problem(s)") + "\n";
  return out;
}

nlohmann::ordered_json render_service_json(const ServiceReport& report) {
  nlohmann::ordered_json checks = nlohmann::ordered_json::array();
  for (const ServiceCheck& check : report.checks)
    checks.push_back({{"check", check.name}, {"ok", check.ok}, {"detail", check.detail}});
  return {{"service", report.service}, {"ok", report.ok()}, {"checks", checks}};
}

}  // namespace outbox::verify
