#pragma once
// Versioned schema migrations of the primary, the replicas and the service databases. The SQL files
// under migrate/sql/ are embedded in the binary (migrate/embedded.hpp); this applies them and
// reports their state. No CLI.
//
// Each database records what it has in
//   schema_migrations(version int primary key, name text, checksum text, applied_at timestamptz)
// Each set (target) owns a range of versions: primary and replica 1..999, service 1001..1999. A
// run looks only at the versions of the set it applies, so one database can hold two sets (the
// parking primary is also the parking service: primary 1..3 and service 1001).
// A run holds a session advisory lock (kLockClass, kLockObject: the two-int key space, so it never
// collides with single-bigint advisory locks) while it checks and applies, and applies each
// migration in its own transaction together with its schema_migrations row. Two concurrent runs
// are therefore safe: the second waits and then finds nothing to do.
//
// Errors: a checksum mismatch, a database that has no table to record migrations in, or a database
// that is behind the binary (require_current) are Error(ExitCode::config) = 78: the deployment does
// not match the binary, and an operator must act. The daemons wait for a database that is behind
// (SchemaBehind) instead, since `outbox migrate` is the act that fixes it. A failing migration is the server's error with
// context, Error(ExitCode::software) = 70 unless the server is unreachable (69).
#include <functional>
#include <optional>
#include <pqxx/pqxx>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "migrate/embedded.hpp"

namespace outbox::migrate {

enum class Target { primary, replica, service };
std::string_view target_name(Target target);

// The versions a set may use; a file outside its set's range is a build mistake.
struct VersionRange {
  int first = 0;
  int last = 0;
  bool contains(int version) const { return version >= first && version <= last; }
};
VersionRange version_range(Target target);

// Advisory lock key of migration runs (of the embedded sets and of a service's own migrations): pg_advisory_lock(kLockClass,
// kLockObject).
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
// The first 12 hex digits of a checksum: how messages name one.
inline std::string short_sum(const std::string& checksum) { return checksum.substr(0, 12); }

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

// Reads schema_migrations (read-only: a database without it has everything pending), every set.
std::vector<Applied> read_applied(pqxx::connection& connection);
// The rows of `applied` whose versions belong to the target's set (the others are another set's).
std::vector<Applied> of_set(std::vector<Applied> applied, Target target);
// Compares what is applied with `known`; pure, for tests.
Status compare(const std::vector<Applied>& applied, const std::vector<Migration>& known, bool has_table = true);
// compare(of_set(read_applied(...), target), migrations(target)).
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

// The database lacks a migration of this binary, or has no outbox schema at all: `outbox migrate`
// fixes it. An Error(config) to the commands; replicate and consume wait for it instead, so that
// after an upgrade they go on by themselves once `outbox migrate` ran.
struct SchemaBehind : Error {
  explicit SchemaBehind(const std::string& message) : Error(ExitCode::config, message) {}
};

// For the daemons at start: throws SchemaBehind when the database lacks a migration of this binary
// ("replica main: schema is at version 1 but this outbox needs 2; run 'outbox migrate'"), and
// Error(config) when an applied checksum differs or a version is missing below an applied one
// (which `outbox migrate` refuses to mend). A database ahead of the binary is accepted: in a
// rolling upgrade (migrate, then restart one daemon at a time) the old binaries run on it, and the
// migrations only add.
void require_current(pqxx::connection& connection, Target target, std::string_view role);

// Holds the migration runs' session advisory lock (kLockClass, kLockObject) while it lives; released
// also when a migration failed.
class RunLock {
 public:
  explicit RunLock(pqxx::connection& connection);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  pqxx::connection& connection_;
};

// A server message on one line (libpq's span lines: "ERROR:  ...\nLINE 1: ..."), as an Error with
// `context`: unavailable (69) when the server is unreachable, software (70) otherwise; an Error
// keeps its code and gets the context.
Error server_error(const std::exception& error, const std::string& context);

}  // namespace outbox::migrate
