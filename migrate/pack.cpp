#include "migrate/pack.hpp"

#include <simdjson.h>
#include <zstd.h>

#include <memory>

namespace outbox::pack {
namespace {

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
std::optional<std::string> text_field(simdjson::dom::object element, const char* key, std::string& problem) {
  simdjson::dom::element found;
  if (element.at_key(key).get(found) != simdjson::SUCCESS || found.is_null()) return std::nullopt;
  std::string_view text;
  if (found.get_string().get(text) == simdjson::SUCCESS) return std::string(text);
  if (problem.empty()) problem = std::string("field ") + key + " is not a string";
  return std::nullopt;
}

Unpacked unpack_element(simdjson::dom::element element, size_t index, const amqp::IncomingMessage& pack) {
  Unpacked out;
  amqp::IncomingMessage& message = out.message;
  message.delivery_tag = pack.delivery_tag;
  message.redelivered = pack.redelivered;
  message.exchange = pack.exchange;
  message.routing_key = pack.routing_key;
  message.app_id = pack.app_id;
  message.content_type = "application/json";
  auto where = [index] { return "pack element " + std::to_string(index) + ": "; };
  simdjson::dom::object object;
  if (element.get_object().get(object) != simdjson::SUCCESS) {
    out.problem = where() + "not a JSON object";
    return out;
  }
  std::string problem;
  message.message_id = text_field(object, "message_id", problem);
  message.type = text_field(object, "type", problem);
  message.correlation_id = text_field(object, "correlation_id", problem);
  message.reply_to = text_field(object, "reply_to", problem);
  if (auto key = text_field(object, "routing_key", problem)) message.routing_key = *key;
  int64_t timestamp = 0;
  if (object.at_key("timestamp").get_int64().get(timestamp) == simdjson::SUCCESS) message.timestamp_seconds = timestamp;
  simdjson::dom::object headers;
  if (object.at_key("headers").get_object().get(headers) == simdjson::SUCCESS) {
    // Gathered, then sorted once (amqp::Headers): a forged element may hold thousands.
    std::vector<amqp::Headers::value_type> entries;
    entries.reserve(headers.size());
    for (simdjson::dom::key_value_pair header : headers) {
      int64_t number = 0;
      std::string_view text;
      // An integer beyond int64 is not taken as one: it would wrap.
      if (header.value.get_int64().get(number) == simdjson::SUCCESS)
        entries.emplace_back(std::string(header.key), static_cast<long long>(number));
      else if (header.value.get_string().get(text) == simdjson::SUCCESS)
        entries.emplace_back(std::string(header.key), std::string(text));
      else if (problem.empty())
        problem = "header " + std::string(header.key) + " is neither a text nor an integer";
    }
    message.headers = amqp::Headers(std::move(entries));
  } else if (problem.empty()) {
    problem = "no headers object";
  }
  if (auto payload = text_field(object, "payload", problem))
    message.body = std::move(*payload);
  else if (problem.empty())
    problem = "no payload";
  if (!problem.empty()) out.problem = where() + problem;
  return out;
}

struct CompressionContextFree {
  void operator()(ZSTD_CCtx* context) const { ZSTD_freeCCtx(context); }
};
struct DecompressionContextFree {
  void operator()(ZSTD_DCtx* context) const { ZSTD_freeDCtx(context); }
};

// A buffer kept by its thread for `needed` bytes: it grows as needed, and one that a rare large
// pack made big is let go once a usual one comes again, so that it does not hold the memory.
void fit_buffer(std::string& buffer, size_t needed) {
  constexpr size_t kMostKeptBytes = 4 << 20;
  if (buffer.capacity() > kMostKeptBytes && needed <= kMostKeptBytes) std::string().swap(buffer);
  if (buffer.capacity() < needed) buffer.reserve(needed);
}

// Level 1: the fastest of the standard levels. On packs of parking events it makes 40 KB into
// about 5 KB at a few hundred MB/s; a higher level saves little more and costs the relay more.
// The frame is written into a buffer kept by the thread: a new one of compressBound bytes for every
// pack was zero-filled and faulted in page by page, only to be cut down to a tenth of its size.
std::string compress(const std::string& body) {
  thread_local std::unique_ptr<ZSTD_CCtx, CompressionContextFree> context(ZSTD_createCCtx());
  thread_local std::string frame;
  size_t bound = ZSTD_compressBound(body.size());
  fit_buffer(frame, bound);
  if (frame.size() < bound) frame.resize(bound);
  size_t size = ZSTD_compressCCtx(context.get(), frame.data(), bound, body.data(), body.size(), 1);
  if (ZSTD_isError(size)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(size));
  return frame.substr(0, size);
}

// The JSON of a pack's body, or why there is none. It is written into a buffer kept by the thread
// (valid until the next call), with simdjson's padding behind it, so that the parser reads it
// where it is: a new string per pack was zero-filled, faulted in, then copied by the parser.
std::optional<std::string_view> decompress(const std::string& body, std::string& problem) {
  unsigned long long size = ZSTD_getFrameContentSize(body.data(), body.size());
  if (size == ZSTD_CONTENTSIZE_ERROR) {
    problem = "malformed pack: its body is not a zstd frame";
    return std::nullopt;
  }
  if (size == ZSTD_CONTENTSIZE_UNKNOWN || size > kMostUnpackedBytes) {
    problem = "malformed pack: its zstd frame does not say its size, or says more than " + std::to_string(kMostUnpackedBytes) +
              " bytes";
    return std::nullopt;
  }
  thread_local std::unique_ptr<ZSTD_DCtx, DecompressionContextFree> context(ZSTD_createDCtx());
  thread_local std::string out;
  fit_buffer(out, size + simdjson::SIMDJSON_PADDING);
  if (out.size() < size) out.resize(size);
  size_t got = ZSTD_decompressDCtx(context.get(), out.data(), size, body.data(), body.size());
  if (ZSTD_isError(got) || got != size) {
    problem = std::string("malformed pack: its zstd body does not decompress: ") +
              (ZSTD_isError(got) ? ZSTD_getErrorName(got) : "shorter than its frame says");
    return std::nullopt;
  }
  return std::string_view(out.data(), size);
}

// One event's message (as the relay would publish it alone) as a pack element, appended to `out`.
void append_element(std::string& out, const amqp::OutgoingMessage& event) {
  out += "{\"message_id\":";
  append_string(out, event.message_id);
  append_field(out, "type", event.type);
  append_field(out, "routing_key", event.routing_key);
  out += ",\"timestamp\":";
  out += std::to_string(event.timestamp_seconds);
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
}

}  // namespace

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
  // Written in place: the body keeps its capacity from one pack to the next (take), so a builder
  // that lives across reads neither grows nor touches fresh pages again. Growing a new body by
  // appending made page faults and copies 40% of the relay's CPU in a packed drain.
  append_element(body_, event);
  ++count_;
}

void Builder::clear() {
  body_.clear();
  count_ = 0;
}

amqp::OutgoingMessage Builder::take(const std::string& exchange, int partition, Compression compression) {
  amqp::OutgoingMessage message;
  message.exchange = exchange;
  message.routing_key = routing_key_;
  message.content_type = kContentType;
  message.type = kType;
  message.message_id = "pack:" + first_id_;
  body_ += ']';
  if (compression == Compression::zstd) {
    message.body = compress(body_);
    message.content_encoding = kZstdEncoding;
  } else {
    message.body = std::move(body_);
  }
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
  // simdjson's DOM, not nlohmann's: a pack of 100 events is about 40 KB, and nlohmann's lexer and
  // its DOM's allocations were a third of replicate's CPU in a packed drain (bench/README, "Packs
  // read by simdjson"). The parser keeps its buffers from one pack to the next.
  thread_local simdjson::dom::parser parser;
  std::optional<std::string_view> decompressed;
  if (pack.content_encoding) {
    std::string problem;
    if (*pack.content_encoding != kZstdEncoding)
      problem = "malformed pack: its content encoding is \"" + *pack.content_encoding + "\", not zstd";
    else
      decompressed = decompress(pack.body, problem);
    if (!problem.empty()) return {Unpacked{pack, problem}};
  }
  simdjson::dom::element root;
  // The decompressed buffer has the padding behind it (decompress): read in place.
  auto parsed = decompressed ? parser.parse(decompressed->data(), decompressed->size(), false) : parser.parse(pack.body);
  if (parsed.get(root) != simdjson::SUCCESS) return {Unpacked{pack, "malformed pack: its body is not JSON"}};
  simdjson::dom::array elements;
  if (root.get_array().get(elements) != simdjson::SUCCESS)
    return {Unpacked{pack, "malformed pack: its body is not a JSON array"}};
  std::vector<Unpacked> out;
  out.reserve(elements.size());
  size_t index = 0;
  for (simdjson::dom::element element : elements) out.push_back(unpack_element(element, index++, pack));
  if (out.empty()) out.push_back(Unpacked{pack, "malformed pack: it holds no event"});
  return out;
}

}  // namespace outbox::pack
