#pragma once
// How several `outbox replicate` processes, on any hosts, share the partition queues of one
// replica (replicas.NAME.partitions, see migrate/topology.hpp); and several `outbox consume`
// processes those of one service's consumer (services.NAME.partitions) the same way, on the
// service database.
//
// Why not the broker alone: a single-active-consumer queue gives all its deliveries to its first
// subscriber, so the first process to start would serve every partition and the others none.
// Instead each process counts the live ones on the replica database (each holds a member slot, a
// session advisory lock that dies with its session) and serves at most its fair share,
// ceil(N / processes); a partition is served by whoever holds its serve lock (see
// Replicator::take_serve_lock). A process over its share (one more started) gives back its
// highest partitions: it stops consuming, commits the batch in flight and only then ends the
// serve lock, so the next holder starts after its last commit (order kept; what was unacked comes
// again and is a duplicate, a no-op). A process that dies loses its session and its locks at
// once; the others then count one fewer and take its partitions at their next attempt
// (replicate.max_backoff at most). The queues' single-active-consumer is the second safety.
#include <chrono>
#include <memory>
#include <pqxx/pqxx>
#include <set>
#include <string>

#include "core/share.hpp"

namespace outbox::replicate {

// Session lock (hashtext('outbox replicate member ' || replica), slot) of each live process that
// serves a partitioned replica; ('outbox consume member ' || service, slot) for a consumer (a
// service database may be a replica's too: a replica and a service of one name count apart).
inline constexpr int kMemberSlots = 1024;

// Each of `members` processes serves at most ceil(partitions / members) partitions.
using outbox::fair_share;
// Whether a process that serves `owned` gives `partition` back: it is one of the highest ones
// over `share`.
bool gives_back(const std::set<int>& owned, int share, int partition);

class PartitionShare {
 public:
  // `name`: the replica's, or the service's when `consumer`.
  PartitionShare(std::string url, std::string name, bool consumer, int partitions);
  ~PartitionShare();
  // May this process take one more partition (it serves fewer than its share)?
  bool may_take();
  // Should it give `partition` back (it serves more than its share)?
  bool should_give_back(int partition);
  void taken(int partition) { owned_.insert(partition); }
  void released(int partition) { owned_.erase(partition); }
  // "serves 2 of 4 partitions with 2 process(es)"
  std::string describe() const;

 private:
  // Takes a member slot and counts the members, at most once a second; a failure keeps the last
  // count (the partitions' own connections see the outage and handle it).
  void refresh();

  std::string url_, role_, program_, member_key_;
  int partitions_;
  std::unique_ptr<pqxx::connection> db_;
  int slot_ = -1;
  int members_ = 1;
  std::set<int> owned_;
  std::chrono::steady_clock::time_point next_refresh_{};
};

}  // namespace outbox::replicate
