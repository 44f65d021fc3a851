// outbox: the transactional outbox toolkit. main() wires the subcommands together and holds the
// one catch that maps errors to exit codes (sysexits).
#include <algorithm>
#include <iostream>

#include "cmd/command.hpp"
#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"

namespace outbox::cmd {

CLI::App* Registry::add(const std::string& name, const std::string& description) {
  CLI::App* app = root_.add_subcommand(name, description);
  if (name.find('_') != std::string::npos) {
    std::string alias = name;
    for (char& c : alias)
      if (c == '_') c = '-';
    app->alias(alias);
  }
  return app;
}

const UsageErrorHandler* Registry::usage_error_handler(const std::string& word) const {
  for (const auto& [app, handler] : usage_handlers_)
    if (!word.empty() && app->check_name(word)) return &handler;
  return nullptr;
}

config::Config load_config(const GlobalOptions& globals) {
  config::LoadOptions options;
  options.config_path = globals.config_path;
  options.overrides = globals.overrides;
  config::Config config = config::Config::load(options);
  config::LogSettings log_settings = config::log_settings(config);
  log::setup(log_settings.level, log_settings.format);
  for (const std::string& warning : config.warnings()) spdlog::warn("{}", warning);
  return config;
}

}  // namespace outbox::cmd

namespace {

// The first word that is not an option or an option's value: the command the user meant.
// The words of the command line that are not options (nor the values of the global options).
std::vector<std::string> plain_words(int argc, char** argv) {
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    if (word == "-c" || word == "--config" || word == "--set") {
      ++i;
      continue;
    }
    if (!word.empty() && word[0] != '-') words.push_back(word);
  }
  return words;
}

std::string command_word(int argc, char** argv) {
  std::vector<std::string> words = plain_words(argc, argv);
  return words.empty() ? "" : words.front();
}

// For a command with subcommands (failed, migrate, config ...): its name, when the word after it
// names none of them, with the list of what it takes; else "".
std::string unknown_subcommand(CLI::App& app, int argc, char** argv) {
  std::vector<std::string> words = plain_words(argc, argv);
  if (words.size() < 2) return "";
  CLI::App* command = nullptr;
  for (CLI::App* candidate : app.get_subcommands([](CLI::App*) { return true; }))
    if (candidate->check_name(words[0])) command = candidate;
  if (!command) return "";
  std::vector<CLI::App*> subcommands = command->get_subcommands([](CLI::App*) { return true; });
  if (subcommands.empty()) return "";
  std::string expected;
  for (CLI::App* subcommand : subcommands) {
    if (subcommand->check_name(words[1])) return "";
    expected += (expected.empty() ? "" : ", ") + subcommand->get_name();
  }
  return "unknown " + words[0] + " subcommand \"" + words[1] + "\" (expected " + expected + ")";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace outbox;
  CLI::App app{"outbox: transactional outbox relay and read-model replication for PostgreSQL and RabbitMQ", "outbox"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("outbox 0.1.0"));
  cmd::GlobalOptions globals;
  app.add_option("-c,--config", globals.config_path,
                 "Config file (default: $OUTBOX_CONFIG, ./outbox.toml, /etc/outbox/outbox.toml)");
  app.add_option("--set", globals.overrides, "Override a config option: --set relay.batch_size=1000 (repeatable)")
      ->type_name("KEY=VALUE");
  app.fallthrough();

  cmd::Registry registry(app, globals);
  cmd::add_config_commands(registry);
  cmd::add_migrate_commands(registry);
  cmd::add_parking_commands(registry);
  cmd::add_relay_command(registry);
  cmd::add_replicate_command(registry);
  cmd::add_consume_command(registry);
  cmd::add_lag_command(registry);
  cmd::add_check_command(registry);
  cmd::add_failed_commands(registry);
  cmd::add_verify_command(registry);
  cmd::add_resync_command(registry);

  // Arguments, config values and database texts reach these messages: each goes out escaped
  // (core/escape.hpp), so that none can forge a line or drive the terminal.
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& help) {
    return app.exit(help);
  } catch (const CLI::CallForAllHelp& help) {
    return app.exit(help);
  } catch (const CLI::CallForVersion& version) {
    return app.exit(version);
  } catch (const CLI::ParseError& error) {
    std::string word = command_word(argc, argv);
    if (const cmd::UsageErrorHandler* handler = registry.usage_error_handler(word)) return (*handler)(error);
    std::vector<CLI::App*> commands = app.get_subcommands([](CLI::App*) { return true; });
    if (!word.empty() && std::none_of(commands.begin(), commands.end(), [&](CLI::App* c) { return c->check_name(word); })) {
      std::cerr << "outbox: usage: unknown command \"" << escape_controls(word) << "\" (see outbox --help)\n";
      return static_cast<int>(ExitCode::usage);
    }
    if (std::string unknown = unknown_subcommand(app, argc, argv); !unknown.empty()) {
      std::cerr << "outbox: usage: " << escape_controls(unknown) << " (see outbox " << escape_controls(word) << " --help)\n";
      return static_cast<int>(ExitCode::usage);
    }
    std::cerr << "outbox: usage: " << escape_controls(error.what()) << " (see outbox --help)\n";
    return static_cast<int>(ExitCode::usage);
  }

  try {
    for (const cmd::Command& command : registry.commands())
      if (command.app->parsed()) return command.run();
    std::cerr << "outbox: usage: no command given (see outbox --help)\n";
    return static_cast<int>(ExitCode::usage);
  } catch (const Error& error) {
    std::cerr << "outbox: " << escape_controls(error.what()) << "\n";
    return static_cast<int>(error.code());
  } catch (const std::exception& error) {
    std::cerr << "outbox: internal error: " << escape_controls(error.what()) << "\n";
    return static_cast<int>(ExitCode::software);
  }
}
