#pragma once
// The saga examples (examples/saga-orchestration/, examples/saga-choreography/) on the test
// servers, for the end-to-end tests and the chaos suite. A SagaRig gives each test fresh service
// databases, the example's own outbox.toml and SQL, the daemons of every service, and the
// invariants of issue 16 checked in SQL:
//   - every saga ends in exactly one terminal state, and its services agree on it;
//   - paid = charged - refunded, bill by bill;
//   - no slot is reserved (or left blocked) by two bookings, and the read model follows the primary.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/support/harness.hpp"

namespace outbox::testing {

enum class SagaStyle { orchestration, choreography };

class SagaRig {
 public:
  // Databases: booking and billing new on the primary cluster, parking = the primary (its
  // parking_slots), the read model = the replica "main". Writes the example's outbox.toml with
  // their URLs (and `extra_toml` appended), runs `outbox migrate` and empties the consumers'
  // queues. Starts no daemon.
  explicit SagaRig(SagaStyle style, const std::string& extra_toml = "");
  ~SagaRig();
  SagaRig(const SagaRig&) = delete;
  SagaRig& operator=(const SagaRig&) = delete;

  SagaStyle style() const { return style_; }
  // "booking", "billing", "parking" (the primary) or "read" (the replica).
  std::string url(const std::string& database) const;
  const std::string& config() const { return config_; }
  // run_outbox with the rig's config.
  RunResult outbox(const std::vector<std::string>& args) const;

  // The daemons, by name: relay-booking, relay-billing, relay-parking, consume-booking,
  // consume-billing, consume-parking, replicate.
  static std::vector<std::string> daemon_names();
  void start(const std::string& name);
  void start_all();
  // SIGTERM, then waits for the exit (SIGKILL after 30 s).
  void stop(const std::string& name);
  void kill9(const std::string& name);
  Daemon* daemon(const std::string& name);

  std::string create_slot(const std::string& name);
  // booking.create_booking(slot, a new id[, amount (orchestration only)]); returns the booking id.
  std::string create_booking(const std::string& slot, int amount = 100);
  // billing.pay(booking, amount) (choreography); returns the bill's status.
  std::string pay(const std::string& booking, int amount);
  // The booking's status: pending, completed | done, failed.
  std::string status(const std::string& booking) const;
  // Orchestration: the saga's step; choreography: the bill's status.
  std::string step(const std::string& booking) const;
  // Whether every booking has ended (polls up to `deadline`).
  bool all_ended(std::chrono::milliseconds deadline = std::chrono::seconds(90)) const;
  // The invariants above, as one line per violation (empty: they hold). Call once all_ended.
  std::vector<std::string> violations() const;
  // Whether the replica's parking_slots equal the primary's (polls up to `deadline`).
  bool read_model_follows(std::chrono::milliseconds deadline = std::chrono::seconds(60)) const;
  // The state the saga's steps change, per service, without versions and times: equal snapshots
  // mean nothing that matters changed.
  std::string snapshot() const;

 private:
  std::vector<std::string> orchestration_violations() const;
  std::vector<std::string> choreography_violations() const;

  SagaStyle style_;
  std::string booking_url_, billing_url_, config_;
  std::map<std::string, std::unique_ptr<Daemon>> daemons_;
};

// Delivers every message published to `exchange` a second time, and in a shuffled order: a queue
// bound with "#" taps each message, and a thread republishes the tapped messages (same message id,
// properties and headers, plus the header x-test-copy) in random order, a batch at a time.
class Duplicator {
 public:
  explicit Duplicator(std::string exchange);
  ~Duplicator();
  Duplicator(const Duplicator&) = delete;
  Duplicator& operator=(const Duplicator&) = delete;
  size_t copies() const { return copies_; }

 private:
  void run();
  std::string exchange_, queue_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> copies_{0};
  std::thread thread_;
};

}  // namespace outbox::testing
