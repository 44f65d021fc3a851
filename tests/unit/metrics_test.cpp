// The Prometheus text the daemons render.
#include "core/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace outbox::metrics;

TEST(Metrics, ALabelValueHasItsBackslashQuoteAndNewlineEscaped) {
  EXPECT_EQ(escape_label_value("public.ev\"il\\x\ny"), "public.ev\\\"il\\\\x\\ny");
  EXPECT_EQ(escape_label_value("plain.name"), "plain.name");
  EXPECT_EQ(render_labels({{"replica", "main"}, {"reason", "a\"b"}}), "replica=\"main\",reason=\"a\\\"b\"");
}

TEST(Metrics, HelpTextHasItsBackslashAndNewlineEscapedButNotItsQuotes) {
  EXPECT_EQ(escape_help("rows \"left\" in C:\\q\nsecond line"), "rows \"left\" in C:\\\\q\\nsecond line");
}

TEST(Metrics, AHostileTableNameStaysInsideItsLabel) {
  Registry registry;
  registry.gauge("outbox_relay_backlog", "Unpublished rows", {{"table", "public.ev\"il\\\n} 1\nforged 2"}}).set(3);
  std::string text = registry.render();
  EXPECT_NE(text.find("outbox_relay_backlog{table=\"public.ev\\\"il\\\\\\n} 1\\nforged 2\"} 3\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("\nforged"), std::string::npos) << "a line was forged:\n" << text;
}

TEST(Metrics, ALaterLookupWithoutHelpKeepsTheHelpText) {
  Registry registry;
  registry.counter("outbox_relay_published_total", "Messages published to the broker");
  registry.counter("outbox_relay_published_total", "").add();
  EXPECT_NE(registry.render().find("# HELP outbox_relay_published_total Messages published to the broker\n"), std::string::npos)
      << registry.render();
}

TEST(Metrics, SpecialGaugeValuesAreSpelledAsTheTextFormatSpellsThem) {
  Registry registry;
  registry.gauge("a", "x", {{"v", "nan"}}).set(std::numeric_limits<double>::quiet_NaN());
  registry.gauge("a", "x", {{"v", "inf"}}).set(std::numeric_limits<double>::infinity());
  registry.gauge("a", "x", {{"v", "-inf"}}).set(-std::numeric_limits<double>::infinity());
  std::string text = registry.render();
  EXPECT_NE(text.find("a{v=\"nan\"} NaN\n"), std::string::npos) << text;
  EXPECT_NE(text.find("a{v=\"inf\"} +Inf\n"), std::string::npos) << text;
  EXPECT_NE(text.find("a{v=\"-inf\"} -Inf\n"), std::string::npos) << text;
}
