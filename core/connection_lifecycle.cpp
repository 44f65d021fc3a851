#include "core/connection_lifecycle.hpp"

#include "core/url.hpp"

namespace outbox {

ConnectionLifecycle::ConnectionLifecycle(daemon::Runtime& runtime, std::shared_ptr<spdlog::logger> log, Backoff& backoff,
                                         metrics::Counter& reconnects, std::vector<Side> sides, Hooks hooks)
    : runtime_(runtime),
      log_(std::move(log)),
      backoff_(backoff),
      reconnects_(reconnects),
      sides_(std::move(sides)),
      hooks_(std::move(hooks)),
      timer_(std::make_unique<loop::Timer>(runtime_.loop(), [this] { connect(); })),
      problems_(sides_.size()) {}

void ConnectionLifecycle::connect() {
  if (fatal_) return;
  if (hooks_.halted && hooks_.halted()) {
    if (hooks_.on_halted) hooks_.on_halted();
    return;
  }
  for (size_t side = 0; side < sides_.size(); ++side) {
    if (!needed(side) || sides_[side].is_open()) continue;
    if (!open_side(side)) break;  // the sides after it wait for it
  }
  if (fatal_) return;
  if (!all_open()) return retry();
  connected_at_ = std::chrono::steady_clock::now();
  if (hooks_.ready) hooks_.ready();
}

bool ConnectionLifecycle::open_side(size_t index) {
  Side& side = sides_[index];
  std::string& problem = problems_[index];
  try {
    {
      daemon::Runtime::BlockingCall blocking(runtime_);
      side.open();
    }
    bool again = !problem.empty();
    if (again) reconnects_.add();
    log_->info("{} connected{}{}", side.name, again ? " again" : "", side.connected_detail(again));
    problem.clear();
    if (side.opened) side.opened();
    return side.is_open();
  } catch (const NotNow& not_now) {
    side.close();
    if (not_now.what() != problem) {
      if (dynamic_cast<const WaitingForOperator*>(&not_now))
        log_->warn("{}", not_now.what());
      else
        log_->info("{}", not_now.what());
    }
    problem = not_now.what();
    if (side.not_now) side.not_now();
    return false;
  } catch (const std::exception& error) {
    side.close();
    if (const auto* mistake = dynamic_cast<const Error*>(&error);
        side.config_errors_are_fatal && mistake && mistake->code() == ExitCode::config) {
      fatal_ = true;
      if (hooks_.fatal) hooks_.fatal(*mistake);
      return false;
    }
    std::string reason = mask_url(side.failure_reason ? side.failure_reason(error) : std::string(error.what()));
    if (reason != problem) log_->error("{} unavailable, retrying with backoff: {}", side.name, reason);
    problem = reason;
    return false;
  }
}

bool ConnectionLifecycle::all_open() const {
  for (size_t side = 0; side < sides_.size(); ++side)
    if (needed(side) && !sides_[side].is_open()) return false;
  return true;
}

void ConnectionLifecycle::lost(size_t side, const std::string& reason, const std::string& consequence) {
  std::string masked = mask_url(reason);
  if (problems_[side].empty()) log_->error("{} connection lost{}: {}", sides_[side].name, consequence, masked);
  problems_[side] = masked.empty() ? "connection lost" : masked;
  sides_[side].close();
}

void ConnectionLifecycle::retry() {
  if (timer_->active() || fatal_ || (hooks_.halted && hooks_.halted())) return;
  bool stable = connected_at_ && std::chrono::steady_clock::now() - *connected_at_ > kStableConnection;
  if (stable && (!hooks_.stable_resets_backoff || hooks_.stable_resets_backoff())) backoff_.reset();
  connected_at_.reset();
  retry_after("reconnect attempt");
}

void ConnectionLifecycle::retry_after(const std::string& what) {
  auto delay = backoff_.next();
  // The error itself is logged once per change; each attempt only at debug.
  log_->debug("{} {} in {} ms", what, backoff_.attempts(), delay.count());
  timer_->start(delay);
}

}  // namespace outbox
