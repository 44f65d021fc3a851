#include "migrate/pack.hpp"

#include <nlohmann/json.hpp>

namespace outbox::pack {
namespace {

using json = nlohmann::json;

// A JSON string literal of `text`. Hand-written because the relay encodes every event of a drain
// with it: quotes, backslashes and control characters escaped, every other byte as it is (text
// from PostgreSQL is UTF-8).
void append_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  size_t plain_from = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    auto byte = static_cast<unsigned char>(text[i]);
    if (byte >= 0x20 && byte != '"' && byte != '\\') continue;
    out.append(text.data() + plain_from, i - plain_from);
    plain_from = i + 1;
    if (byte == '"' || byte == '\\') {
      out += '\\';
      out += static_cast<char>(byte);
    } else if (byte == '\n') {
      out += "\\n";
    } else {
      out += "\\u00";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xF];
    }
  }
  out.append(text.data() + plain_from, text.size() - plain_from);
  out += '"';
}

void append_field(std::string& out, const char* key, std::string_view value) {
  out += ",\"";
  out += key;
  out += "\":";
  append_string(out, value);
}

// The text of a field that must be a string, or a problem.
std::optional<std::string> text_field(const json& element, const char* key, std::string& problem) {
  auto found = element.find(key);
  if (found == element.end() || found->is_null()) return std::nullopt;
  if (found->is_string()) return found->get<std::string>();
  if (problem.empty()) problem = std::string("field ") + key + " is not a string";
  return std::nullopt;
}

Unpacked unpack_element(const json& element, size_t index, const amqp::IncomingMessage& pack) {
  Unpacked out;
  amqp::IncomingMessage& message = out.message;
  message.delivery_tag = pack.delivery_tag;
  message.redelivered = pack.redelivered;
  message.exchange = pack.exchange;
  message.routing_key = pack.routing_key;
  message.app_id = pack.app_id;
  message.content_type = "application/json";
  std::string where = "pack element " + std::to_string(index) + ": ";
  if (!element.is_object()) {
    out.problem = where + "not a JSON object";
    return out;
  }
  std::string problem;
  message.message_id = text_field(element, "message_id", problem);
  message.type = text_field(element, "type", problem);
  message.correlation_id = text_field(element, "correlation_id", problem);
  message.reply_to = text_field(element, "reply_to", problem);
  if (auto key = text_field(element, "routing_key", problem)) message.routing_key = *key;
  if (auto found = element.find("timestamp"); found != element.end() && found->is_number_integer())
    message.timestamp_seconds = found->get<long long>();
  if (auto headers = element.find("headers"); headers != element.end() && headers->is_object()) {
    for (const auto& [key, value] : headers->items()) {
      if (value.is_number_integer())
        message.headers[key] = value.get<long long>();
      else if (value.is_string())
        message.headers[key] = value.get<std::string>();
      else if (problem.empty())
        problem = "header " + key + " is neither a text nor an integer";
    }
  } else if (problem.empty()) {
    problem = "no headers object";
  }
  if (auto payload = text_field(element, "payload", problem))
    message.body = std::move(*payload);
  else if (problem.empty())
    problem = "no payload";
  if (!problem.empty()) out.problem = where + problem;
  return out;
}

}  // namespace

std::string element_json(const amqp::OutgoingMessage& event) {
  std::string out;
  out.reserve(event.body.size() + event.body.size() / 8 + kElementOverhead + 64 * event.headers.size());
  out += "{\"message_id\":";
  append_string(out, event.message_id);
  append_field(out, "type", event.type);
  append_field(out, "routing_key", event.routing_key);
  out += ",\"timestamp\":" + std::to_string(event.timestamp_seconds);
  if (!event.correlation_id.empty()) append_field(out, "correlation_id", event.correlation_id);
  if (!event.reply_to.empty()) append_field(out, "reply_to", event.reply_to);
  out += ",\"headers\":{";
  bool first = true;
  for (const auto& [key, value] : event.headers) {
    if (!first) out += ',';
    first = false;
    append_string(out, key);
    out += ':';
    if (const auto* number = std::get_if<long long>(&value))
      out += std::to_string(*number);
    else
      append_string(out, std::get<std::string>(value));
  }
  out += '}';
  append_field(out, "payload", event.body);
  out += '}';
  return out;
}

void Builder::add(const amqp::OutgoingMessage& event) {
  if (count_ == 0) {
    body_ = "[";
    routing_key_ = event.routing_key;
    first_id_ = event.message_id;
    table_.clear();
    first_position_ = 0;
    for (const auto& [key, value] : event.headers) {
      if (key == "outbox_table" && std::holds_alternative<std::string>(value)) table_ = std::get<std::string>(value);
      if (key == "outbox_position" && std::holds_alternative<long long>(value)) first_position_ = std::get<long long>(value);
    }
  } else {
    body_ += ',';
  }
  body_ += element_json(event);
  ++count_;
}

amqp::OutgoingMessage Builder::take(const std::string& exchange, int partition) {
  amqp::OutgoingMessage message;
  message.exchange = exchange;
  message.routing_key = routing_key_;
  message.content_type = kContentType;
  message.type = kType;
  message.message_id = "pack:" + first_id_;
  message.body = std::move(body_);
  message.body += ']';
  message.headers = {{kCountHeader, static_cast<long long>(count_)},
                     {kPartitionHeader, static_cast<long long>(partition)},
                     {"outbox_table", table_},
                     {"outbox_position", first_position_}};
  body_.clear();
  count_ = 0;
  return message;
}

bool is_pack(const amqp::IncomingMessage& message) { return message.content_type && *message.content_type == kContentType; }

std::vector<Unpacked> unpack(const amqp::IncomingMessage& pack) {
  json elements = json::parse(pack.body, nullptr, false);
  if (elements.is_discarded() || !elements.is_array()) {
    Unpacked whole{
        pack, elements.is_discarded() ? "malformed pack: its body is not JSON" : "malformed pack: its body is not a JSON array"};
    return {std::move(whole)};
  }
  std::vector<Unpacked> out;
  out.reserve(elements.size());
  for (size_t i = 0; i < elements.size(); ++i) out.push_back(unpack_element(elements[i], i, pack));
  if (out.empty()) out.push_back(Unpacked{pack, "malformed pack: it holds no event"});
  return out;
}

}  // namespace outbox::pack
