// The parking-slot commands against the real servers: output formats, events in the same
// transaction, rejected input, rollback, concurrent updates, and names that must round-trip.
#include "examples/parking/parking.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/support/harness.hpp"

namespace outbox::testing {
namespace {

using nlohmann::json;

class Parking : public ::testing::Test {
 protected:
  void SetUp() override {
    reset_databases();
    ASSERT_TRUE(migrate_all());
  }

  // Creates a slot and returns its uuid.
  static std::string create(const std::string& name, const std::string& status = "") {
    std::vector<std::string> args = {"create_parking_slot", "--name", name};
    if (!status.empty()) args.insert(args.end(), {"--status", status});
    RunResult result = run_outbox(args);
    EXPECT_EQ(result.exit_code, 0) << result;
    return created_slot_uuid(result);
  }
  static std::string count(const std::string& url, const std::string& table) {
    return scalar(url, "SELECT count(*) FROM " + table);
  }
  static std::string details_text(const std::string& uuid, const std::string& name, const std::string& status) {
    return "uuid:   " + uuid + "\nname:   " + name + "\nstatus: " + status + "\n";
  }
  struct Event {
    std::string event_type, aggregate_type, aggregate_id;
    long long version;
    json payload;
  };
  static std::vector<Event> events() {
    std::vector<Event> out;
    for (auto& row : rows(servers().primary_url,
                          "SELECT event_type, aggregate_type, aggregate_id, aggregate_version, payload::text, "
                          "event_id IS NOT NULL FROM outbox ORDER BY position")) {
      EXPECT_EQ(row[5], "t");
      out.push_back({row[0], row[1], row[2], std::stoll(row[3]), json::parse(row[4])});
    }
    return out;
  }
  // Puts a row straight into a replica's read model (the replicate daemon's job, later).
  static void put_on_replica(const std::string& url, const std::string& uuid, const std::string& name) {
    auto connection = connect(url);
    pqxx::work tx(connection);
    tx.exec_params("INSERT INTO parking_slots (uuid, name, status, version) VALUES ($1, $2, 'reserved', 7)", uuid, name);
    tx.commit();
  }
};

TEST_F(Parking, CreatePrintsUuidNameAndStatusAndWritesTheRowAndAParkingCreateEvent) {
  RunResult result = run_outbox({"create_parking_slot", "--name", "Slot 1"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_TRUE(std::regex_match(result.out, std::regex("uuid:   [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n"
                                                      "name:   Slot 1\nstatus: available\n")))
      << result;
  EXPECT_EQ(result.err, "");
  std::string uuid = result.out.substr(8, 36);

  EXPECT_EQ(rows(servers().primary_url, "SELECT uuid, name, status, version FROM parking_slots"),
            (std::vector<std::vector<std::string>>{{uuid, "Slot 1", "available", "1"}}));
  auto all = events();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].event_type, "parking.create");
  EXPECT_EQ(all[0].aggregate_type, "parking_slot");
  EXPECT_EQ(all[0].aggregate_id, uuid);
  EXPECT_EQ(all[0].version, 1);
  EXPECT_EQ(all[0].payload, (json{{"uuid", uuid}, {"name", "Slot 1"}, {"status", "available"}, {"version", 1}}));
}

TEST_F(Parking, CreateAcceptsAStatusAndTheHyphenatedSpelling) {
  RunResult result = run_outbox({"create-parking-slot", "--name", "B", "--status", "blocked"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_NE(result.out.find("\nstatus: blocked\n"), std::string::npos) << result;
  EXPECT_EQ(scalar(servers().primary_url, "SELECT status FROM parking_slots"), "blocked");
}

TEST_F(Parking, ListFromThePrimaryPrintsOneJsonObjectPerLineOrderedByName) {
  std::string b = create("Beta", "reserved");
  std::string a = create("Alpha");
  RunResult result = run_outbox({"parking_slot_list", "--from", "primary"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_EQ(result.out, "{\"uuid\": \"" + a +
                            "\", \"name\": \"Alpha\", \"status\": \"available\"}\n"
                            "{\"uuid\": \"" +
                            b + "\", \"name\": \"Beta\", \"status\": \"reserved\"}\n");
  RunResult hyphenated = run_outbox({"parking-slot-list", "--from", "primary"});
  EXPECT_EQ(hyphenated.out, result.out);
}

TEST_F(Parking, AnEmptyListPrintsNothing) {
  RunResult primary = run_outbox({"parking_slot_list", "--from", "primary"});
  EXPECT_EQ(primary.exit_code, 0) << primary;
  EXPECT_EQ(primary.out, "");
  RunResult replica = run_outbox({"parking_slot_list"});
  EXPECT_EQ(replica.exit_code, 0) << replica;
  EXPECT_EQ(replica.out, "");
}

TEST_F(Parking, ListReadsTheReplicaMainByDefaultAndANamedReplicaOnRequest) {
  create("Only on the primary");
  const std::string u1 = "11111111-1111-4111-8111-111111111111", u2 = "22222222-2222-4222-8222-222222222222";
  put_on_replica(servers().replica_url, u1, "Main's row");
  put_on_replica(servers().replica2_url, u2, "Second's row");

  RunResult main = run_outbox({"parking_slot_list"});
  ASSERT_EQ(main.exit_code, 0) << main;
  EXPECT_EQ(main.out, "{\"uuid\": \"" + u1 + "\", \"name\": \"Main's row\", \"status\": \"reserved\"}\n");
  EXPECT_EQ(run_outbox({"parking_slot_list", "--from", "replica"}).out, main.out);
  EXPECT_EQ(run_outbox({"parking_slot_list", "--from", "replica:main"}).out, main.out);

  std::string config = write_file("replica2.toml", "[replicas.second]\nurl = \"" + servers().replica2_url + "\"\n");
  RunResult second = run_outbox({"parking_slot_list", "--from", "replica:second"}, {{"OUTBOX_CONFIG", config}});
  ASSERT_EQ(second.exit_code, 0) << second;
  EXPECT_EQ(second.out, "{\"uuid\": \"" + u2 + "\", \"name\": \"Second's row\", \"status\": \"reserved\"}\n");

  RunResult unknown = run_outbox({"parking_slot_list", "--from", "replica:nope"});
  EXPECT_EQ(unknown.exit_code, 78) << unknown;
  RunResult bad = run_outbox({"parking_slot_list", "--from", "secondary"});
  EXPECT_EQ(bad.exit_code, 64) << bad;
}

TEST_F(Parking, DetailsPrintsTheCreateFormatFromThePrimaryOrTheReplica) {
  std::string uuid = create("Detailed", "blocked");
  RunResult primary = run_outbox({"parking_slot_details", "--uuid", uuid, "--from", "primary"});
  ASSERT_EQ(primary.exit_code, 0) << primary;
  EXPECT_EQ(primary.out, details_text(uuid, "Detailed", "blocked"));

  put_on_replica(servers().replica_url, uuid, "Replica's name");
  RunResult replica = run_outbox({"parking-slot-details", "--uuid", uuid});
  ASSERT_EQ(replica.exit_code, 0) << replica;
  EXPECT_EQ(replica.out, details_text(uuid, "Replica's name", "reserved"));
}

TEST_F(Parking, DetailsAsJsonIsOneObjectWithTheFieldsOfTheTextForm) {
  std::string uuid = create("Quoted \"name\"", "blocked");
  RunResult primary = run_outbox({"parking_slot_details", "--uuid", uuid, "--from", "primary", "--json"});
  ASSERT_EQ(primary.exit_code, 0) << primary;
  EXPECT_EQ(std::count(primary.out.begin(), primary.out.end(), '\n'), 1) << primary;
  json parsed = json::parse(primary.out, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << primary;
  EXPECT_EQ(parsed, (json{{"uuid", uuid}, {"name", "Quoted \"name\""}, {"status", "blocked"}}));

  // A replica's row with a control character: escaped in the JSON, so the terminal never sees it.
  put_on_replica(servers().replica_url, uuid, "Bell\x07 and\nnewline");
  RunResult replica = run_outbox({"parking_slot_details", "--uuid", uuid, "--json"});
  ASSERT_EQ(replica.exit_code, 0) << replica;
  EXPECT_EQ(replica.out.find('\x07'), std::string::npos) << replica;
  EXPECT_EQ(json::parse(replica.out)["name"], "Bell\x07 and\nnewline") << replica;
  RunResult unknown = run_outbox({"parking_slot_details", "--uuid", "33333333-3333-4333-8333-333333333333", "--json"});
  EXPECT_EQ(unknown.exit_code, 65) << unknown;
  EXPECT_EQ(unknown.out, "") << unknown;
}

TEST_F(Parking, DetailsOfAnUnknownOrMalformedUuidExits65WithOneLine) {
  for (const std::string& uuid : {std::string("33333333-3333-4333-8333-333333333333"), std::string("not-a-uuid"),
                                  std::string("33333333333343338333333333333333"), std::string("")}) {
    RunResult result = run_outbox({"parking_slot_details", "--uuid", uuid, "--from", "primary"});
    EXPECT_EQ(result.exit_code, 65) << uuid << "\n" << result;
    EXPECT_EQ(result.out, "");
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result;
    EXPECT_EQ(result.err.rfind("outbox: ", 0), 0u) << result;
  }
  RunResult unknown = run_outbox({"parking_slot_details", "--uuid", "33333333-3333-4333-8333-333333333333"});
  EXPECT_EQ(unknown.err, "outbox: parking slot 33333333-3333-4333-8333-333333333333 not found in replica main\n");
}

TEST_F(Parking, UpdateChangesTheRowBumpsItsVersionAndEmitsParkingUpdate) {
  std::string uuid = create("Before");
  RunResult name = run_outbox({"update_parking_slot", "--uuid", uuid, "--name", "After"});
  ASSERT_EQ(name.exit_code, 0) << name;
  EXPECT_EQ(name.out, details_text(uuid, "After", "available"));
  RunResult status = run_outbox({"update-parking-slot", "--uuid", uuid, "--status", "reserved"});
  ASSERT_EQ(status.exit_code, 0) << status;
  EXPECT_EQ(status.out, details_text(uuid, "After", "reserved"));

  EXPECT_EQ(scalar(servers().primary_url, "SELECT version FROM parking_slots"), "3");
  auto all = events();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].event_type, "parking.update");
  EXPECT_EQ(all[1].version, 2);
  EXPECT_EQ(all[1].payload, (json{{"uuid", uuid}, {"name", "After"}, {"status", "available"}, {"version", 2}}));
  EXPECT_EQ(all[2].version, 3);
  EXPECT_EQ(all[2].payload, (json{{"uuid", uuid}, {"name", "After"}, {"status", "reserved"}, {"version", 3}}));
}

TEST_F(Parking, DeleteRemovesTheRowAndEmitsParkingDeleteWithTheNextVersion) {
  std::string uuid = create("Doomed");
  ASSERT_EQ(run_outbox({"update_parking_slot", "--uuid", uuid, "--status", "blocked"}).exit_code, 0);
  RunResult result = run_outbox({"delete-parking-slot", "--uuid", uuid});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_EQ(result.out, "deleted: " + uuid + "\n");
  EXPECT_EQ(count(servers().primary_url, "parking_slots"), "0");
  auto all = events();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[2].event_type, "parking.delete");
  EXPECT_EQ(all[2].aggregate_id, uuid);
  EXPECT_EQ(all[2].version, 3);
  EXPECT_EQ(all[2].payload, (json{{"uuid", uuid}, {"version", 3}}));

  RunResult again = run_outbox({"delete_parking_slot", "--uuid", uuid});
  EXPECT_EQ(again.exit_code, 65) << again;
  EXPECT_EQ(again.err, "outbox: parking slot " + uuid + " not found\n");
}

TEST_F(Parking, BadInputIsRejectedWithOneLineAndTheRightExitCodeAndNothingIsWritten) {
  std::string existing = create("Existing");
  std::string e200, e201;
  for (int i = 0; i < 200; ++i) e200 += "\xc3\xa9";  // é: 2 bytes, 1 character
  e201 = e200 + "\xc3\xa9";
  struct Case {
    std::vector<std::string> args;
    int exit_code;
  };
  const std::vector<Case> cases = {
      {{"create_parking_slot", "--name", ""}, 65},
      {{"create_parking_slot", "--name", e201}, 65},
      {{"create_parking_slot", "--name", std::string(201, 'x')}, 65},
      {{"create_parking_slot", "--name", "ok", "--status", "open"}, 65},
      {{"create_parking_slot", "--name", "ok", "--status", "Available"}, 65},
      {{"create_parking_slot", "--name", "line\nbreak"}, 65},
      {{"create_parking_slot", "--name", "bad \xff byte"}, 65},
      {{"create_parking_slot", "--name", "overlong \xc0\xaf"}, 65},
      {{"create_parking_slot", "--name", "ok", "--colour", "red"}, 64},
      {{"create_parking_slot"}, 64},
      {{"create_parking_slot", "--name", "a", "--name", "b"}, 64},
      {{"update_parking_slot", "--uuid", existing}, 64},
      {{"update_parking_slot", "--uuid", existing, "--name", ""}, 65},
      {{"update_parking_slot", "--uuid", existing, "--status", "gone"}, 65},
      {{"update_parking_slot", "--uuid", "44444444-4444-4444-8444-444444444444", "--name", "x"}, 65},
      {{"update_parking_slot", "--uuid", "nope", "--name", "x"}, 65},
      {{"delete_parking_slot", "--uuid", "44444444-4444-4444-8444-444444444444"}, 65},
      {{"delete_parking_slot", "--uuid", "'; DROP TABLE parking_slots; --"}, 65},
      {{"delete_parking_slot"}, 64},
      {{"no_such_command"}, 64},
  };
  for (const Case& c : cases) {
    RunResult result = run_outbox(c.args);
    std::string shown;
    for (const std::string& arg : c.args) shown += " [" + arg.substr(0, 40) + "]";
    EXPECT_EQ(result.exit_code, c.exit_code) << shown << "\n" << result;
    EXPECT_EQ(result.out, "") << shown;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << shown << "\n" << result;
  }
  // A 200-character name of 2-byte characters is fine: the limit counts characters, not bytes.
  std::string uuid = create(e200);
  EXPECT_EQ(scalar(servers().primary_url, "SELECT char_length(name) FROM parking_slots WHERE uuid = '" + uuid + "'"), "200");

  EXPECT_EQ(rows(servers().primary_url, "SELECT name, version FROM parking_slots WHERE uuid = '" + existing + "'"),
            (std::vector<std::vector<std::string>>{{"Existing", "1"}}));
  EXPECT_EQ(count(servers().primary_url, "parking_slots"), "2");
  EXPECT_EQ(count(servers().primary_url, "outbox"), "2");
}

TEST_F(Parking, AFailingEventInsertRollsBackSoNeitherTheRowNorTheEventRemains) {
  for (std::string failpoint : {"outbox.event_insert=error", "parking.before_event_insert=error"}) {
    RunResult result = run_outbox({"create_parking_slot", "--name", "Never"}, {{"OUTBOX_FAILPOINTS", failpoint}});
    EXPECT_NE(result.exit_code, 0) << failpoint << "\n" << result;
    EXPECT_NE(result.err.find("injected failure"), std::string::npos) << result;
    EXPECT_EQ(count(servers().primary_url, "parking_slots"), "0") << failpoint;
    EXPECT_EQ(count(servers().primary_url, "outbox"), "0") << failpoint;
  }
  std::string uuid = create("Kept");
  for (std::string failpoint : {"outbox.event_insert=error", "parking.before_event_insert=error"}) {
    RunResult update =
        run_outbox({"update_parking_slot", "--uuid", uuid, "--name", "Changed"}, {{"OUTBOX_FAILPOINTS", failpoint}});
    EXPECT_NE(update.exit_code, 0) << update;
    RunResult remove = run_outbox({"delete_parking_slot", "--uuid", uuid}, {{"OUTBOX_FAILPOINTS", failpoint}});
    EXPECT_NE(remove.exit_code, 0) << remove;
  }
  EXPECT_EQ(rows(servers().primary_url, "SELECT name, version FROM parking_slots"),
            (std::vector<std::vector<std::string>>{{"Kept", "1"}}));
  EXPECT_EQ(count(servers().primary_url, "outbox"), "1");
}

TEST_F(Parking, AProcessKilledBeforeTheEventInsertLeavesNothingBehind) {
  RunResult result =
      run_outbox({"create_parking_slot", "--name", "Crash"}, {{"OUTBOX_FAILPOINTS", "parking.before_event_insert=crash"}});
  EXPECT_EQ(result.exit_code, 128 + SIGKILL) << result;
  // The server rolls the transaction back when it notices the dead session.
  EXPECT_TRUE(eventually([] {
    return scalar(servers().primary_url,
                  "SELECT count(*) FROM pg_stat_activity WHERE "
                  "datname = current_database() AND state LIKE 'idle in transaction%'") == "0";
  }));
  EXPECT_EQ(count(servers().primary_url, "parking_slots"), "0");
  EXPECT_EQ(count(servers().primary_url, "outbox"), "0");
}

TEST_F(Parking, AConnectionLostWhileCommittingIsReportedAsUnavailableAndMayOrMayNotHaveCommitted) {
  // A deferred trigger holds the COMMIT on the server, so the test can end the session mid-commit.
  exec(servers().primary_url,
       "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$; "
       "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON parking_slots DEFERRABLE INITIALLY DEFERRED "
       "FOR EACH ROW EXECUTE FUNCTION slow_commit()");
  Daemon create({"create_parking_slot", "--name", "in doubt"});
  std::string terminated;
  ASSERT_TRUE(eventually([&] {
    terminated = scalar(servers().primary_url,
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND query = 'COMMIT' AND state = 'active' AND pid <> pg_backend_pid()");
    return terminated != "0";
  })) << create.log();
  EXPECT_EQ(create.wait_exit(), 69) << create.log();
  EXPECT_NE(create.log().find("primary: the connection was lost while committing; the change may or may not have been made"),
            std::string::npos)
      << create.log();
  // Here the server ended the transaction before it committed: nothing of it remains.
  EXPECT_EQ(count(servers().primary_url, "parking_slots"), "0");
  EXPECT_EQ(count(servers().primary_url, "outbox"), "0");
}

TEST_F(Parking, ConcurrentUpdatesOfOneSlotGiveStrictlyIncreasingVersionsAndOneEventPerChange) {
  std::string uuid = create("Contended");
  constexpr int kWriters = 4, kUpdatesEach = 5;
  std::vector<std::thread> writers;
  std::vector<std::vector<RunResult>> results(kWriters);
  for (int w = 0; w < kWriters; ++w)
    writers.emplace_back([&, w] {
      for (int i = 0; i < kUpdatesEach; ++i)
        results[w].push_back(
            run_outbox({"update_parking_slot", "--uuid", uuid, "--name", "w" + std::to_string(w) + "-" + std::to_string(i)}));
    });
  for (std::thread& writer : writers) writer.join();
  std::set<std::string> printed_names;
  for (const auto& list : results)
    for (const RunResult& result : list) {
      EXPECT_EQ(result.exit_code, 0) << result;
      printed_names.insert(result.out);
    }
  EXPECT_EQ(printed_names.size(), static_cast<size_t>(kWriters * kUpdatesEach));

  constexpr int kTotal = kWriters * kUpdatesEach;
  EXPECT_EQ(scalar(servers().primary_url, "SELECT version FROM parking_slots"), std::to_string(1 + kTotal));
  auto all = events();
  ASSERT_EQ(all.size(), static_cast<size_t>(1 + kTotal));
  std::set<std::string> event_names;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].version, static_cast<long long>(i + 1)) << "events in outbox order must have versions 1, 2, 3, ...";
    EXPECT_EQ(all[i].payload["version"], all[i].version);
    if (i > 0) {
      EXPECT_EQ(all[i].event_type, "parking.update");
      event_names.insert(all[i].payload["name"].get<std::string>());
    }
  }
  EXPECT_EQ(event_names.size(), static_cast<size_t>(kTotal)) << "one event per change";
  EXPECT_EQ(scalar(servers().primary_url, "SELECT name FROM parking_slots"), all.back().payload["name"].get<std::string>());
}

// An application writes over one connection again and again: its statements are parsed and
// planned once per connection, not on every write (pg::exec_cached).
TEST_F(Parking, WritesOnOneConnectionPrepareEachStatementOnceAndRunItAgainAfterwards) {
  auto connection = connect(servers().primary_url);
  std::vector<std::string> uuids;
  for (int i = 0; i < 3; ++i) {
    pqxx::work tx(connection);
    uuids.push_back(parking::create(tx, "Prepared " + std::to_string(i)).uuid);
    tx.commit();
  }
  for (const char* status : {"reserved", "available"}) {
    pqxx::work tx(connection);
    parking::update(tx, uuids[0], std::nullopt, std::string(status));
    tx.commit();
  }
  pqxx::work tx(connection);
  // One statement per text (the slot's INSERT, its UPDATE, the event's INSERT, whose payload has
  // the same shape for both), each run as often as it was called.
  auto prepared = tx.exec(
      "SELECT split_part(statement, ' ', 1) || ' ' || split_part(statement, ' ', 2) || ' ' || "
      "split_part(statement, ' ', 3), generic_plans + custom_plans FROM pg_prepared_statements ORDER BY 1");
  ASSERT_EQ(prepared.size(), 3u);
  EXPECT_EQ(prepared[0][0].as<std::string>(), "INSERT INTO \"public\".\"outbox\"");
  EXPECT_EQ(prepared[0][1].as<int>(), 5);
  EXPECT_EQ(prepared[1][0].as<std::string>(), "INSERT INTO parking_slots");
  EXPECT_EQ(prepared[1][1].as<int>(), 3);
  EXPECT_EQ(prepared[2][0].as<std::string>(), "UPDATE parking_slots SET");
  EXPECT_EQ(prepared[2][1].as<int>(), 2);
  EXPECT_EQ(count(servers().primary_url, "outbox"), "5");
}

TEST_F(Parking, UnicodeAndSqlMetacharactersInNamesRoundTripExactly) {
  const std::vector<std::string> names = {
      "Z\xc3\xa9 \xf0\x9f\x9a\x97 \xe9\xa7\x90\xe8\xbb\x8a\xe5\xa0\xb4",  // Zé 🚗 駐車場
      "Robert'); DROP TABLE parking_slots; --",
      "quote \" backslash \\ percent % dollar $1 semicolon ;",
      "  spaces around  ",
      "{\"json\": [1, 2]} </script> \\u0041",
  };
  for (const std::string& name : names) {
    std::string uuid = create(name);
    RunResult details = run_outbox({"parking_slot_details", "--uuid", uuid, "--from", "primary"});
    EXPECT_EQ(details.out, details_text(uuid, name, "available")) << details;
    RunResult list = run_outbox({"parking_slot_list", "--from", "primary"});
    bool found = false;
    std::istringstream lines(list.out);
    for (std::string line; std::getline(lines, line);) {
      json object = json::parse(line);
      if (object["uuid"] == uuid) {
        found = true;
        EXPECT_EQ(object["name"].get<std::string>(), name);
        EXPECT_EQ(line, "{\"uuid\": \"" + uuid + "\", \"name\": " + object["name"].dump(-1, ' ', false) +
                            ", \"status\": \"available\"}");
      }
    }
    EXPECT_TRUE(found) << name << "\n" << list;
    EXPECT_EQ(events().back().payload["name"].get<std::string>(), name);
  }
  EXPECT_EQ(count(servers().primary_url, "parking_slots"), std::to_string(names.size()));
}

}  // namespace
}  // namespace outbox::testing
