#pragma once
// The replicate daemon (see replicate/replicator.hpp for one replica's flow).
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/daemon.hpp"
#include "core/error.hpp"
#include "core/metrics.hpp"
#include "replicate/replicator.hpp"
#include "replicate/settings.hpp"

namespace outbox::replicate {

// The daemon: the replicators of the chosen replicas on one Runtime, with shutdown, reload,
// sd_notify and the metrics registry.
class Service {
 public:
  // What differs between `outbox replicate` and `outbox consume` (consume/service.hpp), which runs
  // this Service over its consumers.
  struct Flavor {
    std::string name = "replicate";  // in log lines
    // The tunables of a reload, for the served targets; throws Error(config) for a bad configuration.
    std::function<Tunables(const config::Config&, const std::vector<std::string>&)> reload_tunables =
        [](const config::Config& fresh, const std::vector<std::string>& replicas) {
          return settings_from_config(fresh, replicas).tunables;
        };
  };
  // One replicator per replica of `settings` (replicate::settings_from_config chose and checked them).
  Service(daemon::Runtime& runtime, Settings settings);
  Service(daemon::Runtime& runtime, Settings settings, Flavor flavor);
  ~Service();
  void start();
  metrics::Registry& metrics() { return metrics_; }
  std::vector<std::unique_ptr<Replicator>>& replicators() { return replicators_; }
  // Why the daemon stopped itself (a configuration problem: exit 78), with its exit code.
  const std::optional<Error>& fatal_error() const { return fatal_error_; }

 private:
  void shutdown_requested();
  daemon::Runtime& runtime_;
  Flavor flavor_;
  metrics::Registry metrics_;
  std::vector<std::unique_ptr<Replicator>> replicators_;
  std::unique_ptr<loop::Timer> shutdown_timer_;
  std::chrono::milliseconds shutdown_timeout_;  // replicate.shutdown_timeout, reloadable
  std::optional<Error> fatal_error_;
  size_t drained_ = 0;
  bool announced_ready_ = false;
};

}  // namespace outbox::replicate
