#include "core/pg_array.hpp"

#include <limits>
#include <stdexcept>

namespace outbox::pg {

namespace {

// Appends the low `bytes` bytes of `value`, most significant first, in one append.
void append_big_endian(std::string& out, std::uint64_t value, int bytes) {
  char buffer[8];
  for (int i = bytes - 1; i >= 0; --i, value >>= 8) buffer[i] = static_cast<char>(value & 0xff);
  out.append(buffer, static_cast<std::size_t>(bytes));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

BinaryArray::BinaryArray(Element element) : element_(element) {}

void BinaryArray::reserve(std::size_t element_bytes) { elements_.reserve(element_bytes); }

void BinaryArray::expect(Element element) const {
  if (element != element_) throw std::logic_error("BinaryArray: an element of another type than the array's");
}

void BinaryArray::append_int32(std::int32_t value) { append_big_endian(elements_, static_cast<std::uint32_t>(value), 4); }

void BinaryArray::add_int8(std::int64_t value) {
  expect(Element::int8);
  append_int32(8);
  append_big_endian(elements_, static_cast<std::uint64_t>(value), 8);
  ++count_;
}

void BinaryArray::add_int4(std::int32_t value) {
  expect(Element::int4);
  append_int32(4);
  append_int32(value);
  ++count_;
}

void BinaryArray::add_text(std::string_view text) {
  expect(Element::text);
  if (text.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
    throw std::invalid_argument("BinaryArray: a text longer than an array element can be");
  append_int32(static_cast<std::int32_t>(text.size()));
  elements_ += text;
  ++count_;
}

void BinaryArray::add_uuid(std::string_view text) {
  expect(Element::uuid);
  char bytes[16];
  std::size_t filled = 0;
  int high = -1;
  for (char c : text) {
    if (c == '-') continue;
    int digit = hex_value(c);
    if (digit < 0 || filled == sizeof bytes) throw std::invalid_argument("BinaryArray: not a uuid: " + std::string(text));
    if (high < 0) {
      high = digit;
    } else {
      bytes[filled++] = static_cast<char>(high << 4 | digit);
      high = -1;
    }
  }
  if (filled != sizeof bytes || high >= 0) throw std::invalid_argument("BinaryArray: not a uuid: " + std::string(text));
  append_int32(16);
  elements_.append(bytes, sizeof bytes);
  ++count_;
}

void BinaryArray::add_null() {
  append_int32(-1);
  has_null_ = true;
  ++count_;
}

std::string BinaryArray::bytes() const {
  if (count_ > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
    throw std::invalid_argument("BinaryArray: more elements than an array can hold");
  std::string out;
  out.reserve(20 + elements_.size());
  // An empty array has no dimensions (array_send writes it so, array_recv reads it so).
  append_big_endian(out, count_ == 0 ? 0 : 1, 4);
  append_big_endian(out, has_null_ ? 1 : 0, 4);
  append_big_endian(out, static_cast<std::uint32_t>(element_), 4);
  if (count_ == 0) return out;
  append_big_endian(out, count_, 4);
  append_big_endian(out, 1, 4);
  out += elements_;
  return out;
}

}  // namespace outbox::pg
