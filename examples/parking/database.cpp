#include "examples/parking/database.hpp"

#include <optional>

#include "core/duration.hpp"
#include "core/settings.hpp"
#include "relay/backlog.hpp"
#include "relay/settings.hpp"
#include "replicate/progress.hpp"

namespace outbox::parking {

Source resolve_source(const config::Config& config, const std::string& from) {
  if (from == "primary") return primary_source(config);
  std::string name;
  if (from == "replica")
    name = "main";
  else if (from.rfind("replica:", 0) == 0 && from.size() > 8)
    name = from.substr(8);
  else
    throw usage_error("--from must be primary, replica or replica:NAME (got '" + from + "')");
  return {"replica " + name, config::replica_url(config, name)};
}

Source primary_source(const config::Config& config) { return {"primary", config::primary_url(config)}; }

void require_fresh(const config::Config& config, const std::string& from, const std::string& limit) {
  std::optional<Duration> max = parse_duration(limit);
  if (!max) throw usage_error("--max-staleness: not a duration (got '" + limit + "'; e.g. 500ms, 30s, 2m)");
  Source source = resolve_source(config, from);
  if (source.role == "primary") return;
  std::string name = source.role.substr(std::string("replica ").size());
  // outbox lag's measure of this replica, without the broker (lag::collect in ops/lag.cpp).
  double heartbeat_interval = static_cast<double>(relay::tunables_from_config(config).heartbeat_interval.count()) / 1000.0;
  lag::PrimaryStage primary = lag::read_primary(config);
  lag::ReplicaStage replica = lag::read_replica(config, name);
  lag::compute_behind(replica, primary.error.empty() ? primary.oldest_unpublished_age() : std::nullopt, heartbeat_interval);
  if (!replica.error.empty()) throw replica.unmigrated ? config_error(replica.error) : unavailable_error(replica.error);
  double seconds = static_cast<double>(max->count()) / 1000.0;
  if (!replica.seconds_behind)
    throw Error(ExitCode::tempfail, "replica " + name + ": staleness unknown (" + replica.behind_source +
                                        "), so it cannot promise --max-staleness " + limit +
                                        "; read --from primary or retry later");
  if (*replica.seconds_behind > seconds)
    throw Error(ExitCode::tempfail, "replica " + name + " is " + format_seconds(*replica.seconds_behind) +
                                        " behind, more than --max-staleness " + limit + "; read --from primary or retry later");
}

}  // namespace outbox::parking
