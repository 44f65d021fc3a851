#pragma once
// What the source files of amqp::Connection share: core/amqp.cpp (connecting, publishing,
// consuming), core/amqp_objects.cpp (declaring, inspecting and deleting exchanges and queues) and
// core/amqp_headers.cpp (the header tables).
#include <amqp.h>

#include <string>

namespace outbox::amqp::wire {

// The one channel a Connection uses.
inline constexpr amqp_channel_t kChannel = 1;

// `text` as rabbitmq-c's byte view of it (no copy: valid while `text` is).
inline amqp_bytes_t bytes(const std::string& text) { return amqp_bytes_t{text.size(), const_cast<char*>(text.data())}; }

// rabbitmq-c's byte view as a string (a copy).
inline std::string text(amqp_bytes_t value) { return std::string(static_cast<const char*>(value.bytes), value.len); }

}  // namespace outbox::amqp::wire
