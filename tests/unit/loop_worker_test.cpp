// loop::Worker runs a blocking job off the loop and hands its completion back to the loop thread.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/loop.hpp"

using namespace std::chrono_literals;
using outbox::loop::Loop;
using outbox::loop::Timer;
using outbox::loop::Worker;

TEST(LoopWorker, RunsTheJobOnAnotherThreadAndItsDoneCallbackOnTheLoopThread) {
  Loop loop;
  auto loop_thread = std::this_thread::get_id();
  std::thread::id job_thread, done_thread;
  {
    Worker worker(loop);
    worker.run([&] { job_thread = std::this_thread::get_id(); },
               [&] {
                 done_thread = std::this_thread::get_id();
                 EXPECT_FALSE(worker.busy()) << "a new job may be started from done";
                 loop.stop();
               });
    EXPECT_TRUE(worker.busy());
    loop.run();
  }
  EXPECT_NE(job_thread, std::thread::id{});
  EXPECT_NE(job_thread, loop_thread);
  EXPECT_EQ(done_thread, loop_thread);
}

TEST(LoopWorker, KeepsTheLoopRunningWhileTheJobBlocks) {
  Loop loop;
  std::atomic<bool> release{false};
  int ticks_while_blocked = 0;
  bool done = false;
  Worker worker(loop);
  Timer ticker(loop, [&] {
    if (!done) ++ticks_while_blocked;
    if (ticks_while_blocked == 3) release = true;
  });
  ticker.start(1ms, 1ms);
  worker.run(
      [&] {
        while (!release) std::this_thread::sleep_for(1ms);
      },
      [&] {
        done = true;
        loop.stop();
      });
  loop.run();
  EXPECT_TRUE(done);
  EXPECT_GE(ticks_while_blocked, 3);
}

TEST(LoopWorker, RunsJobsOneAfterAnotherInOrder) {
  Loop loop;
  Worker worker(loop);
  std::vector<int> order;
  std::function<void(int)> start = [&](int n) {
    worker.run([&order, n] { order.push_back(n); },
               [&, n] {
                 if (n < 5)
                   start(n + 1);
                 else
                   loop.stop();
               });
  };
  start(1);
  loop.run();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4, 5}));
}

TEST(LoopWorker, RefusesASecondJobWhileOneIsRunning) {
  Loop loop;
  Worker worker(loop);
  worker.run([] {}, [&] { loop.stop(); });
  EXPECT_ANY_THROW(worker.run([] {}, [] {}));
  loop.run();
}

TEST(LoopWorker, ItsDestructorWaitsForTheRunningJobToFinish) {
  Loop loop;
  std::atomic<bool> finished{false};
  {
    Worker worker(loop);
    worker.run(
        [&] {
          std::this_thread::sleep_for(50ms);
          finished = true;
        },
        [] {});
  }
  EXPECT_TRUE(finished);
}
