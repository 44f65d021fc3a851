#include "relay/ownership.hpp"

#include "relay/partitions.hpp"
#include "relay/statements.hpp"

namespace outbox::relay {
namespace {

// Member slots an instance tries, lowest first; far more than live instances.
constexpr int kMemberSlots = 4096;

bool try_lock(pqxx::transaction_base& tx, int lock_class, int key) {
  return tx.exec_params1(kTryLock, lock_class, key)[0].as<bool>();
}

// The rebalance lock, held (as a session lock: the caller's statements commit one by one) for one
// step; released when the step ends, however it ends (a dead session releases it too).
class RebalanceLock {
 public:
  explicit RebalanceLock(pqxx::transaction_base& tx) : tx_(tx) { tx_.exec_params(kLock, kRebalanceLockClass, 0); }
  ~RebalanceLock() {
    try {
      tx_.exec_params(kUnlock, kRebalanceLockClass, 0);
    } catch (const std::exception&) {
      // The session is gone (and the lock with it), or the caller's error is already on its way.
    }
  }
  RebalanceLock(const RebalanceLock&) = delete;
  RebalanceLock& operator=(const RebalanceLock&) = delete;

 private:
  pqxx::transaction_base& tx_;
};

}  // namespace

void Ownership::take_member_slot(pqxx::transaction_base& tx) {
  for (int slot = 0; slot < kMemberSlots && member_slot_ < 0; ++slot)
    if (try_lock(tx, kMemberLockClass, slot)) member_slot_ = slot;
  if (member_slot_ >= 0) tx.exec_params(kLockShared, kPartitionCountLockClass, partitions_);
}

void Ownership::release(pqxx::transaction_base& tx, int partition) {
  tx.exec_params(kUnlock, kPartitionLockClass, partition);
  owned_.erase(partition);
}

Ownership::Step Ownership::rebalance(pqxx::transaction_base& tx, bool may_release) {
  RebalanceLock rebalancing(tx);
  if (member_slot_ < 0) take_member_slot(tx);
  Step step;
  step.members = tx.exec_params1(kCountMembers, kMemberLockClass, kPartitionCountLockClass, partitions_)[0].as<int>();
  pqxx::result others = tx.exec_params(kOtherPartitionCounts, kPartitionCountLockClass, kPartitionLockClass, partitions_);
  if (!others.empty()) {
    step.other_partitions = others[0][0].as<long long>();
    step.other_pid = others[0][1].as<int>();
    step.over_share = !owned_.empty();
    if (may_release)
      for (int partition : std::set<int>(owned_)) release(tx, partition);
    return step;
  }
  int share = fair_share(partitions_, step.members);
  step.over_share = static_cast<int>(owned_.size()) > share;
  if (step.over_share && may_release)
    for (int partition : release_choice(owned_, share)) release(tx, partition);
  if (static_cast<int>(owned_.size()) < share)
    for (int partition : acquisition_order(partitions_, member_slot_, step.members, owned_)) {
      if (static_cast<int>(owned_.size()) >= share) break;
      if (try_lock(tx, kPartitionLockClass, partition)) owned_.insert(partition);
    }
  return step;
}

size_t Ownership::release_all(pqxx::transaction_base& tx) {
  size_t released = owned_.size();
  for (int partition : owned_) tx.exec_params(kUnlock, kPartitionLockClass, partition);
  if (member_slot_ >= 0) {
    tx.exec_params(kUnlock, kMemberLockClass, member_slot_);
    tx.exec_params(kUnlockShared, kPartitionCountLockClass, partitions_);
  }
  forget();
  return released;
}

void Ownership::forget() {
  owned_.clear();
  member_slot_ = -1;
}

std::string Ownership::owned_array() const { return int_array_literal(owned_); }

}  // namespace outbox::relay
