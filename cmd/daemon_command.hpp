#pragma once
// What `outbox relay` and `outbox replicate` share: a daemon (relay::Relay, replicate::Service) run
// on a daemon::Runtime until it stops.
#include <string>
#include <utility>

#include "core/config.hpp"
#include "core/daemon.hpp"
#include "core/error.hpp"

namespace outbox::cmd {

// Builds the daemon on a Runtime (from its typed settings; a reload builds them again, see
// core/daemon.hpp), serves its metrics, runs the loop and returns the exit code. A daemon that stopped itself (a configuration
// problem met while running) has its typed error rethrown, so its exit code reaches main's one
// catch instead of being rebuilt from a string.
template <typename Daemon, typename... Args>
int run_daemon(std::string name, config::LoadOptions load_options, config::Config config, Args&&... args) {
  daemon::Runtime runtime(std::move(name), std::move(load_options), std::move(config));
  Daemon daemon(runtime, std::forward<Args>(args)...);
  runtime.serve_metrics(daemon.metrics());  // /metrics and /healthz when metrics.listen is set
  daemon.start();
  int code = runtime.run();
  if (daemon.fatal_error()) throw *daemon.fatal_error();
  return code;
}

}  // namespace outbox::cmd
