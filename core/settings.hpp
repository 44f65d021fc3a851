#pragma once
// The typed settings the infrastructure needs, each built by one function that validates it and
// throws Error(config) naming the key. Outside these builders (and the daemons' own, in
// relay/settings.hpp and replicate/settings.hpp; the broker's is amqp::broker_settings) no code
// looks an option up by its key, so a mistyped key fails tests/unit/settings_test.cpp.
#include <string>
#include <string_view>

#include "core/config.hpp"
#include "core/error.hpp"

namespace outbox::config {

struct LogSettings {
  std::string level;   // log.level
  std::string format;  // log.format
};
LogSettings log_settings(const Config& config);

struct MetricsSettings {
  std::string listen;  // metrics.listen, checked; "" = not served
  std::string origin;  // where it was set, for the error when it cannot be bound
};
MetricsSettings metrics_settings(const Config& config);

// primary.url; "primary.url: not set" when it is empty.
const std::string& primary_url(const Config& config);

// "no replica named 'eu' is configured (set replicas.eu.url)", with "<context>: " in front when
// a context is given, and the environment variable for the replica named main.
Error missing_replica(std::string_view name, std::string_view context = "");
// replicas.NAME.url; missing_replica(name, context) when there is no such replica.
const std::string& replica_url(const Config& config, std::string_view name, std::string_view context = "");

// "no service named 'billing' is configured (set services.billing.url)", with "<context>: " in
// front when a context is given.
Error missing_service(std::string_view name, std::string_view context = "");
// services.NAME.url; missing_service(name, context) when there is no such service.
const std::string& service_url(const Config& config, std::string_view name, std::string_view context = "");
// services.NAME.migrations resolved against the config file's directory ("" when unset).
std::string service_migrations_dir(const Config& config, std::string_view name);

}  // namespace outbox::config
