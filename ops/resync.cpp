#include "ops/resync.hpp"

#include <algorithm>
#include <map>

#include "core/aggregate_version.hpp"
#include "core/error.hpp"
#include "core/failpoint.hpp"
#include "core/pg.hpp"
#include "examples/parking/parking.hpp"
#include "writer/outbox_writer.hpp"

namespace outbox::resync {
namespace {

template <typename Body>
auto on(const std::string& role, Body body) {
  return pg::with_context(role, [&] {
    try {
      return body();
    } catch (const pqxx::undefined_table&) {
      throw config_error(role + ": parking_slots, the outbox or outbox_aggregate_versions does not exist; run 'outbox migrate'");
    }
  });
}

// The highest valid version known for a uuid, where it was found, and whether the uuid was found
// anywhere at all.
struct Known {
  long long version = 0;  // 0: no valid version
  std::string source;     // "replica main", "the primary", "the primary's outbox"
  bool seen = false;
};

// A version outside 1 .. 2^53-1 (written before the range was enforced) is no version to beat:
// replicate lets any valid event beat it, and taking it as the base would copy it (plus one, which
// may overflow) onto the primary.
void consider(Known& known, long long version, const std::string& source) {
  known.seen = true;
  if (valid_aggregate_version(version) && version > known.version) {
    known.version = version;
    known.source = source;
  }
}

// The versions each replica records per uuid: its aggregate version (a tombstone counts) and the
// version of its row (a row that got there by other means than replicate).
std::map<std::string, Known> replica_versions(const std::vector<Replica>& replicas, const std::vector<std::string>& uuids) {
  std::map<std::string, Known> out;
  for (const Replica& replica : replicas) {
    on(replica.role, [&] {
      pqxx::read_transaction tx(*replica.connection);
      for (const auto& row :
           tx.exec_params("SELECT aggregate_id, version FROM outbox_aggregate_versions "
                          "WHERE aggregate_type = $1 AND aggregate_id = ANY($2::text[]) "
                          "UNION ALL SELECT uuid::text, version FROM parking_slots WHERE uuid = ANY($2::text[]::uuid[])",
                          std::string(parking::kAggregateType), pg::array_literal(uuids)))
        consider(out[row[0].as<std::string>()], row[1].as<long long>(), replica.role);
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

// The parking rows of `keys` on the primary, locked for the transaction.
std::map<std::string, parking::Slot> lock_rows(pqxx::work& tx, const std::vector<std::string>& keys) {
  std::map<std::string, parking::Slot> rows;
  for (const auto& row : tx.exec_params(
           "SELECT uuid::text, name, status, version FROM parking_slots WHERE uuid = ANY($1::uuid[]) ORDER BY uuid FOR UPDATE",
           pg::array_literal(keys)))
    rows[row[0].as<std::string>()] = {row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                                      row[3].as<long long>()};
  return rows;
}

// The newest valid version in the outbox per uuid (0 when it holds only versions outside the range).
std::map<std::string, long long> outbox_versions(pqxx::work& tx, const std::vector<std::string>& keys,
                                                 const std::string& outbox_table) {
  std::map<std::string, long long> in_outbox;
  for (const auto& row : tx.exec_params(
           "SELECT aggregate_id, coalesce(max(aggregate_version) FILTER (WHERE aggregate_version BETWEEN $3 AND $4), 0) "
           "FROM " +
               pg::quote_qualified(outbox_table) +
               " WHERE aggregate_type = $1 AND aggregate_id = ANY($2::text[]) GROUP BY aggregate_id",
           std::string(parking::kAggregateType), pg::array_literal(keys), kMinAggregateVersion, kMaxAggregateVersion))
    in_outbox[row[0].as<std::string>()] = row[1].as<long long>();
  return in_outbox;
}

// Writes the event that repairs `uuid` at `version`: a parking.update with the primary's row, or
// a parking.delete when the primary has none. Each row under its own savepoint: a row the primary
// refuses is named, and the others are repaired.
Outcome repair(pqxx::work& tx, const std::string& uuid, long long version, const parking::Slot* row, const Options& options) {
  Outcome outcome;
  outcome.uuid = uuid;
  outcome.version = version;
  tx.exec("SAVEPOINT resync_row");
  try {
    if (row) {
      parking::Slot slot = *row;
      slot.version = outcome.version;
      tx.exec_params("UPDATE parking_slots SET version = $2 WHERE uuid = $1::uuid", uuid, slot.version);
      outcome.action = Outcome::Action::update;
      outcome.event_id =
          insert_event(tx,
                       {std::string(parking::kAggregateType),
                        uuid,
                        slot.version,
                        "parking.update",
                        {{"uuid", slot.uuid}, {"name", slot.name}, {"status", slot.status}, {"version", slot.version}}},
                       options.outbox_table);
    } else {
      outcome.action = Outcome::Action::remove;
      outcome.event_id = insert_event(tx,
                                      {std::string(parking::kAggregateType),
                                       uuid,
                                       outcome.version,
                                       "parking.delete",
                                       {{"uuid", uuid}, {"version", outcome.version}}},
                                      options.outbox_table);
    }
    tx.exec("RELEASE SAVEPOINT resync_row");
  } catch (const pqxx::sql_error& error) {
    if (!refused_for_the_row(error)) throw;
    tx.exec("ROLLBACK TO SAVEPOINT resync_row");
    outcome = Outcome{};
    outcome.uuid = uuid;
    outcome.action = Outcome::Action::failed;
    outcome.problem = "primary: " + pg::first_error_line(error.what());
  }
  return outcome;
}

// One chunk of uuids in one primary transaction; `on_replicas` holds the replicas' versions.
std::vector<Outcome> resync_chunk(pqxx::connection& primary, const std::vector<std::string>& keys,
                                  const std::map<std::string, Known>& on_replicas, const Options& options) {
  std::vector<Outcome> out;
  pqxx::work tx(primary, "resync");
  std::map<std::string, parking::Slot> rows = lock_rows(tx, keys);
  std::map<std::string, long long> in_outbox = outbox_versions(tx, keys, options.outbox_table);
  for (const std::string& uuid : keys) {
    Outcome outcome;
    outcome.uuid = uuid;
    Known known;
    if (auto found = on_replicas.find(uuid); found != on_replicas.end()) known = found->second;
    if (auto found = in_outbox.find(uuid); found != in_outbox.end()) consider(known, found->second, "the primary's outbox");
    auto row = rows.find(uuid);
    if (row != rows.end()) consider(known, row->second.version, "the primary");
    if (!known.seen) {
      out.push_back(outcome);  // unknown: nothing to repair
      continue;
    }
    if (known.version >= kMaxAggregateVersion) {
      outcome.action = Outcome::Action::failed;
      outcome.problem = known.source + " has version " + std::to_string(known.version) +
                        ", the largest valid one, so no newer version can beat it";
      if (known.source.rfind("replica ", 0) == 0)
        outcome.problem += " (delete its rows from outbox_aggregate_versions and parking_slots there, then resync it again)";
      out.push_back(outcome);
      continue;
    }
    // Within the range, and one above every valid version known (a primary row whose own
    // version is outside the range gets this one instead).
    out.push_back(repair(tx, uuid, known.version + 1, row != rows.end() ? &row->second : nullptr, options));
  }
  failpoint("resync.before_commit");
  tx.commit();
  return out;
}

}  // namespace

std::vector<Outcome> resync(pqxx::connection& primary, const std::vector<Replica>& replicas,
                            const std::vector<std::string>& uuids, const Options& options) {
  std::vector<Outcome> outcomes;
  size_t chunk = std::max<size_t>(1, options.chunk);
  for (size_t begin = 0; begin < uuids.size(); begin += chunk) {
    std::vector<std::string> keys(uuids.begin() + static_cast<long>(begin),
                                  uuids.begin() + static_cast<long>(std::min(uuids.size(), begin + chunk)));
    // Read before the primary transaction: every replica must be reachable before anything is written.
    std::map<std::string, Known> on_replicas = replica_versions(replicas, keys);
    std::vector<Outcome> done = on("primary", [&] { return resync_chunk(primary, keys, on_replicas, options); });
    outcomes.insert(outcomes.end(), done.begin(), done.end());
  }
  return outcomes;
}

}  // namespace outbox::resync
