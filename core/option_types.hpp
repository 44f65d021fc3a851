#pragma once
// What each option type means, one row per config::Type: its name in the man page, which values it
// allows and how that is said, how a text (a TOML string, an environment variable, a --set value)
// becomes a value, which TOML values it takes as they are, how a value is shown and how two are
// compared. The loader, `config show`, reload and the man page read this table; nothing else
// switches on Type, so a new type is one new row.
#include <string>
#include <string_view>

#include "core/config.hpp"
#include "core/error.hpp"

namespace outbox::config {

// The defaults of a row's fields.
std::string any_value(const Option& option);  // ""
std::string display_text(const Setting& setting);
bool same_text(const Setting& a, const Setting& b);

struct TypeRow {
  Type type = Type::string;
  std::string_view name{};  // in the man page: "integer"
  // "1..10000", "10ms..1h", "text|json"; "" when any value of the type is allowed.
  std::string (*allowed)(const Option& option) = any_value;
  // The rule for error messages: "must be 1..10000", "must be one of text|json".
  std::string (*must_be)(const Option& option) = nullptr;
  // Reads `text` into `setting` (its text, number, flag or list). Returns false when the text is not
  // allowed; throws Error(config) itself when it can say more (a URL's problem).
  bool (*parse)(const Option& option, std::string_view key, std::string_view text, Setting& setting) = nullptr;
  // Checks one element of a TOML array (a URL of broker.url); null when any string will do.
  void (*check_element)(const Option& option, std::string_view key, const std::string& element,
                        const std::string& origin) = nullptr;
  std::string (*display)(const Setting& setting) = display_text;  // as TOML; passwords masked
  // Compares what two values mean, unmasked: a changed password is a change.
  bool (*same)(const Setting& a, const Setting& b) = same_text;
  // The TOML values it takes besides arrays of strings (takes_array): a string is parsed as text;
  // an integer is taken as a number (its "got" unquoted) or, for a duration, parsed as text.
  bool takes_string = false, takes_integer = false, takes_integer_as_text = false, takes_boolean = false, takes_array = false;
};

const TypeRow& type_row(Type type);

// A value failed validation: "config <origin>: <key>: must be 1..10000 (got 0)".
Error invalid_value(const std::string& origin, std::string_view key, const std::string& what);

}  // namespace outbox::config
