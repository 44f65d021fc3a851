// Every settings builder over the defaults and over a config that sets every option: a builder
// that looks up a mistyped key (Config::get: "not a registered option") fails here, not at a user's
// start or reload.
#include "core/settings.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <string>

#include "core/amqp.hpp"
#include "core/config.hpp"
#include "core/duration.hpp"
#include "core/escape.hpp"
#include "migrate/topology.hpp"
#include "relay/settings.hpp"
#include "replicate/settings.hpp"

using namespace outbox;

namespace {

const std::map<std::string, std::string> kUrls = {{"OUTBOX_PRIMARY_URL", "postgresql://app@primary/app"},
                                                  {"OUTBOX_REPLICA_URL", "postgresql://app@replica/app"},
                                                  {"OUTBOX_BROKER_URL", "amqp://guest@broker/"}};

config::LoadOptions load_options(bool with_urls) {
  config::LoadOptions options;
  options.getenv = [with_urls](const char* name) -> const char* {
    auto found = kUrls.find(name);
    return with_urls && found != kUrls.end() ? found->second.c_str() : nullptr;
  };
  return options;
}

// A URL's password comes from one place at a time: the config sets each password_file, and
// password_credential (the other place, tested in password_file_test) stays unset.
bool is_password_credential(std::string_view key) { return key.ends_with(".password_credential"); }

// A password file the daemons' user alone can read.
std::string password_file() {
  static const std::string path = [] {
    std::string file = ::testing::TempDir() + "settings-test.password";
    std::ofstream(file) << "Zq7Xw9Vk\n";
    ::chmod(file.c_str(), 0600);
    return file;
  }();
  return path;
}

// A value of the option's type other than its default where one is easy to find, in TOML.
std::string value_for(const config::Option& option) {
  if (std::string_view(option.key).ends_with(".password_file")) return toml_string(password_file());
  static const std::map<std::string_view, std::string> kSpecial = {
      {"relay.tables[].name", "\"app.outbox\""},
      {"replicate.mappings[].event_type", "\"order.placed\""},
      {"replicate.mappings[].table", "\"orders\""},
      {"replicate.mappings[].key_column", "\"id\""},
      {"metrics.listen", "\"127.0.0.1:9100\""},
      {"broker.url", "[\"amqp://guest@a/\", \"amqp://guest@b/\"]"},
      // Packing with a partitioned replica (partitions at its max here) is refused: Pack.* tests it.
      {"relay.pack", "1"},
  };
  if (auto found = kSpecial.find(option.key); found != kSpecial.end()) return found->second;
  switch (option.type) {
    case config::Type::url:
      return "\"postgresql://app@somewhere/app\"";
    case config::Type::integer:
      return std::to_string(option.max);
    case config::Type::duration:
      return toml_string(format_duration(Duration(option.max)));
    case config::Type::boolean:
      return "false";
    case config::Type::enumeration: {
      std::string_view allowed = option.allowed;
      return toml_string(allowed.substr(allowed.rfind('|') + 1));
    }
    case config::Type::string_list:
      return "[\"a.#\", \"b.#\"]";
    default:
      return "\"x\"";
  }
}

// One line for every option: top-level keys in their sections, array fields in one block each,
// the fields of named sections in [replicas.eu] and [services.eu] (and their arrays in
// [[services.eu.handlers]]...).
std::string every_option_set() {
  std::map<std::string, std::string> sections;
  for (const config::Option& option : config::options()) {
    std::string key(option.key);
    if (option.type == config::Type::table_array || is_password_credential(key)) continue;
    if (size_t star = key.find('*'); star != std::string::npos) key.replace(star, 1, "eu");
    std::string line_value = " = " + value_for(option) + "\n";
    if (size_t array = key.find("[]."); array != std::string::npos)
      sections["[" + key.substr(0, array) + "]"] += key.substr(array + 3) + line_value;
    else if (option.key.find('*') != std::string_view::npos)
      sections[key.substr(0, key.rfind('.'))] += key.substr(key.rfind('.') + 1) + line_value;
    else
      sections[key.substr(0, key.find('.'))] += key.substr(key.find('.') + 1) + line_value;
  }
  // Tables first, then the [[arrays]]: a key after [[a.b]] would belong to that block.
  std::string tables, arrays;
  for (const auto& [section, lines] : sections) (section[0] == '[' ? arrays : tables) += "[" + section + "]\n" + lines;
  return tables + arrays;
}

// Every builder; each throws on a key the registry does not have.
void run_every_builder(const config::Config& config) {
  config::log_settings(config);
  config::metrics_settings(config);
  config::primary_url(config);
  for (const std::string& name : config.replica_names()) {
    config::replica_url(config, name);
    topology::replica_queue(config, name);
  }
  for (const std::string& name : config.service_names()) {
    config::service_url(config, name);
    config::service_migrations_dir(config, name);
  }
  amqp::require_broker(amqp::broker_settings(config));
  relay::settings_from_config(config);
  replicate::settings_from_config(config);
}

}  // namespace

TEST(Settings, EveryBuilderRunsOverTheDefaults) {
  config::Config config = config::Config::parse("", "", load_options(true));
  ASSERT_NO_THROW(run_every_builder(config));
  relay::Settings relay = relay::settings_from_config(config);
  EXPECT_EQ(relay.tables.size(), 1u);
  EXPECT_EQ(relay.tables.front().exchange, "outbox");
  EXPECT_EQ(relay.tunables.batch_size, 500);
  EXPECT_EQ(relay.tunables.max_unconfirmed, 6000);
  EXPECT_EQ(relay.tunables.maintenance_interval, std::chrono::seconds(10));
  replicate::Settings replicate = replicate::settings_from_config(config);
  ASSERT_EQ(replicate.replicas.size(), 1u);
  EXPECT_EQ(replicate.replicas.front().name, "main");
  EXPECT_EQ(replicate.mappings.size(), 3u) << "the built-in parking mapping";
  EXPECT_EQ(replicate.tunables.heartbeat_interval, 10.0);
}

TEST(Settings, EveryBuilderRunsOverAConfigThatSetsEveryOption) {
  std::string toml = every_option_set();
  config::Config config = config::Config::parse(toml, "every.toml", load_options(false));
  // The config really sets every option: none is left at its default.
  for (const config::Option& option : config::options()) {
    std::string key(option.key);
    std::string concrete = key;
    if (size_t star = concrete.find('*'); star != std::string::npos) concrete.replace(star, 1, "eu");
    if (option.type == config::Type::table_array) {
      EXPECT_EQ(config.sections(concrete).size(), 1u) << key;
      continue;
    }
    if (is_password_credential(key)) continue;
    if (size_t array = concrete.find("[]."); array != std::string::npos) {
      const config::Section& block = config.sections(concrete.substr(0, array)).at(0);
      EXPECT_EQ(block.at(concrete.substr(array + 3)).source, config::Source::file) << key;
    } else {
      EXPECT_EQ(config.get(concrete).source, config::Source::file) << key;
    }
  }
  ASSERT_NO_THROW(run_every_builder(config)) << toml;
  relay::Settings relay = relay::settings_from_config(config);
  EXPECT_EQ(relay.tables.front().name, "app.outbox");
  EXPECT_EQ(relay.tables.front().exchange, "x") << "the table's own exchange";
  EXPECT_EQ(relay.tunables.batch_size, 10000);
  EXPECT_EQ(relay.tunables.maintenance_interval, std::chrono::hours(1));
  EXPECT_TRUE(relay.tunables.delete_on_publish);
  replicate::Settings replicate = replicate::settings_from_config(config);
  ASSERT_EQ(replicate.replicas.size(), 1u);
  EXPECT_EQ(replicate.replicas.front().name, "eu");
  EXPECT_TRUE(replicate.replicas.front().queue.quorum);
  EXPECT_EQ(replicate.mappings.front().operation, replicate::Operation::remove);
  EXPECT_EQ(replicate.broker.urls.size(), 2u);
}

TEST(Settings, AMissingReplicaIsNamedTheSameWayEverywhere) {
  config::Config config = config::Config::parse("", "", load_options(true));
  try {
    config::replica_url(config, "eu", "migrate");
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ExitCode::config);
    EXPECT_STREQ(error.what(), "migrate: no replica named 'eu' is configured (set replicas.eu.url)");
  }
  EXPECT_STREQ(config::missing_replica("main").what(),
               "no replica named 'main' is configured (set replicas.main.url or OUTBOX_REPLICA_URL)");
  EXPECT_THROW(replicate::settings_from_config(config, {"main", "eu"}), Error);
}

TEST(Settings, AWindowOfPacksIsPrefetchOverPackButNeverFewerThanFiftyPacksNorMoreThanPrefetch) {
  EXPECT_EQ(replicate::replicate_window(5000, 1), 5000);   // single events: replicate.prefetch itself
  EXPECT_EQ(replicate::replicate_window(5000, 100), 50);   // the quotient
  EXPECT_EQ(replicate::replicate_window(5000, 20), 250);   // the quotient, above the least
  EXPECT_EQ(replicate::replicate_window(5000, 500), 50);   // a quotient of 10 packs: raised to 50
  EXPECT_EQ(replicate::replicate_window(5000, 1000), 50);  // and of 5
  EXPECT_EQ(replicate::replicate_window(20, 500), 20);     // never more than replicate.prefetch
  EXPECT_EQ(replicate::replicate_window(1, 1), 1);
}
