#include "core/daemon.hpp"

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <csignal>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/metrics_server.hpp"
#include "core/settings.hpp"

namespace outbox::daemon {

namespace {
// READY=1 goes out once the daemon is connected; a reload before that must not announce it early.
std::atomic<bool> g_ready_sent{false};
}  // namespace

void notify_ready() {
  g_ready_sent = true;
  sd_notify(0, "READY=1");
}
void notify_status(const std::string& status) { sd_notify(0, ("STATUS=" + status).c_str()); }
void notify_reloading() { sd_notify(0, "RELOADING=1"); }
void notify_stopping() { sd_notify(0, "STOPPING=1"); }

Runtime::Runtime(std::string name, config::LoadOptions load_options, config::Config initial)
    : name_(std::move(name)),
      load_options_(std::move(load_options)),
      config_(std::make_unique<config::Config>(std::move(initial))) {
  sigterm_ = std::make_unique<loop::Signal>(loop_, SIGTERM, [this] { on_terminate(); });
  sigint_ = std::make_unique<loop::Signal>(loop_, SIGINT, [this] { on_terminate(); });
  sighup_ = std::make_unique<loop::Signal>(loop_, SIGHUP, [this] { on_reload(); });
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    // Feed the watchdog at half its period, but only while the daemon makes progress.
    watchdog_ = std::make_unique<loop::Timer>(loop_, [this] {
      if (!hooks_.healthy || hooks_.healthy()) sd_notify(0, "WATCHDOG=1");
    });
    auto period = std::chrono::milliseconds(watchdog_usec / 2000);
    watchdog_->start(period, period);
    blocking_watchdog_ = std::thread([this, period] {
      std::unique_lock lock(blocking_watchdog_mutex_);
      while (!blocking_watchdog_wake_.wait_for(lock, period, [this] { return blocking_watchdog_stop_; }))
        if (blocking_calls_ > 0) sd_notify(0, "WATCHDOG=1");
    });
  }
  status_timer_ = std::make_unique<loop::Timer>(loop_, [this] {
    if (hooks_.status_line) notify_status(hooks_.status_line());
  });
  status_timer_->start(std::chrono::seconds(1), std::chrono::seconds(5));
}

Runtime::~Runtime() {
  if (blocking_watchdog_.joinable()) {
    {
      std::lock_guard lock(blocking_watchdog_mutex_);
      blocking_watchdog_stop_ = true;
    }
    blocking_watchdog_wake_.notify_one();
    blocking_watchdog_.join();
  }
  metrics_server_.reset();
  health_timer_.reset();
  sigterm_.reset();
  sigint_.reset();
  sighup_.reset();
  watchdog_.reset();
  status_timer_.reset();
}

int Runtime::run() {
  loop_.run();
  // The daemon's objects (and their metrics) go away after this; stop serving them first.
  metrics_server_.reset();
  return exit_code_;
}

void Runtime::stop(int exit_code) {
  exit_code_ = exit_code;
  notify_stopping();
  loop_.stop();
}

void Runtime::serve_metrics(metrics::Registry& registry) {
  config::MetricsSettings settings = config::metrics_settings(*config_);
  const std::string& listen = settings.listen;
  if (listen.empty()) return;
  metrics_server_ = std::make_unique<metrics::Server>(listen, registry, settings.origin);
  health_timer_ = std::make_unique<loop::Timer>(loop_, [this] { update_health(); });
  health_timer_->start(std::chrono::milliseconds(0), std::chrono::seconds(1));
  spdlog::info("{}: serving /metrics and /healthz on {}", name_, listen);
}

void Runtime::update_health() {
  if (!metrics_server_) return;
  std::string status = hooks_.status_line ? hooks_.status_line() : name_;
  if (shutdown_requested_)
    metrics_server_->set_health(false, "stopping: " + status);
  else if (hooks_.connected && !hooks_.connected())
    metrics_server_->set_health(false, "not connected: " + status);
  else if (hooks_.healthy && !hooks_.healthy())
    metrics_server_->set_health(false, "no progress: " + status);
  else
    metrics_server_->set_health(true, status);
}

void Runtime::on_terminate() {
  if (shutdown_requested_) {
    spdlog::warn("{}: second signal, exiting at once; unconfirmed work will be redone by the next run", name_);
    std::fflush(nullptr);
    _exit(1);
  }
  shutdown_requested_ = true;
  notify_stopping();
  spdlog::info("{}: shutdown begin (a second signal exits at once)", name_);
  if (hooks_.on_shutdown_request)
    hooks_.on_shutdown_request();
  else
    stop(0);
}

void Runtime::on_reload() {
  // Draining after SIGTERM, the daemon has stopped its timers and told systemd STOPPING=1: a reload
  // now would restart what the shutdown stopped and announce READY=1 again.
  if (shutdown_requested_) {
    spdlog::warn("{}: SIGHUP ignored: shutting down", name_);
    return;
  }
  spdlog::info("{}: reload begin", name_);
  notify_reloading();
  try {
    reload();
    spdlog::info("{}: reload end: new configuration in effect", name_);
  } catch (const std::exception& error) {
    spdlog::error("{}: reload failed, keeping the running configuration: {}", name_, error.what());
  }
  if (g_ready_sent) sd_notify(0, "READY=1");
}

// Build and validate everything first, then swap: a reload is applied whole or not at all.
void Runtime::reload() {
  auto fresh = std::make_unique<config::Config>(config::Config::load(load_options_));
  config::metrics_settings(*fresh);  // restart-only, but a bad one is refused as at start
  config::LogSettings log_settings = config::log_settings(*fresh);
  std::function<void()> commit = hooks_.prepare_reload ? hooks_.prepare_reload(*fresh) : nullptr;
  for (const std::string& key : config::restart_only_changes(*config_, *fresh))
    spdlog::warn("{}: reload: {} changed but takes effect only after a restart", name_, key);
  for (const std::string& warning : fresh->warnings()) spdlog::warn("{}", warning);
  std::swap(config_, fresh);  // `fresh` now holds the running config, to restore
  try {
    log::setup(log_settings.level, log_settings.format);
    if (commit) commit();
  } catch (...) {
    std::swap(config_, fresh);
    config::LogSettings running = config::log_settings(*config_);
    log::setup(running.level, running.format);
    throw;
  }
}

}  // namespace outbox::daemon
