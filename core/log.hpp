#pragma once
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace outbox::log {

// Configures the default logger (stderr): level trace..error, format "text" or "json".
// Safe to call again on reload.
void setup(const std::string& level, const std::string& format);
// A logger whose name carries the context of its lines, e.g. "relay public.outbox".
std::shared_ptr<spdlog::logger> get(const std::string& context);
// Escapes a string for a JSON string literal (without the quotes).
std::string json_escape(std::string_view text);

}  // namespace outbox::log
