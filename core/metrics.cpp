#include "core/metrics.hpp"

#include <cmath>
#include <cstdio>

namespace outbox::metrics {
namespace {
// The text format spells the special values NaN, +Inf and -Inf (printf would write nan and inf).
std::string number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.17g", value);
  return buffer;
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

Histogram& Registry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds) {
  std::lock_guard lock(mutex_);
  Family& family = families_[name];
  family.type = "histogram";
  if (!help.empty()) family.help = help;
  if (!family.histogram) family.histogram = std::make_unique<Histogram>(std::move(bounds));
  return *family.histogram;
}

std::string Registry::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, family] : families_) {
    out += "# HELP " + name + " " + escape_help(family.help) + "\n# TYPE " + name + " " + family.type + "\n";
    for (const auto& [labels, counter] : family.counters)
      out += name + braces(labels) + " " + std::to_string(counter->value()) + "\n";
    for (const auto& [labels, gauge] : family.gauges) out += name + braces(labels) + " " + number(gauge->value()) + "\n";
    if (family.histogram) out += family.histogram->render(name, "");
  }
  return out;
}

}  // namespace outbox::metrics
