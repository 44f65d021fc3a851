#include "core/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>

namespace outbox::log {
namespace {

// Writes the message escaped for JSON, so a quote in an error cannot break the line.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string escaped = json_escape(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessageFlag>(); }
};

std::shared_ptr<spdlog::sinks::stderr_sink_mt> sink() {
  static auto shared = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return shared;
}

std::mutex registry_mutex;
std::string current_format = "text";
spdlog::level::level_enum current_level = spdlog::level::info;

std::unique_ptr<spdlog::formatter> make_formatter() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  if (current_format == "json") {
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","context":"%n","msg":"%*"})");
  } else {
    formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %n: %v");
  }
  return formatter;
}

}  // namespace

std::string json_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
          out += buffer;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

void setup(const std::string& level, const std::string& format) {
  std::lock_guard lock(registry_mutex);
  current_format = format;
  current_level = spdlog::level::from_str(level);
  if (level == "warn") current_level = spdlog::level::warn;
  if (!spdlog::get("outbox")) {
    auto logger = std::make_shared<spdlog::logger>("outbox", sink());
    spdlog::set_default_logger(logger);
  }
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& logger) {
    logger->set_level(current_level);
    logger->set_formatter(make_formatter());
    logger->flush_on(spdlog::level::trace);
  });
}

std::shared_ptr<spdlog::logger> get(const std::string& context) {
  std::lock_guard lock(registry_mutex);
  if (auto existing = spdlog::get(context)) return existing;
  auto logger = std::make_shared<spdlog::logger>(context, sink());
  logger->set_level(current_level);
  logger->set_formatter(make_formatter());
  logger->flush_on(spdlog::level::trace);
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace outbox::log
