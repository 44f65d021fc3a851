// A password that the client libraries would cut short is refused before any of it can be quoted
// (core/url.hpp).
#include <gtest/gtest.h>

#include <map>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/url.hpp"
#include "tests/support/fragments.hpp"

using namespace outbox;
using outbox::testing::fragments_in;

namespace {

config::LoadOptions with_env(std::map<std::string, std::string> env, std::vector<std::string> overrides = {}) {
  config::LoadOptions options;
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(env));
  options.getenv = [shared](const char* name) -> const char* {
    auto found = shared->find(name);
    return found == shared->end() ? nullptr : found->second.c_str();
  };
  options.overrides = std::move(overrides);
  return options;
}

std::string config_error_of(const std::string& toml, const config::LoadOptions& options) {
  try {
    config::Config::parse(toml, "outbox.toml", options);
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ExitCode::config);
    return error.what();
  }
  return "(no error)";
}

}  // namespace

TEST(UrlUserinfo, APasswordWithAnUnencodedSlashAtQuestionMarkOrHashIsRefused) {
  for (std::string url :
       {"postgresql://outbox:Zq7/Xw9Vk@db/x", "postgresql://outbox:Zq7@Xw9Vk@db/x", "postgresql://outbox:Zq7?Xw9Vk@db/x",
        "postgresql://outbox:Zq7#Xw9Vk@db/x", "amqp://outbox:Zq7/Xw9Vk@mq/", "amqps://outbox:Zq7@Xw9Vk@mq/",
        "amqp://outbox:Zq7:Xw9Vk@mq/", "amqp://outbox:Zq7[Xw9Vk@mq/", "postgresql://outbox:Zq7@Xw9/Vk@db/x"}) {
    SCOPED_TRACE(url);
    std::string problem = url_syntax_problem(url);
    EXPECT_NE(problem.find("must be percent-encoded"), std::string::npos) << problem;
    EXPECT_EQ(fragments_in(problem, "Zq7?Xw9Vk"), std::vector<std::string>{});
  }
}

TEST(UrlUserinfo, PercentEncodedPasswordsAndOrdinaryUrlsPass) {
  for (std::string url : {"postgresql://outbox:Zq7%2F%40%3A%25%3F%23%27%20Xw9@db:5432/x?sslmode=require",
                          "postgresql://outbox:Zq7:Xw9'Vk@db/x",     // libpq reads ':' and quotes in a password as they are
                          "postgresql://db/x?application_name=a@b",  // no password to cut short
                          "postgresql://outbox@db/x", "postgresql://[::1]:5432/x", "postgresql://u:p@h1:5432,h2:5433/x",
                          "amqp://outbox:Zq7%3A%2F%40Xw9@mq:5672/%2F", "amqps://mq/", "amqp://u:pa'ss@mq/"}) {
    SCOPED_TRACE(url);
    EXPECT_EQ(url_syntax_problem(url), "");
  }
}

TEST(UrlUserinfo, EveryUrlSettingRefusesItWithExit78NamingTheSettingAndQuotingNothing) {
  const std::string secret = "Zq7/Xw9Vk";
  struct Case {
    config::LoadOptions options;
    std::string toml, expected;
  } cases[] = {
      {with_env({{"OUTBOX_PRIMARY_URL", "postgresql://outbox:" + secret + "@db/x"}}), "",
       "config env OUTBOX_PRIMARY_URL: primary.url: the user name and password must be percent-encoded"},
      {with_env({{"OUTBOX_REPLICA_URL", "postgresql://outbox:" + secret + "@db/x"}}), "",
       "config env OUTBOX_REPLICA_URL: replicas.main.url: the user name and password must be percent-encoded"},
      {with_env({{"OUTBOX_BROKER_URL", "amqp://outbox:" + secret + "@mq/"}}), "",
       "config env OUTBOX_BROKER_URL: broker.url: the user name and password must be percent-encoded"},
      {with_env({}, {"broker.url=amqp://outbox:" + secret + "@mq/"}), "",
       "config --set broker.url: broker.url: the user name and password must be percent-encoded"},
      {with_env({}), "[replicas.eu]\nurl = \"postgresql://outbox:" + secret + "@db/x\"\n",
       "config outbox.toml:2:7: replicas.eu.url: the user name and password must be percent-encoded"},
      {with_env({}), "[broker]\nurl = [\"amqp://mq1/\", \"amqp://outbox:" + secret + "@mq2/\"]\n",
       "config outbox.toml:2:23: broker.url: the user name and password must be percent-encoded"},
  };
  for (const Case& c : cases) {
    std::string error = config_error_of(c.toml, c.options);
    EXPECT_EQ(error.rfind(c.expected, 0), 0u) << error;
    EXPECT_EQ(fragments_in(error, secret), std::vector<std::string>{}) << error;
  }
}

TEST(UrlUserinfo, ACommaInAPasswordOfTheBrokerListInTheEnvironmentIsNotQuoted) {
  // The environment's list is split at commas: the second piece is the password's tail.
  std::string error = config_error_of("", with_env({{"OUTBOX_BROKER_URL", "amqp://outbox:Zq7,Xw9Vk@mq/"}}));
  EXPECT_NE(error.find("broker.url: must be an amqp:// or amqps:// URL"), std::string::npos) << error;
  EXPECT_EQ(fragments_in(error, "Zq7,Xw9Vk"), std::vector<std::string>{}) << error;
  EXPECT_EQ(mask_credentials("Xw9Vk@mq/"), "****@mq/");
  EXPECT_EQ(mask_credentials("outbox:hunter2@db/x"), "outbox:****@db/x");
}
