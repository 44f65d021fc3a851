#pragma once
// A message as a consumer would receive it once the broker has delivered `sent`, for tests that
// hand a built message straight to a decoder or an apply without a broker in between (unit tests
// of packs, the apply's plan test). Header-only, so that the unit and the integration binaries,
// which share no test library, both use this one.
#include <cstdint>

#include "core/amqp.hpp"

namespace outbox::testing {

inline amqp::IncomingMessage delivered(const amqp::OutgoingMessage& sent, uint64_t delivery_tag = 7) {
  amqp::IncomingMessage message;
  message.delivery_tag = delivery_tag;
  message.exchange = sent.exchange;
  message.routing_key = sent.routing_key;
  message.body = sent.body;
  message.message_id = sent.message_id;
  message.type = sent.type;
  message.content_type = sent.content_type;
  if (!sent.content_encoding.empty()) message.content_encoding = sent.content_encoding;
  message.app_id = "outbox";
  for (const auto& [name, value] : sent.headers) message.headers[name] = value;
  return message;
}

}  // namespace outbox::testing
