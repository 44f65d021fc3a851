#include "core/option_types.hpp"

#include <array>
#include <charconv>
#include <sstream>

#include "core/duration.hpp"
#include "core/escape.hpp"
#include "core/url.hpp"

namespace outbox::config {
namespace {

// allowed

std::string number_range(const Option& option) { return std::to_string(option.min) + ".." + std::to_string(option.max); }
std::string duration_range(const Option& option) {
  return format_duration(Duration(option.min)) + ".." + format_duration(Duration(option.max));
}
std::string enumeration_values(const Option& option) { return std::string(option.allowed); }
std::string true_or_false(const Option&) { return "true|false"; }

// must_be

std::string must_be_in_range(const Option& option) { return "must be " + type_row(option.type).allowed(option); }
std::string must_be_one_of(const Option& option) { return "must be one of " + enumeration_values(option); }
std::string must_be_boolean(const Option&) { return "must be true or false"; }
std::string must_be_string(const Option&) { return "must be a string"; }
std::string must_be_urls(const Option&) { return "must be a URL or an array of URLs"; }
std::string must_be_strings(const Option&) { return "must be an array of strings"; }
std::string must_be_tables(const Option& option) { return "must be an array of tables ([[" + std::string(option.key) + "]])"; }

// parse (check_element for the elements of arrays)

bool valid_url(std::string_view url, std::initializer_list<std::string_view> schemes) {
  for (std::string_view scheme : schemes)
    if (url.rfind(std::string(scheme) + "://", 0) == 0 && url.size() > scheme.size() + 3) return true;
  return false;
}

void check_url(const Option& option, std::string_view key, const std::string& url, const std::string& origin) {
  if (url.empty()) return;
  if (std::string problem = url_syntax_problem(url); !problem.empty()) throw invalid_value(origin, key, problem);
  bool broker = option.key.rfind("broker.", 0) == 0;
  bool ok = broker ? valid_url(url, {"amqp", "amqps"}) : valid_url(url, {"postgresql", "postgres"});
  if (!ok)
    throw invalid_value(origin, key,
                        std::string(broker ? "must be an amqp:// or amqps:// URL" : "must be a postgresql:// URL") + " (got " +
                            mask_credentials(url) + ")");
}

std::vector<std::string> split_commas(std::string_view text, bool keep_empty) {
  std::vector<std::string> parts;
  std::stringstream stream{std::string(text)};
  for (std::string part; std::getline(stream, part, ',');)
    if (keep_empty || !part.empty()) parts.push_back(part);
  return parts;
}

bool parse_any_text(const Option&, std::string_view, std::string_view, Setting&) { return true; }

bool parse_url(const Option& option, std::string_view key, std::string_view, Setting& setting) {
  check_url(option, key, setting.text, setting.origin);
  return true;
}

// A comma-separated list (an environment variable's form); the first URL is also the text.
bool parse_url_list(const Option& option, std::string_view key, std::string_view text, Setting& setting) {
  setting.list = split_commas(text, false);
  for (const std::string& url : setting.list) check_url(option, key, url, setting.origin);
  setting.text = setting.list.empty() ? "" : setting.list.front();
  return true;
}

bool parse_string_list(const Option&, std::string_view, std::string_view text, Setting& setting) {
  setting.list = split_commas(text, true);
  return true;
}

bool parse_integer(const Option& option, std::string_view, std::string_view text, Setting& setting) {
  long long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < option.min || value > option.max) return false;
  setting.number = value;
  return true;
}

bool parse_duration_text(const Option& option, std::string_view, std::string_view text, Setting& setting) {
  auto value = parse_duration(text);
  if (!value || value->count() < option.min || value->count() > option.max) return false;
  setting.number = value->count();
  return true;
}

bool parse_boolean(const Option&, std::string_view, std::string_view text, Setting& setting) {
  if (text == "true" || text == "1" || text == "yes")
    setting.flag = true;
  else if (text == "false" || text == "0" || text == "no")
    setting.flag = false;
  else
    return false;
  return true;
}

bool parse_enumeration(const Option& option, std::string_view, std::string_view text, Setting&) {
  std::string allowed = "|" + std::string(option.allowed) + "|";
  return !text.empty() && text.find('|') == std::string_view::npos &&
         allowed.find("|" + std::string(text) + "|") != std::string::npos;
}

bool parse_nothing(const Option&, std::string_view, std::string_view, Setting&) { return false; }

// display

std::string show_url(const Setting& setting) { return toml_string(mask_url(setting.text)); }
std::string show_number(const Setting& setting) { return std::to_string(setting.number); }
std::string show_duration(const Setting& setting) { return toml_string(format_duration(Duration(setting.number))); }
std::string show_flag(const Setting& setting) { return setting.flag ? "true" : "false"; }
std::string show_list(const Setting& setting) {
  bool urls = setting.option->type == Type::url_list;
  std::string out = "[";
  for (size_t i = 0; i < setting.list.size(); ++i)
    out += (i ? ", " : "") + toml_string(urls ? mask_url(setting.list[i]) : setting.list[i]);
  return out + "]";
}

// same

bool same_number(const Setting& a, const Setting& b) { return a.number == b.number; }
bool same_flag(const Setting& a, const Setting& b) { return a.flag == b.flag; }
bool same_list(const Setting& a, const Setting& b) { return a.list == b.list; }

// Unset fields: any value allowed, no element check, shown and compared as text, taken from no TOML value.
// clang-format off
constexpr std::array kTypes{
  TypeRow{.type = Type::string, .name = "string", .must_be = must_be_string, .parse = parse_any_text, .takes_string = true},
  TypeRow{.type = Type::url, .name = "url", .must_be = must_be_string, .parse = parse_url, .display = show_url, .takes_string = true},
  TypeRow{.type = Type::url_list, .name = "url or array of urls", .must_be = must_be_urls, .parse = parse_url_list, .check_element = check_url, .display = show_list, .same = same_list, .takes_string = true, .takes_array = true},
  TypeRow{.type = Type::integer, .name = "integer", .allowed = number_range, .must_be = must_be_in_range, .parse = parse_integer, .display = show_number, .same = same_number, .takes_integer = true},
  TypeRow{.type = Type::duration, .name = "duration", .allowed = duration_range, .must_be = must_be_in_range, .parse = parse_duration_text, .display = show_duration, .same = same_number, .takes_string = true, .takes_integer_as_text = true},
  TypeRow{.type = Type::boolean, .name = "boolean", .allowed = true_or_false, .must_be = must_be_boolean, .parse = parse_boolean, .display = show_flag, .same = same_flag, .takes_boolean = true},
  TypeRow{.type = Type::enumeration, .name = "enum", .allowed = enumeration_values, .must_be = must_be_one_of, .parse = parse_enumeration, .takes_string = true},
  TypeRow{.type = Type::string_list, .name = "array of strings", .must_be = must_be_strings, .parse = parse_string_list, .display = show_list, .same = same_list, .takes_array = true},
  TypeRow{.type = Type::table_array, .name = "array of tables", .must_be = must_be_tables, .parse = parse_nothing},
};
// clang-format on

constexpr bool rows_in_type_order() {
  for (size_t i = 0; i < kTypes.size(); ++i)
    if (static_cast<size_t>(kTypes[i].type) != i) return false;
  return true;
}
static_assert(rows_in_type_order(), "kTypes must hold one row per Type, in the order of the enum");

}  // namespace

std::string any_value(const Option&) { return ""; }
std::string display_text(const Setting& setting) { return toml_string(setting.text); }
bool same_text(const Setting& a, const Setting& b) { return a.text == b.text; }

const TypeRow& type_row(Type type) { return kTypes.at(static_cast<size_t>(type)); }

Error invalid_value(const std::string& origin, std::string_view key, const std::string& what) {
  return config_error("config " + origin + ": " + std::string(key) + ": " + what);
}

std::string_view type_name(Type type) { return type_row(type).name; }

std::string allowed_text(const Option& option) { return type_row(option.type).allowed(option); }

}  // namespace outbox::config
