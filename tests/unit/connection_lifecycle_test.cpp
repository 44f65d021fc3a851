// The connection lifecycle the daemons share (core/connection_lifecycle.hpp), with sides that
// succeed or fail on demand: no server is needed to check the order, the retries, the log lines
// and the reconnect count.
#include "core/connection_lifecycle.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

#include "tests/unit/default_config.hpp"

using namespace outbox;
using namespace std::chrono_literals;

namespace {

// A side whose next opens fail with the queued errors, then succeed.
struct FakeSide {
  explicit FakeSide(std::string side_name) : name(std::move(side_name)) {}
  std::string name;
  bool open = false;
  int attempts = 0;
  std::vector<std::function<void()>> failures;  // each throws

  ConnectionLifecycle::Side side() {
    ConnectionLifecycle::Side side;
    side.name = name;
    side.open = [this] {
      ++attempts;
      if (!failures.empty()) {
        auto fail = failures.front();
        failures.erase(failures.begin());
        fail();
      }
      open = true;
    };
    side.close = [this] { open = false; };
    side.is_open = [this] { return open; };
    side.connected_detail = [this](bool again) { return again ? std::string() : " (" + name + ":1)"; };
    return side;
  }
};

void refuse(const std::string& why) { throw std::runtime_error(why); }

struct Lifecycle : ::testing::Test {
  daemon::Runtime runtime{"test", config::LoadOptions{}, outbox::testing::default_config()};
  std::ostringstream lines;
  std::shared_ptr<spdlog::logger> log =
      std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines));
  Backoff backoff{std::chrono::milliseconds(20), std::chrono::milliseconds(2)};
  metrics::Registry registry;
  metrics::Counter& reconnects = registry.counter("test_reconnects_total", "reconnects");
  FakeSide database{"primary"}, broker{"broker"};
  int ready = 0;
  int stop_at_ready = 1;  // the ready call that stops the loop
  std::optional<Error> fatal;

  Lifecycle() {
    log->set_pattern("%l %v");
    log->set_level(spdlog::level::info);
  }

  std::unique_ptr<ConnectionLifecycle> lifecycle(ConnectionLifecycle::Hooks hooks = {}) {
    if (!hooks.ready)
      hooks.ready = [this] {
        if (++ready == stop_at_ready) runtime.stop(0);
      };
    hooks.fatal = [this](const Error& error) {
      fatal = error;
      runtime.stop(78);
    };
    return std::make_unique<ConnectionLifecycle>(runtime, log, backoff, reconnects, std::vector{database.side(), broker.side()},
                                                 std::move(hooks));
  }

  // Runs the loop until a hook stops it, or fails the test after a deadline.
  void run() {
    loop::Timer deadline(runtime.loop(), [this] {
      ADD_FAILURE() << "the lifecycle did not finish in time";
      runtime.stop(1);
    });
    deadline.start(10s);
    runtime.run();
  }
};

}  // namespace

TEST_F(Lifecycle, ConnectsTheSidesInOrderAndCallsReadyOnceBothAreOpen) {
  auto sides = lifecycle();
  sides->connect();
  EXPECT_EQ(ready, 1);
  EXPECT_TRUE(database.open && broker.open);
  EXPECT_EQ(lines.str(), "info primary connected (primary:1)\ninfo broker connected (broker:1)\n");
  EXPECT_EQ(reconnects.value(), 0u);
}

TEST_F(Lifecycle, ASideThatKeepsFailingIsLoggedOnceAndItsRecoveryCountsAReconnect) {
  broker.failures = {[] { refuse("connection refused"); }, [] { refuse("connection refused"); }};
  auto sides = lifecycle();
  sides->connect();
  EXPECT_EQ(ready, 0);
  EXPECT_TRUE(sides->retry_scheduled());
  run();
  EXPECT_EQ(ready, 1);
  EXPECT_EQ(broker.attempts, 3);
  EXPECT_EQ(database.attempts, 1) << "an open side is not connected again";
  EXPECT_EQ(lines.str(),
            "info primary connected (primary:1)\n"
            "error broker unavailable, retrying with backoff: connection refused\n"
            "info broker connected again\n");
  EXPECT_EQ(reconnects.value(), 1u);
}

TEST_F(Lifecycle, ANewReasonIsLoggedAgain) {
  database.failures = {[] { refuse("timeout"); }, [] { refuse("password authentication failed"); }};
  auto sides = lifecycle();
  sides->connect();
  run();
  EXPECT_NE(lines.str().find("error primary unavailable, retrying with backoff: timeout\n"), std::string::npos);
  EXPECT_NE(lines.str().find("error primary unavailable, retrying with backoff: password authentication failed\n"),
            std::string::npos);
}

TEST_F(Lifecycle, ASideWaitsUntilTheOneBeforeItIsOpen) {
  database.failures = {[] { refuse("down"); }};
  auto sides = lifecycle();
  sides->connect();
  EXPECT_EQ(broker.attempts, 0);
  run();
  EXPECT_EQ(broker.attempts, 1);
}

TEST_F(Lifecycle, AConfigurationErrorStopsTheDaemonWithItsCodeAndNothingIsRetried) {
  broker.failures = {[] { throw config_error("broker.url: bad scheme"); }};
  auto sides = lifecycle();
  sides->connect();
  ASSERT_TRUE(fatal.has_value());
  EXPECT_EQ(fatal->code(), ExitCode::config);
  EXPECT_STREQ(fatal->what(), "broker.url: bad scheme");
  EXPECT_FALSE(sides->retry_scheduled());
  EXPECT_TRUE(sides->fatal());
}

TEST_F(Lifecycle, ALostSideIsLoggedOnceWithWhatHappensToTheWorkAndReconnected) {
  stop_at_ready = 2;
  auto sides = lifecycle();
  sides->connect();
  ASSERT_EQ(ready, 1);
  lines.str("");
  sides->lost(0, "server closed the connection", ", 3 unconfirmed message(s) will be published again");
  sides->lost(0, "server closed the connection", ", 3 unconfirmed message(s) will be published again");
  EXPECT_FALSE(database.open);
  sides->retry();
  run();
  EXPECT_EQ(ready, 2);
  EXPECT_EQ(lines.str(),
            "error primary connection lost, 3 unconfirmed message(s) will be published again: server closed the "
            "connection\n"
            "info primary connected again\n");
  EXPECT_EQ(reconnects.value(), 1u);
}

TEST_F(Lifecycle, APasswordInAReasonIsMasked) {
  database.failures = {[] { refuse("cannot reach postgresql://outbox:hunter2@db/outbox"); }};
  auto sides = lifecycle();
  sides->connect();
  EXPECT_EQ(lines.str().find("hunter2"), std::string::npos) << lines.str();
}

TEST_F(Lifecycle, ANotNowIsLoggedAsInformationAndRetried) {
  database.failures = {[] { throw NotNow("replica main: another outbox replicate serves this replica"); }};
  auto sides = lifecycle();
  sides->connect();
  EXPECT_EQ(lines.str(), "info replica main: another outbox replicate serves this replica\n");
  run();
  EXPECT_EQ(ready, 1);
}

TEST_F(Lifecycle, WhileHaltedNothingConnects) {
  int halted_calls = 0;
  ConnectionLifecycle::Hooks hooks;
  hooks.halted = [] { return true; };
  hooks.on_halted = [&] { ++halted_calls; };
  auto sides = lifecycle(std::move(hooks));
  sides->connect();
  EXPECT_EQ(halted_calls, 1);
  EXPECT_EQ(database.attempts, 0);
  sides->retry();
  EXPECT_FALSE(sides->retry_scheduled());
}

TEST_F(Lifecycle, ASideThatIsNotNeededIsNotWaitedFor) {
  ConnectionLifecycle::Hooks hooks;
  auto sides_with = [&] {
    auto broker_side = broker.side();
    broker_side.needed = [] { return false; };
    hooks.ready = [this] { ++ready; };
    return std::make_unique<ConnectionLifecycle>(runtime, log, backoff, reconnects,
                                                 std::vector{database.side(), std::move(broker_side)}, hooks);
  };
  auto sides = sides_with();
  sides->connect();
  EXPECT_EQ(ready, 1);
  EXPECT_EQ(broker.attempts, 0);
}
