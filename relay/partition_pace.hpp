#pragma once
// How far ahead of the writers a partitioned outbox's partitions are made (relay/outbox_partitions.hpp).
//
// A partition made at one maintenance tick must still be there when the writers reach it, until the
// next tick makes more. Two partitions of relay.partition_size are enough while a partition lasts
// longer than a tick. Past that rate, which a size chosen for yesterday's load or a long interval
// reaches, the writers passed the partitions ahead and their rows went to the default partition,
// where they stay until retention deletes them, and no partition is cut meanwhile (bench/soak at
// 9,700 events/s: partitions of 50,000, a 10 s tick).
//
// So the relay measures the rate at which the position sequence advances, from one tick to the
// next, and keeps enough partitions ahead for two intervals at the fastest rate of its recent ticks
// (a tick may be skipped while the last one still runs, so the next one may come two intervals
// later), plus one partition, and never fewer than kPartitionsAhead. Pure arithmetic; the tick
// feeds it the sequence it reads, and at the first tick the first row of the partition being
// written.
#include <chrono>
#include <deque>
#include <optional>

namespace outbox::relay {

inline constexpr int kPartitionsAhead = 2;
// The most partitions kept ahead: a sequence set forward by hand (setval) looks like a burst of
// writes, and would otherwise ask for thousands of empty tables.
inline constexpr int kMaxPartitionsAhead = 32;
// The fastest of this many recent ticks sets the pace: a burst is covered until it has been gone
// for that long (five minutes at the default 10 s tick).
inline constexpr size_t kPaceTicks = 30;

class PartitionPace {
 public:
  using Clock = std::chrono::steady_clock;
  // The sequence's last value read at a tick. A sequence that went back (reset by hand) counts as
  // no advance.
  void observe(long long last_position, Clock::time_point at);
  // Whether a reading was observed: the relay's maintenance seeds a new pace from the partition
  // being written (relay/outbox_partitions.cpp).
  bool seen() const { return last_.has_value(); }
  // The fastest advance of the recent ticks, in positions per second (0 before a second tick).
  double peak_rate() const;
  // How many partitions of `partition_size` to keep past the sequence for ticks `interval` apart.
  int partitions_ahead(long long partition_size, std::chrono::milliseconds interval) const;

 private:
  struct Reading {
    long long last_position;
    Clock::time_point at;
  };
  std::optional<Reading> last_;
  std::deque<double> rates_;  // positions per second, the newest last, at most kPaceTicks
};

}  // namespace outbox::relay
