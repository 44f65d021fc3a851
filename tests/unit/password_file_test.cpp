// Issue 17: passwords kept outside the URLs, in a file (primary.password_file, ...) or a systemd
// credential (primary.password_credential, read from $CREDENTIALS_DIRECTORY). The password is put
// into the URL at load; config show names where it came from, never a byte of it.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/url.hpp"
#include "tests/support/fragments.hpp"

using namespace outbox;
using namespace outbox::config;
using outbox::testing::fragments_in;

namespace {

// A directory of its own for each test: a config file, password files, a credentials directory.
class PasswordFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("outbox-password-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "credentials");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& content, mode_t mode = 0600) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << content;
    ::chmod(path.c_str(), mode);
    return path;
  }

  LoadOptions options(const std::string& toml, std::map<std::string, std::string> env = {}) {
    LoadOptions options;
    options.config_path = write("outbox.toml", toml);
    auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(env));
    options.getenv = [shared](const char* name) -> const char* {
      auto found = shared->find(name);
      return found == shared->end() ? nullptr : found->second.c_str();
    };
    return options;
  }

  std::string error_of(const LoadOptions& options) {
    try {
      Config::load(options);
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ExitCode::config) << error.what();
      return error.what();
    }
    return "(no error)";
  }

  std::string credentials() const { return (dir_ / "credentials").string(); }
  std::string config_path() const { return (dir_ / "outbox.toml").string(); }

  std::filesystem::path dir_;
};

}  // namespace

TEST_F(PasswordFile, APasswordFileRelativeToTheConfigFillsTheUrlAndConfigShowNamesTheFileNeverThePassword) {
  write("primary.password", "Zq7/Xw9@Vk4:Jm2\n");
  Config config =
      Config::load(options("[primary]\nurl = \"postgresql://app@db:5432/app\"\npassword_file = \"primary.password\"\n"));
  EXPECT_EQ(config.text("primary.url"), "postgresql://app:Zq7%2FXw9%40Vk4%3AJm2@db:5432/app");
  EXPECT_TRUE(config.warnings().empty());
  std::string shown = show(config);
  EXPECT_NE(shown.find("url = \"postgresql://app:****@db:5432/app\""), std::string::npos) << shown;
  EXPECT_NE(shown.find("; password from file " + (dir_ / "primary.password").string() + "\n"), std::string::npos) << shown;
  EXPECT_NE(shown.find("password_file = \"primary.password\""), std::string::npos) << shown;
  EXPECT_EQ(fragments_in(shown, "Zq7/Xw9@Vk4:Jm2"), std::vector<std::string>{}) << shown;
  EXPECT_EQ(fragments_in(shown, "Zq7%2FXw9%40Vk4%3AJm2"), std::vector<std::string>{}) << shown;
}

TEST_F(PasswordFile, ASystemdCredentialFillsThePasswordOfEveryBrokerNodeAndOfANamedReplicaAndService) {
  write("credentials/broker-password", "Br9Zq7Xw");
  write("credentials/replica-eu-password", "Rp9Zq7Xw\r\n");
  write("credentials/service-billing-password", "Sv9Zq7Xw\n");
  Config config = Config::load(options(
      "[broker]\nurl = [\"amqp://relay@node-a:5672/\", \"amqp://relay@node-b:5672/\"]\npassword_credential = "
      "\"broker-password\"\n"
      "[replicas.eu]\nurl = \"postgresql://reader@replica/app\"\npassword_credential = \"replica-eu-password\"\n"
      "[services.billing]\nurl = \"postgresql://billing@db/billing\"\npassword_credential = \"service-billing-password\"\n",
      {{"CREDENTIALS_DIRECTORY", credentials()}}));
  EXPECT_EQ(config.list("broker.url"),
            (std::vector<std::string>{"amqp://relay:Br9Zq7Xw@node-a:5672/", "amqp://relay:Br9Zq7Xw@node-b:5672/"}));
  EXPECT_EQ(config.text("broker.url"), "amqp://relay:Br9Zq7Xw@node-a:5672/");
  EXPECT_EQ(config.text("replicas.eu.url"), "postgresql://reader:Rp9Zq7Xw@replica/app");
  EXPECT_EQ(config.text("services.billing.url"), "postgresql://billing:Sv9Zq7Xw@db/billing");
  std::string shown = show(config);
  EXPECT_NE(shown.find("; password from credential broker-password\n"), std::string::npos) << shown;
  EXPECT_NE(shown.find("; password from credential replica-eu-password\n"), std::string::npos) << shown;
  EXPECT_NE(shown.find("; password from credential service-billing-password\n"), std::string::npos) << shown;
  for (const char* secret : {"Br9Zq7Xw", "Rp9Zq7Xw", "Sv9Zq7Xw"})
    EXPECT_EQ(fragments_in(shown, secret), std::vector<std::string>{}) << shown;
}

TEST_F(PasswordFile, TheEnvironmentsUrlTakesThePasswordOfTheFileToo) {
  write("primary.password", "FromFile77\n");
  Config config = Config::load(
      options("[primary]\npassword_file = \"primary.password\"\n", {{"OUTBOX_PRIMARY_URL", "postgresql://app@db/app"}}));
  EXPECT_EQ(config.text("primary.url"), "postgresql://app:FromFile77@db/app");
}

TEST_F(PasswordFile, AMissingFileIsOneConfigErrorNamingTheOptionThePathAndTheCause) {
  EXPECT_EQ(
      error_of(options("[primary]\nurl = \"postgresql://app@db/app\"\npassword_file = \"/nonexistent/primary.password\"\n")),
      "config " + config_path() +
          ":3:17: primary.password_file: cannot read /nonexistent/primary.password: No such file "
          "or directory");
}

TEST_F(PasswordFile, AnUnreadableFileIsAConfigErrorThatShowsNothingOfItsContent) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files of mode 0000";
  std::string path = write("primary.password", "Unreadable42\n", 0000);
  std::string error = error_of(options("[primary]\nurl = \"postgresql://app@db/app\"\npassword_file = \"" + path + "\"\n"));
  EXPECT_EQ(error, "config " + config_path() + ":3:17: primary.password_file: cannot read " + path + ": Permission denied");
}

TEST_F(PasswordFile, AnEmptyOrMultiLineFileIsAConfigErrorThatShowsNothingOfItsContent) {
  std::string empty = write("empty.password", "\n");
  EXPECT_EQ(error_of(options("[broker]\nurl = \"amqp://relay@mq/\"\npassword_file = \"" + empty + "\"\n")),
            "config " + config_path() + ":3:17: broker.password_file: " + empty + " is empty");
  std::string two_lines = write("two.password", "FirstLine11\nSecondLine22\n");
  std::string error = error_of(options("[broker]\nurl = \"amqp://relay@mq/\"\npassword_file = \"" + two_lines + "\"\n"));
  EXPECT_EQ(error, "config " + config_path() + ":3:17: broker.password_file: " + two_lines + " holds more than one line");
  std::string big = write("big.password", std::string(5000, 'x'));
  EXPECT_EQ(error_of(options("[broker]\nurl = \"amqp://relay@mq/\"\npassword_file = \"" + big + "\"\n")),
            "config " + config_path() + ":3:17: broker.password_file: " + big + " is larger than 4096 bytes: not a password");
}

TEST_F(PasswordFile, AUrlThatHasAPasswordTooIsAConfigErrorThatShowsNeither) {
  write("primary.password", "FileSecret55\n");
  std::string error =
      error_of(options("[primary]\nurl = \"postgresql://app:UrlSecret55@db/app\"\npassword_file = \"primary.password\"\n"));
  EXPECT_EQ(error, "config " + config_path() + ":2:7: primary.url: has a password while primary.password_file is set (" +
                       config_path() + ":3:17); remove the password from the URL");
}

TEST_F(PasswordFile, AUrlWithoutAUserIsAConfigError) {
  write("replica.password", "FileSecret55\n");
  EXPECT_EQ(error_of(options("[replicas.eu]\nurl = \"postgresql://replica/app\"\npassword_file = \"replica.password\"\n")),
            "config " + config_path() +
                ":2:7: replicas.eu.url: names no user for the password of replicas.eu.password_file; write the user into "
                "the URL (scheme://USER@host/...)");
}

TEST_F(PasswordFile, AFileAndACredentialForOneUrlAreAConfigError) {
  write("primary.password", "FileSecret55\n");
  EXPECT_EQ(error_of(options("[primary]\nurl = \"postgresql://app@db/app\"\npassword_file = \"primary.password\"\n"
                             "password_credential = \"primary-password\"\n",
                             {{"CREDENTIALS_DIRECTORY", credentials()}})),
            "config " + config_path() +
                ":4:23: primary.password_credential: cannot be set together with "
                "primary.password_file (" +
                config_path() + ":3:17); set one of them");
}

TEST_F(PasswordFile, ACredentialOutsideSystemdOrWithASlashIsAConfigError) {
  EXPECT_EQ(error_of(options("[primary]\nurl = \"postgresql://app@db/app\"\npassword_credential = \"primary-password\"\n")),
            "config " + config_path() +
                ":3:23: primary.password_credential: $CREDENTIALS_DIRECTORY is not set (systemd sets "
                "it for a unit with LoadCredential=primary-password:PATH; outside systemd use the password_file option)");
  EXPECT_EQ(error_of(options("[primary]\nurl = \"postgresql://app@db/app\"\npassword_credential = \"../shadow\"\n",
                             {{"CREDENTIALS_DIRECTORY", credentials()}})),
            "config " + config_path() +
                ":3:23: primary.password_credential: must be a credential name, without '/' (got "
                "\"../shadow\")");
  EXPECT_EQ(error_of(options("[primary]\nurl = \"postgresql://app@db/app\"\npassword_credential = \"primary-password\"\n",
                             {{"CREDENTIALS_DIRECTORY", credentials()}})),
            "config " + config_path() + ":3:23: primary.password_credential: cannot read " + credentials() +
                "/primary-password: No such file or directory");
}

TEST_F(PasswordFile, AFileThatGroupOrOtherUsersCanReadDrawsAWarningAndACredentialNone) {
  write("primary.password", "FileSecret55\n", 0640);
  Config config = Config::load(options("[primary]\nurl = \"postgresql://app@db/app\"\npassword_file = \"primary.password\"\n"));
  std::string path = (dir_ / "primary.password").string();
  ASSERT_EQ(config.warnings().size(), 1u);
  EXPECT_EQ(config.warnings()[0], "config: primary.password_file: " + path +
                                      " is open to other users than its owner (mode 0640); run chmod 0600 " + path +
                                      ", or pass it with systemd's LoadCredential=");
  write("credentials/primary-password", "FileSecret55\n", 0640);
  EXPECT_TRUE(Config::load(options("[primary]\nurl = \"postgresql://app@db/app\"\npassword_credential = \"primary-password\"\n",
                                   {{"CREDENTIALS_DIRECTORY", credentials()}}))
                  .warnings()
                  .empty());
}

TEST_F(PasswordFile, AChangedPasswordIsAChangeThatNeedsARestart) {
  write("primary.password", "FirstSecret1\n");
  LoadOptions load = options("[primary]\nurl = \"postgresql://app@db/app\"\npassword_file = \"primary.password\"\n");
  Config running = Config::load(load);
  write("primary.password", "SecondSecret2\n");
  EXPECT_EQ(restart_only_changes(running, Config::load(load)), std::vector<std::string>{"primary.url"});
}

TEST(UrlWithPassword, PercentEncodesAllButTheUnreservedCharacters) {
  EXPECT_EQ(url_with_password("amqps://u@h:5671/vhost", "a-b.c_d~e f'g%h"), "amqps://u:a-b.c_d~e%20f%27g%25h@h:5671/vhost");
  EXPECT_TRUE(url_has_user("postgresql://u@h/db"));
  EXPECT_FALSE(url_has_user("postgresql://h/db?application_name=a@b"));
  EXPECT_FALSE(url_has_user("postgresql://:pw@h/db"));
}
