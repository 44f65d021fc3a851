#pragma once
// The option registry: every configuration option is declared exactly once, in options.cpp.
// TOML parsing, environment overrides, validation, `outbox config show`, the man page
// (man/outbox.toml.5) and the tests that keep them in sync all read this table.
#include <span>
#include <string>
#include <string_view>

namespace outbox::config {

enum class Type {
  string,
  url,       // a connection URL; its password is masked wherever it is shown
  url_list,  // one URL or an array of URLs (cluster nodes, tried in order)
  integer,   // with an inclusive range
  duration,  // "250ms", "10s", "2m", "24h"; range in milliseconds
  boolean,
  enumeration,  // one of `allowed`, separated by '|'
  string_list,  // an array of strings
  table_array,  // [[section]] blocks whose fields are the options "<key>[].<field>"
};

struct Option {
  std::string_view key{};  // "relay.batch_size"; "replicas.*.url" for named sections; "relay.tables[].name" for array fields
  Type type = Type::string;
  std::string_view default_value{};  // written as in the TOML file ("" = not set)
  long long min = 0;                 // integer: range; duration: range in ms
  long long max = 0;
  std::string_view allowed{};  // enumeration values, '|'-separated
  bool reloadable = false;     // SIGHUP may change it; otherwise a change needs a restart
  // Must be set: in every [[array]] block and [replicas.NAME] section (checked on load); a top-level
  // one by every command that uses it and by `outbox config check`.
  bool required = false;
  std::string_view env{};  // environment variable that overrides it, if any
  std::string_view help{};
};

std::span<const Option> options();
// Finds the option for a concrete key: "replicas.eu.url" matches "replicas.*.url".
const Option* find_option(std::string_view key);
// The type's name in the man page ("integer"); from the type table in option_types.cpp.
std::string_view type_name(Type type);
// "1..10000", "10ms..1h", "text|json", or "" when anything of the type is allowed.
std::string allowed_text(const Option& option);
// The option reference in mdoc, spliced into man/outbox.toml.5 by scripts/gen-man.
std::string mdoc_reference();

}  // namespace outbox::config
