// outbox verify and outbox resync against a real pipeline: equal, drift of each kind (missing,
// extra, different), chunking, the recheck under concurrent writes, unreachable databases, the
// consistent-point deadline, resync repairing drift through the outbox (of parking_slots and of
// another mapped table), and the progress line on a terminal.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <thread>

#include "examples/parking/parking.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"

using namespace outbox::testing;
namespace parking = outbox::parking;

namespace {

const std::vector<std::string> kRelay = {"relay", "--set", "relay.heartbeat_interval=1s", "--set", "relay.poll_interval=200ms"};
const std::vector<std::string> kReplicate = {"replicate", "--set", "replicate.max_backoff=1s"};

std::vector<std::string> create_slots(int n, const std::string& prefix = "slot") {
  auto connection = connect(servers().primary_url);
  std::vector<std::string> uuids;
  for (int i = 0; i < n; ++i) {
    pqxx::work tx(connection);
    uuids.push_back(parking::create(tx, prefix + "-" + std::to_string(i)).uuid);
    tx.commit();
  }
  return uuids;
}

std::vector<std::vector<std::string>> slots(const std::string& url) {
  return rows(url, "SELECT uuid::text, name, status, version::text FROM parking_slots ORDER BY uuid");
}

bool converged() { return slots(servers().replica_url) == slots(servers().primary_url); }

// Empty databases first: a base, so that it comes before the daemons start.
struct FreshSchema {
  FreshSchema() { fresh_schema(); }
};

// Empty databases, the relay and replicate running, and `slots` parking slots created on the
// primary (`uuids`); `replicated` says whether the replica had them all by `deadline`.
struct ConvergedPipeline : FreshSchema {
  explicit ConvergedPipeline(int slots, std::chrono::milliseconds deadline = 30s)
      : uuids(create_slots(slots)), replicated(eventually(converged, deadline)) {}
  Daemon relay{kRelay};
  Daemon replicate{kReplicate};
  std::vector<std::string> uuids;
  bool replicated;
};

// A run with stderr on a pseudo-terminal (as in an interactive shell) and stdout into a file.
struct TerminalRun {
  int exit_code = -1;
  std::string out;       // stdout
  std::string terminal;  // what the terminal received: stderr
};

TerminalRun run_on_terminal(const std::vector<std::string>& args, const std::map<std::string, std::string>& extra_env = {}) {
  std::string out_path = servers().dir + "/terminal-run.out";
  std::vector<std::string> argv = {OUTBOX_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> env;
  for (const auto& [key, value] : outbox_env(extra_env)) env.push_back(key + "=" + value);
  std::vector<char*> argv_pointers, env_pointers;
  for (std::string& arg : argv) argv_pointers.push_back(arg.data());
  for (std::string& entry : env) env_pointers.push_back(entry.data());
  argv_pointers.push_back(nullptr);
  env_pointers.push_back(nullptr);
  winsize size{};
  size.ws_row = 24;
  size.ws_col = 200;
  int master = -1;
  pid_t pid = forkpty(&master, nullptr, nullptr, &size);
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int in = open("/dev/null", O_RDONLY);
    if (out < 0 || in < 0 || dup2(out, STDOUT_FILENO) < 0 || dup2(in, STDIN_FILENO) < 0 || chdir(servers().dir.c_str()) != 0)
      _exit(127);
    execve(argv_pointers[0], argv_pointers.data(), env_pointers.data());
    _exit(127);
  }
  TerminalRun run;
  if (pid < 0) {
    ADD_FAILURE() << "forkpty: " << std::strerror(errno);
    return run;
  }
  // Until the child closes the terminal (read fails with EIO) or two minutes pass.
  auto deadline = std::chrono::steady_clock::now() + 120s;
  char buffer[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd ready{master, POLLIN, 0};
    if (poll(&ready, 1, 200) <= 0) continue;
    ssize_t n = read(master, buffer, sizeof buffer);
    if (n <= 0) break;
    run.terminal.append(buffer, static_cast<size_t>(n));
  }
  close(master);
  int status = 0;
  if (std::chrono::steady_clock::now() >= deadline) kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream file(out_path);
  run.out.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  return run;
}

std::ostream& operator<<(std::ostream& stream, const TerminalRun& run) {
  return stream << "exit " << run.exit_code << "\n--- stdout:\n" << run.out << "--- terminal:\n" << run.terminal;
}

size_t count_lines(const std::string& text, const std::string& prefix) {
  size_t n = 0, at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    if (text.compare(at, prefix.size(), prefix) == 0) ++n;
    at = end + 1;
  }
  return n;
}

}  // namespace

TEST(Verify, AnEqualReplicaExitsZeroWithOneSummaryLine) {
  fresh_schema();
  Daemon relay(kRelay);
  Daemon replicate(kReplicate);
  create_slots(40);
  RunResult verify = run_outbox({"verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify;
  EXPECT_NE(verify.out.find("verify: replica main equals the primary: parking_slots 40 rows on the primary, 40 on the replica"),
            std::string::npos)
      << verify;
  EXPECT_EQ(count_lines(verify.out, ""), 1u) << verify;
  // It waited for the replica, so the replica has everything without any other wait.
  EXPECT_TRUE(converged());
}

TEST(Verify, DriftOfEachKindIsOneLineAndExitOneAndResyncAllRepairsIt) {
  ConvergedPipeline pipeline(30);
  ASSERT_TRUE(pipeline.replicated);
  const std::vector<std::string>& uuids = pipeline.uuids;
  // Drift made behind the pipeline's back: a changed row, a lost row, a row the primary never had,
  // and a row deleted on the primary without an event.
  exec(servers().replica_url, "UPDATE parking_slots SET status = 'blocked' WHERE uuid = '" + uuids[3] + "'");
  exec(servers().replica_url, "DELETE FROM parking_slots WHERE uuid = '" + uuids[7] + "'");
  std::string stranger = "0badf00d-0000-4000-8000-000000000001";
  exec(servers().replica_url, "INSERT INTO parking_slots VALUES ('" + stranger + "', 'stranger', 'available', 1)");
  exec(servers().primary_url, "DELETE FROM parking_slots WHERE uuid = '" + uuids[9] + "'");

  RunResult verify = run_outbox({"verify", "--chunk-rows", "7"});
  EXPECT_EQ(verify.exit_code, 1) << verify;
  EXPECT_NE(verify.out.find("different parking_slots uuid=" + uuids[3] +
                            ": primary {\"name\": \"slot-3\", \"status\": \"available\", \"version\": 1}, replica main "
                            "{\"name\": \"slot-3\", \"status\": \"blocked\", \"version\": 1}"),
            std::string::npos)
      << verify;
  EXPECT_NE(verify.out.find("missing parking_slots uuid=" + uuids[7] + ": primary {\"name\": \"slot-7\""), std::string::npos)
      << verify;
  EXPECT_NE(verify.out.find("extra parking_slots uuid=" + stranger + ": primary (none), replica main {\"name\": \"stranger\""),
            std::string::npos)
      << verify;
  EXPECT_NE(verify.out.find("extra parking_slots uuid=" + uuids[9]), std::string::npos) << verify;
  EXPECT_NE(verify.out.find("differs from the primary in 4 row(s) (1 missing, 2 extra, 1 different)"), std::string::npos)
      << verify;
  EXPECT_NE(verify.out.find("5 chunk(s)"), std::string::npos) << verify;

  RunResult json = run_outbox({"verify", "--json"});
  EXPECT_EQ(json.exit_code, 1) << json;
  nlohmann::json document = nlohmann::json::parse(json.out);
  EXPECT_EQ(document["equal"], false);
  EXPECT_EQ(document["differences"].size(), 4u);
  EXPECT_EQ(document["tables"][0]["primary_rows"], 29);
  EXPECT_EQ(document["tables"][0]["replica_rows"], 30);

  RunResult resync = run_outbox({"resync", "--all"});
  EXPECT_EQ(resync.exit_code, 0) << resync;
  EXPECT_NE(resync.out.find("resynced " + uuids[3] + ": parking.update v2"), std::string::npos) << resync;
  EXPECT_NE(resync.out.find("resynced " + stranger + ": parking.delete v2"), std::string::npos) << resync;
  EXPECT_NE(resync.out.find("resynced " + uuids[9] + ": parking.delete v2"), std::string::npos) << resync;
  EXPECT_NE(resync.out.find("resync: 4 row(s) resynced (2 parking.update, 2 parking.delete)"), std::string::npos) << resync;

  RunResult again = run_outbox({"verify"});
  EXPECT_EQ(again.exit_code, 0) << again;
  EXPECT_TRUE(converged());
  // Through the normal path: four more events in the outbox, nothing truncated on the replica.
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE aggregate_type = 'parking_slot'"), "34");
  EXPECT_EQ(scalar(servers().primary_url, "SELECT version FROM parking_slots WHERE uuid = '" + uuids[7] + "'"), "2");
}

TEST(Verify, ResyncOfChosenUuidsBeatsAReplicaVersionThatIsAheadOfThePrimary) {
  ConvergedPipeline pipeline(3);
  ASSERT_TRUE(pipeline.replicated);
  const std::vector<std::string>& uuids = pipeline.uuids;
  // The replica is ahead (say the primary was restored from a backup): version 9 with other data.
  exec(servers().replica_url, "UPDATE parking_slots SET name = 'future', version = 9 WHERE uuid = '" + uuids[0] + "'");
  exec(servers().replica_url, "UPDATE outbox_aggregate_versions SET version = 9 WHERE aggregate_id = '" + uuids[0] + "'");
  RunResult resync = run_outbox({"resync", "--uuid", uuids[0], "--uuid", parking::normalize_uuid(uuids[0])});
  EXPECT_EQ(resync.exit_code, 0) << resync;
  EXPECT_EQ(resync.out, "resynced " + uuids[0] +
                            ": parking.update v10\nresync: 1 row(s) resynced (1 parking.update, 0 parking.delete) "
                            "through public.outbox; every replica applies them\n");
  EXPECT_TRUE(eventually(converged)) << pipeline.replicate.log();
  EXPECT_EQ(scalar(servers().replica_url, "SELECT name FROM parking_slots WHERE uuid = '" + uuids[0] + "'"), "slot-0");
}

// resync repairs each row on its own: a row it cannot repair (a replica already at the largest
// valid version, or a write the primary refuses) is named on one line each and the exit is 65,
// while every other row is repaired. No version outside 1 .. 2^53-1 is ever written, even when a
// replica holds one (left by an older replicate): a version within the range beats it. Before, a
// replica at 2^63-1 made `max + 1` overflow (exit 70, the whole chunk rolled back), and a replica
// at 2^62 had its version copied onto the primary.
TEST(Verify, ResyncRepairsEachRowOnItsOwnNamesEveryRowItCannotAndNeverWritesAVersionOutsideTheRange) {
  ConvergedPipeline pipeline(6);
  ASSERT_TRUE(pipeline.replicated);
  const std::vector<std::string>& uuids = pipeline.uuids;
  auto drift = [](const std::string& uuid, long long version) {
    std::string v = std::to_string(version);
    exec(servers().replica_url, "UPDATE parking_slots SET name = 'drifted', version = " + v + " WHERE uuid = '" + uuid +
                                    "'; UPDATE outbox_aggregate_versions SET version = " + v + " WHERE aggregate_id = '" + uuid +
                                    "'");
  };
  drift(uuids[0], std::numeric_limits<long long>::max());
  drift(uuids[1], 1LL << 62);
  drift(uuids[2], (1LL << 53) - 1);
  drift(uuids[3], 1);
  drift(uuids[4], 1);
  exec(servers().primary_url,
       "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by a test trigger' "
       "USING ERRCODE = 'check_violation'; END $$; CREATE TRIGGER refuse BEFORE UPDATE ON parking_slots FOR EACH ROW WHEN "
       "(OLD.uuid = '" +
           uuids[4] + "') EXECUTE FUNCTION refuse()");
  const std::string top = "outbox: resync: parking slot " + uuids[2] +
                          " cannot be repaired: replica main has version 9007199254740991, the largest valid one, so no "
                          "newer version can beat it (delete its rows from outbox_aggregate_versions and parking_slots "
                          "there, then resync it again)\n";
  const std::string refused =
      "outbox: resync: parking slot " + uuids[4] + " cannot be repaired: primary: refused by a test trigger\n";

  RunResult resync =
      run_outbox({"resync", "--uuid", uuids[0], "--uuid", uuids[1], "--uuid", uuids[2], "--uuid", uuids[3], "--uuid", uuids[4]});
  EXPECT_EQ(resync.exit_code, 65) << resync;
  EXPECT_EQ(resync.out, "resynced " + uuids[0] + ": parking.update v2\nresynced " + uuids[1] + ": parking.update v2\nresynced " +
                            uuids[3] +
                            ": parking.update v2\nresync: 3 row(s) resynced (3 parking.update, 0 parking.delete) through "
                            "public.outbox; every replica applies them\n")
      << resync;
  EXPECT_EQ(resync.err, top + refused) << resync;
  EXPECT_EQ(rows(servers().primary_url, "SELECT version::text FROM parking_slots ORDER BY name"),
            (std::vector<std::vector<std::string>>{{"2"}, {"2"}, {"1"}, {"2"}, {"1"}, {"1"}}));
  EXPECT_EQ(
      scalar(servers().primary_url, "SELECT count(*) FROM outbox WHERE aggregate_version NOT BETWEEN 1 AND 9007199254740991"),
      "0");
  for (size_t i : {0, 1, 3})
    EXPECT_TRUE(eventually([&] {
      return scalar(servers().replica_url, "SELECT name || ' ' || version FROM parking_slots WHERE uuid = '" + uuids[i] + "'") ==
             "slot-" + std::to_string(i) + " 2";
    })) << pipeline.replicate.log();

  // --all: verify finds the two rows still drifted and a new drift, which is repaired.
  exec(servers().replica_url, "UPDATE parking_slots SET status = 'blocked' WHERE uuid = '" + uuids[5] + "'");
  RunResult all = run_outbox({"resync", "--all"});
  EXPECT_EQ(all.exit_code, 65) << all;
  EXPECT_NE(all.out.find("resynced " + uuids[5] + ": parking.update v2\n"), std::string::npos) << all;
  // In verify's order (by uuid), one line each.
  EXPECT_TRUE(all.err == top + refused || all.err == refused + top) << all;
  EXPECT_TRUE(eventually([&] {
    return scalar(servers().replica_url, "SELECT status FROM parking_slots WHERE uuid = '" + uuids[5] + "'") == "available";
  })) << pipeline.replicate.log();
}

TEST(Verify, ResyncRejectsBadUuidsAndReportsUnknownOnesWithoutWriting) {
  fresh_schema();
  std::string before = scalar(servers().primary_url, "SELECT count(*) FROM outbox");
  RunResult bad = run_outbox({"resync", "--uuid", "42"});
  EXPECT_EQ(bad.exit_code, 65) << bad;
  EXPECT_EQ(bad.err, "outbox: invalid uuid \"42\": must look like 3f0c1d2e-4b5a-6978-8a9b-0c1d2e3f4a5b\n");
  RunResult none = run_outbox({"resync"});
  EXPECT_EQ(none.exit_code, 64) << none;
  RunResult both = run_outbox({"resync", "--all", "--uuid", "0badf00d-0000-4000-8000-000000000001"});
  EXPECT_EQ(both.exit_code, 64) << both;
  RunResult unknown = run_outbox({"resync", "--uuid", "0badf00d-0000-4000-8000-000000000001"});
  EXPECT_EQ(unknown.exit_code, 65) << unknown;
  EXPECT_EQ(unknown.out, "") << "nothing was resynced, so no summary says so: " << unknown;
  EXPECT_EQ(unknown.err,
            "outbox: resync: parking slot 0badf00d-0000-4000-8000-000000000001 is on neither the primary nor any "
            "replica; nothing to resync\n");
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM outbox"), before);
}

TEST(Verify, ResyncRefusesToWriteWhenAReplicaCannotBeRead) {
  fresh_schema();
  std::vector<std::string> uuids = create_slots(1);
  std::string before = scalar(servers().primary_url, "SELECT count(*) FROM outbox");
  RunResult resync =
      run_outbox({"resync", "--uuid", uuids[0]}, {{"OUTBOX_REPLICA_URL", "postgresql://outbox@127.0.0.1:1/nowhere"}});
  EXPECT_EQ(resync.exit_code, 69) << resync;
  EXPECT_EQ(resync.err.rfind("outbox: replica main postgresql://outbox@127.0.0.1:1/nowhere: ", 0), 0u) << resync;
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM outbox"), before);
}

TEST(Verify, AnUnreachableDatabaseIsExitThreeWithOneLineNamingIt) {
  fresh_schema();
  RunResult replica = run_outbox({"verify"}, {{"OUTBOX_REPLICA_URL", "postgresql://outbox@127.0.0.1:1/nowhere"}});
  EXPECT_EQ(replica.exit_code, 3) << replica;
  EXPECT_EQ(replica.err.rfind("outbox: verify: replica main postgresql://outbox@127.0.0.1:1/nowhere: ", 0), 0u) << replica;
  EXPECT_EQ(count_lines(replica.err, ""), 1u) << replica;
  RunResult primary = run_outbox({"verify"}, {{"OUTBOX_PRIMARY_URL", "postgresql://outbox:secret@127.0.0.1:1/nowhere"}});
  EXPECT_EQ(primary.exit_code, 3) << primary;
  EXPECT_EQ(primary.err.rfind("outbox: verify: primary postgresql://outbox:****@127.0.0.1:1/nowhere: ", 0), 0u) << primary;
  EXPECT_EQ(primary.err.find("secret"), std::string::npos) << primary;
}

TEST(Verify, WithoutARelayThereIsNoConsistentPointAndVerifyExits75NamingTheRelay) {
  fresh_schema();
  create_slots(2);
  RunResult verify = run_outbox({"verify", "--timeout", "1s"});
  EXPECT_EQ(verify.exit_code, 75) << verify;
  EXPECT_EQ(verify.err,
            "outbox: verify: the relay has not published public.outbox up to position 2 within 1s (2 rows still "
            "unpublished); is outbox relay running? (see outbox lag)\n");
  // The relay is there, replicate is not.
  Daemon relay(kRelay);
  RunResult stuck = run_outbox({"verify", "--timeout", "3s"});
  EXPECT_EQ(stuck.exit_code, 75) << stuck;
  EXPECT_NE(stuck.err.find("replica main has not applied an event created after"), std::string::npos) << stuck;
}

TEST(Verify, ConcurrentWritesDuringTheCompareAreRecheckedAndNotReportedAsDrift) {
  ConvergedPipeline pipeline(400, 60s);
  ASSERT_TRUE(pipeline.replicated);
  const std::vector<std::string>& uuids = pipeline.uuids;
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::thread writer;
  // Stopped and joined however the test body ends (a joinable thread's destructor would abort).
  struct StopWriter {
    std::atomic<bool>& stop;
    std::thread& writer;
    ~StopWriter() {
      stop = true;
      if (writer.joinable()) writer.join();
    }
  } stop_writer{stop, writer};
  writer = std::thread([&] {
    auto connection = connect(servers().primary_url);
    const char* statuses[] = {"available", "blocked", "reserved"};
    for (size_t i = 0; !stop; ++i) {
      pqxx::work tx(connection);
      parking::update(tx, uuids[(i * 37) % uuids.size()], std::nullopt, std::string(statuses[i % 3]));
      tx.commit();
      ++writes;
    }
  });
  // Small chunks: the compare takes long enough to see many writes in flight. A run that happened
  // to see none in flight proves nothing about the recheck, so it is run again (a few times at most).
  nlohmann::json document;
  for (int run = 0; run < 5 && !::testing::Test::HasFailure(); ++run) {
    RunResult verify = run_outbox({"verify", "--chunk-rows", "10", "--json"});
    ASSERT_EQ(verify.exit_code, 0) << verify;
    document = nlohmann::json::parse(verify.out);
    EXPECT_EQ(document["tables"][0]["chunks"], 41);
    EXPECT_EQ(document["tables"][0]["rechecked"], document["tables"][0]["settled"]);
    if (document["tables"][0]["rechecked"].get<long long>() > 0) break;
  }
  stop = true;
  writer.join();
  EXPECT_GT(writes.load(), 0);
  EXPECT_GT(document["tables"][0]["rechecked"].get<long long>(), 0) << "no run saw a write in flight";
  std::cerr << "[verify] " << writes << " concurrent writes, " << document["tables"][0]["rechecked"] << " rows rechecked\n";
}

TEST(Verify, AnotherMappedTableIsComparedByItsOwnKeyAndColumns) {
  fresh_schema();
  for (const std::string* url : {&servers().primary_url, &servers().replica_url})
    exec(*url, "CREATE TABLE \"Odd; Table\" (id bigint PRIMARY KEY, \"weird \"\"col\" text, payload jsonb, at timestamptz)");
  exec(servers().primary_url,
       "INSERT INTO \"Odd; Table\" SELECT g, 'v' || g, jsonb_build_object('g', g), '2024-01-01T00:00:00Z' "
       "FROM generate_series(1, 50) g");
  exec(servers().replica_url,
       "SET TimeZone = 'Asia/Tokyo'; INSERT INTO \"Odd; Table\" SELECT g, 'v' || g, "
       "jsonb_build_object('g', g), '2024-01-01T09:00:00+09' FROM generate_series(1, 50) g WHERE g <> 17");
  exec(servers().replica_url, "UPDATE \"Odd; Table\" SET payload = '{\"g\": 0}' WHERE id = 33");
  Daemon relay(kRelay);
  Daemon replicate(kReplicate);
  RunResult verify = run_outbox({"verify", "--table", "Odd; Table", "--key", "id", "--chunk-rows", "8"});
  EXPECT_EQ(verify.exit_code, 1) << verify;
  EXPECT_NE(verify.out.find("missing Odd; Table id=17: primary {\"weird \\\"col\": \"v17\", \"payload\": {\"g\": 17}, "
                            "\"at\": \"2024-01-01T00:00:00+00:00\"}, replica main (none)"),
            std::string::npos)
      << verify;
  EXPECT_NE(verify.out.find("different Odd; Table id=33"), std::string::npos) << verify;
  EXPECT_NE(verify.out.find("in 2 row(s)"), std::string::npos) << verify;
  RunResult missing = run_outbox({"verify", "--table", "no_such_table"});
  EXPECT_EQ(missing.exit_code, 78) << missing;
  EXPECT_EQ(missing.err, "outbox: primary: table no_such_table does not exist (run 'outbox migrate', or fix the table name)\n");
}

TEST(Verify, OnATerminalVerifyAndResyncShowProgressOnStderrAndErasItWhileStdoutKeepsOnlyTheReport) {
  ConvergedPipeline pipeline(30);
  ASSERT_TRUE(pipeline.replicated);
  TerminalRun verify = run_on_terminal({"verify", "--json", "--chunk-rows", "7"});
  EXPECT_EQ(verify.exit_code, 0) << verify;
  nlohmann::json report = nlohmann::json::parse(verify.out, nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << verify;
  EXPECT_EQ(report["equal"], true) << verify;
  // Each phase draws at once: the wait for the consistent point, then the chunks.
  EXPECT_NE(verify.terminal.find("\r\033[Kcomparing parking_slots: chunk 1, 0"), std::string::npos) << verify;
  EXPECT_NE(verify.terminal.find(" rows"), std::string::npos) << verify;
  // Erased at the end: the terminal's last bytes clear the line, and nothing else was printed.
  EXPECT_EQ(verify.terminal.substr(verify.terminal.size() - 4), "\r\033[K") << verify;
  EXPECT_EQ(verify.terminal.find('\n'), std::string::npos) << verify;

  exec(servers().replica_url, "UPDATE parking_slots SET status = 'blocked' WHERE uuid = '" + pipeline.uuids[4] + "'");
  TerminalRun resync = run_on_terminal({"resync", "--all"});
  EXPECT_EQ(resync.exit_code, 0) << resync;
  EXPECT_NE(resync.out.find("resynced " + pipeline.uuids[4] + ": parking.update v2\n"), std::string::npos) << resync;
  EXPECT_NE(resync.terminal.find("\r\033[Kresyncing parking_slots: 0/1 rows (0%)"), std::string::npos) << resync;
  EXPECT_EQ(resync.terminal.substr(resync.terminal.size() - 4), "\r\033[K") << resync;

  // --progress never: a quiet terminal.
  TerminalRun quiet = run_on_terminal({"verify", "--progress", "never"});
  EXPECT_EQ(quiet.exit_code, 0) << quiet;
  EXPECT_EQ(quiet.terminal, "") << quiet;
}

TEST(Verify, WithoutATerminalThereIsNoProgressUnlessAskedFor) {
  ConvergedPipeline pipeline(5);
  ASSERT_TRUE(pipeline.replicated);
  RunResult piped = run_outbox({"verify"});
  EXPECT_EQ(piped.exit_code, 0) << piped;
  EXPECT_EQ(piped.err, "") << piped;
  RunResult asked = run_outbox({"verify", "--progress", "always"});
  EXPECT_EQ(asked.exit_code, 0) << asked;
  EXPECT_NE(asked.err.find("\r\033[Kcomparing parking_slots: chunk 1"), std::string::npos) << asked;
  EXPECT_EQ(asked.out.find('\r'), std::string::npos) << "stdout holds only the report: " << asked;
  RunResult bad = run_outbox({"verify", "--progress", "sometimes"});
  EXPECT_EQ(bad.exit_code, 64) << bad;
  EXPECT_EQ(bad.err, "outbox: --progress: auto, always or never (got 'sometimes')\n") << bad;
}

namespace {

// A second mapped table beside parking_slots: products by sku, with no version column, written by
// hand with its events, as another service's writer would.
std::string products_config(bool with_delete_mapping) {
  std::string mappings =
      "[[replicate.mappings]]\nevent_type = \"parking.create\"\ntable = \"parking_slots\"\n"
      "[[replicate.mappings]]\nevent_type = \"parking.update\"\ntable = \"parking_slots\"\n"
      "[[replicate.mappings]]\nevent_type = \"parking.delete\"\ntable = \"parking_slots\"\noperation = \"delete\"\n"
      "[[replicate.mappings]]\nevent_type = \"product.created\"\ntable = \"products\"\nkey_column = \"sku\"\n"
      "[[replicate.mappings]]\nevent_type = \"product.changed\"\ntable = \"products\"\nkey_column = \"sku\"\n";
  if (with_delete_mapping)
    mappings +=
        "[[replicate.mappings]]\nevent_type = \"product.removed\"\ntable = \"products\"\nkey_column = \"sku\"\n"
        "operation = \"delete\"\n";
  return write_file(with_delete_mapping ? "products.toml" : "products-no-delete.toml", mappings);
}

std::vector<std::vector<std::string>> products(const std::string& url) {
  return rows(url, "SELECT sku, name, price::text, tags::text FROM products ORDER BY sku");
}

}  // namespace

TEST(Verify, ResyncRepairsAnotherMappedTableFromThePrimarysRowsThroughItsOwnMappings) {
  fresh_schema();
  for (const std::string* url : {&servers().primary_url, &servers().replica_url, &servers().replica2_url})
    exec(*url, "CREATE TABLE products (sku text PRIMARY KEY, name text NOT NULL, price numeric(12,2), tags jsonb)");
  exec(servers().primary_url,
       "INSERT INTO products SELECT 'p-' || g, 'product ' || g, g * 1.25, jsonb_build_object('n', g) FROM generate_series(1, 9) "
       "g; "
       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
       "SELECT gen_random_uuid(), 'product', sku, 1, 'product.created', row_to_json(p) FROM products p ORDER BY sku");
  std::map<std::string, std::string> env = {{"OUTBOX_CONFIG", products_config(true)}};
  Daemon relay(kRelay, env);
  Daemon replicate(kReplicate, env);
  auto equal = [] { return products(servers().replica_url) == products(servers().primary_url); };
  ASSERT_TRUE(eventually(equal)) << replicate.log();

  // Drift behind the pipeline's back: a changed row, a lost row, a row the primary never had, and
  // a row deleted on the primary without an event.
  exec(servers().replica_url,
       "UPDATE products SET price = 0 WHERE sku = 'p-3'; DELETE FROM products WHERE sku = 'p-7'; "
       "INSERT INTO products VALUES ('stranger', 'stranger', 1, NULL)");
  exec(servers().primary_url, "DELETE FROM products WHERE sku = 'p-9'");

  // Without a delete mapping, the rows gone from the primary cannot be repaired: named, exit 65,
  // and the others are repaired.
  RunResult no_delete = run_outbox({"resync", "--table", "products", "--key", "p-3", "--key", "stranger"},
                                   {{"OUTBOX_CONFIG", products_config(false)}});
  EXPECT_EQ(no_delete.exit_code, 65) << no_delete;
  EXPECT_EQ(no_delete.out,
            "resynced p-3: product.changed v2\nresync: 1 row(s) resynced (1 product.changed, 0 delete) "
            "through public.outbox; every replica applies them\n")
      << no_delete;
  EXPECT_EQ(no_delete.err,
            "outbox: resync: row products sku=stranger cannot be repaired: it is gone from the primary, and "
            "replicate.mappings has no delete mapping for products (add one, or delete the row on the replicas by hand)\n")
      << no_delete;
  // One event, for p-3 (the relay's heartbeats share the outbox: counted by type).
  EXPECT_EQ(scalar(servers().primary_url,
                   "SELECT string_agg(aggregate_id || ' ' || event_type, ', ') FROM outbox "
                   "WHERE aggregate_type = 'product' AND event_type <> 'product.created'"),
            "p-3 product.changed");
  // Nothing was written to the primary's row (it has no version column): its event carries it as it is.
  EXPECT_EQ(scalar(servers().primary_url,
                   "SELECT payload::jsonb = (SELECT to_jsonb(p) FROM products p WHERE sku = 'p-3') FROM outbox "
                   "WHERE event_type = 'product.changed' AND aggregate_type = 'product' AND aggregate_id = 'p-3'"),
            "t");

  RunResult all = run_outbox({"resync", "--table", "products", "--all"}, env);
  EXPECT_EQ(all.exit_code, 0) << all;
  EXPECT_NE(all.out.find("resynced p-7: product.changed v2\n"), std::string::npos) << all;
  EXPECT_NE(all.out.find("resynced p-9: product.removed v2\n"), std::string::npos) << all;
  EXPECT_NE(all.out.find("resynced stranger: product.removed v1\n"), std::string::npos) << all;
  EXPECT_TRUE(eventually(equal)) << replicate.log();
  RunResult verify = run_outbox({"verify", "--table", "products"}, env);
  EXPECT_EQ(verify.exit_code, 0) << verify;
  EXPECT_NE(verify.out.find("verify: replica main equals the primary: products 8 rows on the primary"), std::string::npos)
      << verify;

  // A key that is not of the key's type, and a table no mapping writes, are refused with one line.
  RunResult unmapped = run_outbox({"resync", "--table", "nothing_maps_this", "--key", "1"}, env);
  EXPECT_EQ(unmapped.exit_code, 78) << unmapped;
  EXPECT_EQ(unmapped.err,
            "outbox: resync: replicate.mappings has no upsert mapping for table nothing_maps_this; resync repairs a mapped "
            "table\n");
}
