// The lean apply (issue 19, part 2): every replicated event has a version, so the version guard
// alone makes a redelivery a no-op and replicate records no event ids by default;
// replicate.record_event_ids records them again, for tracing. (Events without a version are a
// consumer's: its inbox stays their duplicate guard, Consume.AHandlerRunsOnceAndADuplicateDeliveryIsACountedNoOp.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "examples/parking/parking.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"

using namespace outbox::testing;
namespace amqp = outbox::amqp;
using outbox::parking::random_uuid;

namespace {

const std::vector<std::string> kReplicate = {"replicate", "--set", "replicate.max_backoff=1s"};

std::string count(const std::string& sql) { return scalar(servers().replica_url, "SELECT count(*) FROM " + sql); }

amqp::OutgoingMessage slot_event(const std::string& type, const std::string& uuid, long long version, const std::string& name) {
  std::string body = nlohmann::json{{"uuid", uuid}, {"name", name}, {"status", "available"}, {"version", version}}.dump();
  return event_message(type, "parking_slot", uuid, version, body, 1700000000000000LL + version);
}

void publish(const std::vector<amqp::OutgoingMessage>& messages) { publish_all(messages, "outbox.replica.main"); }

// One replica queue, one consumer: events apply in queue order, so once `uuid`'s row is there,
// everything published before it has been applied (or ignored).
bool applied_up_to(const std::string& uuid) {
  return eventually([&] { return count("parking_slots WHERE uuid = '" + uuid + "'") == "1"; });
}

struct Scenario {
  std::string slot = random_uuid(), deleted = random_uuid();
  amqp::OutgoingMessage create = slot_event("parking.create", slot, 1, "first");
  amqp::OutgoingMessage update = slot_event("parking.update", slot, 2, "second");
  amqp::OutgoingMessage create_deleted = slot_event("parking.create", deleted, 1, "gone");
  amqp::OutgoingMessage remove = event_message("parking.delete", "parking_slot", deleted, 2,
                                               "{\"uuid\": \"" + deleted + "\", \"version\": 2}", 1700000000000002LL);

  // Applies the events once, then redelivers each of them (same message ids), then a marker.
  void run(const std::vector<std::string>& replicate_args) {
    fresh_schema();
    Daemon replicate(replicate_args);
    publish({create, update, create_deleted, remove});
    std::string first_marker = random_uuid(), second_marker = random_uuid();
    publish({slot_event("parking.create", first_marker, 1, "marker")});
    ASSERT_TRUE(applied_up_to(first_marker)) << replicate.log();
    publish({create, update, create_deleted, remove, slot_event("parking.create", second_marker, 1, "marker")});
    ASSERT_TRUE(applied_up_to(second_marker)) << replicate.log();
  }

  void expect_applied_once() const {
    EXPECT_EQ(rows(servers().replica_url, "SELECT name, version::text FROM parking_slots WHERE uuid = '" + slot + "'"),
              (std::vector<std::vector<std::string>>{{"second", "2"}}));
    EXPECT_EQ(count("parking_slots WHERE uuid = '" + deleted + "'"), "0");
    EXPECT_EQ(scalar(servers().replica_url,
                     "SELECT version || ' ' || deleted FROM outbox_aggregate_versions WHERE aggregate_id = '" + deleted + "'"),
              "2 true");
    EXPECT_EQ(count("outbox_failed_events"), "0");
  }
};

}  // namespace

TEST(LeanApply, ARedeliveredVersionedEventIsANoOpAndNoEventIdIsRecorded) {
  Scenario scenario;
  scenario.run(kReplicate);
  scenario.expect_applied_once();
  EXPECT_EQ(count("outbox_applied_events"), "0");
  EXPECT_EQ(count("outbox_applied_position WHERE replica = 'main' AND last_created_at IS NOT NULL"), "1");
}

TEST(LeanApply, WithRecordEventIdsEveryAppliedEventIdIsRecordedOnceAndARedeliveryIsStillANoOp) {
  Scenario scenario;
  scenario.run(with_args(kReplicate, {"--set", "replicate.record_event_ids=true"}));
  scenario.expect_applied_once();
  // The four events and the two markers, each once; the redeliveries added none.
  EXPECT_EQ(count("outbox_applied_events"), "6");
  EXPECT_EQ(count("outbox_applied_events WHERE event_id = '" + scenario.update.message_id + "' AND effective"), "1");
}
