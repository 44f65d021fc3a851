// What the relay checks before it publishes: the AMQP limits a message must fit (core/amqp.hpp).
#include <gtest/gtest.h>

#include "core/amqp.hpp"

using outbox::amqp::OutgoingMessage;
using outbox::amqp::unpublishable_reason;

namespace {

OutgoingMessage message() {
  OutgoingMessage message;
  message.exchange = "outbox";
  message.routing_key = "parking.created";
  message.type = "parking.created";
  message.message_id = "11111111-2222-3333-4444-555555555555";
  message.body = "{}";
  message.headers = {
      {"aggregate_type", std::string("parking_slot")}, {"aggregate_id", std::string("a")}, {"aggregate_version", 1LL}};
  return message;
}

constexpr size_t kFrame = outbox::amqp::kFrameMax;
constexpr size_t kMax = outbox::amqp::kDefaultMaxMessageSize;

}  // namespace

TEST(AmqpLimits, AnOrdinaryMessageFits) { EXPECT_EQ(unpublishable_reason(message(), kFrame, kMax), ""); }

TEST(AmqpLimits, AnEventTypeOf255BytesFitsAnd256DoNot) {
  OutgoingMessage fits = message();
  fits.type = fits.routing_key = std::string(255, 't');
  EXPECT_EQ(unpublishable_reason(fits, kFrame, kMax), "");
  OutgoingMessage too_long = message();
  too_long.type = std::string(256, 't');
  EXPECT_EQ(unpublishable_reason(too_long, kFrame, kMax), "the event type is 256 bytes, AMQP allows at most 255");
}

TEST(AmqpLimits, ARoutingKeyOver255BytesIsRefusedEvenWithAShortType) {
  OutgoingMessage too_long = message();
  too_long.routing_key = std::string(300, 'r');
  EXPECT_EQ(unpublishable_reason(too_long, kFrame, kMax), "the routing key is 300 bytes, AMQP allows at most 255");
}

TEST(AmqpLimits, HeadersThatFillTheFrameExactlyFitAndOneByteMoreDoesNot) {
  OutgoingMessage message = ::message();
  size_t room = kFrame - 8 - outbox::amqp::content_header_size(message);
  std::get<std::string>(message.headers[1].second) += std::string(room, 'x');
  EXPECT_EQ(outbox::amqp::content_header_size(message) + 8, kFrame);
  EXPECT_EQ(unpublishable_reason(message, kFrame, kMax), "");
  std::get<std::string>(message.headers[1].second) += "x";
  EXPECT_NE(unpublishable_reason(message, kFrame, kMax).find("more than the broker's frame size of 131072"), std::string::npos);
}

TEST(AmqpLimits, APayloadOverTheMessageSizeLimitIsRefusedAndOneAtTheLimitFits) {
  OutgoingMessage message = ::message();
  message.body = std::string(1000, 'b');
  EXPECT_EQ(unpublishable_reason(message, kFrame, 1000), "");
  message.body += "b";
  EXPECT_EQ(unpublishable_reason(message, kFrame, 1000), "the payload is 1001 bytes, over relay.max_message_size (1000)");
}
