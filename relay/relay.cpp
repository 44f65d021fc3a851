#include "relay/relay.hpp"

#include <unistd.h>

#include <algorithm>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/pg.hpp"
#include "core/url.hpp"
#include "migrate/runner.hpp"
#include "migrate/topology.hpp"
#include "relay/backlog.hpp"
#include "relay/outbox_partitions.hpp"
#include "relay/statements.hpp"

namespace outbox::relay {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How soon the maintenance ticks once the relay can work (after its start, after a connection),
// whatever relay.maintenance_interval: the migration's first partition is cut at that tick, and
// one that came while the primary was away did nothing.
constexpr milliseconds kFirstMaintenanceTick{1000};

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
  service_ = std::move(settings.service);
  database_role_ = service_.empty() ? "primary" : "service " + service_;
  primary_url_ = std::move(settings.primary_url);
  notify_channel_ = std::move(settings.notify_channel);
  partitions_ = settings.partitions;
  tables_ = std::move(settings.tables);
  window_ = ConfirmWindow(tables_.size());
  ownership_ = Ownership(partitions_);
  suspects_.resize(tables_.size());
  apply_tunables(settings.tunables);

  register_metrics();

  drain_soon_ = std::make_unique<loop::Deferred>(runtime_.loop(), [this] { drain(); });
  poll_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] {
    update_gauges();
    drain_soon_->request();
  });
  confirm_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] { check_confirm_timeout(); });
  rebalance_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] { rebalance(); });
  retention_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] { run_retention(); });
  vacuum_ = make_mark_vacuum();
  retention_worker_ = std::make_unique<RetentionWorker>(runtime_.loop(), primary_url_, database_role_,
                                                        [this](std::vector<RetentionOutcome> outcomes) { retained(outcomes); });
  heartbeat_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] { write_heartbeat(); });
  shutdown_timer_ = std::make_unique<loop::Timer>(runtime_.loop(), [this] {
    log_->warn("shutdown timeout ({}s) reached with {} messages unconfirmed; they will be published again by the next run",
               tunables_.shutdown_timeout.count() / 1000.0, window_.unconfirmed());
    runtime_.stop(0);
  });

  daemon::Hooks hooks;
  hooks.on_shutdown_request = [this] { shutdown_requested(); };
  hooks.prepare_reload = [this](const config::Config& fresh) -> std::function<void()> {
    // The whole of the relay's settings is built: a reload refuses what a start would refuse.
    return [this, tunables = settings_from_config(fresh, service_).tunables] {
      milliseconds heartbeat_before = tunables_.heartbeat_interval;
      milliseconds maintenance_before = tunables_.maintenance_interval;
      apply_tunables(tunables);
      poll_timer_->start(tunables_.poll_interval, tunables_.poll_interval);
      // A new period: the next tick comes one new interval after the reload, or sooner when it was
      // due sooner (a reload must not put off a tick, say the first one after the start).
      if (tunables_.maintenance_interval != maintenance_before)
        retention_timer_->start_within(tunables_.maintenance_interval, tunables_.maintenance_interval);
      // A running heartbeat keeps its period until restarted; a stopped one is started by rebalance().
      if (tunables_.heartbeat_interval != heartbeat_before && heartbeat_timer_->active()) {
        if (tunables_.heartbeat_interval.count() > 0)
          heartbeat_timer_->start(tunables_.heartbeat_interval, tunables_.heartbeat_interval);
        else
          heartbeat_timer_->stop();
      }
      log_->info("reloaded: batch_size={} poll_interval={}ms confirm_timeout={}ms maintenance_interval={}ms on_publish={}",
                 tunables_.batch_size, tunables_.poll_interval.count(), tunables_.confirm_timeout.count(),
                 tunables_.maintenance_interval.count(), tunables_.delete_on_publish ? "delete" : "mark");
    };
  };
  hooks.status_line = [this] { return status_line(); };
  hooks.connected = [this] { return ready(); };
  hooks.healthy = [this] {
    // Stuck means: work is in flight but nothing has been confirmed for two confirm timeouts. A
    // confirmed batch that waits for its mark waits for a lock held elsewhere (retried each tick),
    // like an outage: a restart would only wait again.
    return window_.empty() || Clock::now() - last_progress_ < 2 * tunables_.confirm_timeout || window_.oldest_confirmed();
  };
  runtime_.set_hooks(std::move(hooks));
  lifecycle_ = make_lifecycle();
}

void Relay::register_metrics() {
  // Counters of rows are per table; nacks, returns and reconnects are per connection (a nack or
  // a return stops the whole window, whichever table its message came from).
  for (const TableSpec& table : tables_) {
    metrics::Labels labels = {{"table", table.name}};
    table_metrics_.push_back(TableMetrics{
        .published = &metrics_.counter("outbox_relay_published_total", "Messages published to the broker", labels),
        .confirmed = &metrics_.counter("outbox_relay_confirmed_total",
                                       "Messages confirmed by the broker and marked in the outbox", labels),
        .parked = &metrics_.counter("outbox_relay_parked_total", "Rows parked because the broker can never take them", labels),
        .batch_seconds = &metrics_.histogram("outbox_relay_batch_seconds", "Time from publishing a batch to marking it confirmed",
                                             {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}, labels),
    });
  }
  metrics_.counter("outbox_relay_nacked_total", "Messages the broker refused (nack); they are published again");
  metrics_.counter("outbox_relay_returned_total", "Messages returned as unroutable by the broker");
  metrics_.counter("outbox_relay_reconnects_total", "Reconnections to the database or the broker");
  metrics_.counter("outbox_relay_vacuums_total", "Outbox partitions VACUUMed for the marks' dead row versions");
  update_gauges();
}

Relay::~Relay() {
  db_poll_.reset();
  listener_.reset();
  db_.reset();
  broker_poll_.reset();
  broker_.reset();
}

void Relay::apply_tunables(const Tunables& tunables) {
  tunables_ = tunables;
  backoff_.set_cap(tunables.max_backoff);
  if (vacuum_) vacuum_->set_interval(tunables.vacuum_interval);
}

void Relay::start() {
  log_->info("starting: {} table(s), {} partitions, {} {}, broker {}", tables_.size(), partitions_, database_role_,
             mask_url(primary_url_), mask_url(broker_settings_.urls.front()));
  for (const TableSpec& table : tables_)
    if (table.pack > 1)
      log_->info("{}: up to {} events per message, packed, to exchange {}", table.name, table.pack, table.pack_exchange);
  poll_timer_->start(tunables_.poll_interval, tunables_.poll_interval);
  retention_timer_->start(kFirstMaintenanceTick, tunables_.maintenance_interval);
  vacuum_->set_interval(tunables_.vacuum_interval);
  lifecycle_->connect();
}

std::unique_ptr<ConnectionLifecycle> Relay::make_lifecycle() {
  ConnectionLifecycle::Side primary{
      .name = database_role_,
      .open = [this] { open_database(); },
      .close =
          [this] {
            db_poll_.reset();
            listener_.reset();
            db_.reset();
          },
      .is_open = [this] { return db_ != nullptr; },
      .connected_detail = [this](bool) { return " (" + mask_url(primary_url_) + ")"; },
      .failure_reason =
          [](const std::exception& error) {
            std::string reason = error.what();
            if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&error); sql && sql->sqlstate() == "42P01")
              reason = "outbox table missing (run 'outbox migrate'): " + reason;
            return reason;
          },
      .config_errors_are_fatal = false,
  };
  ConnectionLifecycle::Side broker{
      .name = "broker",
      .open = [this] { open_broker(); },
      .close =
          [this] {
            broker_poll_.reset();
            broker_.reset();
          },
      .is_open = [this] { return broker_ != nullptr; },
      .connected_detail = [this](bool) { return " (" + broker_->node() + ")"; },
  };
  ConnectionLifecycle::Hooks hooks{
      .ready = [this] { on_connected(); },
      .halted = [this] { return runtime_.stopping(); },
      .on_halted = [this] { maybe_finish_shutdown(); },
      // A bad URL, unreadable TLS files, an exchange declared otherwise: no retry can fix these.
      .fatal = [this](const Error& error) { fatal(error); },
  };
  return std::make_unique<ConnectionLifecycle>(runtime_, log_, backoff_, metrics_.counter("outbox_relay_reconnects_total", ""),
                                               std::vector{std::move(primary), std::move(broker)}, std::move(hooks));
}

// Connecting is no progress: a confirm is (on_confirm), or a connection that stays up (see
// ConnectionLifecycle). Else a broker that drops the connection at once, or refuses a message each
// time (a full queue), would be reconnected to in a tight loop.
void Relay::on_connected() {
  if (!announced_ready_) {
    announced_ready_ = true;
    daemon::notify_ready();
  }
  // A tick that came while the primary was away (or before `outbox migrate` ran) did nothing: the
  // next one comes within kFirstMaintenanceTick, not a relay.maintenance_interval later.
  if (!runtime_.stopping()) retention_timer_->start_within(kFirstMaintenanceTick, tunables_.maintenance_interval);
  rebalance();
  drain_soon_->request();
}

void Relay::open_database() {
  auto connection = pg::connect(primary_url_, database_role_, "outbox-relay");
  // After an upgrade the relay may start before `outbox migrate` ran: as replicate and consume do,
  // it waits, not ready, and goes on by itself once the schema is there.
  try {
    migrate::require_current(*connection, service_.empty() ? migrate::Target::primary : migrate::Target::service, database_role_);
    waiting_for_migrate_ = false;
  } catch (const migrate::SchemaBehind& behind) {
    waiting_for_migrate_ = true;
    throw WaitingForOperator(std::string(behind.what()) + "; waiting for it (not ready until then)");
  }
  layouts_.clear();
  for (size_t i = 0; i < tables_.size(); ++i) {
    // A partitioned outbox (migration 0004) loses its old rows by dropping partitions; rows are
    // deleted only in its default partition. Any other table keeps the row-deleting retention.
    layouts_.push_back(read_outbox_layout(*connection, tables_[i].quoted));
    prepare_statements(*connection, i, tables_[i].quoted);
    // Fails early, with the table's name, when the table is missing or lacks outbox columns.
    pqxx::nontransaction check(*connection);
    check.exec_prepared(statement("read_all", i), tables_[i].name, "{}", 0, partitions_);
  }
  configure_session(*connection);
  heartbeat_partition_ = heartbeat_partition(*connection, partitions_);
  if (!notify_channel_.empty()) listener_ = std::make_unique<Listener>(*connection, notify_channel_, *drain_soon_);
  db_ = std::move(connection);
  db_poll_ = std::make_unique<loop::Poll>(runtime_.loop(), db_->sock(), [this] {
    try {
      db_->get_notifs();
    } catch (const std::exception& error) {
      database_lost(error.what());
    }
  });
}

void Relay::open_broker() {
  auto connection = amqp::Connection::open(broker_settings_, next_broker_node_, "outbox-relay " + instance_, 1);
  // Unroutable messages go to the alternate exchange and its durable queue instead of being dropped.
  std::set<std::string> exchanges;
  for (const TableSpec& table : tables_) {
    exchanges.insert(table.exchange);
    if (!table.pack_exchange.empty()) exchanges.insert(table.pack_exchange);
  }
  for (const std::string& exchange : exchanges) topology::declare_exchange(*connection, exchange, broker_settings_.quorum_queues);
  connection->enable_confirms();
  broker_ = std::move(connection);
  broker_poll_ = std::make_unique<loop::Poll>(runtime_.loop(), broker_->fd(), [this] { on_broker_readable(); });
  window_.new_channel();
}

void Relay::fatal(const Error& error) {
  if (fatal_error_) return;
  fatal_error_ = error;  // main prints it as one line, with its exit code
  runtime_.stop(static_cast<int>(ExitCode::config));
}

void Relay::database_lost(const std::string& reason) {
  lifecycle_->lost(kPrimary, reason,
                   ", " + std::to_string(window_.unconfirmed()) + " unconfirmed message(s) will be published again");
  // The advisory locks died with the session: another instance may own these partitions now.
  ownership_.forget();
  for (const TableSpec& table : tables_) {
    lag::clear_owned_gauges(metrics_, table.name, instance_);
    clear_partition_gauges(table.name);
  }
  forget_in_flight_and_reconnect();
}

void Relay::forget_in_flight_and_reconnect() {
  // Nothing in flight is marked: those rows stay unpublished and are read and published again.
  window_.clear();
  releasing_ = false;
  confirm_timer_->stop();
  update_gauges();
  if (runtime_.stopping()) {
    maybe_finish_shutdown();
    return;
  }
  lifecycle_->retry();
}

void Relay::broker_lost(const std::string& reason) {
  lifecycle_->lost(kBroker, reason,
                   ", " + std::to_string(window_.unconfirmed()) + " unconfirmed message(s) will be published again");
  forget_in_flight_and_reconnect();
}

void Relay::drain() {
  // While handing partitions over, nothing new is read until what is in flight is confirmed.
  if (!ready() || runtime_.stopping() || ownership_.owned().empty() || releasing_) return;
  try {
    // Round-robin over the tables until the window of unconfirmed messages is full or all are caught up.
    bool progress = true;
    while (progress && static_cast<int>(window_.unconfirmed()) < tunables_.max_unconfirmed) {
      progress = false;
      for (size_t table = 0; table < tables_.size() && static_cast<int>(window_.unconfirmed()) < tunables_.max_unconfirmed;
           ++table)
        if (read_and_publish(table) >= static_cast<size_t>(tunables_.batch_size)) progress = true;
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

void Relay::rebalance() {
  if (!db_) return;
  // The first read of newly owned partitions is out by then (drain_soon_ runs first).
  constexpr milliseconds kCountAfterFirstRead{50};
  bool backlog_counted = true;
  try {
    pqxx::nontransaction tx(*db_);
    if (!broker_) {
      // Unable to publish, this instance hands its partitions and its membership to the others,
      // which can (its session, and so its locks, would otherwise outlive the broker outage).
      if (ownership_.holds_locks())
        log_->info("released {} partition(s) while the broker is unavailable", ownership_.release_all(tx));
      heartbeat_timer_->stop();
      rebalance_timer_->start(tunables_.takeover_timeout / 3);
      return;
    }
    std::set<int> before = ownership_.owned();
    // Give back partitions only when nothing is in flight, so the next owner starts after us. Under
    // a steady load the window is never empty by itself: stop reading (drain() waits on releasing_)
    // and come back here when the last confirm has been marked.
    Ownership::Step step = ownership_.rebalance(tx, window_.empty());
    releasing_ = step.over_share && !window_.empty();
    report_partition_disagreement(step);
    const std::set<int>& owned = ownership_.owned();
    if (owned != before)
      log_->info("owning {} of {} partitions ({} live instance(s)): {}", owned.size(), partitions_, step.members,
                 ownership_.owned_array());
    bool first_partitions = !owned.empty() && before.empty();
    if (first_partitions) drain_soon_->request();
    // Gauges for /metrics: each table's backlog, its age and its parked rows, in the partitions this
    // relay owns, so that a sum over the relays counts each row once. Not in the round that took
    // the first partitions: counting a large backlog (up to backlog_count_limit rows, tens of
    // milliseconds per 100,000) would hold back the first read; the next round, right after that
    // read, counts.
    backlog_counted = !first_partitions;
    if (backlog_counted)
      for (const TableSpec& table : tables_)
        lag::set_owned_gauges(
            metrics_, lag::read_owned_table(tx, table.name, partitions_, ownership_.owned_array(), tunables_.backlog_count_limit),
            instance_);
    update_gauges();
    keep_heartbeat_with_its_partition();
    side_task_works("rebalancing partitions");
  } catch (const std::exception& error) {
    if (pg::is_connection_error(error)) return database_lost(error.what());
    side_problem("rebalancing partitions", error.what());
  }
  // A dead instance's partitions are free as soon as its session ends; look often enough to take
  // them over within relay.takeover_timeout.
  rebalance_timer_->start(backlog_counted ? tunables_.takeover_timeout / 3 : kCountAfterFirstRead);
}

// Said once when it starts and once when it ends, not at every rebalance.
void Relay::report_partition_disagreement(const Ownership::Step& step) {
  if (step.other_partitions == other_partitions_) return;
  if (step.other_partitions)
    log_->error(
        "relay.partitions is {} here but {} in a live relay (backend pid {}): this instance owns no partition until every "
        "relay with another count has stopped (two counts would split an aggregate's order); run all relays with the same "
        "relay.partitions",
        partitions_, step.other_partitions, step.other_pid);
  else
    log_->info("no live relay has another relay.partitions now: taking partitions");
  other_partitions_ = step.other_partitions;
}

// The heartbeat is written by the owner of the heartbeat aggregate's partition, so it is ordered
// like any other aggregate.
void Relay::keep_heartbeat_with_its_partition() {
  if (ownership_.owns(heartbeat_partition_) && tunables_.heartbeat_interval.count() > 0) {
    if (!heartbeat_timer_->active()) heartbeat_timer_->start(milliseconds(0), tunables_.heartbeat_interval);
  } else {
    heartbeat_timer_->stop();
  }
}

void Relay::write_heartbeat() {
  if (!db_ || runtime_.stopping()) return;
  try {
    pqxx::nontransaction tx(*db_);
    tx.exec_prepared(statement("heartbeat", 0), instance_);
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
  lifecycle_->stop_retrying();
  shutdown_timer_->start(tunables_.shutdown_timeout);
  log_->info("draining: waiting for {} unconfirmed message(s)", window_.unconfirmed());
  maybe_finish_shutdown();
}

void Relay::maybe_finish_shutdown() {
  if (!window_.empty() && ready()) return;
  log_->info("shutdown end: {} message(s) confirmed in total", confirmed_total());
  runtime_.stop(0);
}

std::string Relay::status_line() const {
  std::string state = ready()                ? "relaying"
                      : waiting_for_migrate_ ? "waiting for 'outbox migrate' (schema older than this outbox needs)"
                      : !db_                 ? "waiting for the primary"
                                             : "waiting for the broker";
  return state + "; partitions " + std::to_string(ownership_.owned().size()) + "/" + std::to_string(partitions_) +
         "; unconfirmed " + std::to_string(window_.unconfirmed()) + "; confirmed " + std::to_string(confirmed_total());
}

uint64_t Relay::confirmed_total() const {
  uint64_t total = 0;
  for (const TableMetrics& table : table_metrics_) total += table.confirmed->value();
  return total;
}

void Relay::update_gauges() {
  metrics_
      .gauge("outbox_relay_connected", "1 while connected to this peer (database: the primary or the service's database)",
             {{"peer", "database"}})
      .set(db_ ? 1 : 0);
  metrics_.gauge("outbox_relay_connected", "", {{"peer", "broker"}}).set(broker_ ? 1 : 0);
  metrics_.gauge("outbox_relay_partitions_owned", "Partitions of relay.partitions this relay owns now")
      .set(static_cast<double>(ownership_.owned().size()));
  metrics_.gauge("outbox_relay_unconfirmed_messages", "Messages published and not yet confirmed by the broker (in flight)")
      .set(static_cast<double>(window_.unconfirmed()));
}

}  // namespace outbox::relay
