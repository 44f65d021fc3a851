#include "consume/service.hpp"

#include <algorithm>

namespace outbox::consume {
namespace {

replicate::Service::Flavor consume_flavor() {
  return replicate::Service::Flavor{
      .name = "consume",
      .reload_tunables =
          [](const config::Config& fresh, const std::vector<std::string>& services) {
            return settings_from_config(fresh, services).engine.tunables;
          },
  };
}

}  // namespace

Service::Service(daemon::Runtime& runtime, Settings settings) : engine_(runtime, settings.engine, consume_flavor()) {
  const auto& services = settings.engine.replicas;
  for (auto& consumer : engine_.replicators()) {
    // A partitioned consumer's deadlines run with its partition 0: in one process at a time, the
    // one that serves it (and whoever takes it over), never once per partition.
    if (consumer->partition() > 0) continue;
    auto service = std::find_if(services.begin(), services.end(), [&](const auto& s) { return s.name == consumer->replica(); });
    const std::vector<Deadline>& due = settings.deadlines.at(static_cast<size_t>(service - services.begin()));
    auto deadlines = std::make_unique<Deadlines>(consumer->replica(), due, engine_.metrics());
    if (!deadlines->empty()) {
      Deadlines* run = deadlines.get();
      consumer->run_between_batches(deadlines->interval(), [run](pqxx::connection& connection) { run->run_due(connection); });
    }
    deadlines_.push_back(std::move(deadlines));
  }
}

}  // namespace outbox::consume
