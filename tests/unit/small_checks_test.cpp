// Small checks of issue 14: a relay table listed twice, a slot name of only spaces.
#include <gtest/gtest.h>

#include "core/config.hpp"
#include "core/error.hpp"
#include "examples/parking/parking.hpp"
#include "relay/relay.hpp"

using namespace outbox;

namespace {

config::LoadOptions no_env() {
  config::LoadOptions options;
  options.getenv = [](const char*) -> const char* { return nullptr; };
  return options;
}

}  // namespace

TEST(RelayTables, ATableListedTwiceIsAConfigErrorNamingBothLines) {
  config::Config config = config::Config::parse(
      "[[relay.tables]]\nname = \"public.outbox\"\n[[relay.tables]]\nname = \"other\"\n[[relay.tables]]\nname = "
      "\"public.outbox\"\n",
      "outbox.toml", no_env());
  try {
    relay::tables_from_config(config, "outbox");
    FAIL() << "a duplicate table was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ExitCode::config);
    EXPECT_STREQ(error.what(),
                 "config outbox.toml:6:8: relay.tables.name: \"public.outbox\" is listed twice (first at outbox.toml:2:8); list "
                 "each outbox table once");
  }
  config::Config distinct = config::Config::parse(
      "[[relay.tables]]\nname = \"public.outbox\"\n[[relay.tables]]\nname = \"public.Outbox\"\n", "outbox.toml", no_env());
  EXPECT_EQ(relay::tables_from_config(distinct, "outbox").size(), 2u);
}

TEST(ParkingName, ANameOfOnlySpacesIsRefusedWithExit65) {
  for (std::string name : {" ", "   ", "\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\x8b", " \xe2\x80\x83 "}) {
    SCOPED_TRACE(name);
    try {
      parking::validate_name(name);
      ADD_FAILURE() << "accepted";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ExitCode::data);
      EXPECT_STREQ(error.what(), "invalid name: only spaces (a name must show at least one character)");
    }
  }
  EXPECT_NO_THROW(parking::validate_name("  leading and trailing spaces  "));
  EXPECT_NO_THROW(parking::validate_name(" x "));
}
