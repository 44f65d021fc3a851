// outbox consume against a real PostgreSQL and RabbitMQ: each event runs its service's SQL handler
// once (the inbox), what a handler emits carries the conversation's ids, a raising handler is parked
// while the others go on, deadlines run, and a missing handler is a configuration error.
//
// The service database is the primary's (the parking primary is also a service, as in the sagas);
// messages are published straight to the exchange, as a service's relay would.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <set>

#include "examples/parking/parking.hpp"
#include "migrate/runner.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"

using namespace outbox::testing;
namespace amqp = outbox::amqp;
using outbox::parking::random_uuid;

namespace {

// The booking service's handlers: every command is recorded with its envelope; booking.create
// emits booking.created, booking.ask replies, booking.fail raises while its payload says so.
const char* kHandlers = R"(
DROP SCHEMA IF EXISTS test_booking CASCADE;
CREATE SCHEMA test_booking;
CREATE TABLE test_booking.seen (event_id uuid, event_type text, envelope jsonb);
CREATE TABLE test_booking.ticks (at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION test_booking.on_command(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO test_booking.seen VALUES ((e->>'event_id')::uuid, e->>'event_type', e);
  IF e->>'event_type' = 'booking.create' THEN
    PERFORM outbox_emit('booking.created', 'booking', e->>'aggregate_id', 1, e->'payload');
  ELSIF e->>'event_type' = 'booking.ask' THEN
    PERFORM outbox_reply('booking.answer', 'booking', e->>'aggregate_id', 1, '{"ok": true}');
  ELSIF e->>'event_type' = 'booking.fail' AND (e->'payload'->>'fail')::boolean THEN
    RAISE EXCEPTION 'booking % refused', e->>'aggregate_id';
  END IF;
END $$;
CREATE FUNCTION test_booking.tick() RETURNS void LANGUAGE sql AS $$ INSERT INTO test_booking.ticks DEFAULT VALUES $$;
)";

std::string config_text(const std::string& handler_function = "test_booking.on_command") {
  return "[services.booking]\nurl = \"" + servers().primary_url +
         "\"\nbinding_keys = [\"booking.#\"]\n\n"
         "[[services.booking.handlers]]\nevent_type = \"booking.create\"\nfunction = \"" +
         handler_function +
         "\"\n\n"
         "[[services.booking.handlers]]\nevent_type = \"booking.ask\"\nfunction = \"test_booking.on_command\"\n\n"
         "[[services.booking.handlers]]\nevent_type = \"*.fail\"\nfunction = \"test_booking.on_command\"\n\n"
         "[[services.booking.deadlines]]\nfunction = \"test_booking.tick\"\nevery = \"50ms\"\n";
}

const std::vector<std::string> kConsume = {"consume", "--set", "replicate.max_backoff=1s", "--set", "replicate.batch_wait=10s"};

std::string fresh_service(const std::string& handler_function = "test_booking.on_command") {
  reset_databases();
  std::string config = write_file("consume.toml", config_text(handler_function));
  RunResult migrated = run_outbox({"migrate"}, {{"OUTBOX_CONFIG", config}});
  EXPECT_EQ(migrated.exit_code, 0) << migrated;
  exec(servers().primary_url, kHandlers);
  purge_outbox_queues();
  return config;
}

bool ready(Daemon& daemon) {
  return eventually([&] { return daemon.log().find("consume: ready") != std::string::npos; }, 30s);
}

amqp::OutgoingMessage command(const std::string& type, const std::string& booking, const std::string& payload = "{}") {
  return event_message(type, "booking", booking, 1, payload, 1796187600000000LL);
}

void publish(const std::vector<amqp::OutgoingMessage>& messages) { publish_all(messages, "outbox.consumer.booking"); }

std::string count(const std::string& sql) { return scalar(servers().primary_url, "SELECT count(*) FROM " + sql); }

}  // namespace

TEST(Consume, AHandlerRunsOnceAndADuplicateDeliveryIsACountedNoOp) {
  std::string config = fresh_service();
  int port = free_port();
  Daemon consume(with_args(kConsume, {"--set", "metrics.listen=127.0.0.1:" + std::to_string(port)}), {{"OUTBOX_CONFIG", config}});
  ASSERT_TRUE(ready(consume)) << consume.log();
  amqp::OutgoingMessage create = command("booking.create", "b-1", R"({"slot": "s-1"})");
  publish({create, create});
  ASSERT_TRUE(eventually([&] { return metric(port, "outbox_consume_skipped_total", "reason=\"duplicate\"") == 1; }, 10s))
      << consume.log();
  // The consumer's own gauges and histogram, labelled by its service like its counters.
  EXPECT_GE(metric(port, "outbox_consume_batch_seconds_count", "service=\""), 1);
  EXPECT_EQ(metric(port, "outbox_consume_connected", "peer=\"broker\""), 1);
  EXPECT_GE(metric(port, "outbox_consume_unacked_messages", "service=\""), 0);
  EXPECT_EQ(count("test_booking.seen"), "1");
  EXPECT_EQ(count("outbox_applied_events WHERE effective"), "1");
  EXPECT_EQ(metric(port, "outbox_consume_applied_total", "service=\"booking\""), 1);
}

TEST(Consume, ALoneEventIsHandledWithoutWaitingForALongBatchWait) {
  std::string config = fresh_service();
  Daemon consume(with_args(kConsume, {"--set", "replicate.batch_size=500"}), {{"OUTBOX_CONFIG", config}});
  ASSERT_TRUE(ready(consume)) << consume.log();
  publish({command("booking.create", "b-1")});
  // batch_wait is 10 s: the event is handled well before, as nothing more is arriving.
  EXPECT_TRUE(eventually([] { return count("test_booking.seen") == "1"; }, 4s)) << consume.log();
}

TEST(Consume, TheEnvelopeCarriesTheMessage) {
  std::string config = fresh_service();
  Daemon consume(kConsume, {{"OUTBOX_CONFIG", config}});
  ASSERT_TRUE(ready(consume)) << consume.log();
  amqp::OutgoingMessage create = command("booking.create", "b-1", R"({"slot": "s-1"})");
  create.correlation_id = "saga-1";
  create.reply_to = "reply.requester";
  create.headers.push_back({"causation_id", std::string("cause-0")});
  publish({create});
  ASSERT_TRUE(eventually([] { return count("test_booking.seen") == "1"; }, 10s)) << consume.log();
  auto envelope = rows(servers().primary_url,
                       "SELECT envelope->>'event_id', envelope->>'event_type', envelope->>'aggregate_type', "
                       "envelope->>'aggregate_id', envelope->>'aggregate_version', envelope->>'created_at', "
                       "envelope->>'correlation_id', envelope->>'causation_id', envelope->>'reply_to', "
                       "envelope->>'routing_key', envelope->'headers'->>'aggregate_id', envelope->'payload'->>'slot' "
                       "FROM test_booking.seen");
  ASSERT_EQ(envelope.size(), 1u);
  EXPECT_EQ(envelope[0],
            (std::vector<std::string>{create.message_id, "booking.create", "booking", "b-1", "1", "2026-12-02T05:00:00.000000Z",
                                      "saga-1", "cause-0", "reply.requester", "booking.create", "b-1", "s-1"}));
}

TEST(Consume, AnEmittedEventCarriesTheCorrelationIdAndTheIncomingIdAsItsCause) {
  std::string config = fresh_service();
  Daemon consume(kConsume, {{"OUTBOX_CONFIG", config}});
  ASSERT_TRUE(ready(consume)) << consume.log();
  amqp::OutgoingMessage in_saga = command("booking.create", "b-1");
  in_saga.correlation_id = "saga-1";
  amqp::OutgoingMessage starting = command("booking.create", "b-2");
  publish({in_saga, starting});
  ASSERT_TRUE(eventually([] { return count("outbox WHERE event_type = 'booking.created'") == "2"; }, 10s)) << consume.log();
  auto emitted = rows(servers().primary_url,
                      "SELECT aggregate_id, correlation_id, causation_id FROM outbox WHERE event_type = 'booking.created' "
                      "ORDER BY aggregate_id");
  EXPECT_EQ(emitted[0], (std::vector<std::string>{"b-1", "saga-1", in_saga.message_id}));
  EXPECT_EQ(emitted[1], (std::vector<std::string>{"b-2", starting.message_id, starting.message_id}))
      << "without a correlation id, the incoming event's id is the conversation's";
}

TEST(Consume, AReplyIsRoutedToTheReplyToKeyWithTheSameCorrelationId) {
  std::string config = fresh_service();
  Daemon consume(kConsume, {{"OUTBOX_CONFIG", config}});
  ASSERT_TRUE(ready(consume)) << consume.log();
  amqp::OutgoingMessage ask = command("booking.ask", "b-1");
  ask.correlation_id = "saga-9";
  ask.reply_to = "reply.orchestrator";
  amqp::OutgoingMessage ask_without_reply_to = command("booking.ask", "b-2");
  publish({ask, ask_without_reply_to});
  ASSERT_TRUE(eventually([] { return count("outbox WHERE event_type = 'booking.answer'") == "1"; }, 10s)) << consume.log();
  EXPECT_EQ(rows(servers().primary_url, "SELECT routing_key, correlation_id FROM outbox WHERE event_type = 'booking.answer'"),
            (std::vector<std::vector<std::string>>{{"reply.orchestrator", "saga-9"}}));
  // A command without reply_to cannot be answered: outbox_reply raises, the event is parked.
  EXPECT_TRUE(eventually([] { return count("outbox_failed_events WHERE replica = 'booking' AND state = 'parked'") == "1"; }, 10s))
      << consume.log();
}

TEST(Consume, ARaisingHandlerIsParkedOthersGoOnAndRetryCompletesItAfterAFix) {
  std::string config = fresh_service();
  Daemon consume(kConsume, {{"OUTBOX_CONFIG", config}});
  ASSERT_TRUE(ready(consume)) << consume.log();
  amqp::OutgoingMessage poison = command("booking.fail", "b-1", R"({"fail": true})");
  amqp::OutgoingMessage behind = command("booking.create", "b-1");  // same aggregate: waits
  amqp::OutgoingMessage other = command("booking.create", "b-2");
  publish({poison, behind, other});
  ASSERT_TRUE(eventually([] { return count("outbox_failed_events WHERE replica = 'booking'") == "2"; }, 10s)) << consume.log();
  EXPECT_TRUE(eventually([] { return count("test_booking.seen WHERE envelope->>'aggregate_id' = 'b-2'") == "1"; }, 10s));
  auto failed = rows(servers().primary_url, "SELECT id::text, state, event_id, error FROM outbox_failed_events ORDER BY id");
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_EQ(failed[0][1], "parked");
  EXPECT_EQ(failed[0][2], poison.message_id);
  EXPECT_NE(failed[0][3].find("booking b-1 refused"), std::string::npos) << failed[0][3];
  EXPECT_EQ(failed[1][1], "waiting");

  RunResult listed = run_outbox({"failed", "list", "--consumer", "booking"}, {{"OUTBOX_CONFIG", config}});
  EXPECT_EQ(listed.exit_code, 0) << listed;
  EXPECT_NE(listed.out.find("\"consumer\": \"booking\""), std::string::npos) << listed;

  RunResult still = run_outbox({"failed", "retry", failed[0][0], "--consumer", "booking"}, {{"OUTBOX_CONFIG", config}});
  EXPECT_EQ(still.exit_code, 65) << still;
  // The fix: the handler no longer refuses.
  exec(servers().primary_url,
       "CREATE OR REPLACE FUNCTION test_booking.on_command(e jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
       "INSERT INTO test_booking.seen VALUES ((e->>'event_id')::uuid, e->>'event_type', e); "
       "IF e->>'event_type' = 'booking.create' THEN "
       "PERFORM outbox_emit('booking.created', 'booking', e->>'aggregate_id', 1, e->'payload'); END IF; END $$");
  RunResult retried = run_outbox({"failed", "retry", failed[0][0], "--consumer", "booking"}, {{"OUTBOX_CONFIG", config}});
  EXPECT_EQ(retried.exit_code, 0) << retried;
  EXPECT_EQ(count("outbox_failed_events"), "0");
  EXPECT_EQ(count("test_booking.seen WHERE envelope->>'aggregate_id' = 'b-1'"), "2") << "the parked one, then the one behind it";
  EXPECT_EQ(count("outbox WHERE event_type = 'booking.created' AND aggregate_id = 'b-1' AND causation_id = '" +
                  behind.message_id + "'"),
            "1")
      << "a retry runs the handler path: the settings are set";
}

TEST(Consume, AnEventNoHandlerTakesIsRecordedInTheInboxAckedAndCounted) {
  std::string config = fresh_service();
  int port = free_port();
  Daemon consume(with_args(kConsume, {"--set", "metrics.listen=127.0.0.1:" + std::to_string(port)}), {{"OUTBOX_CONFIG", config}});
  ASSERT_TRUE(ready(consume)) << consume.log();
  publish({command("booking.cancelled", "b-1"), command("booking.cancelled", "b-2")});
  ASSERT_TRUE(eventually([] { return count("outbox_applied_events WHERE NOT effective") == "2"; }, 10s)) << consume.log();
  EXPECT_TRUE(eventually([&] { return metric(port, "outbox_consume_unhandled_total", "service=\"booking\"") == 2; }, 10s));
  EXPECT_EQ(count("test_booking.seen"), "0");
  EXPECT_EQ(count("outbox_failed_events"), "0");
  EXPECT_TRUE(eventually([] { return TestQueue::depth("outbox.consumer.booking") == 0; }, 10s));
  std::string log = consume.log();
  size_t first = log.find("\"booking.cancelled\" have no handler");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("\"booking.cancelled\" have no handler", first + 1), std::string::npos) << "logged once per type";
}

TEST(Consume, ADeadlineFunctionRunsOnItsTimerAndAFailingOneNeverStopsTheConsumer) {
  std::string config = fresh_service();
  Daemon consume(kConsume, {{"OUTBOX_CONFIG", config}});
  ASSERT_TRUE(ready(consume)) << consume.log();
  EXPECT_TRUE(eventually([] { return std::stoi(count("test_booking.ticks")) >= 3; }, 10s)) << consume.log();
  exec(servers().primary_url,
       "CREATE OR REPLACE FUNCTION test_booking.tick() RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no time'; END "
       "$$");
  ASSERT_TRUE(eventually([&] { return consume.log().find("deadline test_booking.tick failed") != std::string::npos; }, 10s));
  publish({command("booking.create", "b-1")});
  EXPECT_TRUE(eventually([] { return count("test_booking.seen") == "1"; }, 10s)) << consume.log();
  std::string log = consume.log();
  size_t first = log.find("deadline test_booking.tick failed");
  EXPECT_EQ(log.find("deadline test_booking.tick failed", first + 1), std::string::npos) << "logged once per change";
}

TEST(Consume, AMissingHandlerFunctionIsAConfigurationError) {
  std::string config = fresh_service("test_booking.nowhere");
  RunResult result = run_outbox({"consume"}, {{"OUTBOX_CONFIG", config}}, 60s);
  EXPECT_EQ(result.exit_code, 78) << result;
  EXPECT_NE(result.err.find("\noutbox: consumer booking: handler function test_booking.nowhere(jsonb) for event type "
                            "\"booking.create\" "
                            "does not exist"),
            std::string::npos)
      << result;
}

TEST(Consume, AServiceWithoutBindingKeysIsAConfigurationError) {
  std::string config =
      write_file("no-keys.toml", "[services.booking]\nurl = \"" + servers().primary_url +
                                     "\"\n[[services.booking.handlers]]\nevent_type = \"a\"\nfunction = \"f\"\n");
  RunResult result = run_outbox({"consume"}, {{"OUTBOX_CONFIG", config}});
  EXPECT_EQ(result.exit_code, 78) << result;
  EXPECT_NE(result.err.find("services.booking.binding_keys is empty"), std::string::npos) << result;
  RunResult checked = run_outbox({"config", "check"}, {{"OUTBOX_CONFIG", config}});
  EXPECT_EQ(checked.exit_code, 78) << checked;
  EXPECT_NE(checked.err.find("services.booking.binding_keys is empty"), std::string::npos) << checked;
  RunResult unknown = run_outbox({"consume", "--service", "billing"}, {{"OUTBOX_CONFIG", config}});
  EXPECT_EQ(unknown.exit_code, 78) << unknown;
  EXPECT_NE(unknown.err.find("billing"), std::string::npos) << unknown;
}

// After an upgrade the consumer may start before `outbox migrate` ran: like replicate
// (Operations.ReplicateOnAnOlderSchemaWaits...), it waits, not ready (/healthz 503), handles
// nothing, and goes on by itself once the service's schema is current.
TEST(Consume, OnAnOlderServiceSchemaItWaitsNotReadyAndGoesOnByItselfAfterMigrate) {
  std::string config = fresh_service();
  // The service database as before migration 1003: its functions undone, so that migrate applies it again.
  ASSERT_EQ(outbox::migrate::latest_version(outbox::migrate::Target::service), 1003)
      << "this test undoes the service set's latest migration, 1003; undo the newest one instead";
  exec(servers().primary_url,
       "DROP FUNCTION outbox_handle_batch(jsonb, text, boolean, bigint, jsonb); "
       "DROP FUNCTION outbox_handle_batch_set(jsonb, text, boolean, bigint, jsonb); "
       "ALTER FUNCTION outbox_handle_batch_each(jsonb, text, boolean, bigint, jsonb) RENAME TO outbox_handle_batch; "
       "DELETE FROM schema_migrations WHERE version = 1003");
  int port = free_port();
  Daemon consume(with_args(kConsume, {"--set", "metrics.listen=127.0.0.1:" + std::to_string(port)}), {{"OUTBOX_CONFIG", config}});
  Http health = await_health(port, "waiting for 'outbox migrate'");
  EXPECT_NE(health.body.find("waiting for 'outbox migrate'"), std::string::npos) << health.body << consume.log();
  EXPECT_EQ(health.status, 503) << health.body;
  publish({command("booking.create", "b-1")});
  EXPECT_NE(consume.log().find("schema is at version 1002 but this outbox needs 1003; run 'outbox migrate'; waiting for "
                               "it (not ready until then)\n"),
            std::string::npos)
      << consume.log();
  EXPECT_TRUE(consume.running()) << consume.log();
  EXPECT_EQ(count("test_booking.seen"), "0");

  RunResult migrated = run_outbox({"migrate", "--service", "booking"}, {{"OUTBOX_CONFIG", config}});
  ASSERT_EQ(migrated.exit_code, 0) << migrated;
  EXPECT_TRUE(eventually([] { return count("test_booking.seen") == "1"; })) << consume.log();
  EXPECT_TRUE(eventually([&] { return http_get(port, "/healthz").status == 200; })) << consume.log();
}
