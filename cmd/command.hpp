#pragma once

#include <algorithm>
// What every subcommand file shares: global options, config loading and registration.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "core/config.hpp"

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

// What a command prints and returns for a bad command line of its own, instead of main's
// "outbox: usage: ..." and exit 64 (check: a Nagios line and exit 3). Gets the parse error.
using UsageErrorHandler = std::function<int(const CLI::ParseError&)>;

class Registry {
 public:
  Registry(CLI::App& root, GlobalOptions& globals) : root_(root), globals_(globals) {}
  // Adds a subcommand with an optional hyphenated alias ("create_parking_slot" + "create-parking-slot").
  CLI::App* add(const std::string& name, const std::string& description);
  void on_run(CLI::App* app, std::function<int()> run) { commands_.push_back({app, std::move(run)}); }
  void on_usage_error(CLI::App* app, UsageErrorHandler handler) { usage_handlers_.emplace_back(app, std::move(handler)); }
  const std::vector<Command>& commands() const { return commands_; }
  // The usage-error handler of the command `word` names (its name or alias), or null.
  const UsageErrorHandler* usage_error_handler(const std::string& word) const;
  GlobalOptions& globals() { return globals_; }
  CLI::App& root() { return root_; }

 private:
  CLI::App& root_;
  GlobalOptions& globals_;
  std::vector<Command> commands_;
  std::vector<std::pair<CLI::App*, UsageErrorHandler>> usage_handlers_;
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
void add_consume_command(Registry& registry);
void add_lag_command(Registry& registry);
void add_check_command(Registry& registry);
void add_failed_commands(Registry& registry);
void add_verify_command(Registry& registry);
void add_resync_command(Registry& registry);

}  // namespace outbox::cmd
