#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace outbox::utf8 {

// Decodes one code point at text[at]; returns its length, or 0 when the bytes there are not valid
// UTF-8 (no overlong forms, surrogates or values past U+10FFFF).
size_t decode(std::string_view text, size_t at, char32_t& point);

// Whether PostgreSQL's text type can hold the bytes as they are: valid UTF-8 without NUL.
bool storable(std::string_view text);

// The text with every byte that is not valid UTF-8, and every NUL, replaced by U+FFFD: broker data
// may be any bytes, and one such byte must not make the row that records it fail.
std::string storable_copy(std::string_view text);

}  // namespace outbox::utf8
