// The Nagios line and status of `outbox check`, and the seconds-behind measure, without servers.
#include "ops/check.hpp"

#include <gtest/gtest.h>

#include "ops/lag.hpp"

using namespace outbox;

namespace {

lag::Report fresh_report(double transit = 0.4) {
  lag::Report report;
  report.heartbeat_interval = 10;
  report.primary.tables.push_back({"public.outbox", 0, std::nullopt, std::nullopt, std::nullopt});
  report.broker.queues = {
      {"outbox.replica.main", "main", true, 0, 1}, {"outbox.unroutable", "", true, 0, 0}, {"outbox.dead-letter", "", true, 0, 0}};
  lag::ReplicaStage replica;
  replica.name = "main";
  replica.heartbeat_age = 3.0;
  replica.heartbeat_transit = transit;
  lag::compute_behind(replica, &report.primary, report.heartbeat_interval);
  report.replicas.push_back(replica);
  return report;
}

}  // namespace

TEST(Lag, SecondsBehindIsTheHeartbeatTransitWhileThePipelineKeepsUp) {
  lag::Report report = fresh_report(0.4);
  EXPECT_DOUBLE_EQ(*report.replicas[0].seconds_behind, 0.4);
  EXPECT_EQ(report.replicas[0].behind_source, "heartbeat");
}

TEST(Lag, SecondsBehindGrowsWithTheHeartbeatAgeBeyondOneInterval) {
  lag::Report report = fresh_report();
  report.replicas[0].heartbeat_age = 45;
  lag::compute_behind(report.replicas[0], &report.primary, 10);
  EXPECT_DOUBLE_EQ(*report.replicas[0].seconds_behind, 35);
}

// The replica's clock alone measures a stall: a heartbeat stamped ahead by the primary's clock
// (within replicate.max_clock_skew) makes its age negative, but the time since a heartbeat was
// last applied still grows.
TEST(Lag, SecondsBehindGrowsWithTheTimeSinceAHeartbeatWasAppliedEvenWhenItWasStampedAhead) {
  lag::Report report = fresh_report();
  lag::ReplicaStage& replica = report.replicas[0];
  replica.heartbeat_age = -1800;
  replica.heartbeat_transit = -1790;
  replica.heartbeat_applied_age = 1;
  lag::compute_behind(replica, &report.primary, 10);
  EXPECT_DOUBLE_EQ(*replica.seconds_behind, 0);
  replica.heartbeat_applied_age = 45;
  lag::compute_behind(replica, &report.primary, 10);
  EXPECT_DOUBLE_EQ(*replica.seconds_behind, 35);
  EXPECT_EQ(replica.behind_source, "heartbeat");
  EXPECT_EQ(check::evaluate(report, {30, 120}).status, check::Status::warning) << check::evaluate(report, {30, 120}).line;
}

TEST(Lag, SecondsBehindIsTheOldestUnpublishedAgeWhenTheBacklogIsOlder) {
  lag::Report report = fresh_report();
  report.primary.tables[0].unpublished = 12;
  report.primary.tables[0].oldest_unpublished_age = 80;
  lag::compute_behind(report.replicas[0], &report.primary, 10);
  EXPECT_DOUBLE_EQ(*report.replicas[0].seconds_behind, 80);
  EXPECT_EQ(report.replicas[0].behind_source, "backlog");
}

TEST(Lag, SecondsBehindIsUnknownWithoutAnAppliedHeartbeat) {
  lag::ReplicaStage replica;
  replica.name = "main";
  lag::compute_behind(replica, nullptr, 10);
  EXPECT_FALSE(replica.seconds_behind);
  EXPECT_EQ(replica.behind_source, "no relay heartbeat applied yet");
}

TEST(Lag, WithoutAnAppliedHeartbeatTheBacklogAgeIsStillALowerBound) {
  lag::Report report = fresh_report();
  report.primary.tables[0].unpublished = 11;
  report.primary.tables[0].oldest_unpublished_age = 150;
  lag::ReplicaStage replica;
  replica.name = "main";
  lag::compute_behind(replica, &report.primary, 10);
  ASSERT_TRUE(replica.seconds_behind);
  EXPECT_DOUBLE_EQ(*replica.seconds_behind, 150);
  EXPECT_EQ(replica.behind_source, "backlog; no relay heartbeat applied yet");
  report.replicas[0] = replica;
  EXPECT_EQ(check::evaluate(report, {}).status, check::Status::critical) << check::evaluate(report, {}).line;
}

TEST(Check, AnIdlePipelineIsOkWithTheExactLine) {
  check::Result result = check::evaluate(fresh_report(), {});
  EXPECT_EQ(result.status, check::Status::ok);
  EXPECT_EQ(result.line, "OUTBOX OK - replica main 0.4s behind, backlog 0 | lag_main=0.4s;30;120;0 backlog=0;;;0 failed=0;;;0");
}

TEST(Check, TheThresholdsDecideWarningAndCritical) {
  lag::Report report = fresh_report(31);
  check::Result warning = check::evaluate(report, {});
  EXPECT_EQ(warning.status, check::Status::warning);
  EXPECT_EQ(
      warning.line.rfind("OUTBOX WARNING - replica main 31.0s behind (warning at 30s), backlog 0 | lag_main=31.0s;30;120;0", 0),
      0)
      << warning.line;
  check::Result critical = check::evaluate(report, {10, 30});
  EXPECT_EQ(critical.status, check::Status::critical);
  EXPECT_NE(critical.line.find("(critical at 30s)"), std::string::npos) << critical.line;
  EXPECT_NE(critical.line.find("lag_main=31.0s;10;30;0"), std::string::npos) << critical.line;
  EXPECT_EQ(check::evaluate(report, {0.5, 40}).line.find(";0.5;40;0") != std::string::npos, true);
}

TEST(Check, ParkedEventsAreAtLeastWarning) {
  lag::Report report = fresh_report();
  report.replicas[0].parked = 2;
  report.replicas[0].waiting = 5;
  check::Result result = check::evaluate(report, {});
  EXPECT_EQ(result.status, check::Status::warning);
  EXPECT_NE(result.line.find("replica main has 2 failed events parked and 5 waiting behind"), std::string::npos) << result.line;
  EXPECT_NE(result.line.find("failed=7;;;0"), std::string::npos) << result.line;
  report.replicas[0].heartbeat_transit = 500;
  lag::compute_behind(report.replicas[0], &report.primary, 10);
  EXPECT_EQ(check::evaluate(report, {}).status, check::Status::critical) << "critical wins over the parked warning";
}

TEST(Check, BacklogCountsUnpublishedRowsAndReadyMessages) {
  lag::Report report = fresh_report();
  report.primary.tables[0].unpublished = 3;
  report.broker.queues[0].ready = 4;
  EXPECT_NE(check::evaluate(report, {}).line.find("backlog 7 | "), std::string::npos);
}

TEST(Check, AnUnreachableServerIsUnknownAndNamed) {
  lag::Report report = fresh_report();
  report.broker.error = "outbox lag amqp://u:****@h:5672/: connection refused";
  check::Result result = check::evaluate(report, {});
  EXPECT_EQ(result.status, check::Status::unknown);
  EXPECT_EQ(result.line.rfind("OUTBOX UNKNOWN - broker unreachable: outbox lag amqp://u:****@h:5672/: connection refused | ", 0),
            0)
      << result.line;
  report.broker.error.clear();
  report.primary.error = "primary postgresql://x: timeout | really";
  result = check::evaluate(report, {});
  EXPECT_EQ(result.status, check::Status::unknown);
  EXPECT_NE(result.line.find("database primary unreachable"), std::string::npos);
  EXPECT_EQ(std::count(result.line.begin(), result.line.end(), '|'), 1) << "a '|' in a reason would start the perfdata";
}

TEST(Check, AMissingReplicaQueueIsAWarning) {
  lag::Report report = fresh_report();
  report.broker.queues[0].exists = false;
  check::Result result = check::evaluate(report, {});
  EXPECT_EQ(result.status, check::Status::warning);
  EXPECT_NE(result.line.find("queue outbox.replica.main missing"), std::string::npos);
}
