#include "migrate/runner.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <memory>

#include "core/error.hpp"
#include "core/pg.hpp"

namespace outbox::migrate {
namespace {

// A server message on one line: libpq's messages span lines ("ERROR:  ...\nLINE 1: ...").
std::string one_line(std::string text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// True when schema_migrations exists. One that another tool made (Rails, golang-migrate and dbmate
// use the name too) is refused rather than written to.
bool has_migrations_table(pqxx::transaction_base& tx) {
  pqxx::row row = tx.exec1(
      "SELECT to_regclass('schema_migrations') IS NOT NULL, (SELECT count(*) FROM pg_attribute a "
      "WHERE a.attrelid = to_regclass('schema_migrations') AND NOT a.attisdropped AND (a.attname, a.atttypid) IN "
      "(('version', 'integer'::regtype), ('name', 'text'::regtype), ('checksum', 'text'::regtype), "
      "('applied_at', 'timestamptz'::regtype)))");
  if (!row[0].as<bool>()) return false;
  if (row[1].as<int>() != 4)
    throw config_error(
        "table schema_migrations is not outbox's (it lacks version integer, name, checksum and applied_at; another "
        "migration tool's?): give outbox its own schema with search_path in the URL (e.g. ?options=-csearch_path%3Doutbox) "
        "or its own database");
  return true;
}

std::vector<Applied> read_applied_in(pqxx::transaction_base& tx) {
  std::vector<Applied> applied;
  if (!has_migrations_table(tx)) return applied;
  for (const auto& row : tx.exec("SELECT version, coalesce(name, ''), coalesce(checksum, ''), "
                                 "coalesce(applied_at::text, '') FROM schema_migrations ORDER BY version"))
    applied.push_back({row[0].as<int>(), row[1].as<std::string>(), row[2].as<std::string>(), row[3].as<std::string>()});
  return applied;
}

}  // namespace

Error server_error(const std::exception& error, const std::string& context) {
  ExitCode code = pg::is_connection_error(error) ? ExitCode::unavailable : ExitCode::software;
  if (auto* known = dynamic_cast<const Error*>(&error)) return known->with_context(context);
  return Error(code, context + ": " + one_line(error.what()));
}

RunLock::RunLock(pqxx::connection& connection) : connection_(connection) {
  pqxx::nontransaction tx(connection_);
  tx.exec_params("SELECT pg_advisory_lock($1, $2)", kLockClass, kLockObject);
}

RunLock::~RunLock() {
  try {
    pqxx::nontransaction tx(connection_);
    tx.exec_params("SELECT pg_advisory_unlock($1, $2)", kLockClass, kLockObject);
  } catch (...) {
    // The connection is gone; the server released the lock with the session.
  }
}

std::string_view target_name(Target target) {
  switch (target) {
    case Target::primary:
      return "primary";
    case Target::replica:
      return "replica";
    case Target::service:
      return "service";
  }
  return "?";
}

VersionRange version_range(Target target) { return target == Target::service ? VersionRange{1001, 1999} : VersionRange{1, 999}; }

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr) != 1)
    throw Error(ExitCode::software, "sha256: OpenSSL EVP_Digest failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 0xf];
  }
  return out;
}

std::string Entry::file() const {
  char number[16];
  std::snprintf(number, sizeof number, "%04d", version);
  return std::string(number) + "_" + name + ".sql";
}

std::vector<Migration> parse(std::span<const EmbeddedFile> files, Target target) {
  std::vector<Migration> out;
  for (const EmbeddedFile& file : files) {
    if (file.target != target_name(target)) continue;
    std::string_view name = file.name;
    size_t underscore = name.find('_');
    bool ok = underscore != std::string_view::npos && underscore > 0 && name.size() > underscore + 5 &&
              name.substr(name.size() - 4) == ".sql" &&
              std::all_of(name.begin(), name.begin() + underscore, [](char c) { return c >= '0' && c <= '9'; });
    int version = 0;
    if (ok) {
      auto [end, error] = std::from_chars(name.data(), name.data() + underscore, version);
      ok = error == std::errc() && end == name.data() + underscore && version > 0;
    }
    if (!ok)
      throw Error(ExitCode::software, "migration " + std::string(target_name(target)) + "/" + std::string(name) +
                                          ": not named NNNN_name.sql with NNNN > 0");
    if (!version_range(target).contains(version))
      throw Error(ExitCode::software, "migration " + std::string(target_name(target)) + "/" + std::string(name) +
                                          ": version outside the set's range " + std::to_string(version_range(target).first) +
                                          ".." + std::to_string(version_range(target).last));
    out.push_back({version, std::string(name.substr(underscore + 1, name.size() - underscore - 5)), std::string(name), file.sql,
                   sha256_hex(file.sql)});
  }
  std::sort(out.begin(), out.end(), [](const Migration& a, const Migration& b) { return a.version < b.version; });
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i].version == out[i - 1].version)
      throw Error(ExitCode::software, "migrations " + std::string(target_name(target)) + "/" + out[i - 1].file + " and " +
                                          out[i].file + " have the same version");
  return out;
}

const std::vector<Migration>& migrations(Target target) {
  static const std::vector<Migration> primary = parse(embedded_files(), Target::primary);
  static const std::vector<Migration> replica = parse(embedded_files(), Target::replica);
  static const std::vector<Migration> service = parse(embedded_files(), Target::service);
  return target == Target::primary ? primary : target == Target::replica ? replica : service;
}

int latest_version(Target target) {
  const auto& all = migrations(target);
  return all.empty() ? 0 : all.back().version;
}

int Status::pending() const {
  return static_cast<int>(
      std::count_if(entries.begin(), entries.end(), [](const Entry& e) { return e.state == State::pending; }));
}

bool Status::mismatch() const {
  return std::any_of(entries.begin(), entries.end(), [](const Entry& e) { return e.state == State::mismatch; });
}

std::vector<Applied> read_applied(pqxx::connection& connection) {
  pqxx::read_transaction tx(connection);
  return read_applied_in(tx);
}

std::vector<Applied> of_set(std::vector<Applied> applied, Target target) {
  std::erase_if(applied, [range = version_range(target)](const Applied& row) { return !range.contains(row.version); });
  return applied;
}

Status compare(const std::vector<Applied>& applied, const std::vector<Migration>& known, bool has_table) {
  Status status;
  status.has_table = has_table;
  std::map<int, const Applied*> by_version;
  for (const Applied& row : applied) {
    by_version[row.version] = &row;
    status.current = std::max(status.current, row.version);
  }
  for (const Migration& migration : known) {
    Entry entry{migration.version, migration.name, State::pending, "", "", migration.checksum};
    if (auto found = by_version.find(migration.version); found != by_version.end()) {
      entry.state = found->second->checksum == migration.checksum ? State::applied : State::mismatch;
      entry.applied_at = found->second->applied_at;
      entry.checksum = found->second->checksum;
      by_version.erase(found);
    }
    status.entries.push_back(entry);
    status.latest = std::max(status.latest, migration.version);
  }
  for (const auto& [version, row] : by_version)
    status.entries.push_back({version, row->name, State::unknown, row->applied_at, row->checksum, ""});
  std::sort(status.entries.begin(), status.entries.end(), [](const Entry& a, const Entry& b) { return a.version < b.version; });
  return status;
}

Status status(pqxx::connection& connection, Target target) {
  pqxx::read_transaction tx(connection);
  bool has_table = has_migrations_table(tx);
  return compare(of_set(read_applied_in(tx), target), migrations(target), has_table);
}

std::optional<std::string> checksum_problem(const Status& status, std::string_view role) {
  for (const Entry& entry : status.entries)
    if (entry.state == State::mismatch)
      return std::string(role) + ": migration " + entry.file() + " was applied with checksum " + short_sum(entry.checksum) +
             " but this outbox has " + short_sum(entry.expected) +
             "; an applied migration must never change (restore the file, or repair schema_migrations by hand)";
  return std::nullopt;
}

std::optional<std::string> history_problem(const Status& status, std::string_view role) {
  if (auto problem = checksum_problem(status, role)) return problem;
  for (const Entry& entry : status.entries)
    if (entry.state == State::unknown)
      return std::string(role) + ": migration " + entry.file() +
             " is applied but unknown to this outbox (which knows up to version " + std::to_string(status.latest) +
             "): the database was migrated by a newer outbox; run that one";
  for (const Entry& entry : status.entries)
    if (entry.state == State::pending && entry.version < status.current)
      return std::string(role) + ": migration " + entry.file() + " is not applied but version " + std::to_string(status.current) +
             " is; refusing to apply it out of order (restore its schema_migrations row if it was applied, or apply it by "
             "hand)";
  return std::nullopt;
}

ApplyResult apply(pqxx::connection& connection, Target target, std::string_view role, const ApplyOptions& options) {
  const std::vector<Migration>& known = migrations(target);
  ApplyResult result;
  auto run = [&](const Status& state, bool write) {
    if (auto problem = history_problem(state, role)) throw config_error(*problem);
    result.before = result.after = state.current;
    for (const Migration& migration : known) {
      auto entry = std::find_if(state.entries.begin(), state.entries.end(),
                                [&](const Entry& e) { return e.version == migration.version; });
      if (entry == state.entries.end() || entry->state != State::pending) continue;
      if (write) {
        try {
          pqxx::work tx(connection, "migrate");
          // The service set's IF NOT EXISTS skips are expected (a primary that is also a service):
          // no "NOTICE: relation ... already exists, skipping" on the operator's terminal.
          tx.exec("SET LOCAL client_min_messages = warning");
          tx.exec(std::string(migration.sql));
          tx.exec_params("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, now())",
                         migration.version, migration.name, migration.checksum);
          tx.commit();
        } catch (const std::exception& error) {
          throw server_error(error, std::string(role) + ": migration " + migration.file + " failed (rolled back)");
        }
        result.after = std::max(result.after, migration.version);
      }
      result.applied.push_back(migration.version);
      if (options.on_migration) options.on_migration(migration);
    }
  };
  try {
    if (options.dry_run) {
      run(status(connection, target), false);
      return result;
    }
    RunLock lock(connection);
    {
      pqxx::work tx(connection, "migrate");
      tx.exec(
          "CREATE TABLE IF NOT EXISTS schema_migrations ("
          " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
          " applied_at timestamptz NOT NULL DEFAULT now())");
      tx.commit();
    }
    run(status(connection, target), true);
    return result;
  } catch (const Error& error) {
    // The problems found by the runner name the database already; the table check does not.
    if (std::string_view(error.what()).rfind(role, 0) == 0) throw;
    throw error.with_context(std::string(role));
  } catch (const std::exception& error) {
    throw server_error(error, std::string(role));
  }
}

void require_current(pqxx::connection& connection, Target target, std::string_view role) {
  Status state;
  try {
    state = status(connection, target);
  } catch (const std::exception& error) {
    throw server_error(error, std::string(role) + ": reading schema_migrations");
  }
  if (auto problem = checksum_problem(state, role)) throw config_error(*problem);
  // A version missing below an applied one is a broken history, which `outbox migrate` refuses to
  // mend: no reason to wait for it. Versions applied by a newer outbox are fine (see the header).
  Status known = state;
  std::erase_if(known.entries, [](const Entry& entry) { return entry.state == State::unknown; });
  if (auto problem = history_problem(known, role)) throw config_error(*problem);
  if (state.pending() > 0) {
    // Complete up to the version before the first pending one (a later one may be applied).
    int complete = state.current;
    for (const Entry& entry : state.entries)
      if (entry.state == State::pending) {
        complete = std::min(complete, entry.version - 1);
        break;
      }
    throw SchemaBehind(std::string(role) + ": schema is at version " + std::to_string(complete) + " but this outbox needs " +
                       std::to_string(state.latest) + "; run 'outbox migrate'");
  }
}

}  // namespace outbox::migrate
