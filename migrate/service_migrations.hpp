#pragma once
// A service's own migrations (services.NAME.migrations): a directory of *.sql files, its schema and
// its handler functions, that `outbox migrate` applies after the embedded `service` set, in name
// order, each once, each in its own transaction together with its row in
//   outbox_service_migrations(file text primary key, checksum text, applied_at timestamptz)
// (made by migrate/sql/service/1001). Unlike the embedded sets, the files are read at run time.
//
// Errors: a missing or unreadable directory, and an applied file whose text changed since, are
// Error(ExitCode::config) = 78 naming the file: the deployment does not match the database and an
// operator must act. A failing file is the server's error with context (70, or 69 unreachable); it
// is rolled back, the files before it stay applied.
#include <functional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::migrate {

struct OwnMigration {
  std::string file;      // "0001_booking.sql" (the name in the directory)
  std::string sql;       // its text
  std::string checksum;  // sha256_hex(sql)
};

// The *.sql regular files of `dir` sorted by name (byte order). `role` ("service booking") names the
// service in errors. Throws Error(config) when the directory is missing or a file cannot be read.
std::vector<OwnMigration> read_own_migrations(const std::string& dir, std::string_view role);

enum class OwnState { applied, pending, changed };
struct OwnEntry {
  const OwnMigration* migration = nullptr;
  OwnState state = OwnState::pending;
  std::string applied_at;  // empty when pending
};

// Reads outbox_service_migrations (read-only; a database without it has every file pending) and
// compares each file with it. Files recorded but no longer in the directory are not listed: they
// were applied, and removing a file does not undo it.
std::vector<OwnEntry> own_status(pqxx::connection& connection, const std::vector<OwnMigration>& files);

struct OwnApplyOptions {
  bool dry_run = false;  // nothing is written; on_file is called for the pending files
  // Called for each file that is (or, in a dry run, would be) applied, after it committed.
  std::function<void(const OwnMigration&)> on_file;
};

// Applies the pending files under the migration runs' advisory lock. Throws Error(config) for a
// changed file ("service booking: migration 0001_booking.sql in /srv/booking/sql was applied with
// checksum ... but the file now has ...") before applying anything. Returns how many were applied
// (or would be).
int apply_own(pqxx::connection& connection, const std::vector<OwnMigration>& files, std::string_view role,
              const OwnApplyOptions& options = {});

}  // namespace outbox::migrate
