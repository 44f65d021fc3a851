#include "migrate/service_migrations.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.hpp"
#include "core/escape.hpp"
#include "migrate/runner.hpp"

namespace outbox::migrate {
namespace {

struct Recorded {
  std::string checksum;
  std::string applied_at;
};

std::map<std::string, Recorded> read_recorded(pqxx::transaction_base& tx) {
  std::map<std::string, Recorded> out;
  if (!tx.exec1("SELECT to_regclass('outbox_service_migrations') IS NOT NULL")[0].as<bool>()) return out;
  for (const auto& row : tx.exec("SELECT file, checksum, applied_at::text FROM outbox_service_migrations"))
    out[row[0].as<std::string>()] = {row[1].as<std::string>(), row[2].as<std::string>()};
  return out;
}

std::vector<OwnEntry> compare_own(const std::map<std::string, Recorded>& recorded, const std::vector<OwnMigration>& files) {
  std::vector<OwnEntry> out;
  for (const OwnMigration& file : files) {
    OwnEntry entry{&file, OwnState::pending, ""};
    if (auto found = recorded.find(file.file); found != recorded.end()) {
      entry.state = found->second.checksum == file.checksum ? OwnState::applied : OwnState::changed;
      entry.applied_at = found->second.applied_at;
    }
    out.push_back(entry);
  }
  return out;
}

// The first changed file, as the message apply_own refuses with.
void refuse_changed(const std::vector<OwnEntry>& entries, const std::map<std::string, Recorded>& recorded,
                    std::string_view role) {
  for (const OwnEntry& entry : entries)
    if (entry.state == OwnState::changed)
      throw config_error(std::string(role) + ": migration " + escape_controls(entry.migration->file) +
                         " was applied with checksum " + short_sum(recorded.at(entry.migration->file).checksum) +
                         " but the file now has " + short_sum(entry.migration->checksum) +
                         "; an applied migration must never change (restore the file, and put the change in a new one)");
}

}  // namespace

std::vector<OwnMigration> read_own_migrations(const std::string& dir, std::string_view role) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(dir, error))
    throw config_error(std::string(role) + ": migrations directory " + escape_controls(dir) + " does not exist" +
                       (error ? " (" + error.message() + ")" : std::string()));
  std::vector<OwnMigration> out;
  fs::directory_iterator it(dir, error);
  if (error)
    throw config_error(std::string(role) + ": cannot read migrations directory " + escape_controls(dir) + ": " + error.message());
  for (const fs::directory_entry& entry : it) {
    if (entry.path().extension() != ".sql" || !entry.is_regular_file(error)) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof())
      throw config_error(std::string(role) + ": cannot read migration " + escape_controls(entry.path().string()));
    std::string sql = text.str();
    out.push_back({entry.path().filename().string(), sql, sha256_hex(sql)});
  }
  std::sort(out.begin(), out.end(), [](const OwnMigration& a, const OwnMigration& b) { return a.file < b.file; });
  return out;
}

std::vector<OwnEntry> own_status(pqxx::connection& connection, const std::vector<OwnMigration>& files) {
  pqxx::read_transaction tx(connection);
  return compare_own(read_recorded(tx), files);
}

int apply_own(pqxx::connection& connection, const std::vector<OwnMigration>& files, std::string_view role,
              const OwnApplyOptions& options) {
  auto run = [&](bool write) {
    std::map<std::string, Recorded> recorded;
    {
      pqxx::read_transaction tx(connection);
      recorded = read_recorded(tx);
    }
    std::vector<OwnEntry> entries = compare_own(recorded, files);
    refuse_changed(entries, recorded, role);
    int count = 0;
    for (const OwnEntry& entry : entries) {
      if (entry.state != OwnState::pending) continue;
      const OwnMigration& file = *entry.migration;
      if (write) {
        try {
          pqxx::work tx(connection, "migrate");
          tx.exec(file.sql);
          tx.exec_params("INSERT INTO outbox_service_migrations (file, checksum, applied_at) VALUES ($1, $2, now())", file.file,
                         file.checksum);
          tx.commit();
        } catch (const std::exception& error) {
          throw server_error(error, std::string(role) + ": migration " + escape_controls(file.file) + " failed (rolled back)");
        }
      }
      ++count;
      if (options.on_file) options.on_file(file);
    }
    return count;
  };
  try {
    if (options.dry_run) return run(false);
    RunLock lock(connection);
    return run(true);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    throw server_error(error, std::string(role));
  }
}

}  // namespace outbox::migrate
