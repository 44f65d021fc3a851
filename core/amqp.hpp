#pragma once
// RabbitMQ connections (rabbitmq-c) shared by relay and replicate: cluster node failover, TLS,
// topology declarations, publishing with confirms, consuming, and non-blocking frame reads for
// the libuv loop. Errors name the node (password masked) and the broker's reason.
#include <amqp.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/config.hpp"
#include "core/duration.hpp"
#include "core/error.hpp"

namespace outbox::amqp {

struct BrokerSettings {
  std::vector<std::string> urls;
  std::string exchange;
  std::string tls_ca, tls_cert, tls_key;
  bool tls_verify = true;
  Duration connect_timeout{5000};
  Duration heartbeat{30000};
  bool quorum_queues = false;  // broker.queue_type = "quorum": the topology's own queues are quorum queues
};
// The broker.* options; broker.url may be unset (outbox migrate then skips the topology).
BrokerSettings broker_settings(const config::Config& config);
// Throws Error(config) "broker.url: not set" when there is no broker URL (the daemons need one).
void require_broker(const BrokerSettings& settings);

using HeaderValue = std::variant<std::string, long long>;
// A received header's value: integers of every width as long long (an unsigned one above 2^63-1
// as its digits), text and bytes as text, and every other kind as text that shows the value
// (a float always with a point, "true", "(an array of 2 values)"; "" for void), so that a check
// that wants an integer or a text can name what it got instead of an empty string.
HeaderValue header_value(const amqp_field_value_t& value);

// A received message's headers by name, in name order. A sorted vector, not a std::map: a message
// has a handful of headers (six from the relay), and replicate holds up to replicate.prefetch
// messages (5,000) at once. A map took one allocation per header, which were a quarter of the
// allocations per message and about 300 of its 2,000 bytes. Iterators are read-only (a key changed
// in place would break the order); operator[] and insert_or_assign write.
class Headers {
 public:
  using value_type = std::pair<std::string, HeaderValue>;
  using const_iterator = std::vector<value_type>::const_iterator;

  Headers() = default;
  // Any order; of two entries with one name the later one stays, as when each is assigned in turn.
  explicit Headers(std::vector<value_type> entries);
  Headers(std::initializer_list<value_type> entries) : Headers(std::vector<value_type>(entries)) {}

  const_iterator begin() const { return entries_.begin(); }
  const_iterator end() const { return entries_.end(); }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  const_iterator find(std::string_view name) const;
  size_t count(std::string_view name) const { return find(name) == end() ? 0 : 1; }
  // Throws std::out_of_range when there is no such header, as std::map::at.
  const HeaderValue& at(std::string_view name) const;
  // The header's value, added as "" when there is none.
  HeaderValue& operator[](std::string_view name);
  void insert_or_assign(std::string name, HeaderValue value);
  size_t erase(std::string_view name);
  bool operator==(const Headers&) const = default;

 private:
  std::vector<value_type>::iterator lower_bound(std::string_view name);
  std::vector<value_type> entries_;
};

struct OutgoingMessage {
  std::string exchange;
  std::string routing_key;
  std::string body;
  std::string message_id;
  std::string type;
  // AMQP's own properties for request/reply: sent only when not empty.
  std::string correlation_id, reply_to;
  // "" is application/json (one event); a pack says its own (migrate/pack.hpp).
  std::string content_type;
  // Sent only when not empty: "zstd" for a compressed pack (migrate/pack.hpp).
  std::string content_encoding;
  long long timestamp_seconds = 0;
  std::vector<std::pair<std::string, HeaderValue>> headers;
};

// AMQP 0-9-1 limits a message must fit before it is published. A message that breaks one can never
// be published: rabbitmq-c fails half-way through its frames (and the channel with it), or the
// broker closes the channel.
inline constexpr size_t kShortStringMax = 255;               // message_id, type, routing key, exchange
inline constexpr size_t kFrameMax = 131072;                  // what this client asks for (RabbitMQ's default)
inline constexpr size_t kDefaultMaxMessageSize = 134217728;  // RabbitMQ 3.x's max_message_size (128 MiB)
// The size of the content header frame's payload that publish() sends for this message.
size_t content_header_size(const OutgoingMessage& message);
// Why the broker can never take this message under these limits, or "" when it fits: a short
// string over 255 bytes, a content header larger than a frame, a body over `max_message_size`.
std::string unpublishable_reason(const OutgoingMessage& message, size_t frame_max, size_t max_message_size);

// The broker closed the channel: its reply code (406 PRECONDITION_FAILED for a message over its
// max_message_size, 403 ACCESS_REFUSED, ...) and text. The connection itself may still be open.
class ChannelClosed : public Error {
 public:
  ChannelClosed(int reply_code, const std::string& message) : Error(ExitCode::unavailable, message), reply_code_(reply_code) {}
  int reply_code() const { return reply_code_; }

 private:
  int reply_code_;
};

// rabbitmq-c could not encode this message (it broke an AMQP limit that unpublishable_reason does
// not know of). Some of its frames may have been sent: the channel is unusable.
class EncodeFailed : public Error {
 public:
  using Error::Error;
};

struct IncomingMessage {
  uint64_t delivery_tag = 0;
  bool redelivered = false;
  std::string exchange, routing_key, body;
  std::optional<std::string> message_id, type, content_type, content_encoding, app_id, correlation_id, reply_to;
  std::optional<long long> timestamp_seconds;
  Headers headers;
};

// Copies the properties (message id, type, headers...) that are set into `message`.
void copy_properties(const amqp_basic_properties_t& props, IncomingMessage& message);

// What a non-blocking read found.
struct Event {
  enum class Kind { ack, nack, returned, delivery } kind;
  uint64_t delivery_tag = 0;
  bool multiple = false;
  std::string reply_text;                  // for returned
  std::optional<IncomingMessage> message;  // for delivery and returned
};

struct QueueOptions {
  bool durable = true;
  bool quorum = false;
  std::string dead_letter_exchange;
  // x-single-active-consumer: the broker delivers to one consumer at a time and fails over to the
  // next on its death (a partition queue: one consumer keeps its order).
  bool single_active_consumer = false;
};

class Connection {
 public:
  // Tries each node once, starting at `next_node` (advanced past failures so the next attempt
  // starts at the following node). Throws Error(unavailable) naming the last node and reason.
  // `max_nodes` bounds how many nodes one call tries: a daemon tries one per attempt, so that its
  // event loop (signals, the watchdog) waits for one node's timeouts at most.
  static std::unique_ptr<Connection> open(const BrokerSettings& settings, size_t& next_node, const std::string& role,
                                          size_t max_nodes = SIZE_MAX);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  int fd() const;
  // The frame size agreed with the broker (at most kFrameMax).
  size_t frame_max() const;
  const std::string& node() const { return masked_node_; }

  // `hash_header`: for an x-consistent-hash exchange, the header whose value is hashed (its
  // hash-header argument) instead of the routing key.
  void declare_exchange(const std::string& name, const std::string& type, const std::string& alternate_exchange = "",
                        const std::string& hash_header = "");
  // Binds exchange `destination` to `source`: what `source` routes with `routing_key` goes on to `destination`.
  void bind_exchange(const std::string& destination, const std::string& source, const std::string& routing_key);
  // Passive declare that tells whether the queue exists; the channel the broker closes on a
  // missing queue (404) is opened again, so the connection stays usable.
  bool queue_exists(const std::string& name);
  // The same for an exchange (a passive declare does not compare its type).
  bool exchange_exists(const std::string& name);
  void declare_queue(const std::string& name, const QueueOptions& options);
  void bind_queue(const std::string& queue, const std::string& exchange, const std::string& routing_key);
  // Passive declare: {messages ready, consumers}. Throws Error(data) when the queue does not exist.
  std::pair<uint32_t, uint32_t> inspect_queue(const std::string& name);
  // Deletes the queue only while it has no consumer and no message (the broker checks both at once
  // and refuses with 406 otherwise: Error(tempfail)). A missing queue is no error. Quorum queues do
  // not support these conditions (540 NOT_IMPLEMENTED, which closes the connection): Error(software).
  void delete_unused_empty_queue(const std::string& name);
  // Deletes the queue whatever it holds (the caller checked it: a quorum queue).
  void delete_queue(const std::string& name);
  // Deletes the exchange and its bindings (tests). A missing exchange is no error.
  void delete_exchange(const std::string& name);
  // Removes every ready message of the queue; returns how many (tests and benchmarks).
  uint32_t purge_queue(const std::string& name);

  void enable_confirms();
  // Publishes with the mandatory flag and persistent delivery; returns the delivery tag. Throws
  // EncodeFailed for a message rabbitmq-c cannot encode, Error(unavailable) when the socket fails.
  uint64_t publish(const OutgoingMessage& message);
  uint64_t published_count() const { return next_tag_ - 1; }

  void set_prefetch(uint16_t count);
  void consume(const std::string& queue, const std::string& consumer_tag);
  void ack(uint64_t delivery_tag, bool multiple);
  void reject(uint64_t delivery_tag, bool requeue);

  // Reads every frame that has arrived without blocking (or waits up to `wait` for the first one)
  // and hands acks, nacks, returns and deliveries to `on_event`. Sends heartbeats when due.
  // Throws Error(unavailable) when the connection or channel was closed.
  void poll(const std::function<void(Event&)>& on_event, Duration wait = Duration(0));
  bool has_buffered_data() const;

 private:
  Connection() = default;
  void check_reply(const std::string& what);
  // check_reply() of a passive declare: false when the broker answered 404 (the channel it closed
  // is opened again).
  bool found(const std::string& what);
  std::optional<IncomingMessage> read_content(amqp_channel_t channel, IncomingMessage message);

  amqp_connection_state_t state_ = nullptr;
  std::string masked_node_;
  std::string role_;
  uint64_t next_tag_ = 1;
};

}  // namespace outbox::amqp
