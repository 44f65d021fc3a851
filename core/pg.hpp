#pragma once
// PostgreSQL connections (libpqxx) with errors that name the database and never its password.
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <string_view>

namespace outbox::pg {

// Opens a connection; `role` names it in errors ("primary", "replica main").
// Throws Error(unavailable) "primary postgresql://outbox:****@host/db: <reason>".
std::unique_ptr<pqxx::connection> connect(const std::string& url, std::string_view role,
                                          std::string_view application = "outbox");

// "public.outbox" -> "\"public\".\"outbox\"". Each part is quoted as PostgreSQL's quote_ident
// would, so names that come from config can never inject SQL.
std::string quote_qualified(std::string_view name);
std::string quote_identifier(std::string_view name);
// Checks a config table name: one or two non-empty parts separated by '.'.
bool valid_qualified_name(std::string_view name);
// Formats a list as a PostgreSQL array literal for a bound parameter ("{1,2,3}", strings quoted).
std::string array_literal(const std::vector<std::string>& values);

// True for errors that mean the server went away (connection lost, server shutting down).
bool is_connection_error(const std::exception& error);

}  // namespace outbox::pg
