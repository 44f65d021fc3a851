#pragma once
// How far behind the pipeline is, stage by stage, in seconds: read by `outbox lag`, `outbox check`,
// `parking_slot_list --max-staleness` and the daemons' gauges, so they all agree.
//
//   outbox   per relay table: unpublished rows, age of the oldest, time of the last publish
//   broker   per replica queue: messages ready and consumers (a passive queue.declare; AMQP does
//            not tell unacked messages, see rabbitmqctl list_queues messages_unacknowledged),
//            and the depth of outbox.unroutable and outbox.dead-letter
//   replica  the last applied event and its age, the newest applied relay heartbeat, the parked
//            (and waiting) failed events, and the seconds behind.
//
// Per service (`--service NAME`, database per service): the outbox stage is the service's own
// outbox (what its relay publishes), the broker stage its consumer's queue outbox.consumer.NAME,
// and the one "replica" stage is its consumer, read from the service database (its
// outbox_applied_position row and failed events under the consumer's name, its newest applied
// heartbeat). Its seconds behind come from the heartbeats alone: the consumer reads the other
// services' outboxes, so its own outbox's backlog says nothing about it.
//
// Seconds behind. Every relay.heartbeat_interval the relay writes a heartbeat into the outbox, and
// replicate records the newest one it applied (outbox_heartbeat: created_at on the primary,
// applied_at on the replica). Then:
//   - transit = applied_at - created_at: how long the newest heartbeat took end to end;
//   - the next heartbeat was due at created_at + interval and has not been applied, so the replica
//     misses changes at least heartbeat_age - interval old;
//   - an unpublished outbox row is certainly not applied, so the replica misses changes at least
//     as old as the oldest one (the backlog, when the primary was read);
//   - applied_at is also renewed by a heartbeat that is not the newest, so the replica's own clock
//     bounds it too: a heartbeat created after the last one applied here was due an interval
//     later, so the replica misses changes at least (now - applied_at) - interval old. This one
//     needs no clock but the replica's: a heartbeat stamped ahead by the primary's clock (within
//     replicate.max_clock_skew; later ones are not stored at all) cannot hide a stalled replicate.
// seconds_behind is the largest of the four: the heartbeat transit (about 0.0-0.5s) while the
// pipeline keeps up, a growing number as soon as any stage stalls (the relay, the broker or
// replicate), even when no other event flows. It needs the relay's heartbeats: without a heartbeat
// applied yet, it is the backlog's age when there is a backlog, else unknown. Clocks of the
// servers are assumed to be in sync (NTP); a primary clock that runs behind shows as lag.
// (The broker's count of ready messages is no measure: a stopped replicate holds up to
// replicate.prefetch messages unacknowledged, which the count leaves out.)
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/duration.hpp"
#include "core/metrics.hpp"
#include "relay/backlog.hpp"
#include "replicate/progress.hpp"

namespace outbox::lag {

struct QueueStage {
  std::string queue;    // "outbox.replica.main"
  std::string replica;  // "main"; "" for outbox.unroutable and outbox.dead-letter
  bool exists = false;
  uint32_t ready = 0;
  uint32_t consumers = 0;
};

struct BrokerStage {
  std::string error;               // "" when it was read
  std::vector<QueueStage> queues;  // replica queues, then outbox.unroutable, outbox.dead-letter
  const QueueStage* find(const std::string& queue) const;
};

struct Report {
  std::string service;  // "" for the primary and its replicas; else the service reported on
  std::string at;       // when it was taken, ISO 8601 UTC
  double heartbeat_interval = 10;
  PrimaryStage primary;
  BrokerStage broker;
  std::vector<ReplicaStage> replicas;
};

// What to read; an empty `replicas` means every configured replica. A `service` reads that service
// instead (its outbox, its consumer's queue and its consumer; `replicas` must then be empty).
struct Scope {
  bool primary = true;
  bool broker = true;
  std::vector<std::string> replicas;
  std::string service;
};

// Reads every stage; a server that cannot be reached leaves its stage's `error` set (never throws
// for that). Throws Error(config) for a replica or service name that is not configured.
Report collect(const config::Config& config, const Scope& scope = {});

// The consumer of service `name`, read from its database as a ReplicaStage named after the service.
ReplicaStage read_consumer(const config::Config& config, const std::string& name);

// compute_behind (replicate/progress.hpp) with the primary's backlog, when it was read.
void compute_behind(ReplicaStage& replica, const PrimaryStage* primary, double heartbeat_interval);

// `outbox lag` as text (aligned columns, one section per stage) and as one JSON document.
std::string render_text(const Report& report);
nlohmann::ordered_json to_json(const Report& report);
}  // namespace outbox::lag
