// Issue 14: no output channel shows a fragment of a password, whatever characters it holds, and
// control characters that arrive in data or arguments reach neither a terminal nor a text log raw.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"
#include "tests/support/fragments.hpp"

using namespace outbox::testing;
namespace amqp = outbox::amqp;

namespace {

const std::vector<std::string> kDebugLog = {"--set", "log.level=debug"};

void fresh_start() {
  reset_databases();
  ASSERT_TRUE(migrate_all());
  declare_outbox_exchange(*broker_connection());
  purge_outbox_queues();
}

size_t lines(const std::string& text) { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')); }

// The URL with its password (between the scheme's user name and the '@') replaced.
std::string with_password(std::string url, const std::string& password, const std::string& user = "") {
  size_t start = url.find("://") + 3, colon = url.find(':', start), at = url.find('@');
  url.replace(colon + 1, at - colon - 1, password);
  if (!user.empty()) url.replace(start, colon - start, user);
  return url;
}

std::string percent_encoded(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buffer[4];
      std::snprintf(buffer, sizeof buffer, "%%%02X", c);
      out += buffer;
    }
  }
  return out;
}

// Whether the text holds a byte that a terminal acts on, other than the newlines that end lines.
bool has_raw_control(const std::string& text) {
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\n') || c == 0x7f) return true;
    if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(text[i + 1]) <= 0x9f)
      return true;
  }
  return false;
}

std::string uuid4(int n) {
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "00000000-0000-4000-8000-%012d", n);
  return buffer;
}

// A daemon's run until it has said something about the bad setting: exited (a refused config),
// or logged an error line.
std::string daemon_log(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  Daemon daemon(args, env);
  bool spoke = eventually([&] { return !daemon.running() || daemon.log().find("Z error ") != std::string::npos; });
  EXPECT_TRUE(spoke) << daemon.log();
  daemon.signal(SIGTERM);
  daemon.wait_exit();
  return daemon.log();
}

}  // namespace

TEST(Secrets, NoOutputChannelShowsAPieceOfAPasswordWithSlashAtColonPercentQuestionHashQuoteSpaceOrComma) {
  fresh_start();
  // Unencoded, as a user would paste them. Those that the client libraries would cut short are
  // refused (exit 78); the others reach the server and fail its authentication.
  const std::vector<std::string> specials = {"/", "@", ":", "%", "?", "#", "'", " ", ","};
  const std::vector<std::vector<std::string>> commands = {{"create_parking_slot", "--name", "A"},
                                                          {"parking_slot_list"},
                                                          {"config", "show"},
                                                          {"config", "check"},
                                                          {"check"},
                                                          {"lag", "--json"},
                                                          {"lag"},
                                                          {"migrate"},
                                                          {"verify", "--timeout", "1s"},
                                                          {"failed", "list"}};
  for (const std::string& special : specials) {
    const std::string password = "Zq7" + special + "Xw9Vk";
    bool refused = special != ":" && special != "'" && special != ",";
    for (const std::string& setting : std::vector<std::string>{"OUTBOX_PRIMARY_URL", "OUTBOX_REPLICA_URL", "OUTBOX_BROKER_URL"}) {
      SCOPED_TRACE(setting + " with password " + password);
      std::string url = setting == "OUTBOX_PRIMARY_URL"   ? servers().primary_url
                        : setting == "OUTBOX_REPLICA_URL" ? servers().replica_url
                                                          : servers().broker_url;
      std::map<std::string, std::string> env = {{setting, with_password(url, password)}};
      for (const std::vector<std::string>& args : commands) {
        SCOPED_TRACE(args[0] + (args.size() > 1 ? " " + args[1] : ""));
        RunResult result = run_outbox(args, env, 60s);
        EXPECT_EQ(fragments_in(result.out + result.err, password), std::vector<std::string>{}) << result;
        if (refused && args[0] == "config" && args[1] == "check") {
          EXPECT_EQ(result.exit_code, 78) << result;
          EXPECT_EQ(lines(result.err), 1u) << result;
        }
      }
      // The daemons, each with a setting it uses.
      if (setting != "OUTBOX_REPLICA_URL") {
        std::string log = daemon_log(
            with_args({"relay", "--set", "relay.heartbeat_interval=0", "--set", "relay.poll_interval=200ms"}, kDebugLog), env);
        EXPECT_EQ(fragments_in(log, password), std::vector<std::string>{}) << log;
      }
      if (setting != "OUTBOX_PRIMARY_URL") {
        std::string log = daemon_log(with_args({"replicate", "--set", "replicate.max_backoff=1s"}, kDebugLog), env);
        EXPECT_EQ(fragments_in(log, password), std::vector<std::string>{}) << log;
      }
    }
  }
}

TEST(Secrets, AnUnencodedSlashInAPasswordIsExit78NamingTheSettingInEveryWayItCanBeSet) {
  const std::string password = "TopSecret99/rest";
  std::string config =
      write_file("slash-password.toml", "[replicas.eu]\nurl = \"" + with_password(servers().replica_url, password) + "\"\n");
  struct Case {
    std::vector<std::string> args;
    std::map<std::string, std::string> env;
    std::string prefix;
  } cases[] = {
      {{"create_parking_slot", "--name", "A"},
       {{"OUTBOX_PRIMARY_URL", with_password(servers().primary_url, password)}},
       "outbox: config env OUTBOX_PRIMARY_URL: primary.url: the user name and password must be percent-encoded (/ as %2F, "
       "@ as %40"},
      {{"--set", "broker.url=" + with_password(servers().broker_url, password), "migrate"},
       {},
       "outbox: config --set broker.url: broker.url: the user name and password must be percent-encoded"},
      {{"config", "check"}, {{"OUTBOX_CONFIG", config}}, "outbox: config " + config + ":2:7: replicas.eu.url: the user name"},
  };
  for (const Case& c : cases) {
    RunResult result = run_outbox(c.args, c.env);
    EXPECT_EQ(result.exit_code, 78) << result;
    EXPECT_EQ(result.err.rfind(c.prefix, 0), 0u) << result;
    EXPECT_EQ(lines(result.err), 1u) << result;
    EXPECT_EQ(fragments_in(result.out + result.err, password), std::vector<std::string>{}) << result;
  }
  RunResult check = run_outbox({"check"}, {{"OUTBOX_PRIMARY_URL", with_password(servers().primary_url, password)}});
  EXPECT_EQ(check.exit_code, 3) << check;
  EXPECT_EQ(check.out.rfind("OUTBOX UNKNOWN - config env OUTBOX_PRIMARY_URL: primary.url: the user name", 0), 0u) << check;
}

// The outbox role's password, changed for one test: the outbox role may change its own, and a
// session held from before (already authenticated) sets it back however the test ends.
class OutboxRolePassword {
 public:
  explicit OutboxRolePassword(const std::string& password) : session_(connect(servers().primary_url)) {
    pqxx::nontransaction tx(session_);
    tx.exec("ALTER ROLE outbox PASSWORD " + tx.quote(password));
  }
  ~OutboxRolePassword() {
    try {
      pqxx::nontransaction(session_).exec("ALTER ROLE outbox PASSWORD 'outbox'");
    } catch (const std::exception& error) {
      ADD_FAILURE() << "could not set the password back: " << error.what();
    }
  }
  OutboxRolePassword(const OutboxRolePassword&) = delete;
  OutboxRolePassword& operator=(const OutboxRolePassword&) = delete;

 private:
  pqxx::connection session_;
};

TEST(Secrets, PercentEncodedPasswordsWithThoseCharactersConnectToTheRealServers) {
  fresh_start();
  const std::string password = "Zq7/@:%?#' ,Xw9";
  OutboxRolePassword changed(password);
  std::string primary = with_password(servers().primary_url, percent_encoded(password));
  RunResult created = run_outbox({"create_parking_slot", "--name", "encoded"}, {{"OUTBOX_PRIMARY_URL", primary}});
  EXPECT_EQ(created.exit_code, 0) << created;
  RunResult checked = run_outbox({"config", "check"}, {{"OUTBOX_PRIMARY_URL", primary}});
  EXPECT_EQ(checked.exit_code, 0) << checked;

  // The broker: a user with the same password.
  auto rabbitmqctl = [](const std::string& args) {
    return std::system((servers().rabbitmqctl + " " + args + " >/dev/null 2>&1").c_str());
  };
  std::string quoted = "'";
  for (char c : password) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  rabbitmqctl("delete_user tricky");
  ASSERT_EQ(rabbitmqctl("add_user tricky " + quoted), 0);
  ASSERT_EQ(rabbitmqctl("set_permissions -p / tricky '.*' '.*' '.*'"), 0);
  std::string broker = with_password(servers().broker_url, percent_encoded(password), "tricky");
  RunResult lag = run_outbox({"lag", "--json"}, {{"OUTBOX_PRIMARY_URL", primary}, {"OUTBOX_BROKER_URL", broker}});
  nlohmann::json parsed = nlohmann::json::parse(lag.out, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << lag;
  EXPECT_TRUE(parsed["broker"]["error"].is_null()) << lag;
  EXPECT_TRUE(parsed["outbox"]["error"].is_null()) << lag;
  rabbitmqctl("delete_user tricky");
}

// Issue 17: the passwords live outside the URLs, in a file (primary.password_file) and a systemd
// credential (broker.password_credential, from $CREDENTIALS_DIRECTORY as LoadCredential= fills it):
// the daemons connect to the password-protected servers with them, config show names where each
// came from, and no output shows a piece of one.
TEST(Secrets, TheDaemonsConnectWithPasswordsOnlyInAFileAndACredentialAndNoOutputShowsThem) {
  fresh_start();
  const std::string database_password = "Pg7/Zq@Xw9:Vk42", broker_password = "Mq7@Zq#Xw9Vk42";
  OutboxRolePassword changed(database_password);
  auto rabbitmqctl = [](const std::string& args) {
    return std::system((servers().rabbitmqctl + " " + args + " >/dev/null 2>&1").c_str());
  };
  rabbitmqctl("delete_user credential_user");
  ASSERT_EQ(rabbitmqctl("add_user credential_user '" + broker_password + "'"), 0);
  ASSERT_EQ(rabbitmqctl("set_permissions -p / credential_user '.*' '.*' '.*'"), 0);

  // The URLs name the users and no password.
  auto without_password = [](std::string url, const std::string& user) {
    size_t start = url.find("://") + 3, at = url.find('@');
    return url.replace(start, at - start, user);
  };
  std::string credentials = servers().dir + "/credentials";
  std::filesystem::create_directories(credentials);
  write_file("credentials/broker-password", broker_password);
  std::string password_file = write_file("primary.password", database_password + "\n");
  write_file("replica.password", "outbox\n");
  std::string config =
      write_file("secrets-outside-urls.toml",
                 "[primary]\npassword_file = \"primary.password\"\n"
                 "[broker]\npassword_credential = \"broker-password\"\n"
                 "[replicas.main]\nurl = \"" +
                     without_password(servers().replica_url, "outbox") + "\"\npassword_file = \"replica.password\"\n");
  std::map<std::string, std::string> env = {{"OUTBOX_CONFIG", config},
                                            {"OUTBOX_PRIMARY_URL", without_password(servers().primary_url, "outbox")},
                                            {"OUTBOX_REPLICA_URL", kUnset},
                                            {"OUTBOX_BROKER_URL", without_password(servers().broker_url, "credential_user")},
                                            {"CREDENTIALS_DIRECTORY", credentials}};
  auto shows_no_secret = [&](const std::string& text) {
    EXPECT_EQ(fragments_in(text, database_password), std::vector<std::string>{}) << text;
    EXPECT_EQ(fragments_in(text, broker_password), std::vector<std::string>{}) << text;
  };

  RunResult shown = run_outbox({"config", "show"}, env);
  EXPECT_EQ(shown.exit_code, 0) << shown;
  EXPECT_NE(shown.out.find("; password from file " + password_file + "\n"), std::string::npos) << shown;
  EXPECT_NE(shown.out.find("; password from credential broker-password\n"), std::string::npos) << shown;
  EXPECT_EQ(shown.err, "") << shown;
  shows_no_secret(shown.out + shown.err);
  // The same as JSON: each option's key, value, source and origin, and where a password came from.
  RunResult shown_json = run_outbox({"config", "show", "--json"}, env);
  EXPECT_EQ(shown_json.exit_code, 0) << shown_json;
  shows_no_secret(shown_json.out + shown_json.err);
  nlohmann::json document = nlohmann::json::parse(shown_json.out, nullptr, false);
  ASSERT_FALSE(document.is_discarded()) << shown_json;
  EXPECT_EQ(document["config_file"], config);
  std::map<std::string, nlohmann::json> by_key;
  for (const nlohmann::json& entry : document["options"]) by_key[entry["key"].get<std::string>()] = entry;
  EXPECT_EQ(by_key["primary.url"]["source"], "env") << shown_json;
  EXPECT_EQ(by_key["primary.url"]["password_from"], "file " + password_file) << shown_json;
  EXPECT_EQ(by_key["broker.url"]["password_from"], "credential broker-password") << shown_json;
  EXPECT_EQ(by_key["primary.password_file"]["source"], "file") << shown_json;
  EXPECT_EQ(by_key["primary.password_file"]["value"], "primary.password") << shown_json;
  EXPECT_EQ(by_key["relay.poll_interval"]["source"], "default") << shown_json;
  EXPECT_TRUE(by_key["relay.poll_interval"]["origin"].is_null()) << shown_json;
  EXPECT_EQ(by_key["replicas.main.url"]["source"], "file") << shown_json;
  EXPECT_EQ(by_key["replicas.main.url"]["password_from"].get<std::string>().rfind("file ", 0), 0u) << shown_json;

  Daemon relay(with_args({"relay", "--set", "relay.poll_interval=200ms"}, kDebugLog), env);
  Daemon replicate(with_args({"replicate"}, kDebugLog), env);
  RunResult created = run_outbox({"create_parking_slot", "--name", "from-files"}, env);
  ASSERT_EQ(created.exit_code, 0) << created;
  EXPECT_TRUE(eventually([] {
    return scalar(servers().replica_url, "SELECT count(*) FROM parking_slots WHERE name = 'from-files'") == "1";
  })) << relay.log()
      << replicate.log();
  RunResult lag = run_outbox({"lag", "--json"}, env);
  nlohmann::json parsed = nlohmann::json::parse(lag.out, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << lag;
  EXPECT_TRUE(parsed["broker"]["error"].is_null()) << lag;
  EXPECT_TRUE(parsed["outbox"]["error"].is_null()) << lag;
  shows_no_secret(lag.out + lag.err);

  // A reload that cannot read the file keeps the running configuration, and says why.
  std::filesystem::remove(password_file);
  relay.signal(SIGHUP);
  EXPECT_TRUE(eventually([&] {
    return relay.log().find("reload failed, keeping the running configuration: config " + config +
                            ":2:17: primary.password_file: cannot read " + password_file + ": No such file or directory\n") !=
           std::string::npos;
  })) << relay.log();
  EXPECT_TRUE(relay.running());
  for (Daemon* daemon : {&relay, &replicate}) {
    daemon->signal(SIGTERM);
    EXPECT_EQ(daemon->wait_exit(), 0) << daemon->log();
    shows_no_secret(daemon->log());
  }
  rabbitmqctl("delete_user credential_user");
}

TEST(Escaping, AMessageIdWithANewlineAndAnEscapeSequenceIsOneEscapedLineInTheReplicateLogAndInFailedShow) {
  fresh_start();
  const std::string forged = "x\n2026-01-01T00:00:00.000Z error replicate main: forged\x1b[31m";
  amqp::OutgoingMessage message;
  message.exchange = "outbox";
  message.routing_key = "parking.create";
  message.type = "parking.create";
  message.message_id = forged;
  message.body = nlohmann::json{{"uuid", uuid4(1)}, {"name", "n"}, {"status", "available"}, {"version", 1}}.dump();
  message.headers = {{"aggregate_type", std::string("parking_slot")}, {"aggregate_id", uuid4(1)}, {"aggregate_version", 1LL}};
  broker_connection()->publish(message);
  Daemon replicate({"replicate", "--set", "replicate.max_attempts=1"});
  ASSERT_TRUE(eventually([] { return scalar(servers().replica_url, "SELECT count(*) FROM outbox_failed_events") == "1"; }))
      << replicate.log();
  ASSERT_TRUE(eventually([&] { return replicate.log().find("forged") != std::string::npos; })) << replicate.log();
  std::string log = replicate.log();
  EXPECT_FALSE(has_raw_control(log)) << log;
  EXPECT_EQ(log.find("\n2026-01-01T00:00:00.000Z"), std::string::npos) << log;
  EXPECT_NE(log.find("x\\n2026-01-01T00:00:00.000Z error replicate main: forged\\x1b[31m"), std::string::npos) << log;

  std::string id = scalar(servers().replica_url, "SELECT id FROM outbox_failed_events");
  RunResult show = run_outbox({"failed", "show", id});
  ASSERT_EQ(show.exit_code, 0) << show;
  EXPECT_FALSE(has_raw_control(show.out)) << show;
  EXPECT_EQ(show.out.find("\n2026-01-01"), std::string::npos) << show;
  EXPECT_NE(show.out.find("forged\\x1b[31m"), std::string::npos) << show;
  // JSON output keeps the text exact, escaped as JSON.
  RunResult list = run_outbox({"failed", "list"});
  ASSERT_EQ(list.exit_code, 0) << list;
  EXPECT_FALSE(has_raw_control(list.out)) << list;
  EXPECT_NE(nlohmann::json::parse(list.out)["error"].get<std::string>().find(forged), std::string::npos) << list;
}

TEST(Escaping, ASlotNameWithAForgedStatusLineOnTheReplicaIsPrintedEscaped) {
  fresh_start();
  const std::string name = "evil\nstatus: reserved\x1b[8m\x7f\xc2\x9b";
  pqxx::connection replica = connect(servers().replica_url);
  pqxx::work tx(replica);
  tx.exec_params("INSERT INTO parking_slots (uuid, name, status, version) VALUES ($1, $2, 'available', 1)", uuid4(7), name);
  tx.commit();
  RunResult details = run_outbox({"parking_slot_details", "--uuid", uuid4(7)});
  ASSERT_EQ(details.exit_code, 0) << details;
  EXPECT_EQ(details.out, "uuid:   " + uuid4(7) + "\nname:   evil\\nstatus: reserved\\x1b[8m\\x7f\\u009b\nstatus: available\n");
  RunResult list = run_outbox({"parking_slot_list"});
  ASSERT_EQ(list.exit_code, 0) << list;
  EXPECT_FALSE(has_raw_control(list.out)) << list;
  EXPECT_EQ(nlohmann::json::parse(list.out)["name"], name) << list;
}

TEST(Escaping, UsageErrorsEscapeTheArgumentTheyEcho) {
  const std::string evil = "x\x1b[31m\nforged\x07";
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string prefix;
  } cases[] = {
      {{"parking_slot_list", "--from", evil},
       64,
       "outbox: --from must be primary, replica or replica:NAME (got 'x\\x1b[31m\\nforged\\x07')"},
      {{"parking_slot_list", "--max-staleness", evil},
       64,
       "outbox: --max-staleness: not a duration (got 'x\\x1b[31m\\nforged\\x07'"},
      {{"failed", "show", evil}, 64, "outbox: usage: "},
      {{"--set", evil + "=1", "config", "check"},
       78,
       "outbox: config --set x\\x1b[31m\\nforged\\x07: unknown configuration option"},
      {{evil}, 64, "outbox: usage: unknown command \"x\\x1b[31m\\nforged\\x07\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args[0]);
    RunResult result = run_outbox(c.args);
    EXPECT_EQ(result.exit_code, c.code) << result;
    EXPECT_EQ(lines(result.err), 1u) << result;
    EXPECT_FALSE(has_raw_control(result.err)) << result;
    EXPECT_EQ(result.err.rfind(c.prefix, 0), 0u) << result;
    EXPECT_NE(result.err.find("x\\x1b[31m\\nforged\\x07"), std::string::npos) << result;
  }
  RunResult check = run_outbox({"check", "--warning", evil});
  EXPECT_EQ(check.exit_code, 3) << check;
  EXPECT_EQ(lines(check.out), 1u) << check;
  EXPECT_FALSE(has_raw_control(check.out)) << check;
}

TEST(SmallThings, ConfigCheckRefusesAMissingPrimaryUrlAndATableListedTwice) {
  RunResult unset = run_outbox({"config", "check"}, {{"OUTBOX_PRIMARY_URL", kUnset}});
  EXPECT_EQ(unset.exit_code, 78) << unset;
  EXPECT_EQ(unset.err, "outbox: config: primary.url: not set (set it in the config file or OUTBOX_PRIMARY_URL)\n") << unset;
  std::string config =
      write_file("twice.toml", "[[relay.tables]]\nname = \"public.outbox\"\n[[relay.tables]]\nname = \"public.outbox\"\n");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{{"config", "check"}, {"relay"}}) {
    RunResult result = run_outbox(with_args({"--config", config}, args), {}, 30s);
    EXPECT_EQ(result.exit_code, 78) << result;
    EXPECT_NE(result.err.find("outbox: config " + config +
                              ":4:8: relay.tables.name: \"public.outbox\" is listed twice (first at " + config + ":2:8)"),
              std::string::npos)
        << result;
    EXPECT_EQ(result.out, "") << result;
  }
}

TEST(SmallThings, ASlotNameOfOnlySpacesIsExit65AndWritesNothing) {
  fresh_start();
  for (const std::string& name : {std::string("   "), std::string("\xe3\x80\x80\xc2\xa0")}) {
    RunResult result = run_outbox({"create_parking_slot", "--name", name});
    EXPECT_EQ(result.exit_code, 65) << result;
    EXPECT_EQ(result.err, "outbox: invalid name: only spaces (a name must show at least one character)\n") << result;
  }
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM outbox"), "0");
}
