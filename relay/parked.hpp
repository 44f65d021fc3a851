#pragma once
// Outbox rows the relay parked on the primary (outbox_parked), for `outbox failed ... --relay`. No
// CLI here.
//
// A parked row is neither deleted nor marked published; the relay publishes no later row of its
// aggregate while it is parked. Rows the broker refused fewer than relay.max_attempts times are
// listed too, in state 'retrying' (the relay still publishes them, one at a time).
//   retry ID    checks the row again as the relay would (Error(data) while it still cannot be
//               published: fix the row first, or discard it), then removes the parked record: the
//               relay publishes the row and the rows waiting behind it, in order, at its next read.
//   discard ID  deletes the outbox row and its parked record in one transaction: it is never
//               published, and the rows waiting behind it are released.
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "relay/relay.hpp"

namespace outbox::relay {

struct ParkedRow {
  long long id = 0;
  std::string table, state;  // state: parked | retrying
  long long position = 0;
  std::string event_id, event_type, aggregate_type, aggregate_id;
  int attempts = 0;
  std::string first_failed_at, last_failed_at, parked_at, error;
  long long waiting = 0;               // unpublished rows of the same aggregate behind it
  std::optional<std::string> payload;  // filled by find(); none when the outbox row is gone
};

class ParkedRows {
 public:
  // `tables` are the configured relay tables; Error(config) when the primary lacks outbox_parked.
  ParkedRows(pqxx::connection& connection, std::vector<TableSpec> tables, size_t max_message_size, std::string notify_channel);
  std::vector<ParkedRow> list();
  // Error(data) when there is no such id.
  ParkedRow find(long long id);
  // Returns the released row; Error(data) when it still cannot be published.
  ParkedRow retry(long long id);
  // Every parked row that can now be published, oldest first; `refused` gets one line per row that
  // still cannot be published.
  std::vector<ParkedRow> retry_all(std::vector<std::string>& refused);
  ParkedRow discard(long long id);

 private:
  const TableSpec& table_of(const ParkedRow& row) const;
  std::string still_unpublishable(pqxx::transaction_base& tx, const ParkedRow& row) const;
  void wake_relay(pqxx::transaction_base& tx, const ParkedRow& row) const;

  pqxx::connection& connection_;
  std::vector<TableSpec> tables_;
  size_t max_message_size_;
  std::string notify_channel_;
};

}  // namespace outbox::relay
