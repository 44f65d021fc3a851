#include "replicate/envelope.hpp"

#include <ctime>

#include "core/utf8.hpp"

namespace outbox::replicate {
namespace {

void text_or_null(std::string& out, const std::optional<std::string>& value) {
  if (value)
    append_json_string(out, utf8::storable_copy(*value));
  else
    out += "null";
}

}  // namespace

std::string iso_utc_micros(long long micros) {
  long long seconds = micros / 1000000;
  long long fraction = micros % 1000000;
  if (fraction < 0) {
    fraction += 1000000;
    --seconds;
  }
  std::time_t time = static_cast<std::time_t>(seconds);
  std::tm utc{};
  gmtime_r(&time, &utc);
  char text[40];
  size_t used = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + used, sizeof text - used, ".%06lldZ", fraction);
  return text;
}

std::string envelope_json(const amqp::IncomingMessage& message, const Event& event) {
  std::string out = "{\"event_id\":\"" + event.event_id + "\",\"event_type\":";
  append_json_string(out, event.event_type);
  out += ",\"aggregate_type\":";
  append_json_string(out, event.aggregate_type);
  out += ",\"aggregate_id\":";
  append_json_string(out, event.aggregate_id);
  out += ",\"aggregate_version\":" + std::to_string(event.version) + ",\"created_at\":";
  if (event.created_at_us)
    out += "\"" + iso_utc_micros(*event.created_at_us) + "\"";
  else
    out += "null";
  out += ",\"correlation_id\":";
  text_or_null(out, message.correlation_id);
  out += ",\"causation_id\":";
  std::optional<std::string> causation;
  if (auto found = message.headers.find("causation_id"); found != message.headers.end()) {
    if (const auto* text = std::get_if<std::string>(&found->second))
      causation = *text;
    else
      causation = std::to_string(std::get<long long>(found->second));
  }
  text_or_null(out, causation);
  out += ",\"reply_to\":";
  text_or_null(out, message.reply_to);
  out += ",\"routing_key\":";
  append_json_string(out, utf8::storable_copy(message.routing_key));
  out += ",\"headers\":{";
  bool first = true;
  for (const auto& [key, value] : message.headers) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, utf8::storable_copy(key));
    out += ':';
    if (const auto* number = std::get_if<long long>(&value))
      out += std::to_string(*number);
    else
      append_json_string(out, utf8::storable_copy(std::get<std::string>(value)));
  }
  out += "},\"payload\":" + message.body + "}";
  return out;
}

std::string handler_batch_parameter(const std::vector<Item*>& items, const Item* position_of) {
  std::string batch = "[";
  batch.reserve((items.size() + 1) * 640);
  auto append = [&](size_t i, const Item& item, bool position_only) {
    const Event& event = *item.checked.event;
    const amqp::IncomingMessage& message = *item.message;
    if (i) batch += ',';
    batch += "{\"i\":" + std::to_string(i) + ",\"id\":\"" + event.event_id + "\",\"at\":";
    append_json_string(batch, event.aggregate_type);
    batch += ",\"ag\":";
    append_json_string(batch, event.aggregate_id);
    int mapping = position_only ? -2 : event.heartbeat ? -1 : event.unhandled ? -3 : event.mapping;
    batch += ",\"v\":" + std::to_string(event.version) + ",\"m\":" + std::to_string(mapping) + ",\"pos\":";
    append_optional(batch, event.position);
    batch += ",\"ts\":";
    append_optional(batch, event.created_at_us);
    if (mapping == -1) {
      batch += ",\"p\":" + message.body + "}";
      return;
    }
    if (mapping < 0) {
      batch += '}';
      return;
    }
    // The correlation id of what the handler emits: the conversation's, else this event starts one.
    batch += ",\"c\":";
    if (message.correlation_id && !message.correlation_id->empty())
      append_json_string(batch, utf8::storable_copy(*message.correlation_id));
    else
      batch += "\"" + event.event_id + "\"";
    batch += ",\"rt\":";
    append_json_string(batch, utf8::storable_copy(message.reply_to.value_or("")));
    batch += ",\"e\":" + envelope_json(message, event) + "}";
  };
  for (size_t i = 0; i < items.size(); ++i) append(i, *items[i], false);
  if (position_of) append(items.size(), *position_of, true);
  batch += ']';
  return batch;
}

}  // namespace outbox::replicate
