#pragma once
// The replicate daemon: one Replicator per replica on the daemon's libuv loop, each with its own
// broker connection (consuming the durable queue outbox.replica.NAME) and replica connection.
//
// Flow: deliveries are checked (check_message) as they arrive and collect in `pending_` (at most
// the basic.qos window, replicate_window()). Packs are unpacked only as far as the next batch
// needs: the rest wait compressed in `packed_` (see unpack_waiting). A batch is taken when
// replicate.batch_size events are there or replicate.batch_wait has passed since the first one
// arrived (at once when the worker is idle and nothing more is arriving; under a stream, see
// linger_after). The Applier commits it as one transaction; only then is the broker acked, once,
// with multiple = true up to the batch's last delivery tag. A crash anywhere before the ack leads
// to a redelivery that the version guard and outbox_applied_events turn into no-ops.
//
// The transaction runs on a worker thread (one batch at a time per replica, so order is kept).
// Meanwhile single-event deliveries wait in the socket and are read when it commits; packs are read
// and checked by the loop until the next batch is whole, so that it is ready when the current one
// commits (watch_broker says why). Only the loop thread touches the broker connection; only the
// batch in flight touches the replica connection.
//
// Outages: replica down -> the batch goes back to the front of `pending_` unacked, the replica is
// reconnected with backoff, and the same batch is applied. Broker down -> `pending_` and `packed_`
// are dropped (the broker redelivers every unacked message), the broker is reconnected (the next
// cluster node first) and consumption resumes. Each state change is logged once.
#include <chrono>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <vector>

#include "core/amqp.hpp"
#include "core/backoff.hpp"
#include "core/connection_lifecycle.hpp"
#include "core/daemon.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "migrate/topology.hpp"
#include "replicate/apply.hpp"
#include "replicate/partition_share.hpp"
#include "replicate/settings.hpp"

namespace outbox::replicate {

class Replicator {
 public:
  struct Callbacks {
    std::function<void()> on_ready;              // first connected to both servers
    std::function<void(const Error&)> on_fatal;  // a config error: the daemon exits 78
    std::function<void()> on_drained;            // shutdown finished for this replica
  };
  Replicator(daemon::Runtime& runtime, metrics::Registry& metrics, const Settings& settings, const ReplicaSettings& replica,
             Callbacks callbacks);
  ~Replicator();
  void start();
  void apply_tunables(const Tunables& tunables);
  // Applies what has been received, acks it, and then calls on_drained.
  void begin_shutdown();
  // Cancels the statement of the batch in flight (the shutdown timeout passed): its transaction
  // rolls back, nothing is acked, and the worker thread can be joined.
  void cancel_in_flight();
  bool ready() const { return db_ && broker_; }
  bool ever_ready() const { return ever_ready_; }
  // A partition that another process serves (this one has its fair share): nothing is wrong.
  bool left_to_another_process() const { return share_ && standing_by_ && !waiting_for_migrate_; }
  bool healthy() const;
  std::string status_line() const;
  const std::string& replica() const { return replica_; }
  int partition() const { return partition_; }  // -1: the whole replica (or consumer)
  // Work on the database connection between batches, on the worker thread, when `every` has passed
  // (consume's deadlines). `job` handles its own failures; it throws only when the connection is lost.
  void run_between_batches(std::chrono::milliseconds every, std::function<void(pqxx::connection&)> job);

 private:
  enum Side : size_t { kReplica, kBroker };
  std::unique_ptr<ConnectionLifecycle> make_lifecycle();
  void on_connected();
  void announce_ready();
  void open_replica();
  // Throws NotNow when another daemon serves this replica.
  void take_serve_lock(pqxx::connection& connection);
  std::string serve_lock_key() const;
  void stand_by();
  // A partition over this process's fair share (see replicate/partition_share.hpp): stop
  // consuming, let the batch in flight commit, then end the serve lock.
  void give_back_partition();
  void finish_give_back();
  void open_broker();
  void drop_broker();
  void database_lost(const std::string& reason);
  void broker_lost(const std::string& reason);
  void on_broker_readable();
  // Takes in what the broker sent; false when the broker was lost (broker_lost has run).
  bool read_broker();
  // Whether the broker socket's readability wakes the loop: not while a read is due anyway.
  void watch_broker();
  // A delivery: checked as one event, or unpacked (migrate/pack.hpp) into one per element; or,
  // while the next batch is whole already, kept packed in `packed_`.
  void receive(amqp::IncomingMessage message);
  // Checks a delivery now: one event, or each event of a pack.
  void check_in(amqp::IncomingMessage message);
  // Unpacks and checks what waits in `packed_`, in delivery order, until the next batch is whole
  // (everything while stopping, which applies what was received).
  void unpack_waiting();
  // Forgets every delivery not in flight: the broker gives them again (their channel is gone).
  void drop_received();
  // `problem`: why its pack element is broken ("" when it is not); `ends_delivery`: the last event
  // of its delivery (a batch never ends inside a pack, whose one ack covers it whole).
  void receive_one(amqp::IncomingMessage message, const std::string& problem, bool ends_delivery);
  // `socket_drained`: the broker socket was just read empty; with the worker idle, nothing more is
  // coming that batch_wait could add to this batch, so it is taken now.
  void schedule_batch(bool socket_drained = false);
  void apply_pending();
  // After a committed batch that took `took`: the next one may wait for more (group commit).
  void linger_after(std::chrono::steady_clock::duration took);
  bool start_chore();
  void on_applied();
  struct InFlight;
  // The between-batches job (run_between_batches) has finished on the worker.
  void on_chore_done(const InFlight& chore);
  void record(const Counts& counts, std::chrono::steady_clock::duration took);
  void finish_if_drained();
  void update_lag_gauge();
  void prune_applied();
  void log_future_events();
  metrics::Counter& counter(const std::string& name, const metrics::Labels& extra_labels = {});
  metrics::Gauge& gauge(const std::string& name, const std::string& help, const metrics::Labels& extra_labels = {});
  void update_gauges();
  metrics::Gauge& parked_gauge();
  std::string metric_name(const std::string& name) const;
  // A consumer's event type that no handler takes: logged once per type.
  void note_unhandled(const Event& event);

  daemon::Runtime& runtime_;
  loop::Loop& loop_;
  metrics::Registry& metrics_;
  std::string replica_;
  int partition_ = -1;  // see ReplicaSettings::partition
  std::shared_ptr<PartitionShare> share_;
  std::string consume_queue_;   // queue_.queue, or this partition's queue
  bool consumer_ = false;       // `outbox consume`: handlers instead of table mappings
  std::string role_, program_;  // "replica main" / "consumer booking"; the application_name
  metrics::Labels labels_;      // replica="NAME" (a consumer: service="NAME") on every sample
  std::set<std::string> unhandled_types_logged_;
  std::shared_ptr<spdlog::logger> log_;
  Callbacks callbacks_;

  // Restart-only settings.
  std::string url_;
  amqp::BrokerSettings broker_settings_;
  topology::ReplicaQueue queue_;
  std::vector<Mapping> mappings_;
  int prefetch_ = 1000;
  int apply_connections_ = 1;

  // The reloadable settings: a reload replaces them whole (apply_tunables).
  Tunables tunables_;

  std::unique_ptr<pqxx::connection> db_;
  std::vector<std::unique_ptr<pqxx::connection>> helper_dbs_;  // apply parts of large batches (Applier)
  std::unique_ptr<Applier> applier_;
  std::unique_ptr<amqp::Connection> broker_;
  std::unique_ptr<loop::Poll> broker_poll_;
  size_t next_broker_node_ = 0;

  std::unique_ptr<loop::Deferred> apply_soon_;
  std::unique_ptr<loop::Timer> batch_timer_, tick_timer_;
  Backoff backoff_;
  std::unique_ptr<ConnectionLifecycle> lifecycle_;
  std::string apply_problem_;  // "" while fine; logged once per change
  std::string prune_problem_;
  std::chrono::steady_clock::time_point next_prune_{};
  // Times from the future are logged at most once a minute, with what came since the last line.
  long long future_unlogged_ = 0;
  double future_unlogged_ahead_ = 0;
  std::chrono::steady_clock::time_point next_future_log_{};

  // A delivery, checked as it arrives (while the worker applies the previous batch, so the check
  // is off the critical path), at a stable address: a batch hands the worker pointers, not copies.
  struct Received {
    Received() = default;
    Received(const Received&) = delete;  // item.message points at `message`: never copied or moved
    Received& operator=(const Received&) = delete;
    amqp::IncomingMessage message;
    Item item;
    bool ends_delivery = true;  // false inside a pack, before its last event
  };
  std::deque<std::unique_ptr<Received>> pending_;
  // Deliveries behind `pending_` while it holds a whole batch: packs, and anything after one, in
  // delivery order. A pack waits here compressed (a few KB for 100 events), so the events held in
  // memory stay about batch_size + relay.pack whatever the window of packs (replicate_window).
  std::deque<amqp::IncomingMessage> packed_;
  // The batch being applied on the worker thread, taken off the front of `pending_`.
  struct InFlight {
    std::vector<std::unique_ptr<Received>> received;
    std::vector<Item*> items;  // point into `received`
    Counts counts;
    std::exception_ptr error;
    uint64_t broker_generation = 0;  // delivery tags are only valid on the channel they came from
    std::chrono::steady_clock::time_point started;
    bool chore = false;  // the between-batches job, not a batch
  };
  std::unique_ptr<InFlight> in_flight_;
  std::unique_ptr<loop::Worker> worker_;  // declared after db_/applier_: destroyed (joined) first
  uint64_t broker_generation_ = 0;
  bool batch_due_ = false;
  std::chrono::steady_clock::time_point linger_until_;  // see linger_after()
  std::function<void(pqxx::connection&)> chore_;
  std::unique_ptr<loop::Timer> chore_timer_;
  bool chore_due_ = false;
  bool ever_ready_ = false;
  bool standing_by_ = false;
  bool giving_back_ = false;          // give_back_partition() until the serve lock ended
  bool waiting_for_migrate_ = false;  // the database's schema is older than this binary needs
  bool stopping_ = false, drained_ = false;
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
};

}  // namespace outbox::replicate
