#pragma once
// Prometheus metrics: counters, gauges and histograms, rendered in the text exposition format
// (version 0.0.4: HELP and TYPE lines, escaped label values, histograms as _bucket{le} with +Inf,
// _sum and _count). Values are atomics: the daemon's loop updates them while the HTTP thread
// renders them.
//
// Why not prometheus-cpp (Debian's libprometheus-cpp-dev): its pull component serves with its own
// civetweb server, a second HTTP server beside the libmicrohttpd one that already serves /metrics
// and /healthz with bounded connections and request deadlines (core/metrics_server.hpp); its core
// alone would replace these ~200 lines with a dependency, and it has no process metrics (Linux
// /proc) either, which are written here anyway. The format is checked by real parsers in the tests
// (prometheus_client and promtool check metrics, tests/lint/metrics-lint).
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::metrics {

// The labels of one sample, in order: {{"replica", "main"}, {"reason", "stale"}}. A value may hold
// any text, such as a table name from the config: rendering escapes it.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A label value or HELP text escaped as the text exposition format requires: backslash and newline
// (and, in label values, the double quote) as \\, \n and \". Unescaped, one such character in a
// table name broke the whole scrape.
std::string escape_label_value(std::string_view value);
std::string escape_help(std::string_view help);
// name1="value1",name2="value2" (without braces), each value escaped.
std::string render_labels(const Labels& labels);

class Counter {
 public:
  void add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void set(double value) {
    value_.store(value, std::memory_order_relaxed);
    known_.store(true, std::memory_order_relaxed);
  }
  // The value is unknown now: the series is left out of the exposition until the next set(), as
  // Prometheus expects (a sentinel such as -1 would be averaged and alerted on as a value).
  void clear() { known_.store(false, std::memory_order_relaxed); }
  bool known() const { return known_.load(std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
  std::atomic<bool> known_{true};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  std::string render(const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

class Registry {
 public:
  // Returns the metric with this name and label set, creating it once. An empty `help` keeps the
  // text an earlier call gave (later lookups pass "").
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  // The first lookup of the name gives the bounds of every label set; later ones may pass {}.
  Histogram& histogram(const std::string& name, const std::string& help, std::vector<double> bounds, const Labels& labels = {});
  std::string render() const;

 private:
  struct Family {
    std::string type, help;
    // Keyed by the rendered (escaped) labels.
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
    std::vector<double> bounds;  // of the family's histograms: the first lookup gives them
  };
  template <typename Metric>
  Metric& labelled(std::map<std::string, std::unique_ptr<Metric>> Family::*slots, const std::string& name,
                   const std::string& type, const std::string& help, const Labels& labels);
  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
};

// The standard process metrics of the Prometheus client libraries, read from /proc/self at each
// scrape: process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_start_time_seconds, process_open_fds and process_max_fds. A value that cannot be read is
// left out, never guessed.
std::string render_process_metrics();

// The parts of /proc/self/stat that process metrics use; nullopt when the text does not parse.
struct ProcessStat {
  double cpu_seconds = 0;       // utime + stime
  double start_after_boot = 0;  // seconds after boot
  double virtual_bytes = 0;     // vsize
  double resident_bytes = 0;    // rss pages * page size
};
std::optional<ProcessStat> parse_process_stat(std::string_view stat, long ticks_per_second, long page_size);

}  // namespace outbox::metrics
