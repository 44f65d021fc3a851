#pragma once
// The relay daemon: publishes committed outbox rows to RabbitMQ with publisher confirms, in commit
// order per aggregate, and marks (or deletes) a row only after the broker confirmed it.
//
// Why no committed row is ever skipped: a row is selected by its own marker (published_at IS
// NULL), never by a "last position" cursor. A transaction that took a low position and commits
// minutes later leaves a NULL row that the next read finds, whatever was published meanwhile.
// Reads that run while earlier batches wait for confirms exclude exactly the positions in flight,
// so they too see every unpublished row in position order.
//
// Why per-aggregate order holds: an aggregate's rows hash to one partition, owned by one instance
// (advisory lock). Writers lock the aggregate (its row) before inserting its event, so positions of
// one aggregate increase in commit order; the owner publishes them in position order. A partition
// changes hands only when its old owner has nothing in flight, or has died (its locks vanish with
// its session).
//
// Why one poison row stops nothing else: a row the broker can never take (checked before it is
// published, or refused alone by the broker relay.max_attempts times) is parked in outbox_parked on
// the primary, neither deleted nor marked. The reads skip it and every later row of its aggregate,
// so that aggregate keeps its order and waits, while every other aggregate and partition goes on.
// When the broker refuses one message of a window (it closes the channel, 406), the rows that were
// in flight become suspects, published one at a time until each is confirmed or parked.
#include <chrono>
#include <map>
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
#include "migrate/pack.hpp"
#include "relay/confirm_window.hpp"
#include "relay/mark_vacuum.hpp"
#include "relay/outbox_partitions.hpp"
#include "relay/ownership.hpp"
#include "relay/retention_worker.hpp"
#include "relay/settings.hpp"

namespace outbox::relay {

class Relay {
 public:
  Relay(daemon::Runtime& runtime, Settings settings);
  ~Relay();
  // Connects (retrying in the background) and starts relaying; returns at once.
  void start();
  metrics::Registry& metrics() { return metrics_; }
  // Why the relay stopped itself (exit 78 for a configuration problem), with its exit code.
  const std::optional<Error>& fatal_error() const { return fatal_error_; }

 private:
  class Listener;
  enum Side : size_t { kPrimary, kBroker };

  void apply_tunables(const Tunables& tunables);
  void register_metrics();
  std::unique_ptr<ConnectionLifecycle> make_lifecycle();
  void open_database();
  void open_broker();
  void on_connected();
  void database_lost(const std::string& reason);
  void broker_lost(const std::string& reason);
  void forget_in_flight_and_reconnect();
  bool ready() const { return db_ && broker_; }

  void drain();
  size_t read_and_publish(size_t table);
  pqxx::result read_rows(size_t table, int room);
  // Rows one read may take from `table`: relay.batch_size, or more to fill its packs.
  int rows_per_read(const TableSpec& table) const;
  // A pack being built from one read: its events and their rows' positions.
  struct OpenPack {
    pack::Builder builder;
    std::vector<long long> positions;
  };
  // Publishes `open` (rows of table `table`, of relay partition `partition`) and empties it;
  // returns its delivery tag.
  uint64_t publish_pack(size_t table, int partition, OpenPack& open);
  void on_broker_readable();
  void refused_by_broker(const std::string& reason);
  // Records that the broker cannot take the row at `position`: parks it at once when `park_after`
  // is 1, else after that many refusals. Returns whether it is parked now.
  bool record_unpublishable(size_t table, long long position, const std::string& reason, int park_after);
  void complete_batches();
  bool mark_confirmed(const ConfirmWindow::Confirmed& confirmed);
  void check_confirm_timeout();
  void rebalance();
  void report_partition_disagreement(const Ownership::Step& step);
  void keep_heartbeat_with_its_partition();
  void run_retention();
  void retained(const std::vector<RetentionOutcome>& outcomes);
  void watch_partitions(const std::string& table, const MaintenanceResult& done);
  void clear_partition_gauges(const std::string& table);
  std::unique_ptr<MarkVacuum> make_mark_vacuum();
  void vacuumed(const VacuumRound& round);
  void write_heartbeat();
  void shutdown_requested();
  void maybe_finish_shutdown();
  std::string status_line() const;
  // Sets the gauges of what the relay holds now: connected, partitions owned, messages in flight.
  void update_gauges();
  uint64_t confirmed_total() const;
  bool isolating() const;
  void side_problem(const std::string& task, const std::string& reason);
  void side_task_works(const std::string& task);
  void fatal(const Error& error);

  daemon::Runtime& runtime_;
  std::string instance_;
  std::shared_ptr<spdlog::logger> log_;
  metrics::Registry metrics_;
  // Each table's metrics, labelled table="NAME", in the order of tables_.
  struct TableMetrics {
    metrics::Counter *published, *confirmed, *parked;
    metrics::Histogram* batch_seconds;
  };
  std::vector<TableMetrics> table_metrics_;

  // Restart-only settings, read once.
  amqp::BrokerSettings broker_settings_;
  std::string service_;        // "" for the primary's relay
  std::string database_role_;  // "primary" or "service NAME", in logs and errors
  std::string primary_url_;
  std::string notify_channel_;
  std::vector<TableSpec> tables_;
  std::vector<OutboxLayout> layouts_;  // per table, read from the catalog at each connection
  int partitions_;

  // The reloadable settings: a reload replaces them whole (apply_tunables).
  Tunables tunables_;

  std::unique_ptr<pqxx::connection> db_;
  std::unique_ptr<Listener> listener_;
  std::unique_ptr<loop::Poll> db_poll_;
  std::unique_ptr<amqp::Connection> broker_;
  std::unique_ptr<loop::Poll> broker_poll_;
  size_t next_broker_node_ = 0;

  std::unique_ptr<loop::Deferred> drain_soon_;
  std::unique_ptr<loop::Timer> poll_timer_, confirm_timer_, rebalance_timer_, retention_timer_, heartbeat_timer_, shutdown_timer_;
  Backoff backoff_;
  std::unique_ptr<ConnectionLifecycle> lifecycle_;
  std::map<std::string, std::string> side_problems_;  // failing side task -> why, logged once
  std::unique_ptr<MarkVacuum> vacuum_;
  std::unique_ptr<RetentionWorker> retention_worker_;
  // Per outbox table, what its partition maintenance said last, so that each change is logged once.
  struct PartitionWatch {
    int partitions_ahead = kPartitionsAhead;
    bool default_holds_rows = false;
  };
  std::map<std::string, PartitionWatch> partition_watch_;
  std::set<std::string> not_owned_warned_;  // partitions the relay's role cannot vacuum, said once each
  std::optional<Error> fatal_error_;
  bool releasing_ = false;          // over its fair share with rows in flight: reads pause until they are confirmed
  long long other_partitions_ = 0;  // another relay.partitions in force (Ownership::Step), 0 when none
  // Rows in flight when the broker refused one of them (per table): published one at a time until
  // each is confirmed or parked. Empty in normal operation.
  std::vector<std::set<long long>> suspects_;
  // The packs of the read in progress, by relay partition; each one is empty between reads. Kept
  // across reads so that each builder's body keeps its capacity (pack::Builder::add).
  std::map<int, OpenPack> open_packs_;
  bool announced_ready_ = false;
  bool waiting_for_migrate_ = false;  // the database's schema is older than this binary needs

  Ownership ownership_;
  int heartbeat_partition_ = -1;

  ConfirmWindow window_;
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
};

}  // namespace outbox::relay
