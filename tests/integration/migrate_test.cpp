// outbox migrate against the real servers: apply, re-run, status, dry run, targets, checksum
// mismatch, concurrent runs, and require_current for the daemons.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/error.hpp"
#include "migrate/runner.hpp"
#include "tests/integration/support/harness.hpp"

namespace outbox::testing {
namespace {

using migrate::Target;

// A run that exits with `code` and shows `text` in `shown` (its stdout or stderr).
void expect_exit(const RunResult& result, int code, const std::string& shown, const std::string& text) {
  EXPECT_EQ(result.exit_code, code) << result;
  EXPECT_NE(shown.find(text), std::string::npos) << "expected: " << text << "\n" << result;
}

class Migrate : public ::testing::Test {
 protected:
  void SetUp() override { reset_databases(); }

  // A config with a second replica, so that "every configured replica" means two.
  std::string two_replicas() {
    return write_file("two-replicas.toml", "[replicas.replica2]\nurl = \"" + servers().replica2_url + "\"\n");
  }
  RunResult migrate(std::vector<std::string> args = {}) {
    args.insert(args.begin(), "migrate");
    return run_outbox(args, {{"OUTBOX_CONFIG", two_replicas()}});
  }
  static bool has_table(const std::string& url, const std::string& table) {
    return scalar(url, "SELECT to_regclass('" + table + "') IS NOT NULL") == "t";
  }
  static std::string first_file(Target target) { return migrate::migrations(target).front().file; }
};

TEST_F(Migrate, AppliesEveryMigrationToThePrimaryAndEveryConfiguredReplica) {
  RunResult result = migrate();
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_NE(result.out.find("primary: applied " + first_file(Target::primary)), std::string::npos) << result;
  EXPECT_NE(result.out.find("replica main: applied " + first_file(Target::replica)), std::string::npos) << result;
  EXPECT_NE(result.out.find("replica replica2: applied " + first_file(Target::replica)), std::string::npos) << result;

  EXPECT_TRUE(has_table(servers().primary_url, "parking_slots"));
  EXPECT_TRUE(has_table(servers().primary_url, "outbox"));
  EXPECT_TRUE(has_table(servers().replica_url, "outbox_applied_events"));
  EXPECT_TRUE(has_table(servers().replica2_url, "outbox_applied_events"));
  EXPECT_FALSE(has_table(servers().replica_url, "outbox"));

  for (auto [url, target] : {std::pair{servers().primary_url, Target::primary}, std::pair{servers().replica_url, Target::replica},
                             std::pair{servers().replica2_url, Target::replica}}) {
    const auto& known = migrate::migrations(target);
    auto recorded = rows(url, "SELECT version, name, checksum, applied_at IS NOT NULL FROM schema_migrations ORDER BY version");
    ASSERT_EQ(recorded.size(), known.size()) << url;
    for (size_t i = 0; i < known.size(); ++i) {
      EXPECT_EQ(recorded[i][0], std::to_string(known[i].version));
      EXPECT_EQ(recorded[i][1], known[i].name);
      EXPECT_EQ(recorded[i][2], migrate::sha256_hex(known[i].sql));
      EXPECT_EQ(recorded[i][3], "t");
    }
  }
}

TEST_F(Migrate, RunningItAgainIsANoOp) {
  ASSERT_EQ(migrate().exit_code, 0);
  std::string before =
      scalar(servers().primary_url, "SELECT string_agg(version || '@' || applied_at, ',') FROM schema_migrations");
  RunResult again = migrate();
  ASSERT_EQ(again.exit_code, 0) << again;
  EXPECT_EQ(again.out.find("applied "), std::string::npos) << again;
  EXPECT_NE(again.out.find("primary: schema is current at version " + std::to_string(migrate::latest_version(Target::primary))),
            std::string::npos)
      << again;
  EXPECT_NE(again.out.find("replica replica2: schema is current"), std::string::npos) << again;
  EXPECT_EQ(scalar(servers().primary_url, "SELECT string_agg(version || '@' || applied_at, ',') FROM schema_migrations"), before);
}

TEST_F(Migrate, StatusShowsPendingMigrationsPerDatabaseBeforeAndAppliedOnesAfter) {
  RunResult before = run_outbox({"migrate", "status"}, {{"OUTBOX_CONFIG", two_replicas()}});
  ASSERT_EQ(before.exit_code, 0) << before;
  EXPECT_NE(before.out.find("primary (postgresql://outbox:****@"), std::string::npos) << before;
  EXPECT_EQ(before.out.find(":outbox@"), std::string::npos) << "password printed:\n" << before;
  EXPECT_NE(before.out.find("  " + first_file(Target::primary) + "  pending"), std::string::npos) << before;
  EXPECT_NE(before.out.find("replica replica2 ("), std::string::npos) << before;
  EXPECT_NE(before.out.find("version 0, latest " + std::to_string(migrate::latest_version(Target::replica))), std::string::npos)
      << before;
  EXPECT_FALSE(has_table(servers().primary_url, "schema_migrations")) << "status must not write";

  ASSERT_EQ(migrate().exit_code, 0);
  RunResult after = run_outbox({"migrate", "status"}, {{"OUTBOX_CONFIG", two_replicas()}});
  ASSERT_EQ(after.exit_code, 0) << after;
  EXPECT_NE(after.out.find("  " + first_file(Target::primary) + "  applied  "), std::string::npos) << after;
  EXPECT_NE(after.out.find("  " + first_file(Target::replica) + "  applied  "), std::string::npos) << after;
  EXPECT_EQ(after.out.find("  pending\n"), std::string::npos) << after;
}

TEST_F(Migrate, StatusAcceptsATargetAfterTheSubcommand) {
  RunResult result = run_outbox({"migrate", "status", "--target", "primary"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_NE(result.out.find("primary ("), std::string::npos) << result;
  EXPECT_EQ(result.out.find("replica"), std::string::npos) << result;
}

TEST_F(Migrate, DryRunPrintsTheSqlThatWouldRunAndChangesNothing) {
  RunResult result = migrate({"--dry-run"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_NE(result.out.find(std::string(migrate::migrations(Target::primary).front().sql)), std::string::npos) << result;
  EXPECT_NE(result.out.find(std::string(migrate::migrations(Target::replica).front().sql)), std::string::npos) << result;
  EXPECT_NE(result.out.find("-- replica replica2: would apply " + first_file(Target::replica)), std::string::npos) << result;
  for (const std::string& url : {servers().primary_url, servers().replica_url, servers().replica2_url}) {
    EXPECT_FALSE(has_table(url, "schema_migrations")) << url;
    EXPECT_FALSE(has_table(url, "parking_slots")) << url;
  }
}

TEST_F(Migrate, DryRunAfterMigratingHasNothingToPrint) {
  ASSERT_EQ(migrate().exit_code, 0);
  RunResult result = migrate({"--dry-run"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_EQ(result.out.find("would apply"), std::string::npos) << result;
  EXPECT_NE(result.out.find("-- primary: dry run, nothing changed"), std::string::npos) << result;
}

TEST_F(Migrate, TargetPrimaryMigratesOnlyThePrimary) {
  RunResult result = migrate({"--target", "primary"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_TRUE(has_table(servers().primary_url, "parking_slots"));
  EXPECT_FALSE(has_table(servers().replica_url, "schema_migrations"));
  EXPECT_FALSE(has_table(servers().replica2_url, "schema_migrations"));
}

TEST_F(Migrate, TargetReplicaNameMigratesOnlyThatReplica) {
  RunResult result = migrate({"--target", "replica", "replica2"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_TRUE(has_table(servers().replica2_url, "parking_slots"));
  EXPECT_FALSE(has_table(servers().replica_url, "schema_migrations"));
  EXPECT_FALSE(has_table(servers().primary_url, "schema_migrations"));
}

TEST_F(Migrate, AnUnknownTargetIsAUsageErrorAndAnUnconfiguredReplicaAConfigError) {
  RunResult bad = migrate({"--target", "secondary"});
  EXPECT_EQ(bad.exit_code, 64) << bad;
  RunResult unknown = migrate({"--target", "replica", "nope"});
  expect_exit(unknown, 78, unknown.err, "no replica named 'nope'");
  EXPECT_FALSE(has_table(servers().primary_url, "schema_migrations"));
}

TEST_F(Migrate, AnUnreachableDatabaseExits69WithoutItsPassword) {
  RunResult result = run_outbox({"migrate", "--target", "primary"},
                                {{"OUTBOX_PRIMARY_URL", "postgresql://outbox:secret@127.0.0.1:1/outbox_primary"}});
  expect_exit(result, 69, result.err, "primary postgresql://outbox:****@127.0.0.1:1/");
  EXPECT_EQ(result.err.find("secret"), std::string::npos) << result;
}

TEST_F(Migrate, AChecksumMismatchOnAnAppliedMigrationIsAConfigErrorNamingTheDatabaseAndVersion) {
  ASSERT_EQ(migrate().exit_code, 0);
  exec(servers().replica_url, "UPDATE schema_migrations SET checksum = 'deadbeef' WHERE version = 1");

  RunResult result = migrate();
  expect_exit(result, 78, result.err,
              "outbox: replica main: migration " + first_file(Target::replica) +
                  " was applied with checksum deadbeef but this outbox has ");
  EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result;

  RunResult status = run_outbox({"migrate", "status"});
  expect_exit(status, 78, status.out, first_file(Target::replica) + "  CHECKSUM MISMATCH");
}

TEST_F(Migrate, StatusAsJsonListsEachDatabaseItsMigrationsAndItsChecksumMismatchesWithTheSameExitStatus) {
  RunResult before = run_outbox({"migrate", "status", "--json"}, {{"OUTBOX_CONFIG", two_replicas()}});
  ASSERT_EQ(before.exit_code, 0) << before;
  nlohmann::json pending = nlohmann::json::parse(before.out, nullptr, false);
  ASSERT_FALSE(pending.is_discarded()) << before;
  EXPECT_EQ(pending["ok"], true);
  ASSERT_EQ(pending["databases"].size(), 3u) << before;
  const nlohmann::json& primary = pending["databases"][0];
  EXPECT_EQ(primary["role"], "primary");
  EXPECT_EQ(primary["target"], "primary");
  EXPECT_EQ(primary["url"].get<std::string>().rfind("postgresql://outbox:****@", 0), 0u) << before;
  EXPECT_EQ(primary["version"], 0);
  EXPECT_EQ(primary["latest"], migrate::latest_version(Target::primary));
  EXPECT_EQ(primary["pending"], migrate::latest_version(Target::primary));
  EXPECT_EQ(primary["migrations"][0]["file"], first_file(Target::primary));
  EXPECT_EQ(primary["migrations"][0]["state"], "pending");
  EXPECT_TRUE(primary["migrations"][0]["applied_at"].is_null());
  EXPECT_EQ(pending["databases"][2]["role"], "replica replica2");
  EXPECT_EQ(before.out.find(":outbox@"), std::string::npos) << "password printed:\n" << before;

  ASSERT_EQ(migrate().exit_code, 0);
  exec(servers().replica_url, "UPDATE schema_migrations SET checksum = 'deadbeef' WHERE version = 1");
  RunResult after = run_outbox({"migrate", "status", "--json"}, {{"OUTBOX_CONFIG", two_replicas()}});
  EXPECT_EQ(after.exit_code, 78) << after;
  nlohmann::json applied = nlohmann::json::parse(after.out, nullptr, false);
  ASSERT_FALSE(applied.is_discarded()) << after;
  EXPECT_EQ(applied["ok"], false);
  EXPECT_EQ(applied["databases"][0]["pending"], 0);
  EXPECT_EQ(applied["databases"][0]["migrations"][0]["state"], "applied");
  EXPECT_TRUE(applied["databases"][0]["checksum_mismatches"].empty());
  const nlohmann::json& replica = applied["databases"][1];
  EXPECT_EQ(replica["role"], "replica main");
  EXPECT_EQ(replica["checksum_mismatches"], nlohmann::json::array({first_file(Target::replica)})) << after;
  EXPECT_EQ(replica["migrations"][0]["state"], "checksum_mismatch");
  EXPECT_EQ(replica["migrations"][0]["checksum"], "deadbeef");
  EXPECT_EQ(replica["migrations"][0]["expected_checksum"], migrate::migrations(Target::replica).front().checksum);
}

TEST_F(Migrate, ADatabaseMigratedByANewerOutboxIsRefusedAndAMissingVersionIsNotAppliedOutOfOrder) {
  ASSERT_EQ(migrate().exit_code, 0);
  exec(servers().replica_url, "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')");
  RunResult newer = migrate({"--target", "replica", "main"});
  expect_exit(newer, 78, newer.err, "outbox: replica main: migration 0999_future.sql is applied but unknown to this outbox");
  RunResult status = run_outbox({"migrate", "status", "--target", "replica", "main"});
  expect_exit(status, 78, status.out, "0999_future.sql  applied, unknown to this outbox");

  exec(servers().replica_url, "DELETE FROM schema_migrations WHERE version IN (2, 999)");
  RunResult gap = migrate({"--target", "replica", "main"});
  expect_exit(gap, 78, gap.err,
              "migration 0002_heartbeat.sql is not applied but version 3 is; refusing to apply it out of order");
  EXPECT_EQ(scalar(servers().replica_url, "SELECT count(*) FROM schema_migrations"), "2");
}

TEST_F(Migrate, ASchemaMigrationsTableOfAnotherToolIsRefusedWithOneLine) {
  exec(servers().primary_url, "CREATE TABLE schema_migrations (version varchar PRIMARY KEY)");
  for (const std::vector<std::string>& args : {std::vector<std::string>{"migrate", "--target", "primary"},
                                               std::vector<std::string>{"migrate", "status", "--target", "primary"}}) {
    RunResult result = run_outbox(args);
    EXPECT_EQ(result.exit_code, 78) << result;
    EXPECT_EQ(result.err.rfind("outbox: primary: table schema_migrations is not outbox's", 0), 0u) << result;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result;
  }
  EXPECT_FALSE(has_table(servers().primary_url, "outbox"));
}

TEST_F(Migrate, AnEmptyReplicaNameIsAUsageError) {
  RunResult result = migrate({"--target", "replica:"});
  expect_exit(result, 64, result.err, "needs a replica name");
}

TEST_F(Migrate, TwoConcurrentRunsWaitForEachOtherAndApplyEachMigrationOnce) {
  // Hold the runs' advisory lock, start several runs, see them all wait on it, then let them go.
  auto blocker = connect(servers().primary_url);
  pqxx::nontransaction hold(blocker);
  hold.exec("SELECT pg_advisory_lock(" + std::to_string(migrate::kLockClass) + ", " + std::to_string(migrate::kLockObject) + ")");

  constexpr int kRuns = 4;
  std::vector<RunResult> results(kRuns);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRuns; ++i) threads.emplace_back([&, i] { results[i] = run_outbox({"migrate", "--target", "primary"}); });
  bool all_waiting = eventually([&] {
    return scalar(servers().primary_url,
                  "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = " +
                      std::to_string(migrate::kLockClass)) == std::to_string(kRuns);
  });
  hold.exec("SELECT pg_advisory_unlock_all()");
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(all_waiting);

  size_t applied_lines = 0;
  for (const RunResult& result : results) {
    EXPECT_EQ(result.exit_code, 0) << result;
    applied_lines += occurrences(result.out, "primary: applied ");
  }
  EXPECT_EQ(applied_lines, static_cast<size_t>(migrate::latest_version(Target::primary)));
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM schema_migrations"),
            std::to_string(migrate::migrations(Target::primary).size()));
}

TEST_F(Migrate, TwoConcurrentRunsOnFreshDatabasesBothSucceed) {
  // Without a held lock: the runs race for the lock and for creating schema_migrations.
  RunResult first, second;
  std::thread a([&] { first = migrate(); });
  std::thread b([&] { second = migrate(); });
  a.join();
  b.join();
  EXPECT_EQ(first.exit_code, 0) << first;
  EXPECT_EQ(second.exit_code, 0) << second;
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM schema_migrations"),
            std::to_string(outbox::migrate::migrations(outbox::migrate::Target::primary).size()));
  for (const std::string& url : {servers().replica_url, servers().replica2_url})
    EXPECT_EQ(scalar(url, "SELECT count(*) FROM schema_migrations"),
              std::to_string(outbox::migrate::migrations(outbox::migrate::Target::replica).size()))
        << url;
}

TEST_F(Migrate, RequireCurrentRejectsADatabaseBehindTheBinaryWithAConfigError) {
  auto connection = connect(servers().replica_url);
  std::string needs = std::to_string(migrate::latest_version(Target::replica));
  try {
    migrate::require_current(connection, Target::replica, "replica main");
    FAIL() << "require_current accepted an empty database";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ExitCode::config);
    EXPECT_STREQ(error.what(),
                 ("replica main: schema is at version 0 but this outbox needs " + needs + "; run 'outbox migrate'").c_str());
  }

  ASSERT_EQ(migrate().exit_code, 0);
  EXPECT_NO_THROW(migrate::require_current(connection, Target::replica, "replica main"));

  exec(servers().replica_url, "UPDATE schema_migrations SET checksum = 'x'");
  try {
    migrate::require_current(connection, Target::replica, "replica main");
    FAIL() << "require_current accepted a checksum mismatch";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ExitCode::config);
    EXPECT_NE(std::string(error.what()).find("replica main: migration "), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace outbox::testing
