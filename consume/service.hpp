#pragma once
// The consume daemon (`outbox consume`): replicate's Service over the chosen services' consumers
// (one engine: batching, per-aggregate order, isolation and parking, outages, standby takeover,
// lag and metrics are replicate's), plus each consumer's deadlines.
#include <memory>
#include <optional>
#include <vector>

#include "consume/deadlines.hpp"
#include "consume/settings.hpp"
#include "core/daemon.hpp"
#include "core/error.hpp"
#include "replicate/service.hpp"

namespace outbox::consume {

class Service {
 public:
  Service(daemon::Runtime& runtime, Settings settings);
  void start() { engine_.start(); }
  metrics::Registry& metrics() { return engine_.metrics(); }
  const std::optional<Error>& fatal_error() const { return engine_.fatal_error(); }

 private:
  // Before engine_: destroyed after it, when its Replicators' workers (which run them) are joined.
  std::vector<std::unique_ptr<Deadlines>> deadlines_;  // per consumer
  replicate::Service engine_;
};

}  // namespace outbox::consume
