#include "core/utf8.hpp"

namespace outbox::utf8 {

size_t decode(std::string_view text, size_t at, char32_t& point) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned char lead = byte(at);
  size_t length;
  char32_t min;
  if (lead < 0x80) {
    point = lead;
    return 1;
  } else if ((lead & 0xe0) == 0xc0) {
    length = 2, min = 0x80, point = lead & 0x1f;
  } else if ((lead & 0xf0) == 0xe0) {
    length = 3, min = 0x800, point = lead & 0x0f;
  } else if ((lead & 0xf8) == 0xf0) {
    length = 4, min = 0x10000, point = lead & 0x07;
  } else {
    return 0;
  }
  if (at + length > text.size()) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(at + i) & 0xc0) != 0x80) return 0;
    point = (point << 6) | (byte(at + i) & 0x3f);
  }
  if (point < min || point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff)) return 0;
  return length;
}

bool storable(std::string_view text) {
  char32_t point;
  for (size_t at = 0; at < text.size();) {
    size_t length = decode(text, at, point);
    if (length == 0 || point == 0) return false;
    at += length;
  }
  return true;
}

std::string storable_copy(std::string_view text) {
  if (storable(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 8);
  char32_t point;
  for (size_t at = 0; at < text.size();) {
    size_t length = decode(text, at, point);
    if (length == 0 || point == 0) {
      out += "\xEF\xBF\xBD";
      at += length ? length : 1;
    } else {
      out.append(text.substr(at, length));
      at += length;
    }
  }
  return out;
}

}  // namespace outbox::utf8
