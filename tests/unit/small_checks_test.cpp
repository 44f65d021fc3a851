// Small checks: a relay table listed twice, a slot name of only spaces (issue 14); an error cut to
// its first line (issue 15).
#include <gtest/gtest.h>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/pg.hpp"
#include "examples/parking/parking.hpp"
#include "relay/relay.hpp"
#include "tests/unit/default_config.hpp"
#include "tests/unit/expect_error.hpp"

using namespace outbox;

namespace {

using outbox::testing::without_environment;

}  // namespace

TEST(RelayTables, ATableListedTwiceIsAConfigErrorNamingBothLines) {
  config::Config config = config::Config::parse(
      "[[relay.tables]]\nname = \"public.outbox\"\n[[relay.tables]]\nname = \"other\"\n[[relay.tables]]\nname = "
      "\"public.outbox\"\n",
      "outbox.toml", without_environment());
  outbox::testing::expect_error([&] { relay::tables_from_config(config, "outbox"); }, ExitCode::config,
                                "config outbox.toml:6:8: relay.tables.name: \"public.outbox\" is listed twice (first at "
                                "outbox.toml:2:8); list each outbox table once");
  config::Config distinct =
      config::Config::parse("[[relay.tables]]\nname = \"public.outbox\"\n[[relay.tables]]\nname = \"public.Outbox\"\n",
                            "outbox.toml", without_environment());
  EXPECT_EQ(relay::tables_from_config(distinct, "outbox").size(), 2u);
}

TEST(ParkingName, ANameOfOnlySpacesIsRefusedWithExit65) {
  for (std::string name : {" ", "   ", "\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\x8b", " \xe2\x80\x83 "}) {
    SCOPED_TRACE(name);
    outbox::testing::expect_error([&] { parking::validate_name(name); }, ExitCode::data,
                                  "invalid name: only spaces (a name must show at least one character)");
  }
  EXPECT_NO_THROW(parking::validate_name("  leading and trailing spaces  "));
  EXPECT_NO_THROW(parking::validate_name(" x "));
}

TEST(ErrorText, AServerMessageIsCutToItsFirstLine) {
  const std::pair<std::string, std::string> cases[] = {
      {"ERROR:  relation \"outbox\" does not exist\nLINE 1: SELECT 1 FROM outbox\n",
       "ERROR:  relation \"outbox\" does not exist"},
      {"one line", "one line"},
      {"", ""},
      {"\nafter an empty first line", ""},
  };
  for (const auto& [text, line] : cases) EXPECT_EQ(first_line(text), line) << text;
  // libpq's prefix goes too where the text names a server error.
  EXPECT_EQ(pg::first_error_line("ERROR:  duplicate key value\nDETAIL:  Key (uuid)=(x) already exists."), "duplicate key value");
}

TEST(ErrorText, AFailedDatabaseReadIsOneLineNamingTheDatabaseWithAHintWhenTheSchemaIsMissing) {
  pqxx::undefined_table missing("ERROR:  relation \"outbox_heartbeat\" does not exist\nLINE 1: SELECT\n", "SELECT", "42P01");
  EXPECT_EQ(pg::failure_line(missing, "replica main"),
            "replica main: schema not migrated (run 'outbox migrate'): ERROR:  relation \"outbox_heartbeat\" does not exist");
  EXPECT_EQ(pg::failure_line(std::runtime_error("timeout\nmore"), "primary"), "primary: timeout");
  // Our own errors already name the database.
  EXPECT_EQ(pg::failure_line(unavailable_error("primary postgresql://x:****@h/db: refused\nmore"), "primary"),
            "primary postgresql://x:****@h/db: refused");
}
