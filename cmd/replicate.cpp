// outbox replicate [--replica NAME]: the daemon that applies the relay's events to the replica
// databases (see replicate/service.hpp).
#include "cmd/command.hpp"
#include "cmd/daemon_command.hpp"
#include "replicate/service.hpp"
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
    return run_daemon<replicate::Service>("replicate", load_options, std::move(config), std::move(settings));
  });
}

}  // namespace outbox::cmd
