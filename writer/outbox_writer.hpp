#pragma once
// Writes an event into an outbox table inside the caller's transaction, so the event commits or
// rolls back together with the change it describes (the transactional outbox).
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace outbox {

// One field of an event's JSON payload. PostgreSQL builds the JSON (json_build_object) from bound
// parameters of these types, so quoting and escaping are always right.
struct JsonField {
  std::string key;
  std::variant<std::nullptr_t, std::string, long long, bool> value;
};

struct OutboxEvent {
  std::string aggregate_type;  // "parking_slot"
  std::string aggregate_id;    // "3f0c...": the aggregate's key as text
  long long aggregate_version = 0;
  std::string event_type;          // "parking.create"; also the routing key
  std::vector<JsonField> payload;  // keys in this order
  // Instead of `payload`, when not empty: a JSON object as text, stored as it is (a row the
  // database turned into JSON, whose values a JsonField could not carry without changing them).
  std::string payload_json;
};

inline constexpr std::string_view kDefaultOutboxTable = "public.outbox";

// Inserts the event (event_id = gen_random_uuid()) and returns its event id. `table` may come from
// config; it is quoted. Failpoint "outbox.event_insert" fails it before the insert.
std::string insert_event(pqxx::transaction_base& tx, const OutboxEvent& event, std::string_view table = kDefaultOutboxTable);

}  // namespace outbox
