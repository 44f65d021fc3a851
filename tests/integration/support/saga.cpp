#include "tests/integration/support/saga.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "tests/integration/support/broker.hpp"

namespace outbox::testing {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) ADD_FAILURE() << "cannot read " << path;
  return text.str();
}

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
}

std::string style_name(SagaStyle style) { return style == SagaStyle::orchestration ? "orchestration" : "choreography"; }

// `sql` must return one text column; the rows joined by newlines.
std::string lines(const std::string& url, const std::string& sql) {
  std::string out;
  for (const auto& row : rows(url, sql)) out += row.at(0) + "\n";
  return out;
}

// Rows of (booking id, text) as a map.
std::map<std::string, std::string> by_booking(const std::string& url, const std::string& sql) {
  std::map<std::string, std::string> out;
  for (const auto& row : rows(url, sql)) out[row.at(0)] = row.at(1);
  return out;
}

// Each row of a query that lists violations, prefixed with what it violates.
void collect(std::vector<std::string>& out, const std::string& what, const std::string& url, const std::string& sql) {
  for (const auto& row : rows(url, sql)) {
    std::string line = what + ":";
    for (const auto& field : row) line += " " + field;
    out.push_back(line);
  }
}

}  // namespace

SagaRig::SagaRig(SagaStyle style, const std::string& extra_toml) : style_(style) {
  reset_databases();
  // The parking service's own schema lives in the primary, beside public.
  exec(servers().primary_url, "DROP SCHEMA IF EXISTS parking CASCADE");
  booking_url_ = fresh_database("primary", "saga_booking");
  billing_url_ = fresh_database("primary", "saga_billing");
  std::string name = style_name(style);
  std::string example = std::string(OUTBOX_SOURCE_DIR) + "/examples/saga-" + name;
  std::string text = read_text(example + "/outbox.toml");
  const std::string local = "postgresql://outbox:outbox@127.0.0.1:5432/saga_" + name + "_";
  replace_all(text, "\"" + local + "parking\"", "\"" + servers().primary_url + "\"");
  replace_all(text, "\"" + local + "booking\"", "\"" + booking_url_ + "\"");
  replace_all(text, "\"" + local + "billing\"", "\"" + billing_url_ + "\"");
  replace_all(text, "\"postgresql://outbox:outbox@127.0.0.1:5433/saga_" + name + "_read\"", "\"" + servers().replica_url + "\"");
  replace_all(text, "\"amqp://outbox:outbox@127.0.0.1:5672/\"", "\"" + servers().broker_url + "\"");
  replace_all(text, "\nmigrations = \"", "\nmigrations = \"" + example + "/");
  config_ = write_file("saga-" + name + ".toml", text + "\n" + extra_toml);
  RunResult migrated = outbox({"migrate"});
  EXPECT_EQ(migrated.exit_code, 0) << migrated;
  auto connection = broker_connection();
  for (const char* queue : {"outbox.consumer.booking", "outbox.consumer.billing", "outbox.consumer.parking"}) {
    try {
      connection->purge_queue(queue);
    } catch (const std::exception& error) {
      ADD_FAILURE() << "migrate did not declare " << queue << ": " << error.what();
      connection = broker_connection();
    }
  }
  purge_outbox_queues();
}

SagaRig::~SagaRig() {
  for (auto& [name, daemon] : daemons_)
    if (daemon) daemon->signal(SIGTERM);
  for (auto& [name, daemon] : daemons_)
    if (daemon && !daemon->wait_exit(std::chrono::seconds(30))) daemon->kill9();
}

std::string SagaRig::url(const std::string& database) const {
  if (database == "booking") return booking_url_;
  if (database == "billing") return billing_url_;
  if (database == "parking") return servers().primary_url;
  if (database == "read") return servers().replica_url;
  throw std::invalid_argument("SagaRig::url: no database " + database);
}

RunResult SagaRig::outbox(const std::vector<std::string>& args) const { return run_outbox(args, {{"OUTBOX_CONFIG", config_}}); }

std::vector<std::string> SagaRig::daemon_names() {
  return {"relay-booking",   "relay-billing",   "relay-parking", "consume-booking",
          "consume-billing", "consume-parking", "replicate"};
}

void SagaRig::start(const std::string& name) {
  std::vector<std::string> args;
  if (name == "replicate")
    args = {"replicate"};
  else if (name.rfind("relay-", 0) == 0)
    args = {"relay", "--service", name.substr(6)};
  else if (name.rfind("consume-", 0) == 0)
    args = {"consume", "--service", name.substr(8)};
  else
    throw std::invalid_argument("SagaRig::start: no daemon " + name);
  if (auto& running = daemons_[name]; running && running->running()) return;
  daemons_[name] = std::make_unique<Daemon>(args, std::map<std::string, std::string>{{"OUTBOX_CONFIG", config_}});
}

void SagaRig::start_all() {
  for (const std::string& name : daemon_names()) start(name);
}

void SagaRig::stop(const std::string& name) {
  Daemon* running = daemon(name);
  if (!running) return;
  running->signal(SIGTERM);
  if (!running->wait_exit(std::chrono::seconds(30))) {
    ADD_FAILURE() << name << " did not stop within 30 s of SIGTERM";
    running->kill9();
    running->wait_exit();
  }
}

void SagaRig::kill9(const std::string& name) {
  if (Daemon* running = daemon(name)) {
    running->kill9();
    running->wait_exit();
  }
}

Daemon* SagaRig::daemon(const std::string& name) {
  auto found = daemons_.find(name);
  return found == daemons_.end() ? nullptr : found->second.get();
}

std::string SagaRig::create_slot(const std::string& name) {
  RunResult result = outbox({"create_parking_slot", "--name", name});
  EXPECT_EQ(result.exit_code, 0) << result;
  return created_slot_uuid(result);
}

std::string SagaRig::create_booking(const std::string& slot, int amount) {
  auto connection = connect(booking_url_);
  pqxx::work tx(connection);
  pqxx::result result =
      style_ == SagaStyle::orchestration
          ? tx.exec_params("SELECT booking.create_booking($1::uuid, gen_random_uuid(), $2::numeric)::text", slot, amount)
          : tx.exec_params("SELECT booking.create_booking($1::uuid)::text", slot);
  tx.commit();
  return result.at(0).at(0).as<std::string>();
}

std::string SagaRig::pay(const std::string& booking, int amount) {
  auto connection = connect(billing_url_);
  pqxx::work tx(connection);
  pqxx::result result = tx.exec_params("SELECT billing.pay($1::uuid, $2::numeric)", booking, amount);
  tx.commit();
  return result.at(0).at(0).as<std::string>();
}

std::string SagaRig::status(const std::string& booking) const {
  auto connection = connect(booking_url_);
  pqxx::nontransaction tx(connection);
  pqxx::result result = tx.exec_params("SELECT status FROM booking.bookings WHERE id = $1::uuid", booking);
  return result.empty() ? "" : result[0][0].as<std::string>();
}

std::string SagaRig::step(const std::string& booking) const {
  bool orchestrated = style_ == SagaStyle::orchestration;
  auto connection = connect(orchestrated ? booking_url_ : billing_url_);
  pqxx::nontransaction tx(connection);
  pqxx::result result = tx.exec_params(orchestrated ? "SELECT step FROM booking.sagas WHERE booking_id = $1::uuid"
                                                    : "SELECT status FROM billing.bills WHERE booking_id = $1::uuid",
                                       booking);
  return result.empty() ? "" : result[0][0].as<std::string>();
}

bool SagaRig::all_ended(std::chrono::milliseconds deadline) const {
  return eventually(
      [&] {
        if (scalar(booking_url_, "SELECT count(*) FROM booking.bookings WHERE status = 'pending'") != "0") return false;
        if (style_ == SagaStyle::orchestration) return true;  // the orchestrator ends a saga after its refund
        // Choreography: parking.unavailable fails the booking and refunds the bill in two services,
        // each in its own time; the saga has ended once both did.
        auto failed = by_booking(booking_url_, "SELECT id, status FROM booking.bookings WHERE status = 'failed'");
        for (const auto& row : rows(billing_url_, "SELECT booking_id FROM billing.bills WHERE status = 'paid'"))
          if (failed.count(row.at(0))) return false;
        return true;
      },
      deadline);
}

bool SagaRig::read_model_follows(std::chrono::milliseconds deadline) const {
  const std::string slots = "SELECT uuid || ' ' || status FROM parking_slots ORDER BY uuid";
  return eventually([&] { return lines(servers().primary_url, slots) == lines(servers().replica_url, slots); }, deadline);
}

std::string SagaRig::snapshot() const {
  std::string out;
  if (style_ == SagaStyle::orchestration) {
    out += lines(booking_url_,
                 "SELECT b.id || ' ' || b.status || ' ' || s.step FROM booking.bookings b "
                 "JOIN booking.sagas s ON s.booking_id = b.id ORDER BY b.id");
    out += lines(billing_url_, "SELECT booking_id || ' ' || status FROM billing.bills ORDER BY booking_id");
    out +=
        lines(billing_url_, "SELECT booking_id || ' ' || kind || ' ' || amount FROM billing.payments ORDER BY booking_id, kind");
    out += lines(servers().primary_url, "SELECT booking_id || ' ' || state FROM parking.holds ORDER BY booking_id");
  } else {
    out += lines(booking_url_, "SELECT id || ' ' || status FROM booking.bookings ORDER BY id");
    out += lines(billing_url_, "SELECT booking_id || ' ' || status FROM billing.bills ORDER BY booking_id");
    out += lines(billing_url_,
                 "SELECT booking_id || ' paid ' || sum(amount) FROM billing.reconciliations GROUP BY booking_id ORDER BY 1");
    out += lines(billing_url_, "SELECT booking_id || ' refund ' || amount FROM billing.refunds ORDER BY booking_id");
    out += lines(servers().primary_url, "SELECT booking_id || ' ' || state FROM parking.reservations ORDER BY booking_id");
  }
  out += lines(servers().primary_url, "SELECT uuid || ' ' || status FROM parking_slots ORDER BY uuid");
  return out;
}

std::vector<std::string> SagaRig::violations() const {
  return style_ == SagaStyle::orchestration ? orchestration_violations() : choreography_violations();
}

std::vector<std::string> SagaRig::orchestration_violations() const {
  std::vector<std::string> out;
  const std::string& parking = servers().primary_url;
  collect(out, "booking not ended", booking_url_, "SELECT id FROM booking.bookings WHERE status = 'pending'");
  collect(out, "booking and saga disagree", booking_url_,
          "SELECT b.id, b.status, s.step FROM booking.bookings b JOIN booking.sagas s ON s.booking_id = b.id "
          "WHERE b.status <> s.step OR s.ended_at IS NULL");
  collect(out, "paid <> charged - refunded", billing_url_,
          "SELECT b.booking_id, b.status FROM billing.bills b WHERE CASE WHEN b.status = 'paid' THEN b.amount ELSE 0 END <> "
          "(SELECT coalesce(sum(p.amount) FILTER (WHERE p.kind = 'charge'), 0) - "
          "coalesce(sum(p.amount) FILTER (WHERE p.kind = 'refund'), 0) FROM billing.payments p "
          "WHERE p.booking_id = b.booking_id)");
  collect(out, "slot held by two bookings", parking,
          "SELECT slot_uuid FROM parking.holds WHERE state IN ('blocked', 'reserved') GROUP BY slot_uuid HAVING count(*) > 1");
  collect(out, "slot left blocked after its saga ended", parking,
          "SELECT booking_id, slot_uuid FROM parking.holds WHERE state = 'blocked'");
  collect(out, "slot status without its hold", parking,
          "SELECT s.uuid, s.status FROM parking_slots s WHERE s.status <> 'available' AND NOT EXISTS "
          "(SELECT FROM parking.holds h WHERE h.slot_uuid = s.uuid AND h.state = s.status)");
  auto bookings = by_booking(booking_url_, "SELECT id, status FROM booking.bookings");
  auto bills = by_booking(billing_url_, "SELECT booking_id, status FROM billing.bills");
  auto holds = by_booking(parking, "SELECT booking_id, state FROM parking.holds");
  for (const auto& [booking, status] : bookings) {
    std::string bill = bills.count(booking) ? bills[booking] : "none";
    std::string hold = holds.count(booking) ? holds[booking] : "none";
    if ((status == "completed") != (bill == "paid"))
      out.push_back("booking " + booking + " is " + status + " but its bill is " + bill);
    if ((status == "completed") != (hold == "reserved"))
      out.push_back("booking " + booking + " is " + status + " but its hold is " + hold);
  }
  return out;
}

std::vector<std::string> SagaRig::choreography_violations() const {
  std::vector<std::string> out;
  const std::string& parking = servers().primary_url;
  collect(out, "booking not ended", booking_url_, "SELECT id FROM booking.bookings WHERE status = 'pending'");
  collect(out, "paid <> charged - refunded", billing_url_,
          "SELECT b.booking_id, b.status FROM billing.bills b WHERE CASE WHEN b.status = 'paid' THEN b.amount ELSE 0 END <> "
          "(SELECT coalesce(sum(r.amount), 0) FROM billing.reconciliations r WHERE r.booking_id = b.booking_id) - "
          "(SELECT coalesce(sum(f.amount), 0) FROM billing.refunds f WHERE f.booking_id = b.booking_id)");
  collect(out, "charged more than the bill", billing_url_,
          "SELECT b.booking_id, b.amount FROM billing.bills b WHERE b.amount < "
          "(SELECT coalesce(sum(r.amount), 0) FROM billing.reconciliations r WHERE r.booking_id = b.booking_id)");
  collect(out, "slot reserved for two bookings", parking,
          "SELECT slot_uuid FROM parking.reservations WHERE state = 'reserved' GROUP BY slot_uuid HAVING count(*) > 1");
  collect(out, "reservation without its slot reserved", parking,
          "SELECT r.booking_id FROM parking.reservations r JOIN parking_slots s ON s.uuid = r.slot_uuid "
          "WHERE r.state = 'reserved' AND s.status <> 'reserved'");
  collect(out, "slot reserved without its reservation", parking,
          "SELECT s.uuid FROM parking_slots s WHERE s.status = 'reserved' AND NOT EXISTS "
          "(SELECT FROM parking.reservations r WHERE r.slot_uuid = s.uuid AND r.state = 'reserved')");
  auto bookings = by_booking(booking_url_, "SELECT id, status FROM booking.bookings");
  auto bills = by_booking(billing_url_, "SELECT booking_id, status FROM billing.bills");
  auto reservations = by_booking(parking, "SELECT booking_id, state FROM parking.reservations");
  for (const auto& [booking, status] : bookings) {
    std::string bill = bills.count(booking) ? bills[booking] : "none";
    std::string reservation = reservations.count(booking) ? reservations[booking] : "none";
    // The one terminal state of each saga, as each service records it: done = paid and reserved;
    // failed = paid, refused by parking and refunded, or never paid in time and cancelled.
    std::string expected_bill = status == "done" ? "paid" : reservation == "unavailable" ? "refunded" : "cancelled";
    if (bill != expected_bill) out.push_back("booking " + booking + " is " + status + " but its bill is " + bill);
    if ((status == "done") != (reservation == "reserved"))
      out.push_back("booking " + booking + " is " + status + " but parking's answer is " + reservation);
  }
  return out;
}

Duplicator::Duplicator(std::string exchange) : exchange_(std::move(exchange)), queue_("test.duplicator." + exchange_) {
  auto connection = broker_connection();
  declare_outbox_exchange(*connection, exchange_);
  connection->declare_queue(queue_, amqp::QueueOptions{});
  connection->bind_queue(queue_, exchange_, "#");
  connection->purge_queue(queue_);
  thread_ = std::thread([this] { run(); });
}

Duplicator::~Duplicator() {
  stop_ = true;
  thread_.join();
}

void Duplicator::run() {
  std::mt19937 random(std::random_device{}());
  consume_until(stop_, queue_, "test-duplicator", 500,
                [&](amqp::Connection& connection, const std::vector<amqp::IncomingMessage>& round) {
                  std::vector<amqp::OutgoingMessage> batch;
                  for (const auto& message : round) {
                    if (message.headers.count("x-test-copy")) continue;  // a copy of ours
                    amqp::OutgoingMessage copy;
                    copy.exchange = exchange_;
                    copy.routing_key = message.routing_key;
                    copy.body = message.body;
                    copy.message_id = message.message_id.value_or("");
                    copy.type = message.type.value_or("");
                    copy.correlation_id = message.correlation_id.value_or("");
                    copy.reply_to = message.reply_to.value_or("");
                    for (const auto& [key, value] : message.headers) copy.headers.emplace_back(key, value);
                    copy.headers.emplace_back("x-test-copy", amqp::HeaderValue(std::string("1")));
                    batch.push_back(std::move(copy));
                  }
                  std::shuffle(batch.begin(), batch.end(), random);
                  for (const auto& copy : batch) connection.publish(copy);
                  copies_ += batch.size();
                });
}

}  // namespace outbox::testing
