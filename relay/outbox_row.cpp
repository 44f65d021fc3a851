#include "relay/outbox_row.hpp"

#include "core/aggregate_version.hpp"
#include "relay/relay.hpp"

namespace outbox::relay {

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
  message.exchange = table.exchange;
  message.routing_key = table.routing_key.empty() ? message.type : table.routing_key;
  message.timestamp_seconds = created_us / 1000000;
  message.headers = {{"aggregate_type", std::string(row[2].c_str())},
                     {"aggregate_id", std::string(row[3].c_str())},
                     {"aggregate_version", aggregate_version},
                     {"created_at", created_us},
                     {"outbox_position", result.position},
                     {"outbox_table", table.name}};
  if (!valid_aggregate_version(aggregate_version))
    result.problem = "aggregate_version " + std::to_string(aggregate_version) + " is outside " +
                     std::to_string(kMinAggregateVersion) + ".." + std::to_string(kMaxAggregateVersion);
  else
    result.problem = amqp::unpublishable_reason(message, frame_max, max_message_size);
  return result;
}

}  // namespace outbox::relay
