// Pure logic of `outbox consume`: which handler takes an event type, the envelope a handler
// receives, the batch of the handler path, and the consumer settings taken from config.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "consume/settings.hpp"
#include "core/error.hpp"
#include "replicate/envelope.hpp"
#include "replicate/event.hpp"
#include "tests/unit/default_config.hpp"

using namespace outbox;
using namespace outbox::replicate;
using json = nlohmann::json;

namespace {

using outbox::testing::parse_config;

// The message of the config error that building the consume settings throws ("" when none).
std::string settings_error(std::string_view toml, std::vector<std::string> services = {}) {
  try {
    consume::settings_from_config(parse_config(toml), std::move(services));
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ExitCode::config) << error.what();
    return error.what();
  }
  return "";
}

constexpr std::string_view kBooking = R"(
[broker]
url = "amqp://guest:guest@localhost/"
[services.booking]
url = "postgresql://localhost/booking"
binding_keys = ["booking.*", "reply.booking"]
queue_type = "quorum"
[[services.booking.handlers]]
event_type = "parking.reserved"
function = "booking.on_parking_reserved"
[[services.booking.handlers]]
event_type = "bill.*"
function = "on_bill"
[[services.booking.deadlines]]
function = "booking.expire_sagas"
every = "250ms"
[services.parking]
url = "postgresql://localhost/parking"
[consume]
inbox_retention = "2d"
)";

Mapping handler(std::string event_type, std::string function) {
  Mapping mapping;
  mapping.event_type = std::move(event_type);
  mapping.function = std::move(function);
  return mapping;
}

amqp::IncomingMessage command_message() {
  amqp::IncomingMessage message;
  message.routing_key = "parking.block";
  message.type = "parking.block";
  message.message_id = "3F0C1D2E-4B5A-4978-8A9B-0C1D2E3F4A5B";
  message.correlation_id = "saga-7";
  message.reply_to = "reply.booking";
  message.headers["aggregate_type"] = std::string("booking");
  message.headers["aggregate_id"] = std::string("b-1");
  message.headers["aggregate_version"] = 2LL;
  message.headers["created_at"] = 1796187600123456LL;  // 2026-12-02T05:00:00.123456Z
  message.headers["outbox_position"] = 42LL;
  message.headers["causation_id"] = std::string("0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6");
  message.body = R"({"slot": "s-1"})";
  return message;
}

}  // namespace

TEST(TopicPattern, AStarIsOneWordAndAHashIsZeroOrMore) {
  EXPECT_TRUE(topic_matches("booking.*", "booking.created"));
  EXPECT_FALSE(topic_matches("booking.*", "booking"));
  EXPECT_FALSE(topic_matches("booking.*", "booking.created.v2"));
  EXPECT_TRUE(topic_matches("booking.#", "booking"));
  EXPECT_TRUE(topic_matches("booking.#", "booking.created.v2"));
  EXPECT_TRUE(topic_matches("#", "anything.at.all"));
  EXPECT_TRUE(topic_matches("*.reserved", "parking.reserved"));
  EXPECT_FALSE(topic_matches("*.reserved", "parking.unavailable"));
  EXPECT_TRUE(topic_matches("a.#.z", "a.z"));
  EXPECT_TRUE(topic_matches("a.#.z", "a.b.c.z"));
  EXPECT_FALSE(topic_matches("a.#.z", "a.b.c"));
  EXPECT_TRUE(topic_matches("parking.reserved", "parking.reserved"));
}

TEST(HandlerMatching, AnExactEventTypeWinsOverAnEarlierPattern) {
  std::vector<Mapping> handlers = {handler("parking.*", "booking.on_parking"), handler("#", "booking.on_anything"),
                                   handler("parking.reserved", "booking.on_reserved")};
  EXPECT_EQ(find_mapping(handlers, "parking.reserved"), 2);
  EXPECT_EQ(find_mapping(handlers, "parking.unavailable"), 0) << "the first pattern in config order";
  EXPECT_EQ(find_mapping(handlers, "bill.paid"), 1);
}

TEST(HandlerMatching, ATableMappingsEventTypeIsNeverAPattern) {
  Mapping table;
  table.event_type = "parking.*";
  table.table = "parking_slots";
  EXPECT_EQ(find_mapping({table}, "parking.create"), -1);
}

TEST(HandlerMatching, AnEventNoHandlerTakesIsUnhandledNotPoison) {
  amqp::IncomingMessage message = command_message();
  message.type = "bill.paid";
  Checked checked = check_message(message, {handler("parking.*", "parking.on_command")});
  ASSERT_TRUE(checked.event) << checked.error;
  EXPECT_TRUE(checked.event->unhandled);
  Checked replica = check_message(message, default_mappings());
  EXPECT_FALSE(replica.event) << "a replica still parks an unknown type";
}

TEST(Envelope, CarriesEveryFieldOfTheContract) {
  amqp::IncomingMessage message = command_message();
  Checked checked = check_message(message, {handler("parking.block", "parking.on_block")});
  ASSERT_TRUE(checked.event) << checked.error;
  json envelope = json::parse(envelope_json(message, *checked.event));
  EXPECT_EQ(envelope["event_id"], "3f0c1d2e-4b5a-4978-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(envelope["event_type"], "parking.block");
  EXPECT_EQ(envelope["aggregate_type"], "booking");
  EXPECT_EQ(envelope["aggregate_id"], "b-1");
  EXPECT_EQ(envelope["aggregate_version"], 2);
  EXPECT_EQ(envelope["created_at"], "2026-12-02T05:00:00.123456Z");
  EXPECT_EQ(envelope["correlation_id"], "saga-7");
  EXPECT_EQ(envelope["causation_id"], "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6");
  EXPECT_EQ(envelope["reply_to"], "reply.booking");
  EXPECT_EQ(envelope["routing_key"], "parking.block");
  EXPECT_EQ(envelope["headers"]["aggregate_version"], 2);
  EXPECT_EQ(envelope["headers"]["outbox_position"], 42);
  EXPECT_EQ(envelope["payload"], json::parse(R"({"slot": "s-1"})"));
}

TEST(Envelope, WhatTheMessageLacksIsNull) {
  amqp::IncomingMessage message = command_message();
  message.correlation_id.reset();
  message.reply_to.reset();
  message.headers.erase("causation_id");
  message.headers.erase("created_at");
  Checked checked = check_message(message, {handler("parking.block", "parking.on_block")});
  ASSERT_TRUE(checked.event) << checked.error;
  json envelope = json::parse(envelope_json(message, *checked.event));
  EXPECT_TRUE(envelope["created_at"].is_null());
  EXPECT_TRUE(envelope["correlation_id"].is_null());
  EXPECT_TRUE(envelope["causation_id"].is_null());
  EXPECT_TRUE(envelope["reply_to"].is_null());
}

TEST(Envelope, CreatedAtIsIsoUtcWithMicroseconds) {
  EXPECT_EQ(iso_utc_micros(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(iso_utc_micros(1796187600123456LL), "2026-12-02T05:00:00.123456Z");
  EXPECT_EQ(iso_utc_micros(253402300799999999LL), "9999-12-31T23:59:59.999999Z");
}

TEST(HandlerBatch, AnEventWithoutCorrelationIdStartsItsOwnConversation) {
  amqp::IncomingMessage with = command_message();
  amqp::IncomingMessage without = command_message();
  without.correlation_id.reset();
  without.reply_to.reset();
  std::vector<Mapping> handlers = {handler("parking.block", "parking.on_block")};
  Item first{&with, check_message(with, handlers)};
  Item second{&without, check_message(without, handlers)};
  json batch = json::parse(handler_batch_parameter({&first, &second}, &second));
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0]["m"], 0);
  EXPECT_EQ(batch[0]["c"], "saga-7");
  EXPECT_EQ(batch[0]["rt"], "reply.booking");
  EXPECT_EQ(batch[0]["e"]["event_id"], batch[0]["id"]);
  EXPECT_EQ(batch[1]["c"], "3f0c1d2e-4b5a-4978-8a9b-0c1d2e3f4a5b") << "its own event id";
  EXPECT_EQ(batch[1]["rt"], "");
  EXPECT_EQ(batch[2]["m"], -2) << "the position entry, last";
  EXPECT_FALSE(batch[2].contains("e"));
}

TEST(HandlerBatch, AnUnhandledEventCarriesNoEnvelope) {
  amqp::IncomingMessage message = command_message();
  message.type = "bill.paid";
  Item item{&message, check_message(message, {handler("parking.block", "parking.on_block")})};
  json batch = json::parse(handler_batch_parameter({&item}, nullptr));
  EXPECT_EQ(batch[0]["m"], -3);
  EXPECT_FALSE(batch[0].contains("e"));
}

TEST(ConsumeSettings, EveryServiceWithHandlersIsAConsumerByDefault) {
  consume::Settings settings = consume::settings_from_config(parse_config(kBooking));
  ASSERT_EQ(settings.engine.replicas.size(), 1u) << "parking has no handlers: only a relay";
  const ReplicaSettings& booking = settings.engine.replicas[0];
  EXPECT_EQ(booking.name, "booking");
  EXPECT_TRUE(booking.consumer);
  EXPECT_EQ(booking.queue.queue, "outbox.consumer.booking");
  EXPECT_TRUE(booking.queue.quorum);
  EXPECT_EQ(booking.queue.binding_keys, (std::vector<std::string>{"booking.*", "reply.booking"}));
  ASSERT_EQ(booking.handlers.size(), 2u);
  EXPECT_EQ(booking.handlers[1].event_type, "bill.*");
  EXPECT_EQ(booking.handlers[1].function, "on_bill");
  ASSERT_EQ(settings.deadlines.at(0).size(), 1u);
  EXPECT_EQ(settings.deadlines[0][0].function, "booking.expire_sagas");
  EXPECT_EQ(settings.deadlines[0][0].every, std::chrono::milliseconds(250));
}

TEST(ConsumeSettings, TheInboxRetentionIsTheEnginesAppliedRetention) {
  consume::Settings settings = consume::settings_from_config(parse_config(kBooking));
  EXPECT_EQ(settings.engine.tunables.applied_retention, std::chrono::hours(48));
  EXPECT_EQ(settings.engine.apply_connections, 1) << "consumers apply in one transaction";
}

TEST(ConsumeSettings, EachProblemIsOneConfigErrorNamingTheServiceAndKey) {
  std::string booking(kBooking);
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string text = booking;
    text.replace(text.find(from), from.size(), to);
    return text;
  };
  EXPECT_NE(settings_error(replaced(R"(binding_keys = ["booking.*", "reply.booking"])", ""))
                .find("services.booking.binding_keys is empty"),
            std::string::npos);
  EXPECT_NE(settings_error(kBooking, {"parking"}).find("service parking has no handlers"), std::string::npos);
  EXPECT_NE(settings_error(kBooking, {"billing"}).find("billing"), std::string::npos);
  EXPECT_NE(settings_error(replaced("\"on_bill\"", "\"booking.\"")).find("services.booking.handlers.function"),
            std::string::npos);
  EXPECT_NE(settings_error(replaced("\"booking.expire_sagas\"", "\"a.b.c\"")).find("services.booking.deadlines.function"),
            std::string::npos);
  EXPECT_NE(settings_error(replaced("\"bill.*\"", "\"parking.reserved\"")).find("handled twice"), std::string::npos);
  for (const std::string& message :
       {settings_error(replaced(R"(binding_keys = ["booking.*", "reply.booking"])", "")), settings_error(kBooking, {"parking"})})
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(ConsumeSettings, NoServiceWithHandlersIsAConfigError) {
  EXPECT_NE(settings_error("[services.parking]\nurl = \"postgresql://localhost/parking\"\n").find("no service has handlers"),
            std::string::npos);
}
