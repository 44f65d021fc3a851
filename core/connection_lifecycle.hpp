#pragma once
// The connection lifecycle a daemon shares with the others (relay, replicate, and any daemon that
// needs servers): N named sides (a database, a broker), each connected in order, on the event
// loop, with backoff between attempts.
//
// Why connects run inside a Runtime::BlockingCall: a connect blocks the loop for up to its timeout,
// and waiting for a server that does not answer is an outage, not a stuck daemon, so the watchdog
// is fed meanwhile.
//
// Why each problem is logged once per change: an outage of an hour retries hundreds of times; the
// log shows when a side failed, why (again when the reason changes), and when it came back.
//
// Why connecting is no progress: a side that drops its connection at once (a broker that closes
// it, a replica that refuses every batch) would otherwise be reconnected to in a tight loop. The
// backoff restarts only on progress (the owner resets it: a confirm, an applied batch) or when
// every connection stayed up kStableConnection.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/backoff.hpp"
#include "core/daemon.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"

namespace outbox {

// A connection that lived this long was a success: the next outage starts the backoff afresh. One
// that dies sooner (a broker that closes it at once) keeps growing the delay.
inline constexpr std::chrono::seconds kStableConnection{10};

// Thrown by a side's `open` when it must not connect now for a reason that is no failure (another
// daemon serves the replica): logged at info, once per change, and retried like a failure.
struct NotNow : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A NotNow that only an operator ends, such as a schema older than the binary (until `outbox
// migrate` ran): logged as a warning, once per change, and retried with backoff.
struct WaitingForOperator : NotNow {
  using NotNow::NotNow;
};

class ConnectionLifecycle {
 public:
  // Designated initializers name only what a side needs: every field has a default.
  struct Side {
    std::string name{};  // in log lines: "primary", "broker", "replica main"
    // Connects and keeps the connection in the owner; throws when it cannot. Runs inside a
    // BlockingCall.
    std::function<void()> open{};
    // Drops whatever `open` or the connection left behind (after a failure or a loss).
    std::function<void()> close{};
    std::function<bool()> is_open{};
    // The tail of "NAME connected..." (again: after an outage), e.g. " (broker-1:5672)".
    std::function<std::string(bool again)> connected_detail{};
    // Why `open` failed, before masking; unset: the exception's message.
    std::function<std::string(const std::exception&)> failure_reason{};
    // Unset: always. False: this side is not connected (while shutting down, say).
    std::function<bool()> needed{};
    // Runs after the "connected" line (work that may already lose the connection again).
    std::function<void()> opened{};
    // Runs after a NotNow was logged.
    std::function<void()> not_now{};
    // A configuration error (a bad URL, unreadable TLS files) stops the daemon instead of a retry.
    bool config_errors_are_fatal = true;
  };

  struct Hooks {
    // Every needed side is connected (after a connect() that connected the last one).
    std::function<void()> ready{};
    // While true, connect() calls on_halted instead of connecting, and retry() does nothing.
    std::function<bool()> halted{};
    std::function<void()> on_halted{};
    // A side's configuration error; nothing connects afterwards.
    std::function<void(const Error&)> fatal{};
    // Unset: always. False: a connection that stayed up does not reset the backoff (the owner's
    // work fails while connected).
    std::function<bool()> stable_resets_backoff{};
  };

  // `backoff` and `reconnects` belong to the owner (its tunables set the cap; its metrics count).
  ConnectionLifecycle(daemon::Runtime& runtime, std::shared_ptr<spdlog::logger> log, Backoff& backoff,
                      metrics::Counter& reconnects, std::vector<Side> sides, Hooks hooks);

  // Connects every missing side in order (each only once the ones before it are open); when all
  // are open calls `ready`, else retries with backoff.
  void connect();
  // A connection broke: logs it (once per outage, `consequence` says what happens to the work in
  // flight, e.g. ", 3 unconfirmed message(s) will be published again") and closes the side. The
  // owner then calls retry() (or finishes a shutdown).
  void lost(size_t side, const std::string& reason, const std::string& consequence);
  // Schedules connect() after the next backoff delay, unless one is scheduled or halted.
  void retry();
  // Schedules connect() after the next backoff delay, replacing a scheduled one; `what` names the
  // attempt in the debug line ("apply retry").
  void retry_after(const std::string& what);
  // A retry is scheduled: the owner waits for it.
  bool retry_scheduled() const { return timer_->active(); }
  // Stops retrying (shutdown).
  void stop_retrying() { timer_->stop(); }
  // Is `side` failing (its problem logged and not yet recovered)?
  bool failing(size_t side) const { return !problems_[side].empty(); }
  bool fatal() const { return fatal_; }

 private:
  bool open_side(size_t side);
  bool all_open() const;
  bool needed(size_t side) const { return !sides_[side].needed || sides_[side].needed(); }

  daemon::Runtime& runtime_;
  std::shared_ptr<spdlog::logger> log_;
  Backoff& backoff_;
  metrics::Counter& reconnects_;
  std::vector<Side> sides_;
  Hooks hooks_;
  std::unique_ptr<loop::Timer> timer_;
  std::vector<std::string> problems_;                                  // per side: "" while fine; logged once per change
  std::optional<std::chrono::steady_clock::time_point> connected_at_;  // when every side was last open
  bool fatal_ = false;
};

}  // namespace outbox
