// outbox config show|check: the effective configuration and where each value came from.
#include "core/config.hpp"

#include <iostream>

#include "cmd/command.hpp"
#include "consume/settings.hpp"
#include "core/config_show.hpp"
#include "core/options.hpp"
#include "core/settings.hpp"
#include "relay/settings.hpp"
#include "replicate/settings.hpp"

namespace outbox::cmd {

void add_config_commands(Registry& registry) {
  CLI::App* config = registry.add("config", "Show or check the configuration");
  config->require_subcommand(1);
  CLI::App* show = config->add_subcommand(
      "show", "Print every effective option, its value and its source (default, file, env, flag); passwords are masked");
  static bool json = false;
  show->add_flag("--json", json, "Print one JSON document: each option's key, value, source and origin");
  registry.on_run(show, [&registry] {
    config::Config loaded = load_config(registry.globals());
    std::cout << (json ? config::show_json(loaded) : config::show(loaded));
    return 0;
  });
  CLI::App* check =
      config->add_subcommand("check", "Validate the configuration and exit 0, or print the first error and exit 78");
  registry.on_run(check, [&registry] {
    config::Config loaded = load_config(registry.globals());
    // The builders the daemons run at start and on SIGHUP. The relay's needs primary.url, as do
    // migrate, lag, check, verify, resync and the parking writes: unset, it is an error here as it is
    // there, not an "ok" that the first command contradicts; like the relay's tables, it is checked
    // even where only replicate runs. Replicate's runs without choosing replicas: a config for the
    // relay alone has none.
    relay::settings_from_config(loaded);
    config::metrics_settings(loaded);
    replicate::mappings_from_config(loaded);
    replicate::tunables_from_config(loaded);
    // Consume's, for the services that have handlers (a service may have only a relay).
    for (const std::string& service : loaded.service_names())
      if (!loaded.sections("services." + service + ".handlers").empty()) consume::settings_from_config(loaded, {service});
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
