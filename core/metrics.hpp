#pragma once
// Prometheus metrics: counters, gauges and histograms, rendered in the text exposition format.
// Values are atomics: the daemon's loop updates them while the HTTP thread renders them.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
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
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
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
  Histogram& histogram(const std::string& name, const std::string& help, std::vector<double> bounds);
  std::string render() const;

 private:
  struct Family {
    std::string type, help;
    // Keyed by the rendered (escaped) labels.
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::unique_ptr<Histogram> histogram;
  };
  template <typename Metric>
  Metric& labelled(std::map<std::string, std::unique_ptr<Metric>> Family::*slots, const std::string& name,
                   const std::string& type, const std::string& help, const Labels& labels);
  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
};

}  // namespace outbox::metrics
