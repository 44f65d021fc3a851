#pragma once
// What the two source files of amqp::Connection share: core/amqp.cpp (connecting, publishing,
// consuming) and core/amqp_objects.cpp (declaring, inspecting and deleting exchanges and queues).
#include <amqp.h>

#include <string>

namespace outbox::amqp::wire {

// The one channel a Connection uses.
inline constexpr amqp_channel_t kChannel = 1;

// `text` as rabbitmq-c's byte view of it (no copy: valid while `text` is).
inline amqp_bytes_t bytes(const std::string& text) { return amqp_bytes_t{text.size(), const_cast<char*>(text.data())}; }

}  // namespace outbox::amqp::wire
