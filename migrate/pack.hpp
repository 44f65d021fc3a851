#pragma once
// The packed message format (relay.pack > 1): several outbox events in one AMQP message. The relay
// builds packs (relay/publish.cpp), replicate and `outbox consume` unpack them
// (replicate/replicator.cpp); both daemons meet only through this format, so it lives beside the
// broker topology that carries it. Pure logic, unit-tested.
//
// A pack is an AMQP message with
//   content_type  application/vnd.outbox.pack+json
//   type          outbox.pack
//   message_id    "pack:" and the first event's id
//   headers       outbox_pack_count (the number of events), outbox_partition (the relay partition
//                 of every event in it), outbox_table, outbox_position (the first event's position)
//   routing key   the routing key of every event in it (a pack holds only events with one key)
//   The relay builds a pack from the rows of one read, of one relay partition (relay.partitions,
//   by aggregate_id), in position order: an aggregate's events never span two partitions, so a
//   partitioned queue can be chosen by outbox_partition (migrate/topology.hpp).
//   body          a JSON array, one element per event, in position order:
//     {"message_id": "uuid", "type": "parking.create", "routing_key": "parking.create",
//      "timestamp": 1764650000, "correlation_id": "...", "reply_to": "...",
//      "headers": {"aggregate_type": "parking", "aggregate_id": "a1", "aggregate_version": 3,
//                  "created_at": 1764650000123456, "outbox_position": 42, "outbox_table": "public.outbox",
//                  "causation_id": "..."},
//      "payload": "{\"uuid\": \"a1\", ...}"}
//   content_encoding  "zstd" with relay.pack_compression = zstd: the body is then one zstd frame
//                 (RFC 8878) with its content size, holding the JSON array below. Unset otherwise.
//                 A pack of 100 parking events is about 40 KB of JSON and 5 KB compressed, and the
//                 broker's cost follows the bytes (bench/README, "Compressed packs").
//   Each element carries exactly the properties and headers that the event's own message carries
//   when relay.pack = 1 (correlation_id and reply_to only when set; integer headers as JSON
//   integers, text headers as JSON strings). The payload is the event's body as a JSON *string*:
//   a body that is not valid JSON then spoils its own element only, never the pack.
#include <string>
#include <vector>

#include "core/amqp.hpp"

namespace outbox::pack {

inline constexpr const char* kContentType = "application/vnd.outbox.pack+json";
inline constexpr const char* kZstdEncoding = "zstd";
// The most bytes a compressed pack may unpack to: what one message may hold at most (RabbitMQ 3.x's
// max_message_size), so that a forged frame header cannot make replicate allocate more.
inline constexpr size_t kMostUnpackedBytes = amqp::kDefaultMaxMessageSize;

enum class Compression { none, zstd };
inline constexpr const char* kType = "outbox.pack";
inline constexpr const char* kCountHeader = "outbox_pack_count";
// The relay partition of every event in the pack: what a partitioned queue's pack exchange hashes
// (migrate/topology.hpp), since a pack of several aggregates has no one aggregate_id.
inline constexpr const char* kPartitionHeader = "outbox_partition";
// Bytes of JSON around one element besides its fields' values (keys, quotes, commas).
inline constexpr size_t kElementOverhead = 160;

// Collects consecutive events with one routing key into one pack message.
class Builder {
 public:
  bool empty() const { return count_ == 0; }
  size_t count() const { return count_; }
  size_t bytes() const { return body_.size(); }
  const std::string& routing_key() const { return routing_key_; }
  // Adds an event (its element is built here); the first one names the pack.
  void add(const amqp::OutgoingMessage& event);
  // The pack message for `exchange`, its events all of relay partition `partition`, its body
  // compressed or not; empties the builder.
  amqp::OutgoingMessage take(const std::string& exchange, int partition, Compression compression = Compression::none);
  // Drops a pack begun but not taken (a read that failed halfway); the body keeps its capacity.
  void clear();

 private:
  std::string body_;
  size_t count_ = 0;
  std::string routing_key_, first_id_, table_;
  long long first_position_ = 0;
};

bool is_pack(const amqp::IncomingMessage& message);

// One event of a received pack, as the message it would have been alone (delivery tag, exchange,
// redelivered flag and app_id of the pack), or why its element is broken (`problem`; the message
// then holds what could be read, so that a named aggregate's later events wait behind it).
struct Unpacked {
  amqp::IncomingMessage message;
  std::string problem;
};

// The events of a pack, in order. A body that is not a JSON array (or does not decompress, or is
// in an encoding other than zstd) is one Unpacked with the pack itself and its problem.
std::vector<Unpacked> unpack(const amqp::IncomingMessage& pack);

}  // namespace outbox::pack
