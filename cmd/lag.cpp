// outbox lag [--json] [--watch [SECONDS]] [--replica NAME... | --service NAME]
// How far behind each stage of the pipeline is (ops/lag.hpp has the measure).
#include "ops/lag.hpp"

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "cmd/command.hpp"
#include "core/error.hpp"

namespace outbox::cmd {
namespace {

struct LagOptions {
  bool json = false;
  double watch = 0;
  std::vector<std::string> replicas;
  std::string service;
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
  scope.service = options.service;
  if (!scope.service.empty() && !scope.replicas.empty())
    throw usage_error("lag: --service and --replica do not combine (--service reports that service and its consumer)");
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

}  // namespace

void add_lag_command(Registry& registry) {
  static LagOptions lag_options;
  CLI::App* lag = registry.add("lag", "Show how far behind each stage is: outbox tables, broker queues, replicas (seconds)");
  lag->add_flag("--json", lag_options.json, "Print one JSON document");
  CLI::Option* watch = lag->add_option("--watch", lag_options.watch, "Redraw every SECONDS (default 2) until interrupted")
                           ->expected(0, 1)
                           ->default_str("2")
                           ->type_name("[SECONDS]");
  lag->add_option("--replica", lag_options.replicas, "Only this replica (repeatable; default: every configured replica)");
  lag->add_option("--service", lag_options.service,
                  "Report service NAME instead: its outbox, its consumer's queue and its consumer")
      ->type_name("NAME");
  registry.on_run(lag, [&registry, watch] { return run_lag(registry, lag_options, watch->count() > 0); });
}

}  // namespace outbox::cmd
