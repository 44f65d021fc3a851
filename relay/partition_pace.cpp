#include "relay/partition_pace.hpp"

#include <algorithm>
#include <cmath>

namespace outbox::relay {

void PartitionPace::observe(long long last_position, Clock::time_point at) {
  if (last_ && at > last_->at) {
    double seconds = std::chrono::duration<double>(at - last_->at).count();
    double advance = static_cast<double>(std::max(0LL, last_position - last_->last_position));
    rates_.push_back(advance / seconds);
    if (rates_.size() > kPaceTicks) rates_.pop_front();
  }
  last_ = Reading{last_position, at};
}

double PartitionPace::peak_rate() const { return rates_.empty() ? 0.0 : *std::max_element(rates_.begin(), rates_.end()); }

int PartitionPace::partitions_ahead(long long partition_size, std::chrono::milliseconds interval) const {
  double two_ticks = peak_rate() * 2.0 * std::chrono::duration<double>(interval).count();
  double needed = std::ceil(two_ticks / static_cast<double>(std::max(1LL, partition_size))) + 1.0;
  if (needed <= kPartitionsAhead) return kPartitionsAhead;
  return needed >= kMaxPartitionsAhead ? kMaxPartitionsAhead : static_cast<int>(needed);
}

}  // namespace outbox::relay
