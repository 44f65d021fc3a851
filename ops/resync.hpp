#pragma once
// `outbox resync`: repairs drift of a mapped read-model table without truncating anything. No CLI here.
//
// The table is one of replicate.mappings with an upsert mapping (the built-in parking_slots by
// default); its key column is the key of its rows and the id of its aggregates (the aggregate id of
// the events that write a row is the row's key as text).
// For each chosen key, in one primary transaction per chunk of keys:
//   - the row exists on the primary: it is locked (SELECT ... FOR UPDATE), and an event of the
//     table's upsert mapping (parking.update) goes into the outbox in the same transaction with the
//     primary's row as its payload (to_jsonb of the columns the primary and every replica have in
//     common: the payload's fields become the row), at a version one above every version known for
//     it. When the primary's table has a `version` column (parking_slots does: the version of the
//     aggregate, from which its writer counts on), it is set to the new version first, exactly as
//     update_parking_slot does, so that the payload and the writer's next event carry it; without
//     one, nothing is written to the primary row. The relay and the replicas' version guards then
//     treat it like any other write: it is published in order after the aggregate's earlier
//     events, and applied because its version is the newest.
//   - the row is gone from the primary: an event of the table's delete mapping (parking.delete)
//     with the key (and the version, for a table with a version column). A table without a delete
//     mapping cannot delete a row through an event: the row is reported as failed, with the reason.
// "Every version known" is the greatest of: the primary row's version (a version column), the
// newest version of the aggregate still in the primary's outbox (an event in flight), and the
// version each configured replica records in outbox_aggregate_versions (which includes delete
// tombstones) or in its table's version column (a row written there by other means than
// replicate). The replicas must be read because the primary keeps no trace of a deleted row, and a
// replica may even be ahead of the primary (a primary restored from a backup). So resync reads
// every configured replica first and refuses to write anything when one cannot be reached
// (Error(unavailable)).
//
// The events go to every replica, not only to the one compared against: a replica that already
// had the right row applies a row with the same content and a newer version, which is harmless.
// A key on neither the primary nor any replica is skipped (there is nothing to repair).
//
// Versions stay within the valid range (core/aggregate_version.hpp), with checked arithmetic. A
// version outside it (stored by a replicate or written by hand before the range was enforced) is
// not counted as known: replicate lets any valid version beat it, so the new version is one above
// the valid ones, and it is never copied onto the primary. Each row is repaired on its own, under
// a savepoint: a row that cannot be (a version already at the top of the range, no delete mapping,
// or a write the primary refuses for that row) gets Action::failed with the reason, and the others
// are repaired.
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "core/progress.hpp"

namespace outbox::resync {

struct Replica {
  std::string role;  // "replica main"
  pqxx::connection* connection = nullptr;
};

// The repaired table and the events that write it (from replicate.mappings).
struct Table {
  std::string table = "parking_slots";  // "name" or "schema.name", the same on every side
  std::string key_column = "uuid";
  std::string aggregate_type = "parking_slot";  // of its events: the scope of their versions
  std::string upsert_event = "parking.update";
  std::string delete_event = "parking.delete";  // "": the table has no delete mapping
};

struct Outcome {
  std::string key;  // the row's key as the primary's key type prints it
  enum class Action { update, remove, unknown, failed } action = Action::unknown;
  long long version = 0;  // of the emitted event
  std::string event_id;
  std::string problem;  // for failed: why the row could not be repaired (one line)
};

struct Options {
  std::string outbox_table = "public.outbox";
  size_t chunk = 500;  // keys per primary transaction
  Table table;
  progress::Callback progress;  // rows done of the chosen keys; none: silent
};

// Returns one outcome per distinct key, in order. A key that is not a value of the key column's
// type is Error(data) naming it. Error(config) when the table or the key column is missing.
std::vector<Outcome> resync(pqxx::connection& primary, const std::vector<Replica>& replicas, const std::vector<std::string>& keys,
                            const Options& options = {});

}  // namespace outbox::resync
