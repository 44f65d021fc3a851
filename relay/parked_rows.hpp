#pragma once
// The one definition of "held behind a parked row", shared by the relay's reads, lag, check and
// verify, so that they all agree on which unpublished rows the relay is working on.
//
// A row the relay cannot publish is parked in the primary's outbox_parked (migration 0002); the
// relay publishes no later row of its aggregate while it is parked (relay/relay.hpp).
#include <string>

namespace outbox::parked_rows {

// A condition on an outbox row aliased `o`: true unless the row, or an earlier row of its
// aggregate, is parked. `table_parameter` is the placeholder ("$1") bound to the configured table
// name ("public.outbox"). outbox_parked is normally empty, so the anti-join costs little.
inline std::string not_held(const std::string& table_parameter) {
  return "NOT EXISTS (SELECT 1 FROM outbox_parked p WHERE p.outbox_table = " + table_parameter +
         " AND p.parked_at IS NOT NULL AND p.aggregate_type = o.aggregate_type AND p.aggregate_id = o.aggregate_id "
         "AND p.position <= o.position)";
}

// Whether the primary has outbox_parked (a primary not yet migrated to 0002 has no parked rows).
inline constexpr const char* kExistsSql = "SELECT to_regclass('outbox_parked') IS NOT NULL";

}  // namespace outbox::parked_rows
