#include "replicate/service.hpp"

#include <algorithm>

namespace outbox::replicate {
namespace {

// A partitioned replica (or consumer) is served by one Replicator per partition queue, each with
// its own connections and serve lock (so each partition can move to another process alone), all
// of them counting against one PartitionShare.
std::vector<ReplicaSettings> split_partitions(const std::vector<ReplicaSettings>& replicas) {
  std::vector<ReplicaSettings> out;
  for (const ReplicaSettings& replica : replicas) {
    if (replica.queue.partitions <= 1) {
      out.push_back(replica);
      continue;
    }
    auto share = std::make_shared<PartitionShare>(replica.url, replica.name, replica.consumer, replica.queue.partitions);
    for (int partition = 0; partition < replica.queue.partitions; ++partition) {
      out.push_back(replica);
      out.back().partition = partition;
      out.back().share = share;
    }
  }
  return out;
}

}  // namespace

Service::Service(daemon::Runtime& runtime, Settings settings) : Service(runtime, std::move(settings), Flavor{}) {}

Service::Service(daemon::Runtime& runtime, Settings settings, Flavor flavor)
    : runtime_(runtime), flavor_(std::move(flavor)), shutdown_timeout_(settings.tunables.shutdown_timeout) {
  for (const ReplicaSettings& replica : split_partitions(settings.replicas)) {
    Replicator::Callbacks callbacks;
    callbacks.on_ready = [this, targets = settings.replicas.size()] {
      if (announced_ready_) return;
      for (const auto& replicator : replicators_)
        if (!replicator->ever_ready()) return;
      announced_ready_ = true;
      daemon::notify_ready();
      spdlog::info("{}: ready ({} {}(s))", flavor_.name, targets, flavor_.name == "replicate" ? "replica" : "consumer");
    };
    callbacks.on_fatal = [this](const Error& error) {
      if (fatal_error_) return;
      fatal_error_ = error;
      runtime_.stop(static_cast<int>(ExitCode::config));
    };
    callbacks.on_drained = [this] {
      if (++drained_ < replicators_.size()) return;
      spdlog::info("{}: shutdown end", flavor_.name);
      runtime_.stop(0);
    };
    replicators_.push_back(std::make_unique<Replicator>(runtime_, metrics_, settings, replica, std::move(callbacks)));
  }
  shutdown_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] {
    spdlog::warn("{}: shutdown timeout ({}s) reached; unacked events will be redelivered to the next run", flavor_.name,
                 shutdown_timeout_.count() / 1000.0);
    for (auto& replicator : replicators_) replicator->cancel_in_flight();
    runtime_.stop(0);
  });
  daemon::Hooks hooks;
  hooks.on_shutdown_request = [this] { shutdown_requested(); };
  hooks.prepare_reload = [this](const config::Config& fresh) -> std::function<void()> {
    // The whole of the settings of the served replicas is built: a reload refuses what a start would.
    std::vector<std::string> names;
    for (const auto& replicator : replicators_) names.push_back(replicator->replica());
    return [this, tunables = flavor_.reload_tunables(fresh, names)] {
      for (auto& replicator : replicators_) replicator->apply_tunables(tunables);
      shutdown_timeout_ = tunables.shutdown_timeout;
      spdlog::info("{}: reloaded: batch_size={} batch_wait={}ms max_attempts={}", flavor_.name, tunables.batch_size,
                   tunables.batch_wait.count(), tunables.max_attempts);
    };
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
    return std::all_of(replicators_.begin(), replicators_.end(),
                       [](const auto& r) { return r->ready() || r->left_to_another_process(); });
  };
  runtime_.set_hooks(std::move(hooks));
}

Service::~Service() { replicators_.clear(); }

void Service::start() {
  for (auto& replicator : replicators_) replicator->start();
}

void Service::shutdown_requested() {
  shutdown_timer_->start(shutdown_timeout_);
  for (auto& replicator : replicators_) replicator->begin_shutdown();
}

}  // namespace outbox::replicate
