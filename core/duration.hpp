#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace outbox {

using Duration = std::chrono::milliseconds;

// Parses "250ms", "10s", "2m", "24h", "1d", or a bare number of seconds ("30", "0.5").
std::optional<Duration> parse_duration(std::string_view text);
// Formats with the largest unit that divides the value exactly: 1500ms, 10s, 2m, 24h.
std::string format_duration(Duration duration);
// Seconds with one decimal for humans and Nagios perfdata: "0.4s", "125.0s".
std::string format_seconds(double seconds);

}  // namespace outbox
