#pragma once
// Configurations for unit tests, read without the environment (a test must not see the OUTBOX_*
// variables of the shell that runs it): every option at its default (for tests that need a
// daemon::Runtime), or a TOML text.
#include <string_view>

#include "core/config.hpp"

namespace outbox::testing {

inline config::LoadOptions without_environment() {
  config::LoadOptions options;
  options.getenv = [](const char*) -> const char* { return nullptr; };
  return options;
}

inline config::Config default_config() {
  config::LoadOptions options = without_environment();
  options.config_path = "/dev/null";
  return config::Config::load(options);
}

// `toml` as the file outbox.toml.
inline config::Config parse_config(std::string_view toml) {
  return config::Config::parse(toml, "outbox.toml", without_environment());
}

}  // namespace outbox::testing
