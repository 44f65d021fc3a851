// loop::Poll wakes the loop when its descriptor is readable, unless its owner has turned that off
// (the replicator, while a read is due anyway).
#include <gtest/gtest.h>
#include <unistd.h>

#include "core/loop.hpp"

using outbox::loop::Loop;
using outbox::loop::Poll;

namespace {

struct Pipe {
  Pipe() { EXPECT_EQ(pipe(fds), 0); }
  ~Pipe() {
    close(fds[0]);
    close(fds[1]);
  }
  int fds[2] = {-1, -1};
};

// One loop iteration that does not block: a readable, watched descriptor runs its callback in it.
void run_once(Loop& loop) { uv_run(loop.get(), UV_RUN_NOWAIT); }

}  // namespace

TEST(LoopPoll, RunsItsCallbackWhenTheDescriptorIsReadable) {
  Loop loop;
  Pipe pipe;
  int wakeups = 0;
  Poll poll(loop, pipe.fds[0], [&] { ++wakeups; });
  EXPECT_TRUE(poll.watching());
  run_once(loop);
  EXPECT_EQ(wakeups, 0) << "nothing to read yet";
  ASSERT_EQ(write(pipe.fds[1], "x", 1), 1);
  run_once(loop);
  EXPECT_EQ(wakeups, 1);
}

TEST(LoopPoll, StaysQuietWhileUnwatchedAndWakesForWhatArrivedMeanwhileWhenWatchedAgain) {
  Loop loop;
  Pipe pipe;
  int wakeups = 0;
  Poll poll(loop, pipe.fds[0], [&] { ++wakeups; });
  poll.watch(false);
  poll.watch(false);  // twice is the same as once
  EXPECT_FALSE(poll.watching());
  ASSERT_EQ(write(pipe.fds[1], "x", 1), 1);
  run_once(loop);
  run_once(loop);
  EXPECT_EQ(wakeups, 0) << "the descriptor is readable, but unwatched";
  poll.watch(true);
  EXPECT_TRUE(poll.watching());
  run_once(loop);
  EXPECT_EQ(wakeups, 1) << "the byte written while unwatched is still there";
  char byte = 0;
  ASSERT_EQ(read(pipe.fds[0], &byte, 1), 1);
  run_once(loop);
  EXPECT_EQ(wakeups, 1) << "read empty: no more wakeups";
}
