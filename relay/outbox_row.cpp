#include "relay/outbox_row.hpp"

#include <algorithm>

#include "core/aggregate_version.hpp"
#include "relay/relay.hpp"

namespace outbox::relay {

std::string row_columns(pqxx::transaction_base& tx, const std::string& quoted_table) {
  std::string columns = kRowColumns;
  pqxx::result present = tx.exec_params(
      "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
      quoted_table);
  for (const char* saga_column : kSagaColumns) {
    bool has = std::any_of(present.begin(), present.end(),
                           [&](const pqxx::row& row) { return std::string_view(row[0].c_str()) == saga_column; });
    columns += has ? std::string(", ") + saga_column + "::text" : std::string(", NULL::text");
  }
  return columns;
}

RowMessage message_from_row(const pqxx::row& row, const TableSpec& table, size_t frame_max, size_t max_message_size) {
  static constexpr const char* kNames[] = {"position",          "event_id",   "aggregate_type", "aggregate_id",
                                           "aggregate_version", "event_type", "payload",        "created_at"};
  RowMessage result;
  result.position = row[0].as<long long>();
  for (int column = 1; column < 8; ++column)
    if (row[column].is_null()) {
      result.problem = std::string(kNames[column]) + " is NULL";
      return result;
    }
  amqp::OutgoingMessage& message = result.message;
  long long aggregate_version = row[4].as<long long>();
  message.message_id = row[1].c_str();
  message.type = row[5].c_str();
  message.body.assign(row[6].c_str(), row[6].size());
  long long created_us = row[7].as<long long>();
  if (created_us == kUncarriedCreatedAt) {
    result.problem = "created_at is not a time a message can carry (infinity, -infinity or past the year 294000)";
    return result;
  }
  message.exchange = table.exchange;
  message.routing_key = table.routing_key.empty() ? message.type : table.routing_key;
  message.timestamp_seconds = created_us / 1000000;
  message.headers = {{"aggregate_type", std::string(row[2].c_str())},
                     {"aggregate_id", std::string(row[3].c_str())},
                     {"aggregate_version", aggregate_version},
                     {"created_at", created_us},
                     {"outbox_position", result.position},
                     {"outbox_table", table.name}};
  if (row.size() >= 12) {
    if (!row[8].is_null()) message.correlation_id = row[8].c_str();
    if (!row[9].is_null()) message.headers.emplace_back("causation_id", std::string(row[9].c_str()));
    if (!row[10].is_null()) message.reply_to = row[10].c_str();
    if (!row[11].is_null()) message.routing_key = row[11].c_str();
  }
  if (!valid_aggregate_version(aggregate_version))
    result.problem = "aggregate_version " + std::to_string(aggregate_version) + " is outside " +
                     std::to_string(kMinAggregateVersion) + ".." + std::to_string(kMaxAggregateVersion);
  else
    result.problem = amqp::unpublishable_reason(message, frame_max, max_message_size);
  return result;
}

}  // namespace outbox::relay
