#include "core/config.hpp"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/url.hpp"

namespace outbox::config {

std::string_view source_name(Source source) {
  switch (source) {
    case Source::default_value:
      return "default";
    case Source::file:
      return "file";
    case Source::env:
      return "env";
    case Source::flag:
      return "flag";
  }
  return "?";
}

namespace {

std::string describe_allowed(const Option& option) {
  std::string allowed = allowed_text(option);
  switch (option.type) {
    case Type::integer:
    case Type::duration:
      return "must be " + allowed;
    case Type::enumeration:
      return "must be one of " + allowed;
    case Type::boolean:
      return "must be true or false";
    case Type::url_list:
      return "must be a URL or an array of URLs";
    case Type::string_list:
      return "must be an array of strings";
    case Type::table_array:
      return "must be an array of tables ([[" + std::string(option.key) + "]])";
    default:
      return "must be a string";
  }
}

// A value failed validation: "<origin>: <key>: must be 1..10000 (got 0)".
Error invalid(const std::string& origin, std::string_view key, const std::string& what) {
  return config_error("config " + origin + ": " + std::string(key) + ": " + what);
}

bool valid_url(std::string_view url, std::initializer_list<std::string_view> schemes) {
  for (std::string_view scheme : schemes)
    if (url.rfind(std::string(scheme) + "://", 0) == 0 && url.size() > scheme.size() + 3) return true;
  return false;
}

void check_url(const Option& option, std::string_view key, const std::string& url, const std::string& origin) {
  if (url.empty()) return;
  if (std::string problem = url_syntax_problem(url); !problem.empty()) throw invalid(origin, key, problem);
  bool broker = option.key.rfind("broker.", 0) == 0;
  bool ok = broker ? valid_url(url, {"amqp", "amqps"}) : valid_url(url, {"postgresql", "postgres"});
  if (!ok)
    throw invalid(origin, key,
                  std::string(broker ? "must be an amqp:// or amqps:// URL" : "must be a postgresql:// URL") + " (got " +
                      mask_credentials(url) + ")");
}

// Converts text (an environment variable or a --set value that is not TOML) into a setting.
Setting from_text(const Option& option, std::string_view key, std::string_view text, Source source, const std::string& origin) {
  Setting setting{&option, std::string(text), 0, false, {}, source, origin};
  auto fail = [&] { return invalid(origin, key, describe_allowed(option) + " (got \"" + std::string(text) + "\")"); };
  switch (option.type) {
    case Type::string:
      break;
    case Type::url:
      check_url(option, key, setting.text, origin);
      break;
    case Type::url_list: {
      std::stringstream parts{std::string(text)};
      for (std::string part; std::getline(parts, part, ',');)
        if (!part.empty()) {
          check_url(option, key, part, origin);
          setting.list.push_back(part);
        }
      setting.text = setting.list.empty() ? "" : setting.list.front();
      break;
    }
    case Type::integer: {
      long long value = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec != std::errc() || end != text.data() + text.size() || value < option.min || value > option.max) throw fail();
      setting.number = value;
      break;
    }
    case Type::duration: {
      auto value = parse_duration(text);
      if (!value || value->count() < option.min || value->count() > option.max) throw fail();
      setting.number = value->count();
      break;
    }
    case Type::boolean:
      if (text == "true" || text == "1" || text == "yes")
        setting.flag = true;
      else if (text == "false" || text == "0" || text == "no")
        setting.flag = false;
      else
        throw fail();
      break;
    case Type::enumeration: {
      std::string allowed = "|" + std::string(option.allowed) + "|";
      if (text.empty() || text.find('|') != std::string_view::npos ||
          allowed.find("|" + std::string(text) + "|") == std::string::npos)
        throw fail();
      break;
    }
    case Type::string_list: {
      std::stringstream parts{std::string(text)};
      for (std::string part; std::getline(parts, part, ',');) setting.list.push_back(part);
      break;
    }
    case Type::table_array:
      throw fail();
  }
  return setting;
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
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date or time";
  }
}

Setting from_node(const Option& option, std::string_view key, const toml::node& node, Source source, const std::string& origin) {
  auto wrong_type = [&] { return invalid(origin, key, describe_allowed(option) + " (got " + node_type_name(node) + ")"); };
  switch (option.type) {
    case Type::integer:
      if (auto value = node.value_exact<int64_t>()) {
        if (*value < option.min || *value > option.max)
          throw invalid(origin, key, describe_allowed(option) + " (got " + std::to_string(*value) + ")");
        return Setting{&option, std::to_string(*value), *value, false, {}, source, origin};
      }
      throw wrong_type();
    case Type::boolean:
      if (auto value = node.value_exact<bool>())
        return Setting{&option, *value ? "true" : "false", 0, *value, {}, source, origin};
      throw wrong_type();
    case Type::duration:
      if (auto value = node.value_exact<int64_t>()) return from_text(option, key, std::to_string(*value), source, origin);
      if (auto value = node.value_exact<std::string>()) return from_text(option, key, *value, source, origin);
      throw wrong_type();
    case Type::url_list:
    case Type::string_list:
      if (auto value = node.value_exact<std::string>()) {
        if (option.type == Type::string_list) throw wrong_type();
        return from_text(option, key, *value, source, origin);
      }
      if (const toml::array* array = node.as_array()) {
        Setting setting{&option, "", 0, false, {}, source, origin};
        for (const toml::node& element : *array) {
          auto text = element.value_exact<std::string>();
          if (!text) throw invalid(element_origin(origin, element), key, describe_allowed(option));
          if (option.type == Type::url_list) check_url(option, key, *text, element_origin(origin, element));
          setting.list.push_back(*text);
        }
        if (!setting.list.empty()) setting.text = setting.list.front();
        return setting;
      }
      throw wrong_type();
    case Type::table_array:
      throw wrong_type();
    default:
      if (auto value = node.value_exact<std::string>()) return from_text(option, key, *value, source, origin);
      throw wrong_type();
  }
}

Setting default_setting(const Option& option, std::string_view key) {
  if (option.default_value.empty()) return Setting{&option, "", 0, false, {}, Source::default_value, "default"};
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
      if (section == "replicas") {
        if (!table) throw invalid(where(path(), section_node), section, "must be a table of [replicas.NAME] sections");
        for (auto&& [name_key, replica_node] : *table) {
          std::string name(name_key.str());
          const toml::table* replica = replica_node.as_table();
          if (!replica)
            throw invalid(where(path(), replica_node), "replicas." + name, "must be a table ([replicas." + name + "])");
          if (!valid_name(name))
            throw invalid(where(path(), replica_node), "replicas." + name, "replica names may use letters, digits, '_' and '-'");
          replicas_.push_back(name);
          replica_origins_[name] = where(path(), replica_node);
          read_fields(*replica, "replicas." + name);
        }
        continue;
      }
      if (!table) throw unknown(section, section_node);
      read_fields(*table, section);
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
        std::string array_prefix = key + "[].";
        if (candidate_key.rfind(array_prefix, 0) != 0) continue;
        std::string field_name(candidate_key.substr(array_prefix.size()));
        if (section.count(field_name)) continue;
        bool required =
            candidate.default_value.empty() && (field_name == "name" || field_name == "event_type" || field_name == "table");
        if (required) throw invalid(where(path(), element), key + "." + field_name, "is required in every [[" + key + "]] block");
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
        if (std::find(replicas_.begin(), replicas_.end(), "main") == replicas_.end()) replicas_.push_back("main");
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
      if (key.rfind("replicas.", 0) == 0) {
        std::string name = key.substr(9, key.find('.', 9) - 9);
        if (!valid_name(name)) throw invalid(origin, key, "replica names may use letters, digits, '_' and '-'");
        if (std::find(replicas_.begin(), replicas_.end(), name) == replicas_.end()) replicas_.push_back(name);
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

  void fill_replica_defaults() {
    for (const std::string& name : replicas_)
      for (const Option& option : options()) {
        std::string_view pattern = option.key;
        if (pattern.rfind("replicas.*.", 0) != 0) continue;
        std::string key = "replicas." + name + "." + std::string(pattern.substr(11));
        if (!config_.values_.count(key)) config_.values_[key] = default_setting(option, key);
      }
    for (const std::string& name : replicas_)
      if (config_.values_["replicas." + name + ".url"].text.empty())
        throw config_error("config " +
                           (replica_origins_.count(name) ? replica_origins_[name]
                            : path().empty()             ? std::string("(none)")
                                                         : path()) +
                           ": replicas." + name + ".url: is required for every [replicas." + name + "] section");
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

  const std::string& path() const { return config_.path_; }

 private:
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
  std::vector<std::string> replicas_;
  std::map<std::string, std::string> replica_origins_;  // "outbox.toml:7:1" of each [replicas.NAME]
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
  loader.fill_replica_defaults();
  loader.check_permissions();
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

const std::vector<Section>& Config::sections(std::string_view array_key) const {
  static const std::vector<Section> none;
  auto found = arrays_.find(std::string(array_key));
  return found == arrays_.end() ? none : found->second;
}

namespace {
// Compares what a setting means, unmasked: a changed password is a change.
bool same_value(const Setting& a, const Setting& b) {
  switch (a.option->type) {
    case Type::integer:
    case Type::duration:
      return a.number == b.number;
    case Type::boolean:
      return a.flag == b.flag;
    case Type::url_list:
    case Type::string_list:
      return a.list == b.list;
    default:
      return a.text == b.text;
  }
}
}  // namespace

std::vector<std::string> restart_only_changes(const Config& running, const Config& fresh) {
  std::vector<std::string> changed;
  for (const auto& [key, setting] : fresh.values()) {
    if (setting.option->reloadable) continue;
    auto old = running.values().find(key);
    if (old == running.values().end() || !same_value(old->second, setting)) changed.push_back(key);
  }
  for (const auto& [key, old] : running.values())
    if (!old.option->reloadable && !fresh.values().count(key)) changed.push_back(key);
  for (std::string_view array : {"relay.tables", "replicate.mappings"}) {
    const auto& a = running.sections(array);
    const auto& b = fresh.sections(array);
    bool same = a.size() == b.size();
    for (size_t i = 0; same && i < a.size(); ++i) {
      same = a[i].size() == b[i].size();
      for (const auto& [field, setting] : a[i])
        if (same && (!b[i].count(field) || !same_value(b[i].at(field), setting))) same = false;
    }
    if (!same) changed.emplace_back(array);
  }
  return changed;
}

std::string display_value(const Setting& setting) {
  switch (setting.option->type) {
    case Type::integer:
      return std::to_string(setting.number);
    case Type::boolean:
      return setting.flag ? "true" : "false";
    case Type::duration:
      return toml_string(format_duration(Duration(setting.number)));
    case Type::url:
      return toml_string(mask_url(setting.text));
    case Type::url_list:
    case Type::string_list: {
      std::string out = "[";
      for (size_t i = 0; i < setting.list.size(); ++i)
        out +=
            (i ? ", " : "") + toml_string(setting.option->type == Type::url_list ? mask_url(setting.list[i]) : setting.list[i]);
      return out + "]";
    }
    default:
      return toml_string(setting.text);
  }
}

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
  for (const std::string& name : config.replica_names()) {
    out << "\n[replicas." << name << "]\n";
    for (const auto& [key, setting] : config.values())
      if (key.rfind("replicas." + name + ".", 0) == 0) line(key.substr(10 + name.size()), setting);
  }
  return out.str();
}

}  // namespace outbox::config
