#pragma once
// The replicate daemon's settings, built and validated once from a configuration by
// settings_from_config: at start, on SIGHUP (a reload keeps the running settings when the build
// throws) and by `outbox config check`. Nothing else in replicate reads an option by its key.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/amqp.hpp"
#include "core/config.hpp"
#include "migrate/topology.hpp"
#include "replicate/event.hpp"

namespace outbox::replicate {

class PartitionShare;

// The options SIGHUP may change.
struct Tunables {
  size_t batch_size = 500;
  std::chrono::milliseconds batch_wait{20};
  int max_attempts = 3;
  std::chrono::milliseconds applied_retention{0};  // 0: keep applied event ids forever
  std::chrono::milliseconds max_clock_skew{60000};
  bool record_event_ids = false;  // each applied event id into outbox_applied_events, for tracing
  std::chrono::milliseconds max_backoff{30000};
  std::chrono::milliseconds shutdown_timeout{30000};
  double heartbeat_interval = 10;  // relay.heartbeat_interval in seconds, for the lag gauge
};

// One target of the engine: a replica (its mappings are Settings::mappings) or a consumer of
// `outbox consume` (its own handlers; consume/settings.hpp builds it from [services.NAME]).
struct ReplicaSettings {
  std::string name;  // "main"
  std::string url;
  topology::ReplicaQueue queue;
  bool consumer = false;
  std::vector<Mapping> handlers;  // a consumer's
  // One partition of a partitioned replica (queue.partitions > 1): the Service gives each its own
  // Replicator, all of them one PartitionShare. -1: the whole replica.
  int partition = -1;
  std::shared_ptr<PartitionShare> share;
};

// The basic.qos window, in messages, of a queue whose messages hold up to `pack` events:
// replicate.prefetch with single events; with packs, prefetch / pack of them, but at least
// kLeastPackWindow (never more than prefetch). Under a trickle a pack holds one event or a few, and
// a window of a few packs would hold deliveries back behind each ack (with packs of 500 and a
// window of 10, the end-to-end p99 was 63-91 ms against about 50). Memory does not follow the
// window: packs beyond the next batch wait compressed (Replicator::unpack_waiting).
inline constexpr int kLeastPackWindow = 50;
inline int replicate_window(int prefetch, int pack) {
  if (pack <= 1) return prefetch;
  return std::min(prefetch, std::max(prefetch / pack, kLeastPackWindow));
}

struct Settings {
  std::vector<ReplicaSettings> replicas;  // the replicas this daemon serves
  amqp::BrokerSettings broker;
  std::vector<Mapping> mappings;
  int prefetch = 5000;
  int apply_connections = 1;
  Tunables tunables;
};

// The [[replicate.mappings]] blocks, or the built-in parking mapping when there are none.
// Throws Error(config) for an invalid table name or an event type mapped twice.
std::vector<Mapping> mappings_from_config(const config::Config& config);
Tunables tunables_from_config(const config::Config& config);
// Everything above for the named replicas (none: every configured one); Error(config) for a
// replica that is not configured, or when none is. broker.url may be unset here (see
// relay::settings_from_config).
Settings settings_from_config(const config::Config& config, std::vector<std::string> replicas = {});

}  // namespace outbox::replicate
