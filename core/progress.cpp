#include "core/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>

#include "core/error.hpp"
#include "core/escape.hpp"

namespace outbox::progress {

std::string short_duration(double seconds) {
  char buffer[32];
  if (seconds < 1) {
    std::snprintf(buffer, sizeof buffer, "%dms", static_cast<int>(std::max(0.0, seconds) * 1000));
    return buffer;
  }
  long long whole = std::llround(seconds);
  if (whole < 60)
    std::snprintf(buffer, sizeof buffer, "%llds", whole);
  else if (whole < 3600)
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", whole / 60, whole % 60);
  else
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", whole / 3600, whole % 3600 / 60);
  return buffer;
}

std::optional<double> eta_seconds(long long done, std::optional<long long> total, double elapsed_seconds) {
  if (!total || done <= 0 || elapsed_seconds < 0.5) return std::nullopt;
  // An estimated total can be passed: then the end is near but not known.
  if (done >= *total) return std::nullopt;
  double rate = static_cast<double>(done) / elapsed_seconds;
  return static_cast<double>(*total - done) / rate;
}

namespace {

std::string rate_text(double rate) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, rate < 10 ? "%.1f" : "%.0f", rate);
  return buffer;
}

}  // namespace

std::string render(const Step& step, double elapsed_seconds) {
  std::string parts;
  auto add = [&parts](const std::string& part) {
    if (part.empty()) return;
    parts += (parts.empty() ? "" : ", ") + part;
  };
  add(step.detail);
  if (!step.unit.empty()) {
    std::string count = std::to_string(step.done);
    if (step.total) count += "/" + std::to_string(*step.total);
    count += " " + step.unit;
    if (step.total && *step.total > 0 && step.done <= *step.total)
      count += " (" + std::to_string(step.done * 100 / *step.total) + "%)";
    add(count);
    if (step.done > 0 && elapsed_seconds >= 0.5)
      add(rate_text(static_cast<double>(step.done) / elapsed_seconds) + " " + step.unit + "/s");
  }
  std::optional<double> eta = eta_seconds(step.done, step.total, elapsed_seconds);
  add(eta ? "ETA " + short_duration(*eta) : short_duration(elapsed_seconds) + " so far");
  return step.phase + ": " + parts;
}

std::string fit(const std::string& line, size_t width) {
  if (width == 0 || line.size() < width) return line;
  // Cut on a character boundary (not inside a UTF-8 sequence).
  size_t end = width - 1;
  while (end > 0 && (static_cast<unsigned char>(line[end]) & 0xC0) == 0x80) --end;
  return line.substr(0, end);
}

Mode parse_mode(const std::string& text, const std::string& option) {
  if (text == "auto") return Mode::automatic;
  if (text == "always") return Mode::always;
  if (text == "never") return Mode::never;
  throw usage_error(option + ": auto, always or never (got '" + escape_controls(text) + "')");
}

bool enabled(Mode mode, int fd) { return mode == Mode::always || (mode == Mode::automatic && ::isatty(fd) == 1); }

Reporter::Reporter(int fd, bool enabled) : fd_(fd), enabled_(enabled) {}

Reporter::~Reporter() { clear(); }

void Reporter::update(const Step& step) {
  if (!enabled_) return;
  Clock::time_point now = Clock::now();
  bool new_phase = step.phase != phase_;
  if (new_phase) {
    phase_ = step.phase;
    phase_start_ = now;
  } else if (drawn_ && now - last_draw_ < std::chrono::milliseconds(250)) {
    return;
  }
  last_draw_ = now;
  winsize size{};
  size_t width = ::ioctl(fd_, TIOCGWINSZ, &size) == 0 ? size.ws_col : 0;
  // Table names and keys come from the config and the databases: escaped before the terminal.
  std::string line = fit(escape_controls(render(step, std::chrono::duration<double>(now - phase_start_).count())), width);
  draw("\r\033[K" + line);
  drawn_ = true;
}

void Reporter::clear() {
  if (!enabled_ || !drawn_) return;
  draw("\r\033[K");
  drawn_ = false;
}

Callback Reporter::callback() {
  if (!enabled_) return {};
  return [this](const Step& step) { update(step); };
}

void Reporter::draw(const std::string& text) {
  // Progress is a courtesy: a write that fails (a closed terminal) is not an error of the run.
  size_t at = 0;
  while (at < text.size()) {
    ssize_t n = ::write(fd_, text.data() + at, text.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    at += static_cast<size_t>(n);
  }
}

}  // namespace outbox::progress
