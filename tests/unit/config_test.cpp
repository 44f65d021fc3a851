#include "core/config.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <map>

#include "core/error.hpp"
#include "tests/unit/expect_error.hpp"

using namespace outbox;
using namespace outbox::config;

namespace {

LoadOptions no_env(std::map<std::string, std::string> env = {}) {
  LoadOptions options;
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(env));
  options.getenv = [shared](const char* name) -> const char* {
    auto found = shared->find(name);
    return found == shared->end() ? nullptr : found->second.c_str();
  };
  return options;
}

std::string error_of(std::string_view toml, LoadOptions options = no_env()) {
  try {
    Config::parse(toml, "outbox.toml", options);
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ExitCode::config);
    return error.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Config, DefaultsComeFromTheRegistry) {
  Config config = Config::parse("", "", no_env());
  EXPECT_EQ(config.integer("relay.batch_size"), 500);
  EXPECT_EQ(config.duration("relay.poll_interval"), std::chrono::seconds(1));
  EXPECT_EQ(config.text("broker.exchange"), "outbox");
  EXPECT_EQ(config.text("log.format"), "text");
  EXPECT_EQ(config.get("relay.batch_size").source, Source::default_value);
  ASSERT_EQ(config.sections("relay.tables").size(), 1u);
  EXPECT_EQ(config.sections("relay.tables")[0].at("name").text, "public.outbox");
}

TEST(Config, FileValuesOverrideDefaultsAndRecordTheirLine) {
  Config config = Config::parse("[relay]\nbatch_size = 1000\npoll_interval = \"250ms\"\n", "outbox.toml", no_env());
  EXPECT_EQ(config.integer("relay.batch_size"), 1000);
  EXPECT_EQ(config.duration("relay.poll_interval"), std::chrono::milliseconds(250));
  EXPECT_EQ(config.get("relay.batch_size").source, Source::file);
  EXPECT_EQ(config.get("relay.batch_size").origin, "outbox.toml:2:14");
}

TEST(Config, AnOutOfRangeValueNamesFileLineColumnKeyAndRange) {
  EXPECT_EQ(error_of("[relay]\n\nbatch_size = 0\n"), "config outbox.toml:3:14: relay.batch_size: must be 1..10000 (got 0)");
}

TEST(Config, AnUnknownKeyIsAnError) {
  EXPECT_EQ(error_of("[relay]\nbatch_sise = 5\n"), "config outbox.toml:2:14: relay.batch_sise: unknown configuration option");
  EXPECT_EQ(error_of("[nope]\nx = 1\n"), "config outbox.toml:2:5: nope.x: unknown configuration option");
}

TEST(Config, AWrongTypeIsAnError) {
  EXPECT_EQ(error_of("[relay]\nbatch_size = \"big\"\n"),
            "config outbox.toml:2:14: relay.batch_size: must be 1..10000 (got a string)");
  EXPECT_EQ(error_of("[log]\nformat = \"xml\"\n"), "config outbox.toml:2:10: log.format: must be one of text|json (got \"xml\")");
}

TEST(Config, ASyntaxErrorNamesTheLine) {
  std::string error = error_of("[relay\n");
  EXPECT_EQ(error.rfind("config outbox.toml:1:", 0), 0u) << error;
}

TEST(Config, EnvironmentOverridesTheFile) {
  Config config = Config::parse("[primary]\nurl = \"postgresql://a/b\"\n", "outbox.toml",
                                no_env({{"OUTBOX_PRIMARY_URL", "postgresql://env/db"},
                                        {"OUTBOX_REPLICA_URL", "postgresql://replica/db"},
                                        {"OUTBOX_BROKER_URL", "amqp://one/,amqp://two/"}}));
  EXPECT_EQ(config.text("primary.url"), "postgresql://env/db");
  EXPECT_EQ(config.get("primary.url").source, Source::env);
  EXPECT_EQ(config.text("replicas.main.url"), "postgresql://replica/db");
  EXPECT_EQ(config.list("broker.url"), (std::vector<std::string>{"amqp://one/", "amqp://two/"}));
  EXPECT_EQ(config.replica_names(), std::vector<std::string>{"main"});
}

TEST(Config, SetFlagsOverrideEverything) {
  LoadOptions options = no_env({{"OUTBOX_LOG_LEVEL", "debug"}});
  options.overrides = {"log.level=warn", "relay.batch_size=42", "replicas.eu.url=postgresql://eu/db"};
  Config config = Config::parse("", "", options);
  EXPECT_EQ(config.text("log.level"), "warn");
  EXPECT_EQ(config.get("log.level").source, Source::flag);
  EXPECT_EQ(config.integer("relay.batch_size"), 42);
  EXPECT_TRUE(config.has_replica("eu"));
  EXPECT_EQ(config.list("replicas.eu.binding_keys"), std::vector<std::string>{"#"});
}

TEST(Config, ABadEnvironmentValueNamesTheVariable) {
  EXPECT_EQ(error_of("", no_env({{"OUTBOX_PRIMARY_URL", "mysql://x"}})),
            "config env OUTBOX_PRIMARY_URL: primary.url: must be a postgresql:// URL (got mysql://x)");
}

TEST(Config, NamedReplicasGetTheirDefaults) {
  Config config = Config::parse(
      "[replicas.main]\nurl = \"postgresql://r1/db\"\n[replicas.reports]\nurl = \"postgresql://r2/db\"\nqueue_type = "
      "\"quorum\"\n",
      "outbox.toml", no_env());
  EXPECT_EQ(config.replica_names(), (std::vector<std::string>{"main", "reports"}));
  EXPECT_EQ(config.text("replicas.reports.queue_type"), "quorum");
  EXPECT_EQ(config.text("replicas.main.queue_type"), "classic");
}

TEST(Config, AReplicaWithoutUrlIsAnError) {
  EXPECT_EQ(error_of("[replicas.eu]\nqueue_type = \"quorum\"\n"),
            "config outbox.toml:1:1: replicas.eu.url: is required for every [replicas.eu] section");
}

TEST(Config, TableArraysAreParsedWithFieldDefaults) {
  Config config = Config::parse(
      "[[relay.tables]]\nname = \"public.outbox\"\n[[relay.tables]]\nname = \"billing.outbox\"\nexchange = \"billing\"\n",
      "outbox.toml", no_env());
  const auto& tables = config.sections("relay.tables");
  ASSERT_EQ(tables.size(), 2u);
  EXPECT_EQ(tables[1].at("exchange").text, "billing");
  EXPECT_EQ(tables[0].at("exchange").text, "");
  EXPECT_EQ(error_of("[[relay.tables]]\nexchange = \"x\"\n"),
            "config outbox.toml:1:1: relay.tables.name: is required in every [[relay.tables]] block");
}

TEST(Config, ShowMasksPasswordsAndNamesSources) {
  Config config = Config::parse("[primary]\nurl = \"postgresql://outbox:secret@db/outbox\"\n", "outbox.toml", no_env());
  std::string shown = show(config);
  EXPECT_EQ(shown.find("secret"), std::string::npos);
  EXPECT_NE(shown.find("url = \"postgresql://outbox:****@db/outbox\""), std::string::npos) << shown;
  EXPECT_NE(shown.find("# file outbox.toml:2:7"), std::string::npos) << shown;
  EXPECT_NE(shown.find("batch_size = 500"), std::string::npos) << shown;
  config::LoadOptions with_env = no_env();
  with_env.getenv = [](const char* name) -> const char* { return std::string(name) == "OUTBOX_LOG_LEVEL" ? "debug" : nullptr; };
  std::string from_env = show(Config::parse("", "outbox.toml", with_env));
  EXPECT_NE(from_env.find("level = \"debug\""), std::string::npos) << from_env;
  EXPECT_NE(from_env.find("# env OUTBOX_LOG_LEVEL\n"), std::string::npos) << from_env;
  EXPECT_EQ(from_env.find("env env"), std::string::npos) << from_env;
}

TEST(Config, ReloadReportsRestartOnlyChanges) {
  Config running = Config::parse("[relay]\nbatch_size = 10\npartitions = 8\n", "outbox.toml", no_env());
  Config fresh = Config::parse("[relay]\nbatch_size = 20\npartitions = 4\n", "outbox.toml", no_env());
  EXPECT_EQ(restart_only_changes(running, fresh), std::vector<std::string>{"relay.partitions"});
}

TEST(Config, AUrlWithASpaceOrABrokenEscapeIsRefusedWithoutShowingThePassword) {
  std::string spaced = error_of("[primary]\nurl = \"postgresql://outbox:pa ss@db/outbox\"\n");
  EXPECT_EQ(spaced,
            "config outbox.toml:2:7: primary.url: must not contain whitespace or control characters (percent-encode them, "
            "e.g. %20)");
  std::string broken = error_of("[broker]\nurl = \"amqp://outbox:50%off@mq/\"\n");
  EXPECT_NE(broken.find("broker.url: has a '%' that is not followed by two hex digits"), std::string::npos) << broken;
  EXPECT_EQ(broken.find("50%off"), std::string::npos) << broken;
}

TEST(Config, ABadUrlInAnArrayIsReportedAtItsOwnPosition) {
  EXPECT_EQ(error_of("[broker]\nurl = [\"amqp://a/\", \"http://b/\"]\n"),
            "config outbox.toml:2:21: broker.url: must be an amqp:// or amqps:// URL (got http://b/)");
  EXPECT_EQ(error_of("[broker]\nurl = [\"amqp://a/\", 7]\n"),
            "config outbox.toml:2:21: broker.url: must be a URL or an array of URLs");
}

TEST(Config, ReloadReportsAChangedPasswordButNotADurationWrittenAnotherWay) {
  Config running =
      Config::parse("[broker]\nurl = \"amqp://outbox:old@mq/\"\n[relay]\nnotify_channel = \"a\"\n", "outbox.toml", no_env());
  Config fresh =
      Config::parse("[broker]\nurl = \"amqp://outbox:new@mq/\"\n[relay]\nnotify_channel = \"a\"\n", "outbox.toml", no_env());
  EXPECT_EQ(restart_only_changes(running, fresh), std::vector<std::string>{"broker.url"});
  Config seconds = Config::parse("[broker]\nheartbeat = \"1m\"\n", "outbox.toml", no_env());
  Config milliseconds = Config::parse("[broker]\nheartbeat = \"60000ms\"\n", "outbox.toml", no_env());
  EXPECT_EQ(restart_only_changes(seconds, milliseconds), std::vector<std::string>{});
}

TEST(Config, ShowPrintsTomlThatLoadsBackWithTheSameValues) {
  Config config = Config::parse(
      "[relay]\nbatch_size = 42\n[[relay.tables]]\nname = \"outbox\"\n[[relay.tables]]\nname = \"billing.outbox\"\n"
      "exchange = \"billing\"\n[replicas.eu]\nurl = \"postgresql://db/eu\"\n",
      "outbox.toml", no_env());
  std::string shown = show(config);
  Config again = Config::parse(shown, "shown.toml", no_env());
  EXPECT_EQ(again.integer("relay.batch_size"), 42) << shown;
  ASSERT_EQ(again.sections("relay.tables").size(), 2u) << shown;
  EXPECT_EQ(again.sections("relay.tables")[1].at("exchange").text, "billing");
  EXPECT_EQ(again.text("replicas.eu.url"), "postgresql://db/eu");
  for (const Option& option : options()) {
    if (option.key.find('*') != std::string_view::npos || option.key.find("[]") != std::string_view::npos ||
        option.type == Type::table_array)
      continue;
    EXPECT_EQ(display_value(again.get(option.key)), display_value(config.get(option.key))) << option.key;
  }
}

TEST(Config, AFileWithAPasswordThatEveryUserCanReadDrawsAWarningButGroupReadIsFine) {
  std::string path = ::testing::TempDir() + "outbox-password.toml";
  {
    std::ofstream file(path);
    file << "[primary]\nurl = \"postgresql://outbox:secret@db/outbox\"\n";
  }
  LoadOptions options = no_env();
  options.config_path = path;
  ::chmod(path.c_str(), 0644);
  Config readable = Config::load(options);
  ASSERT_EQ(readable.warnings().size(), 1u);
  EXPECT_EQ(readable.warnings()[0],
            "config " + path + ": contains a password but every user can read it (mode 0644); run chmod o-r " + path);
  EXPECT_EQ(readable.warnings()[0].find("secret"), std::string::npos);
  ::chmod(path.c_str(), 0640);
  EXPECT_TRUE(Config::load(options).warnings().empty());
  ::chmod(path.c_str(), 0600);
  EXPECT_TRUE(Config::load(options).warnings().empty());
  std::remove(path.c_str());
}

TEST(Config, ADirectoryGivenAsTheConfigFileIsAnErrorNotAnEmptyConfig) {
  LoadOptions options = no_env();
  options.config_path = ::testing::TempDir();
  outbox::testing::expect_error([&] { Config::load(options); }, ExitCode::config,
                                "config " + options.config_path + ": cannot read: is a directory");
}

TEST(Config, AMissingConfigFileNamedOnTheCommandLineIsAnError) {
  LoadOptions options = no_env();
  options.config_path = "/nonexistent/outbox.toml";
  outbox::testing::expect_error([&] { Config::load(options); }, ExitCode::config,
                                "config /nonexistent/outbox.toml: cannot open: No such file or directory");
}

TEST(Config, ServicesGetTheirDefaultsHandlersAndDeadlines) {
  Config config = Config::parse(
      "[services.booking]\nurl = \"postgresql://db/booking\"\nbinding_keys = [\"parking.*\"]\n"
      "[[services.booking.handlers]]\nevent_type = \"parking.reserved\"\nfunction = \"booking.on_reserved\"\n"
      "[[services.booking.handlers]]\nevent_type = \"bill.#\"\nfunction = \"booking.on_bill\"\n"
      "[[services.booking.deadlines]]\nfunction = \"booking.expire_sagas\"\n"
      "[services.billing]\nurl = \"postgresql://db/billing\"\n",
      "outbox.toml", no_env());
  EXPECT_EQ(config.service_names(), (std::vector<std::string>{"billing", "booking"}));
  EXPECT_TRUE(config.has_service("billing"));
  EXPECT_FALSE(config.has_service("parking"));
  EXPECT_EQ(config.text("services.billing.queue_type"), "classic");
  EXPECT_TRUE(config.list("services.billing.binding_keys").empty());
  const auto& handlers = config.sections("services.booking.handlers");
  ASSERT_EQ(handlers.size(), 2u);
  EXPECT_EQ(handlers[1].at("function").text, "booking.on_bill");
  const auto& deadlines = config.sections("services.booking.deadlines");
  ASSERT_EQ(deadlines.size(), 1u);
  EXPECT_EQ(deadlines[0].at("every").number, 1000);  // the default: every second
  EXPECT_TRUE(config.sections("services.billing.handlers").empty());
}

TEST(Config, AServiceWithoutUrlOrAHandlerWithoutFunctionIsAnError) {
  EXPECT_EQ(error_of("[services.billing]\nbinding_keys = [\"a\"]\n"),
            "config outbox.toml:1:1: services.billing.url: is required for every [services.billing] section");
  EXPECT_EQ(error_of("[services.billing]\nurl = \"postgresql://db/b\"\n[[services.billing.handlers]]\nevent_type = \"a\"\n"),
            "config outbox.toml:3:1: services.billing.handlers.function: is required in every "
            "[[services.billing.handlers]] block");
  EXPECT_EQ(error_of("[services.\"bad name\"]\nurl = \"postgresql://db/b\"\n"),
            "config outbox.toml:1:1: services.bad name: service names may use letters, digits, '_' and '-'");
  EXPECT_EQ(error_of("[services.billing]\nurl = \"postgresql://db/b\"\n[[services.billing.handlers]]\nevent_type = \"a\"\n"
                     "function = \"f\"\nretries = 3\n"),
            "config outbox.toml:6:11: services.billing.handlers.retries: unknown configuration option");
}

TEST(Config, AServiceCanBeAddedWithSet) {
  LoadOptions options = no_env();
  options.overrides = {"services.billing.url=postgresql://db/billing"};
  Config config = Config::parse("", "", options);
  EXPECT_EQ(config.service_names(), (std::vector<std::string>{"billing"}));
  EXPECT_EQ(config.text("services.billing.queue_type"), "classic");
}

TEST(Config, ShowPrintsServicesThatLoadBackWithTheirHandlers) {
  Config config = Config::parse(
      "[services.booking]\nurl = \"postgresql://db/booking\"\nbinding_keys = [\"a.*\"]\n"
      "[[services.booking.handlers]]\nevent_type = \"a.b\"\nfunction = \"booking.on_ab\"\n"
      "[[services.booking.deadlines]]\nfunction = \"booking.expire\"\nevery = \"250ms\"\n",
      "outbox.toml", no_env());
  std::string shown = show(config);
  Config again = Config::parse(shown, "shown.toml", no_env());
  EXPECT_EQ(again.text("services.booking.url"), "postgresql://db/booking") << shown;
  ASSERT_EQ(again.sections("services.booking.handlers").size(), 1u) << shown;
  EXPECT_EQ(again.sections("services.booking.handlers")[0].at("function").text, "booking.on_ab");
  ASSERT_EQ(again.sections("services.booking.deadlines").size(), 1u) << shown;
  EXPECT_EQ(again.sections("services.booking.deadlines")[0].at("every").number, 250);
}

TEST(Config, ReloadReportsAChangedHandlerAsRestartOnly) {
  std::string head = "[services.booking]\nurl = \"postgresql://db/booking\"\n[[services.booking.handlers]]\nevent_type = \"a\"\n";
  Config running = Config::parse(head + "function = \"f\"\n", "outbox.toml", no_env());
  Config fresh = Config::parse(head + "function = \"g\"\n", "outbox.toml", no_env());
  EXPECT_EQ(restart_only_changes(running, fresh), (std::vector<std::string>{"services.booking.handlers"}));
}
