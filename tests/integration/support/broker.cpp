#include "tests/integration/support/broker.hpp"

#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <thread>

#include "examples/parking/parking.hpp"
#include "migrate/topology.hpp"
#include "tests/integration/support/harness.hpp"

namespace outbox::testing {

std::unique_ptr<amqp::Connection> broker_connection() {
  amqp::BrokerSettings settings;
  std::stringstream urls(servers().broker_url);  // one URL, or the cluster's nodes after use_broker
  for (std::string url; std::getline(urls, url, ',');) settings.urls.push_back(url);
  settings.heartbeat = std::chrono::seconds(0);
  size_t node = 0;
  return amqp::Connection::open(settings, node, "outbox-test");
}

void purge_outbox_queues() {
  auto connection = broker_connection();
  for (const char* queue : {"outbox.replica.main", "outbox.replica.replica2", "outbox.dead-letter", "outbox.unroutable"}) {
    try {
      connection->purge_queue(queue);
    } catch (const std::exception&) {
      connection = broker_connection();  // the failed purge closed the channel
    }
  }
}

void fresh_schema() {
  reset_databases();
  ASSERT_TRUE(migrate_all());
  purge_outbox_queues();
}

void declare_outbox_exchange(amqp::Connection& connection, const std::string& exchange) {
  topology::declare_exchange(connection, exchange, servers().broker_is_cluster);
}

TestQueue::TestQueue(std::string name, std::string binding_key, std::string exchange)
    : name_(std::move(name)), binding_key_(std::move(binding_key)), exchange_(std::move(exchange)) {
  auto connection = broker_connection();
  declare_outbox_exchange(*connection, exchange_);
  connection->declare_queue(name_, amqp::QueueOptions{});
  connection->bind_queue(name_, exchange_, binding_key_);
}

TestQueue::~TestQueue() = default;

void TestQueue::connect() {
  connection_ = broker_connection();
  connection_->set_prefetch(1000);
  connection_->consume(name_, "test-" + name_);
}

const std::vector<amqp::IncomingMessage>& TestQueue::collect(size_t count, std::chrono::milliseconds deadline) {
  std::set<std::string> distinct;
  for (const auto& message : messages_) distinct.insert(message.message_id.value_or(""));
  return collect_while([&] { return distinct.size() < count; },
                       [&](const amqp::IncomingMessage& message) { distinct.insert(message.message_id.value_or("")); }, deadline);
}

const std::vector<amqp::IncomingMessage>& TestQueue::collect_while_progressing(size_t count, std::chrono::milliseconds stall) {
  size_t before = 0;
  do {
    before = messages_.size();
    collect(count, stall);
  } while (messages_.size() > before);
  return messages_;
}

const std::vector<amqp::IncomingMessage>& TestQueue::collect_deliveries(size_t total, std::chrono::milliseconds deadline) {
  return collect_while([&] { return messages_.size() < total; }, [](const amqp::IncomingMessage&) {}, deadline);
}

const std::vector<amqp::IncomingMessage>& TestQueue::collect_while(
    const std::function<bool()>& wanting_more, const std::function<void(const amqp::IncomingMessage&)>& on_message,
    std::chrono::milliseconds deadline) {
  auto until = std::chrono::steady_clock::now() + deadline;
  while (wanting_more() && std::chrono::steady_clock::now() < until) {
    try {
      if (!connection_) connect();
      take_deliveries(*connection_, [&](const amqp::IncomingMessage& message) {
        on_message(message);
        messages_.push_back(message);
      });
    } catch (const std::exception&) {
      // The broker restarted (or is down): unacked messages come again after reconnecting.
      connection_.reset();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  return messages_;
}

uint32_t TestQueue::depth(const std::string& queue) { return broker_connection()->inspect_queue(queue).first; }

void take_deliveries(amqp::Connection& connection, const std::function<void(const amqp::IncomingMessage&)>& take,
                     std::chrono::milliseconds wait) {
  uint64_t last_tag = 0;
  connection.poll(
      [&](amqp::Event& event) {
        if (event.kind != amqp::Event::Kind::delivery) return;
        last_tag = event.delivery_tag;
        take(*event.message);
      },
      wait);
  if (last_tag) connection.ack(last_tag, true);
}

void consume_until(const std::atomic<bool>& stop, const std::string& queue, const std::string& consumer_tag, uint16_t prefetch,
                   const std::function<void(amqp::Connection&, const std::vector<amqp::IncomingMessage>&)>& on_round) {
  std::unique_ptr<amqp::Connection> connection;
  while (!stop) {
    try {
      if (!connection) {
        connection = broker_connection();
        connection->set_prefetch(prefetch);
        connection->consume(queue, consumer_tag);
      }
      std::vector<amqp::IncomingMessage> round;
      take_deliveries(*connection, [&](const amqp::IncomingMessage& message) { round.push_back(message); });
      on_round(*connection, round);
    } catch (const std::exception&) {
      connection.reset();  // the broker restarted, or is down
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
}

std::string header_text(const amqp::IncomingMessage& message, const std::string& key) {
  auto found = message.headers.find(key);
  if (found == message.headers.end()) return "";
  if (const auto* text = std::get_if<std::string>(&found->second)) return *text;
  return std::to_string(std::get<long long>(found->second));
}

long long header_number(const amqp::IncomingMessage& message, const std::string& key) {
  auto found = message.headers.find(key);
  if (found == message.headers.end()) return -1;
  if (const auto* number = std::get_if<long long>(&found->second)) return *number;
  return std::stoll(std::get<std::string>(found->second));
}

amqp::OutgoingMessage event_message(const std::string& event_type, const std::string& aggregate_type,
                                    const std::string& aggregate_id, long long version, const std::string& body,
                                    long long created_at_micros) {
  amqp::OutgoingMessage message;
  message.exchange = "outbox";
  message.message_id = parking::random_uuid();
  message.type = event_type;
  message.routing_key = event_type;
  message.body = body;
  message.headers = {{"aggregate_type", aggregate_type},
                     {"aggregate_id", aggregate_id},
                     {"aggregate_version", version},
                     {"created_at", created_at_micros}};
  return message;
}

void publish_all(const std::vector<amqp::OutgoingMessage>& messages, const std::string& queue) {
  auto connection = broker_connection();
  for (const auto& message : messages) connection->publish(message);
  connection->inspect_queue(queue);
}

}  // namespace outbox::testing
