#include <gtest/gtest.h>

#include "core/duration.hpp"
#include "core/pg.hpp"
#include "core/url.hpp"

using namespace outbox;
using namespace std::chrono_literals;

TEST(Duration, ParsesUnits) {
  EXPECT_EQ(parse_duration("250ms"), Duration(250));
  EXPECT_EQ(parse_duration("10s"), Duration(10s));
  EXPECT_EQ(parse_duration("2m"), Duration(2min));
  EXPECT_EQ(parse_duration("24h"), Duration(24h));
  EXPECT_EQ(parse_duration("30"), Duration(30s));
  EXPECT_EQ(parse_duration("0.5s"), Duration(500));
  EXPECT_FALSE(parse_duration("ten"));
  EXPECT_FALSE(parse_duration("5 parsecs"));
  EXPECT_FALSE(parse_duration(""));
}

TEST(Duration, FormatsWithTheLargestExactUnit) {
  EXPECT_EQ(format_duration(Duration(1500)), "1500ms");
  EXPECT_EQ(format_duration(Duration(10s)), "10s");
  EXPECT_EQ(format_duration(Duration(24h)), "1d");
  EXPECT_EQ(format_duration(Duration(0)), "0s");
}

TEST(Url, MasksPasswords) {
  EXPECT_EQ(mask_url("postgresql://outbox:s3cret@db:5432/x?sslmode=require"),
            "postgresql://outbox:****@db:5432/x?sslmode=require");
  EXPECT_EQ(mask_url("amqps://user:p%40ss@mq/"), "amqps://user:****@mq/");
  EXPECT_EQ(mask_url("postgresql://db/x?password=hunter2&sslmode=require"), "postgresql://db/x?password=****&sslmode=require");
  EXPECT_EQ(mask_url("postgresql://outbox@db/x"), "postgresql://outbox@db/x");
  EXPECT_TRUE(url_has_password("amqp://a:b@c/"));
  EXPECT_FALSE(url_has_password("amqp://a@c/"));
}

TEST(Url, MasksPasswordsInEveryShapeLibpqAndRabbitmqAccept) {
  // libpq decodes percent-encoded keys: %70assword is password.
  EXPECT_EQ(mask_url("postgresql://outbox@db/x?%70assword=top&sslmode=require"),
            "postgresql://outbox@db/x?%70assword=****&sslmode=require");
  EXPECT_EQ(mask_url("postgresql://db/x?PassWord=top"), "postgresql://db/x?PassWord=****");
  EXPECT_TRUE(url_has_password("postgresql://outbox@db/x?%70assword=top"));
  // Unencoded '/' or '@' in the password: all of it is hidden.
  EXPECT_EQ(mask_url("postgresql://u:s3cr/et@db:5432/x"), "postgresql://u:****@db:5432/x");
  EXPECT_EQ(mask_url("amqp://u:top/secret3@h:1/"), "amqp://u:****@h:1/");
  EXPECT_EQ(mask_url("amqp://u:p@ss@h/"), "amqp://u:****@h/");
  // Inside a message, and more than one.
  EXPECT_EQ(mask_url("primary postgresql://a:one@h/x: failed; broker amqp://b:two@m/ down"),
            "primary postgresql://a:****@h/x: failed; broker amqp://b:****@m/ down");
  EXPECT_EQ(mask_url("postgresql://u@db:5432/x"), "postgresql://u@db:5432/x");
  EXPECT_EQ(mask_url("postgresql://u:pa'ss\"word@h/db"), "postgresql://u:****@h/db");
  EXPECT_EQ(mask_url("url = \"postgresql://u:s3cret@h/db\"  # flag"), "url = \"postgresql://u:****@h/db\"  # flag");
  // Linear: many URLs in one text.
  std::string many;
  for (int i = 0; i < 20000; ++i) many += "amqp://u:p@h/ ";
  EXPECT_EQ(mask_url(many).find(":p@"), std::string::npos);
  EXPECT_EQ(mask_credentials("outbox:hunter2@db/x"), "outbox:****@db/x");
  EXPECT_EQ(mask_credentials("primary.url=postgresql://o:hunter2@db/x"), "primary.url=postgresql://o:****@db/x");
  EXPECT_EQ(mask_credentials("no secret here"), "no secret here");
}

TEST(Url, APasswordThatALibraryQuotesBackIsScrubbedAsWrittenAndDecoded) {
  std::string url = "postgresql://outbox:50%off-Secret@db/x";
  EXPECT_EQ(scrub_password("invalid percent-encoded token: \"50%off-Secret\"", url), "invalid percent-encoded token: \"****\"");
  EXPECT_EQ(scrub_password("bad: s3cr3t/x", "postgresql://u:s3cr3t%2Fx@db/"), "bad: ****");
  EXPECT_EQ(scrub_password("bad: 'p w'", "postgresql://db/x?password='p w'"), "bad: '****'");
  EXPECT_EQ(scrub_password("connection refused", "postgresql://u:ab@db/"), "connection refused");
}

TEST(Url, WhitespaceAndBrokenPercentEscapesAreRefusedWithoutQuotingTheUrl) {
  EXPECT_EQ(url_syntax_problem("postgresql://u:p%20w@db/x?options=-csearch_path%3Doutbox"), "");
  EXPECT_NE(url_syntax_problem("postgresql://u:pa ss@db/x").find("whitespace"), std::string::npos);
  EXPECT_NE(url_syntax_problem("amqp://u:50%off@mq/").find("two hex digits"), std::string::npos);
  EXPECT_NE(url_syntax_problem("amqp://u:p@mq/%").find("two hex digits"), std::string::npos);
  EXPECT_EQ(url_syntax_problem("amqp://u:pa ss@mq/").find("pa ss"), std::string::npos);
}

TEST(Identifiers, AreQuotedSoConfigCannotInjectSql) {
  EXPECT_EQ(pg::quote_qualified("public.outbox"), "\"public\".\"outbox\"");
  EXPECT_EQ(pg::quote_qualified("outbox"), "\"outbox\"");
  EXPECT_EQ(pg::quote_identifier("a\"; drop table x; --"), "\"a\"\"; drop table x; --\"");
  EXPECT_TRUE(pg::valid_qualified_name("public.outbox"));
  EXPECT_FALSE(pg::valid_qualified_name("a.b.c"));
  EXPECT_FALSE(pg::valid_qualified_name(".b"));
}
