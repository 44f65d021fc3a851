#pragma once

#include <algorithm>
// What every subcommand file shares: global options, config loading and registration.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "ops/verify.hpp"

namespace outbox::cmd {

struct GlobalOptions {
  std::string config_path;
  std::vector<std::string> overrides;
};

// A subcommand: its CLI11 app and what runs when it was chosen. run() returns the exit code.
struct Command {
  CLI::App* app;
  std::function<int()> run;
};

class Registry {
 public:
  Registry(CLI::App& root, GlobalOptions& globals) : root_(root), globals_(globals) {}
  // Adds a subcommand with an optional hyphenated alias ("create_parking_slot" + "create-parking-slot").
  CLI::App* add(const std::string& name, const std::string& description);
  void on_run(CLI::App* app, std::function<int()> run) { commands_.push_back({app, std::move(run)}); }
  const std::vector<Command>& commands() const { return commands_; }
  GlobalOptions& globals() { return globals_; }
  CLI::App& root() { return root_; }

 private:
  CLI::App& root_;
  GlobalOptions& globals_;
  std::vector<Command> commands_;
};

// Loads the config the global options point at, prints its warnings and sets up logging.
config::Config load_config(const GlobalOptions& globals);

// A repeatable option's values in their first order, each once (--replica main --replica main).
inline std::vector<std::string> without_repeats(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& value : values)
    if (std::find(out.begin(), out.end(), value) == out.end()) out.push_back(value);
  return out;
}

// One registration function per subcommand file.
void add_config_commands(Registry& registry);
void add_migrate_commands(Registry& registry);
void add_parking_commands(Registry& registry);
void add_relay_command(Registry& registry);
void add_replicate_command(Registry& registry);
void add_lag_commands(Registry& registry);
void add_failed_commands(Registry& registry);
void add_verify_command(Registry& registry);
void add_resync_command(Registry& registry);

// What verify and resync --all share: both connections (schemas checked to be current), the
// mapped tables and the options. Error(config) for an unknown replica, Error(unavailable) when a
// database cannot be reached.
struct VerifySetup {
  std::unique_ptr<pqxx::connection> primary, replica;
  std::vector<verify::TableSpec> tables;
  verify::Options options;
};
VerifySetup verify_setup(const config::Config& config, const std::string& replica, const std::string& timeout,
                         const std::string& application);

}  // namespace outbox::cmd
