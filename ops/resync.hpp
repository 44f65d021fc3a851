#pragma once
// `outbox resync`: repairs drift of the parking read model without truncating anything. No CLI here.
//
// For each chosen uuid, in one primary transaction per chunk of uuids:
//   - the row exists on the primary: it is locked (SELECT ... FOR UPDATE), its version is set
//     to one above every version known for it, and a parking.update event with the full row
//     (uuid, name, status, version) goes into the outbox in the same transaction, exactly as
//     update_parking_slot does. The relay and the replicas' version guards then treat it like any
//     other write: it is published in order after the aggregate's earlier events, and applied
//     because its version is the newest.
//   - the row is gone from the primary: a parking.delete event with a version one above every
//     version known for it.
// "Every version known" is the greatest of: the primary row's version, the newest version of the
// aggregate still in the primary's outbox (an event in flight), and the version each configured
// replica records in outbox_aggregate_versions (which includes delete tombstones) or in its
// parking_slots row (a row written there by other means than replicate). The replicas
// must be read because the primary keeps no trace of a deleted row, and a replica may even be
// ahead of the primary (a primary restored from a backup). So resync reads every configured
// replica first and refuses to write anything when one cannot be reached (Error(unavailable)).
//
// The events go to every replica, not only to the one compared against: a replica that already
// had the right row applies a row with the same content and a newer version, which is harmless.
// A uuid on neither the primary nor any replica is skipped (there is nothing to repair).
//
// Versions stay within the valid range (core/aggregate_version.hpp), with checked arithmetic. A
// version outside it (stored by a replicate or written by hand before the range was enforced) is
// not counted as known: replicate lets any valid version beat it, so the new version is one above
// the valid ones, and it is never copied onto the primary. Each row is repaired on its own, under
// a savepoint: a row that cannot be (a version already at the top of the range, or a write the
// primary refuses for that row) gets Action::failed with the reason, and the others are repaired.
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace outbox::resync {

struct Replica {
  std::string role;  // "replica main"
  pqxx::connection* connection = nullptr;
};

struct Outcome {
  std::string uuid;
  enum class Action { update, remove, unknown, failed } action = Action::unknown;
  long long version = 0;  // of the emitted event
  std::string event_id;
  std::string problem;  // for failed: why the row could not be repaired (one line)
};

struct Options {
  std::string outbox_table = "public.outbox";
  size_t chunk = 500;  // uuids per primary transaction
};

// `uuids` are canonical (parking::normalize_uuid). Returns one outcome per uuid, in order.
std::vector<Outcome> resync(pqxx::connection& primary, const std::vector<Replica>& replicas,
                            const std::vector<std::string>& uuids, const Options& options = {});

}  // namespace outbox::resync
