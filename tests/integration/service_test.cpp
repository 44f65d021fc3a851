// Database per service (issue 16): `outbox migrate` prepares each [services.NAME] database (the
// embedded `service` set: outbox, inbox, outbox_emit and outbox_reply; then the service's own
// migrations directory) and declares its consumer queue; the emit and reply functions' semantics.
// The service databases are made here on the replica cluster (the harness has three databases).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "migrate/runner.hpp"
#include "tests/integration/support/broker.hpp"
#include "tests/integration/support/harness.hpp"

namespace outbox::testing {
namespace {

using migrate::Target;

// The URL of database `name` on the replica cluster.
std::string database_url(const std::string& name) {
  std::string url = servers().replica_url;
  return url.substr(0, url.rfind('/') + 1) + name;
}

// Drops and creates database `name` (empty) on the replica cluster.
void fresh_database(const std::string& name) { testing::fresh_database("replica", name); }

bool has_table(const std::string& url, const std::string& table) {
  return scalar(url, "SELECT to_regclass('" + table + "') IS NOT NULL") == "t";
}

class Services : public ::testing::Test {
 protected:
  void SetUp() override {
    reset_databases();
    fresh_database("outbox_booking");
    fresh_database("outbox_billing");
    std::filesystem::remove_all(servers().dir + "/booking-sql");
  }

  const std::string booking = database_url("outbox_booking");
  const std::string billing = database_url("outbox_billing");

  // booking (with its own migrations in booking-sql/ when `own` is set) and billing.
  std::string services_config(bool own = false, const std::string& extra = "") {
    return write_file("services.toml",
                      "[services.booking]\nurl = \"" + booking + "\"\n" + (own ? "migrations = \"booking-sql\"\n" : "") +
                          "binding_keys = [\"booking.*\", \"reply.booking\"]\n"
                          "[services.billing]\nurl = \"" +
                          billing + "\"\nbinding_keys = [\"booking.created\"]\nqueue_type = \"quorum\"\n" + extra);
  }
  RunResult migrate(std::vector<std::string> args = {}, const std::string& config = "") {
    args.insert(args.begin(), "migrate");
    return run_outbox(args, {{"OUTBOX_CONFIG", config.empty() ? services_config() : config}});
  }
  static void write_own(const std::string& file, const std::string& sql) {
    std::filesystem::create_directories(servers().dir + "/booking-sql");
    std::ofstream(servers().dir + "/booking-sql/" + file) << sql;
  }
};

TEST_F(Services, MigratePreparesEveryServiceDatabaseWithItsOutboxInboxAndFunctions) {
  RunResult result = migrate();
  ASSERT_EQ(result.exit_code, 0) << result;
  const std::string first = migrate::migrations(Target::service).front().file;
  EXPECT_NE(result.out.find("service booking: applied " + first), std::string::npos) << result;
  EXPECT_NE(result.out.find("service billing: applied " + first), std::string::npos) << result;
  for (const std::string& url : {booking, billing}) {
    for (const char* table :
         {"outbox", "outbox_parked", "outbox_applied_events", "outbox_applied_position", "outbox_failed_events",
          "outbox_aggregate_versions", "outbox_heartbeat", "outbox_service_migrations"})
      EXPECT_TRUE(has_table(url, table)) << url << " " << table;
    EXPECT_EQ(scalar(url, "SELECT count(*) FROM pg_proc WHERE proname IN ('outbox_emit', 'outbox_reply')"), "2") << url;
    EXPECT_EQ(scalar(url, "SELECT min(version) || '..' || max(version) FROM schema_migrations"),
              "1001.." + std::to_string(migrate::latest_version(Target::service)))
        << url;
    EXPECT_FALSE(has_table(url, "parking_slots")) << url;
  }
  EXPECT_TRUE(has_table(servers().primary_url, "parking_slots"));
}

TEST_F(Services, APrimaryThatIsAlsoAServiceHoldsBothSetsAndMigratesAgainCleanly) {
  std::string config = services_config(false, "[services.parking]\nurl = \"" + servers().primary_url + "\"\n");
  ASSERT_EQ(migrate({}, config).exit_code, 0);
  EXPECT_EQ(scalar(servers().primary_url, "SELECT count(*) FROM schema_migrations WHERE version >= 1001"),
            std::to_string(migrate::migrations(Target::service).size()));
  EXPECT_TRUE(has_table(servers().primary_url, "outbox_applied_events"));

  RunResult again = migrate({}, config);
  ASSERT_EQ(again.exit_code, 0) << again;
  EXPECT_NE(again.out.find("primary: schema is current at version " + std::to_string(migrate::latest_version(Target::primary))),
            std::string::npos)
      << again;
  EXPECT_NE(
      again.out.find("service parking: schema is current at version " + std::to_string(migrate::latest_version(Target::service))),
      std::string::npos)
      << again;
  RunResult status = run_outbox({"migrate", "status"}, {{"OUTBOX_CONFIG", config}});
  ASSERT_EQ(status.exit_code, 0) << status;
  EXPECT_EQ(status.out.find("unknown to this outbox"), std::string::npos) << status;
  EXPECT_NO_THROW({
    auto connection = connect(servers().primary_url);
    migrate::require_current(connection, Target::primary, "primary");
    migrate::require_current(connection, Target::service, "service parking");
  });
}

TEST_F(Services, MigrateServiceMigratesOnlyThatServiceAndAnUnknownNameIsAConfigError) {
  RunResult result = migrate({"--service", "booking"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_TRUE(has_table(booking, "outbox"));
  EXPECT_FALSE(has_table(billing, "schema_migrations"));
  EXPECT_FALSE(has_table(servers().primary_url, "schema_migrations"));
  EXPECT_FALSE(has_table(servers().replica_url, "schema_migrations"));

  RunResult unknown = migrate({"--service", "nope"});
  EXPECT_EQ(unknown.exit_code, 78) << unknown;
  EXPECT_NE(unknown.err.find("no service named 'nope'"), std::string::npos) << unknown;
  RunResult both = migrate({"--service", "booking", "--target", "primary"});
  EXPECT_EQ(both.exit_code, 64) << both;
}

TEST_F(Services, MigrateDeclaresEachServicesConsumerQueueBoundWithItsKeys) {
  RunResult result = migrate();
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_NE(result.out.find("broker: declared queue outbox.consumer.billing (quorum"), std::string::npos) << result;
  auto connection = broker_connection();
  connection->purge_queue("outbox.consumer.booking");
  connection->purge_queue("outbox.consumer.billing");
  for (const char* key : {"booking.created", "reply.booking", "bill.paid"}) {
    amqp::OutgoingMessage message;
    message.exchange = "outbox";
    message.routing_key = key;
    message.body = "{}";
    connection->publish(message);
  }
  EXPECT_TRUE(eventually([] { return TestQueue::depth("outbox.consumer.booking") == 2; })) << "booking.* and reply.booking";
  EXPECT_TRUE(eventually([] { return TestQueue::depth("outbox.consumer.billing") == 1; })) << "booking.created";
}

// A queue's type cannot change in place (RabbitMQ refuses the redeclaration), so --recreate-queue
// deletes it and declares it again: only while it is empty with no consumer, so nothing is lost.
TEST_F(Services, RecreateQueueChangesAQueuesTypeOnlyWhenItIsEmptyWithNoConsumer) {
  auto config = [&](const std::string& type) {
    return write_file("booking-" + type + ".toml", "[services.booking]\nurl = \"" + booking +
                                                       "\"\nbinding_keys = [\"booking.*\"]\nqueue_type = \"" + type + "\"\n");
  };
  auto connection = broker_connection();
  try {
    connection->delete_unused_empty_queue("outbox.consumer.booking");
  } catch (const Error&) {
    connection = broker_connection();
    connection->purge_queue("outbox.consumer.booking");
    connection->delete_unused_empty_queue("outbox.consumer.booking");
  }
  ASSERT_EQ(migrate({"--service", "booking"}, config("classic")).exit_code, 0);
  amqp::OutgoingMessage message;
  message.exchange = "outbox";
  message.routing_key = "booking.created";
  message.body = "{}";
  connection->publish(message);
  connection->publish(message);
  ASSERT_TRUE(eventually([] { return TestQueue::depth("outbox.consumer.booking") == 2; }));

  RunResult refused = migrate({"--service", "booking"}, config("quorum"));
  EXPECT_EQ(refused.exit_code, 78) << refused;
  EXPECT_NE(refused.err.find("--recreate-queue"), std::string::npos) << refused;

  RunResult full = migrate({"--service", "booking", "--recreate-queue", "booking"}, config("quorum"));
  EXPECT_EQ(full.exit_code, 75) << full;
  EXPECT_NE(full.err.find("queue outbox.consumer.booking still holds 2 message(s)"), std::string::npos) << full;
  EXPECT_EQ(TestQueue::depth("outbox.consumer.booking"), 2);

  connection->purge_queue("outbox.consumer.booking");  // as its reader would drain it
  auto reader = broker_connection();
  reader->consume("outbox.consumer.booking", "test-reader");
  RunResult read = migrate({"--service", "booking", "--recreate-queue", "booking"}, config("quorum"));
  EXPECT_EQ(read.exit_code, 75) << read;
  EXPECT_NE(read.err.find("has 1 consumer(s)"), std::string::npos) << read;
  reader.reset();

  RunResult unknown = migrate({"--service", "booking", "--recreate-queue", "nosuch"}, config("quorum"));
  EXPECT_EQ(unknown.exit_code, 78) << unknown;
  EXPECT_NE(unknown.err.find("--recreate-queue nosuch: no replica or service consumer queue"), std::string::npos) << unknown;

  RunResult changed = migrate({"--service", "booking", "--recreate-queue", "booking"}, config("quorum"));
  ASSERT_EQ(changed.exit_code, 0) << changed;
  EXPECT_NE(changed.out.find("broker: deleted the empty queue outbox.consumer.booking"), std::string::npos) << changed;
  EXPECT_NE(changed.out.find("broker: declared queue outbox.consumer.booking (quorum"), std::string::npos) << changed;
  // Declared as quorum, bound as before: a classic declaration is now the one refused.
  EXPECT_EQ(migrate({"--service", "booking"}, config("classic")).exit_code, 78);
  connection = broker_connection();
  connection->publish(message);
  EXPECT_TRUE(eventually([] { return TestQueue::depth("outbox.consumer.booking") == 1; }));
  // And back to classic (a quorum queue is deleted without the broker's conditions, which it does
  // not support, after the same checks); the other tests declare booking's queue classic.
  connection->purge_queue("outbox.consumer.booking");
  RunResult back = migrate({"--service", "booking", "--recreate-queue", "booking"}, config("classic"));
  ASSERT_EQ(back.exit_code, 0) << back;
  EXPECT_NE(back.out.find("broker: declared queue outbox.consumer.booking (classic"), std::string::npos) << back;
}

TEST_F(Services, AServicesOwnMigrationsAreAppliedInNameOrderEachOnce) {
  write_own("0002_functions.sql",
            "CREATE FUNCTION booking.count_bookings() RETURNS bigint LANGUAGE sql AS "
            "'SELECT count(*) FROM booking.bookings';");
  write_own("0001_schema.sql", "CREATE SCHEMA booking; CREATE TABLE booking.bookings (id uuid PRIMARY KEY);");
  write_own("notes.txt", "not a migration");
  RunResult first = migrate({}, services_config(true));
  ASSERT_EQ(first.exit_code, 0) << first;
  EXPECT_LT(first.out.find("0001_schema.sql"), first.out.find("0002_functions.sql")) << first;
  EXPECT_EQ(scalar(booking, "SELECT booking.count_bookings()"), "0");
  EXPECT_EQ(scalar(booking, "SELECT string_agg(file, ',' ORDER BY file) FROM outbox_service_migrations"),
            "0001_schema.sql,0002_functions.sql");

  RunResult again = migrate({}, services_config(true));
  ASSERT_EQ(again.exit_code, 0) << again;
  EXPECT_NE(again.out.find("service booking: 2 own migration(s) in "), std::string::npos) << again;
  EXPECT_NE(again.out.find(", 0 applied"), std::string::npos) << again;
}

TEST_F(Services, AnOwnMigrationChangedAfterItWasAppliedIsRefusedNamingItAndNothingMoreRuns) {
  write_own("0001_schema.sql", "CREATE TABLE bookings (id uuid PRIMARY KEY);");
  ASSERT_EQ(migrate({}, services_config(true)).exit_code, 0);
  write_own("0001_schema.sql", "CREATE TABLE bookings (id uuid PRIMARY KEY, state text);");
  write_own("0002_more.sql", "CREATE TABLE more (id int);");

  RunResult result = migrate({}, services_config(true));
  EXPECT_EQ(result.exit_code, 78) << result;
  EXPECT_NE(result.err.find("outbox: service booking: migration 0001_schema.sql was applied with checksum "), std::string::npos)
      << result;
  EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result;
  EXPECT_FALSE(has_table(booking, "more"));
  RunResult status = run_outbox({"migrate", "status", "--service", "booking"}, {{"OUTBOX_CONFIG", services_config(true)}});
  EXPECT_EQ(status.exit_code, 78) << status;
  EXPECT_NE(status.out.find("0001_schema.sql  CHANGED SINCE APPLIED"), std::string::npos) << status;
  EXPECT_NE(status.out.find("0002_more.sql  pending"), std::string::npos) << status;
}

TEST_F(Services, AFailingOwnMigrationIsRolledBackAndTheOnesBeforeItStay) {
  write_own("0001_good.sql", "CREATE TABLE good (id int);");
  write_own("0002_bad.sql", "CREATE TABLE half (id int); SELECT no_such_column FROM good;");
  RunResult result = migrate({}, services_config(true));
  EXPECT_EQ(result.exit_code, 70) << result;
  EXPECT_NE(result.err.find("service booking: migration 0002_bad.sql failed (rolled back)"), std::string::npos) << result;
  EXPECT_TRUE(has_table(booking, "good"));
  EXPECT_FALSE(has_table(booking, "half"));
  EXPECT_EQ(scalar(booking, "SELECT string_agg(file, ',') FROM outbox_service_migrations"), "0001_good.sql");
}

TEST_F(Services, AMissingOwnMigrationsDirectoryIsAConfigErrorNamingIt) {
  RunResult result = migrate({}, services_config(true));
  EXPECT_EQ(result.exit_code, 78) << result;
  EXPECT_NE(result.err.find("service booking: migrations directory "), std::string::npos) << result;
  EXPECT_NE(result.err.find("booking-sql does not exist"), std::string::npos) << result;
}

TEST_F(Services, RelayServiceRelaysThatServicesOutboxWithItsSagaProperties) {
  ASSERT_EQ(migrate().exit_code, 0);
  TestQueue queue("test.service.relay", "booking.#");
  exec(booking,
       "SELECT set_config('outbox.correlation_id', 'saga-1', true), set_config('outbox.causation_id', 'cause-1', true); "
       "SELECT outbox_emit('booking.created', 'booking', 'b1', 1, '{\"slot\": \"s1\"}', reply_to => 'reply.booking')");
  Daemon relay({"relay", "--service", "booking", "--set", "relay.heartbeat_interval=0"},
               {{"OUTBOX_CONFIG", services_config()}, {"OUTBOX_PRIMARY_URL", kUnset}});
  ASSERT_EQ(queue.collect(1).size(), 1u) << relay.log();
  const amqp::IncomingMessage& message = queue.messages()[0];
  EXPECT_EQ(message.routing_key, "booking.created");
  EXPECT_EQ(message.correlation_id, "saga-1");
  EXPECT_EQ(message.reply_to, "reply.booking");
  EXPECT_EQ(header_text(message, "causation_id"), "cause-1");
  EXPECT_TRUE(eventually([&] { return scalar(booking, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == "0"; }))
      << relay.log();
  EXPECT_NE(relay.log().find("service booking"), std::string::npos) << relay.log();
  relay.signal(SIGTERM);
  EXPECT_EQ(relay.wait_exit(), 0) << relay.log();

  RunResult unknown = run_outbox({"relay", "--service", "nope"}, {{"OUTBOX_CONFIG", services_config()}});
  EXPECT_EQ(unknown.exit_code, 78) << unknown;
  EXPECT_NE(unknown.err.find("no service named 'nope'"), std::string::npos) << unknown;
}

TEST_F(Services, LagAndCheckOfAServiceReportItsOutboxItsConsumerQueueAndItsConsumer) {
  ASSERT_EQ(migrate().exit_code, 0);
  exec(booking, "SELECT outbox_emit('booking.created', 'booking', 'b1', 1, '{}')");
  exec(booking,
       "INSERT INTO outbox_failed_events (replica, event_id, aggregate_type, aggregate_id, aggregate_version, event_type, "
       "routing_key, body, error, attempts, state) VALUES ('booking', gen_random_uuid()::text, 'parking_slot', 's1', 1, "
       "'parking.reserved', 'parking.reserved', '{}', 'handler raised', 1, 'parked')");
  std::map<std::string, std::string> env = {{"OUTBOX_CONFIG", services_config()}, {"OUTBOX_PRIMARY_URL", kUnset}};

  RunResult lag = run_outbox({"lag", "--service", "booking", "--json"}, env);
  ASSERT_EQ(lag.exit_code, 0) << lag;
  nlohmann::json report = nlohmann::json::parse(lag.out);
  EXPECT_EQ(report["service"], "booking");
  EXPECT_EQ(report["outbox"]["tables"][0]["unpublished"], 1) << lag.out;
  EXPECT_EQ(report["broker"]["queues"][0]["queue"], "outbox.consumer.booking") << lag.out;
  EXPECT_EQ(report["broker"]["queues"][0]["exists"], true) << lag.out;
  EXPECT_EQ(report["replicas"][0]["name"], "booking") << lag.out;
  EXPECT_EQ(report["replicas"][0]["failed"]["parked"], 1) << lag.out;
  RunResult text = run_outbox({"lag", "--service", "booking"}, env);
  EXPECT_NE(text.out.find("CONSUMER"), std::string::npos) << text;

  RunResult check = run_outbox({"check", "--service", "booking"}, env);
  EXPECT_EQ(check.exit_code, 1) << check;
  EXPECT_NE(check.out.find("consumer booking has 1 failed event parked (see outbox failed list --consumer booking)"),
            std::string::npos)
      << check;

  RunResult unknown = run_outbox({"lag", "--service", "nope"}, env);
  EXPECT_EQ(unknown.exit_code, 78) << unknown;
  EXPECT_NE(unknown.err.find("no service named 'nope'"), std::string::npos) << unknown;
  RunResult unknown_check = run_outbox({"check", "--service", "nope"}, env);
  EXPECT_EQ(unknown_check.exit_code, 3) << unknown_check;
}

TEST_F(Services, VerifyServiceChecksItsSchemaItsHandlerFunctionsItsQueueAndThatNothingIsParked) {
  std::string config = services_config(false,
                                       "[[services.booking.handlers]]\nevent_type = \"parking.reserved\"\n"
                                       "function = \"on_reserved\"\n[[services.booking.deadlines]]\nfunction = \"expire\"\n");
  std::map<std::string, std::string> env = {{"OUTBOX_CONFIG", config}, {"OUTBOX_PRIMARY_URL", kUnset}};
  RunResult before = run_outbox({"verify", "--service", "booking"}, env);
  EXPECT_EQ(before.exit_code, 1) << before;
  EXPECT_NE(before.out.find("PROBLEM  schema: " + std::to_string(migrate::migrations(Target::service).size()) +
                            " migration(s) of the service set pending"),
            std::string::npos)
      << before;

  ASSERT_EQ(migrate({"--service", "booking"}, config).exit_code, 0);
  RunResult missing = run_outbox({"verify", "--service", "booking"}, env);
  EXPECT_EQ(missing.exit_code, 1) << missing;
  EXPECT_NE(missing.out.find("PROBLEM  handlers: missing in the database: on_reserved(jsonb), expire()"), std::string::npos)
      << missing;

  exec(booking,
       "CREATE FUNCTION on_reserved(event jsonb) RETURNS void LANGUAGE sql AS ''; "
       "CREATE FUNCTION expire() RETURNS void LANGUAGE sql AS ''");
  RunResult ready = run_outbox({"verify", "--service", "booking"}, env);
  EXPECT_EQ(ready.exit_code, 0) << ready;
  EXPECT_NE(ready.out.find("ok       queue: outbox.consumer.booking exists"), std::string::npos) << ready;
  EXPECT_NE(ready.out.find("service booking: ready, nothing stuck"), std::string::npos) << ready;

  exec(booking,
       "INSERT INTO outbox_failed_events (replica, event_id, body, error, attempts, state) "
       "VALUES ('booking', gen_random_uuid()::text, '{}', 'handler raised', 1, 'parked')");
  RunResult stuck = run_outbox({"verify", "--service", "booking", "--json"}, env);
  EXPECT_EQ(stuck.exit_code, 1) << stuck;
  EXPECT_EQ(nlohmann::json::parse(stuck.out)["ok"], false) << stuck;
  EXPECT_NE(stuck.out.find("see outbox failed list --consumer booking"), std::string::npos) << stuck;

  RunResult mixed = run_outbox({"verify", "--service", "booking", "--replica", "main"}, env);
  EXPECT_EQ(mixed.exit_code, 64) << mixed;
}

// The functions a handler calls, straight in SQL: what `outbox consume` sets before a handler is
// set here by hand (transaction-local, as the engine does).
class EmitAndReply : public Services {
 protected:
  void SetUp() override {
    Services::SetUp();
    ASSERT_EQ(migrate({"--service", "booking"}).exit_code, 0);
  }
  std::vector<std::string> row_of(const std::string& event_id) {
    return rows(booking,
                "SELECT event_type, aggregate_type, aggregate_id, aggregate_version, payload::text, "
                "coalesce(correlation_id, 'NULL'), coalesce(causation_id, 'NULL'), coalesce(reply_to, 'NULL'), "
                "coalesce(routing_key, 'NULL') FROM outbox WHERE event_id = '" +
                    event_id + "'")
        .at(0);
  }
  // Runs `settings` (set_config calls) and then `call` in one transaction; returns call's result.
  std::string in_handler(const std::string& settings, const std::string& call) {
    auto connection = connect(booking);
    pqxx::work tx(connection);
    if (!settings.empty()) tx.exec(settings);
    std::string out = tx.exec1(call)[0].as<std::string>();
    tx.commit();
    return out;
  }
};

TEST_F(EmitAndReply, AnEventEmittedOutsideAHandlerIsItsOwnCorrelationAndHasNoCause) {
  std::string id = scalar(booking,
                          "SELECT outbox_emit('booking.created', 'booking', 'b1', 1, '{\"slot\": \"s1\"}', "
                          "reply_to => 'reply.booking', routing_key => 'parking.block')");
  EXPECT_EQ(row_of(id), (std::vector<std::string>{"booking.created", "booking", "b1", "1", "{\"slot\": \"s1\"}", id, "NULL",
                                                  "reply.booking", "parking.block"}));
}

TEST_F(EmitAndReply, AnEventEmittedInAHandlerCarriesTheIncomingCorrelationAndNamesItsCause) {
  std::string id = in_handler(
      "SELECT set_config('outbox.correlation_id', 'saga-7', true), set_config('outbox.causation_id', 'event-3', true), "
      "set_config('outbox.reply_to', '', true)",
      "SELECT outbox_emit('bill.paid', 'bill', 'b1', 2, '{}')");
  EXPECT_EQ(row_of(id), (std::vector<std::string>{"bill.paid", "bill", "b1", "2", "{}", "saga-7", "event-3", "NULL", "NULL"}));

  // The engine resets the settings to '' after a handler: what follows is outside a handler again.
  std::string after =
      in_handler("SELECT set_config('outbox.correlation_id', '', true), set_config('outbox.causation_id', '', true)",
                 "SELECT outbox_emit('bill.created', 'bill', 'b2', 1, '{}')");
  EXPECT_EQ(row_of(after)[5], after);
  EXPECT_EQ(row_of(after)[6], "NULL");
}

TEST_F(EmitAndReply, AReplyGoesToTheRequestersReplyToWithTheSameCorrelation) {
  std::string id = in_handler(
      "SELECT set_config('outbox.correlation_id', 'saga-9', true), set_config('outbox.causation_id', 'command-1', true), "
      "set_config('outbox.reply_to', 'reply.booking', true)",
      "SELECT outbox_reply('parking.blocked', 'parking_slot', 's1', 4, '{\"ok\": true}')");
  EXPECT_EQ(row_of(id), (std::vector<std::string>{"parking.blocked", "parking_slot", "s1", "4", "{\"ok\": true}", "saga-9",
                                                  "command-1", "NULL", "reply.booking"}));
}

TEST_F(EmitAndReply, AReplyToAnEventWithoutReplyToRaisesInvalidParameterValue) {
  for (const std::string& settings : {std::string(), std::string("SELECT set_config('outbox.reply_to', '', true)")}) {
    auto connection = connect(booking);
    pqxx::work tx(connection);
    if (!settings.empty()) tx.exec(settings);
    try {
      tx.exec("SELECT outbox_reply('parking.blocked', 'parking_slot', 's1', 1, '{}')");
      ADD_FAILURE() << "outbox_reply without reply_to did not raise";
    } catch (const pqxx::sql_error& error) {
      EXPECT_EQ(error.sqlstate(), "22023");
      EXPECT_NE(std::string(error.what()).find("outbox_reply: the event being handled has no reply_to"), std::string::npos)
          << error.what();
    }
  }
  EXPECT_EQ(scalar(booking, "SELECT count(*) FROM outbox"), "0");
}

TEST_F(EmitAndReply, AVersionOutsideThePipelinesRangeIsRefusedByTheOutbox) {
  EXPECT_THROW(scalar(booking, "SELECT outbox_emit('t', 'a', 'x', 0, '{}')"), pqxx::check_violation);
  EXPECT_THROW(scalar(booking, "SELECT outbox_emit('t', 'a', 'x', 9007199254740992, '{}')"), pqxx::check_violation);
}

TEST_F(EmitAndReply, AHandlerWithItsOwnSearchPathStillWritesToTheServicesOutbox) {
  exec(booking, "CREATE SCHEMA booking; CREATE TABLE booking.outbox (x int)");
  std::string id = in_handler("SET LOCAL search_path = booking", "SELECT public.outbox_emit('t', 'a', 'x', 1, '{}')");
  EXPECT_EQ(scalar(booking, "SELECT count(*) FROM public.outbox WHERE event_id = '" + id + "'"), "1");
}

// outbox_handle_batch, the handler path's one call per batch, straight in SQL with a batch as
// replicate/envelope.cpp builds it: the contract the engine relies on. It is kept by both forms
// that outbox_handle_batch chooses between by the batch's size (migrate/sql/service/1003): the
// per-event loop and the set-based one, each called here directly, and by the chooser itself.
class HandleBatch : public EmitAndReply, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    EmitAndReply::SetUp();
    exec(booking, R"(
      CREATE TABLE handled (n serial, handler text, event_id uuid, correlation text, causation text, reply_to text);
      CREATE FUNCTION on_a(e jsonb) RETURNS void LANGUAGE sql AS $$
        INSERT INTO handled (handler, event_id, correlation, causation, reply_to)
        VALUES ('a', (e->>'event_id')::uuid, current_setting('outbox.correlation_id'),
                current_setting('outbox.causation_id'), current_setting('outbox.reply_to')) $$;
      CREATE FUNCTION on_b(e jsonb) RETURNS integer LANGUAGE sql AS $$
        INSERT INTO handled (handler, event_id, correlation, causation, reply_to)
        VALUES ('b', (e->>'event_id')::uuid, current_setting('outbox.correlation_id'),
                current_setting('outbox.causation_id'), current_setting('outbox.reply_to')) RETURNING 1 $$;)");
  }
  // One entry of the batch: m is the handler's index, -1 a heartbeat, -2 the position entry, -3 unhandled.
  static std::string entry(int i, const std::string& id, int m, const std::string& aggregate, long long ts) {
    std::string e = R"({"event_id":")" + id + R"(","payload":{}})";
    return R"({"i":)" + std::to_string(i) + R"(,"id":")" + id + R"(","at":"booking","ag":")" + aggregate + R"(","v":1,"m":)" +
           std::to_string(m) + R"(,"pos":)" + std::to_string(i + 1) + R"(,"ts":)" + std::to_string(ts) +
           (m == -1 ? R"(,"p":{"relay":"r1"})" : "") +
           (m >= 0 ? R"(,"c":"corr-)" + std::to_string(i) + R"(","rt":"reply-)" + std::to_string(i) + R"(","e":)" + e : "") + "}";
  }
  std::vector<std::string> handle(const std::string& batch) {
    auto connection = connect(booking);
    pqxx::work tx(connection);
    auto row = tx.exec_params1(
        "SELECT handled, duplicate, heartbeats, blocked, future, unhandled, current_setting('outbox.correlation_id', true) "
        "FROM " +
            GetParam() + "($1::jsonb, 'booking', false, 60000, '[\"on_a(jsonb)\", \"on_b(jsonb)\"]')",
        batch);
    tx.commit();
    std::vector<std::string> out;
    for (const auto& field : row) out.push_back(field.is_null() ? "NULL" : field.as<std::string>());
    return out;
  }
};

TEST_P(HandleBatch, HandlersRunOncePerEventInDeliveryOrderEachWithItsOwnSettings) {
  long long now = std::stoll(scalar(booking, "SELECT (extract(epoch FROM now()) * 1000000)::bigint"));
  std::vector<std::string> ids;
  for (int k = 0; k < 6; ++k) ids.push_back(scalar(booking, "SELECT gen_random_uuid()"));
  // a, b, a on one aggregate; the first id again (a duplicate inside the batch); an event no handler
  // takes; a heartbeat; an event from an hour ahead (handled, but moves no position); the position entry.
  std::string batch = "[" + entry(0, ids[0], 0, "x", now) + "," + entry(1, ids[1], 1, "x", now) + "," +
                      entry(2, ids[2], 0, "x", now) + "," + entry(3, ids[0], 0, "x", now) + "," + entry(4, ids[3], -3, "y", now) +
                      "," + entry(5, ids[4], -1, "", now) + "," + entry(6, ids[5], 1, "z", now + 3600'000000LL) + "," +
                      entry(7, ids[2], -2, "x", now) + "]";
  EXPECT_EQ(handle(batch), (std::vector<std::string>{"4", "1", "1", "{}", "1", "1", ""}));
  EXPECT_EQ(rows(booking, "SELECT handler, event_id, correlation, causation, reply_to FROM handled ORDER BY n"),
            (std::vector<std::vector<std::string>>{{"a", ids[0], "corr-0", ids[0], "reply-0"},
                                                   {"b", ids[1], "corr-1", ids[1], "reply-1"},
                                                   {"a", ids[2], "corr-2", ids[2], "reply-2"},
                                                   {"b", ids[5], "corr-6", ids[5], "reply-6"}}));
  EXPECT_EQ(scalar(booking, "SELECT count(*) FILTER (WHERE effective) || '/' || count(*) FROM outbox_applied_events"), "4/5");
  EXPECT_EQ(scalar(booking, "SELECT last_event_id FROM outbox_applied_position WHERE replica = 'booking'"), ids[2]);
  EXPECT_EQ(scalar(booking, "SELECT relay FROM outbox_heartbeat WHERE replica = 'booking'"), "r1");

  // Delivered again: every event is a counted no-op, no handler runs (so nothing was set).
  EXPECT_EQ(handle(batch), (std::vector<std::string>{"0", "6", "1", "{}", "1", "0", "NULL"}));
  EXPECT_EQ(scalar(booking, "SELECT count(*) FROM handled"), "4");
}

TEST_P(HandleBatch, AnEventBehindAParkedOneOfItsAggregateWaitsAndTheOthersAreHandled) {
  long long now = std::stoll(scalar(booking, "SELECT (extract(epoch FROM now()) * 1000000)::bigint"));
  exec(booking,
       "INSERT INTO outbox_failed_events (replica, aggregate_type, aggregate_id, body, error, attempts, state) "
       "VALUES ('booking', 'booking', 'x', '{}', 'handler raised', 1, 'parked')");
  std::string waiting = scalar(booking, "SELECT gen_random_uuid()"), other = scalar(booking, "SELECT gen_random_uuid()");
  EXPECT_EQ(handle("[" + entry(0, waiting, 0, "x", now) + "," + entry(1, other, 1, "y", now) + "]"),
            (std::vector<std::string>{"1", "0", "0", "{0}", "0", "0", ""}));
  EXPECT_EQ(rows(booking, "SELECT handler, event_id FROM handled ORDER BY n"),
            (std::vector<std::vector<std::string>>{{"b", other}}));
  EXPECT_EQ(scalar(booking, "SELECT count(*) FROM outbox_applied_events WHERE event_id = '" + waiting + "'"), "0");
}

INSTANTIATE_TEST_SUITE_P(EachFormAndTheChooser, HandleBatch,
                         ::testing::Values("outbox_handle_batch_each", "outbox_handle_batch_set", "outbox_handle_batch"));

}  // namespace
}  // namespace outbox::testing
