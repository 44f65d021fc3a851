#include "core/pg.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "core/error.hpp"
#include "core/url.hpp"

namespace outbox::pg {
namespace {

std::string trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  // libpq sometimes reports one reason per line; keep the whole reason on one line. With
  // sslmode=prefer it tries twice (TLS, then plain) and reports the same failure twice: keep one.
  std::vector<std::string> lines;
  for (size_t at = 0; at <= text.size();) {
    size_t end = std::min(text.find('\n', at), text.size());
    std::string line = text.substr(at, end - at);
    if (std::find(lines.begin(), lines.end(), line) == lines.end()) lines.push_back(line);
    at = end + 1;
  }
  std::string out;
  for (const std::string& line : lines) out += (out.empty() ? "" : " ") + line;
  return out;
}

std::string with_defaults(const std::string& url, std::string_view application) {
  std::string out = url;
  char separator = url.find('?') == std::string::npos ? '?' : '&';
  auto add = [&](std::string_view key, const std::string& value) {
    if (url.find(std::string(key) + "=") != std::string::npos) return;
    out += separator + std::string(key) + "=" + value;
    separator = '&';
  };
  add("connect_timeout", "5");
  add("application_name", std::string(application));
  // TCP keepalives let both sides notice a dead peer (a relay whose host vanished loses its locks).
  add("keepalives_idle", "10");
  add("keepalives_interval", "5");
  add("keepalives_count", "3");
  return out;
}

}  // namespace

std::unique_ptr<pqxx::connection> connect(const std::string& url, std::string_view role, std::string_view application) {
  try {
    auto connection = std::make_unique<pqxx::connection>(with_defaults(url, application));
    // libpqxx 6 would silently reconnect a broken connection, losing session state such as the
    // relay's advisory locks and LISTEN; callers must see the break and recover on purpose.
    connection->inhibit_reactivation(true);
    // The URL's keepalives tune only this side's socket. The server's defaults (2 hours idle) keep
    // the session of a vanished host, and so its advisory locks, for hours: tune that side too.
    try {
      pqxx::nontransaction(*connection)
          .exec(
              "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3; "
              "SET tcp_user_timeout = 30000");
    } catch (const pqxx::sql_error&) {
      // An older server or a pooler that refuses them: the client's keepalives still apply.
    }
    return connection;
  } catch (const std::exception& error) {
    throw unavailable_error(std::string(role) + " " + mask_url(url) + ": " + mask_url(scrub_password(trim(error.what()), url)));
  }
}

namespace {

// Encloses text in `quote`, doubling each one inside: PostgreSQL's quoting of identifiers and of
// string literals (with standard_conforming_strings, the default since 9.1).
std::string enclose(std::string_view text, char quote) {
  std::string out(1, quote);
  for (char c : text) {
    if (c == quote) out += quote;
    out += c;
  }
  return out + quote;
}

}  // namespace

std::string quote_identifier(std::string_view name) { return enclose(name, '"'); }

std::string quote_literal(std::string_view text) { return enclose(text, '\''); }

bool valid_qualified_name(std::string_view name) {
  size_t dot = name.find('.');
  if (name.empty() || name.find('\0') != std::string_view::npos) return false;
  if (dot == std::string_view::npos) return true;
  return dot > 0 && dot + 1 < name.size() && name.find('.', dot + 1) == std::string_view::npos;
}

std::string quote_qualified(std::string_view name) {
  size_t dot = name.find('.');
  if (dot == std::string_view::npos) return quote_identifier(name);
  return quote_identifier(name.substr(0, dot)) + "." + quote_identifier(name.substr(dot + 1));
}

std::string cached_statement_name(const std::string& sql) {
  // Two texts of one hash would be an "inconsistent redefinition" in libpqxx, not a wrong statement.
  char name[32];
  std::snprintf(name, sizeof name, "outbox_%016zx", std::hash<std::string>{}(sql));
  return name;
}

std::string array_literal(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

std::string first_error_line(const std::string& text) {
  std::string line = first_line(text);
  if (line.rfind("ERROR:  ", 0) == 0) line = line.substr(8);
  return line;
}

std::string failure_line(const std::exception& error, const std::string& role) {
  if (dynamic_cast<const pqxx::undefined_table*>(&error))
    return role + ": schema not migrated (run 'outbox migrate'): " + first_line(error.what());
  std::string reason = first_line(error.what());
  if (dynamic_cast<const Error*>(&error)) return reason;
  return role + ": " + reason;
}

bool is_connection_error(const std::exception& error) {
  if (dynamic_cast<const pqxx::broken_connection*>(&error)) return true;
  if (auto* sql = dynamic_cast<const pqxx::sql_error*>(&error)) {
    const std::string& state = sql->sqlstate();
    // 08: connection exception; 57P01..03: admin shutdown, crash shutdown, cannot connect now.
    return state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03";
  }
  return false;
}

std::string iso_utc(const std::string& column, bool microseconds) {
  return "to_char(" + column + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS." + (microseconds ? "US" : "MS") + "\"Z\"')";
}

}  // namespace outbox::pg
