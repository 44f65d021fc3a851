#pragma once
// The consume daemon's settings (`outbox consume`), built and validated once from a configuration by
// settings_from_config: at start, on SIGHUP (a reload keeps the running settings when the build
// throws) and by `outbox config check`. Nothing else in consume reads an option by its key.
//
// A consumer is a [services.NAME] with handlers: replicate's engine (replicate/replicator.hpp) on
// the service database, with the handlers as its mappings, the queue outbox.consumer.NAME, the
// replicate.* tunables, and consume.inbox_retention as the inbox's retention.
#include <chrono>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "replicate/settings.hpp"

namespace outbox::consume {

// A [[services.NAME.deadlines]] block: `SELECT function()` every `every`.
struct Deadline {
  std::string function;  // "booking.expire_sagas"
  std::chrono::milliseconds every{1000};
};

struct Settings {
  replicate::Settings engine;                    // engine.replicas: one consumer per service
  std::vector<std::vector<Deadline>> deadlines;  // per consumer, in the order of engine.replicas
};

// The [[services.NAME.handlers]] blocks as handler mappings. Throws Error(config) for none, an
// empty or reserved event type, one mapped twice, or a function name that is not a (qualified) name.
std::vector<replicate::Mapping> handlers_from_config(const config::Config& config, const std::string& service);
std::vector<Deadline> deadlines_from_config(const config::Config& config, const std::string& service);
// The reloadable part: replicate.* with consume.inbox_retention as the applied retention.
replicate::Tunables tunables_from_config(const config::Config& config);
// The named services (none: every configured service that has handlers). Error(config) for a
// service that is not configured, one without handlers or binding_keys, or when there is none.
Settings settings_from_config(const config::Config& config, std::vector<std::string> services = {});

}  // namespace outbox::consume
