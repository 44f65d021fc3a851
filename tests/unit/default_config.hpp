#pragma once
// For unit tests that need a daemon::Runtime: a configuration with every option at its default
// (no file, no environment).
#include "core/config.hpp"

namespace outbox::testing {

inline config::Config default_config() {
  config::LoadOptions options;
  options.config_path = "/dev/null";
  options.getenv = [](const char*) -> const char* { return nullptr; };
  return config::Config::load(options);
}

}  // namespace outbox::testing
