#include "relay/partitions.hpp"

#include <algorithm>

namespace outbox::relay {

std::vector<int> acquisition_order(int partitions, int member_slot, int members, const std::set<int>& owned) {
  std::vector<int> order;
  int start = (std::max(member_slot, 0) * fair_share(partitions, members)) % std::max(partitions, 1);
  for (int i = 0; i < partitions; ++i) {
    int partition = (start + i) % partitions;
    if (!owned.count(partition)) order.push_back(partition);
  }
  return order;
}

std::vector<int> release_choice(const std::set<int>& owned, int share) {
  std::vector<int> release;
  int excess = static_cast<int>(owned.size()) - share;
  for (auto it = owned.rbegin(); it != owned.rend() && excess > 0; ++it, --excess) release.push_back(*it);
  return release;
}

}  // namespace outbox::relay
