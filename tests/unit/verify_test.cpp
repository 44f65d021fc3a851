// The output of outbox verify: one line per differing row, the summary, and the JSON document.
#include "ops/verify.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace verify = outbox::verify;

namespace {

verify::Result drifted() {
  verify::Result result;
  result.replica = "main";
  result.point.positions = {{"public.outbox", 42}};
  result.point.primary_time = "2024-01-01T00:00:00.000000Z";
  result.point.replica_time = "2024-01-01T00:00:01.000000Z";
  result.point.waited_seconds = 1.25;
  verify::TableResult table;
  table.table = "parking_slots";
  table.key = "uuid";
  table.columns = {"name", "status", "version"};
  table.primary_rows = 3;
  table.replica_rows = 3;
  table.chunks = 1;
  table.rechecked = 4;
  table.settled = 1;
  result.tables = {table};
  verify::Row a{"a", {"\"A \\\"q\\\"\"", "\"available\"", "2"}}, b{"a", {"\"A\"", "\"available\"", "1"}};
  result.differences = {
      {verify::Difference::Kind::different, "parking_slots", "uuid", "a", table.columns, a, b},
      {verify::Difference::Kind::missing, "parking_slots", "uuid", "m", table.columns, a, std::nullopt},
      {verify::Difference::Kind::extra, "parking_slots", "uuid", "x", table.columns, std::nullopt, b},
  };
  return result;
}

}  // namespace

TEST(VerifyOutput, OneLinePerRowWithBothSides) {
  verify::Result result = drifted();
  EXPECT_EQ(verify::render_line(result.differences[0], "replica main"),
            "different parking_slots uuid=a: primary {\"name\": \"A \\\"q\\\"\", \"status\": \"available\", \"version\": 2}, "
            "replica main {\"name\": \"A\", \"status\": \"available\", \"version\": 1}");
  EXPECT_EQ(verify::render_line(result.differences[1], "replica main").rfind("missing parking_slots uuid=m: primary {", 0), 0u);
  EXPECT_NE(verify::render_line(result.differences[1], "replica main").find(", replica main (none)"), std::string::npos);
  EXPECT_EQ(verify::render_line(result.differences[2], "replica main")
                .rfind("extra parking_slots uuid=x: primary (none), replica main {", 0),
            0u);
}

TEST(VerifyOutput, TheSummaryCountsEachKindAndNamesTheConsistentPoint) {
  verify::Result result = drifted();
  EXPECT_EQ(verify::render_summary(result),
            "verify: replica main differs from the primary in 3 row(s) (1 missing, 1 extra, 1 different): parking_slots 3 "
            "rows on the primary, 3 on the replica, 1 chunk(s), 4 rechecked (consistent at public.outbox position 42, "
            "waited 1.2s)");
  result.differences.clear();
  EXPECT_EQ(verify::render_summary(result).rfind("verify: replica main equals the primary: parking_slots 3 rows", 0), 0u);
}

TEST(VerifyOutput, TheJsonDocumentParsesAndKeepsValuesTyped) {
  nlohmann::json document = nlohmann::json::parse(verify::render_json(drifted()));
  EXPECT_EQ(document["equal"], false);
  EXPECT_EQ(document["consistent_point"]["positions"]["public.outbox"], 42);
  EXPECT_DOUBLE_EQ(document["consistent_point"]["waited_seconds"].get<double>(), 1.25);
  EXPECT_EQ(document["differences"].size(), 3u);
  EXPECT_EQ(document["differences"][0]["primary"]["name"], "A \"q\"");
  EXPECT_EQ(document["differences"][0]["replica"]["version"], 1);
  EXPECT_TRUE(document["differences"][1]["replica"].is_null());
  EXPECT_EQ(document["tables"][0]["settled"], 1);
}
