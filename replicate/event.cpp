#include "replicate/event.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/aggregate_version.hpp"
#include "core/error.hpp"
#include "core/pg.hpp"
#include "core/utf8.hpp"

namespace outbox::replicate {
namespace {

using json = nlohmann::json;

std::optional<std::string> header_text(const amqp::IncomingMessage& message, const std::string& key) {
  auto found = message.headers.find(key);
  if (found == message.headers.end()) return std::nullopt;
  if (const auto* text = std::get_if<std::string>(&found->second)) return *text;
  return std::to_string(std::get<long long>(found->second));
}

// An integer header outside the range it must be in; `value` is set when it fits 64 bits.
struct OutsideRange : std::invalid_argument {
  OutsideRange(const std::string& key, const std::string& text, long long min, long long max, std::optional<long long> value)
      : std::invalid_argument("header " + key + " " + text + " is outside the valid range " + std::to_string(min) + ".." +
                              std::to_string(max)),
        value(value) {}
  std::optional<long long> value;
};

// An integer header; a decimal string is accepted too. nullopt when absent; throws with a one-line
// reason that quotes the value when it is not an integer (std::invalid_argument), or not one of
// `min` .. `max` (OutsideRange).
std::optional<long long> header_number(const amqp::IncomingMessage& message, const std::string& key,
                                       long long min = std::numeric_limits<long long>::min(),
                                       long long max = std::numeric_limits<long long>::max()) {
  auto found = message.headers.find(key);
  if (found == message.headers.end()) return std::nullopt;
  if (const auto* number = std::get_if<long long>(&found->second)) {
    if (*number < min || *number > max) throw OutsideRange(key, std::to_string(*number), min, max, *number);
    return *number;
  }
  const std::string& text = std::get<std::string>(found->second);
  size_t used = 0;
  long long value = 0;
  bool overflow = false;
  try {
    value = std::stoll(text, &used);
  } catch (const std::out_of_range&) {
    overflow = true;  // digits, but more than 64 bits hold
    used = text.size();
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size()) throw std::invalid_argument("header " + key + " is not an integer: \"" + text + "\"");
  if (overflow) throw OutsideRange(key, text, min, max, std::nullopt);
  if (value < min || value > max) throw OutsideRange(key, text, min, max, value);
  return value;
}

std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Reads a body without building a DOM, and keeps the value of one top-level member (the mapping's
// key column) as grouping text: "s" and the string, "n" and the number as written, "b" and
// true/false, "x" for an object or array; nothing for null or no such member. Like jsonb, the
// last of repeated members counts. Two values the apply statement reads as the same key
// (`p->>key`) may get different texts here ("1" and 1), but never the other way round.
class KeyMemberReader : public nlohmann::json_sax<json> {
 public:
  explicit KeyMemberReader(std::string_view wanted) : wanted_(wanted) {}
  std::optional<std::string> value;

  bool null() override {
    return scalar([] { return std::optional<std::string>(); });
  }
  bool boolean(bool val) override {
    return scalar([&] { return std::string(val ? "btrue" : "bfalse"); });
  }
  bool number_integer(number_integer_t val) override {
    return scalar([&] { return "n" + std::to_string(val); });
  }
  bool number_unsigned(number_unsigned_t val) override {
    return scalar([&] { return "n" + std::to_string(val); });
  }
  bool number_float(number_float_t, const string_t& text) override {
    return scalar([&] { return "n" + text; });
  }
  bool string(string_t& val) override {
    return scalar([&] { return "s" + val; });
  }
  bool binary(binary_t&) override {
    return scalar([] { return std::string("x"); });
  }
  bool start_object(std::size_t) override { return open(); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(); }
  bool end_array() override { return close(); }
  bool key(string_t& name) override {
    capturing_ = depth_ == 1 && !wanted_.empty() && name == wanted_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  // The text is made only for the member kept: every other value costs nothing more than the check.
  template <typename Text>
  bool scalar(Text text) {
    if (depth_ == 1 && capturing_) value = text();
    capturing_ = false;
    return true;
  }
  bool open() {
    if (depth_ == 1 && capturing_) value = "x";
    capturing_ = false;
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }
  std::string_view wanted_;
  int depth_ = 0;
  bool capturing_ = false;
};

// Bodies up to this size are read by simdjson first (fast_key_member). Its parser keeps buffers
// a few times as large as the largest document it read, for the daemon's life: larger bodies (rare
// for events) go to the SAX reader alone, so that one does not add megabytes to replicate's RSS.
constexpr size_t kMostFastBodyBytes = 64 << 10;

// A member's value as simdjson reads it, for both readers below: its JSON kind ('s' string, 'n'
// integer, 'b' boolean, '0' null, 'x' object or array, 'f' a number with a fraction or an exponent)
// and, for a string, an integer or a boolean, the text jsonb gives a column (an integer's digits,
// as numeric_out writes them; true or false).
struct Scalar {
  char kind;
  std::string text;
};

Scalar scalar_of(simdjson::dom::element value) {
  switch (value.type()) {
    case simdjson::dom::element_type::STRING:
      return {'s', std::string(value.get_string().value_unsafe())};
    case simdjson::dom::element_type::INT64:
      return {'n', std::to_string(value.get_int64().value_unsafe())};
    case simdjson::dom::element_type::UINT64:
      return {'n', std::to_string(value.get_uint64().value_unsafe())};
    case simdjson::dom::element_type::BOOL:
      return {'b', value.get_bool().value_unsafe() ? "true" : "false"};
    case simdjson::dom::element_type::NULL_VALUE:
      return {'0', ""};
    case simdjson::dom::element_type::OBJECT:
    case simdjson::dom::element_type::ARRAY:
      return {'x', ""};
    case simdjson::dom::element_type::DOUBLE:
      break;
  }
  return {'f', ""};
}

// What KeyMemberReader finds, read with simdjson, whose parser keeps its buffers from one body to
// the next: nlohmann's lexer, which makes a string of every key and value, was half of the
// check's time when replicate unpacks packs. Answers only where the two readers agree: a body that
// simdjson refuses (a number beyond 64 bits, nesting deeper than 1024, a byte-order mark, a NUL
// after the JSON) or a key that is a fraction (whose text as written KeyMemberReader keeps) is left
// to KeyMemberReader (nullopt). Every body simdjson accepts, nlohmann accepts too.
std::optional<std::string> fast_key_member(std::string_view body, std::string_view key_column, std::optional<std::string>& key) {
  if (body.size() > kMostFastBodyBytes) return std::nullopt;
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) return std::nullopt;
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) return std::string("body is JSON but not an object");
  std::optional<std::string> found;
  if (!key_column.empty()) {
    for (simdjson::dom::key_value_pair member : object) {
      if (member.key != key_column) continue;  // the last of repeated members counts, as in jsonb
      Scalar value = scalar_of(member.value);
      if (value.kind == 'f') return std::nullopt;
      if (value.kind == '0')
        found.reset();
      else
        found = value.kind + value.text;  // "x" for an object or array
    }
  }
  key = std::move(found);
  return std::string();
}

// Whether the body is one JSON object (whitespace around it allowed); `key_column`'s value into
// `key` (see KeyMemberReader).
std::string json_object_problem(std::string_view body, std::string_view key_column, std::optional<std::string>& key) {
  size_t start = body.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos) return "empty body, expected a JSON object";
  if (std::optional<std::string> problem = fast_key_member(body, key_column, key)) return *problem;
  KeyMemberReader reader(key_column);
  if (!json::sax_parse(body.begin(), body.end(), &reader)) {
    try {
      json parsed = json::parse(body.begin(), body.end());
      (void)parsed;
    } catch (const json::parse_error& error) {
      std::string what = error.what();
      return "malformed JSON body: " + what.substr(what.find(':') == std::string::npos ? 0 : what.rfind(": ") + 2);
    }
    return "malformed JSON body";
  }
  if (body[start] != '{') return "body is JSON but not an object";
  key = std::move(reader.value);
  return "";
}

}  // namespace

std::optional<std::vector<std::optional<std::string>>> column_texts(std::string_view body,
                                                                    const std::vector<std::string>& columns) {
  // jsonb refuses the escapes of U+0000 and of lone surrogates, which simdjson may read: a body with
  // any Unicode escape keeps jsonb's reading.
  if (body.size() > kMostFastBodyBytes || body.find("\\u") != std::string_view::npos) return std::nullopt;
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) return std::nullopt;
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) return std::nullopt;
  std::vector<std::optional<std::string>> texts(columns.size());
  for (simdjson::dom::key_value_pair member : object) {
    auto column = std::find(columns.begin(), columns.end(), member.key);
    if (column == columns.end()) continue;
    std::optional<std::string>& text = texts[static_cast<size_t>(column - columns.begin())];  // the last repeat counts
    Scalar value = scalar_of(member.value);
    // numeric_out may spell a fraction otherwise (1e3 is 1000); jsonb refuses a NUL in a string.
    if (value.kind == 'f' || value.kind == 'x' || value.text.find('\0') != std::string::npos) return std::nullopt;
    if (value.kind == '0')
      text.reset();
    else
      text = std::move(value.text);
  }
  return texts;
}

std::vector<Mapping> default_mappings() {
  return {{"parking.create", "parking_slots", Operation::upsert, "uuid", ""},
          {"parking.update", "parking_slots", Operation::upsert, "uuid", ""},
          {"parking.delete", "parking_slots", Operation::remove, "uuid", ""}};
}

int find_mapping(const std::vector<Mapping>& mappings, std::string_view event_type) {
  for (size_t i = 0; i < mappings.size(); ++i)
    if (mappings[i].event_type == event_type) return static_cast<int>(i);
  // Patterns only for handlers: a replica's event types were always exact, and may contain * or #.
  for (size_t i = 0; i < mappings.size(); ++i)
    if (mappings[i].is_handler() && topic_matches(mappings[i].event_type, event_type)) return static_cast<int>(i);
  return -1;
}

bool are_handlers(const std::vector<Mapping>& mappings) { return !mappings.empty() && mappings.front().is_handler(); }

bool topic_matches(std::string_view pattern, std::string_view event_type) {
  auto words = [](std::string_view text) {
    std::vector<std::string_view> out;
    size_t start = 0;
    for (size_t dot = text.find('.'); dot != std::string_view::npos; dot = text.find('.', start)) {
      out.push_back(text.substr(start, dot - start));
      start = dot + 1;
    }
    out.push_back(text.substr(start));
    return out;
  };
  std::vector<std::string_view> want = words(pattern), have = words(event_type);
  // matches[i][j]: the pattern's words from i match the type's words from j.
  std::vector<std::vector<char>> matches(want.size() + 1, std::vector<char>(have.size() + 1, 0));
  matches[want.size()][have.size()] = 1;
  for (size_t i = want.size(); i-- > 0;)
    for (size_t j = have.size() + 1; j-- > 0;) {
      if (want[i] == "#")
        matches[i][j] = matches[i + 1][j] || (j < have.size() && matches[i][j + 1]);
      else
        matches[i][j] = j < have.size() && (want[i] == "*" || want[i] == have[j]) && matches[i + 1][j + 1];
    }
  return matches[0][0];
}

bool is_uuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (text[i] == '-')) return false;
    if (!dash && !std::isxdigit(static_cast<unsigned char>(text[i]))) return false;
  }
  return true;
}

std::string to_hex(std::string_view bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

Checked check_message(const amqp::IncomingMessage& message, const std::vector<Mapping>& mappings) {
  Checked out;
  std::string type = message.type && !message.type->empty() ? *message.type : message.routing_key;
  bool heartbeat = type == kHeartbeatType;
  auto fail = [&](std::string reason) {
    out.error = std::move(reason);
    out.skip = heartbeat;
    out.event.reset();
    return out;
  };
  out.aggregate_type = header_text(message, "aggregate_type").value_or("");
  out.aggregate_id = header_text(message, "aggregate_id").value_or("");
  // Without a usable pair, the message names no aggregate: it blocks nothing. The pair keys the
  // replica's B-tree indexes, so it must be text PostgreSQL can store, and short enough for them.
  std::string key_problem;
  for (const auto& [name, value] : {std::pair{"aggregate_type", &out.aggregate_type}, {"aggregate_id", &out.aggregate_id}}) {
    if (!key_problem.empty()) break;
    if (value->empty())
      key_problem = std::string("missing header ") + name;
    else if (!utf8::storable(*value))
      key_problem = std::string("header ") + name + " is not valid UTF-8 or contains NUL";
    else if (value->size() > kMaxKeyBytes)
      key_problem = std::string("header ") + name + ": " + std::to_string(value->size()) + " bytes, at most " +
                    std::to_string(kMaxKeyBytes) + " allowed";
  }
  if (!key_problem.empty()) {
    out.aggregate_type.clear();
    out.aggregate_id.clear();
    return fail(key_problem);
  }
  // Outside the range the primary allows (zero, negative, or so large that no real version could
  // ever beat it, a JSON reader would round it, or `version + 1` would overflow): poison, with the
  // version kept for the parked row when it fits 64 bits.
  try {
    out.version = header_number(message, "aggregate_version", kMinAggregateVersion, kMaxAggregateVersion);
  } catch (const OutsideRange& error) {
    out.version = error.value;
    return fail(error.what());
  } catch (const std::exception& error) {
    return fail(error.what());
  }
  if (!out.version) return fail("missing header aggregate_version");
  if (!message.message_id || message.message_id->empty()) return fail("missing message_id (the event id)");
  if (!is_uuid(*message.message_id)) return fail("message_id is not a uuid: \"" + *message.message_id + "\"");
  if (type.empty()) return fail("missing type (the event type)");
  Event event;
  event.event_id = lowercase(*message.message_id);
  event.event_type = type;
  event.aggregate_type = out.aggregate_type;
  event.aggregate_id = out.aggregate_id;
  event.version = *out.version;
  try {
    event.created_at_us = header_number(message, "created_at", 0, kLatestCreatedAtMicros);
    event.position = header_number(message, "outbox_position");
  } catch (const std::exception& error) {
    return fail(error.what());
  }
  int mapping = heartbeat ? -1 : find_mapping(mappings, type);
  std::string_view key_column = mapping >= 0 && !mappings[static_cast<size_t>(mapping)].is_handler()
                                    ? std::string_view(mappings[static_cast<size_t>(mapping)].key_column)
                                    : std::string_view();
  if (std::string problem = json_object_problem(message.body, key_column, event.row_key); !problem.empty()) return fail(problem);
  if (heartbeat) {
    if (!event.created_at_us) return fail("heartbeat without header created_at");
    event.heartbeat = true;
  } else {
    event.mapping = mapping;
    if (event.mapping < 0 && are_handlers(mappings))
      event.unhandled = true;  // a consumer hears more than it handles: not poison
    else if (event.mapping < 0)
      return fail("unknown event type \"" + type + "\" (no replicate.mappings entry)");
  }
  out.event = std::move(event);
  return out;
}

namespace {

// A text that PostgreSQL's jsonb cannot hold (invalid UTF-8, NUL) is kept as {"hex": "..."}, so
// that a retry sees the very bytes the broker delivered.
json stored_text(const std::string& text) {
  if (utf8::storable(text)) return text;
  return json{{"hex", to_hex(text)}};
}

std::optional<std::string> text_from_stored(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (!value.is_object() || !value.contains("hex") || !value["hex"].is_string()) return std::nullopt;
  const std::string& hex = value["hex"].get_ref<const std::string&>();
  if (hex.size() % 2) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    unsigned byte = 0;
    auto [end, error] = std::from_chars(hex.data() + i, hex.data() + i + 2, byte, 16);
    if (error != std::errc() || end != hex.data() + i + 2) return std::nullopt;
    out += static_cast<char>(byte);
  }
  return out;
}

}  // namespace

std::string properties_json(const amqp::IncomingMessage& message) {
  json out = json::object();
  auto put = [&](const char* key, const std::optional<std::string>& value) {
    if (value) out[key] = stored_text(*value);
  };
  put("message_id", message.message_id);
  put("type", message.type);
  put("content_type", message.content_type);
  put("content_encoding", message.content_encoding);
  put("app_id", message.app_id);
  put("correlation_id", message.correlation_id);
  put("reply_to", message.reply_to);
  if (message.timestamp_seconds) out["timestamp"] = *message.timestamp_seconds;
  out["exchange"] = stored_text(message.exchange);
  out["routing_key"] = stored_text(message.routing_key);
  out["redelivered"] = message.redelivered;
  json headers = json::object();
  // A header name that jsonb cannot hold is the one thing not kept byte for byte.
  for (const auto& [key, value] : message.headers) {
    if (const auto* number = std::get_if<long long>(&value))
      headers[utf8::storable_copy(key)] = *number;
    else
      headers[utf8::storable_copy(key)] = stored_text(std::get<std::string>(value));
  }
  out["headers"] = headers;
  return out.dump();
}

amqp::IncomingMessage message_from_stored(const std::string& properties, std::string body) {
  amqp::IncomingMessage message;
  message.body = std::move(body);
  json stored = json::parse(properties, nullptr, false);
  if (!stored.is_object()) return message;
  auto get = [&](const char* key) -> std::optional<std::string> {
    auto found = stored.find(key);
    if (found == stored.end()) return std::nullopt;
    return text_from_stored(*found);
  };
  message.message_id = get("message_id");
  message.type = get("type");
  message.content_type = get("content_type");
  message.content_encoding = get("content_encoding");
  message.app_id = get("app_id");
  message.correlation_id = get("correlation_id");
  message.reply_to = get("reply_to");
  if (auto found = stored.find("timestamp"); found != stored.end() && found->is_number_integer())
    message.timestamp_seconds = found->get<long long>();
  message.exchange = get("exchange").value_or("");
  message.routing_key = get("routing_key").value_or("");
  if (auto headers = stored.find("headers"); headers != stored.end() && headers->is_object())
    for (auto& [key, value] : headers->items()) {
      if (value.is_number_integer())
        message.headers[key] = value.get<long long>();
      else if (std::optional<std::string> text = text_from_stored(value))
        message.headers[key] = *text;
    }
  return message;
}

}  // namespace outbox::replicate
