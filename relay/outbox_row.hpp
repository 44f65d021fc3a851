#pragma once
// One outbox row as the message the relay publishes, and why the broker could never take it. The
// relay checks each row with this before publishing it; `outbox failed retry --relay` checks a
// parked row with it before releasing it.
#include <iterator>
#include <limits>
#include <pqxx/pqxx>
#include <string>

#include "core/amqp.hpp"

namespace outbox::relay {

struct TableSpec;

// The columns every read of the outbox selects, in the order message_from_row() expects.
// created_at is the writers' own: 'infinity', '-infinity' and the last millennia of timestamptz
// have no microseconds since 1970 in a bigint, and the conversion failed the whole read, at every
// poll ("cannot convert infinity to bigint"). Such a time reads as kUncarriedCreatedAt, and its
// row is parked with the reason (message_from_row).
inline constexpr long long kUncarriedCreatedAt = std::numeric_limits<long long>::min();
inline constexpr const char* kRowColumns =
    "position, event_id::text, aggregate_type, aggregate_id, aggregate_version, event_type, payload::text, "
    "CASE WHEN created_at > '-infinity' AND created_at < '294000-01-01 00:00:00+00' "
    "THEN (extract(epoch FROM created_at) * 1000000)::bigint WHEN created_at IS NOT NULL THEN '-9223372036854775808'::bigint END";

// The optional columns of a saga's outbox (migrate/sql/primary/0003, service/1001), after
// kRowColumns in this order. A table in relay.tables may lack any of them (a user's own table):
// then it reads as NULL.
inline constexpr const char* kSagaColumns[] = {"correlation_id", "causation_id", "reply_to", "routing_key"};

// The column after kRowColumns and the saga columns in the relay's reads: the row's relay
// partition (relay/statements.cpp), by which packs are built.
inline constexpr int kPartitionColumn = 8 + static_cast<int>(std::size(kSagaColumns));

// kRowColumns and each saga column the table has (as text), NULL::text for one it lacks: a catalog
// check of `quoted_table` (a missing table has none; its read then fails naming it).
std::string row_columns(pqxx::transaction_base& tx, const std::string& quoted_table);

struct RowMessage {
  long long position = 0;
  amqp::OutgoingMessage message;
  std::string problem;  // why it can never be published, or ""
};

// Builds the message of a row read with kRowColumns (and optionally the saga columns: then
// correlation_id and reply_to become the AMQP properties, causation_id a header, and routing_key,
// when not NULL, the routing key instead of the table's or the type). A NULL column of
// kRowColumns, a created_at no message can carry, a version outside core/aggregate_version.hpp's range, or a message over an AMQP
// limit (amqp::unpublishable_reason) is a problem. Throws pqxx::conversion_error only for a NULL
// position.
RowMessage message_from_row(const pqxx::row& row, const TableSpec& table, size_t frame_max, size_t max_message_size);

}  // namespace outbox::relay
