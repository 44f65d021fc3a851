// outbox replicate [--replica NAME]: the daemon that applies the relay's events to the replica
// databases (see replicate/replicator.hpp).
#include "cmd/command.hpp"
#include "core/daemon.hpp"
#include "core/error.hpp"
#include "replicate/replicator.hpp"
#include "replicate/settings.hpp"

namespace outbox::cmd {

void add_replicate_command(Registry& registry) {
  CLI::App* app = registry.add("replicate", "Run the replicate daemon: apply events from RabbitMQ to the replica databases");
  auto replicas = std::make_shared<std::vector<std::string>>();
  app->add_option("--replica", *replicas, "Serve only this replica (repeatable; default: every configured replica)")
      ->type_name("NAME");
  registry.on_run(app, [&registry, replicas] {
    config::Config config = load_config(registry.globals());
    replicate::Settings settings = replicate::settings_from_config(config, *replicas);
    config::LoadOptions load_options{registry.globals().config_path, registry.globals().overrides};
    daemon::Runtime runtime("replicate", load_options, std::move(config));
    replicate::Service service(runtime, std::move(settings));
    runtime.serve_metrics(service.metrics());  // /metrics and /healthz when metrics.listen is set
    service.start();
    int code = runtime.run();
    if (!service.fatal_error().empty()) throw config_error(service.fatal_error());
    return code;
  });
}

}  // namespace outbox::cmd
