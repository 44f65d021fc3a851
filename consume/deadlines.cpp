#include "consume/deadlines.hpp"

#include <algorithm>

#include "core/duration.hpp"
#include "core/pg.hpp"
#include "replicate/apply.hpp"

namespace outbox::consume {

Deadlines::Deadlines(std::string service, std::vector<Deadline> deadlines, metrics::Registry& metrics)
    : service_(std::move(service)),
      failures_(metrics.counter("outbox_consume_deadline_failures_total",
                                "Deadline functions ([[services.NAME.deadlines]]) that failed; each runs again at its next time",
                                {{"service", service_}})),
      log_(log::get("consume " + service_)) {
  auto now = std::chrono::steady_clock::now();
  for (Deadline& deadline : deadlines) {
    // The name was checked as a (qualified) identifier by the settings, and is quoted here.
    std::string call = "SELECT " + pg::quote_qualified(deadline.function) + "()";
    deadlines_.push_back(State{std::move(deadline), std::move(call), now, ""});
  }
}

std::chrono::milliseconds Deadlines::interval() const {
  std::chrono::milliseconds shortest = std::chrono::hours(24);
  for (const State& state : deadlines_) shortest = std::min(shortest, state.deadline.every);
  return shortest;
}

void Deadlines::run_due(pqxx::connection& connection) {
  for (State& state : deadlines_) {
    auto now = std::chrono::steady_clock::now();
    if (now < state.next) continue;
    state.next = now + state.deadline.every;
    try {
      pqxx::work tx(connection, "deadline");
      tx.exec(state.call);
      tx.commit();
      if (!state.problem.empty()) log_->info("deadline {} works again", state.deadline.function);
      state.problem.clear();
    } catch (const std::exception& error) {
      if (replicate::classify(error) == replicate::Failure::connection) throw;
      failures_.add();
      std::string reason = replicate::one_line(error.what());
      if (reason != state.problem)
        log_->warn("deadline {} failed, runs again in {}: {}", state.deadline.function, format_duration(state.deadline.every),
                   reason);
      state.problem = reason;
    }
  }
}

}  // namespace outbox::consume
