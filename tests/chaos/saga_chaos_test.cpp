// The chaos suite for the sagas (issue 16): many concurrent sagas of both examples
// (examples/saga-orchestration, examples/saga-choreography) through every service's relay and
// consumer while faults are injected one after another, then proof that every saga reached exactly
// one terminal state and that the invariants hold (support/saga.hpp): paid = charged - refunded, no
// slot held by two bookings, the read model equal to the primary. One test per style; CTest runs
// each as its own entry (chaos_sagas, chaos_sagas_choreography).
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
// Orchestration: the step timeout is 3 s, so a consumer or database that is down long enough also
// sends sagas through the deadline's compensation. Choreography: a user pays each bill as soon as
// billing has it, in full, in two parts, or (one saga in five) never; the payment timeout is 5 s,
// so unpaid bills, and bills whose payment a fault delayed (partly paid ones too, which are then
// refunded), are cancelled by billing's deadline.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
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

// What the user of a choreographed saga pays towards its bill of 100: in full, in two parts, or
// nothing (billing's deadline cancels the bill).
std::vector<int> payments_of_saga(int n) {
  switch (n % 5) {
    case 3:
      return {40, 60};
    case 4:
      return {};
    default:
      return {100};
  }
}

// The user of the choreographed sagas: pays each bill once billing has it (booking.created went
// through relay, broker and billing's consumer), part after part. Each part has a payment id of its
// own, so a payment whose commit was not confirmed (the database went down) is sent again and
// recorded once. One thread polls billing's pending bills, so that every bill is paid soon after it
// appears whatever the others wait for.
class Payer {
 public:
  explicit Payer(const SagaRig& rig) : rig_(rig), thread_([this] { run(); }) {}
  ~Payer() { finish(); }
  // Before the booking is created, so that its bill always finds its plan.
  void plan(const std::string& booking, const std::vector<int>& amounts) {
    std::lock_guard lock(mutex_);
    Plan& entry = plans_[booking];
    for (int amount : amounts) entry.parts.push_back({amount, parking::random_uuid()});
    if (entry.parts.empty())
      entry.over = true;  // never paid: billing's deadline cancels the bill
    else
      ++open_;
  }
  // Once every saga is started: waits until every planned payment was made or its bill ended.
  void finish() {
    {
      std::lock_guard lock(mutex_);
      all_planned_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  std::vector<std::string> problems() {
    std::lock_guard lock(mutex_);
    return problems_;
  }

 private:
  struct Part {
    int amount;
    std::string payment_id;
  };
  struct Plan {
    std::vector<Part> parts;
    size_t paid = 0;  // parts recorded so far
    bool over = false;
  };

  void run() {
    const auto give_up = std::chrono::minutes(3);  // after the last saga started
    std::optional<std::chrono::steady_clock::time_point> deadline;
    std::unique_ptr<pqxx::connection> connection;
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (all_planned_ && !deadline) deadline = std::chrono::steady_clock::now() + give_up;
        if (all_planned_ && open_ == 0) return;
        if (deadline && std::chrono::steady_clock::now() > *deadline) {
          problems_.push_back(std::to_string(open_) + " bills neither paid nor ended within 3 minutes");
          return;
        }
      }
      try {
        if (!connection) connection = std::make_unique<pqxx::connection>(rig_.url("billing"));
        pqxx::result bills = pqxx::nontransaction(*connection).exec("SELECT booking_id::text, status FROM billing.bills");
        for (const auto& bill : bills) {
          std::string booking = bill[0].as<std::string>();
          if (bill[1].as<std::string>() == "pending")
            pay_next_part(*connection, booking);
          else
            settle(booking, false, "");  // paid (a payment in doubt had committed), or cancelled
        }
      } catch (const std::exception&) {
        connection.reset();  // the database is restarting: the next round connects again
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  void pay_next_part(pqxx::connection& connection, const std::string& booking) {
    Part part;
    {
      std::lock_guard lock(mutex_);
      auto found = plans_.find(booking);
      if (found == plans_.end() || found->second.over) return;
      part = found->second.parts[found->second.paid];
    }
    try {
      pqxx::work tx(connection);
      tx.exec_params("SELECT billing.pay($1::uuid, $2::numeric, $3::uuid)", booking, part.amount, part.payment_id);
      tx.commit();
      settle(booking, /*recorded=*/true, "");
    } catch (const pqxx::sql_error& error) {
      // 22023: the bill is no longer pending (the deadline cancelled it), or a payment above
      // the balance, which stable payment ids must never cause.
      if (error.sqlstate() != "22023") throw;
      std::string what = error.what();
      settle(booking, false, what.find("not pending") != std::string::npos ? "" : "booking " + booking + ": " + what);
    }
  }

  // A part recorded, or the bill no longer pending (with `problem` when that was not expected).
  void settle(const std::string& booking, bool recorded, const std::string& problem) {
    std::lock_guard lock(mutex_);
    auto found = plans_.find(booking);
    if (found == plans_.end() || found->second.over) return;
    Plan& entry = found->second;
    if (recorded) ++entry.paid;
    if (!problem.empty()) problems_.push_back(problem);
    if (!recorded || entry.paid == entry.parts.size()) {
      entry.over = true;
      --open_;
    }
  }

  const SagaRig& rig_;
  std::mutex mutex_;
  std::map<std::string, Plan> plans_;
  int open_ = 0;
  bool all_planned_ = false;
  std::vector<std::string> problems_;
  std::thread thread_;
};

// Starts `total` sagas from two threads, each booking with an id of its own so that a create that
// failed (the database was going down) is retried with the same id and books once. With a payer
// (choreography), each saga's payments are planned first.
class Starter {
 public:
  Starter(SagaRig& rig, std::vector<std::string> slots, int total, Payer* payer)
      : rig_(rig), slots_(std::move(slots)), total_(total), payer_(payer) {
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
      // The bookings of one slot (n, n + slots, ...) pay in different ways, so that a slot whose
      // first booking never pays goes to a later one.
      if (payer_) payer_->plan(booking, payments_of_saga(n + n / static_cast<int>(slots_.size())));
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
  Payer* payer_;
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

// How many sagas ended in each state, for the log.
std::string summary(const SagaRig& rig) {
  return rig.style() == SagaStyle::orchestration
             ? scalar(rig.url("booking"),
                      "SELECT string_agg(step || ' ' || n, ', ') FROM "
                      "(SELECT step, count(*) n FROM booking.sagas GROUP BY step ORDER BY step) s")
             : scalar(rig.url("billing"),
                      "SELECT string_agg('bill ' || status || ' ' || n, ', ') FROM "
                      "(SELECT status, count(*) n FROM billing.bills GROUP BY status ORDER BY status) s") +
                   ", " +
                   scalar(rig.url("booking"),
                          "SELECT string_agg('booking ' || status || ' ' || n, ', ') FROM "
                          "(SELECT status, count(*) n FROM booking.bookings GROUP BY status ORDER BY status) s");
}

class SagaChaos : public ::testing::TestWithParam<SagaStyle> {};

TEST_P(SagaChaos, EverySagaEndsOnceAndTheInvariantsHoldUnderFaults) {
  const int sagas = env_int("OUTBOX_SAGA_CHAOS_SAGAS", 300);
  const int faults = env_int("OUTBOX_SAGA_CHAOS_FAULTS", 8);
  const uint64_t seed = static_cast<uint64_t>(env_int("OUTBOX_SAGA_CHAOS_SEED", static_cast<int>(std::random_device{}() >> 1)));
  const bool orchestrated = GetParam() == SagaStyle::orchestration;
  say(std::string(orchestrated ? "orchestration" : "choreography") + ": sagas " + std::to_string(sagas) + ", faults " +
      std::to_string(faults) + ", seed " + std::to_string(seed));
  std::mt19937_64 random(seed);

  SagaRig rig(GetParam());
  if (orchestrated)
    exec(rig.url("booking"), "UPDATE booking.settings SET step_timeout = '3 seconds'");
  else
    exec(rig.url("billing"), "UPDATE billing.settings SET payment_timeout = '5 seconds'");
  std::vector<std::string> slots;
  for (int i = 0; i < std::max(1, sagas / 3); ++i) slots.push_back(rig.create_slot("S" + std::to_string(i)));
  rig.start_all();

  std::optional<Payer> payer;
  if (!orchestrated) payer.emplace(rig);
  Starter starter(rig, slots, sagas, payer ? &*payer : nullptr);
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
  if (payer) {
    payer->finish();
    EXPECT_EQ(payer->problems(), std::vector<std::string>{});
  }

  // Not ASSERT: the violations below name the sagas that did not end.
  EXPECT_TRUE(rig.all_ended(std::chrono::minutes(5)));
  EXPECT_EQ(scalar(rig.url("booking"), "SELECT count(*) FROM booking.bookings"), std::to_string(sagas));
  std::string violations;
  for (const auto& line : rig.violations()) violations += line + "\n";
  EXPECT_EQ(violations, "");
  EXPECT_TRUE(rig.read_model_follows(std::chrono::minutes(2)));
  say("SUMMARY " + summary(rig));
}

INSTANTIATE_TEST_SUITE_P(BothStyles, SagaChaos, ::testing::Values(SagaStyle::orchestration, SagaStyle::choreography),
                         [](const ::testing::TestParamInfo<SagaStyle>& info) {
                           return info.param == SagaStyle::orchestration ? "Orchestrated" : "Choreographed";
                         });

}  // namespace
}  // namespace outbox::testing
