#pragma once
// Versioned schema migrations of the primary and the replicas. The SQL files under migrate/sql/ are
// embedded in the binary (migrate/embedded.hpp); this applies them and reports their state. No CLI.
//
// Each database records what it has in
//   schema_migrations(version int primary key, name text, checksum text, applied_at timestamptz)
// A run holds a session advisory lock (kLockClass, kLockObject: the two-int key space, so it never
// collides with single-bigint advisory locks) while it checks and applies, and applies each
// migration in its own transaction together with its schema_migrations row. Two concurrent runs
// are therefore safe: the second waits and then finds nothing to do.
//
// Errors: a checksum mismatch, a database that has no table to record migrations in, or a database
// that is behind the binary (require_current) are Error(ExitCode::config) = 78: the deployment does
// not match the binary, and an operator must act. A failing migration is the server's error with
// context, Error(ExitCode::software) = 70 unless the server is unreachable (69).
#include <functional>
#include <optional>
#include <pqxx/pqxx>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "migrate/embedded.hpp"

namespace outbox::migrate {

enum class Target { primary, replica };
std::string_view target_name(Target target);

// Advisory lock key of migration runs: pg_advisory_lock(kLockClass, kLockObject).
inline constexpr int kLockClass = 0x6f757462;  // "outb"
inline constexpr int kLockObject = 1;

struct Migration {
  int version = 0;       // 1 for "0001_parking_and_outbox.sql"
  std::string name;      // "parking_and_outbox"
  std::string file;      // "0001_parking_and_outbox.sql"
  std::string_view sql;  // the embedded text
  std::string checksum;  // sha256 of sql, lowercase hex
};

// Lowercase hex SHA-256.
std::string sha256_hex(std::string_view data);

// The files of one target, parsed and sorted by version. Throws Error(software) for a file not
// named NNNN_name.sql or for two files with the same version (a build mistake, caught by a test).
std::vector<Migration> parse(std::span<const EmbeddedFile> files, Target target);
// parse(embedded_files(), target), computed once.
const std::vector<Migration>& migrations(Target target);
// Highest version the binary has for the target (0 if none).
int latest_version(Target target);

struct Applied {
  int version = 0;
  std::string name;
  std::string checksum;
  std::string applied_at;  // as PostgreSQL prints timestamptz
};

enum class State { applied, pending, mismatch, unknown };  // unknown: applied but not in this binary
struct Entry {
  int version = 0;
  std::string name;
  State state = State::pending;
  std::string applied_at;    // empty when pending
  std::string checksum;      // recorded in the database (empty when pending)
  std::string expected;      // of this binary's file (empty when unknown)
  std::string file() const;  // "0001_parking_and_outbox.sql"
};

struct Status {
  std::vector<Entry> entries;  // by version
  int current = 0;             // highest applied version (0: none)
  int latest = 0;              // latest_version(target)
  bool has_table = false;      // schema_migrations exists
  int pending() const;
  bool mismatch() const;
};

// Reads schema_migrations (read-only: a database without it has everything pending).
std::vector<Applied> read_applied(pqxx::connection& connection);
// Compares what is applied with `known`; pure, for tests.
Status compare(const std::vector<Applied>& applied, const std::vector<Migration>& known, bool has_table = true);
Status status(pqxx::connection& connection, Target target);

// The message of the first checksum mismatch, or nullopt: "replica main: migration
// 0001_parking_and_outbox.sql was applied with checksum 1a2b3c4d5e6f but this outbox has
// 9f8e7d6c5b4a; an applied migration must never change (restore the file, or repair the database)".
std::optional<std::string> checksum_problem(const Status& status, std::string_view role);
// What `outbox migrate` refuses beyond a checksum mismatch, or nullopt: a version applied that this
// outbox does not know (the database was migrated by a newer one), or a version missing below an
// applied one (it would run out of order).
std::optional<std::string> history_problem(const Status& status, std::string_view role);

struct ApplyOptions {
  bool dry_run = false;  // nothing is written, no lock is taken; on_migration is called for pending ones
  // Called for each migration that is (or, in a dry run, would be) applied, after it committed.
  std::function<void(const Migration&)> on_migration;
};

struct ApplyResult {
  int before = 0;            // version before the run
  int after = 0;             // version after it (== before in a dry run)
  std::vector<int> applied;  // versions applied (or that would be, in a dry run)
};

// Brings the database up to latest_version(target). `role` names it in errors ("primary",
// "replica main"). Throws a config Error for a checksum mismatch, before applying anything.
ApplyResult apply(pqxx::connection& connection, Target target, std::string_view role, const ApplyOptions& options = {});

// For the daemons at start: throws Error(config) when the database lacks a migration of this
// binary ("replica main: schema is at version 1 but this outbox needs 2; run 'outbox migrate'") or
// when an applied checksum differs. A database ahead of the binary is accepted.
void require_current(pqxx::connection& connection, Target target, std::string_view role);

}  // namespace outbox::migrate
