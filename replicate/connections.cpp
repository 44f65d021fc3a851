// The Replicator's two connections (see replicate/replicator.hpp): the replica, held by one daemon
// at a time (its serve lock), with the Applier on it; and the broker, consuming the replica's queue.
// Both go through the ConnectionLifecycle shared with the relay.
#include "core/escape.hpp"
#include "core/pg.hpp"
#include "core/url.hpp"
#include "migrate/pack.hpp"
#include "migrate/runner.hpp"
#include "replicate/replicator.hpp"

namespace outbox::replicate {

std::unique_ptr<ConnectionLifecycle> Replicator::make_lifecycle() {
  ConnectionLifecycle::Side replica{
      .name = role_,
      .open = [this] { open_replica(); },
      .close =
          [this] {
            applier_.reset();
            helper_dbs_.clear();
            db_.reset();
            if (share_) share_->released(partition_);
          },
      .is_open = [this] { return db_ != nullptr; },
      .connected_detail =
          [this](bool again) {
            return again ? "; " + std::to_string(pending_.size()) + " received event(s) will be applied"
                         : " (" + mask_url(url_) + ")";
          },
      .failure_reason =
          [](const std::exception& error) {
            return dynamic_cast<const Error*>(&error) ? std::string(error.what()) : one_line(error.what());
          },
      .not_now = [this] { stand_by(); },
  };
  ConnectionLifecycle::Side broker{
      .name = "broker",
      .open = [this] { open_broker(); },
      .close = [this] { drop_broker(); },
      .is_open = [this] { return broker_ != nullptr; },
      .connected_detail =
          [this](bool again) {
            return " (" + broker_->node() + "); consuming " + consume_queue_ +
                   (again ? std::string() : " with prefetch " + std::to_string(prefetch_));
          },
      .needed = [this] { return !stopping_ && !giving_back_; },
      // Deliveries that arrived with the consume-ok sit in rabbitmq-c's buffer, unseen by the socket poll.
      .opened =
          [this] {
            if (broker_->has_buffered_data()) on_broker_readable();
          },
  };
  ConnectionLifecycle::Hooks hooks{
      .ready = [this] { on_connected(); },
      .halted = [this] { return drained_; },
      .fatal =
          [this](const Error& error) {
            if (callbacks_.on_fatal) callbacks_.on_fatal(error);
          },
      // A batch that keeps failing while connected is no progress.
      .stable_resets_backoff = [this] { return apply_problem_.empty(); },
  };
  return std::make_unique<ConnectionLifecycle>(runtime_, log_, backoff_, counter("outbox_replicate_reconnects_total"),
                                               std::vector{std::move(replica), std::move(broker)}, std::move(hooks));
}

// Connecting is no progress: an applied batch is, or a connection that stays up (see
// ConnectionLifecycle). Else a broker or replica that drops the connection at once would be
// reconnected to in a tight loop.
void Replicator::on_connected() {
  announce_ready();
  if (!pending_.empty()) apply_soon_->request();
  finish_if_drained();
}

void Replicator::announce_ready() {
  if (ever_ready_) return;
  ever_ready_ = true;
  if (callbacks_.on_ready) callbacks_.on_ready();
}

void Replicator::open_replica() {
  // Asked before connecting: a partition left to another process retries every max_backoff, and
  // a connection each time would cost the replica a backend start for nothing.
  if (share_ && !share_->may_take())
    throw NotNow(role_ + ": this process " + share_->describe() + ", its fair share; standing by");
  auto connection = pg::connect(url_, role_, program_);
  try {
    migrate::require_current(*connection, consumer_ ? migrate::Target::service : migrate::Target::replica, role_);
    waiting_for_migrate_ = false;
  } catch (const migrate::SchemaBehind& behind) {
    // After an upgrade the daemon may start before `outbox migrate` ran (or a restart after it does
    // not come): it waits, not ready, and goes on by itself once the schema is there.
    waiting_for_migrate_ = true;
    throw WaitingForOperator(std::string(behind.what()) + "; waiting for it (not ready until then)");
  }
  take_serve_lock(*connection);
  if (share_) share_->taken(partition_);
  std::vector<std::unique_ptr<pqxx::connection>> helpers;
  std::vector<pqxx::connection*> helper_pointers;
  for (int i = 1; i < apply_connections_; ++i) {
    helpers.push_back(pg::connect(url_, role_, program_));
    helper_pointers.push_back(helpers.back().get());
  }
  auto applier = std::make_unique<Applier>(*connection, replica_, role_, mappings_, log_);
  applier->use_helpers(std::move(helper_pointers));
  applier->prepare();
  applier->set_max_attempts(tunables_.max_attempts);
  db_ = std::move(connection);
  helper_dbs_ = std::move(helpers);
  applier_ = std::move(applier);
  standing_by_ = false;
}

// One daemon per replica, held for the session: two consumers of its queue would apply an
// aggregate's events in concurrent transactions, and the older row write could land last. The
// other one's session ends when it dies; this one, retrying, then takes over.
void Replicator::take_serve_lock(pqxx::connection& connection) {
  pqxx::nontransaction tx(connection);
  if (tx.exec_params1("SELECT pg_try_advisory_lock($1, hashtext($2))", kServeLockClass, serve_lock_key())[0].as<bool>()) return;
  pqxx::result holder = tx.exec_params(
      "SELECT a.pid::text || coalesce(' from ' || host(a.client_addr), '') || coalesce(' (' || "
      "nullif(a.application_name, '') || ')', '') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
      "WHERE l.locktype = 'advisory' AND l.classid = $1::oid AND l.objid = hashtext($2)::oid AND l.granted LIMIT 1",
      static_cast<long long>(static_cast<unsigned>(kServeLockClass)), serve_lock_key());
  const std::string other = consumer_ ? ": another outbox consume serves this " : ": another outbox replicate serves this ";
  throw NotNow(role_ + other +
               (partition_ >= 0 ? "partition"
                : consumer_     ? "consumer"
                                : "replica") +
               (holder.empty() ? std::string() : " (backend " + holder[0][0].as<std::string>() + ")") +
               "; standing by until it stops");
}

// A consumer's key differs from a replica's of the same name: a service database may be a
// replica's too (hashtext of the name alone would make one stand by for the other).
// A partition's key names it: each partition has its own holder.
std::string Replicator::serve_lock_key() const {
  std::string key = consumer_ ? "consumer " + replica_ : replica_;
  return partition_ < 0 ? key : key + " partition " + std::to_string(partition_);
}

void Replicator::stand_by() {
  // A standby must not hold deliveries: they go back to the broker, which gives them to the
  // daemon that holds the lock (after losing its session, this one may still consume).
  if (broker_) {
    drop_broker();
    drop_received();
    batch_due_ = false;
    batch_timer_->stop();
  }
  standing_by_ = true;
  // Standing by is this instance's working state: systemd should not time its start out.
  announce_ready();
}

void Replicator::give_back_partition() {
  log_->info("giving this partition back: this process {}, more than its fair share", share_->describe());
  giving_back_ = true;
  // Unacked deliveries go back to the queue at once; the next holder subscribes only once it holds
  // the serve lock, which ends after the batch in flight committed (finish_give_back).
  drop_broker();
  drop_received();
  batch_due_ = false;
  batch_timer_->stop();
  if (!in_flight_) finish_give_back();
}

void Replicator::finish_give_back() {
  applier_.reset();
  helper_dbs_.clear();
  db_.reset();  // ends the serve lock
  share_->released(partition_);
  giving_back_ = false;
  standing_by_ = true;
  log_->info("given back; standing by");
  if (stopping_) return finish_if_drained();
  lifecycle_->retry();
}

void Replicator::drop_broker() {
  broker_poll_.reset();
  broker_.reset();
}

void Replicator::open_broker() {
  auto connection = amqp::Connection::open(broker_settings_, next_broker_node_, program_ + " " + replica_, 1);
  topology::declare_exchange(*connection, broker_settings_.exchange, broker_settings_.quorum_queues);
  topology::declare_replica(*connection, broker_settings_.exchange, queue_, broker_settings_.quorum_queues);
  connection->set_prefetch(static_cast<uint16_t>(prefetch_));
  connection->consume(consume_queue_, program_ + "-" + replica_ + (partition_ < 0 ? "" : "-p" + std::to_string(partition_)));
  broker_ = std::move(connection);
  ++broker_generation_;
  broker_poll_ = std::make_unique<loop::Poll>(loop_, broker_->fd(), [this] { on_broker_readable(); });
}

void Replicator::on_broker_readable() {
  if (!read_broker()) return;
  schedule_batch(true);
  watch_broker();
}

bool Replicator::read_broker() {
  if (!broker_) return false;
  try {
    broker_->poll([this](amqp::Event& event) {
      if (event.kind != amqp::Event::Kind::delivery || !event.message) return;
      // While shutting down, new deliveries stay unacked: the broker gives them to the next run.
      if (stopping_) return;
      receive(std::move(*event.message));
    });
  } catch (const Error& error) {
    broker_lost(error.what());
    return false;
  }
  return true;
}

// While a batch is applied, or the next one lingers for more (group commit), a read is due when
// that ends (on_applied, the batch timer). Waking for each message meanwhile costs the loop a
// wakeup, a recv and an empty poll per message, 16,000 times a second under a stream, and takes
// that CPU from the broker on a small machine. What arrives meanwhile waits in the socket (the
// broker stops at the prefetch); the tick still reads every second (heartbeats).
// Packs are the exception: a wakeup brings up to relay.pack events, and unpacking them (zstd,
// JSON) costs more than applying them costs the daemon. So while a batch is applied, the next one
// is read and checked, until it is whole; else the replica would wait for that work after every
// commit, and the two would run one after the other instead of side by side.
void Replicator::watch_broker() {
  if (!broker_poll_) return;
  bool reading_next_batch = queue_.pack > 1 && in_flight_ && pending_.size() < tunables_.batch_size;
  broker_poll_->watch(reading_next_batch || (!in_flight_ && std::chrono::steady_clock::now() >= linger_until_));
}

void Replicator::database_lost(const std::string& reason) {
  lifecycle_->lost(kReplica, one_line(reason),
                   "; " + std::to_string(pending_.size()) + " received event(s) are kept unacked until it is back");
  lifecycle_->retry();
}

void Replicator::broker_lost(const std::string& reason) {
  size_t unacked = pending_.size() + (in_flight_ ? in_flight_->received.size() : 0);
  lifecycle_->lost(kBroker, reason,
                   "; " + std::to_string(unacked) + " unacked event(s)" +
                       (packed_.empty() ? "" : " and " + std::to_string(packed_.size()) + " unacked pack(s)") +
                       " will be redelivered");
  // Delivery tags belong to the channel that just died; the broker redelivers these messages.
  drop_received();
  batch_due_ = false;
  batch_timer_->stop();
  if (stopping_) return finish_if_drained();
  lifecycle_->retry();
}

void Replicator::cancel_in_flight() {
  if (!in_flight_) return;
  if (applier_) applier_->cancel();  // also stops it between statements
  // PQcancel is meant to be sent from another thread than the one waiting for the result.
  auto cancel = [](pqxx::connection* connection) {
    try {
      if (connection) connection->cancel_query();
    } catch (const std::exception&) {
      // The connection is gone: the statement is too.
    }
  };
  cancel(db_.get());
  for (auto& helper : helper_dbs_) cancel(helper.get());
}

void Replicator::receive(amqp::IncomingMessage message) {
  if (!packed_.empty() || (pending_.size() >= tunables_.batch_size && !stopping_ && pack::is_pack(message))) {
    packed_.push_back(std::move(message));
    return;
  }
  check_in(std::move(message));
}

void Replicator::check_in(amqp::IncomingMessage message) {
  if (!pack::is_pack(message)) return receive_one(std::move(message), "", true);
  std::vector<pack::Unpacked> events = pack::unpack(message);
  for (size_t i = 0; i < events.size(); ++i) receive_one(std::move(events[i].message), events[i].problem, i + 1 == events.size());
}

void Replicator::unpack_waiting() {
  while (!packed_.empty() && (pending_.size() < tunables_.batch_size || stopping_)) {
    amqp::IncomingMessage message = std::move(packed_.front());
    packed_.pop_front();
    check_in(std::move(message));
  }
}

void Replicator::drop_received() {
  pending_.clear();
  packed_.clear();
}

void Replicator::receive_one(amqp::IncomingMessage message, const std::string& problem, bool ends_delivery) {
  auto received = std::make_unique<Received>();
  received->message = std::move(message);
  received->ends_delivery = ends_delivery;
  Checked checked = check_message(received->message, mappings_);
  if (!problem.empty() && !checked.skip) {
    // A broken element of a pack is poison alone, named by its aggregate when it names one, so
    // that its aggregate's later events wait behind it while the rest of the pack applies.
    if (checked.event) {
      if (checked.event->heartbeat) checked.skip = true;
      checked.aggregate_type = checked.event->aggregate_type;
      checked.aggregate_id = checked.event->aggregate_id;
      checked.version = checked.event->version;
      checked.event.reset();
    }
    checked.error = checked.error.empty() ? problem : problem + "; " + checked.error;
  }
  received->item = Item{&received->message, std::move(checked)};
  if (received->item.checked.event && received->item.checked.event->unhandled) note_unhandled(*received->item.checked.event);
  pending_.push_back(std::move(received));
}

void Replicator::note_unhandled(const Event& event) {
  // Bounded: forged messages may name any number of types.
  constexpr size_t kMostTypesRemembered = 1000;
  if (unhandled_types_logged_.size() >= kMostTypesRemembered || !unhandled_types_logged_.insert(event.event_type).second) return;
  log_->info("events of type \"{}\" have no handler: recorded in the inbox and acked (counted in outbox_consume_unhandled_total)",
             escape_controls(event.event_type));
}

}  // namespace outbox::replicate
