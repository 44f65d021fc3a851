// outbox verify [--replica NAME] [--json] [--timeout 60s] [--table TABLE [--key COLUMN]] [--chunk-rows N]
//               [--progress auto|always|never]
// outbox verify --service NAME [--json]
// Compares the primary with a replica at a consistent point (ops/verify.hpp has the method), or
// checks a service database's deployment (ops/verify_service.hpp).
// Exit codes (like a monitoring plugin, so that cron and CI can tell them apart):
//   0 equal (a service: ready), 1 drift (a service: a problem), 3 a database or the broker cannot
//   be reached (the line names it),
//   75 no consistent point within --timeout (the relay or replicate is behind or down),
//   64 usage, 78 configuration (an unknown replica, a schema that is not current).
#include <unistd.h>

#include <iostream>
#include <set>

#include "cmd/command.hpp"
#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/progress.hpp"
#include "ops/verify_service.hpp"
#include "ops/verify_setup.hpp"

namespace outbox::cmd {
namespace {

struct VerifyOptions {
  std::string replica = "main";
  bool json = false;
  std::string timeout = "60s";
  std::vector<std::string> tables;
  std::string key;
  long long chunk_rows = 10000;
  std::string service;
  std::string progress = "auto";
};

int verify_service(const config::Config& config, const VerifyOptions& o, CLI::App& app) {
  for (const char* option : {"--replica", "--timeout", "--table", "--key", "--chunk-rows", "--progress"})
    if (app.count(option) > 0) throw usage_error(std::string("verify: ") + option + " does not go with --service");
  verify::ServiceReport report = verify::verify_service(config, o.service);
  if (o.json)
    std::cout << verify::render_service_json(report).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  else
    std::cout << verify::render_service_text(report);
  return report.ok() ? 0 : 1;
}

}  // namespace

void add_verify_command(Registry& registry) {
  static VerifyOptions o;
  CLI::App* app =
      registry.add("verify", "Compare the primary with a replica at a consistent point; exit 0 equal, 1 drift, 3 unreachable");
  app->add_option("--replica", o.replica, "Replica to compare (default: main)")->type_name("NAME");
  app->add_flag("--json", o.json, "Print one JSON document instead of one line per differing row");
  app->add_option("--timeout", o.timeout, "Longest wait for the replica to reach the primary's position (default 60s)")
      ->type_name("DURATION");
  app->add_option("--table", o.tables, "Compare only this table (repeatable; default: every table of replicate.mappings)")
      ->type_name("TABLE");
  app->add_option("--key", o.key, "Key column of the --table tables (default: the mapping's key column, else uuid)")
      ->type_name("COLUMN");
  app->add_option("--chunk-rows", o.chunk_rows, "Rows per compared chunk (default 10000)")->check(CLI::Range(1LL, 10000000LL));
  app->add_option("--service", o.service,
                  "Check service NAME instead: schema, own migrations, handler functions, nothing parked, its queue")
      ->type_name("NAME");
  app->add_option("--progress", o.progress,
                  "Progress and ETA on stderr: auto (when stderr is a terminal), always or never (default auto)")
      ->type_name("WHEN");
  registry.on_run(app, [&registry, app] {
    progress::Mode mode = progress::parse_mode(o.progress, "--progress");
    try {
      config::Config config = load_config(registry.globals());
      if (!o.service.empty()) return verify_service(config, o, *app);
      verify::Setup setup = verify::set_up(config, o.replica, o.timeout, "outbox verify");
      if (!o.tables.empty()) {
        std::vector<verify::TableSpec> chosen;
        for (const std::string& table : o.tables) {
          verify::TableSpec spec{table, o.key.empty() ? "uuid" : o.key, {}};
          for (const verify::TableSpec& mapped : setup.tables)
            if (mapped.table == table && o.key.empty()) spec.key = mapped.key;
          chosen.push_back(spec);
        }
        setup.tables = chosen;
      } else if (!o.key.empty()) {
        throw usage_error("verify: --key goes with --table");
      }
      setup.options.chunk_rows = o.chunk_rows;
      progress::Reporter reporter(STDERR_FILENO, progress::enabled(mode, STDERR_FILENO));
      setup.options.progress = reporter.callback();
      verify::Result result = verify::compare(*setup.primary, *setup.replica, setup.tables, setup.options);
      reporter.clear();
      if (o.json) {
        std::cout << verify::render_json(result) << "\n";
      } else {
        for (const verify::Difference& difference : result.differences)
          std::cout << verify::render_line(difference, setup.options.replica_role) << "\n";
        std::cout << verify::render_summary(result) << "\n";
      }
      return result.equal() ? 0 : 1;
    } catch (const Error& error) {
      if (error.code() != ExitCode::unavailable) throw;
      std::cerr << "outbox: verify: " << escape_controls(error.what()) << "\n";
      return 3;
    }
  });
}

}  // namespace outbox::cmd
