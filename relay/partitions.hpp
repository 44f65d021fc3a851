#pragma once
// How relay instances share the outbox: aggregate ids hash into `partitions` buckets and each
// bucket is owned by one live instance (a PostgreSQL session advisory lock), so the events of
// one aggregate are always published by one instance, in order.
#include <set>
#include <string>
#include <vector>

#include "core/share.hpp"

namespace outbox::relay {

// Advisory lock key spaces (first key of pg_advisory_lock(int, int)).
inline constexpr int kMemberLockClass = 0x6F627831;          // one per live instance: (class, slot)
inline constexpr int kPartitionLockClass = 0x6F627832;       // one per partition: (class, partition)
inline constexpr int kPartitionCountLockClass = 0x6F627833;  // shared, one per instance: (class, relay.partitions)
inline constexpr int kRebalanceLockClass = 0x6F627834;       // held while an instance takes partitions: (class, 0)

// A row's partition, in SQL: `aggregate_id` its column, `partitions` the count (a parameter). A
// NULL id (a loose table's) hashes as '': with hashtext(NULL) the row had no partition, so that
// relays owning some partitions each never read it, and it was neither published nor parked.
inline std::string row_partition_sql(const std::string& aggregate_id, const std::string& partitions) {
  return "(hashtext(coalesce(" + aggregate_id + ", '')) & 2147483647) % " + partitions;
}

// Each of `members` instances should own at most ceil(partitions / members) partitions.
using outbox::fair_share;

// The partitions to try to lock, in order: starting at this member's slot so that instances
// reach for different partitions first, and skipping the ones already owned.
std::vector<int> acquisition_order(int partitions, int member_slot, int members, const std::set<int>& owned);

// The partitions to give back when owning more than the fair share (the highest ones).
std::vector<int> release_choice(const std::set<int>& owned, int share);

}  // namespace outbox::relay
