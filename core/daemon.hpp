#pragma once
// What both daemons share: the libuv loop, signals (handled as loop callbacks, never in async
// signal context), systemd notifications and the watchdog, and config reload.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/config.hpp"
#include "core/loop.hpp"
#include "core/metrics.hpp"

namespace outbox::metrics {
class Server;
}

namespace outbox::daemon {

// sd_notify wrappers; all are no-ops when not started by systemd (NOTIFY_SOCKET unset).
void notify_ready();
void notify_status(const std::string& status);
void notify_reloading();
void notify_stopping();

struct Hooks {
  // First SIGTERM or SIGINT: finish in-flight work, then call Runtime::stop().
  std::function<void()> on_shutdown_request;
  // SIGHUP: builds and validates the daemon's settings from the fresh config (with the same
  // builders as at start and in `outbox config check`) and returns the step that puts them in
  // effect. Throwing keeps the running config and settings. The step runs after the fresh config
  // is swapped in; if it throws, the running config is restored.
  std::function<std::function<void()>(const config::Config& fresh)> prepare_reload;
  // One-line summary for systemd's STATUS= and the logs.
  std::function<std::string()> status_line;
  // False while the daemon is stuck (no progress); the watchdog is then not fed, so systemd restarts it.
  std::function<bool()> healthy;
  // True while connected to every server the daemon needs (for /healthz); unset means connected.
  std::function<bool()> connected;
};

class Runtime {
 public:
  Runtime(std::string name, config::LoadOptions load_options, config::Config initial);
  ~Runtime();
  loop::Loop& loop() { return loop_; }
  const config::Config& config() const { return *config_; }
  void set_hooks(Hooks hooks) { hooks_ = std::move(hooks); }
  // Runs the loop until stop(); returns the exit code.
  int run();
  void stop(int exit_code = 0);
  bool stopping() const { return shutdown_requested_; }
  const std::string& name() const { return name_; }
  // Serves /metrics (the registry) and /healthz on metrics.listen from its own thread, when that
  // option is set; /healthz answers 200 only while Hooks::connected and Hooks::healthy hold (the
  // loop checks them every second). Call it after set_hooks() and before run(); the registry
  // must outlive run(). Throws Error(config) for a bad address or one that cannot be bound.
  void serve_metrics(metrics::Registry& registry);

  // Marks a bounded blocking call on the loop thread (a connect, with its timeouts): while one runs
  // the loop cannot feed systemd's watchdog, so a helper thread does. Waiting for a server that
  // does not answer is an outage, not a stuck daemon.
  class BlockingCall {
   public:
    explicit BlockingCall(Runtime& runtime) : runtime_(runtime) { ++runtime_.blocking_calls_; }
    ~BlockingCall() { --runtime_.blocking_calls_; }
    BlockingCall(const BlockingCall&) = delete;
    BlockingCall& operator=(const BlockingCall&) = delete;

   private:
    Runtime& runtime_;
  };

 private:
  void on_terminate();
  void on_reload();
  void reload();
  void update_health();

  std::string name_;
  config::LoadOptions load_options_;
  std::unique_ptr<config::Config> config_;
  loop::Loop loop_;
  Hooks hooks_;
  std::unique_ptr<loop::Signal> sigterm_, sigint_, sighup_;
  std::unique_ptr<loop::Timer> watchdog_, status_timer_, health_timer_;
  std::unique_ptr<metrics::Server> metrics_server_;
  bool shutdown_requested_ = false;
  int exit_code_ = 0;
  std::atomic<int> blocking_calls_{0};
  std::thread blocking_watchdog_;
  std::mutex blocking_watchdog_mutex_;
  std::condition_variable blocking_watchdog_wake_;
  bool blocking_watchdog_stop_ = false;
};

}  // namespace outbox::daemon
