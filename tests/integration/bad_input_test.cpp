// Bad input, all of it: each case gives one clear line, a stable exit code, and writes nothing.
// Commands exit with their sysexits code; a daemon either refuses to start (exit 78: the input can
// never work) or, for a message it receives, parks the event and carries on. The README's
// "Reliability" section has the table of these cases.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"

using namespace outbox::testing;
namespace amqp = outbox::amqp;

namespace {

const std::vector<std::string> kRelay = {"relay", "--set", "relay.heartbeat_interval=0", "--set", "relay.poll_interval=200ms"};
const std::vector<std::string> kReplicate = {"replicate", "--set", "replicate.max_backoff=1s", "--set",
                                             "replicate.max_attempts=1"};

// Each reconnect attempt is logged at debug, so a test can wait for a few of them instead of sleeping.
const std::vector<std::string> kDebugLog = {"--set", "log.level=debug"};

// Lines logged at a level ("<timestamp>Z error ...").
size_t lines_at(const std::string& log, const std::string& level) { return occurrences(log, "Z " + level + " "); }

void fresh_start(bool migrate = true) {
  reset_databases();
  if (migrate) {
    ASSERT_TRUE(migrate_all());
  }
  declare_outbox_exchange(*broker_connection());
  purge_outbox_queues();
}

// What "writes nothing" is checked against: row and event counts on both sides.
std::string written() {
  auto count = [](const std::string& url, const char* table) {
    try {
      return scalar(url, std::string("SELECT count(*) FROM ") + table);
    } catch (const std::exception&) {
      return std::string("none");
    }
  };
  return "primary slots " + count(servers().primary_url, "parking_slots") + ", outbox " + count(servers().primary_url, "outbox") +
         ", replica slots " + count(servers().replica_url, "parking_slots") + ", applied " +
         count(servers().replica_url, "outbox_applied_events");
}

size_t lines(const std::string& text) { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')); }

// Exit code, exactly one line on stderr starting with `prefix` (and containing `part`), nothing on stdout.
void expect_one_line(const RunResult& result, int code, const std::string& prefix, const std::string& part = "") {
  EXPECT_EQ(result.exit_code, code) << result;
  EXPECT_EQ(lines(result.err), 1u) << result;
  EXPECT_EQ(result.err.rfind(prefix, 0), 0u) << "expected stderr to start with: " << prefix << "\n" << result;
  if (!part.empty()) {
    EXPECT_NE(result.err.find(part), std::string::npos) << "expected: " << part << "\n" << result;
  }
  EXPECT_EQ(result.out, "") << result;
}

std::string uuid4(int n) {
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "00000000-0000-4000-8000-%012d", n);
  return buffer;
}

amqp::OutgoingMessage parking_message(const std::string& uuid, const std::string& body, bool with_id = true) {
  amqp::OutgoingMessage message;
  message.exchange = "outbox";
  message.routing_key = "parking.create";
  message.type = "parking.create";
  if (with_id) message.message_id = uuid4(900000 + std::stoi(uuid.substr(24)));
  message.body = body;
  message.headers = {{"aggregate_type", std::string("parking_slot")}, {"aggregate_id", uuid}, {"aggregate_version", 1LL}};
  return message;
}

std::string slot_body(const std::string& uuid, const std::string& name) {
  return nlohmann::json{{"uuid", uuid}, {"name", name}, {"status", "available"}, {"version", 1}}.dump();
}

// A daemon that refuses to start: exit 78 and its last line is the reason; the log lines before it
// (e.g. "starting: ...") are its normal log, not errors.
void expect_refused(const RunResult& result, const std::string& prefix, const std::string& part = "") {
  EXPECT_EQ(result.exit_code, 78) << result;
  std::string text = result.err;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  std::string last = text.substr(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
  EXPECT_EQ(last.rfind(prefix, 0), 0u) << "expected the last line to start with: " << prefix << "\n" << result;
  if (!part.empty()) {
    EXPECT_NE(last.find(part), std::string::npos) << "expected: " << part << "\n" << result;
  }
  size_t reasons = 0;
  for (size_t at = 0; at < result.err.size(); at = result.err.find('\n', at) + 1) {
    if (result.err.compare(at, 8, "outbox: ") == 0) ++reasons;
    if (result.err.find('\n', at) == std::string::npos) break;
  }
  EXPECT_EQ(reasons, 1u) << result;
  EXPECT_EQ(result.out, "") << result;
}

nlohmann::json failed_list() {
  RunResult list = run_outbox({"failed", "list"});
  EXPECT_EQ(list.exit_code, 0) << list;
  nlohmann::json out = nlohmann::json::array();
  size_t at = 0;
  while (at < list.out.size()) {
    size_t end = list.out.find('\n', at);
    out.push_back(nlohmann::json::parse(list.out.substr(at, end - at)));
    at = end + 1;
  }
  return out;
}

// After a poison message and one valid parking slot were published and replicate started: waits
// until the valid slot is applied, then returns the one parked event of `outbox failed list`
// (null, and a test failure, unless exactly one is parked).
nlohmann::json the_one_parked_event() {
  EXPECT_TRUE(eventually([] { return scalar(servers().replica_url, "SELECT count(*) FROM parking_slots") == "1"; }));
  nlohmann::json failed = failed_list();
  EXPECT_EQ(failed.size(), 1u) << failed;
  return failed.size() == 1 ? failed[0] : nlohmann::json();
}

}  // namespace

TEST(BadInput, AMalformedConfigIsExit78WithFileLineAndKeyForEveryCommandAndDaemon) {
  fresh_start();
  std::string before = written();
  struct Case {
    std::string file, content, message;
  } cases[] = {
      {"syntax.toml", "[relay]\nbatch_size = 10\n[primary\n", "syntax.toml:3:"},
      {"type.toml", "[relay]\nbatch_size = \"many\"\n", "type.toml:2:14: relay.batch_size:"},
      {"range.toml", "[relay]\nbatch_size = 0\n", "type.toml"},
      {"unknown.toml", "[relay]\nbatchsize = 10\n", "unknown.toml:2:13: relay.batchsize: unknown configuration option"},
      {"enum.toml", "[relay]\non_publish = \"burn\"\n", "enum.toml:2:14: relay.on_publish:"},
  };
  cases[2].message = "range.toml:2:14: relay.batch_size: must be 1..10000 (got 0)";
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    std::string path = write_file(c.file, c.content);
    for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
             {"create_parking_slot", "--name", "A"}, {"relay"}, {"replicate"}, {"verify"}, {"migrate"}, {"check"}}) {
      args.insert(args.begin(), {"--config", path});
      RunResult result = run_outbox(args, {}, 30s);
      if (args[2] == "check") {  // a Nagios plugin: UNKNOWN and the reason on stdout
        EXPECT_EQ(result.exit_code, 3) << result;
        EXPECT_EQ(result.out.rfind("OUTBOX UNKNOWN - ", 0), 0u) << result;
        EXPECT_NE(result.out.find(c.file), std::string::npos) << result;
        EXPECT_EQ(lines(result.out), 1u) << result;
        continue;
      }
      expect_one_line(result, 78, "outbox: config " + path.substr(0, path.rfind('/') + 1), c.message);
    }
  }
  EXPECT_EQ(written(), before);
}

TEST(BadInput, UsageMistakesAreExit64NamingTheWordAndCheckStaysANagiosPluginWithExit3) {
  expect_one_line(run_outbox({"create_parking_slots", "--name", "A"}), 64,
                  "outbox: usage: unknown command \"create_parking_slots\"");
  expect_one_line(run_outbox({"--config", "/dev/null", "bogus"}), 64, "outbox: usage: unknown command \"bogus\"");
  expect_one_line(run_outbox({"create-parking-slot", "--name"}), 64, "outbox: usage: --name:");
  // Options read only with --all are refused without it, not ignored.
  expect_one_line(run_outbox({"resync", "--uuid", uuid4(1), "--replica", "nope"}), 64, "outbox: usage: --replica requires --all");
  expect_one_line(run_outbox({"resync", "--uuid", uuid4(1), "--timeout", "garbage"}), 64,
                  "outbox: usage: --timeout requires --all");
  expect_one_line(run_outbox({"parking_slot_list", "--max-staleness", ""}), 64, "outbox: --max-staleness: not a duration");
  expect_one_line(run_outbox({"failed", "show", "99999999999999999999"}), 64,
                  "outbox: usage: ID: a failed event id is a positive integer");
  expect_one_line(run_outbox({"lag", "--watch", "1e30"}), 64, "outbox: lag: --watch takes an interval of 0.1 to 86400 seconds");
  // A repeated --replica is one replica.
  RunResult twice = run_outbox({"check", "--replica", "main", "--replica", "main"});
  ASSERT_NE(twice.out.find("lag_main="), std::string::npos) << twice;
  EXPECT_EQ(twice.out.find("lag_main="), twice.out.rfind("lag_main=")) << twice;
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{{"check", "--bogus"}, {"check", "--warning"}}) {
    RunResult result = run_outbox(args);
    EXPECT_EQ(result.exit_code, 3) << result;
    EXPECT_EQ(result.out.rfind("OUTBOX UNKNOWN - usage: ", 0), 0u) << result;
    EXPECT_EQ(lines(result.out), 1u) << result;
  }
}

TEST(BadInput, LagJsonStaysOneJsonDocumentWhenAnErrorTextIsNotUtf8) {
  RunResult result = run_outbox({"--set", "primary.url=postgresql://u@h%FF/db", "lag", "--json"});
  nlohmann::json parsed = nlohmann::json::parse(result.out, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << result;
  EXPECT_NE(parsed["outbox"]["error"].get<std::string>().find("postgresql://u@h%FF/db"), std::string::npos) << result;
  EXPECT_EQ(result.err.find("internal error"), std::string::npos) << result;
}

TEST(BadInput, ConfigCheckRefusesWhatTheDaemonsWouldRefuse) {
  struct Case {
    std::string file, content, message;
  } cases[] = {
      {"bad-table.toml", "[[relay.tables]]\nname = \"a.b.c\"\n", "bad-table.toml:2:8: relay.tables.name: must be a table name"},
      {"bad-mapping.toml", "[[replicate.mappings]]\nevent_type = \"x\"\ntable = \"p.q.r\"\nkey_column = \"id\"\n",
       "bad-mapping.toml:3:9: replicate.mappings.table: must be a table name"},
      {"bad-listen.toml", "[metrics]\nlisten = \"garbage\"\n", "metrics.listen: no port"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    std::string path = write_file(c.file, c.content);
    expect_one_line(run_outbox({"--config", path, "config", "check"}), 78, "outbox: config", c.message);
  }
  expect_one_line(run_outbox({"--config", ::testing::TempDir(), "config", "check"}), 78, "outbox: config ",
                  ": cannot read: is a directory");
}

TEST(BadInput, WrongUrlsAreExit78WhenMalformedAndExit69Or3WhenUnreachable) {
  fresh_start();
  std::string before = written();
  expect_one_line(run_outbox({"create_parking_slot", "--name", "A"}, {{"OUTBOX_PRIMARY_URL", "http://example.com/db"}}), 78,
                  "outbox: config env OUTBOX_PRIMARY_URL: primary.url: must be a postgresql:// URL");
  expect_one_line(run_outbox({"relay"}, {{"OUTBOX_BROKER_URL", "http://example.com/"}}), 78,
                  "outbox: config env OUTBOX_BROKER_URL: broker.url: must be an amqp:// or amqps:// URL");
  expect_one_line(run_outbox({"replicate"}, {{"OUTBOX_REPLICA_URL", "not a url"}}), 78, "outbox: config env OUTBOX_REPLICA_URL:");
  // libpq would quote a malformed password back in its error; such URLs are refused first, unquoted.
  RunResult percent =
      run_outbox({"relay"}, {{"OUTBOX_PRIMARY_URL", "postgresql://outbox:50%off-Secret@127.0.0.1/outbox_primary"}});
  expect_one_line(percent, 78,
                  "outbox: config env OUTBOX_PRIMARY_URL: primary.url: has a '%' that is not followed by two hex digits");
  EXPECT_EQ(percent.err.find("Secret"), std::string::npos) << percent;
  std::string nowhere = "postgresql://outbox:secret@127.0.0.1:1/outbox_primary";
  RunResult create = run_outbox({"create_parking_slot", "--name", "A"}, {{"OUTBOX_PRIMARY_URL", nowhere}});
  expect_one_line(create, 69, "outbox: primary postgresql://outbox:****@127.0.0.1:1/outbox_primary: ", "Connection refused");
  EXPECT_EQ(create.err.find("secret"), std::string::npos);
  expect_one_line(run_outbox({"verify"}, {{"OUTBOX_PRIMARY_URL", nowhere}}), 3, "outbox: verify: primary ");
  expect_one_line(run_outbox({"migrate"}, {{"OUTBOX_PRIMARY_URL", nowhere}}), 69, "outbox: primary ");
  EXPECT_EQ(written(), before);
  // A daemon cannot tell an unreachable server from one that is restarting: it says so once and
  // retries with backoff (issue 3); it does not exit.
  Daemon relay(with_args(kRelay, kDebugLog), {{"OUTBOX_BROKER_URL", "amqp://outbox:secret@127.0.0.1:1/"}});
  EXPECT_TRUE(eventually([&] { return relay.log().find("reconnect attempt 5 ") != std::string::npos; })) << relay.log();
  EXPECT_TRUE(relay.running());
  std::string log = relay.log();
  EXPECT_EQ(lines_at(log, "error"), 1u) << "one line per state change, not one per retry:\n" << log;
  EXPECT_EQ(lines_at(log, "warn"), 0u) << log;
  EXPECT_LE(lines_at(log, "info"), 3u) << log;  // starting, primary connected, and (by now or soon) owning
  EXPECT_NE(log.find("broker unavailable, retrying with backoff: "), std::string::npos) << log;
  EXPECT_EQ(log.find("secret"), std::string::npos) << log;
}

TEST(BadInput, WrongCredentialsAreOneLineWithoutThePasswordAndWriteNothing) {
  fresh_start();
  std::string before = written();
  std::string primary = servers().primary_url, replica = servers().replica_url;
  auto with_password = [](std::string url, const std::string& password) {
    size_t colon = url.find(':', url.find("://") + 3), at = url.find('@');
    return url.replace(colon + 1, at - colon - 1, password);
  };
  RunResult create =
      run_outbox({"create_parking_slot", "--name", "A"}, {{"OUTBOX_PRIMARY_URL", with_password(primary, "wrongpw")}});
  expect_one_line(create, 69, "outbox: primary postgresql://outbox:****@", "password authentication failed for user \"outbox\"");
  EXPECT_EQ(create.err.find("wrongpw"), std::string::npos) << create;
  // libpq tries TLS and then plain text; the same reason is said once.
  EXPECT_EQ(create.err.find("password authentication failed"), create.err.rfind("password authentication failed")) << create;
  expect_one_line(run_outbox({"parking_slot_list"}, {{"OUTBOX_REPLICA_URL", with_password(replica, "wrongpw")}}), 69,
                  "outbox: replica main postgresql://outbox:****@");
  expect_one_line(run_outbox({"verify"}, {{"OUTBOX_REPLICA_URL", with_password(replica, "wrongpw")}}), 3,
                  "outbox: verify: replica main postgresql://outbox:****@", "password authentication failed");
  EXPECT_EQ(written(), before);
  std::string broker = servers().broker_url;
  Daemon relay(with_args(kRelay, kDebugLog), {{"OUTBOX_BROKER_URL", with_password(broker, "wrongpw")}});
  Daemon replicate(with_args(kReplicate, kDebugLog), {{"OUTBOX_REPLICA_URL", with_password(replica, "wrongpw")}});
  Daemon replicate_refused_by_broker(with_args(kReplicate, kDebugLog), {{"OUTBOX_BROKER_URL", with_password(broker, "wrongpw")}});
  for (Daemon* daemon : {&relay, &replicate, &replicate_refused_by_broker}) {
    EXPECT_TRUE(eventually([&] { return daemon->log().find("reconnect attempt 3 ") != std::string::npos; })) << daemon->log();
    EXPECT_TRUE(daemon->running());
    std::string log = daemon->log();
    EXPECT_EQ(log.find("wrongpw"), std::string::npos) << log;
    EXPECT_EQ(lines_at(log, "error"), 1u) << "one line per state change, not one per retry:\n" << log;
    EXPECT_EQ(lines_at(log, "warn"), 0u) << log;
  }
  EXPECT_NE(relay.log().find("ACCESS_REFUSED"), std::string::npos) << relay.log();
  EXPECT_NE(replicate.log().find("password authentication failed"), std::string::npos) << replicate.log();
  EXPECT_NE(replicate_refused_by_broker.log().find("ACCESS_REFUSED"), std::string::npos) << replicate_refused_by_broker.log();
  // The schemas are migrated first; declaring the topology then fails like any unreachable server.
  RunResult migrate = run_outbox({"migrate"}, {{"OUTBOX_BROKER_URL", with_password(broker, "wrongpw")}});
  EXPECT_EQ(migrate.exit_code, 69) << migrate;
  EXPECT_EQ(lines(migrate.err), 1u) << migrate;
  EXPECT_NE(migrate.err.find("ACCESS_REFUSED"), std::string::npos) << migrate;
  EXPECT_EQ(migrate.err.find("wrongpw"), std::string::npos) << migrate;
}

TEST(BadInput, AMissingTableIsExit78NamingItAndTheCure) {
  fresh_start(false);
  expect_one_line(run_outbox({"create_parking_slot", "--name", "A"}), 78,
                  "outbox: primary: parking_slots or the outbox table does not exist; run 'outbox migrate'");
  expect_one_line(run_outbox({"parking_slot_list"}), 78,
                  "outbox: replica main: parking_slots or the outbox table does not exist; run 'outbox migrate'");
  // The same cause gives the same exit code with a freshness check.
  expect_one_line(run_outbox({"parking_slot_list", "--max-staleness", "5s"}), 78,
                  "outbox: replica main: schema not migrated (run 'outbox migrate')");
  expect_one_line(run_outbox({"verify"}), 78, "outbox: primary", "outbox migrate");
  // replicate waits for `outbox migrate` instead (operations_test).
  ASSERT_TRUE(migrate_all());
  // A mapping to a table the replica does not have: replicate refuses to start.
  std::string config =
      write_file("missing-table.toml", "[[replicate.mappings]]\nevent_type = \"parking.create\"\ntable = \"nowhere\"\n");
  expect_refused(run_outbox(kReplicate, {{"OUTBOX_CONFIG", config}}, 30s),
                 "outbox: replica main: replicate.mappings table nowhere does not exist");
  EXPECT_EQ(written(), "primary slots 0, outbox 0, replica slots 0, applied 0");
}

// A command fails at once; replicate waits for `outbox migrate` instead (operations_test).
TEST(BadInput, AReplicaSchemaOlderThanTheBinaryIsExit78ForTheCommands) {
  fresh_start();
  exec(servers().replica_url, "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{{"verify"}, {"failed", "list"}}) {
    SCOPED_TRACE(args[0]);
    expect_one_line(run_outbox(args, {}, 30s), 78, "outbox: replica main: schema is at version ", "run 'outbox migrate'");
  }
  EXPECT_EQ(written(), "primary slots 0, outbox 0, replica slots 0, applied 0");
}

TEST(BadInput, APayloadThatIsNotJsonIsRefusedByThePrimaryAndParkedByReplicate) {
  fresh_start();
  // The outbox's payload column is json: the primary refuses the row (and its transaction).
  EXPECT_THROW(exec(servers().primary_url,
                    "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, "
                    "event_type, payload) VALUES (gen_random_uuid(), 'parking_slot', 'x', 1, "
                    "'parking.create', 'not json')"),
               pqxx::data_exception);
  // From the broker: parked with its reason, and the next event still applies.
  auto connection = broker_connection();
  connection->publish(parking_message(uuid4(1), "{\"uuid\": \"" + uuid4(1) + "\", \"name\": "));
  connection->publish(parking_message(uuid4(2), slot_body(uuid4(2), "fine")));
  Daemon replicate(kReplicate);
  nlohmann::json parked = the_one_parked_event();
  ASSERT_FALSE(parked.is_null());
  EXPECT_EQ(parked["state"], "parked");
  EXPECT_EQ(parked["aggregate_id"], uuid4(1));
  EXPECT_EQ(parked["error"].get<std::string>().rfind("malformed JSON body", 0), 0u) << parked;
  EXPECT_EQ(scalar(servers().replica_url, "SELECT count(*) FROM parking_slots WHERE uuid = '" + uuid4(1) + "'"), "0");
}

TEST(BadInput, AMessageWithoutMessageIdIsParkedAndBlocksNothing) {
  fresh_start();
  auto connection = broker_connection();
  connection->publish(parking_message(uuid4(3), slot_body(uuid4(3), "no id"), false));
  connection->publish(parking_message(uuid4(4), slot_body(uuid4(4), "fine")));
  Daemon replicate(kReplicate);
  nlohmann::json parked = the_one_parked_event();
  ASSERT_FALSE(parked.is_null());
  EXPECT_EQ(parked["error"], "missing message_id (the event id)");
  EXPECT_EQ(scalar(servers().replica_url, "SELECT count(*) FROM parking_slots WHERE uuid = '" + uuid4(3) + "'"), "0");
}

TEST(BadInput, ATenMegabytePayloadIsRefusedByTheCliAndParkedByTheReplicaWhichStaysUsable) {
  fresh_start();
  // 10 MB cannot even be an argument (Linux caps one at 128 kB); 100 kB is refused like 201 characters.
  expect_one_line(run_outbox({"create_parking_slot", "--name", std::string(100000, 'x')}), 65,
                  "outbox: invalid name: 100000 characters, at most 200 allowed");
  EXPECT_EQ(written(), "primary slots 0, outbox 0, replica slots 0, applied 0");
  // A forged 10 MB event in the outbox: the relay publishes it byte for byte, the replica's checks
  // (the same as the primary's) refuse it, replicate parks it whole and carries on.
  std::string huge(10 * 1024 * 1024, 'y');
  exec(servers().primary_url,
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
       "VALUES (gen_random_uuid(), 'parking_slot', '" +
           uuid4(5) +
           "', 1, 'parking.create', json_build_object("
           "'uuid', '" +
           uuid4(5) + "', 'name', repeat('y', " + std::to_string(huge.size()) +
           "), "
           "'status', 'available', 'version', 1))");
  Daemon relay(kRelay);
  Daemon replicate(kReplicate);
  ASSERT_TRUE(eventually([] { return scalar(servers().replica_url, "SELECT count(*) FROM outbox_failed_events") == "1"; }, 60s))
      << replicate.log();
  EXPECT_EQ(scalar(servers().replica_url, "SELECT length(body) > 10485760 FROM outbox_failed_events"), "t");
  EXPECT_NE(scalar(servers().replica_url, "SELECT error FROM outbox_failed_events").find("parking_slots_name_length"),
            std::string::npos);
  RunResult created = run_outbox({"create_parking_slot", "--name", "after the big one"});
  ASSERT_EQ(created.exit_code, 0) << created;
  EXPECT_TRUE(eventually([] { return scalar(servers().replica_url, "SELECT count(*) FROM parking_slots") == "1"; }))
      << replicate.log();
  EXPECT_TRUE(relay.running());
  EXPECT_TRUE(replicate.running());
}

TEST(BadInput, InvalidUuidsNamesAndStatusesAreExit65OrUsage64WithOneLineAndWriteNothing) {
  fresh_start();
  RunResult created = run_outbox({"create_parking_slot", "--name", "A"});
  ASSERT_EQ(created.exit_code, 0) << created;
  std::string uuid = created.out.substr(8, 36);
  std::string before = written();
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string prefix;
  } cases[] = {
      {{"parking_slot_details", "--uuid", "42", "--from", "primary"}, 65, "outbox: invalid uuid \"42\": must look like"},
      {{"update_parking_slot", "--uuid", "' OR 1=1 --", "--status", "blocked"}, 65, "outbox: invalid uuid \"' OR 1=1 --\""},
      {{"delete_parking_slot", "--uuid", uuid.substr(0, 35)}, 65, "outbox: invalid uuid"},
      {{"delete_parking_slot", "--uuid", uuid + "0"}, 65, "outbox: invalid uuid"},
      {{"delete_parking_slot", "--uuid", "00000000-0000-4000-8000-000000000000"},
       65,
       "outbox: parking slot 00000000-0000-4000-8000-000000000000 not found"},
      {{"resync", "--uuid", "zzz"}, 65, "outbox: invalid uuid \"zzz\""},
      {{"create_parking_slot", "--name", ""}, 65, "outbox: invalid name: must not be empty"},
      {{"create_parking_slot", "--name", std::string(201, 'n')}, 65, "outbox: invalid name: 201 characters, at most 200 allowed"},
      {{"create_parking_slot", "--name", "tab\there"}, 65, "outbox: invalid name: contains the control character U+0009"},
      {{"create_parking_slot", "--name", "bad \xff utf8"}, 65, "outbox: invalid name: not valid UTF-8 (byte 5)"},
      {{"update_parking_slot", "--uuid", uuid, "--name", std::string(201, 'n')}, 65, "outbox: invalid name: 201 characters"},
      {{"update_parking_slot", "--uuid", uuid, "--status", "open"}, 65, "outbox: invalid status \"open\""},
      {{"create_parking_slot"}, 64, "outbox: usage: "},
      {{"create_parking_slot", "--name", "A", "--colour", "red"}, 64, "outbox: usage: "},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args[0] + " " + (c.args.size() > 2 ? c.args[2] : ""));
    expect_one_line(run_outbox(c.args), c.code, c.prefix);
  }
  EXPECT_EQ(written(), before);
}

TEST(BadInput, SqlMetacharactersAndUnicodeInNamesRoundTripExactlyThroughTheWholePipeline) {
  fresh_start();
  // Heartbeats on: verify's consistent point needs an event newer than its start.
  Daemon relay({"relay", "--set", "relay.heartbeat_interval=1s", "--set", "relay.poll_interval=200ms"});
  Daemon replicate(kReplicate);
  const std::vector<std::string> names = {
      "Robert'); DROP TABLE parking_slots;--",
      "50% off_ \\ \"quoted\" $1 $$dollar$$ ; -- /* */",
      "駐車場 🚗 Ünïcödé — \u202Eright-to-left",
      "emoji 👩‍👩‍👧 and combining e\xcc\x81",
      "' OR '1'='1",
      std::string(200, 'z'),
      "  leading and trailing spaces  ",
  };
  std::map<std::string, std::string> by_uuid;
  for (const std::string& name : names) {
    RunResult created = run_outbox({"create_parking_slot", "--name", name, "--status", "reserved"});
    ASSERT_EQ(created.exit_code, 0) << created;
    EXPECT_EQ(created.out.substr(45), "name:   " + name + "\nstatus: reserved\n");
    by_uuid[created.out.substr(8, 36)] = name;
  }
  ASSERT_TRUE(eventually([&] {
    return scalar(servers().replica_url, "SELECT count(*) FROM parking_slots") == std::to_string(names.size());
  })) << replicate.log();
  RunResult list = run_outbox({"parking_slot_list"});
  ASSERT_EQ(list.exit_code, 0) << list;
  size_t seen = 0, at = 0;
  while (at < list.out.size()) {
    size_t end = list.out.find('\n', at);
    nlohmann::json slot = nlohmann::json::parse(list.out.substr(at, end - at));
    EXPECT_EQ(slot["name"].get<std::string>(), by_uuid[slot["uuid"].get<std::string>()]);
    ++seen;
    at = end + 1;
  }
  EXPECT_EQ(seen, names.size());
  for (const auto& [uuid, name] : by_uuid) {
    RunResult details = run_outbox({"parking_slot_details", "--uuid", uuid});
    EXPECT_EQ(details.out, "uuid:   " + uuid + "\nname:   " + name + "\nstatus: reserved\n") << details;
    EXPECT_EQ(scalar(servers().replica_url, "SELECT name FROM parking_slots WHERE uuid = '" + uuid + "'"), name);
  }
  RunResult verify = run_outbox({"verify"}, {}, 90s);
  EXPECT_EQ(verify.exit_code, 0) << verify;
}

TEST(BadInput, AnUnknownSubcommandIsNamedWithTheSubcommandsItsCommandTakes) {
  RunResult bogus = run_outbox({"failed", "bogus"});
  EXPECT_EQ(bogus.exit_code, 64) << bogus;
  EXPECT_EQ(bogus.err,
            "outbox: usage: unknown failed subcommand \"bogus\" (expected list, show, retry, discard) (see outbox failed "
            "--help)\n");
  RunResult both = run_outbox({"failed", "list", "--relay", "--replica", "main"});
  EXPECT_EQ(both.exit_code, 64) << both;
  EXPECT_NE(both.err.find("--replica excludes --relay"), std::string::npos) << both;
}
