// outbox relay: the daemon that publishes the outbox to RabbitMQ (see relay/relay.hpp).
#include "relay/relay.hpp"

#include "cmd/command.hpp"
#include "cmd/daemon_command.hpp"
#include "core/error.hpp"
#include "relay/settings.hpp"

namespace outbox::cmd {

void add_relay_command(Registry& registry) {
  CLI::App* app = registry.add("relay", "Run the relay daemon: publish committed outbox rows to RabbitMQ with confirms");
  auto instance = std::make_shared<std::string>();
  auto service = std::make_shared<std::string>();
  app->add_option("--instance", *instance, "Name of this instance in logs (default host:pid; overrides relay.instance)");
  app->add_option("--service", *service, "Relay the outbox of service NAME (services.NAME.url) instead of the primary's")
      ->type_name("NAME");
  registry.on_run(app, [&registry, app, instance, service] {
    if (app->count("--service") > 0 && service->empty()) throw usage_error("relay: --service needs a service name");
    config::Config config = load_config(registry.globals());
    relay::Settings settings = relay::settings_from_config(config, *service);
    if (!instance->empty()) settings.instance = *instance;
    config::LoadOptions load_options{registry.globals().config_path, registry.globals().overrides};
    return run_daemon<relay::Relay>("relay", load_options, std::move(config), std::move(settings));
  });
}

}  // namespace outbox::cmd
