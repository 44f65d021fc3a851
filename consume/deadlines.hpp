#pragma once
// A consumer's deadlines ([[services.NAME.deadlines]]): `SELECT function()` every `every`, each in
// its own transaction on the consumer's database connection, between batches (the Replicator runs
// them on its worker thread: replicate::Replicator::run_between_batches). With this, an
// orchestrator compensates a step that never got an answer. A failure is logged once per change
// of its reason and counted (outbox_consume_deadline_failures_total{service}); it never stops the
// consumer, and the deadline runs again at its next time.
#include <chrono>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "consume/settings.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"

namespace outbox::consume {

class Deadlines {
 public:
  Deadlines(std::string service, std::vector<Deadline> deadlines, metrics::Registry& metrics);
  bool empty() const { return deadlines_.empty(); }
  // How often run_due should be called: the shortest `every`.
  std::chrono::milliseconds interval() const;
  // Runs each deadline that is due. Throws only when the connection is lost.
  void run_due(pqxx::connection& connection);

 private:
  struct State {
    Deadline deadline;
    std::string call;  // SELECT "booking"."expire_sagas"()
    std::chrono::steady_clock::time_point next{};
    std::string problem;  // "" while it works; logged once per change
  };
  std::string service_;
  std::vector<State> deadlines_;
  metrics::Counter& failures_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace outbox::consume
