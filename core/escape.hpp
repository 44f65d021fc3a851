#pragma once
// Text from a database, a message, a config file or an argument may hold any bytes. Wherever it
// reaches a terminal or a text log it goes through escape_controls, so that it can neither start a
// forged line nor send escape sequences to the terminal.
#include <string>
#include <string_view>

namespace outbox {

// The text with each control character written out: \n, \r, \t, other C0 controls, ESC and DEL
// as \xNN (\x1b, \x7f), C1 controls (U+0080..U+009F) as \uNNNN, and each byte that is not valid
// UTF-8 as \xNN. Printable text, other Unicode and backslashes are kept as they are.
std::string escape_controls(std::string_view text);

// The text as a TOML basic string, quotes included: '"' and '\' escaped, every control character
// (C0, DEL, C1) as \uXXXX or \n, \t ..., and bytes that are not valid UTF-8 as U+FFFD (TOML is
// UTF-8), so that `outbox config show` prints a file a TOML parser reads back.
std::string toml_string(std::string_view text);

}  // namespace outbox
