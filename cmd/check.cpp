// outbox check [--warning 30s] [--critical 2m] [--replica NAME... | --service NAME] [--quiet]
// A Nagios plugin for cron (ops/check.hpp): one status line, exit 0 OK, 1 WARNING, 2 CRITICAL,
// 3 UNKNOWN. A monitoring system reads the first stdout line and knows only exit codes 0..3, so
// every failure, a bad command line too, is an UNKNOWN line on stdout with exit 3.
#include "ops/check.hpp"

#include <iostream>

#include "cmd/command.hpp"
#include "core/error.hpp"
#include "core/escape.hpp"

namespace outbox::cmd {
namespace {

struct CheckOptions {
  std::string warning = "30s", critical = "2m";
  std::vector<std::string> replicas;
  std::string service;
  bool quiet = false;
};

int run_check(Registry& registry, const CheckOptions& options) {
  check::Result result;
  try {
    check::Thresholds thresholds;
    auto warning = parse_duration(options.warning), critical = parse_duration(options.critical);
    if (!warning) throw usage_error("--warning: not a duration (got '" + options.warning + "'; e.g. 30s, 2m)");
    if (!critical) throw usage_error("--critical: not a duration (got '" + options.critical + "'; e.g. 30s, 2m)");
    thresholds.warning = static_cast<double>(warning->count()) / 1000.0;
    thresholds.critical = static_cast<double>(critical->count()) / 1000.0;
    if (thresholds.warning > thresholds.critical)
      throw usage_error("--warning (" + options.warning + ") must not be above --critical (" + options.critical + ")");
    config::Config config = load_config(registry.globals());
    lag::Scope scope;
    scope.replicas = without_repeats(options.replicas);
    scope.service = options.service;
    if (!scope.service.empty() && !scope.replicas.empty())
      throw usage_error("--service and --replica do not combine (--service checks that service and its consumer)");
    result = check::evaluate(lag::collect(config, scope), thresholds);
  } catch (const std::exception& error) {
    result = check::unknown(error.what());
  }
  if (!(options.quiet && result.status == check::Status::ok)) std::cout << result.line << "\n";
  return static_cast<int>(result.status);
}

}  // namespace

void add_check_command(Registry& registry) {
  static CheckOptions check_options;
  CLI::App* check = registry.add("check", "Nagios plugin: one status line; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN");
  check->add_option("--warning", check_options.warning, "WARNING when a replica is this far behind (default 30s)");
  check->add_option("--critical", check_options.critical, "CRITICAL when a replica is this far behind (default 2m)");
  check->add_option("--replica", check_options.replicas, "Only this replica (repeatable; default: every configured replica)");
  check->add_option("--service", check_options.service, "Check service NAME instead: its outbox and its consumer")
      ->type_name("NAME");
  check->add_flag("-q,--quiet", check_options.quiet, "Print nothing when OK (for cron, which mails any output)");
  registry.on_run(check, [&registry] { return run_check(registry, check_options); });
  registry.on_usage_error(check, [](const CLI::ParseError& error) {
    std::cout << "OUTBOX UNKNOWN - usage: " << escape_controls(error.what()) << " (see outbox check --help)\n";
    return static_cast<int>(check::Status::unknown);
  });
}

}  // namespace outbox::cmd
