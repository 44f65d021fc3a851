#include "core/duration.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace outbox {

std::optional<Duration> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  size_t unit_start = 0;
  while (unit_start < text.size() && (std::isdigit(static_cast<unsigned char>(text[unit_start])) || text[unit_start] == '.'))
    ++unit_start;
  if (unit_start == 0) return std::nullopt;
  std::string number(text.substr(0, unit_start));
  char* end = nullptr;
  double value = std::strtod(number.c_str(), &end);
  if (end != number.c_str() + number.size() || !std::isfinite(value)) return std::nullopt;
  std::string_view unit = text.substr(unit_start);
  double ms_per_unit;
  if (unit.empty() || unit == "s")
    ms_per_unit = 1000;
  else if (unit == "ms")
    ms_per_unit = 1;
  else if (unit == "m" || unit == "min")
    ms_per_unit = 60'000;
  else if (unit == "h")
    ms_per_unit = 3'600'000;
  else if (unit == "d")
    ms_per_unit = 86'400'000;
  else
    return std::nullopt;
  double ms = value * ms_per_unit;
  if (ms > 1e15) return std::nullopt;
  return Duration(static_cast<long long>(std::llround(ms)));
}

std::string format_duration(Duration duration) {
  long long ms = duration.count();
  if (ms == 0) return "0s";
  if (ms % 86'400'000 == 0) return std::to_string(ms / 86'400'000) + "d";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string format_seconds(double seconds) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.1fs", seconds);
  return buffer;
}

}  // namespace outbox
