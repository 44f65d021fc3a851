// How a verify result reads (ops/verify.hpp): one line per difference, the summary, the JSON document.
#include <cstdio>

#include "core/escape.hpp"
#include "core/log.hpp"
#include "ops/verify.hpp"

namespace outbox::verify {
namespace {

std::string row_json(const Difference& difference, const Row& row) {
  std::string out = "{";
  for (size_t i = 0; i < difference.columns.size() && i < row.values.size(); ++i) {
    if (i) out += ", ";
    out += "\"" + log::json_escape(difference.columns[i]) + "\": " + row.values[i];
  }
  return out + "}";
}

std::string seconds_text(double seconds) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1fs", seconds);
  return buffer;
}

std::string decimal(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f", value);
  return buffer;
}

}  // namespace

std::string render_line(const Difference& difference, const std::string& replica_role) {
  std::string out =
      kind_name(difference.kind) + " " + difference.table + " " + difference.key_column + "=" + difference.key + ": primary ";
  out += difference.primary ? row_json(difference, *difference.primary) : "(none)";
  out += ", " + replica_role + " ";
  out += difference.replica ? row_json(difference, *difference.replica) : "(none)";
  // Keys and values come from the databases: one line, escaped.
  return escape_controls(out);
}

std::string render_summary(const Result& result) {
  std::string role = "replica " + result.replica;
  std::string tables;
  for (const TableResult& table : result.tables) {
    if (!tables.empty()) tables += "; ";
    tables += table.table + " " + std::to_string(table.primary_rows) + " rows on the primary, " +
              std::to_string(table.replica_rows) + " on the replica, " + std::to_string(table.chunks) + " chunk(s)";
    if (table.rechecked) tables += ", " + std::to_string(table.rechecked) + " rechecked";
  }
  std::string point;
  for (const auto& [table, position] : result.point.positions)
    point += (point.empty() ? "" : ", ") + table + " position " + (position ? std::to_string(*position) : "none");
  std::string at = " (consistent at " + point + ", waited " + seconds_text(result.point.waited_seconds) + ")";
  if (result.equal()) return escape_controls("verify: " + role + " equals the primary: " + tables + at);
  long long counts[3] = {0, 0, 0};
  for (const Difference& difference : result.differences) ++counts[static_cast<int>(difference.kind)];
  return escape_controls("verify: " + role + " differs from the primary in " + std::to_string(result.differences.size()) +
                         " row(s) (" + std::to_string(counts[0]) + " missing, " + std::to_string(counts[1]) + " extra, " +
                         std::to_string(counts[2]) + " different): " + tables + at);
}

std::string render_json(const Result& result) {
  auto string = [](const std::string& text) { return "\"" + log::json_escape(text) + "\""; };
  std::string out = "{\"replica\": " + string(result.replica) + ", \"equal\": " + (result.equal() ? "true" : "false");
  out += ", \"consistent_point\": {\"positions\": {";
  bool first = true;
  for (const auto& [table, position] : result.point.positions) {
    out += (first ? "" : ", ") + string(table) + ": " + (position ? std::to_string(*position) : "null");
    first = false;
  }
  out += "}, \"primary_time\": " + string(result.point.primary_time) +
         ", \"replica_applied\": " + string(result.point.replica_time) +
         ", \"waited_seconds\": " + decimal(result.point.waited_seconds) + "}";
  out += ", \"tables\": [";
  for (size_t i = 0; i < result.tables.size(); ++i) {
    const TableResult& table = result.tables[i];
    out += (i ? ", " : "") + std::string("{\"table\": ") + string(table.table) + ", \"key\": " + string(table.key) +
           ", \"columns\": [";
    for (size_t c = 0; c < table.columns.size(); ++c) out += (c ? ", " : "") + string(table.columns[c]);
    out += "], \"primary_rows\": " + std::to_string(table.primary_rows) +
           ", \"replica_rows\": " + std::to_string(table.replica_rows) + ", \"chunks\": " + std::to_string(table.chunks) +
           ", \"chunks_read_by_row\": " + std::to_string(table.chunks_read_by_row) +
           ", \"rechecked\": " + std::to_string(table.rechecked) + ", \"settled\": " + std::to_string(table.settled) + "}";
  }
  out += "], \"differences\": [";
  for (size_t i = 0; i < result.differences.size(); ++i) {
    const Difference& difference = result.differences[i];
    out += (i ? ", " : "") + std::string("{\"kind\": ") + string(kind_name(difference.kind)) +
           ", \"table\": " + string(difference.table) + ", \"key_column\": " + string(difference.key_column) +
           ", \"key\": " + string(difference.key) +
           ", \"primary\": " + (difference.primary ? row_json(difference, *difference.primary) : "null") +
           ", \"replica\": " + (difference.replica ? row_json(difference, *difference.replica) : "null") + "}";
  }
  return out + "]}";
}

}  // namespace outbox::verify
