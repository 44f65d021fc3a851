// The two saga examples of issue 16 end to end, on real servers: each service's relay and
// consumer, the broker, and the read model's replicate daemon. Every path of both sagas, every
// message twice and shuffled, every message again under a new id, a handler that raises, and a
// step that never gets a reply. The invariants (support/saga.hpp) are checked in SQL each time.
#include "tests/integration/support/saga.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace outbox::testing {
namespace {

constexpr auto kSagaEnd = std::chrono::seconds(90);

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

// One value of a query with one bound parameter; "" for NULL or no row.
std::string value(const std::string& url, const std::string& sql, const std::string& parameter) {
  auto connection = connect(url);
  pqxx::nontransaction tx(connection);
  pqxx::result result = tx.exec_params(sql, parameter);
  return result.empty() || result[0][0].is_null() ? "" : result[0][0].as<std::string>();
}

// Every daemon's log, for a failure message.
std::string logs(SagaRig& rig) {
  std::string out;
  for (const auto& name : SagaRig::daemon_names())
    if (Daemon* daemon = rig.daemon(name)) out += "--- " + name + "\n" + daemon->log();
  return out;
}

bool step_is(const SagaRig& rig, const std::string& booking, const std::string& step) {
  return eventually([&] { return rig.step(booking) == step; }, kSagaEnd);
}

// ------------------------------------------------------------------------------ orchestration

TEST(OrchestratedSaga, CompletesWhenTheSlotIsFreeAndTheReadModelFollows) {
  SagaRig rig(SagaStyle::orchestration);
  rig.start_all();
  std::string slot = rig.create_slot("A");
  std::string booking = rig.create_booking(slot);
  ASSERT_TRUE(rig.all_ended(kSagaEnd)) << logs(rig);
  EXPECT_EQ(rig.status(booking), "completed");
  EXPECT_EQ(value(rig.url("billing"), "SELECT status FROM billing.bills WHERE booking_id = $1::uuid", booking), "paid");
  EXPECT_EQ(value(rig.url("parking"), "SELECT status FROM parking_slots WHERE uuid = $1::uuid", slot), "reserved");
  EXPECT_TRUE(rig.read_model_follows()) << logs(rig);
  EXPECT_EQ(value(rig.url("read"), "SELECT status FROM parking_slots WHERE uuid = $1::uuid", slot), "reserved");
  // Six messages, all with the saga's correlation id; each reply caused by its command.
  std::string correlation =
      value(rig.url("booking"), "SELECT correlation_id FROM booking.sagas WHERE booking_id = $1::uuid", booking);
  const std::string of_saga = "SELECT count(*) FROM outbox WHERE correlation_id = $1 AND aggregate_type <> 'parking_slot'";
  EXPECT_EQ(value(rig.url("booking"), of_saga, correlation), "3");  // block, authorize, reserve
  EXPECT_EQ(value(rig.url("parking"), of_saga, correlation), "2");  // blocked, reserved
  EXPECT_EQ(value(rig.url("billing"), of_saga, correlation), "1");  // authorized
  EXPECT_EQ(
      value(rig.url("parking"), "SELECT count(*) FROM outbox WHERE correlation_id = $1 AND causation_id IS NULL", correlation),
      "0");
  EXPECT_EQ(joined(rig.violations()), "");
}

TEST(OrchestratedSaga, FailsWithoutTouchingASlotThatAnotherBookingHolds) {
  SagaRig rig(SagaStyle::orchestration);
  rig.start_all();
  rig.stop("consume-billing");  // the first booking stays at its payment, holding the block
  std::string slot = rig.create_slot("A");
  std::string first = rig.create_booking(slot);
  ASSERT_TRUE(step_is(rig, first, "authorizing")) << logs(rig);
  std::string second = rig.create_booking(slot);
  ASSERT_TRUE(eventually([&] { return rig.status(second) == "failed"; }, kSagaEnd)) << logs(rig);
  // The original unblocked the slot here, under the first booking.
  EXPECT_EQ(value(rig.url("parking"), "SELECT status FROM parking_slots WHERE uuid = $1::uuid", slot), "blocked");
  EXPECT_EQ(value(rig.url("booking"), "SELECT reason FROM booking.sagas WHERE booking_id = $1::uuid", second),
            "the slot is not available");
  EXPECT_EQ(value(rig.url("billing"), "SELECT count(*) FROM billing.bills WHERE booking_id = $1::uuid", second), "0");
  rig.start("consume-billing");
  ASSERT_TRUE(rig.all_ended(kSagaEnd)) << logs(rig);
  EXPECT_EQ(rig.status(first), "completed");
  EXPECT_TRUE(rig.read_model_follows()) << logs(rig);
  EXPECT_EQ(joined(rig.violations()), "");
}

TEST(OrchestratedSaga, RefundsThePaymentWhenTheSlotCanNoLongerBeReserved) {
  SagaRig rig(SagaStyle::orchestration);
  rig.start_all();
  rig.stop("consume-billing");
  std::string slot = rig.create_slot("A");
  std::string booking = rig.create_booking(slot);
  ASSERT_TRUE(step_is(rig, booking, "authorizing")) << logs(rig);
  // The slot is taken out of service while the payment runs.
  RunResult deleted = rig.outbox({"delete_parking_slot", "--uuid", slot});
  ASSERT_EQ(deleted.exit_code, 0) << deleted;
  rig.start("consume-billing");
  ASSERT_TRUE(rig.all_ended(kSagaEnd)) << logs(rig);
  EXPECT_EQ(rig.status(booking), "failed");
  EXPECT_EQ(value(rig.url("booking"), "SELECT reason FROM booking.sagas WHERE booking_id = $1::uuid", booking),
            "the slot could not be reserved");
  EXPECT_EQ(value(rig.url("billing"), "SELECT status FROM billing.bills WHERE booking_id = $1::uuid", booking), "refunded");
  EXPECT_EQ(value(rig.url("billing"),
                  "SELECT string_agg(kind, ',' ORDER BY kind) FROM billing.payments WHERE booking_id = $1::uuid", booking),
            "charge,refund");
  EXPECT_TRUE(rig.read_model_follows()) << logs(rig);
  EXPECT_EQ(joined(rig.violations()), "");
}

TEST(OrchestratedSaga, CompensatesAStepWithNoReplyByItsDeadline) {
  SagaRig rig(SagaStyle::orchestration);
  rig.start_all();
  rig.stop("consume-billing");  // billing does not answer
  std::string slot = rig.create_slot("A");
  std::string booking = rig.create_booking(slot);
  ASSERT_TRUE(step_is(rig, booking, "authorizing")) << logs(rig);
  // The payment's time is up (and each step from now on has 2 s): the deadline gives up on it,
  // unblocks the slot, then waits for the refund, asking again every 2 s.
  exec(rig.url("booking"),
       "UPDATE booking.settings SET step_timeout = '2 seconds'; "
       "UPDATE booking.sagas SET deadline_at = clock_timestamp()");
  ASSERT_TRUE(step_is(rig, booking, "refunding")) << logs(rig);
  EXPECT_EQ(value(rig.url("booking"), "SELECT reason FROM booking.sagas WHERE booking_id = $1::uuid", booking),
            "no reply while authorizing within the step timeout");
  EXPECT_EQ(value(rig.url("parking"), "SELECT status FROM parking_slots WHERE uuid = $1::uuid", slot), "available");
  EXPECT_EQ(rig.status(booking), "pending");
  // Billing comes back: it takes the payment (the old command) and refunds it, in that order.
  rig.start("consume-billing");
  ASSERT_TRUE(rig.all_ended(kSagaEnd)) << logs(rig);
  EXPECT_EQ(rig.status(booking), "failed");
  EXPECT_EQ(value(rig.url("billing"), "SELECT status FROM billing.bills WHERE booking_id = $1::uuid", booking), "refunded");
  EXPECT_TRUE(rig.read_model_follows()) << logs(rig);
  EXPECT_EQ(value(rig.url("read"), "SELECT status FROM parking_slots WHERE uuid = $1::uuid", slot), "available");
  EXPECT_EQ(joined(rig.violations()), "");
}

TEST(OrchestratedSaga, AHandlerThatRaisesIsParkedTheOthersGoOnAndFailedRetryCompletesIt) {
  SagaRig rig(SagaStyle::orchestration);
  exec(rig.url("booking"), "UPDATE booking.settings SET step_timeout = '10 minutes'");
  // A bug in billing: it cannot take a payment of 1000 or more.
  exec(rig.url("billing"), "ALTER TABLE billing.bills ADD CONSTRAINT test_small_amounts CHECK (amount < 1000)");
  rig.start_all();
  std::string poison = rig.create_booking(rig.create_slot("P"), 5000);
  std::vector<std::string> others;
  for (int i = 0; i < 4; ++i) others.push_back(rig.create_booking(rig.create_slot("S" + std::to_string(i))));
  for (const auto& booking : others)
    ASSERT_TRUE(eventually([&] { return rig.status(booking) == "completed"; }, kSagaEnd)) << logs(rig);
  EXPECT_EQ(rig.step(poison), "authorizing");
  RunResult list;
  EXPECT_TRUE(eventually([&] {
    list = rig.outbox({"failed", "list", "--consumer", "billing"});
    return list.out.find("billing.authorize_payment") != std::string::npos;
  })) << list;
  EXPECT_NE(list.out.find("test_small_amounts"), std::string::npos) << list;
  // The fix, then the retry: the saga goes on from where it stopped.
  exec(rig.url("billing"), "ALTER TABLE billing.bills DROP CONSTRAINT test_small_amounts");
  RunResult retried = rig.outbox({"failed", "retry", "--consumer", "billing", "--all"});
  ASSERT_EQ(retried.exit_code, 0) << retried;
  ASSERT_TRUE(rig.all_ended(kSagaEnd)) << logs(rig);
  EXPECT_EQ(rig.status(poison), "completed");
  EXPECT_EQ(value(rig.url("billing"), "SELECT count(*) FROM outbox_failed_events WHERE replica = $1", "billing"), "0");
  EXPECT_EQ(joined(rig.violations()), "");
}

// ------------------------------------------------------------------------------- choreography

// Starts the daemons and books slot A; returns the slot and the booking once its bill of 100 is
// pending and 40 of it paid.
std::pair<std::string, std::string> book_and_pay_40(SagaRig& rig) {
  rig.start_all();
  std::string slot = rig.create_slot("A");
  std::string booking = rig.create_booking(slot);
  EXPECT_TRUE(step_is(rig, booking, "pending")) << logs(rig);
  EXPECT_EQ(rig.pay(booking, 40), "pending");
  return {slot, booking};
}

TEST(ChoreographedSaga, ReservesTheSlotWhenTheBillIsPaidInParts) {
  SagaRig rig(SagaStyle::choreography);
  auto [slot, booking] = book_and_pay_40(rig);
  EXPECT_EQ(rig.pay(booking, 60), "paid");
  ASSERT_TRUE(rig.all_ended(kSagaEnd)) << logs(rig);
  EXPECT_EQ(rig.status(booking), "done");
  EXPECT_EQ(value(rig.url("parking"), "SELECT status FROM parking_slots WHERE uuid = $1::uuid", slot), "reserved");
  EXPECT_TRUE(rig.read_model_follows()) << logs(rig);
  // Every event of the saga carries the correlation id of booking.created.
  std::string correlation = value(rig.url("booking"), "SELECT correlation_id FROM outbox WHERE aggregate_id = $1", booking);
  EXPECT_EQ(value(rig.url("billing"), "SELECT count(*) FROM outbox WHERE correlation_id = $1", correlation), "1");  // bill.paid
  EXPECT_EQ(value(rig.url("parking"), "SELECT count(*) FROM outbox WHERE correlation_id = $1", correlation), "2");
  EXPECT_EQ(joined(rig.violations()), "");
}

TEST(ChoreographedSaga, RefundsTheBillAndFailsTheBookingWhenTheSlotIsTaken) {
  SagaRig rig(SagaStyle::choreography);
  rig.start_all();
  std::string slot = rig.create_slot("A");
  std::string first = rig.create_booking(slot);
  std::string second = rig.create_booking(slot);
  ASSERT_TRUE(step_is(rig, first, "pending") && step_is(rig, second, "pending")) << logs(rig);
  EXPECT_EQ(rig.pay(first, 100), "paid");
  ASSERT_TRUE(eventually([&] { return rig.status(first) == "done"; }, kSagaEnd)) << logs(rig);
  EXPECT_EQ(rig.pay(second, 100), "paid");
  ASSERT_TRUE(rig.all_ended(kSagaEnd)) << logs(rig);
  EXPECT_EQ(rig.status(second), "failed");
  ASSERT_TRUE(step_is(rig, second, "refunded")) << logs(rig);
  EXPECT_EQ(value(rig.url("billing"), "SELECT amount FROM billing.refunds WHERE booking_id = $1::uuid", second), "100.00");
  EXPECT_EQ(value(rig.url("parking"),
                  "SELECT booking_id FROM parking.reservations WHERE slot_uuid = $1::uuid AND state = 'reserved'", slot),
            first);
  EXPECT_TRUE(rig.read_model_follows()) << logs(rig);
  EXPECT_EQ(joined(rig.violations()), "");
}

TEST(ChoreographedSaga, FailsTheBookingWhenTheBillIsNotPaidInTime) {
  SagaRig rig(SagaStyle::choreography);
  exec(rig.url("billing"), "UPDATE billing.settings SET payment_timeout = '1 second'");
  rig.start_all();
  std::string slot = rig.create_slot("A");
  std::string booking = rig.create_booking(slot);
  ASSERT_TRUE(rig.all_ended(kSagaEnd)) << logs(rig);
  EXPECT_EQ(rig.status(booking), "failed");
  EXPECT_EQ(rig.step(booking), "cancelled");
  EXPECT_EQ(value(rig.url("booking"), "SELECT reason FROM booking.bookings WHERE id = $1::uuid", booking),
            "the bill was not paid in time");
  EXPECT_EQ(value(rig.url("parking"), "SELECT status FROM parking_slots WHERE uuid = $1::uuid", slot), "available");
  EXPECT_EQ(joined(rig.violations()), "");
}

// The deadline cancels a bill that was paid in part: what the user paid comes back as the bill's
// refund, so that paid = charged - refunded holds for cancelled bills too.
TEST(ChoreographedSaga, RefundsWhatWasPaidWhenAPartlyPaidBillIsCancelled) {
  SagaRig rig(SagaStyle::choreography);
  auto [slot, booking] = book_and_pay_40(rig);
  // The payment time runs out before the rest is paid (as if the user went away).
  exec(rig.url("billing"), "UPDATE billing.bills SET due_at = clock_timestamp()");
  ASSERT_TRUE(rig.all_ended(kSagaEnd)) << logs(rig);
  EXPECT_EQ(rig.status(booking), "failed");
  EXPECT_EQ(rig.step(booking), "cancelled");
  EXPECT_EQ(value(rig.url("billing"), "SELECT amount FROM billing.refunds WHERE booking_id = $1::uuid", booking), "40.00");
  EXPECT_EQ(value(rig.url("parking"), "SELECT status FROM parking_slots WHERE uuid = $1::uuid", slot), "available");
  EXPECT_EQ(joined(rig.violations()), "");
}

// --------------------------------------------------------------------------------- both sagas

class Sagas : public ::testing::TestWithParam<SagaStyle> {
 protected:
  // `count` sagas on `count / 3` slots, so that most find their slot taken; choreographed ones
  // are paid in full once billing has their bill.
  static std::vector<std::string> run_many(SagaRig& rig, int count) {
    std::vector<std::string> slots, bookings;
    for (int i = 0; i < std::max(1, count / 3); ++i) slots.push_back(rig.create_slot("S" + std::to_string(i)));
    for (int i = 0; i < count; ++i) bookings.push_back(rig.create_booking(slots[static_cast<size_t>(i) % slots.size()]));
    if (rig.style() == SagaStyle::choreography)
      for (const auto& booking : bookings) {
        EXPECT_TRUE(step_is(rig, booking, "pending")) << logs(rig);
        rig.pay(booking, 100);
      }
    return bookings;
  }
};

TEST_P(Sagas, EveryMessageDeliveredTwiceAndShuffledChargesOnceReservesOnceAndEndsEachSagaOnce) {
  SagaRig rig(GetParam());
  Duplicator duplicator(GetParam() == SagaStyle::orchestration ? "saga-orchestration" : "saga-choreography");
  rig.start_all();
  std::vector<std::string> bookings = run_many(rig, 30);
  ASSERT_TRUE(rig.all_ended(kSagaEnd)) << logs(rig);
  EXPECT_GT(duplicator.copies(), bookings.size() * 3);
  EXPECT_EQ(joined(rig.violations()), "");
  EXPECT_TRUE(rig.read_model_follows()) << logs(rig);
  // A third of the bookings found a free slot.
  std::string won = GetParam() == SagaStyle::orchestration ? "completed" : "done";
  EXPECT_EQ(scalar(rig.url("booking"), "SELECT count(*) FROM booking.bookings WHERE status = '" + won + "'"), "10");
}

// Each message every service emitted, handed again to each handler bound to its routing key, under
// a new event id (so the inbox does not catch it) and in a random order: no saga changes.
TEST_P(Sagas, EveryMessageHandledAgainUnderANewIdChangesNothing) {
  SagaRig rig(GetParam());
  rig.start_all();
  run_many(rig, 12);
  ASSERT_TRUE(rig.all_ended(kSagaEnd)) << logs(rig);
  for (const auto& name : SagaRig::daemon_names()) rig.stop(name);
  std::string before = rig.snapshot();
  std::multimap<std::string, std::pair<std::string, std::string>> handlers;  // routing key -> (database, function)
  if (GetParam() == SagaStyle::orchestration)
    handlers = {{"reply.booking", {"booking", "booking.on_reply"}},
                {"parking.block", {"parking", "parking.on_block"}},
                {"parking.reserve", {"parking", "parking.on_reserve"}},
                {"parking.unblock", {"parking", "parking.on_unblock"}},
                {"billing.authorize_payment", {"billing", "billing.on_authorize_payment"}},
                {"billing.refund", {"billing", "billing.on_refund"}}};
  else
    handlers = {{"booking.created", {"billing", "billing.on_booking_created"}},
                {"bill.paid", {"parking", "parking.on_bill_paid"}},
                {"parking.reserved", {"booking", "booking.on_parking_reserved"}},
                {"parking.unavailable", {"booking", "booking.on_booking_failed"}},
                {"parking.unavailable", {"billing", "billing.on_parking_unavailable"}},
                {"bill.cancelled", {"booking", "booking.on_booking_failed"}}};
  // The envelope of the contract, built from each outbox row, with a new event id.
  const std::string envelopes =
      "SELECT coalesce(routing_key, event_type), jsonb_build_object('event_id', gen_random_uuid(), 'event_type', event_type, "
      "'aggregate_type', aggregate_type, 'aggregate_id', aggregate_id, 'aggregate_version', aggregate_version, "
      "'created_at', created_at, 'correlation_id', correlation_id, 'causation_id', event_id, 'reply_to', reply_to, "
      "'routing_key', coalesce(routing_key, event_type), 'headers', '{}'::jsonb, 'payload', payload::jsonb)::text "
      "FROM outbox";
  std::vector<std::pair<std::string, std::string>> deliveries;  // (database, function) with the envelope
  std::vector<std::string> payloads;
  for (const char* database : {"booking", "billing", "parking"})
    for (const auto& row : rows(rig.url(database), envelopes)) {
      auto [first, last] = handlers.equal_range(row[0]);
      for (auto it = first; it != last; ++it) {
        deliveries.push_back(it->second);
        payloads.push_back(row[1]);
      }
    }
  ASSERT_GT(deliveries.size(), 30u);
  std::vector<size_t> order(deliveries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(std::random_device{}()));
  for (size_t i : order) {
    auto connection = connect(rig.url(deliveries[i].first));
    pqxx::work tx(connection);
    // What the consumer sets around each handler (the contract).
    tx.exec_params(
        "SELECT set_config('outbox.correlation_id', coalesce($1::jsonb->>'correlation_id', $1::jsonb->>'event_id'), true), "
        "set_config('outbox.causation_id', $1::jsonb->>'event_id', true), "
        "set_config('outbox.reply_to', coalesce($1::jsonb->>'reply_to', ''), true)",
        payloads[i]);
    tx.exec_params("SELECT " + deliveries[i].second + "($1::jsonb)", payloads[i]);
    tx.commit();
  }
  EXPECT_EQ(rig.snapshot(), before);
  EXPECT_EQ(joined(rig.violations()), "");
}

INSTANTIATE_TEST_SUITE_P(BothStyles, Sagas, ::testing::Values(SagaStyle::orchestration, SagaStyle::choreography),
                         [](const ::testing::TestParamInfo<SagaStyle>& info) {
                           return info.param == SagaStyle::orchestration ? "Orchestrated" : "Choreographed";
                         });

}  // namespace
}  // namespace outbox::testing
