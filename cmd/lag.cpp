// Operations commands that read the whole pipeline (ops/lag.hpp, ops/check.hpp):
//   lag [--json] [--watch [SECONDS]] [--replica NAME]...   how far behind each stage is
//   check [--warning 30s] [--critical 2m] [--replica NAME]... [--quiet]   a Nagios plugin for cron
#include "ops/lag.hpp"

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "cmd/command.hpp"
#include "ops/check.hpp"
#include "core/error.hpp"

namespace outbox::cmd {
namespace {

struct LagOptions {
  bool json = false;
  double watch = 0;
  std::vector<std::string> replicas;
};

struct CheckOptions {
  std::string warning = "30s", critical = "2m";
  std::vector<std::string> replicas;
  bool quiet = false;
};

bool report_complete(const lag::Report& report) {
  if (!report.primary.error.empty() || !report.broker.error.empty()) return false;
  for (const lag::ReplicaStage& replica : report.replicas)
    if (!replica.error.empty()) return false;
  return true;
}

int run_lag(Registry& registry, const LagOptions& options, bool watching) {
  config::Config config = load_config(registry.globals());
  lag::Scope scope;
  scope.replicas = without_repeats(options.replicas);
  bool terminal = isatty(STDOUT_FILENO);
  // Checked as seconds first: 1e30 or inf would overflow the milliseconds.
  if (watching && !(options.watch >= 0.1 && options.watch <= 86400))
    throw usage_error("lag: --watch takes an interval of 0.1 to 86400 seconds");
  auto interval = std::chrono::milliseconds(static_cast<long long>(options.watch * 1000));
  for (;;) {
    lag::Report report = lag::collect(config, scope);
    if (options.json) {
      // One document; with --watch, one document per line.
      // Error texts from libpq or the broker may carry any bytes: replace what is not UTF-8.
      constexpr auto replace = nlohmann::json::error_handler_t::replace;
      std::cout << (watching ? lag::to_json(report).dump(-1, ' ', false, replace)
                             : lag::to_json(report).dump(2, ' ', false, replace))
                << "\n";
    } else {
      // On a terminal, redraw in place: cursor home, then clear the screen.
      if (watching && terminal)
        std::cout << "\033[H\033[2J";
      else if (watching)
        std::cout << "\n";
      std::cout << lag::render_text(report);
    }
    std::cout << std::flush;
    if (!watching) return report_complete(report) ? 0 : static_cast<int>(ExitCode::unavailable);
    std::this_thread::sleep_for(interval);
  }
}

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
    result = check::evaluate(lag::collect(config, scope), thresholds);
  } catch (const std::exception& error) {
    result = check::unknown(error.what());
  }
  if (!(options.quiet && result.status == check::Status::ok)) std::cout << result.line << "\n";
  return static_cast<int>(result.status);
}

}  // namespace

void add_lag_commands(Registry& registry) {
  static LagOptions lag_options;
  CLI::App* lag = registry.add("lag", "Show how far behind each stage is: outbox tables, broker queues, replicas (seconds)");
  lag->add_flag("--json", lag_options.json, "Print one JSON document");
  CLI::Option* watch = lag->add_option("--watch", lag_options.watch, "Redraw every SECONDS (default 2) until interrupted")
                           ->expected(0, 1)
                           ->default_str("2")
                           ->type_name("[SECONDS]");
  lag->add_option("--replica", lag_options.replicas, "Only this replica (repeatable; default: every configured replica)");
  registry.on_run(lag, [&registry, watch] { return run_lag(registry, lag_options, watch->count() > 0); });

  static CheckOptions check_options;
  CLI::App* check = registry.add("check", "Nagios plugin: one status line; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN");
  check->add_option("--warning", check_options.warning, "WARNING when a replica is this far behind (default 30s)");
  check->add_option("--critical", check_options.critical, "CRITICAL when a replica is this far behind (default 2m)");
  check->add_option("--replica", check_options.replicas, "Only this replica (repeatable; default: every configured replica)");
  check->add_flag("-q,--quiet", check_options.quiet, "Print nothing when OK (for cron, which mails any output)");
  registry.on_run(check, [&registry] { return run_check(registry, check_options); });
}

}  // namespace outbox::cmd
