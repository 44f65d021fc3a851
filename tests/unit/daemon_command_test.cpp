// cmd/daemon_command.hpp: a daemon that stops itself keeps its typed error, and so its exit code,
// all the way to main (it used to be flattened to a string and rebuilt as a configuration error).
#include "cmd/daemon_command.hpp"

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/loop.hpp"

using namespace outbox;

namespace {

config::Config empty_config() {
  config::LoadOptions options;
  options.config_path = "/dev/null";
  options.getenv = [](const char*) -> const char* { return nullptr; };
  return config::Config::load(options);
}

// Stops itself on the loop with the error it was given (or cleanly, without one).
class SelfStoppingDaemon {
 public:
  SelfStoppingDaemon(daemon::Runtime& runtime, std::optional<Error> error)
      : runtime_(runtime), error_(std::move(error)), stop_(runtime.loop(), [this] { stop(); }) {}
  void start() { stop_.request(); }
  metrics::Registry& metrics() { return metrics_; }
  const std::optional<Error>& fatal_error() const { return fatal_error_; }

 private:
  void stop() {
    fatal_error_ = error_;
    runtime_.stop(error_ ? static_cast<int>(ExitCode::config) : 0);
  }
  daemon::Runtime& runtime_;
  std::optional<Error> error_, fatal_error_;
  metrics::Registry metrics_;
  loop::Deferred stop_;
};

int run(std::optional<Error> error) {
  return cmd::run_daemon<SelfStoppingDaemon>(
      "test", config::LoadOptions{}, empty_config(), [](const config::Config&) {}, std::move(error));
}

}  // namespace

TEST(DaemonCommand, TheErrorADaemonStoppedWithReachesMainWithItsOwnExitCode) {
  try {
    run(data_error("relay.tables: a row does not fit the outbox columns"));
    FAIL() << "no error was thrown";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ExitCode::data);
    EXPECT_STREQ(error.what(), "relay.tables: a row does not fit the outbox columns");
  }
}

TEST(DaemonCommand, AConfigurationErrorKeepsExit78) {
  try {
    run(config_error("broker.url: unknown scheme"));
    FAIL() << "no error was thrown";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ExitCode::config);
  }
}

TEST(DaemonCommand, ADaemonThatStopsCleanlyReturnsItsExitCode) { EXPECT_EQ(run(std::nullopt), 0); }
