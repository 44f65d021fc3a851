#pragma once
// Test-side RabbitMQ helpers: a queue bound to the outbox exchange that a test reads from.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/amqp.hpp"

namespace outbox::testing {

// A durable queue bound to `exchange` with `binding_key`, declared at construction. collect()
// consumes from it, reconnecting after a broker restart; messages are acked once collected.
class TestQueue {
 public:
  TestQueue(std::string name, std::string binding_key, std::string exchange = "outbox");
  ~TestQueue();
  // Reads until messages with `count` distinct message ids have been collected in total (or `deadline` passes); returns all
  // collected.
  const std::vector<amqp::IncomingMessage>& collect(size_t count, std::chrono::milliseconds deadline = std::chrono::seconds(60));
  // As collect(), for big backlogs on a loaded machine: gives up only when no new message came for
  // `stall`, however long the whole takes (a test asserts that nothing is stuck, not a rate).
  const std::vector<amqp::IncomingMessage>& collect_while_progressing(size_t count, std::chrono::milliseconds stall);
  // Reads until `total` messages, duplicates included, have been collected (or `deadline` passes).
  const std::vector<amqp::IncomingMessage>& collect_deliveries(size_t total,
                                                               std::chrono::milliseconds deadline = std::chrono::seconds(60));
  const std::vector<amqp::IncomingMessage>& messages() const { return messages_; }
  // Messages ready in a queue (passive declare).
  static uint32_t depth(const std::string& queue);

 private:
  void connect();
  const std::vector<amqp::IncomingMessage>& collect_while(const std::function<bool()>& wanting_more,
                                                          const std::function<void(const amqp::IncomingMessage&)>& on_message,
                                                          std::chrono::milliseconds deadline);
  std::string name_, binding_key_, exchange_;
  std::unique_ptr<amqp::Connection> connection_;
  std::vector<amqp::IncomingMessage> messages_;
};

// Declares the exchange as the relay does (topic, durable, alternate exchange outbox.unroutable).
void declare_outbox_exchange(amqp::Connection& connection, const std::string& exchange = "outbox");
std::unique_ptr<amqp::Connection> broker_connection();
// Empties the queues that `outbox migrate` declares (each replica's, the dead letters and the
// unroutable events), so no test inherits, or slows the broker with, an earlier test's messages.
// A queue that is not declared yet (no migrate) is skipped.
void purge_outbox_queues();
// Empty databases at the current schema and empty queues: reset_databases, migrate_all (which also
// declares the queues) and purge_outbox_queues, as a test starts. A failed migrate fails the test.
void fresh_schema();
// An event as a service's relay publishes it to the exchange "outbox": a new message id, type and
// routing key `event_type`, `body`, and the aggregate headers a consumer orders and dedupes by.
amqp::OutgoingMessage event_message(const std::string& event_type, const std::string& aggregate_type,
                                    const std::string& aggregate_id, long long version, const std::string& body,
                                    long long created_at_micros);
// Publishes `messages` on one connection, then declares `queue` passively: that round trip returns
// once all of them reached the broker.
void publish_all(const std::vector<amqp::OutgoingMessage>& messages, const std::string& queue);
// Polls `connection` for up to `wait`, hands each delivery to `take` and acks them all at once.
void take_deliveries(amqp::Connection& connection, const std::function<void(const amqp::IncomingMessage&)>& take,
                     std::chrono::milliseconds wait = std::chrono::milliseconds(200));
// Consumes `queue` until `stop` is set, for a thread that watches or copies what passes: each poll
// round's deliveries are acked, then handed to `on_round` with the connection (to publish on). A
// broker restart drops the connection; after a pause it consumes again, and what was not acked
// comes again.
void consume_until(const std::atomic<bool>& stop, const std::string& queue, const std::string& consumer_tag, uint16_t prefetch,
                   const std::function<void(amqp::Connection&, const std::vector<amqp::IncomingMessage>&)>& on_round);
std::string header_text(const amqp::IncomingMessage& message, const std::string& key);
long long header_number(const amqp::IncomingMessage& message, const std::string& key);

}  // namespace outbox::testing
