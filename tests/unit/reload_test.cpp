// Runtime's reload on SIGHUP: the daemon builds its settings from the fresh config, and the
// config is swapped and the settings committed only when that works; a failing commit restores
// the running config. Never half-applied.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>

#include "core/daemon.hpp"
#include "relay/settings.hpp"

using namespace outbox;

namespace {

std::string write_config(const std::string& text) {
  std::string path = ::testing::TempDir() + "/reload_test.toml";
  std::ofstream(path) << text;
  return path;
}

// Sends SIGHUP once the loop runs, then stops the runtime once `done` holds (or after 10 s).
void reload_and_wait(daemon::Runtime& runtime, const std::function<bool()>& done) {
  loop::Timer hangup(runtime.loop(), [] { std::raise(SIGHUP); });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  loop::Timer check(runtime.loop(), [&] {
    if (done() || std::chrono::steady_clock::now() > deadline) runtime.stop();
  });
  hangup.start(std::chrono::milliseconds(0));
  check.start(std::chrono::milliseconds(10), std::chrono::milliseconds(10));
  runtime.run();
}

struct Daemon {
  explicit Daemon(const std::string& first_config)
      : options{write_config(first_config), {}, [](const char*) -> const char* { return nullptr; }},
        runtime("test", options, config::Config::load(options)),
        tunables(relay::tunables_from_config(runtime.config())) {}
  config::LoadOptions options;
  daemon::Runtime runtime;
  relay::Tunables tunables;  // the settings in effect
  int prepared = 0;
};

}  // namespace

TEST(Reload, AValidConfigIsSwappedInAndItsSettingsCommitted) {
  Daemon daemon("[relay]\nbatch_size = 7\n");
  daemon::Hooks hooks;
  hooks.prepare_reload = [&](const config::Config& fresh) -> std::function<void()> {
    ++daemon.prepared;
    return [&daemon, next = relay::tunables_from_config(fresh)] { daemon.tunables = next; };
  };
  daemon.runtime.set_hooks(std::move(hooks));
  write_config("[relay]\nbatch_size = 9\n");
  reload_and_wait(daemon.runtime, [&] { return daemon.tunables.batch_size == 9; });
  EXPECT_EQ(daemon.tunables.batch_size, 9);
  EXPECT_EQ(daemon.runtime.config().integer("relay.batch_size"), 9);
}

TEST(Reload, ASettingTheDaemonRefusesKeepsTheOldConfigAndSettings) {
  Daemon daemon("[primary]\nurl = \"postgresql://app@primary/app\"\n[relay]\nbatch_size = 7\n");
  daemon::Hooks hooks;
  hooks.prepare_reload = [&](const config::Config& fresh) -> std::function<void()> {
    ++daemon.prepared;
    relay::Settings next = relay::settings_from_config(fresh);  // throws: the table name is invalid
    return [&daemon, next] { daemon.tunables = next.tunables; };
  };
  daemon.runtime.set_hooks(std::move(hooks));
  // Valid option by option (batch_size too), refused by the relay's builder as a whole.
  write_config(
      "[primary]\nurl = \"postgresql://app@primary/app\"\n[relay]\nbatch_size = 9\n[[relay.tables]]\nname = \"a.b.c\"\n");
  reload_and_wait(daemon.runtime, [&] { return daemon.prepared == 1; });
  EXPECT_EQ(daemon.prepared, 1);
  EXPECT_EQ(daemon.tunables.batch_size, 7);
  EXPECT_EQ(daemon.runtime.config().integer("relay.batch_size"), 7);
  EXPECT_EQ(daemon.runtime.config().sections("relay.tables").front().at("name").text, "public.outbox");
}

TEST(Reload, ACommitThatThrowsRestoresTheRunningConfig) {
  Daemon daemon("[relay]\nbatch_size = 7\n");
  bool committed = false;
  daemon::Hooks hooks;
  hooks.prepare_reload = [&](const config::Config&) -> std::function<void()> {
    return [&] {
      committed = true;
      throw std::runtime_error("cannot apply");
    };
  };
  daemon.runtime.set_hooks(std::move(hooks));
  write_config("[relay]\nbatch_size = 9\n");
  reload_and_wait(daemon.runtime, [&] { return committed; });
  EXPECT_TRUE(committed);
  EXPECT_EQ(daemon.runtime.config().integer("relay.batch_size"), 7);
}

// A daemon drains its in-flight work after SIGTERM (the relay waits for its confirms): a SIGHUP
// then must not restart what the shutdown stopped (the relay's timers) nor announce READY again.
TEST(Reload, ASighupAfterTheShutdownBeganIsIgnored) {
  Daemon daemon("[relay]\nbatch_size = 7\n");
  bool draining = false;
  daemon::Hooks hooks;
  hooks.on_shutdown_request = [&] { draining = true; };  // and the daemon stops later, once drained
  hooks.prepare_reload = [&](const config::Config& fresh) -> std::function<void()> {
    ++daemon.prepared;
    return [&daemon, next = relay::tunables_from_config(fresh)] { daemon.tunables = next; };
  };
  daemon.runtime.set_hooks(std::move(hooks));
  write_config("[relay]\nbatch_size = 9\n");
  std::ostringstream lines;
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines)));
  // SIGTERM, then SIGHUP once the shutdown began; the loop stops once the SIGHUP was answered (or
  // after 10 s).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  loop::Timer check(daemon.runtime.loop(), [&] {
    if (lines.str().find("SIGHUP") != std::string::npos || daemon.prepared > 0 || std::chrono::steady_clock::now() > deadline)
      daemon.runtime.stop();
  });
  loop::Timer hangup(daemon.runtime.loop(), [&] {
    EXPECT_TRUE(draining);
    std::raise(SIGHUP);
    check.start(std::chrono::milliseconds(10), std::chrono::milliseconds(10));
  });
  loop::Timer terminate(daemon.runtime.loop(), [&] {
    std::raise(SIGTERM);
    hangup.start(std::chrono::milliseconds(100));
  });
  terminate.start(std::chrono::milliseconds(0));
  daemon.runtime.run();
  spdlog::set_default_logger(previous);
  EXPECT_TRUE(draining);
  EXPECT_NE(lines.str().find("test: SIGHUP ignored: shutting down"), std::string::npos) << lines.str();
  EXPECT_EQ(daemon.prepared, 0);
  EXPECT_EQ(daemon.tunables.batch_size, 7);
  EXPECT_EQ(daemon.runtime.config().integer("relay.batch_size"), 7);
}
