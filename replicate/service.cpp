#include "replicate/service.hpp"

#include <algorithm>

namespace outbox::replicate {

Service::Service(daemon::Runtime& runtime, std::vector<std::string> replicas) : runtime_(runtime) {
  const config::Config& config = runtime_.config();
  if (replicas.empty()) replicas = config.replica_names();
  if (replicas.empty())
    throw config_error("replicate: no replica is configured (set [replicas.NAME] url, or OUTBOX_REPLICA_URL)");
  for (const std::string& name : replicas) {
    if (!config.has_replica(name))
      throw config_error("replicate: no replica named '" + name + "' is configured (set replicas." + name + ".url)");
    Replicator::Callbacks callbacks;
    callbacks.on_ready = [this] {
      if (announced_ready_) return;
      for (const auto& replicator : replicators_)
        if (!replicator->ever_ready()) return;
      announced_ready_ = true;
      daemon::notify_ready();
      spdlog::info("replicate: ready ({} replica(s))", replicators_.size());
    };
    callbacks.on_fatal = [this](const Error& error) {
      if (fatal_error_) return;
      fatal_error_ = error;
      runtime_.stop(static_cast<int>(ExitCode::config));
    };
    callbacks.on_drained = [this] {
      if (++drained_ < replicators_.size()) return;
      spdlog::info("replicate: shutdown end");
      runtime_.stop(0);
    };
    replicators_.push_back(std::make_unique<Replicator>(runtime_, metrics_, config, name, std::move(callbacks)));
  }
  shutdown_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] {
    spdlog::warn("replicate: shutdown timeout ({}s) reached; unacked events will be redelivered to the next run",
                 runtime_.config().duration("replicate.shutdown_timeout").count() / 1000.0);
    for (auto& replicator : replicators_) replicator->cancel_in_flight();
    runtime_.stop(0);
  });
  daemon::Hooks hooks;
  hooks.on_shutdown_request = [this] { shutdown_requested(); };
  hooks.on_reload = [this](const config::Config& fresh) {
    for (auto& replicator : replicators_) replicator->apply_tunables(fresh);
    spdlog::info("replicate: reloaded: batch_size={} batch_wait={}ms max_attempts={}", fresh.integer("replicate.batch_size"),
                 fresh.duration("replicate.batch_wait").count(), fresh.integer("replicate.max_attempts"));
  };
  hooks.status_line = [this] {
    std::string out;
    for (const auto& replicator : replicators_) out += (out.empty() ? "" : "; ") + replicator->status_line();
    return out;
  };
  hooks.healthy = [this] {
    return std::all_of(replicators_.begin(), replicators_.end(), [](const auto& r) { return r->healthy(); });
  };
  hooks.connected = [this] {  // for /healthz
    return std::all_of(replicators_.begin(), replicators_.end(), [](const auto& r) { return r->ready(); });
  };
  runtime_.set_hooks(std::move(hooks));
}

Service::~Service() { replicators_.clear(); }

void Service::start() {
  for (auto& replicator : replicators_) replicator->start();
}

void Service::shutdown_requested() {
  shutdown_timer_->start(runtime_.config().duration("replicate.shutdown_timeout"));
  for (auto& replicator : replicators_) replicator->begin_shutdown();
}

}  // namespace outbox::replicate
