#pragma once
// The parking-slot aggregate of the example: validation, output formats, and the writes that put
// the row change and its outbox event into the caller's transaction. No CLI here.
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <vector>

#include "writer/outbox_writer.hpp"

namespace outbox::parking {

inline constexpr std::string_view kAggregateType = "parking_slot";
inline constexpr size_t kMaxNameLength = 200;  // in Unicode code points, like char_length()
inline constexpr std::string_view kDefaultStatus = "available";

struct Slot {
  std::string uuid;  // lowercase canonical text
  std::string name;
  std::string status;
  long long version = 0;
  bool operator==(const Slot&) const = default;
};

// Number of code points of valid UTF-8 (no overlong forms, surrogates or values past U+10FFFF),
// or nullopt when the text is not valid UTF-8.
std::optional<size_t> utf8_length(std::string_view text);

// Each throws Error(ExitCode::data) with a one-line message, e.g.
//   invalid name: 201 characters, at most 200 allowed
//   invalid status "open": must be available, blocked or reserved
//   invalid uuid "42": must look like 3f0c1d2e-4b5a-6978-8a9b-0c1d2e3f4a5b
// A name is 1..200 code points of valid UTF-8 without control characters (C0, DEL, C1), and not
// only spaces (ASCII, Unicode space separators, zero-width spaces): "invalid name: only spaces".
void validate_name(std::string_view name);
void validate_status(std::string_view status);
// Returns the uuid in canonical lowercase form (8-4-4-4-12 hex digits; upper case accepted).
std::string normalize_uuid(std::string_view uuid);
// A random (version 4) uuid in canonical lowercase form, from OpenSSL's CSPRNG. The database makes
// the ids of slots and events; this is for clients that need one before the insert (tests, benchmarks).
std::string random_uuid();

// {"uuid": "...", "name": "...", "status": "..."} (no newline). JSON-escaped; non-ASCII UTF-8 is
// kept as is so that names round-trip.
std::string json_line(const Slot& slot);
// "uuid:   ...\nname:   ...\nstatus: ...\n", control characters escaped (core/escape.hpp).
std::string details(const Slot& slot);

// The writes. Each validates first, changes parking_slots and inserts the event (event types
// parking.create, parking.update, parking.delete; payload: the row as JSON with its version, or
// uuid and version for a delete) into `outbox_table` in the same transaction; the caller commits.
// Failpoint "parking.before_event_insert" fails between the row change and the event insert.
Slot create(pqxx::transaction_base& tx, std::string_view name, std::string_view status = kDefaultStatus,
            std::string_view outbox_table = kDefaultOutboxTable);
// Locks the row (UPDATE ... RETURNING): concurrent updates get strictly increasing versions.
// At least one of name and status must be given. Unknown uuid: Error(data) "parking slot UUID not found".
Slot update(pqxx::transaction_base& tx, std::string_view uuid, const std::optional<std::string>& name,
            const std::optional<std::string>& status, std::string_view outbox_table = kDefaultOutboxTable);
// Returns the deleted row with version = its last version + 1 (the version of the delete event).
Slot remove(pqxx::transaction_base& tx, std::string_view uuid, std::string_view outbox_table = kDefaultOutboxTable);

// The reads work on the primary's parking_slots and on a replica's read model alike.
std::vector<Slot> list(pqxx::transaction_base& tx);  // ordered by name, then uuid
std::optional<Slot> find(pqxx::transaction_base& tx, std::string_view uuid);

}  // namespace outbox::parking
