#pragma once
// PostgreSQL connections (libpqxx) with errors that name the database and never its password.
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace outbox::pg {

// Opens a connection; `role` names it in errors ("primary", "replica main").
// Throws Error(unavailable) "primary postgresql://outbox:****@host/db: <reason>".
std::unique_ptr<pqxx::connection> connect(const std::string& url, std::string_view role, std::string_view application = "outbox");

// "public.outbox" -> "\"public\".\"outbox\"". Each part is quoted as PostgreSQL's quote_ident
// would, so names that come from config can never inject SQL.
std::string quote_qualified(std::string_view name);
std::string quote_identifier(std::string_view name);
// 'it''s': a string literal for SQL text that cannot take a bound parameter (a prepared statement's
// constant).
std::string quote_literal(std::string_view text);
// Checks a config table name: one or two non-empty parts separated by '.'.
bool valid_qualified_name(std::string_view name);
// Formats a list as a PostgreSQL array literal for a bound parameter ("{1,2,3}", strings quoted).
std::string array_literal(const std::vector<std::string>& values);

// SQL that renders a timestamp `column` as ISO 8601 UTC text on the server ("2026-12-02T01:55:42.123Z"),
// with milliseconds or, with `microseconds`, six digits: every report shows times the same way.
std::string iso_utc(const std::string& column, bool microseconds = false);

// A nullable field as an optional.
template <typename T>
std::optional<T> optional_field(const pqxx::field& field) {
  if (field.is_null()) return std::nullopt;
  return field.as<T>();
}

// Reads a row's fields, in order, into the given variables: read_fields(row, slot.uuid, slot.version).
// A std::optional takes NULL as nullopt; any other NULL throws, as pqxx::field::as does.
template <typename T>
void read_field(const pqxx::field& field, T& out) {
  out = field.as<T>();
}
template <typename T>
void read_field(const pqxx::field& field, std::optional<T>& out) {
  out = optional_field<T>(field);
}
template <typename... Fields>
void read_fields(const pqxx::row& row, Fields&... fields) {
  pqxx::row::size_type i = 0;
  (read_field(row[i++], fields), ...);
}

// The name under which exec_cached prepares `sql` on a connection: "outbox_" and a hash of the text.
std::string cached_statement_name(const std::string& sql);

// Runs `sql` as a statement prepared once per connection, for statements that a connection runs
// over and over (an application's event inserts). At 1,000 writes/s, parsing and planning the
// parking example's statements on every call cost the primary a fifth to a third of each write's
// CPU (bench/README). libpqxx keeps the definition per connection and prepares it on the server at
// its first use; defining it again with the same text costs a lookup.
// Named statements need a session: behind a transaction-pooling pgbouncer older than 1.21 (without
// max_prepared_statements), use tx.exec_params instead.
template <typename... Args>
pqxx::result exec_cached(pqxx::transaction_base& tx, const std::string& sql, Args&&... args) {
  std::string name = cached_statement_name(sql);
  tx.conn().prepare(name, sql);
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

// True for errors that mean the server went away (connection lost, server shutting down).
bool is_connection_error(const std::exception& error);

// The first line of a libpq/libpqxx error, without its "ERROR:  " prefix.
std::string first_error_line(const std::string& text);

// Why reading a database failed, on one line that names it (`role`: "primary", "replica main"),
// with a hint when its schema is missing: "replica main: schema not migrated (run 'outbox
// migrate'): ...". An Error of our own already names the database: its first line as is.
std::string failure_line(const std::exception& error, const std::string& role);

// Runs `body`; a lost connection becomes Error(unavailable) and any other server error
// Error(software), both prefixed with `role` ("replica main"). Errors of our own pass through.
template <typename Body>
auto with_context(const std::string& role, Body body) {
  try {
    return body();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    if (is_connection_error(error) || dynamic_cast<const pqxx::in_doubt_error*>(&error))
      throw unavailable_error(role + ": connection lost: " + first_error_line(error.what()));
    throw Error(ExitCode::software, role + ": " + first_error_line(error.what()));
  }
}

}  // namespace outbox::pg
