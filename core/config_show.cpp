// outbox config show: every effective value in TOML syntax with its source; passwords masked.
#include <algorithm>
#include <sstream>

#include "core/config.hpp"
#include "core/escape.hpp"
#include "core/option_types.hpp"

namespace outbox::config {

std::string display_value(const Setting& setting) { return type_row(setting.option->type).display(setting); }

std::string show(const Config& config) {
  std::ostringstream out;
  // The comments carry file names, which may hold any byte but a newline must not end a comment.
  out << "# config file: " << (config.path().empty() ? "(none)" : escape_controls(config.path())) << "\n";
  auto line = [&](const std::string& key, const Setting& setting) {
    std::string text = key + " = " + display_value(setting);
    out << text << std::string(text.size() < 56 ? 56 - text.size() : 1, ' ') << "# ";
    // An environment origin names itself ("env OUTBOX_LOG_LEVEL"), as in error messages.
    if (setting.source == Source::env)
      out << setting.origin;
    else if (setting.source == Source::default_value)
      out << source_name(setting.source);
    else
      out << source_name(setting.source) << " " << escape_controls(setting.origin);
    // Where the URL's password came from (a file path, a credential name), never the password.
    if (!setting.password_origin.empty()) out << "; password from " << escape_controls(setting.password_origin);
    out << "\n";
  };
  // Named sections ([replicas.NAME]) and array fields are printed elsewhere.
  auto shown = [](std::string_view key) {
    return key.find('*') == std::string_view::npos && key.find("[]") == std::string_view::npos;
  };
  std::vector<std::string> sections;
  for (const Option& option : options()) {
    std::string section(option.key.substr(0, option.key.find('.')));
    if (shown(option.key) && std::find(sections.begin(), sections.end(), section) == sections.end()) sections.push_back(section);
  }
  auto in_section = [&shown](std::string_view key, const std::string& section) {
    return key.substr(0, key.find('.')) == section && shown(key);
  };
  for (const std::string& section : sections) {
    out << "\n[" << section << "]\n";
    // A section's keys before its [[arrays]]: in TOML, a key after [[a.b]] belongs to that element.
    for (const Option& option : options())
      if (in_section(option.key, section) && option.type != Type::table_array)
        line(std::string(option.key.substr(option.key.find('.') + 1)), config.get(option.key));
    for (const Option& option : options()) {
      if (!in_section(option.key, section) || option.type != Type::table_array) continue;
      for (const Section& block : config.sections(option.key)) {
        out << "[[" << option.key << "]]\n";
        for (const auto& [field, setting] : block) line("  " + field, setting);
      }
      if (config.sections(option.key).empty()) out << "# " << option.key << ": none\n";
    }
  }
  auto named_section = [&](const std::string& kind, const std::string& name) {
    std::string section = kind + "." + name;
    out << "\n[" << section << "]\n";
    for (const auto& [key, setting] : config.values())
      if (key.rfind(section + ".", 0) == 0) line(key.substr(section.size() + 1), setting);
    for (const Option& option : options()) {
      std::string pattern = kind + ".*.";
      if (option.type != Type::table_array || option.key.rfind(pattern, 0) != 0) continue;
      std::string array = section + "." + std::string(option.key.substr(pattern.size()));
      for (const Section& block : config.sections(array)) {
        out << "[[" << array << "]]\n";
        for (const auto& [field, setting] : block) line("  " + field, setting);
      }
    }
  };
  for (const std::string& name : config.replica_names()) named_section("replicas", name);
  for (const std::string& name : config.service_names()) named_section("services", name);
  return out.str();
}

}  // namespace outbox::config
