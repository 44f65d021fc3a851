// The relay's confirm window (relay/confirm_window.hpp): a batch is marked only once the broker
// confirmed every delivery tag up to its last one, and batches complete in publication order.
#include <gtest/gtest.h>

#include "relay/confirm_window.hpp"

using outbox::relay::ConfirmWindow;

namespace {

ConfirmWindow::Batch batch(size_t table, std::vector<long long> positions, uint64_t last_tag) {
  return ConfirmWindow::Batch{table, std::move(positions), last_tag, ConfirmWindow::Clock::now()};
}

}  // namespace

TEST(ConfirmWindow, ABatchIsConfirmedOnlyOnceItsLastTagIs) {
  ConfirmWindow window(1);
  window.add(batch(0, {10, 11, 12}, 3));
  window.on_confirm(2, true);
  EXPECT_FALSE(window.oldest_confirmed());
  EXPECT_EQ(window.confirmed().batches, 0u);
  window.on_confirm(3, false);
  EXPECT_TRUE(window.oldest_confirmed());
  EXPECT_EQ(window.confirmed().positions[0], (std::vector<long long>{10, 11, 12}));
}

TEST(ConfirmWindow, SingleAcksBeyondAGapConfirmNothingUntilTheGapCloses) {
  ConfirmWindow window(1);
  window.add(batch(0, {1}, 1));
  window.add(batch(0, {2}, 2));
  window.add(batch(0, {3}, 3));
  window.on_confirm(3, false);
  window.on_confirm(2, false);
  EXPECT_EQ(window.confirmed().batches, 0u) << "tag 1 is not confirmed yet";
  EXPECT_EQ(window.oldest_unconfirmed()->last_tag, 1u);
  window.on_confirm(1, false);
  EXPECT_EQ(window.confirmed().batches, 3u);
  EXPECT_EQ(window.oldest_unconfirmed(), nullptr);
}

TEST(ConfirmWindow, AMultipleAckConfirmsEveryTagUpToIt) {
  ConfirmWindow window(2);
  window.add(batch(0, {1, 2}, 2));
  window.add(batch(1, {7}, 3));
  window.add(batch(0, {3}, 4));
  window.on_confirm(3, true);
  ConfirmWindow::Confirmed confirmed = window.confirmed();
  EXPECT_EQ(confirmed.batches, 2u);
  EXPECT_EQ(confirmed.positions[0], (std::vector<long long>{1, 2}));
  EXPECT_EQ(confirmed.positions[1], (std::vector<long long>{7}));
  EXPECT_EQ(window.unconfirmed_rows(), (std::vector<std::pair<size_t, long long>>{{0, 3}}));
}

TEST(ConfirmWindow, CompletedBatchesLeaveTheWindowAndTheReadsExclusions) {
  ConfirmWindow window(1);
  window.add(batch(0, {1, 2}, 2));
  window.add(batch(0, {5}, 3));
  EXPECT_EQ(window.unconfirmed(), 3u);
  EXPECT_EQ(window.positions(0), (std::set<long long>{1, 2, 5}));
  window.on_confirm(2, true);
  std::vector<ConfirmWindow::Batch> completed = window.complete(window.confirmed().batches);
  ASSERT_EQ(completed.size(), 1u);
  EXPECT_EQ(completed[0].positions, (std::vector<long long>{1, 2}));
  EXPECT_EQ(window.unconfirmed(), 1u);
  EXPECT_EQ(window.positions(0), (std::set<long long>{5}));
  EXPECT_FALSE(window.empty());
}

TEST(ConfirmWindow, ANewChannelStartsTheDeliveryTagsAgain) {
  ConfirmWindow window(1);
  window.on_confirm(50, true);
  window.new_channel();
  window.add(batch(0, {9}, 1));
  EXPECT_FALSE(window.oldest_confirmed()) << "tag 1 of the new channel is not confirmed by tag 50 of the old one";
  window.on_confirm(1, false);
  EXPECT_TRUE(window.oldest_confirmed());
}

TEST(ConfirmWindow, ALostConnectionForgetsEverythingInFlight) {
  ConfirmWindow window(1);
  window.add(batch(0, {1, 2}, 2));
  window.clear();
  EXPECT_TRUE(window.empty());
  EXPECT_EQ(window.unconfirmed(), 0u);
  EXPECT_TRUE(window.positions(0).empty());
}

TEST(ConfirmWindow, ABatchWaitsForItsConfirmFromTheLastAdvanceOfTheConfirmedPrefixWhenThatIsLater) {
  using namespace std::chrono_literals;
  ConfirmWindow window(1);
  auto start = ConfirmWindow::Clock::now();
  window.add(ConfirmWindow::Batch{0, {1}, 1, start});
  window.add(ConfirmWindow::Batch{0, {2}, 2, start + 1s});
  window.add(ConfirmWindow::Batch{0, {3}, 3, start + 2s});
  EXPECT_EQ(window.waiting_since(*window.oldest_unconfirmed()), start);
  window.on_confirm(1, false, start + 5s);
  // Behind a window the broker works through: counted from its last confirm, not from publication.
  EXPECT_EQ(window.waiting_since(*window.oldest_unconfirmed()), start + 5s);
  // An ack beyond a gap advances nothing: the broker still owes tag 2.
  window.on_confirm(3, false, start + 9s);
  EXPECT_EQ(window.waiting_since(*window.oldest_unconfirmed()), start + 5s);
  // A batch published after the last advance waits from its publication.
  window.add(ConfirmWindow::Batch{0, {4}, 4, start + 12s});
  window.on_confirm(3, true, start + 10s);
  EXPECT_EQ(window.waiting_since(*window.oldest_unconfirmed()), start + 12s);
}
