#include "replicate/apply.hpp"

#include <algorithm>
#include <functional>
#include <future>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "core/aggregate_version.hpp"
#include "core/error.hpp"
#include "core/failpoint.hpp"
#include "core/pg.hpp"
#include "core/utf8.hpp"
#include "replicate/envelope.hpp"

namespace outbox::replicate {
namespace {

constexpr const char* kApplyStatement = "replicate_apply";
constexpr const char* kApplyTypedStatement = "replicate_apply_typed";
constexpr const char* kApplyPartStatement = "replicate_apply_part";
constexpr const char* kFailedStatement = "replicate_record_failed";
constexpr const char* kLockStatement = "replicate_lock";
constexpr const char* kLockSharedStatement = "replicate_lock_shared";
constexpr const char* kTryLockSharedStatement = "replicate_try_lock_shared";
// Below this many events a batch is applied in one transaction: a part's own commit (a WAL flush)
// and thread would cost more than the parallel work saves.
constexpr size_t kPartsMinimum = 100;
// A part waits for a row lock of another part only when an event's key disagrees with its
// aggregate id (forged or broken events): the main transaction may be waiting for this part, so
// the wait is cut short and the batch applied alone.
constexpr const char* kPartLockTimeout = "1s";

// A helper could not take the shared lock without queueing (an `outbox failed` command waits).
struct LockBusy : std::runtime_error {
  LockBusy() : std::runtime_error("an outbox failed command waits for the apply lock") {}
};
// Savepoints are plain SQL: libpqxx 6's subtransaction does not send its SAVEPOINT before an
// exec_prepared, so a failing prepared statement would abort the whole transaction.
constexpr const char* kSavepoint = "replicate_event";

std::vector<int> parse_int_array(const std::string& text) {
  std::vector<int> out;
  size_t at = 0;
  while (at < text.size()) {
    if (std::isdigit(static_cast<unsigned char>(text[at]))) {
      size_t used = 0;
      out.push_back(std::stoi(text.substr(at), &used));
      at += used;
    } else {
      ++at;
    }
  }
  return out;
}

}  // namespace

size_t part_of(const Event& event, size_t parts) {
  if (event.heartbeat || parts <= 1) return 0;
  std::hash<std::string_view> hash;
  return (hash(event.aggregate_type) * 31 + hash(event.aggregate_id)) % parts;
}

Counts& Counts::operator+=(const Counts& other) {
  applied += other.applied;
  stale += other.stale;
  duplicate += other.duplicate;
  parked += other.parked;
  waiting += other.waiting;
  heartbeats += other.heartbeats;
  skipped += other.skipped;
  parts += other.parts;
  typed += other.typed;
  unhandled += other.unhandled;
  future += other.future;
  future_ahead_seconds = std::max(future_ahead_seconds, other.future_ahead_seconds);
  return *this;
}

Failure classify(const std::exception& error) {
  if (pg::is_connection_error(error)) return Failure::connection;
  if (dynamic_cast<const pqxx::in_doubt_error*>(&error)) return Failure::connection;
  const auto* sql = dynamic_cast<const pqxx::sql_error*>(&error);
  if (!sql) return Failure::replica;
  const std::string& state = sql->sqlstate();
  if (state.size() != 5) return Failure::replica;
  std::string cls = state.substr(0, 2);
  if (cls == "40" || state == "55P03" || state == "57014") return Failure::transient;
  // Not the event's fault: a read-only replica, missing privileges, a table or column that vanished.
  if (state == "25006" || state == "42501" || state == "42P01" || state == "42703" || state == "42883" || state == "42P10")
    return Failure::replica;
  // 54: a limit of the event's size (an index entry or a row too large); a batch too large as a
  // whole is bisected until it fits.
  for (const char* event_class : {"21", "22", "23", "42", "44", "54", "P0", "2F", "38", "39", "0A"})
    if (cls == event_class) return Failure::event;
  return Failure::replica;
}

std::string one_line(const std::string& message) {
  std::string out;
  for (char c : message) out += (c == '\n' || c == '\r') ? ' ' : c;
  if (out.rfind("ERROR:  ", 0) == 0) out = out.substr(8);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  std::string squeezed;
  for (char c : out)
    if (!(c == ' ' && !squeezed.empty() && squeezed.back() == ' ')) squeezed += c;
  return squeezed;
}

Applier::Applier(pqxx::connection& connection, std::string replica, std::string role, std::vector<Mapping> mappings,
                 std::shared_ptr<spdlog::logger> log)
    : connection_(connection),
      replica_(std::move(replica)),
      role_(std::move(role)),
      mappings_(std::move(mappings)),
      log_(std::move(log)),
      handlers_(are_handlers(mappings_)) {}

Applier::~Applier() = default;

void Applier::prepare() {
  {
    pqxx::nontransaction tx(connection_);
    if (handlers_)
      prepare_handlers(tx);
    else
      prepare_tables(tx);
  }
  std::string sql = handlers_ ? "SELECT * FROM outbox_handle_batch($1::jsonb, $2::text, $3::boolean, $4::bigint, $5::jsonb)"
                              : apply_statement(mappings_, tables_, false);
  log_->trace("apply statement:\n{}", sql);
  connection_.prepare(kApplyStatement, sql);
  typed_ = !handlers_ && typed_apply_possible(tables_);
  if (typed_) connection_.prepare(kApplyTypedStatement, apply_statement(mappings_, tables_, false, true));
  const std::string plan_settings = handlers_ ? "" : std::string(", ") + kApplyPlanSettings;
  connection_.prepare(kLockStatement, "SELECT pg_advisory_xact_lock($1, hashtext($2))" + plan_settings);
  connection_.prepare(kLockSharedStatement, "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))" + plan_settings);
  prepare_failed_statement(connection_);
  if (handlers_) helpers_.clear();  // consumers apply in one transaction (see above)
  if (!helpers_.empty()) {
    std::string part_sql = apply_statement(mappings_, tables_, true);
    for (pqxx::connection* helper : helpers_) {
      pqxx::nontransaction(*helper).exec(std::string("SET lock_timeout = '") + kPartLockTimeout + "'");
      helper->prepare(kApplyPartStatement, part_sql);
      helper->prepare(kTryLockSharedStatement, "SELECT pg_try_advisory_xact_lock_shared($1, hashtext($2))" + plan_settings);
      prepare_failed_statement(*helper);
    }
  }
}

void Applier::prepare_tables(pqxx::transaction_base& tx) {
  tables_ = tables_of(mappings_, table_of_mapping_);
  for (ReplicaTable& table : tables_) {
    std::string what = role_ + ": replicate.mappings table " + table.name;
    // The type without its length: a cast to varchar(n) would cut a longer key instead of refusing it.
    // Typed (ReplicaTable::typed): a base, enum or range type that is not an array, json or jsonb.
    pqxx::result columns = tx.exec_params(
        "SELECT a.attname, format_type(a.atttypid, NULL), a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype), "
        "t.typtype IN ('b', 'e', 'r', 'm') AND t.typcategory <> 'A' AND a.atttypid NOT IN ('json'::regtype, 'jsonb'::regtype) "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 "
        "AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity <> 'a' ORDER BY a.attnum",
        table.quoted);
    if (columns.empty()) throw config_error(what + " does not exist (run 'outbox migrate', or fix the mapping)");
    table.typed = true;
    for (const auto& row : columns) {
      table.columns.push_back(row[0].as<std::string>());
      table.column_types.push_back(row[1].as<std::string>());
      if (table.columns.back() == table.key) table.key_type = row[1].as<std::string>();
      if (table.columns.back() == "version" && row[2].as<bool>()) table.versioned = true;
      table.typed = table.typed && row[3].as<bool>();
    }
    if (table.key_type.empty()) throw config_error(what + " has no column \"" + table.key + "\" (replicate.mappings.key_column)");
    if (!table.upserts.empty()) {
      bool unique = tx.exec_params1(
                          "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                          "AND a.attnum = i.indkey[0] WHERE i.indrelid = to_regclass($1) AND i.indisunique "
                          "AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = $2)",
                          table.quoted, table.key)[0]
                        .as<bool>();
      if (!unique) throw config_error(what + ": upserts need a primary key or unique index on exactly \"" + table.key + "\"");
    }
  }
}

void Applier::prepare_handlers(pqxx::transaction_base& tx) {
  handler_procedures_ = "[";
  for (const Mapping& handler : mappings_) {
    // Quoted as every name from config is (taken as written, case and all); an unqualified one is
    // resolved with the search path, as a call would be.
    pqxx::row found = tx.exec_params1("SELECT to_regprocedure($1)::text", pg::quote_qualified(handler.function) + "(jsonb)");
    if (found[0].is_null())
      throw config_error(role_ + ": handler function " + handler.function + "(jsonb) for event type \"" + handler.event_type +
                         "\" does not exist (create it in the service database, or fix services.NAME.handlers)");
    if (handler_procedures_.size() > 1) handler_procedures_ += ',';
    append_json_string(handler_procedures_, found[0].as<std::string>());
  }
  handler_procedures_ += ']';
}

// An event recorded before is not recorded again, nor is a second copy of it in the same call: a
// batch may hold an event and its redelivery (the relay publishes again what it had no confirm
// for), and both, blocked behind a parked event of their aggregate, were recorded as waiting, as
// each was checked only against the rows there before the statement. A message without an id
// cannot be told from another and is always recorded.
void Applier::prepare_failed_statement(pqxx::connection& connection) {
  connection.prepare(
      kFailedStatement,
      "INSERT INTO outbox_failed_events (replica, event_id, aggregate_type, aggregate_id, aggregate_version, "
      "event_type, routing_key, properties, body, error, attempts, state) "
      "SELECT $1, x.event_id, x.aggregate_type, x.aggregate_id, x.aggregate_version, x.event_type, x.routing_key, "
      "x.properties, decode(x.body, 'hex'), x.error, x.attempts, "
      "CASE WHEN x.aggregate_id IS NOT NULL AND EXISTS (SELECT 1 FROM outbox_failed_events f WHERE f.replica = $1 "
      "AND f.aggregate_type = x.aggregate_type AND f.aggregate_id = x.aggregate_id) THEN 'waiting' ELSE x.state END "
      "FROM jsonb_to_recordset($2::jsonb) AS x(o int, event_id text, aggregate_type text, aggregate_id text, "
      "aggregate_version bigint, event_type text, routing_key text, properties jsonb, body text, error text, "
      "attempts int, state text) "
      "WHERE x.event_id IS NULL OR (NOT EXISTS (SELECT 1 FROM outbox_failed_events f WHERE f.replica = $1 "
      "AND f.event_id = x.event_id) AND x.o = (SELECT min(y.o) FROM jsonb_to_recordset($2::jsonb) AS y(o int, event_id text) "
      "WHERE y.event_id = x.event_id)) "
      "ORDER BY x.o RETURNING state");
}

void Applier::lock(pqxx::transaction_base& tx) { tx.exec_prepared(kLockStatement, kApplyLockClass, replica_); }

void Applier::lock_shared(pqxx::transaction_base& tx) { tx.exec_prepared(kLockSharedStatement, kApplyLockClass, replica_); }

Counts Applier::run(pqxx::transaction_base& tx, const std::vector<Item*>& items, bool ignore_blocked, const Item* position_of,
                    bool part) {
  Counts counts;
  if (items.empty() && !position_of) return counts;
  auto skew = static_cast<long long>(max_clock_skew_.count());
  pqxx::row row = [&] {
    if (handlers_)
      return tx.exec_prepared1(kApplyStatement, handler_batch_parameter(items, position_of), replica_, ignore_blocked, skew,
                               handler_procedures_);
    std::optional<BatchColumns> typed;
    if (typed_ && !part) typed = typed_batch_columns(items, position_of, table_of_mapping_, tables_);
    counts.typed = typed ? 1 : 0;
    const char* statement = typed ? kApplyTypedStatement : part ? kApplyPartStatement : kApplyStatement;
    BatchColumns batch = typed ? std::move(*typed) : batch_columns(items, position_of, table_of_mapping_);
    // The typed statement's text arrays follow $14; the others have none (batch.typed is empty).
    std::vector<pqxx::binarystring> columns(batch.typed.begin(), batch.typed.end());
    return tx.exec_prepared1(statement, replica_, ignore_blocked, skew, record_event_ids_, pqxx::binarystring(batch.ids),
                             pqxx::binarystring(batch.aggregate_types), pqxx::binarystring(batch.aggregate_ids),
                             pqxx::binarystring(batch.versions), pqxx::binarystring(batch.mappings),
                             pqxx::binarystring(batch.tables), pqxx::binarystring(batch.positions),
                             pqxx::binarystring(batch.created_at), batch.payloads, pqxx::binarystring(batch.newest),
                             pqxx::prepare::make_dynamic_params(columns));
  }();
  counts.applied = row[0].as<long long>();
  counts.stale = row[1].as<long long>();
  counts.duplicate = row[2].as<long long>();
  counts.heartbeats = row[3].as<long long>();
  counts.future = row[5].as<long long>();
  counts.future_ahead_seconds = row[6].as<double>();
  if (handlers_) counts.unhandled = row[7].as<long long>();
  std::vector<int> blocked = parse_int_array(row[4].as<std::string>());
  if (!blocked.empty()) {
    std::vector<const Item*> waiting;
    for (int index : blocked) waiting.push_back(items.at(static_cast<size_t>(index)));
    auto [parked, waited] = record_failed(
        tx, waiting, "waiting", std::vector<std::string>(waiting.size(), "waiting behind a parked event of its aggregate"), 0);
    counts.parked += parked;
    counts.waiting += waited;
  }
  return counts;
}

std::pair<long long, long long> Applier::record_failed(pqxx::transaction_base& tx, const std::vector<const Item*>& items,
                                                       const std::string& state, const std::vector<std::string>& errors,
                                                       int attempts) {
  std::string rows = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& item = *items[i];
    const amqp::IncomingMessage& message = *item.message;
    const Checked& checked = item.checked;
    if (i) rows += ',';
    rows += "{\"o\":" + std::to_string(i) + ",\"event_id\":";
    // Whatever bytes the broker brought, the row that parks them must not fail.
    if (message.message_id && !message.message_id->empty())
      append_json_string(rows, utf8::storable_copy(*message.message_id));
    else
      rows += "null";
    auto text_or_null = [&](const char* key, const std::string& value) {
      rows += std::string(",\"") + key + "\":";
      if (value.empty())
        rows += "null";
      else
        append_json_string(rows, utf8::storable_copy(value));
    };
    text_or_null("aggregate_type", checked.aggregate_type);
    text_or_null("aggregate_id", checked.aggregate_id);
    rows += ",\"aggregate_version\":";
    append_optional(rows, checked.version);
    text_or_null("event_type", message.type.value_or(message.routing_key));
    text_or_null("routing_key", message.routing_key);
    rows += ",\"properties\":" + properties_json(message);
    rows += ",\"body\":\"" + to_hex(message.body) + "\"";
    text_or_null("error", errors[i]);
    rows += ",\"attempts\":" + std::to_string(attempts) + ",\"state\":\"" + state + "\"}";
  }
  rows += ']';
  long long parked = 0, waiting = 0;
  for (const auto& row : tx.exec_prepared(kFailedStatement, replica_, rows))
    (row[0].as<std::string>() == "parked" ? parked : waiting)++;
  return {parked, waiting};
}

void Applier::stop_if_cancelled() const {
  if (cancelled_) throw unavailable_error(role_ + ": the batch was cancelled at the shutdown timeout");
}

Counts Applier::apply(const std::vector<Item*>& items) {
  stop_if_cancelled();
  bool all_valid = std::all_of(items.begin(), items.end(), [](const Item* item) { return item->checked.event.has_value(); });
  if (all_valid && !helpers_.empty() && items.size() >= kPartsMinimum)
    if (std::optional<Counts> counts = apply_in_parts(items)) return *counts;
  return apply_alone(items, all_valid);
}

std::optional<Counts> Applier::apply_in_parts(const std::vector<Item*>& items) {
  size_t parts_count = helpers_.size() + 1;
  std::vector<std::vector<Item*>> parts(parts_count);
  std::unordered_map<std::string_view, size_t> part_of_id;
  for (Item* item : items) {
    const Event& event = *item->checked.event;
    size_t part = part_of(event, parts_count);
    auto [known, inserted] = part_of_id.emplace(event.event_id, part);
    // One event id under two aggregates (a forged or broken message): the single transaction decides.
    if (!inserted && known->second != part) return std::nullopt;
    parts[part].push_back(item);
  }
  pqxx::work tx(connection_, "replicate");
  lock_shared(tx);
  // Started only now: a part's transaction lies inside the main one, which holds the lock throughout.
  std::vector<std::future<Counts>> helpers;
  for (size_t part = 1; part < parts_count; ++part)
    if (!parts[part].empty())
      helpers.push_back(
          std::async(std::launch::async, [this, part, &parts] { return apply_part(*helpers_[part - 1], parts[part]); }));
  Counts counts;
  std::exception_ptr failure;
  try {
    counts = run(tx, parts[0], false, items.back());
  } catch (...) {
    failure = std::current_exception();
    try {
      tx.abort();  // frees its row locks before waiting for the parts
    } catch (const std::exception&) {
      // The connection is gone; so are its locks. The failure above says why.
    }
  }
  for (auto& helper : helpers) {
    try {
      counts += helper.get();
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const LockBusy& busy) {
      log_->debug("batch of {} applied alone: {}", items.size(), busy.what());
    } catch (const std::exception& error) {
      Failure kind = classify(error);
      if (kind == Failure::connection || kind == Failure::replica || cancelled_) throw;
      log_->debug("batch of {} applied alone: a part failed ({})", items.size(), one_line(error.what()));
    }
    return std::nullopt;
  }
  failpoint("replicate.before_commit");
  tx.commit();
  counts.parts = static_cast<long long>(helpers.size()) + 1;
  return counts;
}

Counts Applier::apply_part(pqxx::connection& helper, const std::vector<Item*>& items) {
  pqxx::work tx(helper, "replicate_part");
  if (!tx.exec_prepared1(kTryLockSharedStatement, kApplyLockClass, replica_)[0].as<bool>()) throw LockBusy();
  Counts counts = run(tx, items, false, nullptr, true);
  tx.commit();
  return counts;
}

Counts Applier::apply_alone(const std::vector<Item*>& items, bool all_valid) {
  if (all_valid) {
    try {
      pqxx::work tx(connection_, "replicate");
      lock_shared(tx);
      Counts counts = run(tx, items, false);
      failpoint("replicate.before_commit");
      tx.commit();
      return counts;
    } catch (const pqxx::sql_error& error) {
      if (classify(error) != Failure::event) throw;
      log_->debug("batch of {} failed ({}); isolating the failing event(s)", items.size(), one_line(error.what()));
    }
  }
  stop_if_cancelled();
  pqxx::work tx(connection_, "replicate");
  lock_shared(tx);
  Counts counts = isolate(tx, items);
  failpoint("replicate.before_commit");
  tx.commit();
  return counts;
}

Counts Applier::isolate(pqxx::dbtransaction& tx, const std::vector<Item*>& items) {
  Counts counts;
  std::vector<Item*> run_of_valid;
  for (Item* pointer : items) {
    Item& item = *pointer;
    if (item.checked.event) {
      run_of_valid.push_back(&item);
      continue;
    }
    bisect(tx, run_of_valid, counts);
    run_of_valid.clear();
    if (item.checked.skip) {
      ++counts.skipped;
      log_->warn("skipped a broken heartbeat: {}", item.checked.error);
      continue;
    }
    // Invalid as a message: trying again cannot help, so it is parked after one attempt.
    auto [parked, waiting] = record_failed(tx, {&item}, "parked", {item.checked.error}, 1);
    counts.parked += parked;
    counts.waiting += waiting;
    if (parked)
      log_->warn(
          "parked event {} ({}): {}",
          item.message->message_id && !item.message->message_id->empty() ? *item.message->message_id : "without message_id",
          item.message->type.value_or(item.message->routing_key), item.checked.error);
  }
  bisect(tx, run_of_valid, counts);
  return counts;
}

void Applier::bisect(pqxx::dbtransaction& tx, const std::vector<Item*>& items, Counts& counts) {
  if (items.empty()) return;
  int attempts = items.size() == 1 ? max_attempts_ : 1;
  std::string last_error;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    stop_if_cancelled();
    tx.exec(std::string("SAVEPOINT ") + kSavepoint);
    try {
      Counts done = run(tx, items, false);
      tx.exec(std::string("RELEASE SAVEPOINT ") + kSavepoint);
      counts += done;
      return;
    } catch (const pqxx::sql_error& error) {
      if (classify(error) != Failure::event) throw;
      last_error = one_line(error.what());
      tx.exec(std::string("ROLLBACK TO SAVEPOINT ") + kSavepoint);
    }
  }
  if (items.size() > 1) {
    size_t half = items.size() / 2;
    bisect(tx, std::vector<Item*>(items.begin(), items.begin() + static_cast<long>(half)), counts);
    bisect(tx, std::vector<Item*>(items.begin() + static_cast<long>(half), items.end()), counts);
    return;
  }
  const Item& item = *items.front();
  auto [parked, waiting] = record_failed(tx, {&item}, "parked", {last_error}, attempts);
  counts.parked += parked;
  counts.waiting += waiting;
  if (parked)
    log_->warn("parked event {} ({} {} {} v{}) after {} attempt(s): {}", item.checked.event->event_id,
               item.checked.event->event_type, item.checked.event->aggregate_type, item.checked.event->aggregate_id,
               item.checked.event->version, attempts, last_error);
}

std::string Applier::apply_one(pqxx::dbtransaction& tx, const amqp::IncomingMessage& message, Counts& counts) {
  Item item{&message, check_message(message, mappings_)};
  if (!item.checked.event) return item.checked.error;
  tx.exec(std::string("SAVEPOINT ") + kSavepoint);
  try {
    Counts done = run(tx, {&item}, true);
    tx.exec(std::string("RELEASE SAVEPOINT ") + kSavepoint);
    counts += done;
    return "";
  } catch (const pqxx::sql_error& error) {
    if (classify(error) != Failure::event) throw;
    tx.exec(std::string("ROLLBACK TO SAVEPOINT ") + kSavepoint);
    return one_line(error.what());
  }
}

}  // namespace outbox::replicate
