// Control characters from data never reach a terminal or a text log raw (core/escape.hpp), and
// `config show` prints TOML that a TOML parser reads back.
#include "core/escape.hpp"

#include <gtest/gtest.h>
#include <toml++/toml.h>

#include "core/config.hpp"
#include "core/log.hpp"
#include "ops/check.hpp"
#include "ops/lag.hpp"
#include "ops/verify.hpp"
#include "tests/unit/default_config.hpp"

using namespace outbox;

namespace {

// Whether the text holds a byte that a terminal acts on: C0, DEL, or the UTF-8 of a C1 control.
bool has_raw_control(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) return true;
    if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(text[i + 1]) <= 0x9f)
      return true;
  }
  return false;
}

const std::string kForged =
    "id\n2026-01-01T00:00:00.000Z error relay x: forged\x1b[31m red\r\x7f\xc2\x9b"
    "2J\t\x01";

}  // namespace

TEST(Escape, ControlCharactersAreWrittenOutAndPrintableTextIsKept) {
  EXPECT_EQ(escape_controls(kForged),
            "id\\n2026-01-01T00:00:00.000Z error relay x: forged\\x1b[31m red\\r\\x7f\\u009b2J\\t\\x01");
  EXPECT_EQ(escape_controls("plain text, 50% \"quoted\" \\ back"), "plain text, 50% \"quoted\" \\ back");
  EXPECT_EQ(escape_controls("駐車場 🚗 Ünïcödé \u202E"), "駐車場 🚗 Ünïcödé \u202E");
  EXPECT_EQ(escape_controls(std::string("nul\0byte", 8)), "nul\\x00byte");
  // Bytes that are not UTF-8 (a lone 0x9b is CSI to an 8-bit terminal).
  EXPECT_EQ(escape_controls("bad \x9b[2J \xff"), "bad \\x9b[2J \\xff");
  EXPECT_FALSE(has_raw_control(escape_controls(kForged)));
}

TEST(Escape, JsonEscapesDelAndC1ControlsToo) {
  EXPECT_EQ(log::json_escape("a\x1b[31m\x7f\xc2\x85z\"\n"), "a\\u001b[31m\\u007f\\u0085z\\\"\\n");
  EXPECT_EQ(log::json_escape("é ü \xc2\xa0"), "é ü \xc2\xa0");  // U+00A0 is not a control
}

TEST(Escape, TomlStringsEscapeEveryControlAndReplaceBytesThatAreNotUtf8) {
  EXPECT_EQ(toml_string("a\"b\\c\n\x1b\x7f\xc2\x9b"), "\"a\\\"b\\\\c\\n\\u001B\\u007F\\u009B\"");
  EXPECT_EQ(toml_string("x\xffy"), "\"x\xEF\xBF\xBDy\"");
}

TEST(Escape, ConfigShowIsTomlThatReadsBackToTheSameValuesWhateverTheyHold) {
  config::LoadOptions options = outbox::testing::without_environment();
  const std::string exchange = "ex\x1b[31m\nchange = \"forged\"\t\x7f\xc2\x9b \\ \"q\"";
  const std::string instance = std::string("relay\r\x01\x1f", 8);
  options.overrides = {"broker.exchange=" + exchange, "relay.instance=" + instance, "replicas.main.binding_keys=a\nb,c\x1b"};
  // The file's path reaches the comments: a newline in it must not start a TOML line.
  config::Config config =
      config::Config::parse("[[relay.tables]]\nname = \"t\\u0001\\u007f\"\n[replicas.main]\nurl = \"postgresql://r/x\"\n",
                            "dir\nforged = 1\n/outbox.toml", options);
  std::string shown = config::show(config);
  for (size_t at = 0; at < shown.size();) {
    size_t end = shown.find('\n', at);
    EXPECT_FALSE(has_raw_control(shown.substr(at, end - at))) << shown;
    at = end + 1;
  }
  toml::table parsed;
  try {
    parsed = toml::parse(shown);
  } catch (const toml::parse_error& error) {
    FAIL() << "config show is not TOML: " << error.description() << "\n" << shown;
  }
  EXPECT_EQ(parsed["broker"]["exchange"].value<std::string>(), exchange);
  EXPECT_EQ(parsed["relay"]["instance"].value<std::string>(), instance);
  EXPECT_EQ(parsed["relay"]["tables"][0]["name"].value<std::string>(), "t\x01\x7f");
  EXPECT_EQ(parsed["replicas"]["main"]["binding_keys"][0].value<std::string>(), "a\nb");
  EXPECT_EQ(parsed["replicas"]["main"]["binding_keys"][1].value<std::string>(), "c\x1b");
  EXPECT_FALSE(parsed.contains("forged")) << shown;
}

TEST(Escape, LagTextAndTheNagiosLineEscapeNamesAndServerErrors) {
  lag::Report report;
  report.primary.error = "server said: line one\nforged line\x1b[31m";
  report.broker.error =
      "broker\x07"
      "bell";
  lag::ReplicaStage replica;
  replica.name = "main";
  replica.error = "gone\x1b]0;title\x07";
  report.replicas.push_back(replica);
  std::string text = lag::render_text(report);
  EXPECT_NE(text.find("primary unreachable: server said: line one\\nforged line\\x1b[31m\n"), std::string::npos) << text;
  EXPECT_NE(text.find("broker\\x07bell"), std::string::npos) << text;
  EXPECT_NE(text.find("gone\\x1b]0;title\\x07"), std::string::npos) << text;
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  check::Result result = check::evaluate(report, {});
  EXPECT_EQ(result.line.find('\x1b'), std::string::npos) << result.line;
  EXPECT_EQ(result.line.find('\x07'), std::string::npos) << result.line;
  EXPECT_EQ(result.line.find('\n'), std::string::npos) << result.line;
  EXPECT_EQ(check::unknown("bad \x1b[2J").line, "OUTBOX UNKNOWN - bad \\x1b[2J");
}

TEST(Escape, VerifyLinesEscapeKeysFromTheDatabases) {
  verify::Difference difference;
  difference.kind = verify::Difference::Kind::missing;
  difference.table = "parking_slots";
  difference.key_column = "uuid";
  difference.key = "k\nextra parking_slots uuid=forged\x1b[31m";
  std::string line = verify::render_line(difference, "replica main");
  EXPECT_FALSE(has_raw_control(line)) << line;
  EXPECT_NE(line.find("k\\nextra parking_slots uuid=forged\\x1b[31m"), std::string::npos) << line;
}
