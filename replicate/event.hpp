#pragma once
// What replicate needs from a RabbitMQ message, checked before anything touches a database, and
// the mapping of event types to replica tables. Pure logic, no I/O (unit-tested).
//
// A message is valid when it has
//   message_id                 a uuid (the event id)
//   type (or the routing key)  the event type, mapped by a Mapping (or outbox.heartbeat)
//   headers aggregate_type, aggregate_id (text) and aggregate_version (an integer in the valid
//   range of core/aggregate_version.hpp, 1 .. 2^53-1)
//   body                       a JSON object
// and optionally headers created_at (µs since the epoch, 0 .. kLatestCreatedAtMicros) and
// outbox_position. Anything else is a poison event with a one-line reason ("missing header
// aggregate_version", "header aggregate_version 0 is outside the valid range 1..9007199254740991").
// A heartbeat (type outbox.heartbeat) is never poison: a broken one is skipped.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/amqp.hpp"
#include "core/config.hpp"

namespace outbox::replicate {

inline constexpr std::string_view kHeartbeatType = "outbox.heartbeat";
// Longest aggregate_type or aggregate_id accepted: both must fit one B-tree entry (about 2.7 kB) of
// outbox_aggregate_versions and outbox_failed_events together.
inline constexpr size_t kMaxKeyBytes = 1024;
// Latest created_at accepted (µs since the epoch): 9999-12-31T23:59:59.999999Z. PostgreSQL's
// timestamptz ends in the year 294276; a later time would fail the apply statement instead of
// being refused here with its reason. (A time merely in the future is accepted: replicate.max_clock_skew.)
inline constexpr long long kLatestCreatedAtMicros = 253402300799999999LL;

enum class Operation { upsert, remove };

// What the engine does with an event type: a replica's mapping writes a table; a consumer's
// handler (`function` set: `outbox consume`, services.NAME.handlers) calls a SQL function f(jsonb)
// with the event's envelope. A target's mappings are all of one kind.
struct Mapping {
  std::string event_type;  // "parking.create"; for a handler also an AMQP topic pattern ("booking.*", "#")
  std::string table;       // "public.parking_slots" or "parking_slots"
  Operation operation = Operation::upsert;
  std::string key_column;  // "uuid"
  std::string function;    // a handler's SQL function, "booking.on_parking_reserved"; "" for a table mapping
  bool is_handler() const { return !function.empty(); }
};

// The built-in parking mapping, used when replicate.mappings has no block (replicate/settings.hpp).
std::vector<Mapping> default_mappings();
// Index of the event type's mapping, or -1. An exact event type wins; then the first handler (in
// config order) whose topic pattern matches.
int find_mapping(const std::vector<Mapping>& mappings, std::string_view event_type);
// AMQP topic matching of a dot-separated event type: `*` is one word, `#` zero or more words.
bool topic_matches(std::string_view pattern, std::string_view event_type);
// Whether the mappings are a consumer's handlers (an event type without one is unhandled, not poison).
bool are_handlers(const std::vector<Mapping>& mappings);

struct Event {
  std::string event_id;  // canonical lowercase uuid
  std::string event_type;
  std::string aggregate_type, aggregate_id;
  long long version = 0;
  std::optional<long long> position, created_at_us;
  int mapping = -1;  // into the mappings; -1 for a heartbeat or an unhandled event
  bool heartbeat = false;
  bool unhandled = false;  // a consumer's event whose type no handler takes: recorded in the inbox, acked
  // The value of the mapping's key column in the body, as grouping text (replicate/event.cpp,
  // KeyMemberReader): the apply writes only the newest event of each row in a batch.
  std::optional<std::string> row_key;
};

// A message checked: either an event, or the reason it is poison. When a poison message still
// names its aggregate (headers present), `aggregate_type`/`aggregate_id` are set so that the
// aggregate's later events can wait behind it.
struct Checked {
  std::optional<Event> event;
  std::string error;  // "" when valid
  bool skip = false;  // a broken heartbeat: ack it, count it, never park it
  std::string aggregate_type, aggregate_id;
  std::optional<long long> version;
};

Checked check_message(const amqp::IncomingMessage& message, const std::vector<Mapping>& mappings);

// Each column's value in a JSON object body as jsonb_populate_record gives it to the column type's
// input function: a string unescaped, an integer in digits, true or false, NULL for null or a
// missing member (the last of repeated members counts). Nullopt where this reading could differ
// from jsonb's, and the apply must read the body as jsonb: a fraction or exponent (numeric_out
// writes 1e3 as 1000), an object or array, a Unicode escape (jsonb refuses U+0000 and lone
// surrogates), a body simdjson refuses or that is not an object, or one over 64 KiB.
std::optional<std::vector<std::optional<std::string>>> column_texts(std::string_view body,
                                                                    const std::vector<std::string>& columns);

// The message's properties and headers as one JSON object (stored with a parked event), and back.
std::string properties_json(const amqp::IncomingMessage& message);
amqp::IncomingMessage message_from_stored(const std::string& properties_json, std::string body);

// Lowercase hex of any bytes: message bodies and header values kept where text cannot hold them.
std::string to_hex(std::string_view bytes);

// True for a canonical uuid (8-4-4-4-12 hex digits, either case).
bool is_uuid(std::string_view text);

}  // namespace outbox::replicate
