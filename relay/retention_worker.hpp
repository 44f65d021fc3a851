#pragma once
// The relay's retention, off the event loop (issue 19, part 3: an outbox that does not bloat).
//
// Each relay.maintenance_interval the relay looks after every outbox table: a partitioned outbox
// gets its partitions made ahead, cut and dropped (relay/outbox_partitions.hpp), and the rows past
// relay.retention are deleted from an unpartitioned outbox or a default partition
// (delete_retained_rows). A tick that drops partitions reads each one whole and changes the catalog
// several times: 100-300 ms at the soak's rate. On the relay's own session that was as long a stall
// of the event loop, with no read, publish, confirm or mark meanwhile, and it showed as the
// commit-to-queue p99 of the steps that held a drop (bench/README, "A soak at a fixed rate").
// So the tick runs here, on a loop::Worker with a connection of its own, as the marks' vacuum does:
// - Publishing never waits for its reads. Its locks on the outbox are held for one step each,
//   after waiting at most 200 ms for them: ACCESS EXCLUSIVE for a drop or a cut, SHARE ROW
//   EXCLUSIVE for an attach (relay/outbox_partitions.hpp). The relay's session waits for those as
//   the writers do (its marks for both, its reads for the first).
// - One tick at a time: a tick that comes while the last one still runs is skipped.
// - The connection is opened at the first tick and again after a failure; its statements wait at
//   most 1 s for a lock (a migration holding the outbox), so that a shutdown never waits long.
// - The partition maintenance's advisory lock (one relay at a time) is a session lock of this
//   connection, held only for the tick.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "core/loop.hpp"
#include "relay/outbox_partitions.hpp"
#include "relay/side_session.hpp"

namespace outbox::relay {

// What a tick is to do for one outbox table.
struct RetentionTask {
  std::string name;    // as configured: the key of its rows in outbox_parked, and in logs
  std::string quoted;  // quoted, qualified
  OutboxLayout layout;
};

// One tick's work, copied from the relay's settings when it starts (a reload applies at the next).
struct RetentionJob {
  std::vector<RetentionTask> tables;
  long long partition_size = 0;
  std::chrono::milliseconds retention{0};
  std::chrono::milliseconds interval{0};  // relay.maintenance_interval: how far apart the ticks are
  bool delete_on_publish = false;         // relay.on_publish = delete: nothing is kept, no rows to delete later
};

// What the tick did for one table, reported on the loop thread.
struct RetentionOutcome {
  std::string name;
  std::optional<MaintenanceResult> partitions;  // set for a partitioned table whose maintenance ran
  std::optional<std::string> problem;           // why the table's retention failed (tried again at the next tick)
};

class RetentionWorker {
 public:
  // `done` runs on the loop thread after each tick, with one outcome per table it reached.
  RetentionWorker(loop::Loop& loop, std::string url, std::string role, std::function<void(std::vector<RetentionOutcome>)> done);
  // Cancels a statement that runs and waits for the tick to end.
  ~RetentionWorker();
  RetentionWorker(const RetentionWorker&) = delete;
  RetentionWorker& operator=(const RetentionWorker&) = delete;
  // Starts a tick; false (and nothing done) while the last one still runs.
  bool start(RetentionJob job);

 private:
  // On the worker thread.
  std::vector<RetentionOutcome> tick(const RetentionJob& job);

  SideSession session_;
  std::function<void(std::vector<RetentionOutcome>)> done_;
  std::vector<RetentionOutcome> outcomes_;
  std::map<std::string, PartitionPace> paces_;  // by quoted table name; used on the worker thread only
  loop::Worker worker_;
};

}  // namespace outbox::relay
