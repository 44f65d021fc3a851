#pragma once
// The valid range of aggregate versions, enforced at the primary (a CHECK on the outbox), by the
// relay (a row outside it is parked, not published) and by replicate (an event outside it is parked).
//
// Why 1 .. 2^53-1: versions start at 1 and grow by one per event, so no real aggregate comes near the
// top; 2^53-1 is the largest integer that every JSON reader holds exactly (consumers in other
// languages read the version header and payloads as doubles), and it leaves room above it, so
// `version + 1` and the relay heartbeat's microsecond clock (about 2^50.6 today) never overflow.
#include <cstdint>

namespace outbox {

inline constexpr long long kMinAggregateVersion = 1;
inline constexpr long long kMaxAggregateVersion = (1LL << 53) - 1;  // 9007199254740991

constexpr bool valid_aggregate_version(long long version) {
  return version >= kMinAggregateVersion && version <= kMaxAggregateVersion;
}

}  // namespace outbox
