#include "consume/service.hpp"

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
  auto& consumers = engine_.replicators();
  for (size_t i = 0; i < consumers.size(); ++i) {
    auto deadlines = std::make_unique<Deadlines>(consumers[i]->replica(), settings.deadlines.at(i), engine_.metrics());
    if (!deadlines->empty()) {
      Deadlines* run = deadlines.get();
      consumers[i]->run_between_batches(deadlines->interval(), [run](pqxx::connection& connection) { run->run_due(connection); });
    }
    deadlines_.push_back(std::move(deadlines));
  }
}

}  // namespace outbox::consume
