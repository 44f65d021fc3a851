#pragma once
// Parked and waiting events of a replica (outbox_failed_events), for `outbox failed`. No CLI here.
//
// A poison event is 'parked'; later events of its aggregate are 'waiting' behind it, in id order
// (the order they arrived in). Together they form the aggregate's chain; the first row is its head.
//   retry ID    re-applies the head ID and then its waiting followers, in order, through the same
//               Applier as the daemon. Each success removes its row. At the first failure the
//               failing row stays (state 'parked', attempts + 1, the new error) with the rest of the
//               chain waiting behind it.
//   discard ID  drops the head ID, then releases its followers exactly as retry does: they are
//               applied in order, and the first that fails becomes the parked head.
// Both run in one transaction that holds the replica's apply lock, so they never race the daemon.
#include <chrono>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "migrate/runner.hpp"
#include "replicate/apply.hpp"

namespace outbox::replicate {

struct FailedEvent {
  long long id = 0;
  std::string replica, state, event_id, event_type, routing_key, aggregate_type, aggregate_id;
  std::optional<long long> version;
  int attempts = 0;
  std::string failed_at, error, properties, body;
  std::vector<long long> waiting;  // ids waiting behind this one (filled for heads by find())
};

struct ChainResult {
  long long head = 0;
  std::vector<long long> applied;  // ids applied (or no-ops) and removed, in order
  long long failed = 0;            // id that failed and stays parked (0: none)
  std::string error;
  long long remaining = 0;  // rows left in the chain
};

class FailedEvents {
 public:
  // Checks the replica's schema (a consumer's: the service set) and the mappings or handlers
  // (Error(config) otherwise).
  FailedEvents(pqxx::connection& connection, std::string replica, std::string role, std::vector<Mapping> mappings,
               migrate::Target schema = migrate::Target::replica);
  std::vector<FailedEvent> list();
  // Error(data) when there is no such id for this replica.
  FailedEvent find(long long id);
  ChainResult retry(long long id);
  // Every chain head of the replica, oldest first.
  std::vector<ChainResult> retry_all();
  ChainResult discard(long long id, FailedEvent& discarded);
  // replicate.max_clock_skew, for the applied position (Applier::set_max_clock_skew).
  void set_max_clock_skew(std::chrono::milliseconds skew) { applier_.set_max_clock_skew(skew); }
  void set_record_event_ids(bool record) { applier_.set_record_event_ids(record); }

 private:
  ChainResult run_chain(long long id, bool drop_head, FailedEvent* dropped);
  pqxx::connection& connection_;
  std::string replica_, role_;
  Applier applier_;
};

}  // namespace outbox::replicate
