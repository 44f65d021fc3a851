// The replicator's metrics: its counters and gauges (outbox_consume_* for a consumer), and what
// each committed batch adds to them.
#include <algorithm>

#include "core/duration.hpp"
#include "replicate/replicator.hpp"

namespace outbox::replicate {

using Clock = std::chrono::steady_clock;

metrics::Counter& Replicator::counter(const std::string& name, const metrics::Labels& extra_labels) {
  static const std::map<std::string, std::string> help = {
      {"outbox_replicate_applied_total", "Events applied to a replica (the row changed)"},
      {"outbox_replicate_skipped_total",
       "Events that were no-ops: stale (version not newer) or duplicate (event id seen before)"},
      {"outbox_replicate_parked_total", "Poison events parked in outbox_failed_events"},
      {"outbox_replicate_waiting_total", "Events recorded as waiting behind a parked event of their aggregate"},
      {"outbox_replicate_heartbeats_total", "Relay heartbeats applied"},
      {"outbox_replicate_reconnects_total", "Reconnections to the replica database or the broker"},
      {"outbox_replicate_pruned_total", "Applied event ids removed from outbox_applied_events after replicate.applied_retention"},
      {"outbox_replicate_future_events_total",
       "Events and heartbeats created further ahead of the replica's clock than replicate.max_clock_skew: applied, but "
       "their time moves neither the applied position nor lag"},
      {"outbox_replicate_unhandled_total",
       "Events no handler takes: recorded in the inbox as not effective and acked (logged once per event type)"},
  };
  metrics::Labels labels = labels_;
  labels.insert(labels.end(), extra_labels.begin(), extra_labels.end());
  return metrics_.counter(metric_name(name), help.at(name), labels);
}

metrics::Gauge& Replicator::gauge(const std::string& name, const std::string& help, const metrics::Labels& extra_labels) {
  metrics::Labels labels = labels_;
  labels.insert(labels.end(), extra_labels.begin(), extra_labels.end());
  return metrics_.gauge(metric_name(name), help, labels);
}

metrics::Gauge& Replicator::parked_gauge() {
  return gauge("outbox_replicate_parked_events", "Events parked now in outbox_failed_events (outbox failed list)");
}

// What the replicator holds now. The parked events are counted with the lag, on the replica.
void Replicator::update_gauges() {
  gauge("outbox_replicate_connected", "1 while connected to this peer (database: the replica or the service's database)",
        {{"peer", "database"}})
      .set(db_ ? 1 : 0);
  gauge("outbox_replicate_connected", "", {{"peer", "broker"}}).set(broker_ ? 1 : 0);
  // A pack is one message: its last event ends the delivery.
  auto deliveries = [](const auto& received) {
    return std::count_if(received.begin(), received.end(), [](const auto& one) { return one->ends_delivery; });
  };
  size_t unpacked = pending_.size() + (in_flight_ ? in_flight_->received.size() : 0);
  gauge("outbox_replicate_unacked_messages", "Messages received and not yet acked: waiting for their batch or being applied")
      .set(static_cast<double>(deliveries(pending_) + (in_flight_ ? deliveries(in_flight_->received) : 0)) +
           static_cast<double>(packed_.size()));
  gauge("outbox_replicate_unpacked_events",
        "Events received, unpacked and checked, held for their batch or being applied (packs beyond the next batch wait "
        "packed and are not counted)")
      .set(static_cast<double>(unpacked));
}

// A consumer's metrics are replicate's under the outbox_consume_ prefix, labelled service="NAME".
std::string Replicator::metric_name(const std::string& name) const {
  static const std::string kReplicatePrefix = "outbox_replicate_";
  if (!consumer_ || name.rfind(kReplicatePrefix, 0) != 0) return name;
  return "outbox_consume_" + name.substr(kReplicatePrefix.size());
}

void Replicator::record(const Counts& counts, Clock::duration took) {
  last_progress_ = Clock::now();
  counter("outbox_replicate_applied_total").add(static_cast<uint64_t>(counts.applied));
  counter("outbox_replicate_skipped_total", {{"reason", "stale"}}).add(static_cast<uint64_t>(counts.stale));
  counter("outbox_replicate_skipped_total", {{"reason", "duplicate"}}).add(static_cast<uint64_t>(counts.duplicate));
  counter("outbox_replicate_skipped_total", {{"reason", "broken_heartbeat"}}).add(static_cast<uint64_t>(counts.skipped));
  counter("outbox_replicate_parked_total").add(static_cast<uint64_t>(counts.parked));
  counter("outbox_replicate_waiting_total").add(static_cast<uint64_t>(counts.waiting));
  counter("outbox_replicate_heartbeats_total").add(static_cast<uint64_t>(counts.heartbeats));
  counter("outbox_replicate_future_events_total").add(static_cast<uint64_t>(counts.future));
  // A consumer's only (an event type with no handler); registered with the others in the constructor.
  if (consumer_) counter("outbox_replicate_unhandled_total").add(static_cast<uint64_t>(counts.unhandled));
  metrics_.histogram(metric_name("outbox_replicate_batch_seconds"), "", {}, labels_)
      .observe(std::chrono::duration<double>(took).count());
  if (counts.future) {
    future_unlogged_ += counts.future;
    future_unlogged_ahead_ = std::max(future_unlogged_ahead_, counts.future_ahead_seconds);
    log_future_events();
  }
  if (counts.waiting)
    log_->warn("{} event(s) wait behind parked events of their aggregate (see 'outbox failed list {} {}')", counts.waiting,
               consumer_ ? "--consumer" : "--replica", replica_);
  log_->debug("batch: {} applied, {} stale, {} duplicate, {} parked, {} waiting, {} heartbeat(s) in {:.1f} ms{}{}",
              counts.applied, counts.stale, counts.duplicate, counts.parked, counts.waiting, counts.heartbeats,
              std::chrono::duration<double, std::milli>(took).count(),
              counts.parts ? fmt::format(" in {} parts", counts.parts) : std::string(),
              counts.typed ? ", payloads read as columns" : "");
}

// One line at most once a minute, with what came since the last one; the tick writes what a
// quiet minute left over.
void Replicator::log_future_events() {
  if (!future_unlogged_ || Clock::now() < next_future_log_) return;
  log_->warn(
      "{} event(s) or heartbeat(s) created up to {} ahead of the replica's clock, more than replicate.max_clock_skew {}: "
      "applied, but their time moves neither the applied position nor lag (a forged message, or a primary clock running "
      "ahead?)",
      future_unlogged_, format_seconds(future_unlogged_ahead_), format_duration(tunables_.max_clock_skew));
  future_unlogged_ = 0;
  future_unlogged_ahead_ = 0;
  next_future_log_ = Clock::now() + std::chrono::minutes(1);
}

}  // namespace outbox::replicate
