#include "replicate/replicator.hpp"

#include <algorithm>

#include "core/duration.hpp"
#include "core/error.hpp"
#include "core/failpoint.hpp"
#include "core/pg.hpp"
#include "core/url.hpp"
#include "migrate/runner.hpp"
#include "replicate/group_commit.hpp"
#include "replicate/progress.hpp"

namespace outbox::replicate {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto kTick = milliseconds(1000);
// The lag gauge and pruning run on the event loop, which must not wait long for the replica (a
// migration holding a table lock, say): AMQP heartbeats, signals and the watchdog depend on it.
constexpr const char* kLoopStatementLimits = "SET LOCAL lock_timeout = '1s'; SET LOCAL statement_timeout = '5s'";
// A batch applying for this long is stuck: the watchdog is no longer fed.
constexpr auto kStuckAfter = std::chrono::minutes(2);

// outbox_applied_events is pruned between batches, at most this many rows per statement and this
// many statements per tick, so a batch never waits long behind it.
constexpr int kPruneBatch = 1000;
constexpr int kPruneBatchesPerTick = 5;
constexpr auto kPruneInterval = std::chrono::seconds(10);

}  // namespace

Replicator::Replicator(daemon::Runtime& runtime, metrics::Registry& metrics, const Settings& settings,
                       const ReplicaSettings& replica, Callbacks callbacks)
    : runtime_(runtime),
      loop_(runtime.loop()),
      metrics_(metrics),
      replica_(replica.name),
      partition_(replica.partition),
      share_(replica.share),
      consume_queue_(partition_ < 0 ? replica.queue.queue : topology::partition_queue_name(replica.queue.queue, partition_)),
      consumer_(replica.consumer),
      role_((consumer_ ? "consumer " : "replica ") + replica_ +
            (partition_ < 0 ? "" : " partition " + std::to_string(partition_))),
      program_(consumer_ ? "outbox-consume" : "outbox-replicate"),
      labels_({{consumer_ ? "service" : "replica", replica_}}),
      log_(log::get((consumer_ ? "consume " : "replicate ") + replica_ +
                    (partition_ < 0 ? "" : "/p" + std::to_string(partition_)))),
      callbacks_(std::move(callbacks)),
      backoff_(milliseconds(30000)) {
  amqp::require_broker(settings.broker);
  if (partition_ >= 0) labels_.push_back({"partition", std::to_string(partition_)});
  url_ = replica.url;
  broker_settings_ = settings.broker;
  queue_ = replica.queue;
  mappings_ = consumer_ ? replica.handlers : settings.mappings;
  prefetch_ = replicate_window(settings.prefetch, queue_.pack);
  apply_connections_ = settings.apply_connections;
  apply_tunables(settings.tunables);

  for (const char* name : {"outbox_replicate_applied_total", "outbox_replicate_parked_total", "outbox_replicate_waiting_total",
                           "outbox_replicate_heartbeats_total", "outbox_replicate_reconnects_total",
                           "outbox_replicate_pruned_total", "outbox_replicate_future_events_total"})
    counter(name);
  for (const char* reason : {"stale", "duplicate", "broken_heartbeat"})
    counter("outbox_replicate_skipped_total", {{"reason", reason}});
  if (consumer_) counter("outbox_replicate_unhandled_total");
  metrics_.histogram(metric_name("outbox_replicate_batch_seconds"), "Time to apply and commit one batch on a replica",
                     {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}, labels_);
  // The lag's family is served from the start (a scrape before the first tick missed it), its series once known.
  lag::set_replica_gauges(metrics_, lag::ReplicaStage{.name = replica_}, consumer_);

  apply_soon_ = std::make_unique<loop::Deferred>(loop_, [this] { apply_pending(); });
  worker_ = std::make_unique<loop::Worker>(loop_);
  batch_timer_ = std::make_unique<loop::Timer>(loop_, [this] {
    batch_due_ = true;
    linger_until_ = {};  // over, whatever the rounding of the timer's milliseconds
    read_broker();       // what came while lingering (see watch_broker)
    apply_pending();
    watch_broker();
  });
  // Reads frames the socket poll has not signalled (buffered in rabbitmq-c) and keeps AMQP
  // heartbeats flowing while the replica is down and nothing is acked.
  tick_timer_ = std::make_unique<loop::Timer>(loop_, [this] {
    if (share_ && db_ && !giving_back_ && !stopping_ && share_->should_give_back(partition_)) give_back_partition();
    if (broker_) on_broker_readable();
    update_lag_gauge();
    prune_applied();
    log_future_events();
  });
  lifecycle_ = make_lifecycle();
}

Replicator::~Replicator() {
  worker_.reset();  // waits for a batch in flight: it uses applier_ and db_
  broker_poll_.reset();
  broker_.reset();
  applier_.reset();
  helper_dbs_.clear();
  db_.reset();
}

void Replicator::apply_tunables(const Tunables& tunables) {
  // The applier takes tunables_.max_attempts when the next batch starts: one may be running on the worker.
  tunables_ = tunables;
  backoff_.set_cap(tunables.max_backoff);
}

// outbox_replicate_lag_seconds{replica}: the heartbeat measure of ops/lag.hpp (this daemon does
// not read the primary's backlog; `outbox lag` does). Runs between batches, so no transaction is open.
void Replicator::update_lag_gauge() {
  lag::ReplicaStage stage;
  stage.name = replica_;
  update_gauges();
  if (in_flight_) return;  // the worker thread owns the replica connection until the batch is done
  if (db_) {
    try {
      pqxx::read_transaction tx(*db_);
      tx.exec(kLoopStatementLimits);
      stage = lag::read_replica(tx, replica_);
      if (stage.error.empty())
        parked_gauge().set(
            tx.exec_params1("SELECT count(*) FROM outbox_failed_events WHERE replica = $1 AND state = 'parked'", replica_)[0]
                .as<double>());
    } catch (const std::exception& error) {
      if (pg::is_connection_error(error)) return database_lost(error.what());
      stage.error = error.what();
    }
  } else {
    stage.error = "not connected";
    parked_gauge().clear();  // unknown until the replica is back
  }
  lag::compute_behind(stage, std::nullopt, tunables_.heartbeat_interval);
  lag::set_replica_gauges(metrics_, stage, consumer_);
}

// Removes applied event ids older than replicate.applied_retention. Safe at any time: an applied
// event id implies a stored version at least as new as the event's, so a redelivery of a pruned
// event is still a no-op (counted as stale instead of duplicate). Runs on the loop thread between
// batches, when the worker does not own the replica connection.
void Replicator::prune_applied() {
  if (!db_ || in_flight_ || stopping_ || tunables_.applied_retention.count() == 0 || Clock::now() < next_prune_) return;
  next_prune_ = Clock::now() + kPruneInterval;
  try {
    uint64_t pruned = 0;
    for (int round = 0; round < kPruneBatchesPerTick; ++round) {
      pqxx::work tx(*db_);
      tx.exec(kLoopStatementLimits);
      pqxx::result removed = tx.exec_params(
          "DELETE FROM outbox_applied_events WHERE event_id IN (SELECT event_id FROM outbox_applied_events "
          "WHERE applied_at < clock_timestamp() - $1 * interval '1 millisecond' ORDER BY applied_at LIMIT $2)",
          static_cast<long long>(tunables_.applied_retention.count()), kPruneBatch);
      tx.commit();
      pruned += static_cast<uint64_t>(removed.affected_rows());
      if (removed.affected_rows() < kPruneBatch) break;
      if (round + 1 == kPruneBatchesPerTick) next_prune_ = Clock::now();  // more to do: go on at the next tick
    }
    counter("outbox_replicate_pruned_total").add(pruned);
    if (pruned) log_->debug("pruned {} applied event id(s) older than {}", pruned, format_duration(tunables_.applied_retention));
    if (!prune_problem_.empty()) log_->info("pruning outbox_applied_events works again");
    prune_problem_.clear();
  } catch (const std::exception& error) {
    if (pg::is_connection_error(error)) return database_lost(error.what());
    std::string reason = one_line(error.what());
    if (reason != prune_problem_) log_->warn("cannot prune outbox_applied_events, will retry: {}", reason);
    prune_problem_ = reason;
  }
}

void Replicator::start() {
  std::string keys;
  for (const std::string& key : queue_.binding_keys) keys += (keys.empty() ? "" : ",") + key;
  log_->info("starting: {} {}, queue {} ({}, bound with {}), broker {}, {} {}(s)", role_, mask_url(url_), consume_queue_,
             queue_.quorum ? "quorum" : "classic", keys, mask_url(broker_settings_.urls.front()), mappings_.size(),
             consumer_ ? "handler" : "mapping");
  // The gauges exist from the start (a scrape before the first tick sees them, at 0).
  update_gauges();
  tick_timer_->start(kTick, kTick);
  lifecycle_->connect();
}

void Replicator::schedule_batch(bool socket_drained) {
  unpack_waiting();
  if (pending_.empty()) return;
  // Latency (a saga's hop): when the worker is idle and the socket has nothing more, waiting for
  // batch_wait adds nothing to the batch. Under load the worker is busy, and batches still form
  // behind it, and after it while lingering (group commit).
  bool lingering = Clock::now() < linger_until_;
  if (socket_drained && !in_flight_ && broker_ && !broker_->has_buffered_data() && !lingering) batch_due_ = true;
  if (pending_.size() >= tunables_.batch_size || batch_due_ || stopping_) {
    apply_soon_->request();
  } else if (!batch_timer_->active()) {
    batch_timer_->start(tunables_.batch_wait);
  }
}

// The next batch may wait for more (replicate/group_commit.hpp); the timer takes it then.
void Replicator::linger_after(Clock::duration took) {
  Clock::duration wait = group_commit_wait(took, tunables_.batch_wait, !pending_.empty() && !stopping_);
  linger_until_ = Clock::now() + wait;
  if (wait <= Clock::duration::zero()) return;
  batch_timer_->stop();
  batch_timer_->start(std::chrono::ceil<milliseconds>(wait));
}

void Replicator::run_between_batches(std::chrono::milliseconds every, std::function<void(pqxx::connection&)> job) {
  chore_ = std::move(job);
  chore_timer_ = std::make_unique<loop::Timer>(loop_, [this] {
    chore_due_ = true;
    apply_pending();
  });
  auto interval = std::max(every, milliseconds(1));
  chore_timer_->start(interval, interval);
}

// The between-batches job takes the worker and the connection like a batch (in_flight_), so the
// loop thread's lag gauge and pruning keep off the connection meanwhile.
bool Replicator::start_chore() {
  if (!chore_due_ || !chore_ || in_flight_ || !db_ || stopping_ || lifecycle_->retry_scheduled()) return false;
  chore_due_ = false;
  auto chore = std::make_unique<InFlight>();
  chore->chore = true;
  chore->started = Clock::now();
  in_flight_ = std::move(chore);
  watch_broker();
  InFlight* work = in_flight_.get();
  pqxx::connection* connection = db_.get();
  worker_->run(
      [this, work, connection] {
        try {
          chore_(*connection);
        } catch (...) {
          work->error = std::current_exception();
        }
      },
      [this] { on_applied(); });
  return true;
}

void Replicator::apply_pending() {
  if (start_chore()) return;
  unpack_waiting();
  if (in_flight_ || !db_ || !broker_ || pending_.empty() || lifecycle_->retry_scheduled()) return;
  if (pending_.size() < tunables_.batch_size && !batch_due_ && !stopping_) return;
  size_t count = std::min(tunables_.batch_size, pending_.size());
  // A pack is applied whole: the one ack of its delivery covers every event in it.
  while (count < pending_.size() && !pending_[count - 1]->ends_delivery) ++count;
  auto batch = std::make_unique<InFlight>();
  batch->received.reserve(count);
  batch->items.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    batch->items.push_back(&pending_.front()->item);
    batch->received.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
  batch->broker_generation = broker_generation_;
  batch->started = Clock::now();
  batch_due_ = false;
  batch_timer_->stop();
  applier_->set_max_attempts(tunables_.max_attempts);
  applier_->set_max_clock_skew(tunables_.max_clock_skew);
  applier_->set_record_event_ids(tunables_.record_event_ids);
  in_flight_ = std::move(batch);
  watch_broker();
  InFlight* work = in_flight_.get();
  Applier* applier = applier_.get();
  worker_->run(
      [work, applier] {
        try {
          work->counts = applier->apply(work->items);
        } catch (...) {
          work->error = std::current_exception();
        }
      },
      [this] { on_applied(); });
  unpack_waiting();  // the next batch, while the worker applies this one
}

void Replicator::on_chore_done(const InFlight& chore) {
  if (chore.error) {
    try {
      std::rethrow_exception(chore.error);
    } catch (const std::exception& error) {
      if (classify(error) == Failure::connection) return database_lost(error.what());
      log_->warn("{}: the work between batches failed: {}", role_, one_line(error.what()));
    }
  }
  if (stopping_) {
    if (!pending_.empty()) apply_soon_->request();  // what was received when the stop began
    return finish_if_drained();
  }
  if (broker_)
    on_broker_readable();
  else
    schedule_batch();
}

void Replicator::on_applied() {
  std::unique_ptr<InFlight> batch = std::move(in_flight_);
  Clock::duration took = Clock::now() - batch->started;
  watch_broker();
  update_gauges();
  if (giving_back_) {
    // Nothing is acked (the channel is gone): the next holder gets these messages again as duplicates.
    if (!batch->chore && !batch->error) record(batch->counts, Clock::now() - batch->started);
    return finish_give_back();
  }
  if (batch->chore) return on_chore_done(*batch);
  bool same_channel = broker_ && batch->broker_generation == broker_generation_;
  if (batch->error) {
    // Not applied: the messages are still unacked on their channel, so they go back to the front
    // of the queue in order; on another channel the broker redelivers them itself.
    if (same_channel)
      pending_.insert(pending_.begin(), std::make_move_iterator(batch->received.begin()),
                      std::make_move_iterator(batch->received.end()));
    batch_due_ = true;  // it was due already: it is retried whole, not refilled first
    try {
      std::rethrow_exception(batch->error);
    } catch (const std::exception& error) {
      Failure kind = classify(error);
      if (kind == Failure::connection) return database_lost(error.what());
      std::string reason = one_line(error.what());
      if (reason != apply_problem_)
        log_->error("{} cannot apply a batch of {} event(s), retrying with backoff ({}): {}", role_, batch->received.size(),
                    kind == Failure::transient ? "transient" : "replica problem", reason);
      apply_problem_ = reason;
      lifecycle_->retry_after("apply retry");
    }
    if (stopping_) finish_if_drained();
    return;
  }
  failpoint("replicate.after_commit");
  if (!apply_problem_.empty()) {
    log_->info("{} applies events again", role_);
    apply_problem_.clear();
    backoff_.reset();
  }
  record(batch->counts, took);
  // Committed. If the channel died meanwhile, the broker redelivers these messages and they are
  // no-ops (the version guard).
  if (same_channel) {
    try {
      failpoint("replicate.before_ack");
      broker_->ack(batch->received.back()->message.delivery_tag, true);
    } catch (const Error& error) {
      return broker_lost(error.what());
    }
  }
  if (stopping_) {
    if (!pending_.empty()) apply_soon_->request();
    return finish_if_drained();
  }
  // A whole batch that was read while this one was applied (packs, see watch_broker) goes to the
  // worker first: reading the socket now would keep the replica waiting for that work.
  if (pending_.size() >= tunables_.batch_size) apply_pending();
  // What arrived meanwhile (unwatched: watch_broker), before linger_after asks whether anything did.
  if (broker_ && !read_broker()) return;
  if (!in_flight_) linger_after(took);
  schedule_batch(broker_ != nullptr);
  watch_broker();
}

void Replicator::begin_shutdown() {
  if (stopping_) return;
  // Take in what the broker has already sent, so the in-flight events are applied, not redelivered.
  on_broker_readable();
  stopping_ = true;
  unpack_waiting();
  log_->info("draining: {} received event(s) to apply", pending_.size());
  if (!pending_.empty()) apply_soon_->request();
  finish_if_drained();
}

void Replicator::finish_if_drained() {
  if (!stopping_ || drained_) return;
  if (in_flight_) return;  // on_applied comes back here
  if ((!pending_.empty() || !packed_.empty()) && broker_) return;
  drained_ = true;
  lifecycle_->stop_retrying();
  tick_timer_->stop();
  batch_timer_->stop();
  if (chore_timer_) chore_timer_->stop();
  if (callbacks_.on_drained) callbacks_.on_drained();
}

// Stuck is a batch that has been applying for minutes (a replica connection that hangs); an outage,
// which the daemon rides out by reconnecting with backoff, is not.
bool Replicator::healthy() const { return !in_flight_ || Clock::now() - in_flight_->started < kStuckAfter; }

std::string Replicator::status_line() const {
  std::string state = ready()                ? (consumer_ ? "consuming" : "replicating")
                      : waiting_for_migrate_ ? "waiting for 'outbox migrate' (schema older than this outbox needs)"
                      : standing_by_
                          ? (consumer_ ? "standing by (another consume serves it)" : "standing by (another replicate serves it)")
                      : !db_ ? "waiting for the replica"
                             : "waiting for the broker";
  auto& self = const_cast<Replicator&>(*this);
  size_t received = pending_.size() + (in_flight_ ? in_flight_->received.size() : 0);
  return replica_ + ": " + state + ", " + std::to_string(received) + " received" +
         (packed_.empty() ? "" : " (and " + std::to_string(packed_.size()) + " pack(s) not yet unpacked)") + ", " +
         std::to_string(self.counter("outbox_replicate_applied_total").value()) + " applied, " +
         std::to_string(self.counter("outbox_replicate_parked_total").value()) + " parked";
}

}  // namespace outbox::replicate
