#include "core/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "core/escape.hpp"

namespace outbox::log {
namespace {

// Writes the message or the logger's name (its context) escaped: for JSON, so that a quote in an
// error cannot break the line; for text, so that a newline or an escape sequence that arrived in
// data (a message id, a server's error) can neither forge a log line nor reach a terminal raw.
class EscapedFlag : public spdlog::custom_flag_formatter {
 public:
  enum class Part { message, name };
  EscapedFlag(Part part, bool json) : part_(part), json_(json) {}
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string_view text = part_ == Part::message ? std::string_view(msg.payload.data(), msg.payload.size())
                                                   : std::string_view(msg.logger_name.data(), msg.logger_name.size());
    std::string escaped = json_ ? json_escape(text) : escape_controls(text);
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<EscapedFlag>(part_, json_); }

 private:
  Part part_;
  bool json_;
};

// The journal's priority prefix of the line ("<4>"), first on the line.
class JournalPriorityFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string_view prefix = journal_prefix(msg.level);
    dest.append(prefix.data(), prefix.data() + prefix.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JournalPriorityFlag>(); }
};

std::shared_ptr<spdlog::sinks::stderr_sink_mt> sink() {
  static auto shared = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return shared;
}

std::mutex registry_mutex;
std::string current_format = "text";
spdlog::level::level_enum current_level = spdlog::level::info;
bool to_journal = false;  // stderr is the journal: each line carries its priority

std::unique_ptr<spdlog::formatter> make_formatter() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  bool json = current_format == "json";
  formatter->add_flag<EscapedFlag>('*', EscapedFlag::Part::message, json);
  formatter->add_flag<EscapedFlag>('&', EscapedFlag::Part::name, json);
  formatter->add_flag<JournalPriorityFlag>('~');
  // journald strips the prefix from the message, so a JSON line stays JSON in the journal.
  std::string priority = to_journal ? "%~" : "";
  if (json)
    formatter->set_pattern(priority + R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","context":"%&","msg":"%*"})");
  else
    formatter->set_pattern(priority + "%Y-%m-%dT%H:%M:%S.%eZ %l %&: %*");
  return formatter;
}

}  // namespace

std::string json_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
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
        // JSON needs only C0 escaped; DEL and the C1 controls (U+0080..U+009F, 0xc2 0x80..0x9f in
        // UTF-8) are escaped too, so that a JSON line shown on a terminal cannot drive it.
        if (c < 0x20 || c == 0x7f) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
          out += buffer;
        } else if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
                   static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned char>(text[++i]));
          out += buffer;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

bool is_journal_stream(const char* journal_stream, int fd) {
  if (!journal_stream || !*journal_stream) return false;
  uintmax_t device = 0, inode = 0;
  int consumed = 0;
  if (std::sscanf(journal_stream, "%" SCNuMAX ":%" SCNuMAX "%n", &device, &inode, &consumed) != 2 ||
      journal_stream[consumed] != '\0')
    return false;
  struct stat info {};
  if (fstat(fd, &info) != 0) return false;
  return static_cast<uintmax_t>(info.st_dev) == device && static_cast<uintmax_t>(info.st_ino) == inode;
}

std::string_view journal_prefix(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical:
      return "<2>";
    case spdlog::level::err:
      return "<3>";
    case spdlog::level::warn:
      return "<4>";
    case spdlog::level::info:
      return "<6>";
    default:
      return "<7>";
  }
}

void setup(const std::string& level, const std::string& format) {
  std::lock_guard lock(registry_mutex);
  to_journal = is_journal_stream(std::getenv("JOURNAL_STREAM"), STDERR_FILENO);
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
