// outbox consume [--service NAME]...: the daemon that runs the services' handlers on their events,
// with an inbox (see consume/service.hpp and replicate/apply.hpp).
#include "cmd/command.hpp"
#include "cmd/daemon_command.hpp"
#include "consume/service.hpp"
#include "consume/settings.hpp"

namespace outbox::cmd {

void add_consume_command(Registry& registry) {
  CLI::App* app = registry.add(
      "consume",
      "Run the consume daemon: call each service's SQL handlers on its events, once each (an inbox), and its deadlines");
  auto services = std::make_shared<std::vector<std::string>>();
  app->add_option("--service", *services, "Serve only this service (repeatable; default: every configured service with handlers)")
      ->type_name("NAME");
  registry.on_run(app, [&registry, services] {
    config::Config config = load_config(registry.globals());
    consume::Settings settings = consume::settings_from_config(config, *services);
    config::LoadOptions load_options{registry.globals().config_path, registry.globals().overrides};
    return run_daemon<consume::Service>("consume", load_options, std::move(config), std::move(settings));
  });
}

}  // namespace outbox::cmd
