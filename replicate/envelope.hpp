#pragma once
// The consumer's handler path (see replicate/apply.hpp): what a handler f(jsonb) receives, and the
// batch that migrate/sql/service/1003_handle_batch_by_size.sql's outbox_handle_batch takes. Pure, unit-tested.
//
// The envelope of one event:
//   {"event_id": "uuid", "event_type": "t", "aggregate_type": "a", "aggregate_id": "id",
//    "aggregate_version": 3, "created_at": "2026-12-02T05:00:00.123456Z" | null,
//    "correlation_id": "..." | null, "causation_id": "..." | null, "reply_to": "..." | null,
//    "routing_key": "...", "headers": {...every AMQP header...}, "payload": {...the body...}}
#include <string>
#include <vector>

#include "core/amqp.hpp"
#include "replicate/apply_sql.hpp"
#include "replicate/event.hpp"

namespace outbox::replicate {

// µs since the epoch as ISO 8601 UTC with microseconds: "2026-12-02T05:00:00.123456Z".
std::string iso_utc_micros(long long micros);

// The envelope above, for a checked event (its message's body is a JSON object).
std::string envelope_json(const amqp::IncomingMessage& message, const Event& event);

// $1 of outbox_handle_batch: per item {"i", "id", "at", "ag", "v", "m", "pos", "ts", "c", "rt", "e"
// or "p"} where m is the handler's index, -1 a heartbeat (p: its body), -2 the position entry
// (`position_of`, last), -3 an unhandled event; c is the correlation id handlers emit with (the
// incoming one, else the event id), rt the reply_to ("" when none), e the envelope.
std::string handler_batch_parameter(const std::vector<Item*>& items, const Item* position_of);

}  // namespace outbox::replicate
