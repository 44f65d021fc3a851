// The harness itself: daemons, signals, server restarts, helpers. Other tests rely on these.
#include "tests/integration/support/harness.hpp"

#include <gtest/gtest.h>

#include "migrate/runner.hpp"

namespace outbox::testing {
namespace {

class Harness : public ::testing::Test {
 protected:
  void SetUp() override { reset_databases(); }
};

// A daemon stand-in: `outbox migrate` blocks on the migration lock while a test holds it.
struct HeldMigrationLock {
  pqxx::connection connection = connect(servers().primary_url);
  pqxx::nontransaction tx{connection};
  HeldMigrationLock() {
    tx.exec("SELECT pg_advisory_lock(" + std::to_string(migrate::kLockClass) + ", " + std::to_string(migrate::kLockObject) + ")");
  }
  static bool someone_waits() {
    return scalar(servers().primary_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") != "0";
  }
};

TEST_F(Harness, ServersAreUpAndTheirUrlsPointAtSeparateDatabases) {
  EXPECT_EQ(scalar(servers().primary_url, "SELECT current_database()"), "outbox_primary");
  EXPECT_EQ(scalar(servers().replica_url, "SELECT current_database()"), "outbox_replica");
  EXPECT_EQ(scalar(servers().replica2_url, "SELECT current_database()"), "outbox_replica2");
  EXPECT_NE(scalar(servers().primary_url, "SHOW port"), scalar(servers().replica_url, "SHOW port"));
  EXPECT_EQ(servers().broker_url.rfind("amqp://", 0), 0u);
  EXPECT_FALSE(servers().rabbitmqctl.empty());
}

TEST_F(Harness, RunOutboxCapturesExitCodeStdoutAndStderrSeparately) {
  RunResult ok = run_outbox({"config", "show"});
  EXPECT_EQ(ok.exit_code, 0) << ok;
  EXPECT_NE(ok.out.find("url = \"postgresql://outbox:****@"), std::string::npos) << ok;
  RunResult bad = run_outbox({"no-such-command"});
  EXPECT_EQ(bad.exit_code, 64);
  EXPECT_EQ(bad.out, "");
  EXPECT_NE(bad.err, "");
}

TEST_F(Harness, ExtraEnvironmentOverridesAndRemovesVariables) {
  RunResult unset = run_outbox({"migrate", "--target", "primary"}, {{"OUTBOX_PRIMARY_URL", kUnset}});
  EXPECT_EQ(unset.exit_code, 78) << unset;
  EXPECT_NE(unset.err.find("primary.url: not set"), std::string::npos) << unset;
}

TEST_F(Harness, ResetDatabasesLeavesEmptyPublicSchemas) {
  ASSERT_TRUE(migrate_all());
  EXPECT_EQ(scalar(servers().replica2_url, "SELECT count(*) FROM schema_migrations"),
            std::to_string(outbox::migrate::migrations(outbox::migrate::Target::replica).size()));
  reset_databases();
  for (const std::string& url : {servers().primary_url, servers().replica_url, servers().replica2_url})
    EXPECT_EQ(scalar(url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0") << url;
}

TEST_F(Harness, ADaemonThatFinishesReportsItsExitStatusAndLog) {
  Daemon daemon({"migrate", "--target", "primary"});
  std::optional<int> status = daemon.wait_exit();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0) << daemon.log();
  EXPECT_FALSE(daemon.running());
  EXPECT_NE(daemon.log().find("primary: applied "), std::string::npos) << daemon.log();
}

TEST_F(Harness, ADaemonCanBeSignalledAndKilled) {
  HeldMigrationLock lock;
  Daemon terminated({"migrate", "--target", "primary"});
  Daemon killed({"migrate", "--target", "primary"});
  ASSERT_TRUE(eventually(HeldMigrationLock::someone_waits));
  EXPECT_TRUE(terminated.running());
  EXPECT_FALSE(terminated.wait_exit(50ms).has_value());
  terminated.signal(SIGTERM);
  EXPECT_EQ(terminated.wait_exit(), 128 + SIGTERM);
  killed.kill9();
  EXPECT_EQ(killed.wait_exit(), 128 + SIGKILL);
  killed.signal(SIGTERM);  // harmless once it has exited
}

TEST_F(Harness, AStoppedServerMakesOutboxExit69AndComesBackOnTheSamePortWithItsData) {
  ASSERT_TRUE(migrate_all());
  ASSERT_TRUE(stop_server("primary"));
  RunResult down = run_outbox({"migrate", "status", "--target", "primary"});
  EXPECT_EQ(down.exit_code, 69) << down;
  ASSERT_TRUE(start_server("primary"));
  EXPECT_TRUE(eventually([] {
    return scalar(servers().primary_url, "SELECT count(*) FROM schema_migrations") ==
           std::to_string(outbox::migrate::migrations(outbox::migrate::Target::primary).size());
  }));
}

TEST(Eventually, ReturnsTrueOnceTheConditionHoldsAndFalseAfterTheDeadline) {
  int calls = 0;
  EXPECT_TRUE(eventually([&] { return ++calls == 3; }, 5s));
  EXPECT_EQ(calls, 3);
  EXPECT_FALSE(eventually([] { return false; }, 50ms));
  EXPECT_FALSE(eventually([]() -> bool { throw std::runtime_error("not yet"); }, 50ms));
}

}  // namespace
}  // namespace outbox::testing
