// Packed messages (migrate/pack.hpp): what the relay encodes, what replicate decodes, and the
// options that turn packing on for outbox's own queues.
#include "migrate/pack.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "migrate/topology.hpp"
#include "relay/settings.hpp"
#include "replicate/event.hpp"
#include "tests/support/delivered.hpp"
#include "tests/unit/default_config.hpp"

using namespace outbox;
using outbox::testing::delivered;
using outbox::testing::parse_config;

namespace {

amqp::OutgoingMessage event(const std::string& id, const std::string& aggregate_id, long long version, std::string body) {
  amqp::OutgoingMessage message;
  message.exchange = "outbox";
  message.routing_key = "parking.update";
  message.message_id = id;
  message.type = "parking.update";
  message.body = std::move(body);
  message.timestamp_seconds = 1764650000;
  message.headers = {{"aggregate_type", std::string("parking")},
                     {"aggregate_id", aggregate_id},
                     {"aggregate_version", version},
                     {"created_at", 1764650000123456LL},
                     {"outbox_position", version + 100},
                     {"outbox_table", std::string("public.outbox")}};
  return message;
}

constexpr const char* kId1 = "6f1c2a4e-0000-4000-8000-000000000001";
constexpr const char* kId2 = "6f1c2a4e-0000-4000-8000-000000000002";

}  // namespace

TEST(Pack, APackIsOneMessageWhoseElementsCarryEachEventsOwnPropertiesAndHeaders) {
  pack::Builder builder;
  builder.add(event(kId1, "a1", 1, R"({"uuid": "a1", "note": "quote \" and \\ and tab\t"})"));
  amqp::OutgoingMessage second = event(kId2, "a2", 3, R"({"uuid": "a2"})");
  second.correlation_id = "corr-1";
  builder.add(second);
  EXPECT_EQ(builder.count(), 2u);
  amqp::OutgoingMessage packed = builder.take("outbox.packed", 5);
  EXPECT_TRUE(builder.empty());
  EXPECT_EQ(packed.exchange, "outbox.packed");
  EXPECT_EQ(packed.content_type, pack::kContentType);
  EXPECT_EQ(packed.type, pack::kType);
  EXPECT_EQ(packed.routing_key, "parking.update");
  EXPECT_EQ(packed.message_id, std::string("pack:") + kId1);
  ASSERT_FALSE(packed.headers.empty());
  EXPECT_EQ(packed.headers[0].first, pack::kCountHeader);
  EXPECT_EQ(std::get<long long>(packed.headers[0].second), 2);
  ASSERT_GE(packed.headers.size(), 2u);
  EXPECT_EQ(packed.headers[1].first, pack::kPartitionHeader);
  EXPECT_EQ(std::get<long long>(packed.headers[1].second), 5);

  nlohmann::json body = nlohmann::json::parse(packed.body);  // any JSON parser reads it
  ASSERT_TRUE(body.is_array());
  ASSERT_EQ(body.size(), 2u);
  EXPECT_EQ(body[0]["headers"]["aggregate_version"], 1);
  EXPECT_EQ(body[1]["correlation_id"], "corr-1");
  EXPECT_FALSE(body[0].contains("correlation_id"));

  std::vector<pack::Unpacked> events = pack::unpack(delivered(packed));
  ASSERT_EQ(events.size(), 2u);
  for (const pack::Unpacked& unpacked : events) EXPECT_EQ(unpacked.problem, "");
  const amqp::IncomingMessage& first = events[0].message;
  EXPECT_EQ(first.delivery_tag, 7u);
  EXPECT_EQ(first.message_id, kId1);
  EXPECT_EQ(first.type, "parking.update");
  EXPECT_EQ(first.body, R"({"uuid": "a1", "note": "quote \" and \\ and tab\t"})");
  EXPECT_EQ(std::get<std::string>(first.headers.at("aggregate_id")), "a1");
  EXPECT_EQ(std::get<long long>(first.headers.at("aggregate_version")), 1);
  EXPECT_EQ(std::get<long long>(first.headers.at("created_at")), 1764650000123456LL);
  EXPECT_EQ(first.timestamp_seconds, 1764650000);
  EXPECT_EQ(events[1].message.correlation_id, "corr-1");
  EXPECT_FALSE(first.correlation_id.has_value());

  // Each element reads as the single message it would have been.
  replicate::Checked checked = replicate::check_message(events[1].message, replicate::default_mappings());
  ASSERT_TRUE(checked.event.has_value()) << checked.error;
  EXPECT_EQ(checked.event->aggregate_id, "a2");
  EXPECT_EQ(checked.event->version, 3);
}

TEST(Pack, ControlCharactersAndNonAsciiTextSurviveThePackByteForByte) {
  std::string body = std::string("{\"t\": \"caf\xC3\xA9 \\u0001\"}");
  amqp::OutgoingMessage one = event(kId1, std::string("line\nbreak\x01 and \xE2\x82\xAC"), 1, body);
  pack::Builder builder;
  builder.add(one);
  std::vector<pack::Unpacked> events = pack::unpack(delivered(builder.take("outbox.packed", 0)));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].message.body, body);
  EXPECT_EQ(std::get<std::string>(events[0].message.headers.at("aggregate_id")), "line\nbreak\x01 and \xE2\x82\xAC");
}

TEST(Pack, ABrokenElementIsNamedAloneAndTheOthersDecode) {
  pack::Builder builder;
  builder.add(event(kId1, "a1", 1, R"({"uuid": "a1"})"));
  amqp::OutgoingMessage packed = builder.take("outbox.packed", 0);
  std::string good = packed.body.substr(1, packed.body.size() - 2);
  packed.body = "[" + good + R"(, 42, {"message_id": "x", "headers": {"aggregate_id": [1]}, "payload": "{}"}, )" + good + "]";
  std::vector<pack::Unpacked> events = pack::unpack(delivered(packed));
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].problem, "");
  EXPECT_EQ(events[1].problem, "pack element 1: not a JSON object");
  EXPECT_EQ(events[2].problem, "pack element 2: header aggregate_id is neither a text nor an integer");
  EXPECT_EQ(events[3].problem, "");
  EXPECT_EQ(events[3].message.delivery_tag, 7u);
}

TEST(Pack, AnIntegerHeaderBeyondSixtyFourBitsIsNamedAsAProblemInsteadOfWrappingAround) {
  pack::Builder builder;
  builder.add(event(kId1, "a1", 1, R"({"uuid": "a1"})"));
  amqp::OutgoingMessage packed = builder.take("outbox.packed", 0);
  std::string element = packed.body.substr(1, packed.body.size() - 2);
  std::string beyond = element;
  beyond.replace(beyond.find("\"aggregate_version\":1"), 21, "\"aggregate_version\":18446744073709551615");
  packed.body = "[" + beyond + "," + element + "]";
  std::vector<pack::Unpacked> events = pack::unpack(delivered(packed));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].problem, "pack element 0: header aggregate_version is neither a text nor an integer");
  EXPECT_EQ(events[1].problem, "");
  EXPECT_EQ(std::get<long long>(events[1].message.headers.at("aggregate_version")), 1);
}

TEST(Pack, APayloadThatIsNotJsonSpoilsOnlyItsOwnEvent) {
  pack::Builder builder;
  builder.add(event(kId1, "a1", 1, R"({"uuid": "a1"})"));
  builder.add(event(kId2, "a2", 1, R"({"uuid": )"));
  std::vector<pack::Unpacked> events = pack::unpack(delivered(builder.take("outbox.packed", 0)));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].problem, "");  // the element is fine: its body is checked as a single message's
  replicate::Checked checked = replicate::check_message(events[1].message, replicate::default_mappings());
  EXPECT_FALSE(checked.event.has_value());
  EXPECT_NE(checked.error.find("malformed JSON body"), std::string::npos) << checked.error;
  EXPECT_EQ(checked.aggregate_id, "a2");
}

TEST(Pack, ABodyThatIsNotAJsonArrayIsOnePoisonMessage) {
  amqp::OutgoingMessage sent = event(kId1, "a1", 1, "[{\"message_id\": ");
  sent.content_type = pack::kContentType;
  std::vector<pack::Unpacked> events = pack::unpack(delivered(sent));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].problem, "malformed pack: its body is not JSON");
  sent.body = "{}";
  EXPECT_EQ(pack::unpack(delivered(sent))[0].problem, "malformed pack: its body is not a JSON array");
  sent.body = "[]";
  EXPECT_EQ(pack::unpack(delivered(sent))[0].problem, "malformed pack: it holds no event");
}

TEST(Pack, ACompressedPackIsOneZstdFrameThatDecodesToTheSameEvents) {
  pack::Builder plain_builder, zstd_builder;
  for (int i = 1; i <= 100; ++i) {
    std::string id = "6f1c2a4e-0000-4000-8000-" + std::string(12 - std::to_string(i).size(), '0') + std::to_string(i);
    amqp::OutgoingMessage one =
        event(id, "slot-" + std::to_string(i), i, R"({"name": "Parking slot level 2 north wing", "status": "available"})");
    plain_builder.add(one);
    zstd_builder.add(one);
  }
  amqp::OutgoingMessage plain = plain_builder.take("outbox.packed", 3);
  amqp::OutgoingMessage compressed = zstd_builder.take("outbox.packed", 3, pack::Compression::zstd);
  EXPECT_EQ(plain.content_encoding, "");
  EXPECT_EQ(compressed.content_encoding, "zstd");
  EXPECT_EQ(compressed.content_type, pack::kContentType);
  EXPECT_EQ(compressed.headers, plain.headers);
  EXPECT_LT(compressed.body.size() * 4, plain.body.size()) << compressed.body.size() << " of " << plain.body.size();
  EXPECT_EQ(compressed.body.substr(0, 4), std::string("\x28\xB5\x2F\xFD"));  // the zstd frame's magic number

  std::vector<pack::Unpacked> from_plain = pack::unpack(delivered(plain));
  std::vector<pack::Unpacked> from_zstd = pack::unpack(delivered(compressed));
  ASSERT_EQ(from_zstd.size(), 100u);
  ASSERT_EQ(from_plain.size(), 100u);
  for (size_t i = 0; i < from_zstd.size(); ++i) {
    EXPECT_EQ(from_zstd[i].problem, "");
    EXPECT_EQ(from_zstd[i].message.message_id, from_plain[i].message.message_id);
    EXPECT_EQ(from_zstd[i].message.headers, from_plain[i].message.headers);
    EXPECT_EQ(from_zstd[i].message.body, from_plain[i].message.body);
  }
}

TEST(Pack, ABuilderKeptFromOnePackToTheNextStartsEachPackEmpty) {
  // The relay keeps its builders across reads (relay/publish.cpp): what a taken pack, or a pack
  // begun by a read that failed halfway (cleared), held must never reach the next one.
  pack::Builder builder;
  for (int i = 1; i <= 50; ++i) builder.add(event(kId1, "slot-" + std::to_string(i), i, R"({"n": 1})"));
  builder.take("outbox.packed", 0, pack::Compression::zstd);
  builder.add(event(kId1, "begun", 1, R"({"n": 2})"));
  builder.clear();
  EXPECT_TRUE(builder.empty());
  builder.add(event(kId2, "after", 7, R"({"n": 3})"));
  std::vector<pack::Unpacked> events = pack::unpack(delivered(builder.take("outbox.packed", 0, pack::Compression::zstd)));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].problem, "");
  EXPECT_EQ(events[0].message.message_id, kId2);
  EXPECT_EQ(std::get<std::string>(events[0].message.headers.at("aggregate_id")), "after");
  EXPECT_EQ(events[0].message.body, R"({"n": 3})");
}

TEST(Pack, ASmallCompressedPackAfterALargeOneDecodesToItsOwnEventsOnly) {
  // Compression and decompression reuse one buffer per thread: the large pack's bytes beyond the
  // small one's end must not be read as part of it.
  pack::Builder builder;
  std::string long_text(200000, 'x');
  builder.add(event(kId1, "large", 1, R"({"text": ")" + long_text + R"("})"));
  builder.add(event(kId2, "large-too", 2, R"({"n": 2})"));
  amqp::OutgoingMessage large = builder.take("outbox.packed", 0, pack::Compression::zstd);
  builder.add(event(kId2, "small", 3, R"({"n": 3})"));
  amqp::OutgoingMessage small = builder.take("outbox.packed", 0, pack::Compression::zstd);
  ASSERT_EQ(pack::unpack(delivered(large)).size(), 2u);
  std::vector<pack::Unpacked> events = pack::unpack(delivered(small));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].problem, "");
  EXPECT_EQ(std::get<std::string>(events[0].message.headers.at("aggregate_id")), "small");
  EXPECT_EQ(events[0].message.body, R"({"n": 3})");
  EXPECT_EQ(pack::unpack(delivered(large))[0].message.body, R"({"text": ")" + long_text + R"("})");
}

TEST(Pack, ACompressedPackThatDoesNotDecompressOrAnotherEncodingIsOnePoisonMessage) {
  pack::Builder builder;
  builder.add(event(kId1, "a1", 1, R"({"uuid": "a1"})"));
  amqp::OutgoingMessage compressed = builder.take("outbox.packed", 0, pack::Compression::zstd);
  amqp::OutgoingMessage cut = compressed;
  cut.body.resize(cut.body.size() - 3);
  std::vector<pack::Unpacked> events = pack::unpack(delivered(cut));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].problem.rfind("malformed pack: its zstd body does not decompress", 0), 0u) << events[0].problem;
  EXPECT_EQ(events[0].message.delivery_tag, 7u);

  amqp::OutgoingMessage not_zstd = compressed;
  not_zstd.body = "[not a frame]";
  EXPECT_EQ(pack::unpack(delivered(not_zstd))[0].problem, "malformed pack: its body is not a zstd frame");

  amqp::OutgoingMessage gzip = compressed;
  gzip.content_encoding = "gzip";
  EXPECT_EQ(pack::unpack(delivered(gzip))[0].problem, "malformed pack: its content encoding is \"gzip\", not zstd");
}

TEST(Pack, AZstdFrameThatClaimsMoreThanAMessageMayHoldIsRefusedBeforeAnythingIsAllocated) {
  // A frame header for 1 TiB of content (single segment, 8-byte size), and nothing behind it.
  std::string header = "\x28\xB5\x2F\xFD";
  header += static_cast<char>(0xE0);  // frame header descriptor: 8-byte content size, single segment
  unsigned long long size = 1ULL << 40;
  for (int i = 0; i < 8; ++i) header += static_cast<char>((size >> (8 * i)) & 0xFF);
  amqp::OutgoingMessage sent = event(kId1, "a1", 1, header);
  sent.content_type = pack::kContentType;
  sent.content_encoding = "zstd";
  std::vector<pack::Unpacked> events = pack::unpack(delivered(sent));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].problem.rfind("malformed pack: its zstd frame does not say its size, or says more than", 0), 0u)
      << events[0].problem;
}

TEST(Pack, OnlyTheContentTypeMakesAMessageAPack) {
  amqp::OutgoingMessage sent = event(kId1, "a1", 1, "[]");
  EXPECT_FALSE(pack::is_pack(delivered(sent)));
  sent.content_type = pack::kContentType;
  EXPECT_TRUE(pack::is_pack(delivered(sent)));
}

TEST(Pack, PackingIsOffByDefaultAndThenEverythingIsPublishedAsBefore) {
  config::Config config = parse_config(R"(
primary.url = "postgresql://localhost/p"
[replicas.main]
url = "postgresql://localhost/a"
)");
  EXPECT_EQ(topology::replica_queue(config, "main").pack_exchange, "");
  relay::Settings settings = relay::settings_from_config(config);
  for (const relay::TableSpec& table : settings.tables) {
    EXPECT_EQ(table.pack, 1);
    EXPECT_EQ(table.pack_exchange, "");
  }
}

TEST(Pack, WithPackingOnOutboxsOwnQueuesAreBoundToThePackExchangeToo) {
  config::Config config = parse_config(R"(
primary.url = "postgresql://localhost/p"
relay.pack = 50
[replicas.main]
url = "postgresql://localhost/a"
binding_keys = ["parking.*"]
[[relay.tables]]
name = "outbox"
[[relay.tables]]
name = "other_outbox"
exchange = "elsewhere"
)");
  topology::ReplicaQueue main = topology::replica_queue(config, "main");
  EXPECT_EQ(main.pack_exchange, "outbox.packed");
  EXPECT_EQ(main.pack, 50);
  std::vector<std::string> lines = topology::describe("outbox", {main});
  EXPECT_EQ(lines.back(),
            "queue outbox.replica.main (classic, dead-letter exchange outbox.dead-letter) bound to outbox and outbox.packed "
            "with parking.*");
  relay::Settings settings = relay::settings_from_config(config);
  ASSERT_EQ(settings.tables.size(), 2u);
  EXPECT_EQ(settings.tables[0].pack, 50);
  EXPECT_EQ(settings.tables[0].pack_exchange, "outbox.packed");
  // A table with its own exchange has its own consumers, who never opted in.
  EXPECT_EQ(settings.tables[1].pack, 1);
}

TEST(Pack, APartitionedReplicaWithPackingHasItsPacksSpreadByRelayPartitionOverTheSameQueues) {
  config::Config config = parse_config(R"(
relay.pack = 50
[replicas.eu]
url = "postgresql://localhost/a"
binding_keys = ["parking.*"]
partitions = 4
)");
  topology::ReplicaQueue eu = topology::replica_queue(config, "eu");
  EXPECT_EQ(eu.partitions, 4);
  EXPECT_EQ(eu.pack_exchange, "outbox.packed");
  EXPECT_EQ(topology::pack_hash_exchange_name(eu.queue), "outbox.replica.eu.packhash");
  std::vector<std::string> lines = topology::describe("outbox", {eu});
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines[lines.size() - 3],
            "exchange outbox.replica.eu.hash (x-consistent-hash on header aggregate_id) bound to outbox with parking.*");
  EXPECT_EQ(lines[lines.size() - 2],
            "exchange outbox.replica.eu.packhash (x-consistent-hash on header outbox_partition) bound to outbox.packed "
            "with parking.*");
  EXPECT_EQ(lines.back(),
            "queues outbox.replica.eu.p0 .. outbox.replica.eu.p3 (classic, dead-letter exchange outbox.dead-letter, "
            "single active consumer) bound to outbox.replica.eu.hash and outbox.replica.eu.packhash with weight 1");
}
