#pragma once
// Reads a binary array (pg::BinaryArray, PostgreSQL's array_send format) back as the text that
// PostgreSQL prints for it ("{1,NULL,-3}", text elements quoted), so that tests can state the
// arrays of the apply's batch plainly. A reader of its own, written from the format, not from
// BinaryArray: the integration test (lean_apply_test) checks that the server reads the same.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace outbox::testing {

inline std::string binary_array_text(std::string_view bytes) {
  std::size_t at = 0;
  auto read = [&](int size) {
    if (at + static_cast<std::size_t>(size) > bytes.size()) throw std::runtime_error("binary array: cut short");
    std::uint64_t value = 0;
    for (int i = 0; i < size; ++i) value = value << 8 | static_cast<unsigned char>(bytes[at++]);
    return value;
  };
  auto dimensions = read(4);
  read(4);  // the null flag
  auto element = read(4);
  if (dimensions == 0) return at == bytes.size() ? "{}" : throw std::runtime_error("binary array: bytes after an empty array");
  if (dimensions != 1) throw std::runtime_error("binary array: not one dimension");
  auto count = read(4);
  if (read(4) != 1) throw std::runtime_error("binary array: lower bound not 1");
  std::string out = "{";
  for (std::uint64_t i = 0; i < count; ++i) {
    if (i) out += ',';
    auto length = static_cast<std::int32_t>(read(4));
    if (length == -1) {
      out += "NULL";
      continue;
    }
    if (at + static_cast<std::size_t>(length) > bytes.size()) throw std::runtime_error("binary array: element cut short");
    std::string_view data = bytes.substr(at, static_cast<std::size_t>(length));
    if (element == 20 || element == 23) {
      std::int64_t value = static_cast<std::int64_t>(read(length));
      if (element == 23) value = static_cast<std::int32_t>(value);
      out += std::to_string(value);
    } else if (element == 2950) {
      static const char digits[] = "0123456789abcdef";
      for (std::size_t j = 0; j < data.size(); ++j) {
        if (j == 4 || j == 6 || j == 8 || j == 10) out += '-';
        out += digits[static_cast<unsigned char>(data[j]) >> 4];
        out += digits[static_cast<unsigned char>(data[j]) & 15];
      }
      at += data.size();
    } else if (element == 25) {
      out += '"';
      for (char c : data) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      out += '"';
      at += data.size();
    } else {
      throw std::runtime_error("binary array: element type " + std::to_string(element));
    }
  }
  if (at != bytes.size()) throw std::runtime_error("binary array: bytes after the last element");
  return out + "}";
}

}  // namespace outbox::testing
