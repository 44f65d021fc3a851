#pragma once
// Applies events to one replica database: set-based, version-guarded, idempotent, with poison
// events isolated and parked. Used by the replicate daemon for every batch and by
// `outbox failed retry|discard` for parked events, so both go through the same code.
//
// One batch = one transaction:
//   1. pg_advisory_xact_lock_shared(kApplyLockClass, hashtext(replica)): batches hold it shared,
//      `outbox failed` commands exclusive, so a retry never races a batch over an aggregate.
//   2. One statement (prepared at start) takes the whole batch as one array per column (the
//      payloads one JSON array) and lets PostgreSQL expand it (unnest, jsonb_populate_record).
//      Where every upserted table has plain column types (ReplicaTable::typed), a second statement
//      takes the upserts' columns as text arrays instead of their payloads, which replicate reads
//      (column_texts) when it can read them exactly as jsonb_populate_record would; a batch with a
//      payload it cannot takes the first:
//        - events of an aggregate that has failed events are left out and returned ("blocked");
//        - a redelivered event is a no-op by the version guard alone (every event has a version);
//        - the version guard: an event is effective only when its aggregate_version is newer than
//          outbox_aggregate_versions has and, on a table with a version column, than the row it
//          writes has; for each row (table and payload key) the newest event of the batch writes
//          it, if effective (upsert from the payload, or delete). The daemon marks the newest of
//          each row and the event ids repeated in the batch (newest_of_rows), and the upsert of a
//          versioned table checks the row's version only in its own guard, so the replica sorts
//          nothing and probes each row once. A versioned row keeps its version
//          itself (the upsert writes the event's); outbox_aggregate_versions gets, per aggregate,
//          the newest delete (a tombstone version, so a late older create stays a no-op) or write
//          of a table without a version column;
//        - with replicate.record_event_ids (for tracing; off by default, as it costs the replica an
//          insert and two index entries per event), every new event id goes into
//          outbox_applied_events (effective or stale), and an id found there counts as a duplicate
//          rather than as stale;
//        - outbox_applied_position and, for relay heartbeats, outbox_heartbeat are updated, except
//          by a created_at beyond the replica's clock plus replicate.max_clock_skew (counted);
//        - a stored version outside the valid range (core/aggregate_version.hpp) is beaten by any
//          event (such events are parked by check_message; an older replicate stored them).
//   3. The blocked events are recorded in outbox_failed_events with state 'waiting'.
//   4. Commit. The caller acks the broker only after this returned.
// When the statement fails because of an event (bad data, a constraint), the transaction is
// redone in isolation mode: invalid messages are parked where they are, and runs of valid events
// are applied under savepoints, halving a failing run until the failing event is alone; it is
// tried up to max_attempts times and then parked. Events before it apply; later events of its
// aggregate wait behind it; every other aggregate continues.
//
// A consumer's Applier (its mappings are handlers, `outbox consume`) runs the handler path instead of
// step 2: one call of outbox_handle_batch (migrate/sql/service/1003_handle_batch_by_size.sql) takes the batch of
// envelopes (replicate/envelope.hpp) and, per event in order: leaves it out when its aggregate has
// failed events ("blocked"), inserts its id into the inbox (outbox_applied_events; a duplicate is a
// no-op), sets outbox.correlation_id, outbox.causation_id and outbox.reply_to for the transaction,
// calls the handler and resets them; then moves the position and the heartbeat as above. A
// handler that raises fails the statement: the isolation below parks exactly that event. Events no
// handler takes go into the inbox as not effective (counted as unhandled). Consumers never apply in
// parts: handlers may touch rows of other aggregates (a saga's), which parts could deadlock on.
//
// With helper connections (replicate.apply_connections > 1) a large batch of valid events is split
// by aggregate into parts that apply at the same time, each in its own transaction: the helpers
// take the shared lock with a try (never queueing behind a waiting `outbox failed` command, so
// nothing can wait in a cycle through this process), commit as soon as their part is done, and the
// main transaction, which also moves the applied position to the batch's last event, commits last.
// Events of one aggregate stay in one part, in order. Whatever goes wrong in a part (a poison
// event, a busy lock, a lock wait across parts cut short by lock_timeout) rolls back what has not
// committed, and the whole batch is applied again on the main connection alone; parts that did
// commit are duplicates there, so their effect is nil.
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "core/amqp.hpp"
#include "core/log.hpp"
#include "replicate/apply_sql.hpp"
#include "replicate/event.hpp"

namespace outbox::replicate {

inline constexpr int kApplyLockClass = 0x6F627833;
// Session lock (class, hashtext(replica name)) held by the one daemon that serves a replica.
inline constexpr int kServeLockClass = 0x6F627834;

struct Counts {
  long long applied = 0;            // effective: the row changed
  long long stale = 0;              // version not newer than the replica's: no-op
  long long duplicate = 0;          // event id applied before (or twice in the batch): no-op
  long long parked = 0;             // poison: recorded as 'parked'
  long long waiting = 0;            // behind a parked event of its aggregate: recorded as 'waiting'
  long long heartbeats = 0;         // relay heartbeats applied
  long long skipped = 0;            // broken heartbeats, acked and dropped
  long long parts = 0;              // transactions that applied the batch in parts (0: one transaction)
  long long typed = 0;              // statements that took the upserts as columns (typed_batch_columns), not as jsonb
  long long unhandled = 0;          // a consumer's events that no handler takes (in the inbox, not effective)
  long long future = 0;             // events and heartbeats created after the replica's clock + max_clock_skew
  double future_ahead_seconds = 0;  // how far ahead the furthest of them was
  Counts& operator+=(const Counts& other);
};

// The part (0 .. parts - 1) of a batch applied in parts that takes this event: every event of an
// aggregate the same one; heartbeats part 0, the main transaction, which moves the position.
size_t part_of(const Event& event, size_t parts);

// How a failed statement is handled.
enum class Failure {
  event,       // the event's fault (bad data, a constraint): isolate and park it
  transient,   // serialization failure, deadlock, lock or statement timeout: redo the batch
  replica,     // the replica is unusable (read-only, no privilege, missing table): stop and retry later
  connection,  // the connection is gone: reconnect
};
Failure classify(const std::exception& error);
// The server's message on one line ("ERROR:  " and newlines removed).
std::string one_line(const std::string& message);

class Applier {
 public:
  // `role` names the database in errors ("replica main").
  Applier(pqxx::connection& connection, std::string replica, std::string role, std::vector<Mapping> mappings,
          std::shared_ptr<spdlog::logger> log);
  ~Applier();
  // Reads the mapped tables' columns from the catalog and prepares the statement. Throws
  // Error(config) for a missing table, key column or unique key on it, or a handler function that
  // is not there as f(jsonb).
  void prepare();
  void set_max_attempts(int attempts) { max_attempts_ = attempts; }
  // replicate.max_clock_skew: a created_at later than the replica's clock plus this is from the
  // future, and moves neither the applied position nor the heartbeat.
  void set_max_clock_skew(std::chrono::milliseconds skew) { max_clock_skew_ = skew; }
  // replicate.record_event_ids: every applied event id into outbox_applied_events (see above).
  void set_record_event_ids(bool record) { record_event_ids_ = record; }
  // Called from another thread when the shutdown timeout passed: the batch in flight stops at its
  // next statement (the caller cancels the running one) instead of trying again another way.
  void cancel() { cancelled_ = true; }
  // Connections that apply parts of large batches alongside the main one; call before prepare().
  void use_helpers(std::vector<pqxx::connection*> helpers) { helpers_ = std::move(helpers); }
  const std::vector<Mapping>& mappings() const { return mappings_; }

  // Applies the items (in delivery order) in one transaction and commits. Throws (nothing
  // committed) on transient, replica and connection failures; classify() tells which.
  Counts apply(const std::vector<Item*>& items);

  // For `outbox failed`: applies one stored message inside the caller's transaction (which holds
  // the lock), ignoring the aggregate's failed events. Returns "" or why it failed; a failure is
  // rolled back to a savepoint, so the transaction stays usable.
  std::string apply_one(pqxx::dbtransaction& tx, const amqp::IncomingMessage& message, Counts& counts);
  // The exclusive lock of `outbox failed` commands.
  void lock(pqxx::transaction_base& tx);

 private:
  // The shared lock of batches (see above).
  void lock_shared(pqxx::transaction_base& tx);
  // `position_of`: the event that the applied position moves to (default: the last item); a part
  // on a helper (`part` true) leaves the position to the main transaction.
  Counts run(pqxx::transaction_base& tx, const std::vector<Item*>& items, bool ignore_blocked, const Item* position_of = nullptr,
             bool part = false);
  // `all_valid`: every item is an event (else the batch goes straight to isolation).
  Counts apply_alone(const std::vector<Item*>& items, bool all_valid);
  // Empty when the batch must be applied alone instead (nothing of it is left uncommitted).
  std::optional<Counts> apply_in_parts(const std::vector<Item*>& items);
  Counts apply_part(pqxx::connection& helper, const std::vector<Item*>& items);
  Counts isolate(pqxx::dbtransaction& tx, const std::vector<Item*>& items);
  void bisect(pqxx::dbtransaction& tx, const std::vector<Item*>& items, Counts& counts);
  // Records items in outbox_failed_events ('parked', or 'waiting' when the aggregate already has
  // failed events); returns {parked, waiting} counts.
  std::pair<long long, long long> record_failed(pqxx::transaction_base& tx, const std::vector<const Item*>& items,
                                                const std::string& state, const std::vector<std::string>& errors, int attempts);
  void prepare_failed_statement(pqxx::connection& connection);
  void prepare_tables(pqxx::transaction_base& tx);
  // Each handler's function as its regprocedure text, which PostgreSQL quotes ("booking.on_x(jsonb)").
  void prepare_handlers(pqxx::transaction_base& tx);

  pqxx::connection& connection_;
  std::vector<pqxx::connection*> helpers_;
  std::string replica_, role_;
  std::vector<Mapping> mappings_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<ReplicaTable> tables_;
  std::atomic<bool> cancelled_{false};
  void stop_if_cancelled() const;
  std::vector<int> table_of_mapping_;  // index into tables_ per mapping
  bool handlers_ = false;              // a consumer: the handler path
  bool typed_ = false;                 // the typed statement is prepared (typed_apply_possible)
  std::string handler_procedures_;     // $5 of outbox_handle_batch: a JSON array of regprocedure texts
  int max_attempts_ = 3;
  std::chrono::milliseconds max_clock_skew_{std::chrono::minutes(1)};  // the default of replicate.max_clock_skew
  bool record_event_ids_ = false;                                      // the default of replicate.record_event_ids
};

}  // namespace outbox::replicate
