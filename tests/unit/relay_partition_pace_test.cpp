// How many partitions of a partitioned outbox the relay keeps ahead of the writers
// (relay/partition_pace.hpp): two, or enough for two ticks at the fastest rate of its recent ticks.
#include <gtest/gtest.h>

#include <chrono>

#include "relay/partition_pace.hpp"

using namespace outbox::relay;
using namespace std::chrono_literals;

namespace {

const PartitionPace::Clock::time_point kStart{};

}  // namespace

TEST(PartitionPace, BeforeItHasSeenTwoTicksTheRelayKeepsTwoPartitionsAhead) {
  PartitionPace pace;
  EXPECT_EQ(pace.partitions_ahead(50000, 10s), kPartitionsAhead);
  pace.observe(1000000, kStart);
  EXPECT_EQ(pace.peak_rate(), 0.0);
  EXPECT_EQ(pace.partitions_ahead(50000, 10s), kPartitionsAhead);
}

TEST(PartitionPace, WhileAPartitionLastsLongerThanATickTwoPartitionsAreEnough) {
  PartitionPace pace;
  pace.observe(0, kStart);
  pace.observe(100000, kStart + 10s);  // 10,000 positions/s: 200,000 in two ticks
  EXPECT_DOUBLE_EQ(pace.peak_rate(), 10000.0);
  EXPECT_EQ(pace.partitions_ahead(1000000, 10s), kPartitionsAhead);
}

TEST(PartitionPace, AtTheSoaksRateTheRelayKeepsEnoughPartitionsForTwoTicksAndOneMore) {
  PartitionPace pace;
  pace.observe(0, kStart);
  pace.observe(97000, kStart + 10s);  // 9,700 positions/s: 194,000 in two ticks, four partitions of 50,000
  EXPECT_EQ(pace.partitions_ahead(50000, 10s), 5);
  // The same rate with ticks 2 s apart: 38,800 in two ticks.
  EXPECT_EQ(pace.partitions_ahead(50000, 2s), kPartitionsAhead);
}

TEST(PartitionPace, TheFastestOfTheRecentTicksSetsThePaceUntilItIsThirtyTicksOld) {
  PartitionPace pace;
  pace.observe(0, kStart);
  pace.observe(100000, kStart + 10s);  // a burst: 10,000/s
  long long position = 100000;
  auto at = kStart + 10s;
  for (size_t tick = 1; tick < kPaceTicks; ++tick) {
    position += 1000;  // 100/s
    at += 10s;
    pace.observe(position, at);
    ASSERT_DOUBLE_EQ(pace.peak_rate(), 10000.0) << "tick " << tick;
  }
  pace.observe(position + 1000, at + 10s);
  EXPECT_DOUBLE_EQ(pace.peak_rate(), 100.0);
}

TEST(PartitionPace, ASequenceSetBackCountsAsNoAdvance) {
  PartitionPace pace;
  pace.observe(500000, kStart);
  pace.observe(1, kStart + 10s);
  EXPECT_EQ(pace.peak_rate(), 0.0);
  pace.observe(20001, kStart + 20s);
  EXPECT_DOUBLE_EQ(pace.peak_rate(), 2000.0);
}

TEST(PartitionPace, ASequenceSetFarForwardAsksForNoMoreThanTheMostPartitionsAhead) {
  PartitionPace pace;
  pace.observe(0, kStart);
  pace.observe(1000000000, kStart + 1s);
  EXPECT_EQ(pace.partitions_ahead(100, 1s), kMaxPartitionsAhead);
}

TEST(PartitionPace, TwoReadingsAtTheSameInstantGiveNoRate) {
  PartitionPace pace;
  pace.observe(0, kStart);
  pace.observe(1000, kStart);
  EXPECT_EQ(pace.peak_rate(), 0.0);
  pace.observe(2000, kStart + 1s);
  EXPECT_DOUBLE_EQ(pace.peak_rate(), 1000.0);
}
