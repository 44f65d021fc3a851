// outbox config show: every effective value in TOML syntax with its source; passwords masked.
// outbox config show --json: the same as one JSON document.
#include "core/config_show.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/config.hpp"
#include "core/duration.hpp"
#include "core/escape.hpp"
#include "core/option_types.hpp"
#include "core/url.hpp"

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

namespace {

// The value as JSON, typed as the option is; a URL masked as in the text form.
nlohmann::ordered_json json_value(const Setting& setting) {
  switch (setting.option->type) {
    case Type::url:
      return mask_url(setting.text);
    case Type::url_list: {
      nlohmann::ordered_json list = nlohmann::ordered_json::array();
      for (const std::string& url : setting.list) list.push_back(mask_url(url));
      return list;
    }
    case Type::string_list:
      return setting.list;
    case Type::integer:
      return setting.number;
    case Type::duration:
      return format_duration(Duration(setting.number));
    case Type::boolean:
      return setting.flag;
    default:
      return setting.text;
  }
}

nlohmann::ordered_json json_entry(const std::string& key, const Setting& setting) {
  nlohmann::ordered_json entry = {{"key", key}, {"value", json_value(setting)}, {"source", source_name(setting.source)}};
  // Where a value came from ("outbox.toml:12:3", "OUTBOX_LOG_LEVEL", "--set"); a default has no origin.
  entry["origin"] = setting.source == Source::default_value ? nlohmann::ordered_json() : nlohmann::ordered_json(setting.origin);
  // Where a URL's password came from (a file path, a credential name), never the password.
  if (!setting.password_origin.empty()) entry["password_from"] = setting.password_origin;
  return entry;
}

// The blocks of an array of tables: "replicate.mappings[0].event_type", ...
void add_blocks(nlohmann::ordered_json& entries, const Config& config, const std::string& array) {
  const std::vector<Section>& blocks = config.sections(array);
  for (size_t i = 0; i < blocks.size(); ++i)
    for (const auto& [field, setting] : blocks[i])
      entries.push_back(json_entry(array + "[" + std::to_string(i) + "]." + field, setting));
}

}  // namespace

std::string show_json(const Config& config) {
  nlohmann::ordered_json entries = nlohmann::ordered_json::array();
  for (const Option& option : options()) {
    if (option.key.find('*') != std::string_view::npos || option.key.find("[]") != std::string_view::npos) continue;
    if (option.type == Type::table_array)
      add_blocks(entries, config, std::string(option.key));
    else
      entries.push_back(json_entry(std::string(option.key), config.get(option.key)));
  }
  // Named sections ([replicas.NAME], [services.NAME]): their values and their arrays of tables.
  for (const auto& [kind, names] :
       {std::pair{std::string("replicas"), config.replica_names()}, std::pair{std::string("services"), config.service_names()}}) {
    for (const std::string& name : names) {
      std::string section = kind + "." + name;
      for (const auto& [key, setting] : config.values())
        if (key.rfind(section + ".", 0) == 0) entries.push_back(json_entry(key, setting));
      for (const Option& option : options()) {
        std::string pattern = kind + ".*.";
        if (option.type == Type::table_array && option.key.rfind(pattern, 0) == 0)
          add_blocks(entries, config, section + "." + std::string(option.key.substr(pattern.size())));
      }
    }
  }
  nlohmann::ordered_json document = {
      {"config_file", config.path().empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(config.path())},
      {"options", entries}};
  // ASCII only: a value from a file or the environment may hold control characters, escaped here.
  return document.dump(2, ' ', true, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace outbox::config
