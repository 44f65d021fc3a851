// Operations against real servers: `outbox lag`, `outbox check` (Nagios), parking_slot_list
// --max-staleness, and the daemons' /metrics and /healthz.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "examples/parking/parking.hpp"
#include "migrate/runner.hpp"
#include "relay/backlog.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"

using namespace outbox::testing;

namespace {

// Heartbeats every second, so that lag moves within a test; every command that judges lag must
// know the interval too (it is part of the measure, see ops/lag.hpp).
const std::vector<std::string> kFast = {"--set", "relay.heartbeat_interval=1s"};

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& extra = kFast) {
  return with_args(std::move(args), extra);
}

// `outbox relay` with /metrics and /healthz on 127.0.0.1:port.
std::vector<std::string> relay_serving_metrics_on(int port) {
  return {"relay", "--set", "metrics.listen=127.0.0.1:" + std::to_string(port)};
}

// Runs `args` until it exits with `code` (polling for up to 30 s) and returns the last run, whose
// output the test then checks; never reaching `code` is a test failure that shows the last run.
RunResult run_until_exit(const std::vector<std::string>& args, int code) {
  RunResult result;
  bool reached = eventually(
      [&] {
        result = run_outbox(args);
        return result.exit_code == code;
      },
      30s);
  EXPECT_TRUE(reached) << result;
  return result;
}

// The value of the sample `name` (with its labels, as rendered) in Prometheus text; -1 if absent.
double sample(const std::string& metrics, const std::string& name) {
  std::istringstream lines(metrics);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

// A replica that applied a heartbeat created `age` ago, which took `transit` end to end.
void set_heartbeat(const std::string& age, const std::string& transit) {
  exec(servers().replica_url,
       "INSERT INTO outbox_heartbeat (replica, relay, created_at, applied_at) "
       "VALUES ('main', 'test', clock_timestamp() - interval '" +
           age + "', clock_timestamp() - interval '" + age + "' + interval '" + transit +
           "') "
           "ON CONFLICT (replica) DO UPDATE SET created_at = EXCLUDED.created_at, applied_at = EXCLUDED.applied_at");
}

void park_an_event() {
  exec(servers().replica_url,
       "INSERT INTO outbox_failed_events (replica, event_id, aggregate_type, aggregate_id, aggregate_version, event_type, "
       "routing_key, body, error, attempts, state) VALUES ('main', gen_random_uuid()::text, 'parking_slot', 'poison', 1, "
       "'parking.create', 'parking.create', 'not json', 'malformed JSON body', 3, 'parked')");
}

// The relay and replicate, both with one-second heartbeats (and /metrics when ports are given).
struct Pipeline {
  explicit Pipeline(int relay_port = 0, int replicate_port = 0)
      : relay(with(
            {"relay", "--set", "relay.poll_interval=200ms"},
            with(kFast, relay_port ? std::vector<std::string>{"--set", "metrics.listen=127.0.0.1:" + std::to_string(relay_port)}
                                   : std::vector<std::string>{}))),
        replicate(
            with({"replicate"}, with(kFast, replicate_port ? std::vector<std::string>{"--set", "metrics.listen=127.0.0.1:" +
                                                                                                   std::to_string(replicate_port)}
                                                           : std::vector<std::string>{}))) {}
  Daemon relay;
  Daemon replicate;
};

// Now on this machine's clock, in microseconds since the epoch (the unit of the created_at header).
long long now_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A relay heartbeat as the relay publishes it, stamped `created_at_us`, straight to the exchange.
void publish_heartbeat(long long created_at_us, const std::string& relay) {
  outbox::amqp::OutgoingMessage message;
  message.exchange = "outbox";
  message.message_id = outbox::parking::random_uuid();
  message.type = "outbox.heartbeat";
  message.routing_key = "outbox.heartbeat";
  message.body = "{\"relay\": \"" + relay + "\"}";
  message.headers = {{"aggregate_type", std::string("outbox.heartbeat")},
                     {"aggregate_id", std::string("heartbeat")},
                     {"aggregate_version", now_micros()},
                     {"created_at", created_at_us}};
  auto connection = broker_connection();
  connection->publish(message);
  connection->inspect_queue("outbox.replica.main");  // a round trip: the message has reached the broker
}

}  // namespace

TEST(Operations, CheckPrintsTheExactNagiosLineAndExitsZeroWhenTheReplicaIsFresh) {
  fresh_schema();
  set_heartbeat("0.5 seconds", "0.2 seconds");
  RunResult result = run_outbox({"check"});
  EXPECT_EQ(result.exit_code, 0) << result;
  EXPECT_EQ(result.out, "OUTBOX OK - replica main 0.2s behind, backlog 0 | lag_main=0.2s;30;120;0 backlog=0;;;0 failed=0;;;0\n")
      << result;

  RunResult quiet = run_outbox({"check", "--quiet"});
  EXPECT_EQ(quiet.exit_code, 0) << quiet;
  EXPECT_EQ(quiet.out, "") << "--quiet prints nothing when OK, so cron mails only problems";
}

TEST(Operations, CheckWarnsWhenAnEventIsParkedEvenWhileTheReplicaIsFresh) {
  fresh_schema();
  set_heartbeat("0.5 seconds", "0.2 seconds");
  park_an_event();
  RunResult result = run_outbox({"check", "--quiet"});
  EXPECT_EQ(result.exit_code, 1) << result;
  EXPECT_NE(result.out.find("OUTBOX WARNING - "), std::string::npos) << result;
  EXPECT_NE(result.out.find("replica main has 1 failed event parked"), std::string::npos) << result;
  EXPECT_NE(result.out.find("failed=1;;;0"), std::string::npos) << result;
}

TEST(Operations, CheckWarnsWhenNoHeartbeatWasAppliedYet) {
  fresh_schema();
  RunResult result = run_outbox({"check"});
  EXPECT_EQ(result.exit_code, 1) << result;
  EXPECT_NE(result.out.find("replica main lag unknown (no relay heartbeat applied yet)"), std::string::npos) << result;
  EXPECT_NE(result.out.find("lag_main=U;30;120;0"), std::string::npos) << result;
}

TEST(Operations, CheckIsCriticalOrWarningByTheThresholdsOnAStaleHeartbeat) {
  fresh_schema();
  set_heartbeat("5 minutes", "0.1 seconds");  // behind = 300s - 10s (the default interval) = 290s
  RunResult critical = run_outbox({"check"});
  EXPECT_EQ(critical.exit_code, 2) << critical;
  // 290 s and whatever passed since the heartbeat was set (a busy machine takes a second or more).
  const std::string prefix = "OUTBOX CRITICAL - replica main ";
  ASSERT_EQ(critical.out.rfind(prefix, 0), 0u) << critical;
  double behind = std::stod(critical.out.substr(prefix.size()));
  EXPECT_GE(behind, 290.0) << critical;
  EXPECT_LT(behind, 300.0) << critical;
  EXPECT_NE(critical.out.find("(critical at 2m)"), std::string::npos) << critical;

  RunResult warning = run_outbox({"check", "--warning", "1m", "--critical", "10m"});
  EXPECT_EQ(warning.exit_code, 1) << warning;
  EXPECT_NE(warning.out.find("(warning at 1m)"), std::string::npos) << warning;
  EXPECT_NE(warning.out.find(";60;600;0"), std::string::npos) << warning;

  RunResult bad = run_outbox({"check", "--warning", "soon"});
  EXPECT_EQ(bad.exit_code, 3) << bad;
  EXPECT_NE(bad.out.find("OUTBOX UNKNOWN - --warning: not a duration"), std::string::npos) << bad;
}

TEST(Operations, CheckIsUnknownAndNamesTheDatabaseThatCannotBeReached) {
  fresh_schema();
  set_heartbeat("0.5 seconds", "0.2 seconds");
  RunResult result = run_outbox({"check"}, {{"OUTBOX_REPLICA_URL", "postgresql://outbox:secret@127.0.0.1:1/nowhere"}});
  EXPECT_EQ(result.exit_code, 3) << result;
  EXPECT_NE(result.out.find("OUTBOX UNKNOWN - database replica main unreachable"), std::string::npos) << result;
  EXPECT_EQ(result.out.find("secret"), std::string::npos) << "passwords are masked: " << result;
}

TEST(Operations, CheckIsUnknownAndNamesTheBrokerWhenTheBrokerIsDown) {
  fresh_schema();
  set_heartbeat("0.5 seconds", "0.2 seconds");
  // A broker that is down is a port nobody listens on: check and lag meet what they meet with the
  // test's broker stopped, without a restart of it (tens of seconds on a busy machine).
  const std::map<std::string, std::string> down = {{"OUTBOX_BROKER_URL", "amqp://outbox:outbox@127.0.0.1:1/"}};
  RunResult check = run_outbox({"check"}, down);
  RunResult lag = run_outbox({"lag"}, down);
  EXPECT_EQ(check.exit_code, 3) << check;
  EXPECT_NE(check.out.find("OUTBOX UNKNOWN - broker unreachable: "), std::string::npos) << check;
  EXPECT_EQ(check.out.find("database"), std::string::npos) << "only the broker is down: " << check;
  EXPECT_EQ(lag.exit_code, 69) << "lag prints what it can read and exits 69: " << lag;
  EXPECT_NE(lag.out.find("broker unreachable: "), std::string::npos) << lag;
  EXPECT_NE(lag.out.find("public.outbox"), std::string::npos) << lag;
}

TEST(Operations, ParkingSlotListRefusesWithExit75WhenTheReplicaIsStalerThanMaxStaleness) {
  fresh_schema();
  RunResult unknown = run_outbox({"parking_slot_list", "--max-staleness", "30s"});
  EXPECT_EQ(unknown.exit_code, 75) << unknown;
  EXPECT_NE(unknown.err.find("staleness unknown"), std::string::npos) << unknown;

  set_heartbeat("1 hour", "0.1 seconds");
  RunResult stale = run_outbox({"parking_slot_list", "--max-staleness", "30s"});
  EXPECT_EQ(stale.exit_code, 75) << stale;
  EXPECT_EQ(stale.out, "") << "nothing is listed from a stale replica";
  // 3590 s and whatever passed since the heartbeat was set (a busy machine takes a second or more).
  const std::string prefix = "replica main is ";
  size_t at = stale.err.find(prefix);
  ASSERT_NE(at, std::string::npos) << stale;
  double behind = std::stod(stale.err.substr(at + prefix.size()));
  EXPECT_GE(behind, 3590.0) << stale;
  EXPECT_LT(behind, 3600.0) << stale;
  EXPECT_NE(stale.err.find("behind, more than --max-staleness 30s"), std::string::npos) << stale;
  EXPECT_EQ(std::count(stale.err.begin(), stale.err.end(), '\n'), 1) << "one line: " << stale;

  EXPECT_EQ(run_outbox({"parking_slot_list", "--max-staleness", "30s", "--from", "primary"}).exit_code, 0)
      << "the primary is never stale";

  exec(servers().replica_url, "INSERT INTO parking_slots VALUES (gen_random_uuid(), 'A', 'available', 1)");
  set_heartbeat("0.5 seconds", "0.2 seconds");
  RunResult fresh = run_outbox({"parking_slot_list", "--max-staleness", "30s"});
  EXPECT_EQ(fresh.exit_code, 0) << fresh;
  EXPECT_NE(fresh.out.find("\"name\": \"A\""), std::string::npos) << fresh;
}

TEST(Operations, LagAndCheckAreOkWhenThePipelineIsIdleAfterHeartbeats) {
  fresh_schema();
  Pipeline pipeline;
  ASSERT_EQ(run_outbox({"create_parking_slot", "--name", "A"}).exit_code, 0);
  RunResult check = run_until_exit(with({"check", "--warning", "5s", "--critical", "10s"}), 0);
  EXPECT_TRUE(std::regex_search(
      check.out,
      std::regex(
          R"(^OUTBOX OK - replica main \d+\.\ds behind, backlog \d+ \| lag_main=\d+\.\ds;5;10;0 backlog=\d+;;;0 failed=0;;;0\n$)")))
      << check;

  RunResult text = run_outbox(with({"lag"}));
  EXPECT_EQ(text.exit_code, 0) << text;
  for (const char* expected : {"OUTBOX TABLE", "public.outbox", "BROKER QUEUE", "outbox.replica.main", "outbox.unroutable",
                               "outbox.dead-letter", "REPLICA", "main"})
    EXPECT_NE(text.out.find(expected), std::string::npos) << expected << "\n" << text;

  // The heartbeats are outbox rows too: for the moment one waits for the relay's next poll, it is
  // the oldest unpublished row and may outweigh the heartbeat measure ("backlog"). Idle means no
  // row waits, which the pipeline reaches between heartbeats.
  RunResult json;
  nlohmann::json report;
  EXPECT_TRUE(eventually(
      [&] {
        json = run_outbox(with({"lag", "--json"}));
        if (json.exit_code != 0) return false;
        report = nlohmann::json::parse(json.out);  // throws (fails the test) if it does not parse
        return report["replicas"][0]["behind_source"] == "heartbeat";
      },
      30s))
      << json;
  ASSERT_EQ(json.exit_code, 0) << json;
  EXPECT_EQ(report["outbox"]["tables"][0]["table"], "public.outbox");
  EXPECT_TRUE(report["outbox"]["error"].is_null());
  EXPECT_EQ(report["broker"]["queues"][0]["queue"], "outbox.replica.main");
  EXPECT_EQ(report["broker"]["queues"][0]["consumers"], 1) << "replicate consumes the queue";
  EXPECT_EQ(report["broker"]["unroutable"], 0);
  EXPECT_EQ(report["broker"]["dead_letter"], 0);
  const auto& replica = report["replicas"][0];
  EXPECT_EQ(replica["name"], "main");
  EXPECT_GE(replica["seconds_behind"].get<double>(), 0.0) << json.out;
  EXPECT_FALSE(replica["heartbeat"]["created_at"].is_null());
  EXPECT_FALSE(replica["last_applied"]["event_id"].is_null());
  EXPECT_EQ(replica["failed"]["parked"], 0);
}

TEST(Operations, CheckWarnsThenGoesCriticalWhenReplicateIsStoppedAndTheHeartbeatAges) {
  fresh_schema();
  Pipeline pipeline;
  RunResult check;
  ASSERT_TRUE(eventually([&] { return run_outbox(with({"check", "--warning", "3s", "--critical", "6s"})).exit_code == 0; }, 30s));
  pipeline.replicate.signal(SIGTERM);
  ASSERT_EQ(pipeline.replicate.wait_exit(), 0);

  // Heartbeats keep going into the queue, none is applied: the measure grows by the second.
  check = run_until_exit(with({"check", "--warning", "3s", "--critical", "1h"}), 1);
  EXPECT_NE(check.out.find("OUTBOX WARNING - replica main "), std::string::npos) << check;
  EXPECT_NE(check.out.find("(warning at 3s)"), std::string::npos) << check;
  check = run_until_exit(with({"check", "--warning", "3s", "--critical", "6s"}), 2);
  EXPECT_NE(check.out.find("OUTBOX CRITICAL - replica main "), std::string::npos) << check;
  EXPECT_TRUE(std::regex_search(check.out, std::regex(R"(backlog [1-9]\d*)"))) << "the queued heartbeats: " << check;

  nlohmann::json report = nlohmann::json::parse(run_outbox(with({"lag", "--json"})).out);
  EXPECT_GE(report["replicas"][0]["seconds_behind"].get<double>(), 6.0);
  EXPECT_GE(report["broker"]["queues"][0]["ready"].get<int>(), 1);
  EXPECT_EQ(report["broker"]["queues"][0]["consumers"], 0);
}

// A heartbeat stamped a year ahead (forged, or from a primary whose clock is wrong) is counted and
// logged, and is not stored: the real heartbeats after it and the applied position go on moving
// (replicate.max_clock_skew; before, it froze both, and lag read 0.0s for a year).
TEST(Operations, AHeartbeatFromAYearAheadIsCountedAndLoggedAndFreezesNeitherTheHeartbeatNorTheAppliedPosition) {
  fresh_schema();
  int replicate_port = free_port();
  Pipeline pipeline(0, replicate_port);
  ASSERT_TRUE(eventually([] { return !scalar(servers().replica_url, "SELECT relay FROM outbox_heartbeat").empty(); }));

  publish_heartbeat(now_micros() + 365LL * 24 * 3600 * 1000000, "forged");
  ASSERT_EQ(run_outbox({"create_parking_slot", "--name", "after the forged heartbeat"}).exit_code, 0);
  std::string written = scalar(servers().primary_url, "SELECT created_at FROM outbox WHERE aggregate_type = 'parking_slot'");

  std::string metrics;
  EXPECT_TRUE(eventually(
      [&] {
        metrics = http_get(replicate_port, "/metrics").body;
        return sample(metrics, "outbox_replicate_future_events_total{replica=\"main\"}") == 1;
      },
      30s))
      << metrics;
  EXPECT_NE(pipeline.replicate.log().find("ahead of the replica's clock"), std::string::npos) << pipeline.replicate.log();
  // Heartbeats created after the write reach the row, and the position passes the write.
  EXPECT_TRUE(eventually([&] {
    return scalar(servers().replica_url, "SELECT created_at > '" + written +
                                             "' AND created_at < clock_timestamp() + interval '1 minute' AND relay <> "
                                             "'forged' FROM outbox_heartbeat WHERE replica = 'main'") == "t";
  })) << scalar(servers().replica_url, "SELECT relay || ' ' || created_at FROM outbox_heartbeat");
  EXPECT_TRUE(eventually([&] {
    return scalar(servers().replica_url,
                  "SELECT last_created_at > '" + written +
                      "' AND last_created_at < clock_timestamp() + interval '1 minute' FROM outbox_applied_position") == "t";
  })) << scalar(servers().replica_url, "SELECT last_created_at FROM outbox_applied_position");
  EXPECT_EQ(scalar(servers().replica_url, "SELECT count(*) FROM parking_slots"), "1");
  RunResult check = run_outbox(with({"check", "--warning", "5s", "--critical", "10s"}));
  EXPECT_EQ(check.exit_code, 0) << check;
}

// The replica's own clock measures a stall: even when the newest heartbeat was stamped ahead (a
// primary clock 30 minutes fast, within the allowance), a stopped replicate with events waiting
// goes CRITICAL, and comes back to OK once it runs again. Before, check said "0.0s behind" for the
// 30 minutes.
TEST(Operations, AStoppedReplicateWithEventsWaitingGoesCriticalEvenWhenTheNewestHeartbeatWasStampedAhead) {
  fresh_schema();
  exec(servers().replica_url,
       "INSERT INTO outbox_heartbeat (replica, relay, created_at, applied_at) "
       "VALUES ('main', 'fast clock', clock_timestamp() + interval '30 minutes', clock_timestamp())");
  Daemon relay(with({"relay", "--set", "relay.poll_interval=200ms"}));
  Daemon replicate(with({"replicate", "--set", "replicate.max_clock_skew=1h"}));
  const std::vector<std::string> check_args = with({"check", "--warning", "1s", "--critical", "2s"});
  RunResult check = run_until_exit(check_args, 0);
  ASSERT_EQ(check.exit_code, 0);

  replicate.signal(SIGSTOP);
  for (const char* name : {"A", "B", "C"}) ASSERT_EQ(run_outbox({"create_parking_slot", "--name", name}).exit_code, 0);
  check = run_until_exit(check_args, 2);
  EXPECT_NE(check.out.find("OUTBOX CRITICAL - replica main "), std::string::npos) << check;
  EXPECT_NE(check.out.find("(critical at 2s)"), std::string::npos) << check;

  replicate.signal(SIGCONT);
  EXPECT_TRUE(eventually([] { return scalar(servers().replica_url, "SELECT count(*) FROM parking_slots") == "3"; }, 30s));
  check = run_until_exit(check_args, 0);
}

TEST(Operations, MetricsServeTheNamedCountersAndTheyMove) {
  fresh_schema();
  int relay_port = free_port(), replicate_port = free_port();
  Pipeline pipeline(relay_port, replicate_port);
  Http relay_health, replicate_health;
  EXPECT_TRUE(eventually(
      [&] {
        relay_health = http_get(relay_port, "/healthz");
        replicate_health = http_get(replicate_port, "/healthz");
        return relay_health.status == 200 && replicate_health.status == 200;
      },
      30s))
      << relay_health.status << " " << relay_health.body << "; " << replicate_health.status << " " << replicate_health.body;
  EXPECT_EQ(relay_health.body.rfind("ok: relaying", 0), 0) << relay_health.body;

  const std::string table = "{table=\"public.outbox\"}";
  std::string relay = http_get(relay_port, "/metrics").body;
  std::string replicate = http_get(replicate_port, "/metrics").body;
  for (std::string name :
       {"outbox_relay_published_total" + table, "outbox_relay_confirmed_total" + table, "outbox_relay_parked_total" + table,
        "outbox_relay_batch_seconds_count" + table, std::string("outbox_relay_nacked_total"),
        std::string("outbox_relay_returned_total"), std::string("outbox_relay_reconnects_total"),
        std::string("outbox_relay_vacuums_total"), std::string("outbox_relay_connected{peer=\"database\"}"),
        std::string("outbox_relay_connected{peer=\"broker\"}"), std::string("outbox_relay_partitions_owned"),
        std::string("outbox_relay_unconfirmed_messages"), std::string("outbox_build_info{version=\"0.1.0\"}")})
    EXPECT_GE(sample(relay, name), 0) << name << " missing:\n" << relay;
  for (const char* name :
       {"outbox_replicate_applied_total{replica=\"main\"}", "outbox_replicate_skipped_total{replica=\"main\",reason=\"stale\"}",
        "outbox_replicate_parked_total{replica=\"main\"}", "outbox_replicate_reconnects_total{replica=\"main\"}",
        "outbox_replicate_pruned_total{replica=\"main\"}", "outbox_replicate_batch_seconds_count{replica=\"main\"}",
        "outbox_replicate_connected{replica=\"main\",peer=\"database\"}",
        "outbox_replicate_connected{replica=\"main\",peer=\"broker\"}", "outbox_replicate_unacked_messages{replica=\"main\"}"})
    EXPECT_GE(sample(replicate, name), 0) << name << " missing:\n" << replicate;
  for (const std::string& text : {relay, replicate}) {
    // The kernel counts CPU time in ticks: a daemon that has just started may have used none yet.
    EXPECT_GE(sample(text, "process_cpu_seconds_total"), 0) << "process_cpu_seconds_total missing:\n" << text;
    for (const char* name : {"process_resident_memory_bytes", "process_virtual_memory_bytes", "process_start_time_seconds",
                             "process_open_fds", "process_max_fds"})
      EXPECT_GT(sample(text, name), 0) << name << " missing:\n" << text;
  }
  EXPECT_EQ(sample(relay, "outbox_relay_connected{peer=\"broker\"}"), 1) << relay;
  EXPECT_EQ(sample(relay, "outbox_relay_partitions_owned"), 16) << "the only relay owns every partition:\n" << relay;
  EXPECT_NE(relay.find("# TYPE outbox_relay_batch_seconds histogram"), std::string::npos);
  // The partitioned outbox's gauges, from the relay's first maintenance tick (a second after its start).
  EXPECT_TRUE(eventually([&] {
    return sample(http_get(relay_port, "/metrics").body, "outbox_relay_partitions_ahead" + table) == 2;
  })) << http_get(relay_port, "/metrics").body;
  EXPECT_EQ(sample(http_get(relay_port, "/metrics").body, "outbox_relay_default_partition_in_use" + table), 0);

  double published = sample(relay, "outbox_relay_published_total" + table);
  double applied = sample(replicate, "outbox_replicate_applied_total{replica=\"main\"}");
  for (const char* name : {"A", "B", "C"}) ASSERT_EQ(run_outbox({"create_parking_slot", "--name", name}).exit_code, 0);
  EXPECT_TRUE(eventually(
      [&] {
        relay = http_get(relay_port, "/metrics").body;
        replicate = http_get(replicate_port, "/metrics").body;
        return sample(relay, "outbox_relay_confirmed_total" + table) >= published + 3 &&
               sample(replicate, "outbox_replicate_applied_total{replica=\"main\"}") >= applied + 3 &&
               sample(replicate, "outbox_replicate_lag_seconds{replica=\"main\"}") >= 0 &&
               sample(replicate, "outbox_replicate_parked_events{replica=\"main\"}") == 0;
      },
      30s))
      << relay << replicate;
  EXPECT_GE(sample(relay, "outbox_relay_published_total" + table), published + 3);
  // Unhandled events are a consumer's (an event type with no handler): a replica has no handlers,
  // so it has no such series, before or after its batches.
  EXPECT_EQ(replicate.find("unhandled_total"), std::string::npos) << replicate;
  // The backlog gauges are the owner's: this relay's instance name is its host:pid.
  const std::string owned = "{table=\"public.outbox\",owner=\"";
  for (const char* name : {"outbox_relay_backlog_rows", "outbox_relay_oldest_unpublished_seconds", "outbox_relay_parked_rows"})
    EXPECT_NE(relay.find(name + owned), std::string::npos) << name << " missing:\n" << relay;
}

// While replicate has applied no heartbeat, its lag is unknown: the series is left out (a
// sentinel such as -1 would be averaged and alerted on as a value), and comes once it is known.
TEST(Operations, ReplicateLeavesItsLagOutOfMetricsWhileItIsUnknown) {
  fresh_schema();
  int port = free_port();
  Daemon replicate(with({"replicate", "--set", "metrics.listen=127.0.0.1:" + std::to_string(port)}));
  std::string metrics;
  ASSERT_TRUE(eventually(
      [&] {
        metrics = http_get(port, "/metrics").body;
        return sample(metrics, "outbox_replicate_connected{replica=\"main\",peer=\"database\"}") == 1 &&
               sample(metrics, "outbox_replicate_connected{replica=\"main\",peer=\"broker\"}") == 1;
      },
      30s))
      << metrics << replicate.log();
  EXPECT_NE(metrics.find("# TYPE outbox_replicate_lag_seconds gauge"), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("outbox_replicate_lag_seconds{"), std::string::npos) << "an unknown lag was exported:\n" << metrics;

  publish_heartbeat(now_micros(), "test");
  EXPECT_TRUE(eventually(
      [&] { return sample(metrics = http_get(port, "/metrics").body, "outbox_replicate_lag_seconds{replica=\"main\"}") >= 0; },
      30s))
      << metrics << replicate.log();
}

// Each relay exports the backlog of the partitions it owns, so that a sum over the relays is the
// table's backlog; each used to export the whole table's, and a sum counted every row once per relay.
TEST(Operations, TwoRelaysExportTheBacklogOfTheirOwnPartitionsSoTheirSumIsTheTables) {
  fresh_schema();
  // No LISTEN and a poll once an hour: once the partitions are shared out, rows stay unpublished,
  // and only the rebalancing (every second) reads the backlog gauges.
  const std::vector<std::string> idle = {"--set", "relay.notify_channel=",      "--set", "relay.poll_interval=1h",
                                         "--set", "relay.heartbeat_interval=0", "--set", "relay.takeover_timeout=3s",
                                         "--set", "relay.partitions=4"};
  int port_a = free_port(), port_b = free_port();
  Daemon relay_a(with_args(relay_serving_metrics_on(port_a), with_args({"--instance", "relay-a"}, idle)));
  Daemon relay_b(with_args(relay_serving_metrics_on(port_b), with_args({"--instance", "relay-b"}, idle)));
  std::string a, b;
  ASSERT_TRUE(eventually(
      [&] {
        a = http_get(port_a, "/metrics").body;
        b = http_get(port_b, "/metrics").body;
        return sample(a, "outbox_relay_partitions_owned") == 2 && sample(b, "outbox_relay_partitions_owned") == 2;
      },
      30s))
      << a << b << relay_a.log() << relay_b.log();
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
       "SELECT gen_random_uuid(), 'test', 'agg-' || g, 1, 'test.created', '{}' FROM generate_series(1, 40) g");
  const std::string backlog_a = "outbox_relay_backlog_rows{table=\"public.outbox\",owner=\"relay-a\"}";
  const std::string backlog_b = "outbox_relay_backlog_rows{table=\"public.outbox\",owner=\"relay-b\"}";
  EXPECT_TRUE(eventually(
      [&] {
        a = http_get(port_a, "/metrics").body;
        b = http_get(port_b, "/metrics").body;
        return sample(a, backlog_a) + sample(b, backlog_b) == 40;
      },
      30s))
      << a << b;
  EXPECT_GT(sample(a, backlog_a), 0) << "40 aggregates hash to both relays' partitions:\n" << a;
  EXPECT_GT(sample(b, backlog_b), 0) << b;
}

// The relay counts its backlog on its event loop at every rebalance: an uncapped count of tens of
// millions of rows (about 0.25 s per million here) would stall publishing while it catches up.
// The count stops at relay.backlog_count_limit; the age still comes from the oldest row.
TEST(Operations, TheRelayCountsItsBacklogUpToRelayBacklogCountLimitAndStillReportsTheOldestRowsAge) {
  fresh_schema();
  int port = free_port();
  // No LISTEN and a poll once an hour: rows written after the start stay unpublished, and only the
  // rebalancing (every second) reads the backlog gauges.
  Daemon relay(
      with_args(relay_serving_metrics_on(port),
                {"--instance", "relay-a", "--set", "relay.notify_channel=", "--set", "relay.poll_interval=1h", "--set",
                 "relay.heartbeat_interval=0", "--set", "relay.takeover_timeout=3s", "--set", "relay.backlog_count_limit=25"}));
  std::string metrics;
  ASSERT_TRUE(
      eventually([&] { return sample(metrics = http_get(port, "/metrics").body, "outbox_relay_partitions_owned") == 16; }, 30s))
      << metrics << relay.log();
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, created_at) "
       "VALUES (gen_random_uuid(), 'test', 'agg-0', 1, 'test.created', '{}', clock_timestamp() - interval '1 hour');"
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
       "SELECT gen_random_uuid(), 'test', 'agg-' || g, 1, 'test.created', '{}' FROM generate_series(1, 39) g");
  const std::string owned = "{table=\"public.outbox\",owner=\"relay-a\"}";
  EXPECT_TRUE(eventually(
      [&] {
        metrics = http_get(port, "/metrics").body;
        return sample(metrics, "outbox_relay_backlog_rows" + owned) == 25 &&
               sample(metrics, "outbox_relay_oldest_unpublished_seconds" + owned) >= 3600;
      },
      30s))
      << metrics << relay.log();
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE published_at IS NULL"), "40")
      << "the rows stayed unpublished, so the gauge was capped, not the backlog drained";
}

// The gauge's read is bounded whatever the relay owns: it reads the first backlog_count_limit
// unpublished rows by position and counts its own among them. Limited after the ownership filter,
// a relay owning few partitions (or none) walked the whole backlog at every rebalance.
TEST(Operations, TheBacklogGaugeReadsOnlyTheFirstBacklogCountLimitUnpublishedRowsWhateverTheRelayOwns) {
  fresh_schema();
  // 25 rows of aggregates outside partition 0 of 16 (the relay's hashing), then 15 inside it.
  for (const char* partition_zero : {"<>", "="})
    exec(servers().primary_url,
         "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
         "SELECT gen_random_uuid(), 'test', id, 1, 'test.created', '{}' FROM (SELECT 'agg-' || g AS id, g FROM "
         "generate_series(1, 2000) g WHERE (hashtext('agg-' || g) & 2147483647) % 16 " +
             std::string(partition_zero) + " 0 ORDER BY g LIMIT " + (std::string(partition_zero) == "=" ? "15" : "25") +
             ") a ORDER BY g");
  auto connection = connect(servers().primary_url);
  pqxx::read_transaction tx(connection);
  outbox::lag::OwnedStage zero = outbox::lag::read_owned_table(tx, "public.outbox", 16, "{0}", 25);
  EXPECT_EQ(zero.unpublished, 0) << "partition 0's rows are not among the first 25";
  EXPECT_FALSE(zero.oldest_unpublished_age);
  outbox::lag::OwnedStage others =
      outbox::lag::read_owned_table(tx, "public.outbox", 16, "{1,2,3,4,5,6,7,8,9,10,11,12,13,14,15}", 25);
  EXPECT_EQ(others.unpublished, 25);
  EXPECT_TRUE(others.oldest_unpublished_age);
  outbox::lag::OwnedStage wider = outbox::lag::read_owned_table(tx, "public.outbox", 16, "{0}", 40);
  EXPECT_EQ(wider.unpublished, 15);
  EXPECT_TRUE(wider.oldest_unpublished_age);
  EXPECT_EQ(outbox::lag::read_owned_table(tx, "public.outbox", 16, "{}", 40).unpublished, 0);
}

// A quoted identifier may hold a double quote, a backslash and a newline, and relay.tables takes
// such a name: it reaches /metrics as the table label, where, unescaped, it broke the whole scrape.
TEST(Operations, ATableNameWithAQuoteABackslashAndANewlineIsEscapedInTheMetricsLabel) {
  fresh_schema();
  exec(servers().primary_url, "CREATE TABLE public.\"ev\"\"il\\\nx\" (LIKE public.outbox INCLUDING ALL)");
  std::string config = write_file("hostile-table.toml",
                                  "[[relay.tables]]\nname = \"public.outbox\"\n"
                                  "[[relay.tables]]\nname = \"public.ev\\\"il\\\\\\nx\"\n");
  int port = free_port();
  Daemon relay(relay_serving_metrics_on(port), {{"OUTBOX_CONFIG", config}});
  // The label as the text format writes it: \" for the quote, \\ for the backslash, \n for the newline.
  const std::string escaped = "outbox_relay_published_total{table=\"public.ev\\\"il\\\\\\nx\"}";
  std::string metrics;
  EXPECT_TRUE(eventually(
      [&] {
        metrics = http_get(port, "/metrics").body;  // each body is parsed and linted on the way
        return sample(metrics, escaped) >= 0 && sample(metrics, "outbox_relay_published_total{table=\"public.outbox\"}") >= 0;
      },
      30s))
      << escaped << " missing:\n"
      << metrics << relay.log();
}

TEST(Operations, HealthzIsNotOkWhileTheRelayCannotReachTheBroker) {
  fresh_schema();
  int port = free_port();
  Daemon relay(relay_serving_metrics_on(port), {{"OUTBOX_BROKER_URL", "amqp://outbox:outbox@127.0.0.1:1/"}});
  Http health;
  EXPECT_TRUE(eventually(
      [&] {
        health = http_get(port, "/healthz");
        return health.body.rfind("unhealthy: not connected: waiting for the broker", 0) == 0;
      },
      20s))
      << health.status << " " << health.body;
  EXPECT_EQ(health.status, 503) << health.body;
  EXPECT_EQ(http_get(port, "/metrics").status, 200) << "metrics are served while disconnected";
}

namespace {
long proc_status_kb(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  return -1;
}
size_t open_files(pid_t pid) {
  size_t count = 0;
  std::error_code error;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error))
    ++count;
  return count;
}
}  // namespace

TEST(Operations, TheMetricsPortDropsARequestBodyAndBoundsItsConnections) {
  fresh_schema();
  int port = free_port();
  Daemon relay(relay_serving_metrics_on(port));
  ASSERT_TRUE(eventually([&] { return http_get(port, "/healthz").status == 200; })) << relay.log();
  long peak_before = proc_status_kb(relay.pid(), "VmHWM");

  // 200 MB of body on a GET: read and dropped, never held.
  int fd = connect_local(port);
  ASSERT_GE(fd, 0);
  std::string head = "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n\r\n";
  ASSERT_EQ(send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  std::string chunk(1 << 20, 'x');
  for (int i = 0; i < 200 && send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) > 0; ++i) {
  }
  close(fd);
  EXPECT_LT(proc_status_kb(relay.pid(), "VmHWM") - peak_before, 20 * 1024) << "kB of peak memory added by the body";

  // Silent connections hold a slot each, up to a bound, not a file descriptor per attempt. They
  // come from ten loopback addresses, 15 each: under the 16 per address, over the 64 in all.
  size_t files_before = open_files(relay.pid());
  std::vector<int> idle;
  for (int i = 0; i < 150; ++i) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + static_cast<uint32_t>(i % 10));  // 127.0.0.2 .. 127.0.0.11
    EXPECT_EQ(bind(s, reinterpret_cast<sockaddr*>(&from), sizeof from), 0) << std::strerror(errno);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port));
    connect(s, reinterpret_cast<sockaddr*>(&address), sizeof address);
    idle.push_back(s);
  }
  // A bound needs a window: a second of samples.
  for (auto until = std::chrono::steady_clock::now() + 1s; std::chrono::steady_clock::now() < until;)
    ASSERT_LE(open_files(relay.pid()), files_before + 64) << "the metrics port holds at most 64 connections";
  for (int s : idle) close(s);
  EXPECT_TRUE(eventually([&] { return http_get(port, "/healthz").status == 200; })) << relay.log();
  EXPECT_TRUE(relay.running());
}

namespace {
// A TCP connection to 127.0.0.1:port from the loopback address 127.0.0.`from`, non-blocking once
// connected; -1 if it cannot connect.
int connect_from(int from, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in source{};
  source.sin_family = AF_INET;
  source.sin_addr.s_addr = htonl(INADDR_LOOPBACK - 1 + static_cast<uint32_t>(from));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof source) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

// Whether the server has closed this (non-blocking) connection: an end of stream, or an error.
bool closed_by_server(int fd) {
  char byte;
  ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// Clients that send a request one header line at a time, never going idle, never finishing.
struct SlowClients {
  std::vector<int> fds;
  std::chrono::steady_clock::time_point last_line{};
  ~SlowClients() {
    for (int fd : fds) close(fd);
  }
  void connect(int from, int port) {
    int fd = connect_from(from, port);
    ASSERT_GE(fd, 0) << "connect from 127.0.0." << from << ": " << std::strerror(errno);
    std::string start = "GET /healthz HTTP/1.1\r\n";
    send(fd, start.data(), start.size(), MSG_NOSIGNAL);
    fds.push_back(fd);
  }
  // One more header line on each connection, at most every half second.
  void trickle() {
    if (std::chrono::steady_clock::now() - last_line < 500ms) return;
    last_line = std::chrono::steady_clock::now();
    for (int fd : fds) send(fd, "X-Slow: 1\r\n", 11, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  size_t still_open() const {
    return static_cast<size_t>(std::count_if(fds.begin(), fds.end(), [](int fd) { return !closed_by_server(fd); }));
  }
};
}  // namespace

// Five addresses with 16 slow clients each (80, over the 64 connections libmicrohttpd takes)
// once kept /healthz unanswered for as long as they kept sending.
TEST(Operations, AHealthProbeFromANewAddressIsAnsweredWhileSlowClientsHoldTheMetricsPort) {
  fresh_schema();
  int port = free_port();
  Daemon relay(relay_serving_metrics_on(port));
  ASSERT_TRUE(eventually([&] { return http_get(port, "/healthz").status == 200; })) << relay.log();
  size_t files_before = open_files(relay.pid());

  SlowClients slow;
  for (int from = 2; from <= 6; ++from)
    for (int i = 0; i < 16; ++i) ASSERT_NO_FATAL_FAILURE(slow.connect(from, port));
  // The daemon holds many of them (48 where it closes the oldest beyond them, 64 where it stops
  // accepting; a descriptor of its own may have closed since the count before).
  size_t held_by_daemon = 0;
  ASSERT_TRUE(eventually([&] {
    slow.trickle();
    size_t files = open_files(relay.pid());
    held_by_daemon = files > files_before ? files - files_before : 0;
    return held_by_daemon >= 40;
  })) << held_by_daemon
      << " descriptors more than before";

  int probe = connect_from(7, port);
  ASSERT_GE(probe, 0) << std::strerror(errno);
  std::string request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(send(probe, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  std::string answer;
  bool answered = eventually(
      [&] {
        slow.trickle();
        char buffer[4096];
        for (ssize_t n; (n = recv(probe, buffer, sizeof buffer, MSG_DONTWAIT)) > 0;)
          answer.append(buffer, static_cast<size_t>(n));
        return answer.find("\r\n\r\nok: ") != std::string::npos;
      },
      30s);
  // Counted before anything else can close them: the probe got in while they were held, not
  // after the deadline of their requests closed them all.
  size_t held = slow.still_open();
  close(probe);
  ASSERT_TRUE(answered) << "the probe got: \"" << answer << "\"";
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0) << answer;
  EXPECT_GE(held, 32u) << "slow clients still connected when the probe was answered";
}

// libmicrohttpd's timeout is an idle one: a request sent one line at a time kept its connection
// for ever. Each request now has a total deadline (10 s).
TEST(Operations, ARequestSentSlowlyIsClosedAtItsDeadlineThoughItNeverGoesIdle) {
  fresh_schema();
  int port = free_port();
  Daemon relay(relay_serving_metrics_on(port));
  ASSERT_TRUE(eventually([&] { return http_get(port, "/healthz").status == 200; })) << relay.log();
  SlowClients slow;
  ASSERT_NO_FATAL_FAILURE(slow.connect(2, port));
  EXPECT_TRUE(eventually(
      [&] {
        slow.trickle();
        return slow.still_open() == 0;
      },
      60s));
  EXPECT_TRUE(relay.running());
}

TEST(Operations, AMetricsListenAddressThatIsNotHostAndPortIsAConfigError) {
  RunResult result = run_outbox({"relay", "--set", "metrics.listen=localhost"}, {}, 20s);
  EXPECT_EQ(result.exit_code, 78) << result;
  EXPECT_NE(result.err.find("metrics.listen"), std::string::npos) << result;
}

// Issue 17: after an upgrade the new binary may start before `outbox migrate` ran. Replicate then
// waits (one warning, /healthz not ready, still running) and goes on by itself once the schema is
// there, instead of exiting 78, which systemd does not restart.
TEST(Operations, ReplicateOnAnOlderSchemaWaitsNotReadyAndGoesOnByItselfAfterMigrate) {
  fresh_schema();
  // The replica as before migration 0003: its row and its constraints gone, so that migrate applies it again.
  ASSERT_EQ(outbox::migrate::latest_version(outbox::migrate::Target::replica), 3)
      << "this test undoes the replica's latest migration, 0003; undo the newest one instead";
  exec(servers().replica_url,
       "DELETE FROM schema_migrations WHERE version = 3; ALTER TABLE parking_slots DROP CONSTRAINT parking_slots_name_length, "
       "DROP CONSTRAINT parking_slots_status_valid, DROP CONSTRAINT parking_slots_version_positive");
  int port = free_port();
  Daemon relay(with({"relay", "--set", "relay.poll_interval=200ms"}));
  Daemon replicate({"replicate", "--set", "replicate.max_backoff=500ms", "--set", "log.level=debug", "--set",
                    "metrics.listen=127.0.0.1:" + std::to_string(port)});
  Http health = await_health(port, "waiting for 'outbox migrate'");
  EXPECT_NE(health.body.find("waiting for 'outbox migrate'"), std::string::npos) << health.body << replicate.log();
  EXPECT_EQ(health.status, 503) << health.body;
  RunResult created = run_outbox({"create_parking_slot", "--name", "waited"});
  ASSERT_EQ(created.exit_code, 0) << created;
  // Several attempts, still one warning: it is logged once per change, each retry at debug.
  EXPECT_TRUE(eventually([&] { return occurrences(replicate.log(), "reconnect attempt") >= 3; })) << replicate.log();
  EXPECT_TRUE(replicate.running()) << replicate.log();
  std::string log = replicate.log();
  std::string warning =
      "Z warning replicate main: replica main: schema is at version 2 but this outbox needs 3; run "
      "'outbox migrate'; waiting for it (not ready until then)\n";
  EXPECT_NE(log.find(warning), std::string::npos) << log;
  EXPECT_EQ(log.find(warning), log.rfind(warning)) << log;
  EXPECT_EQ(scalar(servers().replica_url, "SELECT count(*) FROM parking_slots"), "0");

  RunResult migrated = run_outbox({"migrate"});
  ASSERT_EQ(migrated.exit_code, 0) << migrated;
  EXPECT_TRUE(eventually([] {
    return scalar(servers().replica_url, "SELECT count(*) FROM parking_slots WHERE name = 'waited'") == "1";
  })) << replicate.log();
  EXPECT_TRUE(eventually([&] { return http_get(port, "/healthz").status == 200; })) << replicate.log();
  EXPECT_TRUE(replicate.running());
}

// The relay does the same: on a primary whose schema is older than the binary it waits (a
// warning, /healthz 503, nothing published) and goes on by itself once `outbox migrate` ran.
TEST(Operations, TheRelayOnAnOlderSchemaWaitsNotReadyAndGoesOnByItselfAfterMigrate) {
  fresh_schema();
  // The primary as the outbox before this one left it: its newest migration pending.
  int latest = outbox::migrate::latest_version(outbox::migrate::Target::primary);
  primary_at_version(latest - 1);
  int port = free_port();
  Daemon relay(with({"relay", "--set", "relay.poll_interval=200ms", "--set", "relay.max_backoff=500ms", "--set",
                     "metrics.listen=127.0.0.1:" + std::to_string(port)}));
  Daemon replicate(with({"replicate"}));
  Http health = await_health(port, "waiting for 'outbox migrate'");
  EXPECT_NE(health.body.find("waiting for 'outbox migrate'"), std::string::npos) << health.body << relay.log();
  EXPECT_EQ(health.status, 503) << health.body;
  RunResult created = run_outbox({"create_parking_slot", "--name", "waited"});
  ASSERT_EQ(created.exit_code, 0) << created;
  EXPECT_TRUE(relay.running()) << relay.log();
  std::string warning = "primary: schema is at version " + std::to_string(latest - 1) + " but this outbox needs " +
                        std::to_string(latest) + "; run 'outbox migrate'; waiting for it (not ready until then)\n";
  EXPECT_NE(relay.log().find(warning), std::string::npos) << relay.log();
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"), "0");

  RunResult migrated = run_outbox({"migrate"});
  ASSERT_EQ(migrated.exit_code, 0) << migrated;
  EXPECT_TRUE(eventually([] {
    return scalar(servers().replica_url, "SELECT count(*) FROM parking_slots WHERE name = 'waited'") == "1";
  })) << relay.log();
  EXPECT_TRUE(eventually([&] { return http_get(port, "/healthz").status == 200; })) << relay.log();
}

// Issue 17: a line that reaches the journal carries its priority. No journal runs here (systemd is
// not PID 1 and there is no user bus for `systemd-run --user`), so stderr is a file and
// JOURNAL_STREAM names it, as systemd names the journal's stream; a warning of the real binary
// (a password file that group members can read) then starts with <4>, and without a matching
// JOURNAL_STREAM it is the plain line.
TEST(Operations, AWarningOnStderrCarriesItsJournalPriorityOnlyWhenStderrIsTheJournalStream) {
  std::string password = write_file("group-readable.password", "Zq7Xw9Vk\n");
  ASSERT_EQ(::chmod(password.c_str(), 0640), 0);
  std::string config = write_file(
      "journal.toml", "[primary]\nurl = \"postgresql://outbox@127.0.0.1:1/x\"\npassword_file = \"" + password + "\"\n");
  auto stderr_of = [&](const std::string& journal_stream) {
    std::string err = servers().dir + "/journal-stderr.log";
    // $(stat ...) sees the same stderr, so it names its device and inode, as systemd would.
    std::string command = "sh -c 'exec 2>\"$1\"; JOURNAL_STREAM=" + journal_stream +
                          " exec \"$2\" --config \"$3\" config show >/dev/null' sh " + err + " " + OUTBOX_BINARY + " " + config;
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    std::ifstream file(err);
    return std::string(std::istreambuf_iterator<char>(file), {});
  };
  std::string warning = "config: primary.password_file: " + password + " is open to other users than its owner (mode 0640)";
  std::string journal = stderr_of("$(stat -L -c %d:%i /proc/self/fd/2)");
  EXPECT_EQ(journal.rfind("<4>", 0), 0u) << journal;
  EXPECT_NE(journal.find(" warning outbox: " + warning), std::string::npos) << journal;
  std::string elsewhere = stderr_of("1:2");
  EXPECT_EQ(elsewhere.rfind("20", 0), 0u) << elsewhere;
  EXPECT_NE(elsewhere.find(" warning outbox: " + warning), std::string::npos) << elsewhere;
}
