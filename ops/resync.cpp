#include "ops/resync.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "core/aggregate_version.hpp"
#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/failpoint.hpp"
#include "core/pg.hpp"
#include "writer/outbox_writer.hpp"

namespace outbox::resync {
namespace {

// The column that holds an aggregate's version, where a table has one (parking_slots does).
constexpr const char* kVersionColumn = "version";

template <typename Body>
auto on(const std::string& role, const Table& table, Body body) {
  return pg::with_context(role, [&] {
    try {
      return body();
    } catch (const pqxx::undefined_table&) {
      throw config_error(role + ": " + table.table +
                         ", the outbox or outbox_aggregate_versions does not exist; run 'outbox migrate'");
    }
  });
}

pqxx::result exec(pqxx::transaction_base& tx, const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> pointers;
  for (const std::string& param : params) pointers.push_back(param.c_str());
  return tx.exec_params(sql, pqxx::prepare::make_dynamic_params(pointers));
}

// The table as every side has it: what the statements below need.
struct Shape {
  std::string quoted, key, key_type;  // the quoted table and key column, the key's SQL type on the primary
  std::string payload;                // "(SELECT row_to_json(r) FROM (SELECT t.a, t.b) r)": the event's payload
  bool primary_version = false;       // the primary's table has a version column
  std::vector<bool> replica_version;  // each replica's table has one
  std::string keys(const std::string& param) const { return param + "::text[]::" + key_type + "[]"; }
};

// Column name -> SQL type, in the table's order; Error(config) for a table that does not exist.
std::vector<std::pair<std::string, std::string>> columns_of(pqxx::connection& connection, const std::string& role,
                                                            const Table& table) {
  return on(role, table, [&] {
    pqxx::nontransaction tx(connection);
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& row : exec(tx,
                                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                                "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                                {pg::quote_qualified(table.table)}))
      out.emplace_back(row[0].as<std::string>(), row[1].as<std::string>());
    if (out.empty())
      throw config_error(role + ": table " + table.table + " does not exist (run 'outbox migrate', or fix the table name)");
    if (std::none_of(out.begin(), out.end(), [&](const auto& column) { return column.first == table.key_column; }))
      throw config_error(role + ": table " + table.table + " has no key column \"" + table.key_column + "\"");
    return out;
  });
}

Shape shape_of(pqxx::connection& primary, const std::vector<Replica>& replicas, const Table& table) {
  if (!pg::valid_qualified_name(table.table)) throw config_error("resync: not a table name: \"" + table.table + "\"");
  Shape shape;
  shape.quoted = pg::quote_qualified(table.table);
  shape.key = pg::quote_identifier(table.key_column);
  std::vector<std::pair<std::string, std::string>> on_primary = columns_of(primary, "primary", table);
  // The payload: the primary's columns that every replica's table has too (what verify compares).
  std::set<std::string> common;
  for (const auto& [name, type] : on_primary) {
    common.insert(name);
    if (name == table.key_column) shape.key_type = type;
    if (name == kVersionColumn) shape.primary_version = true;
  }
  for (const Replica& replica : replicas) {
    std::set<std::string> names;
    for (const auto& column : columns_of(*replica.connection, replica.role, table)) names.insert(column.first);
    shape.replica_version.push_back(names.count(kVersionColumn) > 0);
    std::erase_if(common, [&](const std::string& name) { return names.count(name) == 0; });
  }
  std::string selected;
  for (const auto& [name, type] : on_primary)
    if (common.count(name)) selected += (selected.empty() ? "t." : ", t.") + pg::quote_identifier(name);
  shape.payload = "(SELECT row_to_json(r) FROM (SELECT " + selected + ") r)::text";
  return shape;
}

// The keys as the primary's key type prints them ("00042" for an integer key is "42"), each once,
// in order. A key that is not a value of the type is Error(data) naming it.
std::vector<std::string> canonical_keys(pqxx::connection& primary, const Table& table, const Shape& shape,
                                        const std::vector<std::string>& keys) {
  std::vector<std::string> canonical;
  on("primary", table, [&] {
    pqxx::nontransaction tx(primary);
    try {
      for (const auto& row :
           exec(tx, "SELECT k::" + shape.key_type + "::text FROM unnest($1::text[]) WITH ORDINALITY u(k, n) ORDER BY n",
                {pg::array_literal(keys)}))
        canonical.push_back(row[0].as<std::string>());
      return 0;
    } catch (const pqxx::data_exception&) {
    }
    // One of them is not a key: found one by one, to name it.
    for (const std::string& key : keys) {
      try {
        exec(tx, "SELECT $1::" + shape.key_type, {key});
      } catch (const pqxx::data_exception&) {
        throw Error(ExitCode::data, "resync: not a " + shape.key_type + " (the type of " + table.table + "." + table.key_column +
                                        "): \"" + escape_controls(key) + "\"");
      }
    }
    throw Error(ExitCode::data, "resync: the keys are not all of type " + shape.key_type);
  });
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const std::string& key : canonical)
    if (seen.insert(key).second) out.push_back(key);
  return out;
}

// The highest valid version known for a key, where it was found, and whether the key was found
// anywhere at all.
struct Known {
  long long version = 0;  // 0: no valid version
  std::string source;     // "replica main", "the primary", "the primary's outbox"
  bool seen = false;
};

// A version outside 1 .. 2^53-1 (written before the range was enforced) is no version to beat:
// replicate lets any valid event beat it, and taking it as the base would copy it (plus one, which
// may overflow) onto the primary. A row without a version column is seen, with no version.
void consider(Known& known, std::optional<long long> version, const std::string& source) {
  known.seen = true;
  if (version && valid_aggregate_version(*version) && *version > known.version) {
    known.version = *version;
    known.source = source;
  }
}

std::optional<long long> optional_version(const pqxx::field& field) {
  if (field.is_null()) return std::nullopt;
  return field.as<long long>();
}

// The versions each replica records per key: its aggregate version (a tombstone counts) and the
// version of its row (a row that got there by other means than replicate), or the row alone.
std::map<std::string, Known> replica_versions(const std::vector<Replica>& replicas, const Table& table, const Shape& shape,
                                              const std::vector<std::string>& keys) {
  std::map<std::string, Known> out;
  for (size_t i = 0; i < replicas.size(); ++i) {
    const Replica& replica = replicas[i];
    std::string version = shape.replica_version[i] ? "t.version::bigint" : "NULL::bigint";
    on(replica.role, table, [&] {
      pqxx::read_transaction tx(*replica.connection);
      for (const auto& row : exec(tx,
                                  "SELECT aggregate_id, version FROM outbox_aggregate_versions "
                                  "WHERE aggregate_type = $1 AND aggregate_id = ANY($2::text[]) UNION ALL SELECT t." +
                                      shape.key + "::text, " + version + " FROM " + shape.quoted + " t WHERE t." + shape.key +
                                      " = ANY(" + shape.keys("$2") + ")",
                                  {table.aggregate_type, pg::array_literal(keys)}))
        consider(out[row[0].as<std::string>()], optional_version(row[1]), replica.role);
      return 0;
    });
  }
  return out;
}

// A write the primary refuses for this row alone (a constraint, a trigger, bad data): the row is
// not repaired, the others go on. Anything else (a lost connection, a timeout) stops the run.
bool refused_for_the_row(const pqxx::sql_error& error) {
  if (pg::is_connection_error(error)) return false;
  std::string kind = error.sqlstate().substr(0, 2);
  return kind == "22" || kind == "23" || kind == "P0";
}

// A primary row: its payload and, with a version column, its version.
struct PrimaryRow {
  std::string payload;
  std::optional<long long> version;
};

// The rows of `keys` on the primary, locked for the transaction.
std::map<std::string, PrimaryRow> lock_rows(pqxx::work& tx, const Shape& shape, const std::vector<std::string>& keys) {
  std::map<std::string, PrimaryRow> rows;
  std::string version = shape.primary_version ? "t.version::bigint" : "NULL::bigint";
  for (const auto& row :
       exec(tx,
            "SELECT t." + shape.key + "::text, " + shape.payload + ", " + version + " FROM " + shape.quoted + " t WHERE t." +
                shape.key + " = ANY(" + shape.keys("$1") + ") ORDER BY t." + shape.key + " FOR UPDATE",
            {pg::array_literal(keys)}))
    rows[row[0].as<std::string>()] = {row[1].as<std::string>(), optional_version(row[2])};
  return rows;
}

// The newest valid version in the outbox per key (0 when it holds only versions outside the range).
std::map<std::string, long long> outbox_versions(pqxx::work& tx, const Table& table, const std::vector<std::string>& keys,
                                                 const std::string& outbox_table) {
  std::map<std::string, long long> in_outbox;
  for (const auto& row : exec(tx,
                              "SELECT aggregate_id, coalesce(max(aggregate_version) FILTER (WHERE aggregate_version "
                              "BETWEEN $3::bigint AND $4::bigint), 0) FROM " +
                                  pg::quote_qualified(outbox_table) +
                                  " WHERE aggregate_type = $1 AND aggregate_id = ANY($2::text[]) GROUP BY aggregate_id",
                              {table.aggregate_type, pg::array_literal(keys), std::to_string(kMinAggregateVersion),
                               std::to_string(kMaxAggregateVersion)}))
    in_outbox[row[0].as<std::string>()] = row[1].as<long long>();
  return in_outbox;
}

// The event that repairs the row: the upsert with the primary's row (its version column set to the
// new version first), or the delete when the primary has none.
OutboxEvent repair_event(pqxx::work& tx, const Table& table, const Shape& shape, const std::string& key, long long version,
                         const PrimaryRow* row) {
  OutboxEvent event{table.aggregate_type, key, version, "", {}, ""};
  if (row) {
    event.event_type = table.upsert_event;
    event.payload_json = row->payload;
    if (shape.primary_version)
      event.payload_json = exec(tx,
                                "UPDATE " + shape.quoted + " t SET version = $2::bigint WHERE t." + shape.key +
                                    " = $1::" + shape.key_type + " RETURNING " + shape.payload,
                                {key, std::to_string(version)})[0][0]
                               .as<std::string>();
  } else {
    event.event_type = table.delete_event;
    event.payload = {{table.key_column, key}};
    if (shape.primary_version) event.payload.push_back({kVersionColumn, version});
  }
  return event;
}

// Writes the event that repairs `key` at `version` under its own savepoint: a row the primary
// refuses is named, and the others are repaired.
Outcome repair(pqxx::work& tx, const Options& options, const Shape& shape, const std::string& key, long long version,
               const PrimaryRow* row) {
  Outcome outcome;
  outcome.key = key;
  outcome.version = version;
  tx.exec("SAVEPOINT resync_row");
  try {
    OutboxEvent event = repair_event(tx, options.table, shape, key, version, row);
    outcome.action = row ? Outcome::Action::update : Outcome::Action::remove;
    outcome.event_id = insert_event(tx, event, options.outbox_table);
    tx.exec("RELEASE SAVEPOINT resync_row");
  } catch (const pqxx::sql_error& error) {
    if (!refused_for_the_row(error)) throw;
    tx.exec("ROLLBACK TO SAVEPOINT resync_row");
    outcome = Outcome{};
    outcome.key = key;
    outcome.action = Outcome::Action::failed;
    outcome.problem = "primary: " + pg::first_error_line(error.what());
  }
  return outcome;
}

// Why a known key cannot be repaired, or "" when it can.
std::string obstacle(const Table& table, const Known& known, bool on_the_primary) {
  if (known.version >= kMaxAggregateVersion) {
    std::string problem = known.source + " has version " + std::to_string(known.version) +
                          ", the largest valid one, so no newer version can beat it";
    if (known.source.rfind("replica ", 0) == 0)
      problem += " (delete its rows from outbox_aggregate_versions and " + table.table + " there, then resync it again)";
    return problem;
  }
  if (!on_the_primary && table.delete_event.empty())
    return "it is gone from the primary, and replicate.mappings has no delete mapping for " + table.table +
           " (add one, or delete the row on the replicas by hand)";
  return "";
}

// One chunk of keys in one primary transaction; `on_replicas` holds the replicas' versions.
std::vector<Outcome> resync_chunk(pqxx::connection& primary, const Shape& shape, const std::vector<std::string>& keys,
                                  const std::map<std::string, Known>& on_replicas, const Options& options) {
  std::vector<Outcome> out;
  pqxx::work tx(primary, "resync");
  std::map<std::string, PrimaryRow> rows = lock_rows(tx, shape, keys);
  std::map<std::string, long long> in_outbox = outbox_versions(tx, options.table, keys, options.outbox_table);
  for (const std::string& key : keys) {
    Outcome outcome;
    outcome.key = key;
    Known known;
    if (auto found = on_replicas.find(key); found != on_replicas.end()) known = found->second;
    if (auto found = in_outbox.find(key); found != in_outbox.end()) consider(known, found->second, "the primary's outbox");
    auto row = rows.find(key);
    if (row != rows.end()) consider(known, row->second.version, "the primary");
    if (!known.seen) {
      out.push_back(outcome);  // unknown: nothing to repair
      continue;
    }
    outcome.problem = obstacle(options.table, known, row != rows.end());
    if (!outcome.problem.empty()) {
      outcome.action = Outcome::Action::failed;
      out.push_back(outcome);
      continue;
    }
    // Within the range, and one above every valid version known (a primary row whose own
    // version is outside the range gets this one instead).
    out.push_back(repair(tx, options, shape, key, known.version + 1, row != rows.end() ? &row->second : nullptr));
  }
  failpoint("resync.before_commit");
  tx.commit();
  return out;
}

}  // namespace

std::vector<Outcome> resync(pqxx::connection& primary, const std::vector<Replica>& replicas, const std::vector<std::string>& keys,
                            const Options& options) {
  Shape shape = shape_of(primary, replicas, options.table);
  std::vector<std::string> chosen = canonical_keys(primary, options.table, shape, keys);
  std::vector<Outcome> outcomes;
  size_t chunk = std::max<size_t>(1, options.chunk);
  std::string phase = "resyncing " + options.table.table;
  for (size_t begin = 0; begin < chosen.size(); begin += chunk) {
    progress::report(options.progress, {phase, "", static_cast<long long>(begin), static_cast<long long>(chosen.size()), "rows"});
    std::vector<std::string> part(chosen.begin() + static_cast<long>(begin),
                                  chosen.begin() + static_cast<long>(std::min(chosen.size(), begin + chunk)));
    // Read before the primary transaction: every replica must be reachable before anything is written.
    std::map<std::string, Known> on_replicas = replica_versions(replicas, options.table, shape, part);
    std::vector<Outcome> done =
        on("primary", options.table, [&] { return resync_chunk(primary, shape, part, on_replicas, options); });
    outcomes.insert(outcomes.end(), done.begin(), done.end());
  }
  return outcomes;
}

}  // namespace outbox::resync
