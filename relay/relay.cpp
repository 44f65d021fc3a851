#include "relay/relay.hpp"

#include <unistd.h>

#include <algorithm>

#include "core/error.hpp"
#include "core/failpoint.hpp"
#include "relay/backlog.hpp"
#include "core/log.hpp"
#include "relay/parked_rows.hpp"
#include "core/pg.hpp"
#include "migrate/topology.hpp"
#include "core/url.hpp"
#include "relay/outbox_row.hpp"
#include "relay/partitions.hpp"

namespace outbox::relay {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kRetentionBatch = 1000;
constexpr int kRetentionBatchesPerTick = 20;
constexpr int kRetentionWindow = 4 * kRetentionBatch;
// A connection that lived this long was a success: the next outage starts the backoff afresh. One
// that dies sooner (a broker that closes it at once) keeps growing the delay.
constexpr std::chrono::seconds kStableConnection{10};
// RabbitMQ's reply code when it refuses a published message itself (over max_message_size).
constexpr int kPreconditionFailed = 406;

// A value for a log line: at most 80 bytes of it, and its size when cut (an aggregate id can be
// 300 KB).
std::string excerpt(const std::string& value) {
  if (value.size() <= 80) return value;
  return value.substr(0, 80) + "...(" + std::to_string(value.size()) + " bytes)";
}

std::string join_positions(const std::set<long long>& positions) {
  std::string out = "{";
  for (long long position : positions) {
    if (out.size() > 1) out += ',';
    out += std::to_string(position);
  }
  return out + "}";
}

std::string join_positions(const std::vector<long long>& positions) {
  return join_positions(std::set<long long>(positions.begin(), positions.end()));
}

std::string join_ints(const std::set<int>& values) {
  std::string out = "{";
  for (int value : values) {
    if (out.size() > 1) out += ',';
    out += std::to_string(value);
  }
  return out + "}";
}

std::string interval(milliseconds duration) { return std::to_string(duration.count()) + " milliseconds"; }

std::string default_instance() {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(getpid());
}

}  // namespace

// Wakes the relay when the outbox trigger sends NOTIFY.
class Relay::Listener : public pqxx::notification_receiver {
 public:
  Listener(pqxx::connection_base& connection, const std::string& channel, loop::Deferred& wake)
      : pqxx::notification_receiver(connection, channel), wake_(wake) {}
  void operator()(const std::string&, int) override { wake_.request(); }

 private:
  loop::Deferred& wake_;
};

Relay::Relay(daemon::Runtime& runtime, Settings settings)
    : runtime_(runtime),
      instance_(settings.instance.empty() ? default_instance() : std::move(settings.instance)),
      log_(log::get("relay " + instance_)),
      backoff_(milliseconds(30000)) {
  amqp::require_broker(settings.broker);
  broker_settings_ = std::move(settings.broker);
  primary_url_ = std::move(settings.primary_url);
  notify_channel_ = std::move(settings.notify_channel);
  partitions_ = settings.partitions;
  tables_ = std::move(settings.tables);
  in_flight_positions_.resize(tables_.size());
  suspects_.resize(tables_.size());
  apply_tunables(settings.tunables);

  metrics_.counter("outbox_relay_published_total", "Messages published to the broker");
  metrics_.counter("outbox_relay_confirmed_total", "Messages confirmed by the broker and marked in the outbox");
  metrics_.counter("outbox_relay_nacked_total", "Messages the broker refused (nack); they are published again");
  metrics_.counter("outbox_relay_returned_total", "Messages returned as unroutable by the broker");
  metrics_.counter("outbox_relay_reconnects_total", "Reconnections to the database or the broker");
  metrics_.counter("outbox_relay_parked_total", "Rows parked because the broker can never take them");
  metrics_.histogram("outbox_relay_batch_seconds", "Time from publishing a batch to marking it confirmed",
                     {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});

  drain_soon_ = std::make_unique<loop::Deferred>(runtime_.loop(), [this] { drain(); });
  poll_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] { drain_soon_->request(); });
  reconnect_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] { connect(); });
  confirm_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] { check_confirm_timeout(); });
  rebalance_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] { rebalance(); });
  retention_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] { run_retention(); });
  heartbeat_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] { write_heartbeat(); });
  shutdown_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] {
    log_->warn("shutdown timeout ({}s) reached with {} messages unconfirmed; they will be published again by the next run",
               shutdown_timeout_.count() / 1000.0, unconfirmed_);
    runtime_.stop(0);
  });

  daemon::Hooks hooks;
  hooks.on_shutdown_request = [this] { shutdown_requested(); };
  hooks.prepare_reload = [this](const config::Config& fresh) -> std::function<void()> {
    // The whole of the relay's settings is built: a reload refuses what a start would refuse.
    return [this, tunables = settings_from_config(fresh).tunables] {
      milliseconds heartbeat_before = heartbeat_interval_;
      apply_tunables(tunables);
      poll_timer_->start(poll_interval_, poll_interval_);
      // A running heartbeat keeps its period until restarted; a stopped one is started by rebalance().
      if (heartbeat_interval_ != heartbeat_before && heartbeat_timer_->active()) {
        if (heartbeat_interval_.count() > 0)
          heartbeat_timer_->start(heartbeat_interval_, heartbeat_interval_);
        else
          heartbeat_timer_->stop();
      }
      log_->info("reloaded: batch_size={} poll_interval={}ms confirm_timeout={}ms on_publish={}", batch_size_,
                 poll_interval_.count(), confirm_timeout_.count(), delete_on_publish_ ? "delete" : "mark");
    };
  };
  hooks.status_line = [this] { return status_line(); };
  hooks.connected = [this] { return ready(); };
  hooks.healthy = [this] {
    // Stuck means: work is in flight but nothing has been confirmed for two confirm timeouts. A
    // confirmed batch that waits for its mark waits for a lock held elsewhere (retried each tick),
    // like an outage: a restart would only wait again.
    return in_flight_.empty() || Clock::now() - last_progress_ < 2 * confirm_timeout_ ||
           in_flight_.front().last_tag <= confirmed_through_;
  };
  runtime_.set_hooks(std::move(hooks));
}

Relay::~Relay() {
  db_poll_.reset();
  listener_.reset();
  db_.reset();
  broker_poll_.reset();
  broker_.reset();
}

void Relay::apply_tunables(const Tunables& tunables) {
  batch_size_ = tunables.batch_size;
  max_unconfirmed_ = tunables.max_unconfirmed;
  poll_interval_ = tunables.poll_interval;
  confirm_timeout_ = tunables.confirm_timeout;
  takeover_timeout_ = tunables.takeover_timeout;
  retention_ = tunables.retention;
  shutdown_timeout_ = tunables.shutdown_timeout;
  heartbeat_interval_ = tunables.heartbeat_interval;
  max_message_size_ = tunables.max_message_size;
  max_attempts_ = tunables.max_attempts;
  delete_on_publish_ = tunables.delete_on_publish;
  backoff_.set_cap(tunables.max_backoff);
}

void Relay::start() {
  log_->info("starting: {} table(s), {} partitions, primary {}, broker {}", tables_.size(), partitions_, mask_url(primary_url_),
             mask_url(broker_settings_.urls.front()));
  poll_timer_->start(poll_interval_, poll_interval_);
  retention_timer_->start(milliseconds(1000), milliseconds(10000));
  connect();
}

void Relay::connect() {
  if (runtime_.stopping()) {
    maybe_finish_shutdown();
    return;
  }
  if (!db_) connect_database();
  if (db_ && !broker_) connect_broker();
  if (!ready()) {
    schedule_reconnect();
    return;
  }
  // Connecting is no progress: a confirm is (on_confirm), or a connection that stays up
  // (schedule_reconnect). Else a broker that drops the connection at once, or refuses a message
  // each time (a full queue), would be reconnected to in a tight loop.
  connected_at_ = Clock::now();
  if (!announced_ready_) {
    announced_ready_ = true;
    daemon::notify_ready();
  }
  rebalance();
  drain_soon_->request();
}

void Relay::schedule_reconnect() {
  if (reconnect_timer_->active()) return;
  if (connected_at_ && Clock::now() - *connected_at_ > kStableConnection) backoff_.reset();
  connected_at_.reset();
  auto delay = backoff_.next();
  // The error itself is logged once per change; each attempt only at debug.
  log_->debug("reconnect attempt {} in {} ms", backoff_.attempts(), delay.count());
  reconnect_timer_->start(delay);
}

void Relay::connect_database() {
  try {
    daemon::Runtime::BlockingCall blocking(runtime_);
    auto connection = pg::connect(primary_url_, "primary", "outbox-relay");
    for (size_t i = 0; i < tables_.size(); ++i) {
      const std::string& table = tables_[i].quoted;
      // Rows of an aggregate with a parked row wait behind it (outbox_parked is normally empty).
      std::string columns = std::string("SELECT ") + kRowColumns + " FROM " + table +
                            " o WHERE published_at IS NULL AND NOT (position = ANY($2::bigint[])) AND " +
                            parked_rows::not_held("$1");
      connection->prepare("read_all_" + std::to_string(i), columns + " ORDER BY position LIMIT $3");
      connection->prepare(
          "read_owned_" + std::to_string(i),
          columns + " AND (hashtext(aggregate_id) & 2147483647) % $4 = ANY($5::int[]) ORDER BY position LIMIT $3");
      connection->prepare(
          "mark_" + std::to_string(i),
          "UPDATE " + table +
              " SET published_at = clock_timestamp() WHERE position = ANY($1::bigint[]) AND published_at IS NULL");
      connection->prepare("delete_" + std::to_string(i), "DELETE FROM " + table + " WHERE position = ANY($1::bigint[])");
      // Records a row the broker cannot take; it is parked when its attempts reach $3.
      connection->prepare("park_" + std::to_string(i),
                          "INSERT INTO outbox_parked AS p (outbox_table, position, event_id, event_type, aggregate_type, "
                          "aggregate_id, error, parked_at) SELECT $1, position, event_id::text, event_type, aggregate_type, "
                          "aggregate_id, $3, CASE WHEN 1 >= $4 THEN clock_timestamp() END FROM " +
                              table +
                              " WHERE position = $2 ON CONFLICT (outbox_table, position) DO UPDATE SET attempts = "
                              "p.attempts + 1, error = EXCLUDED.error, last_failed_at = clock_timestamp(), parked_at = "
                              "coalesce(p.parked_at, CASE WHEN p.attempts + 1 >= $4 THEN clock_timestamp() END) "
                              "RETURNING parked_at IS NOT NULL, attempts, coalesce(event_id, ''), coalesce(event_type, ''), "
                              "coalesce(aggregate_type, ''), coalesce(aggregate_id, '')");
      // Only positions within $3 of the oldest are looked at (a range of the primary key): a walk
      // that went on until $2 old rows were found would read the whole retention window, a day of
      // rows, at every tick once retention keeps up.
      connection->prepare("retention_" + std::to_string(i),
                          "DELETE FROM " + table + " WHERE position IN (SELECT position FROM " + table +
                              " WHERE position < (SELECT min(position) FROM " + table +
                              " WHERE published_at IS NOT NULL) + $3 AND published_at < clock_timestamp() - $1::interval "
                              "ORDER BY position LIMIT $2 FOR UPDATE SKIP LOCKED)");
      connection->prepare("heartbeat_" + std::to_string(i),
                          "INSERT INTO " + table +
                              " (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
                              "VALUES (gen_random_uuid(), 'outbox.heartbeat', 'heartbeat', "
                              "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint, 'outbox.heartbeat', "
                              "json_build_object('relay', $1::text, 'at', clock_timestamp()))");
      // Fails early, with the table's name, when the table is missing or lacks outbox columns.
      pqxx::nontransaction check(*connection);
      check.exec_prepared("read_all_" + std::to_string(i), tables_[i].name, "{}", 0);
    }
    {
      pqxx::nontransaction tx(*connection);
      // A mark lost in a crash only means the row is published again (at least once, same
      // message_id), so marks need not wait for the WAL flush; this halves the drain time.
      tx.exec("SET synchronous_commit = off");
      // Every statement runs on the event loop: a table lock held elsewhere (a migration, a manual
      // LOCK) must not freeze signals, confirms and the watchdog. A statement that gives up is
      // retried at the next poll.
      tx.exec("SET lock_timeout = '1s'");
      heartbeat_partition_ = tx.exec_params1("SELECT (hashtext('heartbeat') & 2147483647) % $1", partitions_)[0].as<int>();
    }
    if (!notify_channel_.empty()) listener_ = std::make_unique<Listener>(*connection, notify_channel_, *drain_soon_);
    db_ = std::move(connection);
    db_poll_ = std::make_unique<loop::Poll>(runtime_.loop(), db_->sock(), [this] {
      try {
        db_->get_notifs();
      } catch (const std::exception& error) {
        database_lost(error.what());
      }
    });
    if (!database_problem_.empty()) {
      metrics_.counter("outbox_relay_reconnects_total", "").add();
      log_->info("primary connected again ({})", mask_url(primary_url_));
    } else {
      log_->info("primary connected ({})", mask_url(primary_url_));
    }
    database_problem_.clear();
  } catch (const std::exception& error) {
    std::string reason = error.what();
    if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&error); sql && sql->sqlstate() == "42P01")
      reason = "outbox table missing (run 'outbox migrate'): " + reason;
    if (reason != database_problem_) log_->error("primary unavailable, retrying with backoff: {}", mask_url(reason));
    database_problem_ = reason;
    listener_.reset();
    db_.reset();
  }
}

void Relay::connect_broker() {
  try {
    daemon::Runtime::BlockingCall blocking(runtime_);
    auto connection = amqp::Connection::open(broker_settings_, next_broker_node_, "outbox-relay " + instance_, 1);
    // Unroutable messages go to the alternate exchange and its durable queue instead of being dropped.
    std::set<std::string> exchanges;
    for (const TableSpec& table : tables_) exchanges.insert(table.exchange);
    for (const std::string& exchange : exchanges) topology::declare_exchange(*connection, exchange);
    connection->enable_confirms();
    broker_ = std::move(connection);
    broker_poll_ = std::make_unique<loop::Poll>(runtime_.loop(), broker_->fd(), [this] { on_broker_readable(); });
    confirmed_through_ = 0;
    confirmed_ahead_.clear();
    if (!broker_problem_.empty()) {
      metrics_.counter("outbox_relay_reconnects_total", "").add();
      log_->info("broker connected again ({})", broker_->node());
    } else {
      log_->info("broker connected ({})", broker_->node());
    }
    broker_problem_.clear();
  } catch (const std::exception& error) {
    broker_poll_.reset();
    broker_.reset();
    // A bad URL, unreadable TLS files, an exchange declared otherwise: no retry can fix these.
    if (const auto* mistake = dynamic_cast<const Error*>(&error); mistake && mistake->code() == ExitCode::config)
      return fatal(*mistake);
    std::string reason = error.what();
    if (reason != broker_problem_) log_->error("broker unavailable, retrying with backoff: {}", reason);
    broker_problem_ = reason;
  }
}

void Relay::fatal(const Error& error) {
  if (!fatal_error_.empty()) return;
  fatal_error_ = error.what();  // main prints it as the one line of a configuration error
  runtime_.stop(static_cast<int>(ExitCode::config));
}

void Relay::database_lost(const std::string& reason) {
  std::string masked = mask_url(reason);
  if (database_problem_.empty())
    log_->error("primary connection lost, {} unconfirmed message(s) will be published again: {}", unconfirmed_, masked);
  database_problem_ = masked.empty() ? "connection lost" : masked;
  db_poll_.reset();
  listener_.reset();
  db_.reset();
  // The advisory locks died with the session: another instance may own these partitions now.
  owned_.clear();
  member_slot_ = -1;
  forget_in_flight_and_reconnect();
}

void Relay::forget_in_flight_and_reconnect() {
  // Nothing in flight is marked: those rows stay unpublished and are read and published again.
  in_flight_.clear();
  for (auto& positions : in_flight_positions_) positions.clear();
  unconfirmed_ = 0;
  releasing_ = false;
  confirm_timer_->stop();
  if (runtime_.stopping()) {
    maybe_finish_shutdown();
    return;
  }
  schedule_reconnect();
}

void Relay::broker_lost(const std::string& reason) {
  if (broker_problem_.empty())
    log_->error("broker connection lost, {} unconfirmed message(s) will be published again: {}", unconfirmed_, reason);
  broker_problem_ = reason.empty() ? "connection lost" : reason;
  broker_poll_.reset();
  broker_.reset();
  forget_in_flight_and_reconnect();
}

void Relay::drain() {
  // While handing partitions over, nothing new is read until what is in flight is confirmed.
  if (!ready() || runtime_.stopping() || owned_.empty() || releasing_) return;
  try {
    // Round-robin over the tables until the window of unconfirmed messages is full or all are caught up.
    bool progress = true;
    while (progress && static_cast<int>(unconfirmed_) < max_unconfirmed_) {
      progress = false;
      for (size_t table = 0; table < tables_.size() && static_cast<int>(unconfirmed_) < max_unconfirmed_; ++table)
        if (read_and_publish(table) == static_cast<size_t>(batch_size_)) progress = true;
    }
    side_task_works("reading the outbox");
  } catch (const pqxx::sql_error& error) {
    if (pg::is_connection_error(error)) return database_lost(error.what());
    if (error.sqlstate() == "55P03") {
      // Waited too long for a lock: nothing was read or marked this time; the next poll tries again.
      side_problem("reading the outbox", error.what());
      return;
    }
    log_->error("reading the outbox failed: {}", error.what());
    database_lost(error.what());
    return;
  } catch (const pqxx::broken_connection& error) {
    return database_lost(error.what());
  } catch (const Error& error) {
    // Publishing failed: the connection to the broker is gone.
    return broker_lost(error.what());
  } catch (const pqxx::conversion_error& error) {
    // A NULL position (every other column is checked and parked by message_from_row): a table that
    // breaks the outbox contract beyond parking. Skipping the row would lose it; stopping says so.
    fatal(config_error("relay.tables: a row does not fit the outbox columns (run 'outbox migrate', or fix the table): " +
                       std::string(error.what())));
    return;
  }
  // Confirms may already be waiting in rabbitmq-c's buffer, where the socket poll cannot see them.
  if (broker_ && broker_->has_buffered_data()) on_broker_readable();
}

size_t Relay::read_and_publish(size_t table_index) {
  const TableSpec& table = tables_[table_index];
  // While suspects are isolated, one message at a time is in flight, so a refusal names its row.
  int room = isolating() ? (unconfirmed_ == 0 ? 1 : 0) : std::min(batch_size_, max_unconfirmed_ - static_cast<int>(unconfirmed_));
  if (room <= 0) return 0;
  pqxx::result rows;
  auto read_started = Clock::now();
  {
    pqxx::nontransaction tx(*db_);
    std::string excluded = join_positions(in_flight_positions_[table_index]);
    rows = owns_all() ? tx.exec_prepared("read_all_" + std::to_string(table_index), table.name, excluded, room)
                      : tx.exec_prepared("read_owned_" + std::to_string(table_index), table.name, excluded, room, partitions_,
                                         join_ints(owned_));
  }
  auto read_done = Clock::now();
  if (rows.empty()) return 0;
  // Suspects older than what is read now were published (or taken over) elsewhere: not suspects.
  std::set<long long>& suspects = suspects_[table_index];
  if (!suspects.empty() && *suspects.rbegin() < rows[0][0].as<long long>(0)) suspects.clear();

  Batch batch{table_index, {}, 0, Clock::now()};
  batch.positions.reserve(rows.size());
  std::vector<std::pair<long long, std::string>> unpublishable;  // position, why
  std::set<std::pair<std::string, std::string>> held;            // aggregates with a row to park in this read
  auto& published = metrics_.counter("outbox_relay_published_total", "");
  size_t frame_max = broker_->frame_max();
  for (const pqxx::row& row : rows) {
    // Waits behind a row parked below (held is empty unless this read parks one: no copies then).
    if (!held.empty() && held.count({row[2].c_str(), row[3].c_str()})) continue;
    RowMessage built = message_from_row(row, table, frame_max, max_message_size_);
    long long position = built.position;
    const amqp::OutgoingMessage& message = built.message;
    if (!built.problem.empty()) {
      unpublishable.emplace_back(position, built.problem);
      held.insert({row[2].c_str(), row[3].c_str()});
      continue;
    }
    try {
      batch.last_tag = broker_->publish(message);
    } catch (const amqp::EncodeFailed& error) {
      // Not caught by the checks above, and never publishable: park it, then reconnect (the
      // channel may hold half a message). What this read published is published again.
      unpublishable.emplace_back(position, error.what());
      for (auto& [at, why] : unpublishable) record_unpublishable(table_index, at, why, 1);
      throw;
    }
    batch.positions.push_back(position);
    in_flight_positions_[table_index].insert(position);
    published.add();
  }
  size_t count = batch.positions.size();
  if (count > 0) {
    unconfirmed_ += count;
    log_->debug("read {} rows in {}us, published {} in {}us", rows.size(),
                std::chrono::duration_cast<std::chrono::microseconds>(read_done - read_started).count(), count,
                std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - read_done).count());
    in_flight_.push_back(std::move(batch));
    if (!confirm_timer_->active()) confirm_timer_->start(milliseconds(250), milliseconds(250));
  }
  for (auto& [position, why] : unpublishable) record_unpublishable(table_index, position, why, 1);
  // Rows held behind a parked one were skipped: read again, without them, at once.
  if (!unpublishable.empty()) drain_soon_->request();
  return count;
}

bool Relay::record_unpublishable(size_t table_index, long long position, const std::string& reason, int park_after) {
  const TableSpec& table = tables_[table_index];
  pqxx::work tx(*db_);
  pqxx::result recorded = tx.exec_prepared("park_" + std::to_string(table_index), table.name, position, reason, park_after);
  tx.commit();
  if (recorded.empty()) return false;  // the row is gone (deleted meanwhile): nothing to park
  bool parked = recorded[0][0].as<bool>();
  int attempts = recorded[0][1].as<int>();
  std::string what = table.name + " position " + std::to_string(position);
  what += " (event " + excerpt(recorded[0][2].c_str()) + " " + excerpt(recorded[0][3].c_str()) + ", aggregate " +
          excerpt(recorded[0][4].c_str()) + " " + excerpt(recorded[0][5].c_str()) + ")";
  if (parked) {
    suspects_[table_index].erase(position);
    metrics_.counter("outbox_relay_parked_total", "").add();
    log_->error(
        "parked outbox row {} after {} attempt(s): {}; later rows of its aggregate wait behind it (outbox failed "
        "list --relay)",
        what, attempts, reason);
  } else {
    log_->warn("the broker refused outbox row {} ({} of {} attempts): {}", what, attempts, park_after, reason);
  }
  return parked;
}

bool Relay::isolating() const {
  return std::any_of(suspects_.begin(), suspects_.end(), [](const auto& positions) { return !positions.empty(); });
}

void Relay::refused_by_broker(const std::string& reason) {
  std::vector<std::pair<size_t, long long>> unconfirmed;
  for (const Batch& batch : in_flight_)
    if (batch.last_tag > confirmed_through_)
      for (long long position : batch.positions) unconfirmed.emplace_back(batch.table, position);
  if (isolating() && unconfirmed.size() == 1) {
    // Published alone: this is the row the broker refuses.
    auto [table, position] = unconfirmed.front();
    try {
      record_unpublishable(table, position, reason, max_attempts_);
    } catch (const std::exception& error) {
      log_->warn("could not record the broker's refusal of {} position {}: {}", tables_[table].name, position,
                 mask_url(error.what()));
    }
  } else if (!unconfirmed.empty()) {
    for (auto [table, position] : unconfirmed) suspects_[table].insert(position);
    log_->warn("the broker refused one of {} message(s) in flight; publishing them one at a time to find it: {}",
               unconfirmed.size(), reason);
  }
  broker_lost(reason);
}

void Relay::on_broker_readable() {
  if (!broker_) return;
  try {
    broker_->poll([this](amqp::Event& event) {
      switch (event.kind) {
        case amqp::Event::Kind::ack:
          on_confirm(event.delivery_tag, event.multiple);
          break;
        case amqp::Event::Kind::nack:
          metrics_.counter("outbox_relay_nacked_total", "").add();
          throw unavailable_error("broker refused a message (nack, delivery tag " + std::to_string(event.delivery_tag) + ")");
        case amqp::Event::Kind::returned:
          metrics_.counter("outbox_relay_returned_total", "").add();
          throw unavailable_error("message " + event.message->message_id.value_or("?") + " returned as unroutable (" +
                                  event.reply_text + "); is the alternate exchange " + topology::kUnroutable + " bound?");
        case amqp::Event::Kind::delivery:
          break;
      }
    });
  } catch (const amqp::ChannelClosed& closed) {
    // 406: the broker itself refuses a message (over its max_message_size); find it and park it.
    if (closed.reply_code() == kPreconditionFailed) return refused_by_broker(closed.what());
    return broker_lost(closed.what());
  } catch (const Error& error) {
    return broker_lost(error.what());
  }
  complete_batches();
}

void Relay::on_confirm(uint64_t tag, bool multiple) {
  backoff_.reset();  // the broker takes messages again
  if (multiple) {
    confirmed_through_ = std::max(confirmed_through_, tag);
  } else if (tag == confirmed_through_ + 1) {
    confirmed_through_ = tag;
  } else if (tag > confirmed_through_) {
    confirmed_ahead_.insert(tag);
  }
  while (!confirmed_ahead_.empty() && *confirmed_ahead_.begin() <= confirmed_through_ + 1) {
    confirmed_through_ = std::max(confirmed_through_, *confirmed_ahead_.begin());
    confirmed_ahead_.erase(confirmed_ahead_.begin());
  }
}

void Relay::complete_batches() {
  if (in_flight_.empty() || in_flight_.front().last_tag > confirmed_through_ || !db_) return;
  // Mark every fully confirmed batch of a table in one statement.
  std::vector<std::vector<long long>> confirmed(tables_.size());
  std::vector<Clock::time_point> started;
  size_t batches = 0;
  for (const Batch& batch : in_flight_) {
    if (batch.last_tag > confirmed_through_) break;
    confirmed[batch.table].insert(confirmed[batch.table].end(), batch.positions.begin(), batch.positions.end());
    started.push_back(batch.published);
    ++batches;
  }
  auto mark_started = Clock::now();
  try {
    failpoint("relay.after_confirm");
    pqxx::work tx(*db_);
    for (size_t table = 0; table < tables_.size(); ++table)
      if (!confirmed[table].empty())
        tx.exec_prepared((delete_on_publish_ ? "delete_" : "mark_") + std::to_string(table), join_positions(confirmed[table]));
    tx.commit();
    side_task_works("marking published rows");
  } catch (const pqxx::sql_error& error) {
    if (error.sqlstate() != "55P03") return database_lost(error.what());
    // A lock held elsewhere: the batches stay in flight and are marked at the next tick.
    side_problem("marking published rows", error.what());
    return;
  } catch (const std::exception& error) {
    return database_lost(error.what());
  }
  auto now = Clock::now();
  log_->debug("marked {} batch(es) in {}us; oldest confirmed after {}us", batches,
              std::chrono::duration_cast<std::chrono::microseconds>(now - mark_started).count(),
              std::chrono::duration_cast<std::chrono::microseconds>(mark_started - started.front()).count());
  auto& latency = metrics_.histogram("outbox_relay_batch_seconds", "", {});
  for (Clock::time_point start : started) latency.observe(std::chrono::duration<double>(now - start).count());
  size_t marked = 0;
  for (size_t i = 0; i < batches; ++i) {
    const Batch& batch = in_flight_.front();
    for (long long position : batch.positions) {
      in_flight_positions_[batch.table].erase(position);
      suspects_[batch.table].erase(position);
    }
    marked += batch.positions.size();
    in_flight_.pop_front();
  }
  unconfirmed_ -= marked;
  metrics_.counter("outbox_relay_confirmed_total", "").add(marked);
  last_progress_ = now;
  if (in_flight_.empty()) confirm_timer_->stop();
  if (runtime_.stopping()) return maybe_finish_shutdown();
  if (releasing_ && in_flight_.empty()) rebalance();  // hands the partitions over, then reading resumes
  drain_soon_->request();
}

void Relay::check_confirm_timeout() {
  if (broker_ && broker_->has_buffered_data()) on_broker_readable();
  complete_batches();  // confirmed batches whose mark had to wait for a lock
  if (in_flight_.empty()) {
    confirm_timer_->stop();
    return;
  }
  // Only an unconfirmed batch can time out: a confirmed one may wait for its mark (a lock).
  auto unconfirmed = std::find_if(in_flight_.begin(), in_flight_.end(),
                                  [this](const Batch& batch) { return batch.last_tag > confirmed_through_; });
  if (unconfirmed != in_flight_.end() && Clock::now() - unconfirmed->published > confirm_timeout_)
    broker_lost("publisher confirms timed out after " + std::to_string(confirm_timeout_.count()) + "ms");
}

void Relay::rebalance() {
  if (!db_) return;
  try {
    pqxx::nontransaction tx(*db_);
    if (!broker_) {
      // Unable to publish, this instance hands its partitions and its membership to the others,
      // which can (its session, and so its locks, would otherwise outlive the broker outage).
      if (!owned_.empty() || member_slot_ >= 0) {
        for (int partition : owned_) tx.exec_params("SELECT pg_advisory_unlock($1, $2)", kPartitionLockClass, partition);
        if (member_slot_ >= 0) tx.exec_params("SELECT pg_advisory_unlock($1, $2)", kMemberLockClass, member_slot_);
        log_->info("released {} partition(s) while the broker is unavailable", owned_.size());
        owned_.clear();
        member_slot_ = -1;
      }
      heartbeat_timer_->stop();
      rebalance_timer_->start(takeover_timeout_ / 3);
      return;
    }
    if (member_slot_ < 0)
      for (int slot = 0; slot < 4096 && member_slot_ < 0; ++slot)
        if (tx.exec_params1("SELECT pg_try_advisory_lock($1, $2)", kMemberLockClass, slot)[0].as<bool>()) member_slot_ = slot;
    int members = tx.exec_params1(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::bigint::oid "
                        "AND objsubid = 2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                        kMemberLockClass)[0]
                      .as<int>();
    int share = fair_share(partitions_, members);
    std::set<int> before = owned_;
    // Give back partitions only when nothing is in flight, so the next owner starts after us. Under
    // a steady load the window is never empty by itself: stop reading (drain() waits on releasing_)
    // and come back here when the last confirm has been marked.
    releasing_ = static_cast<int>(owned_.size()) > share && !in_flight_.empty();
    if (static_cast<int>(owned_.size()) > share && in_flight_.empty())
      for (int partition : release_choice(owned_, share)) {
        tx.exec_params("SELECT pg_advisory_unlock($1, $2)", kPartitionLockClass, partition);
        owned_.erase(partition);
      }
    if (static_cast<int>(owned_.size()) < share)
      for (int partition : acquisition_order(partitions_, member_slot_, members, owned_)) {
        if (static_cast<int>(owned_.size()) >= share) break;
        if (tx.exec_params1("SELECT pg_try_advisory_lock($1, $2)", kPartitionLockClass, partition)[0].as<bool>())
          owned_.insert(partition);
      }
    if (owned_ != before)
      log_->info("owning {} of {} partitions ({} live instance(s)): {}", owned_.size(), partitions_, members, join_ints(owned_));
    if (!owned_.empty() && before.empty()) drain_soon_->request();
    // Gauges for /metrics: each table's backlog and the age of its oldest unpublished row.
    for (const TableSpec& table : tables_) lag::set_table_gauges(metrics_, lag::read_table(tx, table.name));
    if (owned_.count(heartbeat_partition_) && heartbeat_interval_.count() > 0) {
      if (!heartbeat_timer_->active()) heartbeat_timer_->start(milliseconds(0), heartbeat_interval_);
    } else {
      heartbeat_timer_->stop();
    }
    side_task_works("rebalancing partitions");
  } catch (const std::exception& error) {
    if (pg::is_connection_error(error)) return database_lost(error.what());
    side_problem("rebalancing partitions", error.what());
  }
  // A dead instance's partitions are free as soon as its session ends; look often enough to take
  // them over within relay.takeover_timeout.
  rebalance_timer_->start(takeover_timeout_ / 3);
}

void Relay::run_retention() {
  if (!db_ || delete_on_publish_) return;
  try {
    for (size_t table = 0; table < tables_.size(); ++table)
      for (int round = 0; round < kRetentionBatchesPerTick; ++round) {
        pqxx::work tx(*db_);
        pqxx::result removed =
            tx.exec_prepared("retention_" + std::to_string(table), interval(retention_), kRetentionBatch, kRetentionWindow);
        tx.commit();
        if (removed.affected_rows() < kRetentionBatch) break;
      }
    side_task_works("retention");
  } catch (const std::exception& error) {
    if (pg::is_connection_error(error)) return database_lost(error.what());
    side_problem("retention", error.what());
  }
}

void Relay::write_heartbeat() {
  if (!db_ || runtime_.stopping()) return;
  try {
    pqxx::nontransaction tx(*db_);
    tx.exec_prepared("heartbeat_0", instance_);
    side_task_works("writing the heartbeat");
  } catch (const std::exception& error) {
    if (pg::is_connection_error(error)) return database_lost(error.what());
    side_problem("writing the heartbeat", error.what());
  }
}

// A failing side task (heartbeat, retention, rebalancing) is not a lost connection: the session,
// its partitions and what is in flight are kept, and it is logged once until it works again.
void Relay::side_problem(const std::string& task, const std::string& reason) {
  std::string line = mask_url(reason.substr(0, reason.find('\n')));
  std::string& known = side_problems_[task];
  if (line != known) log_->warn("{} failed, will retry: {}", task, line);
  known = line;
}

void Relay::side_task_works(const std::string& task) {
  if (side_problems_.empty()) return;
  if (side_problems_.erase(task)) log_->info("{} works again", task);
}

void Relay::shutdown_requested() {
  poll_timer_->stop();
  heartbeat_timer_->stop();
  retention_timer_->stop();
  rebalance_timer_->stop();
  reconnect_timer_->stop();
  shutdown_timer_->start(shutdown_timeout_);
  log_->info("draining: waiting for {} unconfirmed message(s)", unconfirmed_);
  maybe_finish_shutdown();
}

void Relay::maybe_finish_shutdown() {
  if (!in_flight_.empty() && ready()) return;
  log_->info("shutdown end: {} message(s) confirmed in total", metrics_.counter("outbox_relay_confirmed_total", "").value());
  runtime_.stop(0);
}

std::string Relay::status_line() const {
  std::string state = ready() ? "relaying" : (!db_ ? "waiting for the primary" : "waiting for the broker");
  return state + "; partitions " + std::to_string(owned_.size()) + "/" + std::to_string(partitions_) + "; unconfirmed " +
         std::to_string(unconfirmed_) + "; confirmed " +
         std::to_string(const_cast<metrics::Registry&>(metrics_).counter("outbox_relay_confirmed_total", "").value());
}

}  // namespace outbox::relay
