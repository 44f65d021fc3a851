// Pure logic of replicate: message validation, the event-type mappings, stored messages, error
// classification, and the replica queue topology taken from config.
#include <gtest/gtest.h>

#include <limits>
#include <pqxx/pqxx>

#include "core/error.hpp"
#include "core/utf8.hpp"
#include "migrate/topology.hpp"
#include "replicate/apply.hpp"
#include "replicate/event.hpp"
#include "replicate/group_commit.hpp"
#include "replicate/settings.hpp"
#include "tests/unit/default_config.hpp"

using namespace outbox;
using namespace outbox::replicate;

namespace {

using outbox::testing::parse_config;

amqp::IncomingMessage valid_message() {
  amqp::IncomingMessage message;
  message.delivery_tag = 7;
  message.routing_key = "parking.update";
  message.type = "parking.update";
  message.message_id = "3F0C1D2E-4B5A-4978-8A9B-0C1D2E3F4A5B";
  message.headers["aggregate_type"] = std::string("parking_slot");
  message.headers["aggregate_id"] = std::string("3f0c1d2e-4b5a-4978-8a9b-0c1d2e3f4a5b");
  message.headers["aggregate_version"] = 3LL;
  message.headers["created_at"] = 1700000000123456LL;
  message.headers["outbox_position"] = 42LL;
  message.body = R"({"uuid": "3f0c1d2e-4b5a-4978-8a9b-0c1d2e3f4a5b", "name": "A", "status": "blocked", "version": 3})";
  return message;
}

const std::vector<Mapping> kParking = default_mappings();

}  // namespace

TEST(ReplicateMessage, AValidRelayMessageBecomesAnEventWithItsMappingAndLowercaseId) {
  Checked checked = check_message(valid_message(), kParking);
  ASSERT_TRUE(checked.event) << checked.error;
  EXPECT_EQ(checked.event->event_id, "3f0c1d2e-4b5a-4978-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(checked.event->event_type, "parking.update");
  EXPECT_EQ(checked.event->version, 3);
  EXPECT_EQ(checked.event->created_at_us, 1700000000123456LL);
  EXPECT_EQ(checked.event->position, 42);
  EXPECT_EQ(kParking[static_cast<size_t>(checked.event->mapping)].operation, Operation::upsert);
  EXPECT_FALSE(checked.event->heartbeat);
}

// The key column's value, read with the body's check (newest_of_rows groups by it), as jsonb
// reads it: the last of repeated members, and only at the top level.
TEST(ReplicateMessage, TheKeyColumnsValueIsReadFromTheBodyAsJsonbReadsIt) {
  auto key_of = [](const std::string& body) {
    amqp::IncomingMessage message = valid_message();
    message.body = body;
    Checked checked = check_message(message, kParking);
    EXPECT_TRUE(checked.event) << checked.error;
    return checked.event ? checked.event->row_key : std::optional<std::string>("(poison)");
  };
  EXPECT_EQ(key_of(R"({"name": "A", "uuid": "k-1"})"), "sk-1");
  EXPECT_EQ(key_of(R"({"uuid": "k-1", "nested": {"uuid": "k-2"}, "uuid": "k-3"})"), "sk-3");
  EXPECT_EQ(key_of(R"({"nested": {"uuid": "k-2"}, "list": [{"uuid": "k-4"}]})"), std::nullopt);
  EXPECT_EQ(key_of(R"({"uuid": "a\u0062"})"), "sab");
  EXPECT_EQ(key_of(R"({"uuid": 42})"), "n42");
  EXPECT_EQ(key_of(R"({"uuid": 4.20})"), "n4.20");
  EXPECT_EQ(key_of(R"({"uuid": null})"), std::nullopt);
  EXPECT_EQ(key_of(R"({"uuid": {"a": 1}})"), "x");
  EXPECT_EQ(key_of(R"({"uuid": [1], "name": "B"})"), "x");
  EXPECT_EQ(key_of(R"({"uuid": true})"), "btrue");
  EXPECT_EQ(key_of(R"({"uuid": -7})"), "n-7");
  EXPECT_EQ(key_of(R"({"uuid": 18446744073709551615})"), "n18446744073709551615");
  EXPECT_EQ(key_of(R"({"uuid": "k-1", "uuid": null})"), std::nullopt);
}

// simdjson reads most bodies (replicate/event.cpp, fast_key_member); what it refuses, or a key that
// is a fraction, is read by nlohmann's SAX reader as before: both must give the same answers.
TEST(ReplicateMessage, BodiesThatTheFastReaderLeavesToTheOtherOneAreJudgedAsBefore) {
  auto check = [](const std::string& body) {
    amqp::IncomingMessage message = valid_message();
    message.body = body;
    return check_message(message, kParking);
  };
  // A number beyond 64 bits elsewhere in the body: valid JSON (jsonb takes it).
  Checked big = check(R"({"uuid": "k-1", "count": 123456789012345678901234567890})");
  ASSERT_TRUE(big.event) << big.error;
  EXPECT_EQ(big.event->row_key, "sk-1");
  // A fraction as the key keeps its text as written ("1.50" and "1.5" are two texts for jsonb).
  Checked fraction = check(R"({"uuid": 1.50})");
  ASSERT_TRUE(fraction.event) << fraction.error;
  EXPECT_EQ(fraction.event->row_key, "n1.50");
  Checked deep = check("{\"uuid\": \"k-2\", \"deep\": " + std::string(2000, '[') + std::string(2000, ']') + "}");
  ASSERT_TRUE(deep.event) << deep.error;
  EXPECT_EQ(deep.event->row_key, "sk-2");
  // A body over 64 KB goes to the SAX reader alone (the fast reader's buffers stay small).
  Checked large = check(R"({"uuid": "k-3", "text": ")" + std::string(70000, 'x') + R"("})");
  ASSERT_TRUE(large.event) << large.error;
  EXPECT_EQ(large.event->row_key, "sk-3");
  // What neither takes is poison, with nlohmann's reason.
  EXPECT_NE(check(R"({"uuid": "\ud800"})").error.find("malformed JSON body"), std::string::npos);
  EXPECT_NE(check("{\"uuid\": \"a\xff\"}").error.find("malformed JSON body"), std::string::npos);
  EXPECT_NE(check(R"({"uuid": 1} {})").error.find("malformed JSON body"), std::string::npos);
  EXPECT_EQ(check(R"("just text")").error, "body is JSON but not an object");
}

TEST(ReplicateColumns, StringsIntegersBooleansAndNullsAreReadAsJsonbPopulateRecordGivesThemToTheColumns) {
  std::vector<std::string> columns = {"id", "name", "n", "big", "flag", "gone", "missing", "note"};
  auto texts = column_texts(
      R"({"id": "a1", "name": "caf\u00e9", "n": -42, "big": 18446744073709551615, "flag": false, "gone": null,
          "other": {"x": [1.5]}, "note": "tab\t \"q\" é"})",
      columns);
  EXPECT_FALSE(texts) << "a Unicode escape is left to jsonb";
  texts = column_texts(
      R"({"id": "a1", "name": "café", "n": -42, "big": 18446744073709551615, "flag": false, "gone": null,
          "other": {"x": [1.5]}, "note": "tab\t \"q\" é"})",
      columns);
  ASSERT_TRUE(texts);
  std::vector<std::optional<std::string>> expected = {"a1",    "café",       "-42",        "18446744073709551615",
                                                      "false", std::nullopt, std::nullopt, "tab\t \"q\" é"};
  EXPECT_EQ(*texts, expected);
}

TEST(ReplicateColumns, TheLastOfRepeatedMembersCountsAsInJsonb) {
  auto texts = column_texts(R"({"note": "first", "note": null, "note": "last", "id": 1, "id": null})", {"id", "note"});
  ASSERT_TRUE(texts);
  EXPECT_EQ(*texts, (std::vector<std::optional<std::string>>{std::nullopt, "last"}));
}

TEST(ReplicateColumns, WhatJsonbCouldReadOtherwiseIsLeftToIt) {
  std::vector<std::string> columns = {"id", "v"};
  for (const char* body : {R"({"id": "a", "v": 1.5})", R"({"id": "a", "v": 1e3})", R"({"id": "a", "v": -0.0})",
                           R"({"id": "a", "v": {"x": 1}})", R"({"id": "a", "v": [1]})", R"({"id": "a\u0000"})",
                           R"({"id": "a", "v": 123456789012345678901234567890})", R"([{"id": "a"}])", R"({"id": "a")"}) {
    SCOPED_TRACE(body);
    EXPECT_FALSE(column_texts(body, columns));
  }
  EXPECT_FALSE(column_texts(std::string("{\"id\": \"a\0b\"}", 13), columns)) << "a NUL byte in a string";
  // A fraction, an object or an array in a member that is no column changes nothing.
  EXPECT_TRUE(column_texts(R"({"id": "a", "other": [1.5, {"y": 2e3}]})", columns));
  EXPECT_FALSE(column_texts(std::string(70 << 10, ' ') + R"({"id": "a"})", columns)) << "a body over 64 KiB";
}

TEST(ReplicateMessage, TheRoutingKeyStandsInForAMissingTypeAndAVersionMayBeADecimalString) {
  amqp::IncomingMessage message = valid_message();
  message.type.reset();
  message.routing_key = "parking.delete";
  message.headers["aggregate_version"] = std::string("12");
  Checked checked = check_message(message, kParking);
  ASSERT_TRUE(checked.event) << checked.error;
  EXPECT_EQ(kParking[static_cast<size_t>(checked.event->mapping)].operation, Operation::remove);
  EXPECT_EQ(checked.event->version, 12);
}

TEST(ReplicateMessage, EachKindOfPoisonHasAOneLineReason) {
  struct Case {
    std::function<void(amqp::IncomingMessage&)> spoil;
    std::string reason;
    bool names_aggregate;
  };
  std::vector<Case> cases = {
      {[](auto& m) { m.message_id.reset(); }, "missing message_id", true},
      {[](auto& m) { m.message_id = "42"; }, "message_id is not a uuid", true},
      {[](auto& m) { m.headers.erase("aggregate_id"); }, "missing header aggregate_id", false},
      {[](auto& m) { m.headers.erase("aggregate_type"); }, "missing header aggregate_type", false},
      {[](auto& m) { m.headers.erase("aggregate_version"); }, "missing header aggregate_version", true},
      {[](auto& m) { m.headers["aggregate_version"] = std::string("v3"); }, "aggregate_version is not an integer", true},
      {[](auto& m) { m.body = "{\"uuid\": "; }, "malformed JSON body", true},
      {[](auto& m) { m.body = "[1, 2]"; }, "not an object", true},
      {[](auto& m) { m.body = ""; }, "empty body", true},
      {[](auto& m) { m.type = "invoice.paid"; }, "unknown event type \"invoice.paid\"", true},
      {[](auto& m) { m.headers["aggregate_id"] = std::string("a\0b", 3); }, "aggregate_id is not valid UTF-8 or contains NUL",
       false},
      {[](auto& m) { m.headers["aggregate_type"] = std::string("bad\xff"); }, "aggregate_type is not valid UTF-8", false},
      {[](auto& m) { m.headers["aggregate_id"] = std::string(1025, 'x'); }, "aggregate_id: 1025 bytes, at most 1024", false},
      // Half a key must not survive a later problem: `outbox failed` would look for a chain under it.
      {[](auto& m) {
         m.headers.erase("aggregate_type");
         m.headers["aggregate_version"] = std::string("x1");
       },
       "missing header aggregate_type", false},
  };
  for (const Case& c : cases) {
    amqp::IncomingMessage message = valid_message();
    c.spoil(message);
    Checked checked = check_message(message, kParking);
    EXPECT_FALSE(checked.event);
    EXPECT_FALSE(checked.skip);
    EXPECT_NE(checked.error.find(c.reason), std::string::npos) << checked.error << " (expected " << c.reason << ")";
    EXPECT_EQ(checked.error.find('\n'), std::string::npos) << checked.error;
    EXPECT_EQ(!checked.aggregate_id.empty(), c.names_aggregate) << c.reason;
    EXPECT_EQ(checked.aggregate_type.empty(), checked.aggregate_id.empty()) << c.reason;
  }
}

TEST(ReplicateMessage, AnAggregateIdOfExactly1024BytesIsAccepted) {
  amqp::IncomingMessage message = valid_message();
  message.headers["aggregate_id"] = std::string(1024, 'x');
  EXPECT_TRUE(check_message(message, kParking).event);
}

TEST(ReplicateMessage, AHeartbeatIsNeverPoisonABrokenOneIsSkipped) {
  amqp::IncomingMessage heartbeat = valid_message();
  heartbeat.type = "outbox.heartbeat";
  heartbeat.headers["aggregate_type"] = std::string("outbox.heartbeat");
  heartbeat.headers["aggregate_id"] = std::string("heartbeat");
  heartbeat.body = R"({"relay": "host:1", "at": "2026-01-01T00:00:00Z"})";
  Checked ok = check_message(heartbeat, kParking);
  ASSERT_TRUE(ok.event) << ok.error;
  EXPECT_TRUE(ok.event->heartbeat);
  heartbeat.body = "not json";
  Checked broken = check_message(heartbeat, kParking);
  EXPECT_FALSE(broken.event);
  EXPECT_TRUE(broken.skip);
}

// The valid range is 1 .. 2^53-1 (core/aggregate_version.hpp); outside it the event is poison with
// a reason that names the version, and it still names its aggregate (its later events wait behind it).
TEST(ReplicateMessage, AVersionOutsideTheValidRangeIsPoisonThatNamesItAndItsAggregate) {
  for (long long version : {0LL, -5LL, 1LL << 53, 1LL << 62, std::numeric_limits<long long>::max()}) {
    amqp::IncomingMessage message = valid_message();
    message.headers["aggregate_version"] = version;
    Checked checked = check_message(message, kParking);
    EXPECT_FALSE(checked.event) << version;
    EXPECT_EQ(checked.error,
              "header aggregate_version " + std::to_string(version) + " is outside the valid range 1..9007199254740991");
    EXPECT_EQ(checked.version, version);
    EXPECT_EQ(checked.aggregate_id, "3f0c1d2e-4b5a-4978-8a9b-0c1d2e3f4a5b");
  }
  amqp::IncomingMessage beyond_64_bits = valid_message();
  beyond_64_bits.headers["aggregate_version"] = std::string("18446744073709551615");
  EXPECT_EQ(check_message(beyond_64_bits, kParking).error,
            "header aggregate_version 18446744073709551615 is outside the valid range 1..9007199254740991");
  for (long long version : {1LL, (1LL << 53) - 1}) {
    amqp::IncomingMessage message = valid_message();
    message.headers["aggregate_version"] = version;
    EXPECT_TRUE(check_message(message, kParking).event) << version;
  }
  // A heartbeat is never poison: one with such a version is skipped.
  amqp::IncomingMessage heartbeat = valid_message();
  heartbeat.type = "outbox.heartbeat";
  heartbeat.headers["aggregate_version"] = 0LL;
  EXPECT_TRUE(check_message(heartbeat, kParking).skip);
}

// A created_at that PostgreSQL's timestamptz could not hold is refused with its reason, instead of
// failing the apply statement (an event is parked, a heartbeat skipped).
TEST(ReplicateMessage, ACreatedAtAfterTheYear9999OrBefore1970IsRefusedNamingIt) {
  for (long long created_at : {1LL << 62, kLatestCreatedAtMicros + 1, -1LL}) {
    amqp::IncomingMessage message = valid_message();
    message.headers["created_at"] = created_at;
    Checked checked = check_message(message, kParking);
    EXPECT_FALSE(checked.event);
    EXPECT_EQ(checked.error,
              "header created_at " + std::to_string(created_at) + " is outside the valid range 0..253402300799999999");
    message.type = "outbox.heartbeat";
    EXPECT_TRUE(check_message(message, kParking).skip);
  }
  amqp::IncomingMessage last = valid_message();
  last.headers["created_at"] = kLatestCreatedAtMicros;
  EXPECT_TRUE(check_message(last, kParking).event);
}

// Header values of other AMQP types arrive as text that shows them, so a header that must be an
// integer names the value it got. Before, every such value arrived as "" (`is not an integer: ""`).
TEST(ReplicateMessage, AVersionHeaderOfAnotherTypeIsReportedWithItsValue) {
  auto field = [](amqp_field_value_t value) { return amqp::header_value(value); };
  amqp_field_value_t f64{.kind = AMQP_FIELD_KIND_F64, .value = {.f64 = 3.5}};
  amqp_field_value_t whole{.kind = AMQP_FIELD_KIND_F64, .value = {.f64 = 12.0}};
  amqp_field_value_t f32{.kind = AMQP_FIELD_KIND_F32, .value = {.f32 = 0.25f}};
  amqp_field_value_t boolean{.kind = AMQP_FIELD_KIND_BOOLEAN, .value = {.boolean = 1}};
  amqp_field_value_t decimal{.kind = AMQP_FIELD_KIND_DECIMAL, .value = {.decimal = {2, 1205}}};
  amqp_field_value_t huge{.kind = AMQP_FIELD_KIND_U64, .value = {.u64 = std::numeric_limits<uint64_t>::max()}};
  amqp_field_value_t array{.kind = AMQP_FIELD_KIND_ARRAY, .value = {.array = {.num_entries = 2, .entries = nullptr}}};
  struct Case {
    amqp_field_value_t value;
    std::string reason;
  };
  for (const Case& c : std::vector<Case>{
           {f64, "header aggregate_version is not an integer: \"3.5\""},
           {whole, "header aggregate_version is not an integer: \"12.0\""},
           {f32, "header aggregate_version is not an integer: \"0.25\""},
           {boolean, "header aggregate_version is not an integer: \"true\""},
           {decimal, "header aggregate_version is not an integer: \"12.05\""},
           {huge, "header aggregate_version 18446744073709551615 is outside the valid range 1..9007199254740991"},
           {array, "header aggregate_version is not an integer: \"(an array of 2 values)\""},
       }) {
    amqp::IncomingMessage message = valid_message();
    message.headers["aggregate_version"] = field(c.value);
    EXPECT_EQ(check_message(message, kParking).error, c.reason);
  }
  EXPECT_EQ(field({.kind = AMQP_FIELD_KIND_I64, .value = {.i64 = 7}}), amqp::HeaderValue(7LL));
}

TEST(ReplicateMessage, StoredPropertiesRoundTripToTheSameEvent) {
  amqp::IncomingMessage message = valid_message();
  message.app_id = "outbox";
  message.content_type = "application/json";
  message.timestamp_seconds = 1700000000;
  amqp::IncomingMessage back = message_from_stored(properties_json(message), message.body);
  EXPECT_EQ(back.message_id, message.message_id);
  EXPECT_EQ(back.type, message.type);
  EXPECT_EQ(back.routing_key, message.routing_key);
  EXPECT_EQ(back.app_id, message.app_id);
  EXPECT_EQ(back.timestamp_seconds, message.timestamp_seconds);
  EXPECT_EQ(back.headers, message.headers);
  Checked a = check_message(message, kParking), b = check_message(back, kParking);
  ASSERT_TRUE(a.event && b.event);
  EXPECT_EQ(a.event->event_id, b.event->event_id);
  EXPECT_EQ(a.event->version, b.event->version);
}

TEST(ReplicateMessage, PropertiesWithInvalidUtf8OrNulAreStoredAsJsonbSafeJsonAndComeBackByteForByte) {
  amqp::IncomingMessage message = valid_message();
  message.headers["aggregate_id"] = std::string("bad\xff\xfe");
  message.headers["trace"] = std::string("a\0b", 3);
  message.message_id = std::string("id\xc3", 3);
  message.type = "caf\xC3\xA9";
  std::string json = properties_json(message);
  EXPECT_NE(json.find(R"("aggregate_id":{"hex":"626164fffe"})"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("trace":{"hex":"610062"})"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("message_id":{"hex":"6964c3"})"), std::string::npos) << json;
  EXPECT_NE(json.find("\"type\":\"caf\xC3\xA9\""), std::string::npos) << json;
  // jsonb refuses \u0000 and invalid UTF-8: neither may reach the JSON.
  EXPECT_EQ(json.find("\\u0000"), std::string::npos) << json;
  EXPECT_TRUE(outbox::utf8::storable(json));
  amqp::IncomingMessage back = message_from_stored(json, message.body);
  EXPECT_EQ(back.headers, message.headers);
  EXPECT_EQ(back.message_id, message.message_id);
  EXPECT_EQ(back.type, message.type);
  // So a retry refuses the same message for the same reason, and never applies a cleaned-up copy.
  EXPECT_EQ(check_message(back, kParking).error, check_message(message, kParking).error);
}

TEST(ReplicateMessage, UuidsAreRecognized) {
  EXPECT_TRUE(is_uuid("3f0c1d2e-4b5a-4978-8a9b-0c1d2e3f4a5b"));
  EXPECT_TRUE(is_uuid("3F0C1D2E-4B5A-4978-8A9B-0C1D2E3F4A5B"));
  EXPECT_FALSE(is_uuid("3f0c1d2e4b5a49788a9b0c1d2e3f4a5b"));
  EXPECT_FALSE(is_uuid("3f0c1d2e-4b5a-4978-8a9b-0c1d2e3f4a5g"));
  EXPECT_FALSE(is_uuid(""));
}

TEST(ReplicateMapping, TheParkingMappingIsTheDefault) {
  std::vector<Mapping> mappings = mappings_from_config(parse_config(""));
  ASSERT_EQ(mappings.size(), 3u);
  EXPECT_EQ(mappings[find_mapping(mappings, "parking.create")].table, "parking_slots");
  EXPECT_EQ(mappings[find_mapping(mappings, "parking.delete")].operation, Operation::remove);
  EXPECT_EQ(find_mapping(mappings, "parking.other"), -1);
}

TEST(ReplicateMapping, ConfiguredMappingsReplaceTheDefault) {
  std::vector<Mapping> mappings = mappings_from_config(parse_config(R"(
[[replicate.mappings]]
event_type = "invoice.created"
table = "billing.invoices"
key_column = "id"

[[replicate.mappings]]
event_type = "invoice.voided"
table = "billing.invoices"
operation = "delete"
key_column = "id"
)"));
  ASSERT_EQ(mappings.size(), 2u);
  EXPECT_EQ(mappings[0].operation, Operation::upsert);
  EXPECT_EQ(mappings[1].operation, Operation::remove);
  EXPECT_EQ(mappings[1].key_column, "id");
  EXPECT_EQ(find_mapping(mappings, "parking.create"), -1);
}

TEST(ReplicateMapping, BadMappingsAreConfigErrorsNamingTheKey) {
  auto error_of = [](std::string_view toml) -> std::string {
    try {
      mappings_from_config(parse_config(toml));
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ExitCode::config);
      return error.what();
    }
    return "(no error)";
  };
  EXPECT_NE(error_of("[[replicate.mappings]]\nevent_type = \"a\"\ntable = \"x.y.z\"\n").find("replicate.mappings.table"),
            std::string::npos);
  EXPECT_NE(error_of("[[replicate.mappings]]\nevent_type = \"a\"\ntable = \"t\"\n[[replicate.mappings]]\nevent_type = "
                     "\"a\"\ntable = \"u\"\n")
                .find("mapped twice"),
            std::string::npos);
  EXPECT_NE(error_of("[[replicate.mappings]]\nevent_type = \"outbox.heartbeat\"\ntable = \"t\"\n").find("reserved"),
            std::string::npos);
  EXPECT_NE(error_of("[[replicate.mappings]]\nevent_type = \"a\"\ntable = \"t\"\noperation = \"merge\"\n").find("upsert|delete"),
            std::string::npos);
}

TEST(ReplicateApply, ServerErrorsAreClassifiedAsTheEventsFaultTransientOrTheReplicas) {
  auto sql = [](const char* state) { return pqxx::sql_error("boom", "SELECT 1", state); };
  EXPECT_EQ(classify(sql("23514")), Failure::event);       // check_violation
  EXPECT_EQ(classify(sql("22P02")), Failure::event);       // invalid_text_representation
  EXPECT_EQ(classify(sql("23502")), Failure::event);       // not_null_violation
  EXPECT_EQ(classify(sql("40001")), Failure::transient);   // serialization_failure
  EXPECT_EQ(classify(sql("40P01")), Failure::transient);   // deadlock_detected
  EXPECT_EQ(classify(sql("25006")), Failure::replica);     // read_only_sql_transaction
  EXPECT_EQ(classify(sql("42501")), Failure::replica);     // insufficient_privilege
  EXPECT_EQ(classify(sql("42P01")), Failure::replica);     // undefined_table
  EXPECT_EQ(classify(sql("53100")), Failure::replica);     // disk_full
  EXPECT_EQ(classify(sql("57P01")), Failure::connection);  // admin_shutdown
  EXPECT_EQ(classify(pqxx::broken_connection("gone")), Failure::connection);
  EXPECT_EQ(one_line("ERROR:  new row violates\nDETAIL:  Failing row contains (x).\n"),
            "new row violates DETAIL: Failing row contains (x).");
}

TEST(ReplicateTopology, ReplicaQueuesComeFromTheReplicaSections) {
  config::Config config = parse_config(R"(
[replicas.main]
url = "postgresql://localhost/a"

[replicas.eu]
url = "postgresql://localhost/b"
queue_type = "quorum"
binding_keys = ["parking.*", "invoice.#"]
)");
  topology::ReplicaQueue main = topology::replica_queue(config, "main");
  EXPECT_EQ(main.queue, "outbox.replica.main");
  EXPECT_FALSE(main.quorum);
  EXPECT_EQ(main.binding_keys, std::vector<std::string>{"#"});
  topology::ReplicaQueue eu = topology::replica_queue(config, "eu");
  EXPECT_TRUE(eu.quorum);
  EXPECT_EQ(eu.binding_keys, (std::vector<std::string>{"parking.*", "invoice.#"}));
  std::vector<std::string> lines = topology::describe("outbox", {main, eu});
  EXPECT_NE(lines.back().find(
                "outbox.replica.eu (quorum, dead-letter exchange outbox.dead-letter) bound to outbox with parking.*, invoice.#"),
            std::string::npos)
      << lines.back();
}

TEST(ReplicateParts, EveryEventOfAnAggregateGoesToTheSamePartAndHeartbeatsToTheMainOne) {
  Event event;
  event.aggregate_type = "parking_slot";
  std::vector<size_t> used(4, 0);
  for (int i = 0; i < 400; ++i) {
    event.aggregate_id = "slot-" + std::to_string(i);
    size_t part = part_of(event, 4);
    ASSERT_LT(part, 4u);
    event.version = 2;
    EXPECT_EQ(part_of(event, 4), part) << "another version of " << event.aggregate_id;
    ++used[part];
  }
  for (size_t part = 0; part < used.size(); ++part) EXPECT_GT(used[part], 40u) << "part " << part << " of 4 gets a fair share";
  event.aggregate_id = "slot-1";
  EXPECT_EQ(part_of(event, 1), 0u);
  event.heartbeat = true;
  EXPECT_EQ(part_of(event, 4), 0u);
}

TEST(ReplicateGroupCommit, AfterABatchDuringWhichNothingArrivedTheNextIsNotHeldBack) {
  EXPECT_EQ(replicate::group_commit_wait(std::chrono::milliseconds(5), std::chrono::milliseconds(20), false),
            std::chrono::steady_clock::duration::zero());
}

TEST(ReplicateGroupCommit, UnderAStreamTheNextBatchWaitsAsLongAsTheLastOneTook) {
  EXPECT_EQ(replicate::group_commit_wait(std::chrono::milliseconds(5), std::chrono::milliseconds(20), true),
            std::chrono::milliseconds(5));
  EXPECT_EQ(replicate::group_commit_wait(std::chrono::microseconds(700), std::chrono::seconds(60), true),
            std::chrono::microseconds(700));
}

TEST(ReplicateGroupCommit, TheWaitEndsBeforeBatchWaitHasPassedSinceTheLastBatchBegan) {
  EXPECT_EQ(replicate::group_commit_wait(std::chrono::milliseconds(15), std::chrono::milliseconds(20), true),
            std::chrono::milliseconds(5));
  EXPECT_EQ(replicate::group_commit_wait(std::chrono::milliseconds(30), std::chrono::milliseconds(20), true),
            std::chrono::steady_clock::duration::zero());
  EXPECT_EQ(replicate::group_commit_wait(std::chrono::milliseconds(5), std::chrono::milliseconds(0), true),
            std::chrono::steady_clock::duration::zero());
}
