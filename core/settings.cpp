#include "core/settings.hpp"

#include <filesystem>

#include "core/metrics_server.hpp"

namespace outbox::config {

LogSettings log_settings(const Config& config) { return {config.text("log.level"), config.text("log.format")}; }

MetricsSettings metrics_settings(const Config& config) {
  const Setting& listen = config.get("metrics.listen");
  if (!listen.text.empty()) metrics::parse_listen(listen.text, listen.origin);
  return {listen.text, listen.origin};
}

const std::string& primary_url(const Config& config) { return config.required("primary.url"); }

Error missing_replica(std::string_view name, std::string_view context) {
  std::string replica(name);
  return config_error((context.empty() ? "" : std::string(context) + ": ") + "no replica named '" + replica +
                      "' is configured (set replicas." + replica + ".url" +
                      (replica == "main" ? " or OUTBOX_REPLICA_URL)" : ")"));
}

const std::string& replica_url(const Config& config, std::string_view name, std::string_view context) {
  if (!config.has_replica(name)) throw missing_replica(name, context);
  return config.required("replicas." + std::string(name) + ".url");
}

Error missing_service(std::string_view name, std::string_view context) {
  std::string service(name);
  return config_error((context.empty() ? "" : std::string(context) + ": ") + "no service named '" + service +
                      "' is configured (set services." + service + ".url)");
}

const std::string& service_url(const Config& config, std::string_view name, std::string_view context) {
  if (!config.has_service(name)) throw missing_service(name, context);
  return config.required("services." + std::string(name) + ".url");
}

std::string service_migrations_dir(const Config& config, std::string_view name) {
  if (!config.has_service(name)) throw missing_service(name);
  const std::string& dir = config.text("services." + std::string(name) + ".migrations");
  if (dir.empty() || std::filesystem::path(dir).is_absolute() || config.path().empty()) return dir;
  return (std::filesystem::path(config.path()).parent_path() / dir).lexically_normal().string();
}

}  // namespace outbox::config
