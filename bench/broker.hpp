#pragma once
// What the benchmark helpers share: a plain broker connection, without heartbeats (a benchmark
// blocks between frames), named `role` in the broker's connection list.
#include <memory>
#include <string>

#include "core/amqp.hpp"

namespace outbox::bench {

inline std::unique_ptr<amqp::Connection> open_broker(const std::string& url, const std::string& role) {
  amqp::BrokerSettings settings;
  settings.urls = {url};
  settings.heartbeat = std::chrono::seconds(0);
  size_t node = 0;
  return amqp::Connection::open(settings, node, role);
}

}  // namespace outbox::bench
