// outbox config show|check: the effective configuration and where each value came from.
#include "core/config.hpp"

#include <iostream>

#include "cmd/command.hpp"
#include "core/metrics_server.hpp"
#include "core/options.hpp"
#include "relay/relay.hpp"
#include "replicate/event.hpp"

namespace outbox::cmd {

namespace {
void check_metrics_listen(const config::Config& config) {
  if (!config.text("metrics.listen").empty())
    metrics::parse_listen(config.text("metrics.listen"), config.get("metrics.listen").origin);
}
}  // namespace

void check_relay_config(const config::Config& config) {
  relay::tables_from_config(config, config.text("broker.exchange"));
  check_metrics_listen(config);
}

void check_replicate_config(const config::Config& config) {
  replicate::mappings_from_config(config);
  check_metrics_listen(config);
}

void add_config_commands(Registry& registry) {
  CLI::App* config = registry.add("config", "Show or check the configuration");
  config->require_subcommand(1);
  CLI::App* show = config->add_subcommand(
      "show", "Print every effective option, its value and its source (default, file, env, flag); passwords are masked");
  registry.on_run(show, [&registry] {
    config::Config loaded = load_config(registry.globals());
    std::cout << config::show(loaded);
    return 0;
  });
  CLI::App* check =
      config->add_subcommand("check", "Validate the configuration and exit 0, or print the first error and exit 78");
  registry.on_run(check, [&registry] {
    config::Config loaded = load_config(registry.globals());
    // The relay, migrate, lag, check, verify, resync and the parking writes all need the primary:
    // unset, it is an error here as it is there, not an "ok" that the first command contradicts.
    // Like the relay's tables, it is checked even where only replicate runs.
    loaded.required("primary.url");
    check_relay_config(loaded);
    check_replicate_config(loaded);
    std::cout << "config " << (loaded.path().empty() ? "(defaults and environment)" : loaded.path()) << ": ok\n";
    return 0;
  });
  CLI::App* reference =
      config->add_subcommand("reference", "Print the option reference in mdoc (scripts/gen-man puts it into man/outbox.toml.5)");
  registry.on_run(reference, [] {
    std::cout << config::mdoc_reference();
    return 0;
  });
}

}  // namespace outbox::cmd
