#pragma once
// Exponential backoff with full jitter, capped: the delays between reconnect attempts.
#include <algorithm>
#include <chrono>
#include <random>

namespace outbox {

class Backoff {
 public:
  explicit Backoff(std::chrono::milliseconds cap, std::chrono::milliseconds base = std::chrono::milliseconds(200))
      : cap_(cap), base_(base), random_(std::random_device{}()) {}
  void set_cap(std::chrono::milliseconds cap) { cap_ = cap; }
  // The next delay: uniform in [ceiling/2, ceiling], where ceiling doubles per failure up to the cap.
  std::chrono::milliseconds next() {
    long long ceiling = std::min<long long>(cap_.count(), base_.count() << std::min(attempts_, 20));
    ++attempts_;
    std::uniform_int_distribution<long long> spread(ceiling / 2, std::max<long long>(ceiling / 2, ceiling));
    return std::chrono::milliseconds(spread(random_));
  }
  void reset() { attempts_ = 0; }
  int attempts() const { return attempts_; }

 private:
  std::chrono::milliseconds cap_, base_;
  int attempts_ = 0;
  std::mt19937_64 random_;
};

}  // namespace outbox
