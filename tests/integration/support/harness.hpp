#pragma once
// The integration test harness: every integration binary links it (one binary per
// tests/integration/*_test.cpp file, or per group of files named in tests/CMakeLists.txt).
//
// Linking it registers a GoogleTest environment that, once per binary, starts throwaway servers
// (scripts/servers --dir <fresh temp dir> start: a primary and a replica PostgreSQL cluster and a
// RabbitMQ node), and at the end stops them and removes the dir. When a test failed, the tails of
// the server logs go to stderr, and each Daemon prints its log when the test that owns it fails.
// Set OUTBOX_KEEP_SERVERS=1 to keep the dir (and its logs) after the run.
//
// Typical test:
//   TEST(Parking, CreateThenListFromThePrimaryShowsTheSlot) {
//     reset_databases();
//     migrate_all();
//     RunResult created = run_outbox({"create_parking_slot", "--name", "A"});
//     ASSERT_EQ(created.exit_code, 0) << created;
//   }
#include <chrono>
#include <csignal>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace outbox::testing {

using namespace std::chrono_literals;

struct Servers {
  std::string dir;                 // the servers dir (logs, daemon logs, config files)
  std::string primary_url;         // postgresql://...: database outbox_primary on the primary cluster
  std::string replica_url;         // database outbox_replica on the replica cluster (replica "main")
  std::string replica2_url;        // database outbox_replica2 on the same replica cluster
  std::string broker_url;          // amqp://... (after use_broker: the cluster's node URLs, comma-separated)
  bool broker_is_cluster = false;  // use_broker gave a list of nodes: tests declare quorum queues
  std::string rabbitmqctl;         // a script: rabbitmqctl bound to the test node
  std::string broker_tls_url;      // amqps://...@localhost:PORT/ (TLS listener of the same node)
  std::string tls_ca;              // CA that signed both servers' certificates (localhost, 127.0.0.1)
};
// The running servers; valid during tests (the environment's SetUp filled it).
const Servers& servers();

// From now on, every outbox process the harness starts (and broker_connection) uses the broker
// nodes of `url_list` (comma-separated) and reads `config` (a TOML text, e.g. the replicas' queue
// types), which migrate_all reads too. For suites that can run against the cluster.
void use_broker(const std::string& url_list, const std::string& config);

// scripts/servers --dir DIR stop|start primary|replica|rabbitmq (a stopped server keeps its port
// and data). A failure is a test failure (ADD_FAILURE) and returns false.
bool stop_server(const std::string& name);
bool start_server(const std::string& name);
// scripts/servers --dir DIR kill NAME: SIGKILL to every process of that server (a crash; the next
// start recovers from disk).
bool kill_server(const std::string& name);

struct RunResult;
// scripts/servers --dir DIR WORDS (e.g. {"start", "rabbitmq-cluster"}), and its result.
RunResult run_servers(const std::vector<std::string>& words, std::chrono::milliseconds timeout = 300s);
// The variables `scripts/servers env` prints (OUTBOX_BROKER_CLUSTER_URL once the cluster started).
std::map<std::string, std::string> servers_exports();
// Runs any program (a rabbitmqctl wrapper, say) in the servers dir with the test's environment.
RunResult run_program(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 120s);

// Lowers the test broker's max_message_size (RabbitMQ then refuses a larger message with 406) for
// the object's life, and restores RabbitMQ's default (128 MiB) however the test ends: the other
// tests share the broker.
class BrokerMessageSizeLimit {
 public:
  explicit BrokerMessageSizeLimit(long long bytes);
  ~BrokerMessageSizeLimit();
  BrokerMessageSizeLimit(const BrokerMessageSizeLimit&) = delete;
  BrokerMessageSizeLimit& operator=(const BrokerMessageSizeLimit&) = delete;
  bool applied() const { return applied_; }
  // Restores the default now (the destructor does it again, harmlessly); true when it worked.
  bool lift();

 private:
  bool applied_;
};

struct RunResult {
  int exit_code = -1;  // the exit status; 128 + N when killed by signal N; -1 if it could not run
  std::string out;     // stdout
  std::string err;     // stderr
  bool timed_out = false;
};
// Prints the command's exit code, stdout and stderr (for assertion messages: `<< result`).
std::ostream& operator<<(std::ostream& stream, const RunResult& result);

// The environment of every outbox process the harness starts: the current environment without
// any OUTBOX_* variable, then OUTBOX_PRIMARY_URL, OUTBOX_REPLICA_URL and OUTBOX_BROKER_URL of the
// servers and OUTBOX_CONFIG = a file that is empty unless use_broker wrote it, then `extra_env` (which overrides; a value of
// kUnset removes the variable).
inline const std::string kUnset = "\x01unset";
std::map<std::string, std::string> outbox_env(const std::map<std::string, std::string>& extra_env = {});

// Runs the built binary (build/outbox) with `args`, stdin from /dev/null, in the servers dir, and
// waits for it (killed after `timeout`, then timed_out is set).
RunResult run_outbox(const std::vector<std::string>& args, const std::map<std::string, std::string>& extra_env = {},
                     std::chrono::milliseconds timeout = 120s);

// The uuid that `outbox create_parking_slot` printed on its first line ("uuid:   ..."); "" and a
// test failure that shows the run when there is none.
std::string created_slot_uuid(const RunResult& result);

// Writes a file into the servers dir (e.g. a config) and returns its path. Mode 0600.
std::string write_file(const std::string& name, const std::string& content);

// `outbox <args>` in the background, with the environment of run_outbox; stdout and stderr go to
// <servers dir>/daemon-<N>-<first arg>.log. The destructor SIGKILLs it if it still runs, and prints
// its log when the current test has failed.
class Daemon {
 public:
  explicit Daemon(std::vector<std::string> args, std::map<std::string, std::string> extra_env = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int signal_number);  // no-op once it has exited
  void kill9() { signal(SIGKILL); }
  // The exit status (128 + N for signal N), or nullopt if it still runs after `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = 30s);
  bool running();
  std::string log() const;  // the log file's contents so far
  const std::string& log_path() const { return log_path_; }

 private:
  void reap(bool block);
  std::vector<std::string> args_;
  std::string log_path_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// `args` followed by `extra`: a daemon's or command's arguments with a few more options.
std::vector<std::string> with_args(std::vector<std::string> args, const std::vector<std::string>& extra);

// How many times `part` occurs in `text` (overlaps counted): lines of a daemon's log, say.
size_t occurrences(const std::string& text, const std::string& part);

// Polls `condition` (every 10..200 ms) until it returns true or `deadline` passes; returns whether
// it became true. Exceptions from the condition count as false. Use it instead of sleeps.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds deadline = 30s);

// HTTP to a daemon's metrics port on 127.0.0.1, over raw sockets, so that a test sees exactly what
// a client sees.
struct Http {
  int status = 0;  // 0: no answer
  std::string body;
};
// A port for a daemon's metrics.listen: below the ephemeral range (32768+ on Linux), where the
// daemons' own outgoing connections cannot take it before metrics.listen binds it; bindable now,
// and never handed out twice in this binary. No free port is a test failure (returns 0).
int free_port();
// A connected TCP socket to 127.0.0.1:port with 5 s send and receive timeouts, or -1.
int connect_local(int port);
// Sends `request` (a whole HTTP/1.0-style request) and reads the answer until the server closes.
Http http_exchange(int port, const std::string& request);
// GET `path`. Every test reads /metrics through here: each answer with status 200 also goes
// through lint_metrics, so every scrape a test makes checks the text format too.
Http http_get(int port, const std::string& path);
// The value of the first sample of `name` on port's /metrics whose labels contain `label`, or -1.
double metric(int port, const std::string& name, const std::string& label);
// Polls GET /healthz until its body contains `text` (or `deadline` passes); returns the last
// answer, for the caller's checks of its status and body.
Http await_health(int port, const std::string& text, std::chrono::milliseconds deadline = 30s);
// Parses Prometheus text with real parsers (tests/lint/metrics-lint: the Python client's,
// python3-prometheus-client, and `promtool check metrics`, which also lints). A parse error or lint
// problem is a test failure (ADD_FAILURE) that shows the tool's message and the text. A tool that
// is not installed is skipped, unless OUTBOX_LINT_REQUIRED is set (.ci/run, after
// scripts/install-deps): then its absence is a failure.
void lint_metrics(const std::string& text);

// SQL helpers (each call opens its own connection).
pqxx::connection connect(const std::string& url);
// First column of the first row as text; "" for NULL; throws if there is no row.
std::string scalar(const std::string& url, const std::string& sql);
// Every row, every column as text ("" for NULL).
std::vector<std::vector<std::string>> rows(const std::string& url, const std::string& sql);
// Runs statements (no result), in one transaction.
void exec(const std::string& url, const std::string& sql);

// Drops and recreates the public schema of the primary, the replica and replica2, so that each test
// starts from empty databases. Terminates other sessions of those databases first (a test must stop
// its daemons before, or they will see their connections die).
void reset_databases();
// A new, empty database `name` on the primary cluster ("primary") or the replica cluster
// ("replica"), for tests that need more databases than the three above (a database per service).
// An existing one is dropped first, its sessions terminated. Returns its URL (the cluster's URL
// with the database name replaced).
std::string fresh_database(const std::string& cluster, const std::string& name);
// The primary's public schema anew, with its migrations applied only up to `version` (the later
// ones pending), as `outbox migrate` of an older outbox left it: for tests of an upgrade.
void primary_at_version(int version);
// `outbox migrate` of the primary, the replica (main) and replica2 (configured as replica
// "replica2"); a failure is a test failure. Returns whether it succeeded.
bool migrate_all();

}  // namespace outbox::testing
