#pragma once
// `outbox check`: the lag report (ops/lag.hpp) judged as a Nagios plugin. One line of output,
//   OUTBOX OK - replica main 0.4s behind, backlog 0 | lag_main=0.4s;30;120;0 backlog=0;;;0 failed=0;;;0
// and the plugin exit codes. Pure logic: unit-tested without servers.
//   UNKNOWN   the primary, the broker or a replica cannot be read (the line says which)
//   CRITICAL  a replica is at least `critical` seconds behind
//   WARNING   a replica is at least `warning` seconds behind, its lag is unknown (no heartbeat
//             applied yet), it has failed events (parked, or waiting behind a parked one), or its
//             queue is missing
//   OK        otherwise
// backlog = unpublished outbox rows + messages ready in the checked replicas' queues.
// For a service (report.service set), the service's outbox and its consumer are judged the same
// way, the consumer where a replica stands ("consumer booking 0.3s behind").
#include <string>
#include <string_view>

#include "ops/lag.hpp"

namespace outbox::check {

enum class Status { ok = 0, warning = 1, critical = 2, unknown = 3 };
std::string_view status_name(Status status);

struct Thresholds {
  double warning = 30;    // seconds
  double critical = 120;  // seconds
};

struct Result {
  Status status = Status::ok;
  std::string line;  // without a newline
};

Result evaluate(const lag::Report& report, const Thresholds& thresholds);
// "OUTBOX UNKNOWN - <reason>" for a failure before any report (a bad config, a bad option).
Result unknown(const std::string& reason);

}  // namespace outbox::check
