// The relay's publishing path: reading rows, publishing them, the broker's answers (confirms,
// refusals), and marking confirmed rows (see relay/relay.hpp and relay/confirm_window.hpp).
#include <algorithm>
#include <map>

#include "core/failpoint.hpp"
#include "core/pg.hpp"
#include "core/url.hpp"
#include "migrate/pack.hpp"
#include "migrate/topology.hpp"
#include "relay/outbox_row.hpp"
#include "relay/relay.hpp"
#include "relay/statements.hpp"

namespace outbox::relay {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// RabbitMQ's reply code when it refuses a published message itself (over max_message_size).
constexpr int kPreconditionFailed = 406;

// The largest pack body the relay builds (a larger event goes alone): replicate holds up to
// replicate.prefetch / relay.pack packs in memory.
constexpr size_t kMostPackBytes = 256 * 1024;
// The most rows one read takes when packing (relay.batch_size's upper limit).
constexpr long long kMostRowsPerRead = 10000;

// A value for a log line: at most 80 bytes of it, and its size when cut (an aggregate id can be
// 300 KB).
std::string excerpt(const std::string& value) {
  if (value.size() <= 80) return value;
  return value.substr(0, 80) + "...(" + std::to_string(value.size()) + " bytes)";
}

}  // namespace

int Relay::rows_per_read(const TableSpec& table) const {
  // A pack holds rows of one read only, so a read of relay.batch_size rows spread over 16
  // partitions made packs of about 31 events where relay.pack allowed 100: three times the
  // messages, each with the broker's cost per message. A read takes enough for a full pack in
  // each owned partition (up to relay.batch_size's own limit); a quiet outbox returns fewer.
  if (table.pack <= 1) return tunables_.batch_size;
  long long full_packs = static_cast<long long>(table.pack) * static_cast<long long>(ownership_.owned().size());
  return static_cast<int>(std::clamp<long long>(full_packs, tunables_.batch_size, kMostRowsPerRead));
}

pqxx::result Relay::read_rows(size_t table_index, int room) {
  const TableSpec& table = tables_[table_index];
  pqxx::nontransaction tx(*db_);
  std::string excluded = int_array_literal(window_.positions(table_index));
  if (ownership_.owns_all()) return tx.exec_prepared(statement("read_all", table_index), table.name, excluded, room, partitions_);
  return tx.exec_prepared(statement("read_owned", table_index), table.name, excluded, room, partitions_,
                          ownership_.owned_array());
}

size_t Relay::read_and_publish(size_t table_index) {
  const TableSpec& table = tables_[table_index];
  size_t unconfirmed = window_.unconfirmed();
  // While suspects are isolated, one message at a time is in flight, so a refusal names its row.
  int room = isolating() ? (unconfirmed == 0 ? 1 : 0)
                         : std::min(rows_per_read(table), tunables_.max_unconfirmed - static_cast<int>(unconfirmed));
  if (room <= 0) return 0;
  auto read_started = Clock::now();
  pqxx::result rows = read_rows(table_index, room);
  auto read_done = Clock::now();
  if (rows.empty()) return 0;
  // Suspects older than what is read now were published (or taken over) elsewhere: not suspects.
  std::set<long long>& suspects = suspects_[table_index];
  if (!suspects.empty() && *suspects.rbegin() < rows[0][0].as<long long>(0)) suspects.clear();

  ConfirmWindow::Batch batch{table_index, {}, 0, Clock::now()};
  batch.positions.reserve(rows.size());
  std::vector<std::pair<long long, std::string>> unpublishable;  // position, why
  std::set<std::pair<std::string, std::string>> held;            // aggregates with a row to park in this read
  metrics::Counter& published = *table_metrics_[table_index].published;
  size_t frame_max = broker_->frame_max();
  size_t most_pack_bytes = std::min(tunables_.max_message_size, kMostPackBytes);
  // Whatever a failed read left in them is not this read's.
  for (auto& [partition, open] : open_packs_) {
    open.builder.clear();
    open.positions.clear();
  }
  for (const pqxx::row& row : rows) {
    // Waits behind a row parked below (held is empty unless this read parks one: no copies then).
    if (!held.empty() && held.count({row[2].c_str(), row[3].c_str()})) continue;
    RowMessage built = message_from_row(row, table, frame_max, tunables_.max_message_size);
    long long position = built.position;
    if (!built.problem.empty()) {
      unpublishable.emplace_back(position, built.problem);
      held.insert({row[2].c_str(), row[3].c_str()});
      continue;
    }
    if (table.pack > 1) {
      // Only rows read now, of one partition, consecutive within it, with one routing key: no
      // waiting to fill a pack. An aggregate's events are all in one partition, so in one pack
      // or in packs published in their order.
      int partition = row[kPartitionColumn].as<int>();
      OpenPack& open = open_packs_[partition];
      if (!open.builder.empty() &&
          (open.builder.count() >= static_cast<size_t>(table.pack) || open.builder.routing_key() != built.message.routing_key ||
           open.builder.bytes() + built.message.body.size() + pack::kElementOverhead > most_pack_bytes))
        batch.last_tag = publish_pack(table_index, partition, open);
      open.builder.add(built.message);
      open.positions.push_back(position);
    } else {
      try {
        batch.last_tag = broker_->publish(built.message);
      } catch (const amqp::EncodeFailed& error) {
        // Not caught by the checks above, and never publishable: park it, then reconnect (the
        // channel may hold half a message). What this read published is published again.
        unpublishable.emplace_back(position, error.what());
        for (auto& [at, why] : unpublishable) record_unpublishable(table_index, at, why, 1);
        throw;
      }
    }
    batch.positions.push_back(position);
    published.add();
  }
  for (auto& [partition, open] : open_packs_)
    if (!open.builder.empty()) batch.last_tag = publish_pack(table_index, partition, open);
  size_t count = batch.positions.size();
  if (count > 0) {
    log_->debug("read {} rows in {}us, published {} in {}us", rows.size(),
                std::chrono::duration_cast<std::chrono::microseconds>(read_done - read_started).count(), count,
                std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - read_done).count());
    window_.add(std::move(batch));
    if (!confirm_timer_->active()) confirm_timer_->start(milliseconds(250), milliseconds(250));
  }
  for (auto& [position, why] : unpublishable) record_unpublishable(table_index, position, why, 1);
  // Rows held behind a parked one were skipped: read again, without them, at once.
  if (!unpublishable.empty()) drain_soon_->request();
  return count;
}

uint64_t Relay::publish_pack(size_t table_index, int partition, OpenPack& open) {
  const TableSpec& table = tables_[table_index];
  amqp::OutgoingMessage message = open.builder.take(table.pack_exchange, partition, table.pack_compression);
  std::vector<long long>& positions = open.positions;
  try {
    uint64_t tag = broker_->publish(message);
    positions.clear();
    return tag;
  } catch (const amqp::EncodeFailed& error) {
    // Alone, the event is never publishable: park it. In a pack, which one is unknown: its rows
    // become suspects, published one at a time (packs of one) until the culprit is parked.
    if (positions.size() == 1)
      record_unpublishable(table_index, positions.front(), error.what(), 1);
    else
      for (long long position : positions) suspects_[table_index].insert(position);
    throw;
  }
}

bool Relay::record_unpublishable(size_t table_index, long long position, const std::string& reason, int park_after) {
  const TableSpec& table = tables_[table_index];
  pqxx::work tx(*db_);
  pqxx::result recorded = tx.exec_prepared(statement("park", table_index), table.name, position, reason, park_after);
  tx.commit();
  if (recorded.empty()) return false;  // the row is gone (deleted meanwhile): nothing to park
  bool parked = recorded[0][0].as<bool>();
  int attempts = recorded[0][1].as<int>();
  std::string what = table.name + " position " + std::to_string(position);
  what += " (event " + excerpt(recorded[0][2].c_str()) + " " + excerpt(recorded[0][3].c_str()) + ", aggregate " +
          excerpt(recorded[0][4].c_str()) + " " + excerpt(recorded[0][5].c_str()) + ")";
  if (parked) {
    suspects_[table_index].erase(position);
    table_metrics_[table_index].parked->add();
    log_->error(
        "parked outbox row {} after {} attempt(s): {}; later rows of its aggregate wait behind it (outbox failed "
        "list --relay)",
        what, attempts, reason);
  } else {
    log_->warn("the broker refused outbox row {} ({} of {} attempts): {}", what, attempts, park_after, reason);
  }
  return parked;
}

bool Relay::isolating() const {
  return std::any_of(suspects_.begin(), suspects_.end(), [](const auto& positions) { return !positions.empty(); });
}

void Relay::refused_by_broker(const std::string& reason) {
  std::vector<std::pair<size_t, long long>> unconfirmed = window_.unconfirmed_rows();
  if (isolating() && unconfirmed.size() == 1) {
    // Published alone: this is the row the broker refuses.
    auto [table, position] = unconfirmed.front();
    try {
      record_unpublishable(table, position, reason, tunables_.max_attempts);
    } catch (const std::exception& error) {
      log_->warn("could not record the broker's refusal of {} position {}: {}", tables_[table].name, position,
                 mask_url(error.what()));
    }
  } else if (!unconfirmed.empty()) {
    for (auto [table, position] : unconfirmed) suspects_[table].insert(position);
    log_->warn("the broker refused one of {} message(s) in flight; publishing them one at a time to find it: {}",
               unconfirmed.size(), reason);
  }
  broker_lost(reason);
}

void Relay::on_broker_readable() {
  if (!broker_) return;
  try {
    broker_->poll([this](amqp::Event& event) {
      switch (event.kind) {
        case amqp::Event::Kind::ack:
          backoff_.reset();  // the broker takes messages again
          window_.on_confirm(event.delivery_tag, event.multiple);
          break;
        case amqp::Event::Kind::nack:
          metrics_.counter("outbox_relay_nacked_total", "").add();
          throw unavailable_error("broker refused a message (nack, delivery tag " + std::to_string(event.delivery_tag) + ")");
        case amqp::Event::Kind::returned:
          metrics_.counter("outbox_relay_returned_total", "").add();
          throw unavailable_error("message " + event.message->message_id.value_or("?") + " returned as unroutable (" +
                                  event.reply_text + "); is the alternate exchange " + topology::kUnroutable + " bound?");
        case amqp::Event::Kind::delivery:
          break;
      }
    });
  } catch (const amqp::ChannelClosed& closed) {
    // 406: the broker itself refuses a message (over its max_message_size); find it and park it.
    if (closed.reply_code() == kPreconditionFailed) return refused_by_broker(closed.what());
    return broker_lost(closed.what());
  } catch (const Error& error) {
    return broker_lost(error.what());
  }
  complete_batches();
}

// Marks (or deletes) every fully confirmed batch of a table in one statement; false when that has
// to wait (a lock held elsewhere, or the primary is gone).
bool Relay::mark_confirmed(const ConfirmWindow::Confirmed& confirmed) {
  try {
    failpoint("relay.after_confirm");
    pqxx::work tx(*db_);
    mark_published(tx, confirmed.positions, tunables_.delete_on_publish);
    tx.commit();
    side_task_works("marking published rows");
    return true;
  } catch (const pqxx::sql_error& error) {
    if (error.sqlstate() == "55P03") {
      // A lock held elsewhere: the batches stay in flight and are marked at the next tick.
      side_problem("marking published rows", error.what());
      return false;
    }
    database_lost(error.what());
  } catch (const std::exception& error) {
    database_lost(error.what());
  }
  return false;
}

void Relay::complete_batches() {
  if (!window_.oldest_confirmed() || !db_) return;
  ConfirmWindow::Confirmed confirmed = window_.confirmed();
  auto mark_started = Clock::now();
  if (!mark_confirmed(confirmed)) return;
  auto now = Clock::now();
  log_->debug("marked {} batch(es) in {}us; oldest confirmed after {}us", confirmed.batches,
              std::chrono::duration_cast<std::chrono::microseconds>(now - mark_started).count(),
              std::chrono::duration_cast<std::chrono::microseconds>(mark_started - confirmed.published.front()).count());
  for (const ConfirmWindow::Batch& batch : window_.complete(confirmed.batches)) {
    for (long long position : batch.positions) suspects_[batch.table].erase(position);
    table_metrics_[batch.table].batch_seconds->observe(std::chrono::duration<double>(now - batch.published).count());
    table_metrics_[batch.table].confirmed->add(batch.positions.size());
  }
  last_progress_ = now;
  if (window_.empty()) confirm_timer_->stop();
  if (runtime_.stopping()) return maybe_finish_shutdown();
  if (releasing_ && window_.empty()) rebalance();  // hands the partitions over, then reading resumes
  drain_soon_->request();
}

void Relay::check_confirm_timeout() {
  if (broker_ && broker_->has_buffered_data()) on_broker_readable();
  complete_batches();  // confirmed batches whose mark had to wait for a lock
  if (window_.empty()) {
    confirm_timer_->stop();
    return;
  }
  // Only an unconfirmed batch can time out: a confirmed one may wait for its mark (a lock). And only
  // when the broker has confirmed nothing for confirm_timeout (relay/confirm_window.hpp says why).
  const ConfirmWindow::Batch* unconfirmed = window_.oldest_unconfirmed();
  if (unconfirmed && Clock::now() - window_.waiting_since(*unconfirmed) > tunables_.confirm_timeout)
    broker_lost("publisher confirms timed out: none came for " + std::to_string(tunables_.confirm_timeout.count()) + "ms");
}

}  // namespace outbox::relay
