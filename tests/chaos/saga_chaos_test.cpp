// The chaos suite for the sagas (issue 16): many concurrent orchestrated sagas
// (examples/saga-orchestration) through every service's relay and consumer while faults are
// injected one after another, then proof that every saga reached exactly one terminal state and
// that the invariants hold (support/saga.hpp): paid = charged - refunded, no slot held by two
// bookings, the read model equal to the primary.
//
// Size and faults come from the environment (CTest runs a bounded size):
//   OUTBOX_SAGA_CHAOS_SAGAS   sagas started (default 300), on a third as many slots, so that most
//                             sagas find their slot taken and fail, and the rest complete
//   OUTBOX_SAGA_CHAOS_FAULTS  faults injected (default 8: every kind at least once)
//   OUTBOX_SAGA_CHAOS_SEED    random seed (default: from the clock; printed)
//
// The faults, spread evenly over the sagas started:
//   relay-kill9       kill -9 of one service's relay, restarted after up to 1 s
//   consumer-kill9    kill -9 of one service's consumer, restarted after up to 1 s
//   replicate-kill9   kill -9 of the read model's replicate daemon, restarted after up to 1 s
//   rabbitmq-restart  the RabbitMQ node stopped and started
//   database-restart  the PostgreSQL cluster of the service databases (booking, billing and the
//                     parking primary) stopped and started
//   database-kill9    the same cluster crashed (SIGKILL to all its processes) and started again
// The step timeout is 3 s, so a consumer or database that is down long enough also sends sagas
// through the deadline's compensation.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include "examples/parking/parking.hpp"
#include "tests/integration/support/saga.hpp"

namespace outbox::testing {
namespace {

int env_int(const char* name, int fallback) {
  const char* text = std::getenv(name);
  return text && *text ? std::atoi(text) : fallback;
}

void say(const std::string& line) { std::cerr << "[saga-chaos] " << line << std::endl; }

const std::vector<std::string> kFaults = {"relay-kill9",      "consumer-kill9",   "replicate-kill9",
                                          "rabbitmq-restart", "database-restart", "database-kill9"};

// Starts `total` sagas from two threads, each booking with an id of its own so that a create that
// failed (the database was going down) is retried with the same id and books once.
class Starter {
 public:
  Starter(SagaRig& rig, std::vector<std::string> slots, int total) : rig_(rig), slots_(std::move(slots)), total_(total) {
    for (int t = 0; t < 2; ++t) threads_.emplace_back([this] { run(); });
  }
  ~Starter() { join(); }
  void join() {
    for (auto& thread : threads_)
      if (thread.joinable()) thread.join();
  }
  int started() const { return started_; }
  std::vector<std::string> problems() {
    std::lock_guard lock(mutex_);
    return problems_;
  }

 private:
  void run() {
    for (int n; (n = next_++) < total_;) {
      std::string booking = parking::random_uuid();
      const std::string& slot = slots_[static_cast<size_t>(n) % slots_.size()];
      bool done = false;
      for (int attempt = 0; attempt < 300 && !done; ++attempt) {
        try {
          auto connection = connect(rig_.url("booking"));
          pqxx::work tx(connection);
          tx.exec_params("SELECT booking.create_booking($1::uuid, $2::uuid)", slot, booking);
          tx.commit();
          done = true;
        } catch (const std::exception&) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the database is restarting
        }
      }
      if (!done) {
        std::lock_guard lock(mutex_);
        problems_.push_back("could not start the saga of booking " + booking);
      }
      ++started_;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  SagaRig& rig_;
  std::vector<std::string> slots_;
  int total_;
  std::atomic<int> next_{0}, started_{0};
  std::mutex mutex_;
  std::vector<std::string> problems_;
  std::vector<std::thread> threads_;
};

void inject(SagaRig& rig, const std::string& fault, std::mt19937_64& random) {
  auto jitter = [&](int max_ms) { std::this_thread::sleep_for(std::chrono::milliseconds(random() % max_ms)); };
  static const std::vector<std::string> services = {"booking", "billing", "parking"};
  const std::string& service = services[random() % services.size()];
  std::string daemon = fault == "relay-kill9"      ? "relay-" + service
                       : fault == "consumer-kill9" ? "consume-" + service
                                                   : "replicate";
  say("fault " + fault + (fault.find("kill9") != std::string::npos && fault != "database-kill9" ? " (" + daemon + ")" : ""));
  if (fault == "rabbitmq-restart") {
    stop_server("rabbitmq");
    start_server("rabbitmq");
  } else if (fault == "database-restart") {
    stop_server("primary");
    jitter(1000);
    start_server("primary");
  } else if (fault == "database-kill9") {
    jitter(1000);
    kill_server("primary");
    jitter(1000);
    start_server("primary");
  } else {
    jitter(1500);
    rig.kill9(daemon);
    jitter(1000);
    rig.start(daemon);
  }
}

TEST(SagaChaos, EverySagaEndsOnceAndTheInvariantsHoldUnderFaults) {
  const int sagas = env_int("OUTBOX_SAGA_CHAOS_SAGAS", 300);
  const int faults = env_int("OUTBOX_SAGA_CHAOS_FAULTS", 8);
  const uint64_t seed = static_cast<uint64_t>(env_int("OUTBOX_SAGA_CHAOS_SEED", static_cast<int>(std::random_device{}() >> 1)));
  say("sagas " + std::to_string(sagas) + ", faults " + std::to_string(faults) + ", seed " + std::to_string(seed));
  std::mt19937_64 random(seed);

  SagaRig rig(SagaStyle::orchestration);
  exec(rig.url("booking"), "UPDATE booking.settings SET step_timeout = '3 seconds'");
  std::vector<std::string> slots;
  for (int i = 0; i < std::max(1, sagas / 3); ++i) slots.push_back(rig.create_slot("S" + std::to_string(i)));
  rig.start_all();

  Starter starter(rig, slots, sagas);
  for (int i = 0; i < faults; ++i) {
    // Fault i waits until i/(faults+1) of the sagas have started; every kind comes once first.
    int due = sagas * (i + 1) / (faults + 1);
    while (starter.started() < due) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    inject(rig, i < static_cast<int>(kFaults.size()) ? kFaults[static_cast<size_t>(i)] : kFaults[random() % kFaults.size()],
           random);
  }
  starter.join();
  EXPECT_EQ(starter.problems(), std::vector<std::string>{});
  for (const auto& name : SagaRig::daemon_names()) rig.start(name);  // any that died on its own

  ASSERT_TRUE(rig.all_ended(std::chrono::minutes(5)));
  EXPECT_EQ(scalar(rig.url("booking"), "SELECT count(*) FROM booking.bookings"), std::to_string(sagas));
  std::string violations;
  for (const auto& line : rig.violations()) violations += line + "\n";
  EXPECT_EQ(violations, "");
  EXPECT_TRUE(rig.read_model_follows(std::chrono::minutes(2)));
  say("SUMMARY " + scalar(rig.url("booking"),
                          "SELECT string_agg(step || ' ' || n, ', ') FROM "
                          "(SELECT step, count(*) n FROM booking.sagas GROUP BY step ORDER BY step) s"));
}

}  // namespace
}  // namespace outbox::testing
