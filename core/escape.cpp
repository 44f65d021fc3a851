#include "core/escape.hpp"

#include <cstdio>

#include "core/utf8.hpp"

namespace outbox {
namespace {

bool is_control(char32_t point) { return point < 0x20 || (point >= 0x7f && point <= 0x9f); }

void append_hex(std::string& out, const char* format, unsigned value) {
  char buffer[12];
  std::snprintf(buffer, sizeof buffer, format, value);
  out += buffer;
}

const char* short_escape(char32_t point) {
  switch (point) {
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    default:
      return nullptr;
  }
}

}  // namespace

std::string escape_controls(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  char32_t point;
  for (size_t at = 0; at < text.size();) {
    unsigned char byte = static_cast<unsigned char>(text[at]);
    // Printable ASCII, the common case: as it is.
    if (byte >= 0x20 && byte < 0x7f) {
      out += static_cast<char>(byte);
      ++at;
      continue;
    }
    size_t length = utf8::decode(text, at, point);
    if (length == 0) {
      append_hex(out, "\\x%02x", byte);
      ++at;
    } else if (const char* escape = short_escape(point)) {
      out += escape;
      at += length;
    } else if (point < 0x80 && is_control(point)) {
      append_hex(out, "\\x%02x", static_cast<unsigned>(point));
      at += length;
    } else if (is_control(point)) {
      append_hex(out, "\\u%04x", static_cast<unsigned>(point));
      at += length;
    } else {
      out.append(text.substr(at, length));
      at += length;
    }
  }
  return out;
}

std::string toml_string(std::string_view text) {
  std::string out = "\"";
  char32_t point;
  for (size_t at = 0; at < text.size();) {
    size_t length = utf8::decode(text, at, point);
    if (length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD: TOML has no way to write a byte that is not UTF-8
      ++at;
      continue;
    }
    if (point == '"' || point == '\\') {
      out += '\\';
      out += static_cast<char>(point);
    } else if (const char* escape = short_escape(point)) {
      out += escape;
    } else if (is_control(point)) {
      append_hex(out, "\\u%04X", static_cast<unsigned>(point));
    } else {
      out.append(text.substr(at, length));
    }
    at += length;
  }
  return out + "\"";
}

}  // namespace outbox
