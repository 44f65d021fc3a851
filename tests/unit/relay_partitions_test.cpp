// The pure arithmetic of partition ownership (relay/partitions.hpp): how many partitions each live
// relay instance owns, which ones it reaches for first, and which ones it gives back.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "relay/partitions.hpp"

using namespace outbox::relay;

TEST(Partitions, AFairShareIsThePartitionsPerInstanceRoundedUp) {
  EXPECT_EQ(outbox::relay::fair_share(16, 1), 16);
  EXPECT_EQ(outbox::relay::fair_share(16, 3), 6);
  EXPECT_EQ(outbox::relay::fair_share(16, 4), 4);
  EXPECT_EQ(outbox::relay::fair_share(1, 5), 1);
}

TEST(Partitions, NoLiveInstanceCountsAsOneSoTheShareIsEverything) {
  EXPECT_EQ(outbox::relay::fair_share(16, 0), 16);
  EXPECT_EQ(outbox::relay::fair_share(16, -1), 16);
}

TEST(Partitions, EachInstanceReachesFirstForItsOwnStretchOfPartitions) {
  EXPECT_EQ(acquisition_order(8, 0, 2, {}), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(acquisition_order(8, 1, 2, {}), (std::vector<int>{4, 5, 6, 7, 0, 1, 2, 3}));
}

TEST(Partitions, AnInstanceDoesNotReachForThePartitionsItAlreadyOwns) {
  EXPECT_EQ(acquisition_order(8, 1, 2, {4, 5, 0}), (std::vector<int>{6, 7, 1, 2, 3}));
}

TEST(Partitions, AMemberSlotBeyondThePartitionsWrapsAround) {
  // Slot 5 of 8 instances over 4 partitions: share 1, so it starts at partition 5 % 4 = 1.
  EXPECT_EQ(acquisition_order(4, 5, 8, {}), (std::vector<int>{1, 2, 3, 0}));
}

TEST(Partitions, AnInstanceWithoutASlotYetStartsAtTheFirstPartition) {
  EXPECT_EQ(acquisition_order(3, -1, 1, {}), (std::vector<int>{0, 1, 2}));
}

TEST(Partitions, AnInstanceOverItsShareGivesBackItsHighestPartitions) {
  EXPECT_EQ(release_choice({0, 1, 2, 5, 7}, 3), (std::vector<int>{7, 5}));
}

TEST(Partitions, AnInstanceWithinItsShareGivesBackNothing) {
  EXPECT_TRUE(release_choice({0, 1, 2}, 3).empty());
  EXPECT_TRUE(release_choice({0, 1}, 3).empty());
  EXPECT_TRUE(release_choice({}, 0).empty());
}

TEST(Partitions, InstancesThatTakeTheirShareInTheirOrderCoverEveryPartitionOnce) {
  // Three instances over 16 partitions, each taking what the ones before it left, up to its share.
  const int partitions = 16, members = 3;
  std::set<int> taken;
  for (int slot = 0; slot < members; ++slot) {
    std::set<int> owned;
    for (int partition : acquisition_order(partitions, slot, members, owned)) {
      if (static_cast<int>(owned.size()) >= outbox::relay::fair_share(partitions, members)) break;
      if (taken.insert(partition).second) owned.insert(partition);
    }
    EXPECT_LE(static_cast<int>(owned.size()), outbox::relay::fair_share(partitions, members));
  }
  EXPECT_EQ(static_cast<int>(taken.size()), partitions);
}
