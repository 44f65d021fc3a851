#pragma once
// The relay's confirm window: the batches published and not yet marked, oldest first, and which
// delivery tags the broker has confirmed.
//
// Why a batch is marked only when every tag up to its last one is confirmed: the broker confirms
// out of order (single acks, multiple acks), and a row is marked (or deleted) only after the
// broker took it. `confirmed_through` is the highest tag below which everything is confirmed;
// single acks beyond it wait in `confirmed_ahead` until the gap closes. Batches are completed in
// publication order, so a marked batch never overtakes an unconfirmed older one.
//
// Why a timeout counts from the last confirm and not from a batch's publication: a broker that
// confirms steadily but slower than the window fills (a slow disk, a busy node, a throttled link)
// confirms a batch published behind a full window only after that window's worth of messages. Timed
// from publication, that batch would "time out" although the broker is answering, the whole window
// would be published again, and the next round would be as slow: a livelock that duplicates every
// message. So a batch waits at most confirm_timeout after whichever came later, its publication or
// the last advance of the confirmed prefix: only a broker that confirms nothing for that long has
// timed out.
//
// Why the positions in flight are kept per table: reads that run while batches wait for confirms
// exclude exactly these positions, so they see every other unpublished row in position order.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <set>
#include <vector>

namespace outbox::relay {

class ConfirmWindow {
 public:
  using Clock = std::chrono::steady_clock;
  struct Batch {
    size_t table;
    std::vector<long long> positions;
    uint64_t last_tag;
    Clock::time_point published;
  };
  // The oldest fully confirmed batches, ready to be marked in one statement per table.
  struct Confirmed {
    std::vector<std::vector<long long>> positions;  // per table
    std::vector<Clock::time_point> published;       // per batch
    size_t batches = 0;
  };

  explicit ConfirmWindow(size_t tables = 0) : positions_(tables) {}

  void add(Batch batch);
  // A basic.ack from the broker, received at `now`.
  void on_confirm(uint64_t tag, bool multiple, Clock::time_point now = Clock::now());
  // Delivery tags start again at 1 on a new channel.
  void new_channel();
  Confirmed confirmed() const;
  // Removes the oldest `batches` (marked now) and returns them.
  std::vector<Batch> complete(size_t batches);
  // Forgets everything in flight (a lost connection: those rows are read and published again).
  void clear();

  bool empty() const { return batches_.empty(); }
  size_t unconfirmed() const { return unconfirmed_; }
  const std::set<long long>& positions(size_t table) const { return positions_[table]; }
  bool is_confirmed(const Batch& batch) const { return batch.last_tag <= confirmed_through_; }
  // The oldest batch is confirmed (it may wait for its mark, behind a lock).
  bool oldest_confirmed() const { return !batches_.empty() && is_confirmed(batches_.front()); }
  // The oldest batch not yet confirmed, or nullptr.
  const Batch* oldest_unconfirmed() const;
  // Since when the broker has owed `batch` its confirm: the later of its publication and the last
  // advance of the confirmed prefix (see above). The confirm timeout counts from here.
  Clock::time_point waiting_since(const Batch& batch) const { return std::max(batch.published, prefix_advanced_); }
  // Every (table, position) whose confirm has not come yet.
  std::vector<std::pair<size_t, long long>> unconfirmed_rows() const;

 private:
  std::deque<Batch> batches_;
  std::vector<std::set<long long>> positions_;  // per table
  size_t unconfirmed_ = 0;
  uint64_t confirmed_through_ = 0;      // every tag <= this is confirmed
  std::set<uint64_t> confirmed_ahead_;  // single acks beyond confirmed_through_
  Clock::time_point prefix_advanced_;   // when confirmed_through_ last grew (epoch: never)
};

}  // namespace outbox::relay
