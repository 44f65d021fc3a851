#include "core/config.hpp"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/option_types.hpp"
#include "core/passwords.hpp"
#include "core/url.hpp"

namespace outbox::config {

std::string_view source_name(Source source) {
  static constexpr std::string_view kNames[] = {"default", "file", "env", "flag"};
  return kNames[static_cast<size_t>(source)];
}

namespace {

std::string describe_allowed(const Option& option) { return type_row(option.type).must_be(option); }

Error invalid(const std::string& origin, std::string_view key, const std::string& what) {
  return invalid_value(origin, key, what);
}

// Converts text (a TOML string, an environment variable, a --set value that is not TOML) into a
// setting; `got` is how an error shows the value.
Setting from_text(const Option& option, std::string_view key, std::string_view text, Source source, const std::string& origin,
                  const std::string& got) {
  Setting setting{&option, std::string(text), 0, false, {}, source, origin, {}};
  if (!type_row(option.type).parse(option, key, text, setting))
    throw invalid(origin, key, describe_allowed(option) + " (got " + got + ")");
  return setting;
}

Setting from_text(const Option& option, std::string_view key, std::string_view text, Source source, const std::string& origin) {
  return from_text(option, key, text, source, origin, "\"" + std::string(text) + "\"");
}

std::string where(const std::string& path, const toml::node& node) {
  const auto& begin = node.source().begin;
  return path + ":" + std::to_string(begin.line) + ":" + std::to_string(begin.column);
}

// The position of an array element: the origin's file ("a:b.toml:2:7" -> "a:b.toml") with the
// element's line and column; an origin without a position ("--set") stays as it is.
std::string element_origin(const std::string& origin, const toml::node& element) {
  size_t column = origin.rfind(':');
  size_t line = column == std::string::npos || column == 0 ? std::string::npos : origin.rfind(':', column - 1);
  if (line == std::string::npos) return origin;
  return where(origin.substr(0, line), element);
}

std::string node_type_name(const toml::node& node) {
  // Indexed by toml::node_type: none, table, array, string, integer, floating_point, boolean, dates.
  static constexpr std::string_view kNames[] = {"nothing",    "a table", "an array", "a string",
                                                "an integer", "a float", "a boolean"};
  size_t index = static_cast<size_t>(node.type());
  return std::string(index < std::size(kNames) ? kNames[index] : "a date or time");
}

// An array of strings, each checked as the type wants (a URL of broker.url).
Setting from_array(const Option& option, std::string_view key, const toml::array& array, Source source,
                   const std::string& origin) {
  Setting setting{&option, "", 0, false, {}, source, origin, {}};
  for (const toml::node& element : array) {
    auto text = element.value_exact<std::string>();
    if (!text) throw invalid(element_origin(origin, element), key, describe_allowed(option));
    if (auto check = type_row(option.type).check_element) check(option, key, *text, element_origin(origin, element));
    setting.list.push_back(*text);
  }
  if (!setting.list.empty()) setting.text = setting.list.front();
  return setting;
}

Setting from_node(const Option& option, std::string_view key, const toml::node& node, Source source, const std::string& origin) {
  const TypeRow& row = type_row(option.type);
  if (auto value = node.value_exact<int64_t>(); value && row.takes_integer)
    return from_text(option, key, std::to_string(*value), source, origin, std::to_string(*value));
  if (auto value = node.value_exact<int64_t>(); value && row.takes_integer_as_text)
    return from_text(option, key, std::to_string(*value), source, origin);
  if (auto value = node.value_exact<bool>(); value && row.takes_boolean)
    return from_text(option, key, *value ? "true" : "false", source, origin);
  if (auto value = node.value_exact<std::string>(); value && row.takes_string)
    return from_text(option, key, *value, source, origin);
  if (const toml::array* array = node.as_array(); array && row.takes_array)
    return from_array(option, key, *array, source, origin);
  throw invalid(origin, key, describe_allowed(option) + " (got " + node_type_name(node) + ")");
}

Setting default_setting(const Option& option, std::string_view key) {
  if (option.default_value.empty()) return Setting{&option, "", 0, false, {}, Source::default_value, "default", {}};
  if (option.type == Type::string_list || option.type == Type::url_list) {
    auto parsed = toml::parse("v = " + std::string(option.default_value));
    return from_node(option, key, *parsed.get("v"), Source::default_value, "default");
  }
  return from_text(option, key, option.default_value, Source::default_value, "default");
}

bool contains_password(const Config& config) {
  for (const auto& [key, setting] : config.values())
    if (setting.source == Source::file) {
      if ((setting.option->type == Type::url && url_has_password(setting.text))) return true;
      for (const std::string& url : setting.list)
        if (setting.option->type == Type::url_list && url_has_password(url)) return true;
    }
  return false;
}

}  // namespace

class Loader {
 public:
  Loader(Config& config, const LoadOptions& options) : config_(config), options_(options) {}

  void read_table(const toml::table& root) {
    for (auto&& [section_key, section_node] : root) {
      std::string section(section_key.str());
      const toml::table* table = section_node.as_table();
      if (is_named_section(section)) {
        read_named_sections(section, table, section_node);
        continue;
      }
      if (!table) throw unknown(section, section_node);
      read_fields(*table, section);
    }
  }

  // [replicas.NAME] and [services.NAME]: one section per name, each with the fields of the
  // registry's "replicas.*." or "services.*." options.
  void read_named_sections(const std::string& kind, const toml::table* table, const toml::node& node) {
    std::string noun = kind == "replicas" ? "replica" : "service";
    if (!table) throw invalid(where(path(), node), kind, "must be a table of [" + kind + ".NAME] sections");
    for (auto&& [name_key, named_node] : *table) {
      std::string name(name_key.str());
      const toml::table* named = named_node.as_table();
      if (!named) throw invalid(where(path(), named_node), kind + "." + name, "must be a table ([" + kind + "." + name + "])");
      if (!valid_name(name))
        throw invalid(where(path(), named_node), kind + "." + name, noun + " names may use letters, digits, '_' and '-'");
      names_[kind].push_back(name);
      origins_[kind + "." + name] = where(path(), named_node);
      read_fields(*named, kind + "." + name);
    }
  }

  void read_fields(const toml::table& table, const std::string& prefix) {
    for (auto&& [field_key, node] : table) {
      std::string key = prefix + "." + std::string(field_key.str());
      const Option* option = find_option(key);
      if (!option) throw unknown(key, node);
      if (option->type == Type::table_array) {
        read_array(*option, key, node);
        continue;
      }
      config_.values_[key] = from_node(*option, key, node, Source::file, where(path(), node));
    }
  }

  void read_array(const Option& option, const std::string& key, const toml::node& node, Source source = Source::file) {
    const toml::array* array = node.as_array();
    if (!array) throw invalid(where(path(), node), key, describe_allowed(option));
    std::vector<Section> sections;
    for (const toml::node& element : *array) {
      const toml::table* table = element.as_table();
      if (!table) throw invalid(where(path(), element), key, describe_allowed(option));
      Section section;
      for (auto&& [field_key, field_node] : *table) {
        std::string field_name(field_key.str());
        std::string field = key + "[]." + field_name;
        const Option* field_option = find_option(field);
        if (!field_option) throw unknown(key + "." + field_name, field_node);
        std::string origin = source == Source::file ? where(path(), field_node) : "default";
        section[field_name] = from_node(*field_option, key + "." + field_name, field_node, source, origin);
      }
      // Fill defaults and check required fields of the block.
      for (const Option& candidate : options()) {
        std::string_view candidate_key = candidate.key;
        std::string array_prefix = std::string(option.key) + "[].";
        if (candidate_key.rfind(array_prefix, 0) != 0) continue;
        std::string field_name(candidate_key.substr(array_prefix.size()));
        if (section.count(field_name)) continue;
        if (candidate.required)
          throw invalid(where(path(), element), key + "." + field_name, "is required in every [[" + key + "]] block");
        section[field_name] = default_setting(candidate, candidate_key);
      }
      sections.push_back(std::move(section));
    }
    config_.arrays_[key] = std::move(sections);
  }

  void fill_defaults() {
    for (const Option& option : options()) {
      std::string_view key = option.key;
      if (key.find('*') != std::string_view::npos || key.find("[]") != std::string_view::npos) continue;
      if (option.type == Type::table_array) {
        if (config_.arrays_.count(std::string(key))) continue;
        if (option.default_value.empty()) {
          config_.arrays_[std::string(key)] = {};
          continue;
        }
        auto parsed = toml::parse("v = " + std::string(option.default_value));
        read_array(option, std::string(key), *parsed.get("v"), Source::default_value);
        continue;
      }
      if (!config_.values_.count(std::string(key))) config_.values_[std::string(key)] = default_setting(option, key);
    }
  }

  void apply_env() {
    for (const Option& option : options()) {
      if (option.env.empty()) continue;
      const char* value = options_.getenv(std::string(option.env).c_str());
      if (!value || !*value) continue;
      std::string key(option.key);
      if (key == "replicas.*.url") {
        key = "replicas.main.url";
        add_name("replicas", "main");
      }
      config_.values_[key] = from_text(option, key, value, Source::env, "env " + std::string(option.env));
    }
  }

  void apply_overrides() {
    for (const std::string& assignment : options_.overrides) {
      size_t equals = assignment.find('=');
      std::string origin = "--set " + assignment.substr(0, equals);
      if (equals == std::string::npos || equals == 0)
        throw config_error("config --set " + mask_credentials(assignment) + ": expected KEY=VALUE");
      std::string key = assignment.substr(0, equals), value = assignment.substr(equals + 1);
      const Option* option = find_option(key);
      if (!option || option->type == Type::table_array || key.find("[]") != std::string::npos)
        throw config_error("config " + origin + ": unknown configuration option");
      if (std::string kind = key.substr(0, key.find('.')); is_named_section(kind)) {
        std::string name = key.substr(kind.size() + 1, key.find('.', kind.size() + 1) - kind.size() - 1);
        if (!valid_name(name))
          throw invalid(origin, key,
                        std::string(kind == "replicas" ? "replica" : "service") + " names may use letters, digits, '_' and '-'");
        add_name(kind, name);
      }
      // A TOML literal (an array, a number) is taken as TOML; anything else as plain text.
      toml::parse_result parsed;
      bool is_toml = false;
      try {
        parsed = toml::parse("v = " + value);
        is_toml = parsed.get("v") && !parsed.get("v")->is_table();
      } catch (const toml::parse_error&) {
      }
      config_.values_[key] = is_toml && option->type != Type::string && option->type != Type::url
                                 ? from_node(*option, key, *parsed.get("v"), Source::flag, origin)
                                 : from_text(*option, key, value, Source::flag, origin);
    }
  }

  // Each [replicas.NAME] and [services.NAME] section gets the defaults of its fields and must set
  // the required ones.
  void fill_named_defaults() {
    for (const auto& [kind, names] : names_)
      for (const std::string& name : names)
        for (const Option& option : options()) {
          std::string_view pattern = option.key;
          std::string pattern_prefix = kind + ".*.";
          if (pattern.rfind(pattern_prefix, 0) != 0 || option.type == Type::table_array ||
              pattern.find("[]") != std::string_view::npos)
            continue;
          std::string section = kind + "." + name;
          std::string key = section + "." + std::string(pattern.substr(pattern_prefix.size()));
          if (!config_.values_.count(key)) config_.values_[key] = default_setting(option, key);
          if (option.required && config_.values_[key].text.empty())
            throw config_error("config " +
                               (origins_.count(section) ? origins_[section]
                                : path().empty()        ? std::string("(none)")
                                                        : path()) +
                               ": " + key + ": is required for every [" + section + "] section");
        }
  }

  void check_permissions() {
    if (path().empty() || !contains_password(config_)) return;
    struct stat info {};
    // Group read is how a root-owned file is shared with the daemons' group (install -m 0640 -g outbox).
    if (stat(path().c_str(), &info) == 0 && (info.st_mode & S_IROTH)) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", info.st_mode & 07777);
      config_.warnings_.push_back("config " + path() + ": contains a password but every user can read it (mode " + mode +
                                  "); run chmod o-r " + path());
    }
  }

  // The passwords kept outside the URLs, of [primary], [broker] and each [replicas.NAME] and
  // [services.NAME] (core/passwords.hpp).
  void read_passwords() {
    std::vector<std::string> sections = {"primary", "broker"};
    for (const auto& [kind, names] : names_)
      for (const std::string& name : names) sections.push_back(kind + "." + name);
    PasswordSources sources{path(), options_.getenv};
    for (const std::string& section : sections) read_password(config_.values_, section, sources, config_.warnings_);
  }

  const std::string& path() const { return config_.path_; }

 private:
  static bool is_named_section(const std::string& section) { return section == "replicas" || section == "services"; }
  void add_name(const std::string& kind, const std::string& name) {
    std::vector<std::string>& names = names_[kind];
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  static bool valid_name(const std::string& name) {
    return !name.empty() && name.size() <= 63 && std::all_of(name.begin(), name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
  }
  Error unknown(const std::string& key, const toml::node& node) {
    return config_error("config " + where(path(), node) + ": " + key + ": unknown configuration option");
  }

  Config& config_;
  const LoadOptions& options_;
  std::map<std::string, std::vector<std::string>> names_;  // "replicas" -> the replica names, "services" -> ...
  std::map<std::string, std::string> origins_;             // "outbox.toml:7:1" of each [replicas.NAME], [services.NAME]
};

Config Config::parse(std::string_view toml_text, const std::string& path, const LoadOptions& options) {
  Config config;
  config.path_ = path;
  Loader loader(config, options);
  if (!toml_text.empty()) {
    try {
      toml::table root = toml::parse(toml_text, path);
      loader.read_table(root);
    } catch (const toml::parse_error& error) {
      const auto& begin = error.source().begin;
      throw config_error("config " + path + ":" + std::to_string(begin.line) + ":" + std::to_string(begin.column) + ": " +
                         std::string(error.description()));
    }
  }
  loader.fill_defaults();
  loader.apply_env();
  loader.apply_overrides();
  loader.fill_named_defaults();
  loader.check_permissions();
  loader.read_passwords();
  return config;
}

Config Config::load(const LoadOptions& options) {
  std::string path = options.config_path;
  if (path.empty())
    if (const char* env = options.getenv("OUTBOX_CONFIG"); env && *env) {
      path = env;
    }
  if (path.empty())
    for (const char* candidate : {"outbox.toml", "/etc/outbox/outbox.toml"})
      if (std::filesystem::exists(candidate)) {
        path = candidate;
        break;
      }
  if (path.empty()) return parse("", "", options);
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::string reason = std::strerror(errno);
    throw config_error("config " + path + ": cannot open: " + reason);
  }
  std::stringstream content;
  content << file.rdbuf();
  // A directory opens as a stream and reads as nothing: not an empty config.
  if (file.bad() || (content.str().empty() && std::filesystem::is_directory(path)))
    throw config_error("config " + path + ": cannot read: " +
                       (std::filesystem::is_directory(path) ? std::string("is a directory") : std::strerror(errno)));
  return parse(content.str(), path, options);
}

const Setting& Config::get(std::string_view key) const {
  auto found = values_.find(std::string(key));
  if (found == values_.end()) throw Error(ExitCode::software, "config: " + std::string(key) + ": not a registered option");
  return found->second;
}

const std::string& Config::required(std::string_view key) const {
  const Setting& setting = get(key);
  if (setting.text.empty()) {
    std::string hint = setting.option->env.empty() ? "" : " or " + std::string(setting.option->env);
    if (key == "replicas.main.url") hint = " or OUTBOX_REPLICA_URL";
    throw config_error("config: " + std::string(key) + ": not set (set it in the config file" + hint + ")");
  }
  return setting.text;
}

std::vector<std::string> Config::replica_names() const {
  std::vector<std::string> names;
  for (const auto& [key, setting] : values_)
    if (key.rfind("replicas.", 0) == 0 && key.size() > 13 && key.substr(key.size() - 4) == ".url")
      names.push_back(key.substr(9, key.size() - 13));
  // "main" first: it is the default replica.
  std::stable_partition(names.begin(), names.end(), [](const std::string& name) { return name == "main"; });
  return names;
}

bool Config::has_replica(std::string_view name) const { return values_.count("replicas." + std::string(name) + ".url") > 0; }

std::vector<std::string> Config::service_names() const {
  std::vector<std::string> names;
  for (const auto& [key, setting] : values_)
    if (key.rfind("services.", 0) == 0 && key.size() > 13 && key.substr(key.size() - 4) == ".url" &&
        key.find('.', 9) == key.size() - 4)
      names.push_back(key.substr(9, key.size() - 13));
  return names;
}

bool Config::has_service(std::string_view name) const { return values_.count("services." + std::string(name) + ".url") > 0; }

const std::vector<Section>& Config::sections(std::string_view array_key) const {
  static const std::vector<Section> none;
  auto found = arrays_.find(std::string(array_key));
  return found == arrays_.end() ? none : found->second;
}

std::vector<std::string> restart_only_changes(const Config& running, const Config& fresh) {
  std::vector<std::string> changed;
  for (const auto& [key, setting] : fresh.values()) {
    if (setting.option->reloadable) continue;
    auto old = running.values().find(key);
    if (old == running.values().end() || !type_row(setting.option->type).same(old->second, setting)) changed.push_back(key);
  }
  for (const auto& [key, old] : running.values())
    if (!old.option->reloadable && !fresh.values().count(key)) changed.push_back(key);
  std::vector<std::string> arrays;
  for (const Config* config : {&running, &fresh})
    for (const auto& [key, blocks] : config->arrays_)
      if (std::find(arrays.begin(), arrays.end(), key) == arrays.end()) arrays.push_back(key);
  for (const std::string& array : arrays) {
    const auto& a = running.sections(array);
    const auto& b = fresh.sections(array);
    bool same = a.size() == b.size();
    for (size_t i = 0; same && i < a.size(); ++i) {
      same = a[i].size() == b[i].size();
      for (const auto& [field, setting] : a[i])
        if (same && (!b[i].count(field) || !type_row(setting.option->type).same(b[i].at(field), setting))) same = false;
    }
    if (!same) changed.emplace_back(array);
  }
  return changed;
}

}  // namespace outbox::config
