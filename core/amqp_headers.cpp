// Received message properties and header values, turned into the plain types of core/amqp.hpp.
#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>
#include <utility>

#include "core/amqp.hpp"
#include "core/amqp_wire.hpp"

namespace outbox::amqp {
namespace {

using wire::text;

// A float as its shortest exact text, always with a point or an exponent: 12.0 must not read as the
// integer 12 when a header that wants an integer is checked.
template <typename Float>
std::string float_text(Float value) {
  char buffer[64];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string out(buffer, error == std::errc() ? end : buffer);
  if (out.find_first_not_of("-0123456789") == std::string::npos) out += ".0";
  return out;
}

std::string decimal_text(amqp_decimal_t decimal) {
  std::string digits = std::to_string(decimal.value);
  if (decimal.decimals == 0) return digits;
  if (digits.size() <= decimal.decimals) digits.insert(0, decimal.decimals - digits.size() + 1, '0');
  digits.insert(digits.size() - decimal.decimals, ".");
  return digits;
}

// An integer field that fits a long long (all but an unsigned 64-bit one), by kind: every member
// of the value union starts at its first byte.
template <typename Integer>
long long read_integer(const amqp_field_value_t& value) {
  Integer integer;
  std::memcpy(&integer, &value.value, sizeof integer);
  return integer;
}

const std::map<uint8_t, long long (*)(const amqp_field_value_t&)> kIntegerReaders = {
    {AMQP_FIELD_KIND_I8, read_integer<int8_t>},   {AMQP_FIELD_KIND_U8, read_integer<uint8_t>},
    {AMQP_FIELD_KIND_I16, read_integer<int16_t>}, {AMQP_FIELD_KIND_U16, read_integer<uint16_t>},
    {AMQP_FIELD_KIND_I32, read_integer<int32_t>}, {AMQP_FIELD_KIND_U32, read_integer<uint32_t>},
    {AMQP_FIELD_KIND_I64, read_integer<int64_t>}};

}  // namespace

HeaderValue header_value(const amqp_field_value_t& value) {
  if (auto reader = kIntegerReaders.find(value.kind); reader != kIntegerReaders.end()) return reader->second(value);
  switch (value.kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
      return text(value.value.bytes);
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
      // Above 2^63-1 a cast would wrap to a negative number: keep the digits instead.
      if (value.value.u64 > static_cast<uint64_t>(std::numeric_limits<long long>::max())) return std::to_string(value.value.u64);
      return static_cast<long long>(value.value.u64);
    case AMQP_FIELD_KIND_F32:
      return float_text(value.value.f32);
    case AMQP_FIELD_KIND_F64:
      return float_text(value.value.f64);
    case AMQP_FIELD_KIND_BOOLEAN:
      return std::string(value.value.boolean ? "true" : "false");
    case AMQP_FIELD_KIND_DECIMAL:
      return decimal_text(value.value.decimal);
    case AMQP_FIELD_KIND_ARRAY:
      return "(an array of " + std::to_string(value.value.array.num_entries) + " values)";
    case AMQP_FIELD_KIND_TABLE:
      return "(a table of " + std::to_string(value.value.table.num_entries) + " fields)";
    default:  // void: a header without a value
      return std::string();
  }
}

Headers::Headers(std::vector<value_type> entries) : entries_(std::move(entries)) {
  // Stable: of equal names the later entry stays last, and is the one kept. A message has a handful
  // of headers, nearly in order: an insertion sort, in place. std::stable_sort allocates a buffer
  // at every call; it is left to the rare message with many headers.
  constexpr size_t kMostSortedInPlace = 32;
  if (entries_.size() <= kMostSortedInPlace) {
    for (size_t i = 1; i < entries_.size(); ++i)
      for (size_t j = i; j > 0 && entries_[j].first < entries_[j - 1].first; --j) std::swap(entries_[j], entries_[j - 1]);
  } else {
    std::stable_sort(entries_.begin(), entries_.end(),
                     [](const value_type& a, const value_type& b) { return a.first < b.first; });
  }
  auto kept = entries_.begin();
  for (auto entry = entries_.begin(); entry != entries_.end(); ++entry) {
    if (std::next(entry) != entries_.end() && std::next(entry)->first == entry->first) continue;
    if (kept != entry) *kept = std::move(*entry);
    ++kept;
  }
  entries_.erase(kept, entries_.end());
}

namespace {
bool name_before(const Headers::value_type& entry, std::string_view name) { return entry.first < name; }
}  // namespace

std::vector<Headers::value_type>::iterator Headers::lower_bound(std::string_view name) {
  return std::lower_bound(entries_.begin(), entries_.end(), name, name_before);
}

Headers::const_iterator Headers::find(std::string_view name) const {
  auto found = std::lower_bound(entries_.begin(), entries_.end(), name, name_before);
  return found != entries_.end() && found->first == name ? found : entries_.end();
}

const HeaderValue& Headers::at(std::string_view name) const {
  auto found = find(name);
  if (found == end()) throw std::out_of_range("no header " + std::string(name));
  return found->second;
}

HeaderValue& Headers::operator[](std::string_view name) {
  auto found = lower_bound(name);
  if (found == entries_.end() || found->first != name) found = entries_.emplace(found, std::string(name), std::string());
  return found->second;
}

void Headers::insert_or_assign(std::string name, HeaderValue value) {
  auto found = lower_bound(name);
  if (found != entries_.end() && found->first == name)
    found->second = std::move(value);
  else
    entries_.emplace(found, std::move(name), std::move(value));
}

size_t Headers::erase(std::string_view name) {
  auto found = lower_bound(name);
  if (found == entries_.end() || found->first != name) return 0;
  entries_.erase(found);
  return 1;
}

void copy_properties(const amqp_basic_properties_t& props, IncomingMessage& message) {
  if (props._flags & AMQP_BASIC_MESSAGE_ID_FLAG) message.message_id = text(props.message_id);
  if (props._flags & AMQP_BASIC_TYPE_FLAG) message.type = text(props.type);
  if (props._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) message.content_type = text(props.content_type);
  if (props._flags & AMQP_BASIC_CONTENT_ENCODING_FLAG) message.content_encoding = text(props.content_encoding);
  if (props._flags & AMQP_BASIC_APP_ID_FLAG) message.app_id = text(props.app_id);
  if (props._flags & AMQP_BASIC_CORRELATION_ID_FLAG) message.correlation_id = text(props.correlation_id);
  if (props._flags & AMQP_BASIC_REPLY_TO_FLAG) message.reply_to = text(props.reply_to);
  if (props._flags & AMQP_BASIC_TIMESTAMP_FLAG) message.timestamp_seconds = static_cast<long long>(props.timestamp);
  if (props._flags & AMQP_BASIC_HEADERS_FLAG) {
    // Gathered, then sorted once: a forged message may carry thousands of headers.
    std::vector<Headers::value_type> headers;
    headers.reserve(static_cast<size_t>(props.headers.num_entries));
    for (int i = 0; i < props.headers.num_entries; ++i)
      headers.emplace_back(text(props.headers.entries[i].key), header_value(props.headers.entries[i].value));
    message.headers = Headers(std::move(headers));
  }
}

}  // namespace outbox::amqp
