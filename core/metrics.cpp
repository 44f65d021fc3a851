#include "core/metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace outbox::metrics {
namespace {
// The text format spells the special values NaN, +Inf and -Inf (printf would write nan and inf).
std::string number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // The shortest text that reads back as the same double: le="0.1", not le="0.10000000000000001".
  char buffer[64];
  // Whole numbers (counts, bytes) in full: 1000000, not 1e+06.
  bool whole = value == std::trunc(value) && std::fabs(value) < 1e15;
  auto written = whole ? std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::fixed)
                       : std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, written.ptr);
}
std::string braces(const std::string& labels) { return labels.empty() ? "" : "{" + labels + "}"; }

std::string escape(std::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && quote)
      out += "\\\"";
    else
      out += c;
  }
  return out;
}
}  // namespace

std::string escape_label_value(std::string_view value) { return escape(value, true); }
std::string escape_help(std::string_view help) { return escape(help, false); }

std::string render_labels(const Labels& labels) {
  std::string out;
  for (const auto& [name, value] : labels) {
    if (!out.empty()) out += ',';
    out += name + "=\"" + escape_label_value(value) + "\"";
  }
  return out;
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size())) {
  for (size_t i = 0; i < bounds_.size(); ++i) buckets_[i] = 0;
}

void Histogram::observe(double value) {
  for (size_t i = 0; i < bounds_.size(); ++i)
    if (value <= bounds_[i]) buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + value, std::memory_order_relaxed)) {
  }
}

std::string Histogram::render(const std::string& name, const std::string& labels) const {
  std::string out;
  std::string prefix = labels.empty() ? "" : labels + ",";
  for (size_t i = 0; i < bounds_.size(); ++i)
    out += name + "_bucket{" + prefix + "le=\"" + number(bounds_[i]) + "\"} " + std::to_string(buckets_[i].load()) + "\n";
  out += name + "_bucket{" + prefix + "le=\"+Inf\"} " + std::to_string(count_.load()) + "\n";
  out += name + "_sum" + braces(labels) + " " + number(sum_.load()) + "\n";
  out += name + "_count" + braces(labels) + " " + std::to_string(count_.load()) + "\n";
  return out;
}

// The metric of `labels` in its slots, made on first use.
template <typename Metric>
Metric& Registry::labelled(std::map<std::string, std::unique_ptr<Metric>> Family::*slots, const std::string& name,
                           const std::string& type, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  Family& family = families_[name];
  family.type = type;
  if (!help.empty()) family.help = help;
  auto& slot = (family.*slots)[render_labels(labels)];
  if (!slot) slot = std::make_unique<Metric>();
  return *slot;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  return labelled(&Family::counters, name, "counter", help, labels);
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  return labelled(&Family::gauges, name, "gauge", help, labels);
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                               const Labels& labels) {
  std::lock_guard lock(mutex_);
  Family& family = families_[name];
  family.type = "histogram";
  if (!help.empty()) family.help = help;
  if (family.bounds.empty()) family.bounds = std::move(bounds);
  auto& slot = family.histograms[render_labels(labels)];
  if (!slot) slot = std::make_unique<Histogram>(family.bounds);
  return *slot;
}

std::string Registry::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, family] : families_) {
    out += "# HELP " + name + " " + escape_help(family.help) + "\n# TYPE " + name + " " + family.type + "\n";
    for (const auto& [labels, counter] : family.counters)
      out += name + braces(labels) + " " + std::to_string(counter->value()) + "\n";
    for (const auto& [labels, gauge] : family.gauges)
      if (gauge->known()) out += name + braces(labels) + " " + number(gauge->value()) + "\n";
    for (const auto& [labels, histogram] : family.histograms) out += histogram->render(name, labels);
  }
  return out;
}

std::optional<ProcessStat> parse_process_stat(std::string_view stat, long ticks_per_second, long page_size) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the fields are counted
  // from the last ')'. After it come field 3 (state) onwards; proc(5) numbers them from 1.
  size_t close = stat.rfind(')');
  if (close == std::string_view::npos || ticks_per_second <= 0 || page_size <= 0) return std::nullopt;
  std::istringstream fields{std::string(stat.substr(close + 1))};
  std::vector<std::string> values;
  for (std::string field; fields >> field;) values.push_back(field);
  // values[0] is field 3; field n is values[n - 3].
  auto field = [&values](size_t n) -> std::optional<double> {
    if (n < 3 || n - 3 >= values.size()) return std::nullopt;
    try {
      return std::stod(values[n - 3]);
    } catch (const std::exception&) {
      return std::nullopt;
    }
  };
  auto utime = field(14), stime = field(15), starttime = field(22), vsize = field(23), rss = field(24);
  if (!utime || !stime || !starttime || !vsize || !rss) return std::nullopt;
  double ticks = static_cast<double>(ticks_per_second);
  return ProcessStat{.cpu_seconds = (*utime + *stime) / ticks,
                     .start_after_boot = *starttime / ticks,
                     .virtual_bytes = *vsize,
                     .resident_bytes = *rss * static_cast<double>(page_size)};
}

namespace {
std::string read_whole(const char* path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The boot time in seconds since the epoch (the btime line of /proc/stat).
std::optional<double> boot_time() {
  std::istringstream lines(read_whole("/proc/stat"));
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("btime ", 0) == 0) try {
        return std::stod(line.substr(6));
      } catch (const std::exception&) {
        return std::nullopt;
      }
  return std::nullopt;
}

std::string process_family(const std::string& name, const char* type, const char* help, double value) {
  return "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + number(value) + "\n";
}
}  // namespace

std::string render_process_metrics() {
  std::string out;
  if (auto stat = parse_process_stat(read_whole("/proc/self/stat"), sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE))) {
    out += process_family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
                          stat->cpu_seconds);
    out += process_family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", stat->resident_bytes);
    out += process_family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", stat->virtual_bytes);
    if (auto boot = boot_time())
      out += process_family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
                            *boot + stat->start_after_boot);
  }
  std::error_code error;
  std::filesystem::directory_iterator fds("/proc/self/fd", error);
  if (!error) {
    // The iterator's own descriptor is among them, as in the other client libraries.
    double open = static_cast<double>(std::distance(fds, std::filesystem::directory_iterator()));
    out += process_family("process_open_fds", "gauge", "Number of open file descriptors.", open);
  }
  if (rlimit limit{}; getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    out += process_family("process_max_fds", "gauge", "Maximum number of open file descriptors.",
                          static_cast<double>(limit.rlim_cur));
  return out;
}

}  // namespace outbox::metrics
