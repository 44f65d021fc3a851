// amqp::Headers, the sorted vector that holds a received message's headers (core/amqp.hpp): it must
// answer as the std::map it replaced did, whatever the order and the repeats of the names.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/amqp.hpp"

using namespace outbox;

namespace {

std::vector<amqp::Headers::value_type> entries_of(const amqp::Headers& headers) {
  return std::vector<amqp::Headers::value_type>(headers.begin(), headers.end());
}

std::vector<amqp::Headers::value_type> entries_of(const std::map<std::string, amqp::HeaderValue>& map) {
  return std::vector<amqp::Headers::value_type>(map.begin(), map.end());
}

amqp_table_entry_t text_entry(const char* key, const char* value) {
  amqp_table_entry_t entry{};
  entry.key = amqp_cstring_bytes(key);
  entry.value.kind = AMQP_FIELD_KIND_UTF8;
  entry.value.value.bytes = amqp_cstring_bytes(value);
  return entry;
}

amqp_table_entry_t number_entry(const char* key, int64_t value) {
  amqp_table_entry_t entry{};
  entry.key = amqp_cstring_bytes(key);
  entry.value.kind = AMQP_FIELD_KIND_I64;
  entry.value.value.i64 = value;
  return entry;
}

}  // namespace

TEST(AmqpHeaders, AreListedInNameOrderWhateverTheOrderTheyCameIn) {
  amqp::Headers headers{{"outbox_position", 42LL}, {"aggregate_type", std::string("parking_slot")}, {"created_at", 7LL}};
  std::vector<std::string> names;
  for (const auto& [name, value] : headers) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"aggregate_type", "created_at", "outbox_position"}));
}

TEST(AmqpHeaders, OfTwoHeadersWithOneNameTheLaterIsKeptAsWhenEachIsAssignedInTurn) {
  amqp::Headers headers{{"b", 1LL}, {"a", std::string("first")}, {"b", 2LL}, {"a", std::string("second")}, {"b", 3LL}};
  EXPECT_EQ(entries_of(headers), (std::vector<amqp::Headers::value_type>{{"a", std::string("second")}, {"b", 3LL}}));
}

TEST(AmqpHeaders, ManyHeadersWithRepeatedNamesKeepTheLastOfEachNameAsAMapAssignedInTurnDoes) {
  // Past the few that are sorted in place: 200 entries over 50 names, in a scrambled order.
  std::vector<amqp::Headers::value_type> entries;
  std::map<std::string, amqp::HeaderValue> model;
  for (long long i = 0; i < 200; ++i) {
    std::string name = "h" + std::to_string((i * 37) % 50);
    entries.emplace_back(name, i);
    model[name] = i;
  }
  EXPECT_EQ(entries_of(amqp::Headers(entries)), entries_of(model));
  // And within them: 20 entries over 7 names.
  entries.clear();
  model.clear();
  for (long long i = 0; i < 20; ++i) {
    std::string name = "h" + std::to_string((i * 37) % 7);
    entries.emplace_back(name, i);
    model[name] = i;
  }
  EXPECT_EQ(entries_of(amqp::Headers(entries)), entries_of(model));
}

TEST(AmqpHeaders, ReceivedPropertiesKeepTheLastOfARepeatedNameAndListTheRestInOrder) {
  std::vector<amqp_table_entry_t> entries{number_entry("aggregate_version", 3), text_entry("aggregate_id", "a-1"),
                                          number_entry("aggregate_version", 4), text_entry("aggregate_type", "slot")};
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_HEADERS_FLAG;
  props.headers = amqp_table_t{static_cast<int>(entries.size()), entries.data()};
  amqp::IncomingMessage message;
  amqp::copy_properties(props, message);
  EXPECT_EQ(entries_of(message.headers),
            (std::vector<amqp::Headers::value_type>{
                {"aggregate_id", std::string("a-1")}, {"aggregate_type", std::string("slot")}, {"aggregate_version", 4LL}}));
}

TEST(AmqpHeaders, FindCountAtSubscriptInsertAndEraseAnswerAsAStdMapDoes) {
  // The same random operations on both, over a few names so that they often meet.
  std::mt19937 random(19);
  const std::vector<std::string> names{"", "a", "aggregate_id", "aggregate_type", "aggregate_version", "b", "z"};
  amqp::Headers headers;
  std::map<std::string, amqp::HeaderValue> model;
  for (int step = 0; step < 5000; ++step) {
    const std::string& name = names[random() % names.size()];
    amqp::HeaderValue value =
        random() % 2 ? amqp::HeaderValue(static_cast<long long>(step)) : amqp::HeaderValue("v" + std::to_string(step));
    switch (random() % 5) {
      case 0:
        headers.insert_or_assign(name, value);
        model.insert_or_assign(name, value);
        break;
      case 1:
        headers[name] = value;
        model[name] = value;
        break;
      case 2:
        EXPECT_EQ(headers[name], model[name]);  // adds "" when missing, in both
        break;
      case 3:
        EXPECT_EQ(headers.erase(name), model.erase(name));
        break;
      default:
        ASSERT_EQ(headers.count(name), model.count(name));
        if (model.count(name)) {
          EXPECT_EQ(headers.at(name), model.at(name));
          EXPECT_EQ(headers.find(name)->second, model.find(name)->second);
        } else {
          EXPECT_THROW(headers.at(name), std::out_of_range);
          EXPECT_TRUE(headers.find(name) == headers.end());
        }
    }
    ASSERT_EQ(entries_of(headers), entries_of(model)) << "after step " << step;
  }
}
