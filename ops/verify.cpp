#include "ops/verify.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#include "core/error.hpp"
#include "core/pg.hpp"
#include "relay/parked_rows.hpp"

namespace outbox::verify {
namespace {

using Clock = std::chrono::steady_clock;

template <typename Body>
auto on(const std::string& role, Body body) {
  return pg::with_context(role, body);
}

pqxx::result exec(pqxx::connection& connection, const std::string& sql, const std::vector<std::string>& params = {}) {
  pqxx::nontransaction tx(connection);
  std::vector<const char*> pointers;
  for (const std::string& param : params) pointers.push_back(param.c_str());
  return tx.exec_params(sql, pqxx::prepare::make_dynamic_params(pointers));
}

// A table as both sides have it.
struct Plan {
  TableSpec spec;
  std::string quoted, key, key_type;  // quoted table and key column, the key's SQL type
  std::vector<std::string> columns;   // compared columns (not the key), quoted
};

std::vector<std::string> column_names(pqxx::connection& connection, const std::string& role, const std::string& table) {
  return on(role, [&] {
    std::vector<std::string> out;
    for (const auto& row : exec(connection,
                                "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass($1) "
                                "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                                {pg::quote_qualified(table)}))
      out.push_back(row[0].as<std::string>());
    if (out.empty())
      throw config_error(role + ": table " + table + " does not exist (run 'outbox migrate', or fix the table name)");
    return out;
  });
}

Plan plan(pqxx::connection& primary, pqxx::connection& replica, const TableSpec& spec, const Options& options) {
  if (!pg::valid_qualified_name(spec.table)) throw config_error("verify: not a table name: \"" + spec.table + "\"");
  Plan out;
  out.spec = spec;
  out.quoted = pg::quote_qualified(spec.table);
  out.key = pg::quote_identifier(spec.key);
  std::vector<std::string> on_primary = column_names(primary, "primary", spec.table);
  std::vector<std::string> on_replica = column_names(replica, options.replica_role, spec.table);
  auto has = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  if (!has(on_primary, spec.key)) throw config_error("primary: table " + spec.table + " has no key column \"" + spec.key + "\"");
  if (!has(on_replica, spec.key))
    throw config_error(options.replica_role + ": table " + spec.table + " has no key column \"" + spec.key + "\"");
  std::vector<std::string> columns = spec.columns;
  if (columns.empty()) {
    for (const std::string& name : on_replica)
      if (name != spec.key && has(on_primary, name)) columns.push_back(name);
  } else {
    for (const std::string& name : columns) {
      if (!has(on_primary, name)) throw config_error("primary: table " + spec.table + " has no column \"" + name + "\"");
      if (!has(on_replica, name))
        throw config_error(options.replica_role + ": table " + spec.table + " has no column \"" + name + "\"");
    }
  }
  out.spec.columns = columns;
  for (const std::string& name : columns) out.columns.push_back(pg::quote_identifier(name));
  out.key_type = on("primary", [&] {
    return exec(primary,
                "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass($1) AND a.attname = $2",
                {out.quoted, spec.key})[0][0]
        .as<std::string>();
  });
  return out;
}

// WHERE clause of a chunk (lo, hi]; appends the bounds to `params`.
std::string range(const Plan& plan, const std::optional<std::string>& lo, const std::optional<std::string>& hi,
                  std::vector<std::string>& params) {
  std::string where = " WHERE true";
  if (lo) {
    params.push_back(*lo);
    where += " AND " + plan.key + " > $" + std::to_string(params.size()) + "::" + plan.key_type;
  }
  if (hi) {
    params.push_back(*hi);
    where += " AND " + plan.key + " <= $" + std::to_string(params.size()) + "::" + plan.key_type;
  }
  return where;
}

std::string json_columns(const Plan& plan) {
  std::string out;
  for (const std::string& column : plan.columns) out += ", coalesce(to_json(" + column + ")::text, 'null')";
  return out;
}

struct Summary {
  long long rows = 0;
  std::string digest;
  bool operator==(const Summary&) const = default;
};

Summary summarize(pqxx::connection& connection, const std::string& role, const Plan& plan, const std::optional<std::string>& lo,
                  const std::optional<std::string>& hi) {
  return on(role, [&] {
    std::vector<std::string> params;
    std::string array = "json_build_array(" + plan.key;
    for (const std::string& column : plan.columns) array += ", " + column;
    array += ")::text";
    std::string sql = "SELECT count(*), coalesce(md5(string_agg(" + array + ", E'\\n' ORDER BY " + plan.key +
                      "::text COLLATE \"C\")), '') FROM " + plan.quoted + range(plan, lo, hi, params);
    pqxx::row row = exec(connection, sql, params)[0];
    return Summary{row[0].as<long long>(), row[1].as<std::string>()};
  });
}

std::vector<Row> read_rows(pqxx::connection& connection, const std::string& role, const std::string& sql,
                           const std::vector<std::string>& params) {
  return on(role, [&] {
    std::vector<Row> out;
    for (const auto& row : exec(connection, sql, params)) {
      Row r;
      r.key = row[0].as<std::string>();
      for (size_t i = 1; i < row.size(); ++i) r.values.push_back(row[static_cast<int>(i)].as<std::string>());
      out.push_back(std::move(r));
    }
    return out;
  });
}

std::vector<Row> chunk_rows(pqxx::connection& connection, const std::string& role, const Plan& plan,
                            const std::optional<std::string>& lo, const std::optional<std::string>& hi) {
  std::vector<std::string> params;
  std::string sql = "SELECT " + plan.key + "::text" + json_columns(plan) + " FROM " + plan.quoted + range(plan, lo, hi, params) +
                    " ORDER BY " + plan.key + "::text COLLATE \"C\"";
  return read_rows(connection, role, sql, params);
}

std::map<std::string, Row> rows_by_key(pqxx::connection& connection, const std::string& role, const Plan& plan,
                                       const std::vector<std::string>& keys) {
  std::string sql = "SELECT " + plan.key + "::text" + json_columns(plan) + " FROM " + plan.quoted + " WHERE " + plan.key +
                    " = ANY($1::" + plan.key_type + "[])";
  std::map<std::string, Row> out;
  for (Row& row : read_rows(connection, role, sql, {pg::array_literal(keys)})) out[row.key] = std::move(row);
  return out;
}

// The next chunk's upper bound: the chunk_rows-th key after `lo`, or nullopt for the last chunk.
std::optional<std::string> next_bound(pqxx::connection& primary, const Plan& plan, const std::optional<std::string>& lo,
                                      long long chunk_rows) {
  return on("primary", [&]() -> std::optional<std::string> {
    std::vector<std::string> params;
    std::string sql = "SELECT " + plan.key + "::text FROM " + plan.quoted + range(plan, lo, std::nullopt, params) + " ORDER BY " +
                      plan.key + " OFFSET " + std::to_string(chunk_rows - 1) + " LIMIT 1";
    pqxx::result result = exec(primary, sql, params);
    if (result.empty()) return std::nullopt;
    return result[0][0].as<std::string>();
  });
}

Difference make_difference(const Plan& plan, const std::string& key, const std::optional<Row>& primary,
                           const std::optional<Row>& replica) {
  Difference out{primary && replica ? Difference::Kind::different
                 : primary          ? Difference::Kind::missing
                                    : Difference::Kind::extra,
                 plan.spec.table,
                 plan.spec.key,
                 key,
                 plan.spec.columns,
                 primary,
                 replica};
  return out;
}

// Merges two key-ordered row lists; appends the keys whose rows differ.
void diff_rows(const std::vector<Row>& primary, const std::vector<Row>& replica, std::vector<std::string>& keys) {
  size_t p = 0, r = 0;
  while (p < primary.size() || r < replica.size()) {
    if (r == replica.size() || (p < primary.size() && primary[p].key < replica[r].key)) {
      keys.push_back(primary[p++].key);
    } else if (p == primary.size() || replica[r].key < primary[p].key) {
      keys.push_back(replica[r++].key);
    } else {
      if (!(primary[p] == replica[r])) keys.push_back(primary[p].key);
      ++p, ++r;
    }
  }
}

}  // namespace

std::string kind_name(Difference::Kind kind) {
  // By Difference::Kind, in its order.
  static constexpr const char* kNames[] = {"missing", "extra", "different"};
  return kNames[static_cast<int>(kind)];
}

void prepare_session(pqxx::connection& connection) {
  pqxx::nontransaction tx(connection);
  tx.exec(
      "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; "
      "SET extra_float_digits = 3; SET statement_timeout = '60s'");
}

namespace {

// The pause between two polls while waiting: 20 ms, doubling up to 250 ms.
struct Pause {
  std::chrono::milliseconds next{20};
  void operator()() {
    std::this_thread::sleep_for(next);
    next = std::min(next * 2, std::chrono::milliseconds(250));
  }
};

// a. The primary's newest position of each outbox table.
void read_positions(pqxx::connection& primary, const Options& options, ConsistentPoint& point) {
  for (const std::string& table : options.outbox_tables) {
    if (!pg::valid_qualified_name(table)) throw config_error("verify: not an outbox table name: \"" + table + "\"");
    std::optional<long long> max = on("primary", [&]() -> std::optional<long long> {
      pqxx::result exists = exec(primary, "SELECT to_regclass($1) IS NOT NULL", {pg::quote_qualified(table)});
      if (!exists[0][0].as<bool>())
        throw config_error("primary: outbox table " + table + " does not exist (run 'outbox migrate', or fix relay.tables)");
      pqxx::field field = exec(primary, "SELECT max(position) FROM " + pg::quote_qualified(table))[0][0];
      if (field.is_null()) return std::nullopt;
      return field.as<long long>();
    });
    point.positions.emplace_back(table, max);
  }
}

// b. Everything up to them published, but for the rows the relay parked and those waiting behind
// them: they reach the replica only once released (outbox failed --relay), so their aggregates
// show up as differences until then rather than making verify wait for its deadline.
void wait_until_published(pqxx::connection& primary, const ConsistentPoint& point, Clock::time_point deadline,
                          const std::string& timeout_text, Pause& pause, const Options& options) {
  bool has_parked = on("primary", [&] { return exec(primary, parked_rows::kExistsSql)[0][0].as<bool>(); });
  std::string held = " AND " + (has_parked ? parked_rows::not_held("$2") : std::string("$2::text IS NOT NULL"));
  for (const auto& [table, max] : point.positions) {
    if (!max) continue;
    for (;;) {
      long long unpublished = on("primary", [&] {
        return exec(primary,
                    "SELECT count(*) FROM (SELECT 1 FROM " + pg::quote_qualified(table) +
                        " o WHERE published_at IS NULL AND position <= $1::bigint" + held + " LIMIT 100000) s",
                    {std::to_string(*max), table})[0][0]
            .as<long long>();
      });
      if (unpublished == 0) break;
      progress::report(options.progress, {"waiting for the relay",
                                          std::to_string(unpublished) + " row(s) of " + table + " unpublished up to position " +
                                              std::to_string(*max),
                                          0, std::nullopt, ""});
      if (Clock::now() >= deadline)
        throw Error(ExitCode::tempfail, "verify: the relay has not published " + table + " up to position " +
                                            std::to_string(*max) + " within " + timeout_text + " (" +
                                            std::to_string(unpublished) +
                                            " rows still unpublished); is outbox relay running? (see outbox lag)");
      pause();
    }
  }
}

}  // namespace

ConsistentPoint wait_for_consistent_point(pqxx::connection& primary, pqxx::connection& replica, const Options& options) {
  ConsistentPoint point;
  auto begin = Clock::now();
  auto deadline = begin + options.timeout;
  Pause pause;
  std::string timeout_text = format_duration(options.timeout);
  read_positions(primary, options, point);
  wait_until_published(primary, point, deadline, timeout_text, pause, options);
  // c. T on the primary's clock.
  std::string t_micros;
  on("primary", [&] {
    pqxx::row row = exec(primary, "SELECT (extract(epoch FROM t) * 1000000)::bigint::text, " + pg::iso_utc("t", true) +
                                      " FROM clock_timestamp() t")[0];
    t_micros = row[0].as<std::string>();
    point.primary_time = row[1].as<std::string>();
    return 0;
  });
  // d. The replica has applied an event created after T.
  pause = Pause{};
  for (;;) {
    auto [reached, newest] = on(options.replica_role, [&] {
      pqxx::row row = exec(replica,
                           "SELECT coalesce(g > timestamptz 'epoch' + $2::bigint * interval '1 microsecond', false), "
                           "coalesce(" +
                               pg::iso_utc("g", true) +
                               ", 'nothing') "
                               "FROM (SELECT greatest((SELECT last_created_at FROM outbox_applied_position WHERE replica = $1), "
                               "(SELECT created_at FROM outbox_heartbeat WHERE replica = $1)) AS g) s",
                           {options.replica, t_micros})[0];
      return std::pair{row[0].as<bool>(), row[1].as<std::string>()};
    });
    if (reached) {
      point.replica_time = newest;
      break;
    }
    progress::report(
        options.progress,
        {"waiting for " + options.replica_role,
         "to apply an event created after " + point.primary_time + " (newest applied: " + newest + ")", 0, std::nullopt, ""});
    if (Clock::now() >= deadline)
      throw Error(ExitCode::tempfail, "verify: " + options.replica_role + " has not applied an event created after " +
                                          point.primary_time + " within " + timeout_text + " (newest applied: " + newest +
                                          "); is outbox replicate running, and are relay heartbeats on? (see outbox lag)");
    pause();
  }
  point.waited_seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  return point;
}

namespace {

// The planner's estimate of a table's rows on the primary, for the progress line's total; nullopt
// for a table never analysed.
std::optional<long long> estimated_rows(pqxx::connection& primary, const Plan& plan) {
  return on("primary", [&]() -> std::optional<long long> {
    long long rows =
        exec(primary, "SELECT coalesce((SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass($1)), 0)",
             {plan.quoted})[0][0]
            .as<long long>();
    if (rows <= 0) return std::nullopt;
    return rows;
  });
}

// Compares one table chunk by chunk; appends the keys of rows that differ to `suspects`.
TableResult compare_table(pqxx::connection& primary, pqxx::connection& replica, const Plan& plan, const Options& options,
                          std::vector<std::string>& suspects) {
  TableResult table;
  table.table = plan.spec.table;
  table.key = plan.spec.key;
  table.columns = plan.spec.columns;
  long long chunk_rows_limit = std::max<long long>(1, options.chunk_rows);
  std::optional<long long> estimate = options.progress ? estimated_rows(primary, plan) : std::nullopt;
  std::string phase = "comparing " + plan.spec.table;
  std::optional<std::string> lo;
  for (bool last = false; !last;) {
    progress::report(options.progress,
                     {phase, "chunk " + std::to_string(table.chunks + 1), table.primary_rows, estimate, "rows"});
    std::optional<std::string> hi = next_bound(primary, plan, lo, chunk_rows_limit);
    last = !hi;
    Summary on_primary = summarize(primary, "primary", plan, lo, hi);
    Summary on_replica = summarize(replica, options.replica_role, plan, lo, hi);
    ++table.chunks;
    table.primary_rows += on_primary.rows;
    table.replica_rows += on_replica.rows;
    if (!(on_primary == on_replica)) {
      ++table.chunks_read_by_row;
      diff_rows(chunk_rows(primary, "primary", plan, lo, hi), chunk_rows(replica, options.replica_role, plan, lo, hi), suspects);
    }
    lo = hi;
  }
  return table;
}

// The rows that differed, read once more without a recheck.
void report_suspects(pqxx::connection& primary, pqxx::connection& replica, const std::vector<Plan>& plans,
                     const std::vector<std::vector<std::string>>& suspects, const Options& options, Result& result) {
  for (size_t t = 0; t < plans.size(); ++t) {
    if (suspects[t].empty()) continue;
    auto on_primary = rows_by_key(primary, "primary", plans[t], suspects[t]);
    auto on_replica = rows_by_key(replica, options.replica_role, plans[t], suspects[t]);
    for (const std::string& key : suspects[t]) {
      std::optional<Row> p, r;
      if (auto found = on_primary.find(key); found != on_primary.end()) p = found->second;
      if (auto found = on_replica.find(key); found != on_replica.end()) r = found->second;
      if (p != r) result.differences.push_back(make_difference(plans[t], key, p, r));
    }
  }
}

// The recheck (see the header): S1, a fresh consistent point, then the replica and S2.
void recheck(pqxx::connection& primary, pqxx::connection& replica, const std::vector<Plan>& plans,
             const std::vector<std::vector<std::string>>& suspects, const Options& options, Result& result) {
  long long total = 0;
  for (const auto& keys : suspects) total += static_cast<long long>(keys.size());
  progress::report(options.progress, {"rechecking", "reading the primary's rows", 0, total, "rows"});
  std::vector<std::map<std::string, Row>> first(plans.size());
  for (size_t t = 0; t < plans.size(); ++t)
    if (!suspects[t].empty()) first[t] = rows_by_key(primary, "primary", plans[t], suspects[t]);
  wait_for_consistent_point(primary, replica, options);
  long long done = 0;
  for (size_t t = 0; t < plans.size(); ++t) {
    if (suspects[t].empty()) continue;
    progress::report(options.progress, {"rechecking", plans[t].spec.table, done, total, "rows"});
    auto on_replica = rows_by_key(replica, options.replica_role, plans[t], suspects[t]);
    auto second = rows_by_key(primary, "primary", plans[t], suspects[t]);
    TableResult& table = result.tables[t];
    for (const std::string& key : suspects[t]) {
      std::optional<Row> s1, s2, r;
      if (auto found = first[t].find(key); found != first[t].end()) s1 = found->second;
      if (auto found = second.find(key); found != second.end()) s2 = found->second;
      if (auto found = on_replica.find(key); found != on_replica.end()) r = found->second;
      ++table.rechecked;
      if (r == s1 || r == s2) {
        ++table.settled;
        continue;
      }
      result.differences.push_back(make_difference(plans[t], key, s2, r));
    }
    done += static_cast<long long>(suspects[t].size());
  }
}

}  // namespace

Result compare(pqxx::connection& primary, pqxx::connection& replica, const std::vector<TableSpec>& tables,
               const Options& options) {
  Result result;
  result.replica = options.replica;
  std::vector<Plan> plans;
  for (const TableSpec& spec : tables) plans.push_back(plan(primary, replica, spec, options));
  result.point = wait_for_consistent_point(primary, replica, options);
  std::vector<std::vector<std::string>> suspects(plans.size());
  for (size_t t = 0; t < plans.size(); ++t)
    result.tables.push_back(compare_table(primary, replica, plans[t], options, suspects[t]));
  bool any = std::any_of(suspects.begin(), suspects.end(), [](const auto& keys) { return !keys.empty(); });
  if (!any) return result;
  if (options.recheck)
    recheck(primary, replica, plans, suspects, options, result);
  else
    report_suspects(primary, replica, plans, suspects, options, result);
  return result;
}

}  // namespace outbox::verify
