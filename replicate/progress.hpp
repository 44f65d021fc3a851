#pragma once
// The replica's stage of the lag measure (ops/lag.hpp explains it): the last applied event, the
// newest applied relay heartbeat, the parked failed events, and the seconds behind. Read by
// replicate for its gauge and by `outbox lag`, `outbox check` and the parking reads' staleness bound.
#include <functional>
#include <optional>
#include <pqxx/pqxx>
#include <string>

#include "core/config.hpp"
#include "core/metrics.hpp"

namespace outbox::lag {

struct ReplicaStage {
  std::string name;
  std::string error;        // "" when it was read
  bool unmigrated = false;  // the error is a missing table: a configuration problem, not an outage
  std::optional<std::string> last_event_id, last_created_at, last_applied_at;
  std::optional<long long> last_position;
  std::optional<double> last_applied_age;
  std::optional<std::string> heartbeat_relay, heartbeat_created_at, heartbeat_applied_at;
  std::optional<double> heartbeat_age, heartbeat_transit;
  std::optional<double> heartbeat_applied_age;  // since a heartbeat was last applied, by the replica's clock
  long long parked = 0;                         // failed events parked (poison)
  long long waiting = 0;                        // events waiting behind a parked event of their aggregate
  std::optional<double> seconds_behind;
  std::string behind_source;  // "heartbeat", "backlog", or why it is unknown
};

// Reads the replica's stage in the caller's transaction.
ReplicaStage read_replica(pqxx::transaction_base& tx, const std::string& replica);

// Connects to the configured replica `name` and reads its stage; a replica that cannot be read
// leaves `error` (and `unmigrated`) set (never throws for that). seconds_behind is left unknown:
// compute_behind fills it.
ReplicaStage read_replica(const config::Config& config, const std::string& name);
// The same for any database that holds an engine's bookkeeping (a replica, a service's consumer):
// connects to url() as `role` and reads the stage of `name` there. A failure, the URL lookup's
// included, leaves `error` set.
ReplicaStage read_stage(const std::string& role, const std::string& name, const std::function<std::string()>& url);

// Fills seconds_behind and behind_source from the replica's heartbeat and, when known, the age of
// the primary's oldest unpublished row (see ops/lag.hpp).
void compute_behind(ReplicaStage& replica, std::optional<double> oldest_unpublished_age, double heartbeat_interval);

// Gauge for /metrics: outbox_replicate_lag_seconds{replica} (absent while unknown); for a consumer of
// `outbox consume`, outbox_consume_lag_seconds{service}.
void set_replica_gauges(metrics::Registry& registry, const ReplicaStage& replica, bool consumer = false);

}  // namespace outbox::lag
