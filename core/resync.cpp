#include "core/resync.hpp"

#include <algorithm>
#include <map>

#include "core/error.hpp"
#include "core/failpoint.hpp"
#include "core/outbox_writer.hpp"
#include "core/parking.hpp"
#include "core/pg.hpp"

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

// The highest version each replica records per uuid: its aggregate version (a tombstone counts)
// or the version of its row (a row that got there by other means than replicate).
std::map<std::string, long long> replica_versions(const std::vector<Replica>& replicas, const std::vector<std::string>& uuids) {
  std::map<std::string, long long> out;
  for (const Replica& replica : replicas) {
    on(replica.role, [&] {
      pqxx::read_transaction tx(*replica.connection);
      for (const auto& row :
           tx.exec_params("SELECT aggregate_id, version FROM outbox_aggregate_versions "
                          "WHERE aggregate_type = $1 AND aggregate_id = ANY($2::text[]) "
                          "UNION ALL SELECT uuid::text, version FROM parking_slots WHERE uuid = ANY($2::text[]::uuid[])",
                          std::string(parking::kAggregateType), pg::array_literal(uuids))) {
        long long& known = out[row[0].as<std::string>()];
        known = std::max(known, row[1].as<long long>());
      }
      return 0;
    });
  }
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
    std::map<std::string, long long> on_replicas = replica_versions(replicas, keys);
    std::vector<Outcome> done = on("primary", [&] {
      std::vector<Outcome> out;
      pqxx::work tx(primary, "resync");
      std::map<std::string, parking::Slot> rows;
      for (const auto& row :
           tx.exec_params("SELECT uuid::text, name, status, version FROM parking_slots WHERE uuid = ANY($1::uuid[]) "
                          "ORDER BY uuid FOR UPDATE",
                          pg::array_literal(keys)))
        rows[row[0].as<std::string>()] = {row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                                          row[3].as<long long>()};
      std::map<std::string, long long> in_outbox;
      for (const auto& row :
           tx.exec_params("SELECT aggregate_id, max(aggregate_version) FROM " + pg::quote_qualified(options.outbox_table) +
                              " WHERE aggregate_type = $1 AND aggregate_id = ANY($2::text[]) GROUP BY aggregate_id",
                          std::string(parking::kAggregateType), pg::array_literal(keys)))
        in_outbox[row[0].as<std::string>()] = row[1].as<long long>();
      for (const std::string& uuid : keys) {
        Outcome outcome;
        outcome.uuid = uuid;
        long long known = 0;
        bool anywhere = false;
        if (auto found = in_outbox.find(uuid); found != in_outbox.end()) known = std::max(known, found->second), anywhere = true;
        if (auto found = on_replicas.find(uuid); found != on_replicas.end())
          known = std::max(known, found->second), anywhere = true;
        auto row = rows.find(uuid);
        if (row != rows.end()) {
          parking::Slot slot = row->second;
          slot.version = std::max(known, slot.version) + 1;
          tx.exec_params("UPDATE parking_slots SET version = $2 WHERE uuid = $1::uuid", uuid, slot.version);
          outcome.action = Outcome::Action::update;
          outcome.version = slot.version;
          outcome.event_id =
              insert_event(tx,
                           {std::string(parking::kAggregateType),
                            uuid,
                            slot.version,
                            "parking.update",
                            {{"uuid", slot.uuid}, {"name", slot.name}, {"status", slot.status}, {"version", slot.version}}},
                           options.outbox_table);
        } else if (anywhere) {
          outcome.action = Outcome::Action::remove;
          outcome.version = known + 1;
          outcome.event_id = insert_event(tx,
                                          {std::string(parking::kAggregateType),
                                           uuid,
                                           outcome.version,
                                           "parking.delete",
                                           {{"uuid", uuid}, {"version", outcome.version}}},
                                          options.outbox_table);
        }
        out.push_back(outcome);
      }
      failpoint("resync.before_commit");
      tx.commit();
      return out;
    });
    outcomes.insert(outcomes.end(), done.begin(), done.end());
  }
  return outcomes;
}

}  // namespace outbox::resync
