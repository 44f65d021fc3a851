#pragma once
// Which partitions this relay instance owns, held as advisory locks of its primary session (the
// arithmetic is in relay/partitions.hpp).
//
// Why a partition changes hands only when its old owner has nothing in flight, or has died: the
// next owner reads from the oldest unpublished row, so a batch of the old owner still waiting for
// its confirm would be published twice and could overtake a newer row of its aggregate. The
// caller says whether it may release (its confirm window is empty); locks vanish with a dead
// session, so a dead owner's partitions are free at once.
//
// Why instances that disagree on relay.partitions never split an aggregate's order: the count
// decides an aggregate's partition, so two counts would put one aggregate in two partitions with
// two owners. Each instance holds a shared lock keyed by its count, and takes partitions only
// while holding the rebalance lock and only when no other instance with another count owns any.
// So one count is in force at a time: an instance with another count owns nothing and says so
// until the others stop (a change of relay.partitions is a stop of every relay, or a rolling
// restart in which the new count takes over once the last old instance is gone). Instances of
// versions before this check hold no count lock and are not seen.
#include <pqxx/pqxx>
#include <set>
#include <string>

namespace outbox::relay {

class Ownership {
 public:
  explicit Ownership(int partitions = 0) : partitions_(partitions) {}

  struct Step {
    int members = 0;          // live instances to share with (none with another relay.partitions)
    bool over_share = false;  // owned more than the fair share before this step
    // Another relay.partitions in force (its count and one of its instances' backend pid): this
    // instance owns nothing until it is gone.
    long long other_partitions = 0;
    int other_pid = 0;
  };
  // One rebalancing step: takes a member slot if it has none, counts the live instances, gives
  // back the partitions over the fair share when `may_release`, and tries to take free ones up to it.
  Step rebalance(pqxx::transaction_base& tx, bool may_release);
  // Hands every partition and the membership back (this instance cannot publish); returns how
  // many partitions it owned.
  size_t release_all(pqxx::transaction_base& tx);
  // The session died, and its locks with it.
  void forget();

  bool holds_locks() const { return !owned_.empty() || member_slot_ >= 0; }
  const std::set<int>& owned() const { return owned_; }
  bool owns_all() const { return static_cast<int>(owned_.size()) == partitions_; }
  bool owns(int partition) const { return owned_.count(partition) > 0; }
  int partitions() const { return partitions_; }
  // The owned partitions as a PostgreSQL array literal: "{0,3,5}".
  std::string owned_array() const;

 private:
  void take_member_slot(pqxx::transaction_base& tx);
  void release(pqxx::transaction_base& tx, int partition);

  int partitions_;
  std::set<int> owned_;
  int member_slot_ = -1;
};

}  // namespace outbox::relay
