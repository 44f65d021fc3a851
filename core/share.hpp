#pragma once
// How partitioned work is split among the live members that serve it: the relay's instances over
// relay.partitions (relay/partitions.hpp), and replicate's or consume's processes over the partition
// queues of a replica or a service (replicate/partition_share.hpp). Pure arithmetic.
#include <algorithm>

namespace outbox {

// Each of `members` serves at most ceil(partitions / members); fewer than one member counts as one.
inline int fair_share(int partitions, int members) {
  members = std::max(members, 1);
  return (partitions + members - 1) / members;
}

}  // namespace outbox
