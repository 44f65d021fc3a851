// Keeps the option registry, the man page and the help text in sync.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/duration.hpp"
#include "core/options.hpp"

using namespace outbox::config;

namespace {
std::string read(const std::string& path) {
  std::ifstream file(path);
  std::stringstream content;
  content << file.rdbuf();
  return content.str();
}
}  // namespace

TEST(Registry, EveryOptionHasHelpAndAValidDefault) {
  for (const Option& option : options()) {
    EXPECT_FALSE(option.help.empty()) << option.key;
    if (option.type == Type::duration) {
      EXPECT_TRUE(outbox::parse_duration(option.default_value)) << option.key;
    }
    if (option.type == Type::integer && !option.default_value.empty()) {
      long long value = std::stoll(std::string(option.default_value));
      EXPECT_TRUE(value >= option.min && value <= option.max) << option.key;
    }
  }
}

TEST(Registry, EveryOptionIsDocumentedInTheManPage) {
  std::string man = read(OUTBOX_SOURCE_DIR "/man/outbox.toml.5");
  ASSERT_FALSE(man.empty()) << "man/outbox.toml.5 is missing";
  for (const Option& option : options()) {
    std::string key(option.key);
    // The man page writes each option as a tagged paragraph: .It Cm relay.batch_size
    EXPECT_NE(man.find(".It Cm " + key + "\n"), std::string::npos) << key << " is not documented in man/outbox.toml.5";
    if (!option.default_value.empty() && option.type != Type::table_array) {
      EXPECT_NE(man.find("Default: " + std::string(option.default_value)), std::string::npos)
          << key << ": default " << option.default_value << " is not in the man page";
    }
  }
}

TEST(Registry, TheManPageDocumentsNoOptionThatDoesNotExist) {
  std::istringstream man(read(OUTBOX_SOURCE_DIR "/man/outbox.toml.5"));
  for (std::string line; std::getline(man, line);)
    if (line.rfind(".It Cm ", 0) == 0) {
      std::string key = line.substr(7);
      bool known = false;
      for (const Option& option : options()) known = known || option.key == key;
      EXPECT_TRUE(known) << "man/outbox.toml.5 documents " << key << ", which the registry does not have";
    }
}

TEST(Registry, TheManPageHoldsTheGeneratedReference) {
  std::string man = read(OUTBOX_SOURCE_DIR "/man/outbox.toml.5");
  EXPECT_NE(man.find(mdoc_reference()), std::string::npos) << "run scripts/gen-man after changing core/options.cpp";
}
