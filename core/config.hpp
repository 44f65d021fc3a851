#pragma once
// Loads the configuration from the registry in options.cpp: file (TOML), environment, --set flags.
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/duration.hpp"
#include "core/options.hpp"

namespace outbox::config {

enum class Source { default_value, file, env, flag };
std::string_view source_name(Source source);

struct Setting {
  const Option* option = nullptr;
  std::string text;               // string, url, enumeration; a duration or number as written
  long long number = 0;           // integer; duration in milliseconds
  bool flag = false;              // boolean
  std::vector<std::string> list;  // url_list, string_list
  Source source = Source::default_value;
  std::string origin;  // where it came from: "outbox.toml:12:3", "OUTBOX_PRIMARY_URL", "--set"
  // A URL whose password was read from a file or a systemd credential: where from, never the
  // password ("file /etc/outbox/primary.password", "credential primary-password").
  std::string password_origin;
};

// One [[relay.tables]] or [[replicate.mappings]] block: field name -> setting.
using Section = std::map<std::string, Setting>;

struct LoadOptions {
  std::string config_path;             // --config; empty: $OUTBOX_CONFIG, ./outbox.toml, /etc/outbox/outbox.toml
  std::vector<std::string> overrides;  // --set KEY=VALUE
  std::function<const char*(const char*)> getenv = [](const char* name) { return std::getenv(name); };
};

class Config {
 public:
  // Throws Error(ExitCode::config) naming the file, line, column and key.
  static Config load(const LoadOptions& options);
  // Parses TOML text as if read from `path` (for tests and reloads).
  static Config parse(std::string_view toml, const std::string& path, const LoadOptions& options);

  const std::string& path() const { return path_; }
  const Setting& get(std::string_view key) const;
  const std::string& text(std::string_view key) const { return get(key).text; }
  long long integer(std::string_view key) const { return get(key).number; }
  Duration duration(std::string_view key) const { return Duration(get(key).number); }
  bool boolean(std::string_view key) const { return get(key).flag; }
  const std::vector<std::string>& list(std::string_view key) const { return get(key).list; }
  // Like text(), but a config error when the value is empty: "primary.url: not set (...)".
  const std::string& required(std::string_view key) const;

  std::vector<std::string> replica_names() const;
  bool has_replica(std::string_view name) const;
  // The [services.NAME] sections (database per service), sorted by name.
  std::vector<std::string> service_names() const;
  bool has_service(std::string_view name) const;
  const std::vector<Section>& sections(std::string_view array_key) const;
  const std::map<std::string, Setting>& values() const { return values_; }
  // Warnings found while loading, e.g. a password in a file that other users can read.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  std::string path_;
  std::map<std::string, Setting> values_;
  std::map<std::string, std::vector<Section>> arrays_;
  std::vector<std::string> warnings_;
  friend class Loader;
  friend std::vector<std::string> restart_only_changes(const Config& running, const Config& fresh);
};

// Keys whose value differs and that a reload cannot change.
std::vector<std::string> restart_only_changes(const Config& running, const Config& fresh);
// Every effective value in TOML syntax with its source as a comment; passwords masked.
std::string show(const Config& config);
// The value as TOML text (masked when it is a URL).
std::string display_value(const Setting& setting);

}  // namespace outbox::config
