#include "replicate/progress.hpp"

#include <algorithm>

#include "core/pg.hpp"
#include "core/settings.hpp"

namespace outbox::lag {

ReplicaStage read_replica(pqxx::transaction_base& tx, const std::string& replica) {
  ReplicaStage stage;
  stage.name = replica;
  pqxx::result position = tx.exec_params("SELECT last_event_id::text, last_position, " + pg::iso_utc("last_created_at") + ", " +
                                             pg::iso_utc("applied_at") +
                                             ", extract(epoch FROM clock_timestamp() - applied_at)::float8 "
                                             "FROM outbox_applied_position WHERE replica = $1",
                                         replica);
  if (!position.empty()) {
    stage.last_event_id = pg::optional_field<std::string>(position[0][0]);
    stage.last_position = pg::optional_field<long long>(position[0][1]);
    stage.last_created_at = pg::optional_field<std::string>(position[0][2]);
    stage.last_applied_at = pg::optional_field<std::string>(position[0][3]);
    stage.last_applied_age = pg::optional_field<double>(position[0][4]);
  }
  pqxx::result heartbeat = tx.exec_params("SELECT relay, " + pg::iso_utc("created_at") + ", " + pg::iso_utc("applied_at") +
                                              ", extract(epoch FROM clock_timestamp() - created_at)::float8"
                                              ", extract(epoch FROM applied_at - created_at)::float8"
                                              ", extract(epoch FROM clock_timestamp() - applied_at)::float8 "
                                              "FROM outbox_heartbeat WHERE replica = $1",
                                          replica);
  if (!heartbeat.empty()) {
    stage.heartbeat_relay = pg::optional_field<std::string>(heartbeat[0][0]);
    stage.heartbeat_created_at = pg::optional_field<std::string>(heartbeat[0][1]);
    stage.heartbeat_applied_at = pg::optional_field<std::string>(heartbeat[0][2]);
    stage.heartbeat_age = pg::optional_field<double>(heartbeat[0][3]);
    stage.heartbeat_transit = pg::optional_field<double>(heartbeat[0][4]);
    stage.heartbeat_applied_age = pg::optional_field<double>(heartbeat[0][5]);
  }
  pqxx::row failed = tx.exec_params1(
      "SELECT count(*) FILTER (WHERE state = 'parked'), count(*) FILTER (WHERE state = 'waiting') "
      "FROM outbox_failed_events WHERE replica = $1",
      replica);
  stage.parked = failed[0].as<long long>();
  stage.waiting = failed[1].as<long long>();
  return stage;
}

ReplicaStage read_stage(const std::string& role, const std::string& name, const std::function<std::string()>& url) {
  try {
    auto connection = pg::connect(url(), role, "outbox lag");
    pqxx::read_transaction tx(*connection);
    return read_replica(tx, name);
  } catch (const std::exception& error) {
    ReplicaStage stage;
    stage.name = name;
    stage.error = pg::failure_line(error, role);
    stage.unmigrated = dynamic_cast<const pqxx::undefined_table*>(&error) != nullptr;
    return stage;
  }
}

ReplicaStage read_replica(const config::Config& config, const std::string& name) {
  return read_stage("replica " + name, name, [&] { return config::replica_url(config, name); });
}

void compute_behind(ReplicaStage& replica, std::optional<double> oldest_unpublished_age, double heartbeat_interval) {
  replica.seconds_behind.reset();
  if (!replica.error.empty()) {
    replica.behind_source = "replica unreadable";
    return;
  }
  if (!replica.heartbeat_age) {
    replica.behind_source = "no relay heartbeat applied yet";
    // Still, the replica is at least as far behind as the oldest row nobody has published.
    if (oldest_unpublished_age) {
      replica.seconds_behind = std::max(0.0, *oldest_unpublished_age);
      replica.behind_source = "backlog; no relay heartbeat applied yet";
    }
    return;
  }
  double behind = std::max({replica.heartbeat_transit.value_or(0), *replica.heartbeat_age - heartbeat_interval,
                            replica.heartbeat_applied_age.value_or(0) - heartbeat_interval});
  replica.behind_source = "heartbeat";
  if (oldest_unpublished_age && *oldest_unpublished_age > behind) {
    behind = *oldest_unpublished_age;
    replica.behind_source = "backlog";
  }
  replica.seconds_behind = std::max(0.0, behind);
}

void set_replica_gauges(metrics::Registry& registry, const ReplicaStage& replica, bool consumer) {
  // While the lag is unknown (no heartbeat yet, the database unreachable), the series is left
  // out: alert on absent(...) for that, rather than on a sentinel value.
  metrics::Gauge& lag =
      consumer ? registry.gauge("outbox_consume_lag_seconds",
                                "Seconds the consumer is behind its relays, from the relay heartbeats it receives (absent while "
                                "unknown)",
                                {{"service", replica.name}})
               : registry.gauge("outbox_replicate_lag_seconds",
                                "Seconds the replica is behind the primary, from the relay heartbeats (absent while unknown)",
                                {{"replica", replica.name}});
  if (replica.seconds_behind)
    lag.set(*replica.seconds_behind);
  else
    lag.clear();
}

}  // namespace outbox::lag
