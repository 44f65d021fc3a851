#pragma once
// Group commit under a stream: how long the next batch waits for more events.
//
// When events arrived while a batch was applied, more are coming, and each batch has a fixed cost
// on the replica (a transaction, a statement's start and end, a commit). Taking the next one at
// once would apply a stream in batches of whatever came during the last one: about 60 events at
// 15,000 events/s on a 2-core machine, 28 us of replica CPU per event, where batches of 400 cost
// 20 us. So the next batch waits for more as long as the last one took, unless batch_size is
// there first: at most one more apply time on an event's way, a few milliseconds at 1,000
// events/s, where batches stay small. A quiet queue does not wait at all (nothing arrived).
#include <algorithm>
#include <chrono>

namespace outbox::replicate {

// The wait after a batch that took `took`, with `events_arrived` while it was applied. It ends in
// time to keep batch_wait's promise, which counts from the first event that arrived: during the
// last batch at the earliest, so no more than `took` ago.
inline std::chrono::steady_clock::duration group_commit_wait(std::chrono::steady_clock::duration took,
                                                             std::chrono::milliseconds batch_wait, bool events_arrived) {
  using Duration = std::chrono::steady_clock::duration;
  if (!events_arrived) return Duration::zero();
  return std::max(Duration::zero(), std::min(took, std::chrono::duration_cast<Duration>(batch_wait) - took));
}

}  // namespace outbox::replicate
