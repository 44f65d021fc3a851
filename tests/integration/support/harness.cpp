#include "tests/integration/support/harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "migrate/runner.hpp"

extern char** environ;

namespace outbox::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

Servers g_servers;

const std::string kServersScript = std::string(OUTBOX_SOURCE_DIR) + "/scripts/servers";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string tail(const std::string& path, size_t lines) {
  std::deque<std::string> last;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    last.push_back(line);
    if (last.size() > lines) last.pop_front();
  }
  std::string out;
  for (const std::string& line : last) out += line + "\n";
  return out;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// argv and envp for posix_spawn, owning their strings.
struct ExecArgs {
  std::vector<std::string> strings_argv, strings_env;
  std::vector<char*> argv, envp;
  ExecArgs(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) : strings_argv(args) {
    for (const auto& [key, value] : env) strings_env.push_back(key + "=" + value);
    for (std::string& arg : strings_argv) argv.push_back(arg.data());
    argv.push_back(nullptr);
    for (std::string& entry : strings_env) envp.push_back(entry.data());
    envp.push_back(nullptr);
  }
};

// Spawns args[0] (a path) with stdin from /dev/null and stdout/stderr onto the given fds, in `cwd`.
pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env, int out_fd, int err_fd,
            const std::string& cwd) {
  ExecArgs exec(args, env);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  pid_t pid = -1;
  int error = posix_spawn(&pid, exec.argv[0], &actions, nullptr, exec.argv.data(), exec.envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    ADD_FAILURE() << "cannot run " << args[0] << ": " << std::strerror(error);
    return -1;
  }
  return pid;
}

std::map<std::string, std::string> current_env() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry; ++entry) {
    std::string text = *entry;
    size_t equals = text.find('=');
    if (equals != std::string::npos) env[text.substr(0, equals)] = text.substr(equals + 1);
  }
  return env;
}

// Runs a command to completion, capturing stdout and stderr.
RunResult run_command(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                      std::chrono::milliseconds timeout, const std::string& cwd = "") {
  RunResult result;
  int out_pipe[2], err_pipe[2];
  // O_CLOEXEC: a process spawned concurrently from another thread must not inherit these.
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return result;
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return result;
  }
  pid_t pid = spawn(args, env, out_pipe[1], err_pipe[1], cwd);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return result;
  }
  auto deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    int ready = poll(fds, 2, static_cast<int>(std::min<long long>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buffer[8192];
      ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& fd : fds)
    if (fd.fd >= 0) close(fd.fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = decode_status(status);
  return result;
}

// Parses `export NAME='value'` lines (values quoted for the shell with single quotes).
std::map<std::string, std::string> parse_exports(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("export ", 0) != 0) continue;
    line = line.substr(7);
    size_t equals = line.find('=');
    if (equals == std::string::npos) continue;
    std::string name = line.substr(0, equals), raw = line.substr(equals + 1), value;
    bool quoted = false;
    for (size_t i = 0; i < raw.size(); ++i) {
      char c = raw[i];
      if (c == '\'') {
        quoted = !quoted;
      } else if (c == '\\' && !quoted && i + 1 < raw.size()) {
        value += raw[++i];
      } else {
        value += c;
      }
    }
    out[name] = value;
  }
  return out;
}

RunResult servers_command(const std::vector<std::string>& words, std::chrono::milliseconds timeout = 300s) {
  std::vector<std::string> args = {kServersScript, "--dir", g_servers.dir};
  args.insert(args.end(), words.begin(), words.end());
  std::map<std::string, std::string> env = current_env();
  env.erase("OUTBOX_SERVERS_DIR");
  return run_command(args, env, timeout);
}

void print_server_logs() {
  for (const char* name : {"primary.log", "replica.log", "rabbitmq.log", "rabbitmq.out"}) {
    std::string path = g_servers.dir + "/" + name;
    if (!fs::exists(path)) continue;
    std::cerr << "----- last 50 lines of " << path << " -----\n" << tail(path, 50);
  }
}

// Each failing test is followed by the servers' logs, while they still show what it did.
class ServerLogsOnFailure : public ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo& test) override {
    if (!test.result()->Failed() || g_servers.dir.empty()) return;
    std::cerr << "[harness] " << test.test_suite_name() << "." << test.name() << " failed; the servers' logs:\n";
    print_server_logs();
  }
};

// A test binary killed by a timeout never runs TearDown: its servers (started in their own
// sessions) and daemons would keep running and slow every later binary. Each run records its pid
// in <servers dir>.owner (beside the dir, which scripts/servers wants empty at first) from the
// moment the dir exists, and stops the servers and daemons of dirs whose process is gone.
void stop_orphaned_servers(const std::string& base) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(base, error)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("outbox-test.", 0) != 0 || !entry.is_directory(error)) continue;
    std::string owner_path = entry.path().string() + ".owner";
    std::ifstream owner_file(owner_path);
    pid_t owner = 0;
    if (!(owner_file >> owner) || owner <= 0 || kill(owner, 0) == 0 || errno != ESRCH) continue;
    std::cerr << "[harness] stopping the servers of " << entry.path().string() << " (its test run " << owner << " is gone)\n";
    std::ifstream daemons(entry.path() / "daemons.pid");
    for (pid_t daemon = 0; daemons >> daemon;) {
      // Only if the pid still runs this build's binary: pids are reused.
      std::ifstream command("/proc/" + std::to_string(daemon) + "/cmdline");
      std::string program;
      if (std::getline(command, program, '\0') && program == OUTBOX_BINARY) kill(daemon, SIGKILL);
    }
    run_command({kServersScript, "--dir", entry.path().string(), "stop"}, current_env(), 120s);
    fs::remove_all(entry.path(), error);
    fs::remove(owner_path, error);
  }
}

// Starts the servers once per test binary; stops them and removes their dir at the end.
class ServersEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    std::string base = std::getenv("TMPDIR") && *std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    auto begin = Clock::now();
    stop_orphaned_servers(base);
    // GoogleTest owns the listener (hence the bare new).
    ::testing::UnitTest::GetInstance()->listeners().Append(new ServerLogsOnFailure);
    RunResult start;
    // A port picked as free can be taken by another process before the server binds it, and the
    // ports stay with the directory, so a failed start is retried once in a new directory.
    for (int attempt = 1; attempt <= 2; ++attempt) {
      std::string pattern = base + "/outbox-test.XXXXXX";
      if (!mkdtemp(pattern.data())) FAIL() << "mkdtemp " << pattern << ": " << std::strerror(errno);
      g_servers.dir = pattern;
      std::ofstream(g_servers.dir + ".owner") << getpid() << "\n";
      started_ = true;
      start = servers_command({"start"});
      if (start.exit_code == 0) break;
      print_server_logs();
      if (attempt == 2) FAIL() << "scripts/servers --dir " << g_servers.dir << " start failed:\n" << start;
      std::cerr << "[harness] scripts/servers --dir " << g_servers.dir << " start failed, retrying in a new directory:\n"
                << start;
      servers_command({"stop"});
      std::error_code ignored;
      fs::remove_all(g_servers.dir, ignored);
      fs::remove(g_servers.dir + ".owner", ignored);
    }
    RunResult env = servers_command({"env"});
    if (env.exit_code != 0) FAIL() << "scripts/servers env failed:\n" << env;
    auto values = parse_exports(env.out);
    g_servers.primary_url = values["OUTBOX_PRIMARY_URL"];
    g_servers.replica_url = values["OUTBOX_REPLICA_URL"];
    g_servers.replica2_url = values["OUTBOX_REPLICA2_URL"];
    g_servers.broker_url = values["OUTBOX_BROKER_URL"];
    g_servers.rabbitmqctl = values["OUTBOX_RABBITMQCTL"];
    g_servers.broker_tls_url = values["OUTBOX_BROKER_TLS_URL"];
    g_servers.tls_ca = values["OUTBOX_TLS_CA"];
    if (!values["OUTBOX_SERVERS_DIR"].empty()) g_servers.dir = values["OUTBOX_SERVERS_DIR"];
    if (g_servers.primary_url.empty() || g_servers.replica_url.empty() || g_servers.broker_url.empty())
      FAIL() << "scripts/servers env printed no URLs:\n" << env;
    write_file("default.toml", "");
    std::cerr << "[harness] servers up in " << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - begin).count()
              << " ms in " << g_servers.dir << "\n";
  }

  void TearDown() override {
    if (!started_) return;
    RunResult stop = servers_command({"stop"});
    if (stop.exit_code != 0) std::cerr << "[harness] scripts/servers stop failed:\n" << stop;
    const char* keep = std::getenv("OUTBOX_KEEP_SERVERS");
    if (keep && *keep && std::string(keep) != "0") {
      std::cerr << "[harness] kept " << g_servers.dir << " (OUTBOX_KEEP_SERVERS)\n";
      fs::remove(g_servers.dir + ".owner");  // kept on purpose: not an orphan for the next run
    } else {
      std::error_code ignored;
      fs::remove_all(g_servers.dir, ignored);
      fs::remove(g_servers.dir + ".owner", ignored);
    }
  }

 private:
  bool started_ = false;
};

// GoogleTest owns registered environments (hence the bare new). Every test binary calls into this
// file, so the linker always keeps this registration.
[[maybe_unused]] ::testing::Environment* const g_environment = ::testing::AddGlobalTestEnvironment(new ServersEnvironment);

std::atomic<int> g_daemon_counter{0};

// A missing lint tool, once per run: the check skips it (metrics-lint exit 125). Where the tools
// are required (OUTBOX_LINT_REQUIRED), metrics-lint itself fails instead.
void missing_lint_tool(const std::string& what) {
  static std::set<std::string> reported;
  if (reported.insert(what).second) std::cerr << "harness: /metrics bodies are not fully checked: " << what;
}

// A failed check of /metrics text, once per test and complaint: a test that polls /metrics would
// otherwise repeat it, with the whole text, on every poll.
void metrics_lint_failure(const std::string& complaint, const RunResult& result, const std::string& text) {
  static std::set<std::string> reported;
  const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string key = (test ? std::string(test->test_suite_name()) + "." + test->name() : std::string()) + "\n" + complaint + "\n" +
                    result.out + result.err;
  if (reported.insert(key).second) ADD_FAILURE() << complaint << ":\n" << result << "--- text ---\n" << text;
}

}  // namespace

const Servers& servers() { return g_servers; }

bool stop_server(const std::string& name) {
  RunResult result = servers_command({"stop", name});
  if (result.exit_code != 0) ADD_FAILURE() << "scripts/servers stop " << name << " failed:\n" << result;
  return result.exit_code == 0;
}

bool kill_server(const std::string& name) {
  RunResult result = servers_command({"kill", name});
  if (result.exit_code != 0) ADD_FAILURE() << "scripts/servers kill " << name << " failed:\n" << result;
  return result.exit_code == 0;
}

RunResult run_servers(const std::vector<std::string>& words, std::chrono::milliseconds timeout) {
  return servers_command(words, timeout);
}

std::map<std::string, std::string> servers_exports() {
  RunResult env = servers_command({"env"});
  if (env.exit_code != 0) ADD_FAILURE() << "scripts/servers env failed:\n" << env;
  return parse_exports(env.out);
}

RunResult run_program(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  return run_command(args, current_env(), timeout, g_servers.dir);
}

bool start_server(const std::string& name) {
  RunResult result = servers_command({"start", name});
  if (result.exit_code != 0) ADD_FAILURE() << "scripts/servers start " << name << " failed:\n" << result;
  return result.exit_code == 0;
}

std::ostream& operator<<(std::ostream& stream, const RunResult& result) {
  stream << "exit code " << result.exit_code << (result.timed_out ? " (timed out, killed)" : "") << "\n";
  stream << "--- stdout ---\n" << result.out << (result.out.empty() || result.out.back() == '\n' ? "" : "\n");
  stream << "--- stderr ---\n" << result.err << (result.err.empty() || result.err.back() == '\n' ? "" : "\n");
  return stream;
}

std::map<std::string, std::string> outbox_env(const std::map<std::string, std::string>& extra_env) {
  std::map<std::string, std::string> env;
  for (auto& [key, value] : current_env())
    if (key.rfind("OUTBOX_", 0) != 0) env[key] = value;
  env["OUTBOX_PRIMARY_URL"] = g_servers.primary_url;
  env["OUTBOX_REPLICA_URL"] = g_servers.replica_url;
  env["OUTBOX_BROKER_URL"] = g_servers.broker_url;
  env["OUTBOX_CONFIG"] = g_servers.dir + "/default.toml";
  for (const auto& [key, value] : extra_env) {
    if (value == kUnset)
      env.erase(key);
    else
      env[key] = value;
  }
  return env;
}

RunResult run_outbox(const std::vector<std::string>& args, const std::map<std::string, std::string>& extra_env,
                     std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {OUTBOX_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, outbox_env(extra_env), timeout, g_servers.dir);
}

std::string write_file(const std::string& name, const std::string& content) {
  std::string path = g_servers.dir + "/" + name;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) ADD_FAILURE() << "cannot write " << path;
  }
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  return path;
}

Daemon::Daemon(std::vector<std::string> args, std::map<std::string, std::string> extra_env) : args_(std::move(args)) {
  int number = ++g_daemon_counter;
  std::string label = args_.empty() ? "outbox" : args_.front();
  for (char& c : label)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  log_path_ = g_servers.dir + "/daemon-" + std::to_string(number) + "-" + label + ".log";
  int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    ADD_FAILURE() << "cannot open " << log_path_ << ": " << std::strerror(errno);
    return;
  }
  std::vector<std::string> argv = {OUTBOX_BINARY};
  argv.insert(argv.end(), args_.begin(), args_.end());
  pid_ = spawn(argv, outbox_env(extra_env), fd, fd, g_servers.dir);
  close(fd);
  // For the next run's sweep, should this one be killed before it can stop its daemons.
  if (pid_ > 0) std::ofstream(g_servers.dir + "/daemons.pid", std::ios::app) << pid_ << "\n";
}

Daemon::~Daemon() {
  if (pid_ > 0 && running()) {
    kill(pid_, SIGKILL);
    reap(true);
  }
  if (::testing::Test::HasFailure()) {
    std::string joined;
    for (const std::string& arg : args_) joined += " " + arg;
    std::cerr << "----- log of outbox" << joined << " (" << log_path_ << ") -----\n" << log() << "----- end of log -----\n";
  }
}

void Daemon::reap(bool block) {
  if (pid_ <= 0 || status_) return;
  int status = 0;
  pid_t done;
  do {
    done = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (done < 0 && errno == EINTR);
  if (done == pid_) status_ = decode_status(status);
}

void Daemon::signal(int signal_number) {
  if (pid_ > 0 && running()) kill(pid_, signal_number);
}

std::optional<int> Daemon::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (running() && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  return status_;
}

bool Daemon::running() {
  reap(false);
  return pid_ > 0 && !status_;
}

std::string Daemon::log() const { return read_file(log_path_); }

std::vector<std::string> with_args(std::vector<std::string> args, const std::vector<std::string>& extra) {
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

size_t occurrences(const std::string& text, const std::string& part) {
  size_t found = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++found;
  return found;
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds deadline) {
  auto until = Clock::now() + deadline;
  auto pause = 10ms;
  while (true) {
    try {
      if (condition()) return true;
    } catch (const std::exception&) {
      // Not yet: e.g. a server that is still starting.
    }
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(pause * 2, 200ms);
  }
}

pqxx::connection connect(const std::string& url) { return pqxx::connection(url); }

std::string scalar(const std::string& url, const std::string& sql) {
  auto connection = connect(url);
  pqxx::nontransaction tx(connection);
  pqxx::result result = tx.exec(sql);
  if (result.empty() || result.columns() == 0) throw std::runtime_error("scalar: no row from: " + sql);
  return result[0][0].is_null() ? "" : result[0][0].as<std::string>();
}

std::vector<std::vector<std::string>> rows(const std::string& url, const std::string& sql) {
  auto connection = connect(url);
  pqxx::nontransaction tx(connection);
  std::vector<std::vector<std::string>> out;
  for (const auto& row : tx.exec(sql)) {
    std::vector<std::string> values;
    for (const auto& field : row) values.push_back(field.is_null() ? "" : field.as<std::string>());
    out.push_back(std::move(values));
  }
  return out;
}

void exec(const std::string& url, const std::string& sql) {
  auto connection = connect(url);
  pqxx::work tx(connection);
  tx.exec(sql);
  tx.commit();
}

void reset_databases() {
  for (const std::string* url : {&g_servers.primary_url, &g_servers.replica_url, &g_servers.replica2_url}) {
    if (url->empty()) continue;
    auto connection = connect(*url);
    pqxx::nontransaction tx(connection);
    // Client sessions of this role only: an autovacuum worker (after a test's large drain) runs as
    // a superuser, which this role may not terminate; it cancels itself when DROP SCHEMA waits for
    // its lock. A session still starting or already ending can be listed with this role while the
    // server sees no role for it yet (or any more) and refuses to signal it (42501, seen once in
    // CI): such a session holds no lock, so it is skipped rather than failing the test's SetUp.
    tx.exec(R"(
      DO $$
      DECLARE session_pid int;
      BEGIN
        FOR session_pid IN SELECT pid FROM pg_stat_activity
                            WHERE datname = current_database() AND pid <> pg_backend_pid()
                              AND backend_type = 'client backend' AND usename = current_user LOOP
          BEGIN
            PERFORM pg_terminate_backend(session_pid);
          EXCEPTION WHEN insufficient_privilege THEN NULL;
          END;
        END LOOP;
      END $$)");
    tx.exec("DROP SCHEMA IF EXISTS public CASCADE");
    tx.exec("CREATE SCHEMA public");
  }
}

void primary_at_version(int version) {
  auto connection = connect(g_servers.primary_url);
  pqxx::nontransaction tx(connection);
  tx.exec("DROP SCHEMA IF EXISTS public CASCADE");
  tx.exec("CREATE SCHEMA public");
  tx.exec(
      "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, "
      "applied_at timestamptz NOT NULL DEFAULT now())");
  for (const migrate::Migration& migration : migrate::migrations(migrate::Target::primary)) {
    if (migration.version > version) break;
    tx.exec(std::string(migration.sql));
    tx.exec_params("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", migration.version,
                   migration.name, migration.checksum);
  }
}

std::string fresh_database(const std::string& cluster, const std::string& name) {
  if (cluster != "primary" && cluster != "replica") throw std::invalid_argument("fresh_database: no cluster " + cluster);
  const std::string& base = cluster == "primary" ? g_servers.primary_url : g_servers.replica_url;
  auto connection = connect(base);
  pqxx::nontransaction tx(connection);
  // FORCE terminates the sessions a stopped daemon may have left behind. It refuses (42501) while
  // one of them is still starting or ending (the server sees no role for it): that lasts moments,
  // so the drop is tried again (see reset_databases).
  std::string refused;
  bool dropped = eventually([&] {
    try {
      tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name) + " WITH (FORCE)");
      return true;
    } catch (const pqxx::insufficient_privilege& error) {
      refused = error.what();
      return false;
    }
  });
  if (!dropped) throw std::runtime_error("fresh_database: cannot drop " + name + ": " + refused);
  tx.exec("CREATE DATABASE " + tx.quote_name(name));
  return base.substr(0, base.rfind('/') + 1) + name;
}

void use_broker(const std::string& url_list, const std::string& config) {
  g_servers.broker_url = url_list;
  g_servers.broker_is_cluster = url_list.find(',') != std::string::npos;
  write_file("default.toml", config);
}

bool migrate_all() {
  std::string config = write_file("migrate-all.toml", read_file(g_servers.dir + "/default.toml") +
                                                          "[replicas.replica2]\nurl = \"" + g_servers.replica2_url + "\"\n");
  RunResult result = run_outbox({"migrate"}, {{"OUTBOX_CONFIG", config}});
  if (result.exit_code != 0) ADD_FAILURE() << "outbox migrate failed:\n" << result;
  return result.exit_code == 0;
}

std::string created_slot_uuid(const RunResult& result) {
  static const std::regex uuid_line("^uuid:   ([0-9a-f-]{36})\n");
  std::smatch match;
  if (!std::regex_search(result.out, match, uuid_line)) {
    ADD_FAILURE() << "no uuid in:\n" << result;
    return "";
  }
  return match[1];
}

int free_port() {
  static std::set<int> given;
  static std::mt19937 random(static_cast<unsigned>(getpid()));
  for (int attempt = 0; attempt < 200; ++attempt) {
    int port = 20000 + static_cast<int>(random() % 12000);
    if (given.count(port)) continue;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port));
    bool bindable = fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    if (fd >= 0) close(fd);
    if (bindable) {
      given.insert(port);
      return port;
    }
  }
  ADD_FAILURE() << "no free port in 20000..31999";
  return 0;
}

int connect_local(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

Http http_exchange(int port, const std::string& request) {
  int fd = connect_local(port);
  if (fd < 0) return {};
  Http http;
  std::string answer;
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char buffer[65536];
    for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) answer.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  if (answer.rfind("HTTP/1.", 0) == 0 && answer.size() > 12) http.status = std::atoi(answer.c_str() + 9);
  if (size_t end = answer.find("\r\n\r\n"); end != std::string::npos) http.body = answer.substr(end + 4);
  return http;
}

Http http_get(int port, const std::string& path) {
  Http http = http_exchange(port, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  if (path == "/metrics" && http.status == 200) lint_metrics(http.body);
  return http;
}

double metric(int port, const std::string& name, const std::string& label) {
  Http answer = http_get(port, "/metrics");
  std::istringstream lines(answer.body);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(name + "{", 0) == 0 && line.find(label) != std::string::npos)
      return std::stod(line.substr(line.rfind(' ') + 1));
  return -1;
}

Http await_health(int port, const std::string& text, std::chrono::milliseconds deadline) {
  Http health;
  eventually(
      [&] {
        health = http_get(port, "/healthz");
        return health.body.find(text) != std::string::npos;
      },
      deadline);
  return health;
}

void lint_metrics(const std::string& text) {
  std::string file = write_file("metrics-lint.prom", text);
  RunResult checked = run_command({std::string(OUTBOX_SOURCE_DIR) + "/tests/lint/metrics-lint", file}, current_env(), 60s);
  if (checked.exit_code == 125)
    missing_lint_tool(checked.out);
  else if (checked.exit_code != 0)
    metrics_lint_failure("tests/lint/metrics-lint finds the /metrics text broken or unclean", checked, text);
}

namespace {
int set_broker_max_message_size(long long bytes) {
  return std::system(
      (servers().rabbitmqctl + " eval 'application:set_env(rabbit, max_message_size, " + std::to_string(bytes) + ").' >/dev/null")
          .c_str());
}
}  // namespace

BrokerMessageSizeLimit::BrokerMessageSizeLimit(long long bytes) : applied_(set_broker_max_message_size(bytes) == 0) {}

bool BrokerMessageSizeLimit::lift() { return set_broker_max_message_size(134217728) == 0; }

BrokerMessageSizeLimit::~BrokerMessageSizeLimit() { lift(); }

}  // namespace outbox::testing
