// cmd/daemon_command.hpp: a daemon that stops itself keeps its typed error, and so its exit code,
// all the way to main (it used to be flattened to a string and rebuilt as a configuration error).
#include "cmd/daemon_command.hpp"

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/loop.hpp"
#include "tests/unit/default_config.hpp"

using namespace outbox;

namespace {

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
  return cmd::run_daemon<SelfStoppingDaemon>("test", config::LoadOptions{}, outbox::testing::default_config(), std::move(error));
}

// The error run_daemon threw, if any.
std::optional<Error> thrown(std::optional<Error> error) {
  try {
    run(std::move(error));
  } catch (const Error& thrown) {
    return thrown;
  }
  return std::nullopt;
}

}  // namespace

TEST(DaemonCommand, TheErrorADaemonStoppedWithReachesMainWithItsOwnExitCode) {
  std::optional<Error> error = thrown(data_error("relay.tables: a row does not fit the outbox columns"));
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), ExitCode::data);
  EXPECT_STREQ(error->what(), "relay.tables: a row does not fit the outbox columns");
}

TEST(DaemonCommand, AConfigurationErrorKeepsExit78) {
  std::optional<Error> error = thrown(config_error("broker.url: unknown scheme"));
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), ExitCode::config);
}

TEST(DaemonCommand, ADaemonThatStopsCleanlyReturnsItsExitCode) {
  EXPECT_FALSE(thrown(std::nullopt).has_value());
  EXPECT_EQ(run(std::nullopt), 0);
}
