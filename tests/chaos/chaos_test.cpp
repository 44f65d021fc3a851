// The chaos suite: the whole pipeline (primary -> relay -> RabbitMQ -> replicate -> replica) under
// a concurrent write load while faults are injected one after another, then proof that nothing
// was lost, duplicated in effect or reordered.
//
// Size and faults come from the environment (tests/chaos/run sets them; CTest runs a bounded size):
//   OUTBOX_CHAOS_EVENTS          events the writers commit (default 20000)
//   OUTBOX_CHAOS_FAULTS          faults injected (default 14: every kind at least once)
//   OUTBOX_CHAOS_WRITERS         concurrent writer threads (default 4)
//   OUTBOX_CHAOS_REPLICA_OUTAGE  seconds the replica PostgreSQL stays down (default 10)
//   OUTBOX_CHAOS_SEED            random seed (default: from the clock; printed)
//   OUTBOX_CHAOS_ASYNC_COMMIT    1 (default): the writers commit with synchronous_commit = off
//   OUTBOX_CHAOS_APPLY_CONNECTIONS  replicate.apply_connections (default 1; 2 or more: large
//                                batches, as after an outage, are applied in parts)
//   OUTBOX_CHAOS_PACK            relay.pack for the run (default 1; above 1 the relay publishes packs
//                                to outbox.packed, migrate/pack.hpp, and the audit queue unpacks them)
//   OUTBOX_CHAOS_CLUSTER         1: the broker is a 3-node RabbitMQ cluster (every queue a quorum
//                                queue, broker.url listing the nodes), and the RabbitMQ faults hit
//                                one node chosen at random instead of the whole broker
//
// Why asynchronous commits by default: on a machine whose fsync takes milliseconds, synchronous
// commits cap the load at a few hundred events per second. No acknowledged commit can be lost by
// it here: with asynchronous commits the primary is only ever stopped with a fast shutdown, which
// flushes the WAL, never crashed (primary-kill9 is planned only with OUTBOX_CHAOS_ASYNC_COMMIT=0);
// and the check that every commit a writer saw succeed is in the outbox would catch it.
//
// The workload: each writer creates (30%), updates (55%) and deletes (15%) parking slots of a
// shared pool through examples/parking (row and event in one transaction, as the CLI does). Writer 0
// is a laggard that holds each of its transactions open for 0.1-1.5s before it commits, so
// commits land out of position order all the time and other writers queue on its row locks. Each writer logs the event id it
// committed (a commit whose outcome is unknown, because the primary went away during it, is logged
// as in doubt and resolved at the end from the primary's outbox).
//
// The faults, one after another, spread evenly over the events (fault i waits until i/(M+1) of
// the events are committed; the writers go on until every fault has been injected):
//   relay-kill9          kill -9 of the relay at a random moment, restarted after up to 1s
//   relay-crash-confirm  a relay killed between the broker's confirm and its mark (failpoint)
//   replicate-crash      replicate killed mid-batch, before or after its commit (failpoint)
//   replicate-kill9      kill -9 of replicate at a random moment
//   rabbitmq-restart     the RabbitMQ node stopped and started
//   rabbitmq-kill9       the RabbitMQ node crashed (SIGKILL to all its processes) and started again
//                        (on the cluster: one node stopped and started, one node crashed and
//                        started, then the suite waits until the cluster is whole again)
//   primary-restart      the primary PostgreSQL stopped and started
//   primary-kill9        the primary PostgreSQL crashed (SIGKILL to all its processes), restarted
//                        after up to 1s with crash recovery; only with OUTBOX_CHAOS_ASYNC_COMMIT=0
//   replica-outage       the replica PostgreSQL stopped for OUTBOX_CHAOS_REPLICA_OUTAGE seconds
//   replica-kill9        the replica PostgreSQL crashed (SIGKILL to all its processes), restarted
//                        after up to 1s with crash recovery
//   two-relays           a second relay instance started, then one of the two killed
//   poison-row           a slot whose events the replica refuses (a replica-only CHECK constraint),
//                        followed by two updates that must wait behind it
//   poison-message       a malformed message (not JSON, no message_id) published to the exchange
//
// After the writers and faults stop, the suite waits until every committed event is either applied
// or parked, fixes the poison (drops the constraint, `outbox failed retry --all`, and discards the
// malformed messages that no fix can help), waits for `outbox check` to report OK, and asserts:
//   1. `outbox verify` reports the replica equal to the primary;
//   2. every event id committed on the primary was applied exactly once in effect, and no version
//      went backwards at the replica (no event applied after a newer one of its aggregate);
//   3. per aggregate, the order of application equals the commit order: for one aggregate, commit
//      order is version order (every write locks the row), and the events reach the replica
//      queue's twin (an audit queue bound to the same exchange) first in version order;
//   4. nothing is left unroutable, dead-lettered or parked.
// The relay runs with on_publish = mark and a long retention, so the primary keeps every event id.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/error.hpp"
#include "core/pg.hpp"
#include "examples/parking/parking.hpp"
#include "migrate/pack.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/cluster.hpp"
#include "tests/integration/support/harness.hpp"

using namespace outbox::testing;
namespace parking = outbox::parking;
namespace amqp = outbox::amqp;
using Clock = std::chrono::steady_clock;

namespace {

long long env_number(const char* name, long long fallback) {
  const char* value = std::getenv(name);
  if (!value || !*value) return fallback;
  return std::stoll(value);
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::string fixed(double value, int digits = 1) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, value);
  return buffer;
}

void say(const std::string& line) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  std::cerr << "[chaos] " << line << std::endl;
}

// A uuid as 128 bits, for sets of a million ids.
struct Id {
  uint64_t high = 0, low = 0;
  bool operator==(const Id&) const = default;
};
struct IdHash {
  size_t operator()(const Id& id) const { return std::hash<uint64_t>()(id.high * 31 + id.low); }
};
Id parse_id(const std::string& text) {
  Id id;
  int digits = 0;
  for (char c : text) {
    if (c == '-') continue;
    uint64_t v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10);
    (digits < 16 ? id.high : id.low) = ((digits < 16 ? id.high : id.low) << 4) | v;
    ++digits;
  }
  return id;
}

const std::vector<std::string> kRelayArgs = {"relay",
                                             "--set",
                                             "relay.heartbeat_interval=1s",
                                             "--set",
                                             "relay.poll_interval=200ms",
                                             "--set",
                                             "relay.retention=30d",
                                             "--set",
                                             "relay.on_publish=mark",
                                             "--set",
                                             "relay.max_backoff=1s",
                                             "--set",
                                             "relay.takeover_timeout=2s",
                                             "--set",
                                             "relay.confirm_timeout=5s"};
const std::vector<std::string> kReplicateArgs = {"replicate",
                                                 "--set",
                                                 "replicate.max_backoff=1s",
                                                 "--set",
                                                 "replicate.record_event_ids=true",
                                                 "--set",
                                                 "replicate.max_attempts=2"};

// ------------------------------------------------------------------ the workload

struct Committed {
  std::string event_id, aggregate;
  long long version = 0;
  bool in_doubt = false;
};

class Generator {
 public:
  Generator(long long target, int writers, uint64_t seed, bool async_commit)
      : target_(target), writers_(writers), seed_(seed), async_commit_(async_commit) {}

  void start() {
    for (int i = 0; i < writers_; ++i) threads_.emplace_back([this, i] { run(i); });
  }
  void join() {
    for (auto& thread : threads_) thread.join();
    threads_.clear();
  }
  long long committed() const { return committed_; }
  // The writers write at least `target` events, and go on until the faults are done, so that every
  // fault meets a write load.
  void faults_done() { faults_done_ = true; }
  bool done() const { return done_writers_ == writers_; }
  std::vector<Committed> log() {
    std::lock_guard lock(mutex_);
    return log_;
  }
  // A write of the chaos driver itself (the poison rows), logged like the writers'.
  void record(const Committed& entry) {
    std::lock_guard lock(mutex_);
    log_.push_back(entry);
  }
  std::atomic<long long> creates{0}, updates{0}, deletes{0}, held{0}, errors{0}, in_doubt{0};

 private:
  std::optional<std::string> take(std::mt19937_64& random, bool remove) {
    std::lock_guard lock(mutex_);
    if (pool_.empty()) return std::nullopt;
    size_t index = random() % pool_.size();
    std::string uuid = pool_[index];
    if (remove) {
      pool_[index] = pool_.back();
      pool_.pop_back();
    }
    return uuid;
  }
  void give(const std::string& uuid) {
    std::lock_guard lock(mutex_);
    pool_.push_back(uuid);
  }

  void run(int writer) {
    std::mt19937_64 random(seed_ * 1000 + static_cast<uint64_t>(writer));
    std::unique_ptr<pqxx::connection> connection;
    const char* statuses[] = {"available", "blocked", "reserved"};
    // Names that must round-trip exactly: quotes, SQL metacharacters, Unicode.
    const char* flavours[] = {"", " ü", "'; DROP TABLE parking_slots; --", " \"q\" \\ %_", " 駐車場 🚗"};
    long long sequence = 0;
    while (committed_ < target_ || !faults_done_) {
      std::optional<std::string> removed;  // a delete's uuid, given back if its transaction fails
      try {
        if (!connection) {
          connection = std::make_unique<pqxx::connection>(servers().primary_url);
          if (async_commit_) pqxx::nontransaction(*connection).exec("SET synchronous_commit = off");
        }
        int dice = static_cast<int>(random() % 100);
        parking::Slot slot;
        std::string kind;
        std::string event_id;
        bool commit_in_doubt = false;
        {
          pqxx::work tx(*connection);
          std::optional<std::string> target;
          if (dice >= 30) target = take(random, dice >= 85);
          if (dice >= 85 && target) removed = target;
          if (!target) {
            std::string name = "w" + std::to_string(writer) + "-" + std::to_string(sequence++) + flavours[random() % 5];
            slot = parking::create(tx, name, statuses[random() % 3]);
            kind = "create";
          } else if (dice >= 85) {
            slot = parking::remove(tx, *target);
            kind = "delete";
          } else {
            std::optional<std::string> name;
            if (random() % 4 == 0)
              name = "w" + std::to_string(writer) + "-" + std::to_string(sequence++) + flavours[random() % 5];
            slot = parking::update(tx, *target, name, std::string(statuses[random() % 3]));
            kind = "update";
          }
          event_id = tx.exec1(
                           "SELECT event_id::text FROM outbox WHERE position = (SELECT "
                           "currval(pg_get_serial_sequence('public.outbox', 'position')))")[0]
                         .as<std::string>();
          if (writer == 0) {
            // The laggard: its transactions stay open while the others commit higher positions.
            ++held;
            std::this_thread::sleep_for(std::chrono::milliseconds(100 + random() % 1400));
          }
          try {
            tx.commit();
          } catch (const pqxx::in_doubt_error&) {
            commit_in_doubt = true;
          }
        }
        // Only now, with the transaction gone: libpqxx's transaction unregisters itself from its
        // connection when destroyed after a commit in doubt, and a connection dropped before that
        // was a use after free (a segfault of the whole suite, once in CI).
        if (commit_in_doubt) {
          ++in_doubt;
          record({event_id, slot.uuid, slot.version, true});
          connection.reset();
          continue;  // a create or delete in doubt is left out of the pool
        }
        record({event_id, slot.uuid, slot.version, false});
        if (kind == "create") give(slot.uuid), ++creates;
        if (kind == "update") ++updates;
        if (kind == "delete") ++deletes;
        ++committed_;
      } catch (const outbox::Error&) {
        // "not found": another writer deleted the slot first. Nothing was written.
      } catch (const std::exception& error) {
        if (removed) give(*removed);
        ++errors;
        if (outbox::pg::is_connection_error(error) || dynamic_cast<const pqxx::broken_connection*>(&error)) {
          connection.reset();
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        } else if (errors < 5) {
          say("writer " + std::to_string(writer) + ": " + std::string(error.what()).substr(0, 200));
        }
      }
    }
    ++done_writers_;
  }

  long long target_;
  int writers_;
  uint64_t seed_;
  bool async_commit_;
  std::vector<std::thread> threads_;
  std::atomic<long long> committed_{0};
  std::atomic<int> done_writers_{0};
  std::atomic<bool> faults_done_{false};
  std::mutex mutex_;
  std::vector<std::string> pool_;
  std::vector<Committed> log_;
};

// ------------------------------------------------------------------ the audit queue

// A durable queue bound to the exchange like the replica's queue; it records the order in which
// each aggregate's events first arrive, and how many arrived again (duplicates the pipeline made).
class Audit {
 public:
  static constexpr const char* kQueue = "chaos.audit";
  explicit Audit(long long pack) {
    auto connection = broker_connection();
    declare_outbox_exchange(*connection);
    // On the cluster a quorum queue, so that it outlives the loss of any one node.
    amqp::QueueOptions options;
    options.quorum = servers().broker_is_cluster;
    connection->declare_queue(kQueue, options);
    connection->bind_queue(kQueue, "outbox", "parking.#");
    if (pack > 1) {
      declare_outbox_exchange(*connection, "outbox.packed");
      connection->bind_queue(kQueue, "outbox.packed", "parking.#");
    }
  }
  // A failed assertion leaves the test early: the reader still running then made std::thread's
  // destructor abort the whole binary, and the report of the failure was cut short.
  ~Audit() { stop(); }
  Audit(const Audit&) = delete;
  Audit& operator=(const Audit&) = delete;
  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  size_t distinct() {
    std::lock_guard lock(mutex_);
    return seen_.size();
  }
  long long duplicates() const { return duplicates_; }
  long long redelivered() const { return redelivered_; }
  long long out_of_order() const { return out_of_order_; }
  long long malformed() const { return malformed_; }
  std::vector<std::string> violations() {
    std::lock_guard lock(mutex_);
    return violations_;
  }

 private:
  void take(const amqp::IncomingMessage& message) {
    if (!message.message_id || header_text(message, "aggregate_type") != "parking_slot") {
      ++malformed_;
      return;
    }
    std::lock_guard lock(mutex_);
    if (!seen_.insert(parse_id(*message.message_id)).second) {
      // Seen before: a duplicate of the pipeline (or our own redelivery after a broker restart).
      (message.redelivered ? redelivered_ : duplicates_)++;
      return;
    }
    std::string aggregate = header_text(message, "aggregate_id");
    long long version = header_number(message, "aggregate_version");
    long long& last = last_version_[aggregate];
    if (version <= last) {
      ++out_of_order_;
      if (violations_.size() < 10)
        violations_.push_back(aggregate + ": v" + std::to_string(version) + " arrived first after v" + std::to_string(last));
    }
    last = std::max(last, version);
  }
  void run() {
    consume_until(stop_, kQueue, "chaos-audit", 2000, [&](amqp::Connection&, const std::vector<amqp::IncomingMessage>& round) {
      for (const auto& message : round) {
        if (!outbox::pack::is_pack(message)) {
          take(message);
          continue;
        }
        for (const outbox::pack::Unpacked& event : outbox::pack::unpack(message)) take(event.message);
      }
    });
  }
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::unordered_set<Id, IdHash> seen_;
  std::unordered_map<std::string, long long> last_version_;
  std::vector<std::string> violations_;
  std::atomic<long long> duplicates_{0}, redelivered_{0}, out_of_order_{0}, malformed_{0};
};

// ------------------------------------------------------------------ the daemons and the faults

class Pipeline {
 public:
  Pipeline(long long apply_connections, long long pack) : apply_connections_(apply_connections), pack_(pack) {}
  void start_relay(std::map<std::string, std::string> env = {}, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = kRelayArgs;
    args.insert(args.end(), {"--set", "relay.pack=" + std::to_string(pack_)});
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--instance", "relay-" + std::to_string(++relay_number_)});
    relays_.push_back(std::make_unique<Daemon>(args, env));
  }
  void start_replicate(std::map<std::string, std::string> env = {}) {
    std::vector<std::string> args = kReplicateArgs;
    args.insert(args.end(), {"--set", "replicate.apply_connections=" + std::to_string(apply_connections_)});
    args.insert(args.end(), {"--set", "relay.pack=" + std::to_string(pack_)});
    replicate_ = std::make_unique<Daemon>(args, env);
  }
  // kill -9 of relay `index` (or a random one).
  void kill_relay(size_t index) {
    relays_.at(index)->kill9();
    relays_.at(index)->wait_exit(10s);
    dead_.push_back(std::move(relays_.at(index)));
    relays_.erase(relays_.begin() + static_cast<long>(index));
  }
  void kill_replicate() {
    replicate_->kill9();
    replicate_->wait_exit(10s);
    dead_.push_back(std::move(replicate_));
  }
  // Waits for a daemon that runs with a crash failpoint to die by it.
  bool wait_crash(Daemon& daemon, std::chrono::milliseconds timeout) {
    auto status = daemon.wait_exit(timeout);
    if (!status) daemon.kill9(), daemon.wait_exit(10s);
    return status && *status == 128 + SIGKILL;
  }
  size_t relays() const { return relays_.size(); }
  Daemon& relay(size_t index) { return *relays_.at(index); }
  Daemon& replicate() { return *replicate_; }
  // Daemons that exited although nobody killed them.
  std::vector<std::string> unexpected_exits() {
    std::vector<std::string> out;
    for (auto& relay : relays_)
      if (!relay->running()) out.push_back("relay (" + relay->log_path() + ")");
    if (replicate_ && !replicate_->running()) out.push_back("replicate (" + replicate_->log_path() + ")");
    return out;
  }
  void keep(std::unique_ptr<Daemon> daemon) { dead_.push_back(std::move(daemon)); }

 private:
  std::vector<std::unique_ptr<Daemon>> relays_;
  std::unique_ptr<Daemon> replicate_;
  std::vector<std::unique_ptr<Daemon>> dead_;
  int relay_number_ = 0;
  long long apply_connections_;
  long long pack_;
};

enum class Fault {
  relay_kill9,
  relay_crash_confirm,
  replicate_crash,
  replicate_kill9,
  rabbitmq_restart,
  rabbitmq_kill9,
  primary_restart,
  replica_outage,
  replica_kill9,
  two_relays,
  poison_row,
  poison_message,
  primary_kill9,  // last: only in the plan when the writers commit synchronously
};

const char* fault_name(Fault fault) {
  switch (fault) {
    case Fault::relay_kill9:
      return "relay-kill9";
    case Fault::relay_crash_confirm:
      return "relay-crash-confirm";
    case Fault::replicate_crash:
      return "replicate-crash";
    case Fault::replicate_kill9:
      return "replicate-kill9";
    case Fault::rabbitmq_restart:
      return "rabbitmq-restart";
    case Fault::rabbitmq_kill9:
      return "rabbitmq-kill9";
    case Fault::replica_kill9:
      return "replica-kill9";
    case Fault::primary_restart:
      return "primary-restart";
    case Fault::replica_outage:
      return "replica-outage";
    case Fault::two_relays:
      return "two-relays";
    case Fault::poison_row:
      return "poison-row";
    case Fault::primary_kill9:
      return "primary-kill9";
    case Fault::poison_message:
      return "poison-message";
  }
  return "?";
}

// Every kind once (relay-kill9 three times) in a random order, then random kinds. A crash of the
// primary can lose commits that were acknowledged with synchronous_commit = off, so primary-kill9
// is only planned when the writers commit synchronously.
std::vector<Fault> fault_plan(long long count, std::mt19937_64& random, bool primary_may_crash) {
  std::vector<Fault> base = {Fault::relay_kill9,     Fault::relay_kill9,      Fault::relay_crash_confirm, Fault::replicate_crash,
                             Fault::replicate_kill9, Fault::rabbitmq_restart, Fault::rabbitmq_kill9,      Fault::primary_restart,
                             Fault::replica_outage,  Fault::replica_kill9,    Fault::two_relays,          Fault::poison_row,
                             Fault::poison_message,  Fault::relay_kill9};
  if (primary_may_crash) base.push_back(Fault::primary_kill9);
  std::shuffle(base.begin(), base.end(), random);
  int kinds = static_cast<int>(primary_may_crash ? Fault::primary_kill9 : Fault::poison_message) + 1;
  std::vector<Fault> plan;
  for (long long i = 0; i < count; ++i)
    plan.push_back(i < static_cast<long long>(base.size()) ? base[static_cast<size_t>(i)]
                                                           : static_cast<Fault>(random() % static_cast<uint64_t>(kinds)));
  return plan;
}

struct Injector {
  Injector(Pipeline& p, Generator& g, std::mt19937_64& r, std::chrono::seconds outage)
      : pipeline(p), generator(g), random(r), replica_outage(outage) {}
  Pipeline& pipeline;
  Generator& generator;
  std::mt19937_64& random;
  std::chrono::seconds replica_outage;
  int triggers = 0;
  int poison_rows = 0, poison_messages = 0, replicate_crashes = 0;
  std::vector<std::string> poison_aggregates;
  std::map<std::string, int> counts;
  std::vector<std::string> problems;

  std::chrono::milliseconds jitter(int max_ms) { return std::chrono::milliseconds(random() % static_cast<uint64_t>(max_ms)); }

  // One node of the cluster stopped (or crashed) at a random moment and started after up to 1s;
  // the next fault waits until the cluster is whole again (a second node down would leave the
  // quorum queues without a majority: an outage, not a node fault).
  void restart_node(bool crash) {
    int node = 1 + static_cast<int>(random() % 3);
    std::this_thread::sleep_for(jitter(1000));
    if (crash) {
      kill_node(node);
    } else {
      stop_node(node);
    }
    std::this_thread::sleep_for(jitter(1000));
    start_node(node);
    if (!await_cluster_whole()) problems.push_back("the cluster was not whole again after rabbitmq-" + std::to_string(node));
  }

  // A server crash (SIGKILL) at a random moment, and its restart after up to 1s.
  void crash_and_restart(const std::string& server) {
    std::this_thread::sleep_for(jitter(1000));
    kill_server(server);
    std::this_thread::sleep_for(jitter(1000));
    start_server(server);
  }

  // Creates a slot and updates it (steps - 1) times, each in its own transaction, logged like
  // the writers' commits. Returns its uuid.
  std::string write_slot(const std::string& name, int steps) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      try {
        auto connection = connect(servers().primary_url);
        std::string uuid;
        for (int step = 0; step < steps; ++step) {
          pqxx::work tx(connection);
          parking::Slot slot = step == 0
                                   ? parking::create(tx, name, "available")
                                   : parking::update(tx, uuid, std::nullopt, std::string(step % 2 ? "blocked" : "reserved"));
          uuid = slot.uuid;
          std::string event_id = tx.exec1(
                                       "SELECT event_id::text FROM outbox WHERE position = (SELECT "
                                       "currval(pg_get_serial_sequence('public.outbox', 'position')))")[0]
                                     .as<std::string>();
          tx.commit();
          generator.record({event_id, slot.uuid, slot.version, false});
        }
        return uuid;
      } catch (const std::exception&) {
        std::this_thread::sleep_for(200ms);  // the primary may be restarting
      }
    }
    problems.push_back("could not write " + name + " on the primary");
    return "";
  }

  void inject(Fault fault) {
    ++counts[fault_name(fault)];
    switch (fault) {
      case Fault::relay_kill9: {
        std::this_thread::sleep_for(jitter(1500));
        if (pipeline.relays() > 0) pipeline.kill_relay(random() % pipeline.relays());
        std::this_thread::sleep_for(jitter(1000));
        if (pipeline.relays() == 0) pipeline.start_relay();
        break;
      }
      case Fault::relay_crash_confirm: {
        // Without heartbeats, so that the batch it dies after is one of parking events: the new
        // relay publishes them again (duplicates with the same message_id).
        while (pipeline.relays() > 0) pipeline.kill_relay(0);
        pipeline.start_relay({{"OUTBOX_FAILPOINTS", "relay.after_confirm=crash"}}, {"--set", "relay.heartbeat_interval=0"});
        write_slot("trigger-" + std::to_string(++triggers), 1);
        if (!pipeline.wait_crash(pipeline.relay(0), 60s)) problems.push_back("the relay did not crash at relay.after_confirm");
        pipeline.kill_relay(0);
        pipeline.start_relay();
        break;
      }
      case Fault::replicate_crash: {
        const char* point = (replicate_crashes++ % 2 == 0) ? "replicate.before_commit=crash" : "replicate.after_commit=crash";
        pipeline.kill_replicate();
        pipeline.start_replicate({{"OUTBOX_FAILPOINTS", point}});
        if (!pipeline.wait_crash(pipeline.replicate(), 60s))
          problems.push_back(std::string("replicate did not crash at ") + point);
        pipeline.kill_replicate();
        pipeline.start_replicate();
        break;
      }
      case Fault::replicate_kill9: {
        std::this_thread::sleep_for(jitter(1500));
        pipeline.kill_replicate();
        std::this_thread::sleep_for(jitter(1000));
        pipeline.start_replicate();
        break;
      }
      case Fault::rabbitmq_restart:
        if (servers().broker_is_cluster) return restart_node(false);
        stop_server("rabbitmq");
        std::this_thread::sleep_for(1s);
        start_server("rabbitmq");
        break;
      case Fault::rabbitmq_kill9:
        // Confirmed messages were on disk before their confirm; unacked deliveries come again.
        if (servers().broker_is_cluster) return restart_node(true);
        crash_and_restart("rabbitmq");
        break;
      case Fault::replica_kill9:
        // replicate acks a batch only after its commit, which is on disk: crash recovery keeps it.
        crash_and_restart("replica");
        break;
      case Fault::primary_kill9:
        // The writers commit synchronously: a commit they saw succeed is on disk; one the crash
        // interrupted is in doubt and resolved from the outbox at the end. The relay loses its
        // connection mid-poll or mid-mark and publishes again what it had not marked.
        crash_and_restart("primary");
        break;
      case Fault::primary_restart:
        stop_server("primary");
        std::this_thread::sleep_for(jitter(1000));
        start_server("primary");
        break;
      case Fault::replica_outage:
        stop_server("replica");
        std::this_thread::sleep_for(replica_outage);
        start_server("replica");
        break;
      case Fault::two_relays: {
        pipeline.start_relay();
        std::this_thread::sleep_for(2s + jitter(2000));
        pipeline.kill_relay(random() % pipeline.relays());
        break;
      }
      case Fault::poison_row:
        // Written like any slot; the replica's CHECK constraint refuses the name until it is dropped.
        poison_aggregates.push_back(write_slot("poison-" + std::to_string(++poison_rows), 3));
        break;
      case Fault::poison_message: {
        for (int attempt = 0; attempt < 100; ++attempt) {
          try {
            auto connection = broker_connection();
            amqp::OutgoingMessage message;
            message.exchange = "outbox";
            message.routing_key = "parking.update";
            message.type = "parking.update";
            message.body = "{not json at all";
            connection->publish(message);
            connection->inspect_queue("outbox.replica.main");  // a round trip: it has arrived
            ++poison_messages;
            break;
          } catch (const std::exception&) {
            std::this_thread::sleep_for(200ms);  // the broker may be restarting
          }
        }
        break;
      }
    }
  }
};

std::string count(const std::string& url, const std::string& sql) { return scalar(url, "SELECT count(*) FROM " + sql); }

// count and md5 of the sorted event ids of parking events.
std::string digest(const std::string& url, const std::string& table) {
  return scalar(url, "SELECT count(*) || ' ' || coalesce(md5(string_agg(event_id::text, ',' ORDER BY event_id)), '') FROM " +
                         table + " WHERE aggregate_type = 'parking_slot'");
}

}  // namespace

TEST(Chaos, NothingLostDuplicatedInEffectOrReorderedUnderFaults) {
  const long long events = env_number("OUTBOX_CHAOS_EVENTS", 20000);
  const long long faults = env_number("OUTBOX_CHAOS_FAULTS", 14);
  const int writers = static_cast<int>(env_number("OUTBOX_CHAOS_WRITERS", 4));
  const auto outage = std::chrono::seconds(env_number("OUTBOX_CHAOS_REPLICA_OUTAGE", 10));
  const bool async_commit = env_number("OUTBOX_CHAOS_ASYNC_COMMIT", 1) != 0;
  const long long apply_connections = env_number("OUTBOX_CHAOS_APPLY_CONNECTIONS", 1);
  const long long pack = env_number("OUTBOX_CHAOS_PACK", 1);
  const uint64_t seed = static_cast<uint64_t>(
      env_number("OUTBOX_CHAOS_SEED",
                 std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()));
  say("events " + std::to_string(events) + ", faults " + std::to_string(faults) + ", writers " + std::to_string(writers) +
      ", replica outage " + std::to_string(outage.count()) + "s, writers' synchronous_commit " + (async_commit ? "off" : "on") +
      ", replicate.apply_connections " + std::to_string(apply_connections) + ", relay.pack " + std::to_string(pack) + ", seed " +
      std::to_string(seed) + " (OUTBOX_CHAOS_SEED=" + std::to_string(seed) + " repeats the plan)");
  std::mt19937_64 random(seed);

  if (env_number("OUTBOX_CHAOS_CLUSTER", 0) != 0) {
    ASSERT_FALSE(start_cluster().broker_url.empty());
    use_broker(cluster().broker_url, "[broker]\nqueue_type = \"quorum\"\n[replicas.main]\nqueue_type = \"quorum\"\n");
    say("on the 3-node RabbitMQ cluster " + cluster().broker_url);
  }
  reset_databases();
  ASSERT_TRUE(migrate_all());
  if (pack > 1) {
    // The replica's queue bound to the pack exchange before the relay publishes its first pack.
    RunResult migrated = run_outbox({"migrate", "--set", "relay.pack=" + std::to_string(pack)});
    ASSERT_EQ(migrated.exit_code, 0) << migrated;
  }
  exec(servers().replica_url, "ALTER TABLE parking_slots ADD CONSTRAINT chaos_poison CHECK (name NOT LIKE 'poison-%')");
  Audit audit(pack);
  audit.start();
  Pipeline pipeline(apply_connections, pack);
  pipeline.start_relay();
  pipeline.start_replicate();

  Generator generator(events, writers, seed, async_commit);
  auto begin = Clock::now();
  generator.start();
  Injector injector{pipeline, generator, random, outage};
  std::vector<Fault> plan = fault_plan(faults, random, !async_commit);
  for (size_t i = 0; i < plan.size(); ++i) {
    long long threshold = events * static_cast<long long>(i + 1) / (faults + 1);
    while (generator.committed() < threshold) std::this_thread::sleep_for(20ms);
    auto started = Clock::now();
    injector.inject(plan[i]);
    say("fault " + std::to_string(i + 1) + "/" + std::to_string(plan.size()) + " " + fault_name(plan[i]) + " at " +
        std::to_string(generator.committed()) + " events, took " + fixed(seconds_since(started)) + "s");
  }
  generator.faults_done();
  generator.join();
  double load_seconds = seconds_since(begin);
  auto quiet = Clock::now();
  say("writers done: " + std::to_string(generator.committed()) + " events in " + fixed(load_seconds) + "s (" +
      std::to_string(generator.creates) + " creates, " + std::to_string(generator.updates) + " updates, " +
      std::to_string(generator.deletes) + " deletes; " + std::to_string(generator.held) + " transactions held open; " +
      std::to_string(generator.errors) + " failed attempts retried; " + std::to_string(generator.in_doubt) +
      " commits in doubt)");
  for (const std::string& problem : injector.problems) ADD_FAILURE() << problem;
  std::vector<std::string> exits = pipeline.unexpected_exits();
  EXPECT_TRUE(exits.empty()) << "daemons exited without being killed: " << exits.size() << ", first: " << exits.front();

  // Everything committed is either applied or parked (the poison and what waits behind it).
  const std::string& primary = servers().primary_url;
  const std::string& replica = servers().replica_url;
  long long primary_events = std::stoll(count(primary, "outbox WHERE aggregate_type = 'parking_slot'"));
  auto settled = [&] {
    long long applied = std::stoll(count(replica, "outbox_applied_events WHERE aggregate_type = 'parking_slot'"));
    long long failed = std::stoll(count(replica, "outbox_failed_events WHERE aggregate_type = 'parking_slot'"));
    long long malformed = std::stoll(count(replica, "outbox_failed_events WHERE aggregate_id IS NULL"));
    // A malformed message has no event id to deduplicate it: a crash of replicate between parking
    // it and its ack parks it twice. Every copy is discarded below.
    return applied + failed == primary_events && malformed >= injector.poison_messages;
  };
  ASSERT_TRUE(eventually(settled, std::chrono::minutes(10)))
      << "the pipeline did not settle: " << count(primary, "outbox WHERE published_at IS NULL") << " unpublished, "
      << count(replica, "outbox_applied_events") << " applied, " << primary_events << " on the primary\n"
      << pipeline.replicate().log();
  double settle_seconds = seconds_since(quiet);

  // 4 (before the fix): what is parked is the injected poison and nothing else.
  long long malformed_rows = std::stoll(count(replica, "outbox_failed_events WHERE aggregate_id IS NULL"));
  EXPECT_EQ(count(replica, "outbox_failed_events WHERE state = 'parked'"), std::to_string(injector.poison_rows + malformed_rows));
  std::string poison_list =
      outbox::pg::array_literal(injector.poison_aggregates.empty() ? std::vector<std::string>{"-"} : injector.poison_aggregates);
  EXPECT_EQ(
      count(replica, "outbox_failed_events WHERE aggregate_id IS NOT NULL AND NOT aggregate_id = ANY('" + poison_list + "')"),
      "0");
  EXPECT_EQ(count(replica, "outbox_failed_events WHERE state = 'waiting'"), std::to_string(2 * injector.poison_rows));

  // The fix: drop the constraint, retry everything; the malformed messages fail again and are discarded.
  exec(replica, "ALTER TABLE parking_slots DROP CONSTRAINT chaos_poison");
  // The retry applies events as replicate does, with the same settings: its event ids are counted
  // below too.
  RunResult retry = run_outbox({"failed", "retry", "--all", "--set", "replicate.record_event_ids=true"});
  EXPECT_EQ(retry.exit_code, injector.poison_messages ? 65 : 0) << retry;
  for (const auto& row : rows(replica, "SELECT id FROM outbox_failed_events ORDER BY id")) {
    RunResult discard = run_outbox({"failed", "discard", row[0]});
    EXPECT_EQ(discard.exit_code, 0) << discard;
  }
  EXPECT_EQ(count(replica, "outbox_failed_events"), "0");

  RunResult check;
  EXPECT_TRUE(eventually([&] { return (check = run_outbox({"check"})).exit_code == 0; }, 120s)) << check;
  double converge_seconds = seconds_since(quiet);

  // 1. verify: equal.
  RunResult verify = run_outbox({"verify", "--json"});
  EXPECT_EQ(verify.exit_code, 0) << verify;
  nlohmann::json verified = nlohmann::json::parse(verify.out, nullptr, false);

  // 2. Exactly once in effect, no version backwards.
  EXPECT_EQ(digest(primary, "outbox"), digest(replica, "outbox_applied_events"));
  EXPECT_EQ(count(replica, "outbox_applied_events WHERE aggregate_type = 'parking_slot' AND NOT effective"), "0");
  std::vector<Committed> log = generator.log();
  std::unordered_set<Id, IdHash> on_primary;
  for (const auto& row : rows(primary, "SELECT event_id::text FROM outbox WHERE aggregate_type = 'parking_slot'"))
    on_primary.insert(parse_id(row[0]));
  long long lost = 0, doubt_committed = 0;
  std::unordered_map<std::string, long long> last_version;
  long long version_order_violations = 0;
  for (const Committed& entry : log) {
    bool there = on_primary.count(parse_id(entry.event_id)) > 0;
    if (entry.in_doubt) {
      doubt_committed += there;
      continue;
    }
    if (!there) ++lost;
  }
  EXPECT_EQ(lost, 0) << "commits the writers saw succeed are missing from the primary's outbox";
  EXPECT_EQ(static_cast<long long>(on_primary.size()), static_cast<long long>(log.size()) - generator.in_doubt + doubt_committed)
      << "the primary's outbox holds parking events that no writer committed";

  // 3. Order: every aggregate's events reached the audit queue first in version (= commit) order.
  EXPECT_TRUE(eventually([&] { return audit.distinct() >= on_primary.size(); }, 120s))
      << audit.distinct() << " of " << on_primary.size() << " events reached the audit queue";
  audit.stop();
  EXPECT_EQ(audit.out_of_order(), 0) << "first violations: " << (audit.violations().empty() ? "" : audit.violations().front());
  (void)version_order_violations;

  // 4. Nothing unroutable, dead-lettered or parked.
  EXPECT_EQ(TestQueue::depth("outbox.unroutable"), 0u);
  EXPECT_EQ(TestQueue::depth("outbox.dead-letter"), 0u);
  EXPECT_EQ(count(replica, "outbox_failed_events"), "0");

  std::string fault_summary;
  for (const auto& [name, n] : injector.counts)
    fault_summary += (fault_summary.empty() ? "" : ", ") + name + " x" + std::to_string(n);
  long long total_faults = 0;
  for (const auto& [name, n] : injector.counts) total_faults += n;
  say("SUMMARY events " + std::to_string(on_primary.size()) + " committed (" + std::to_string(generator.committed()) +
      " by the writers, " + std::to_string(3 * injector.poison_rows + injector.triggers) +
      " by the fault injector), written in " + fixed(load_seconds) + "s (" +
      fixed(static_cast<double>(generator.committed()) / load_seconds, 0) + "/s)");
  say("SUMMARY faults " + std::to_string(total_faults) + ": " + fault_summary);
  say("SUMMARY duplicates delivered " + std::to_string(audit.duplicates()) +
      " (same event id published again; each applied once: 0 duplicate effects, 0 stale versions), commits in doubt " +
      std::to_string(generator.in_doubt) + " (" + std::to_string(doubt_committed) + " had committed)");
  say("SUMMARY poison " + std::to_string(injector.poison_rows) + " rows (+" + std::to_string(2 * injector.poison_rows) +
      " waiting behind them) retried after the fix, " + std::to_string(injector.poison_messages) +
      " malformed messages discarded");
  say("SUMMARY converged " + fixed(converge_seconds) + "s after the last write and fault (settled in " + fixed(settle_seconds) +
      "s; then fix, retry, check OK); verify " + (verify.exit_code == 0 ? "equal" : "NOT equal") + " over " +
      (verified.is_object() ? std::to_string(verified["tables"][0]["primary_rows"].get<long long>()) : std::string("?")) +
      " rows; total " + fixed(seconds_since(begin)) + "s");
}
