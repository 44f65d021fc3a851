#pragma once
// RAII wrappers for the libuv handles the daemons use. A handle is closed with uv_close and freed
// only in its close callback, as libuv requires; callbacks are std::function so owners can capture.
#include <uv.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace outbox::loop {

class Loop {
 public:
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  uv_loop_t* get() { return &loop_; }
  void run() { uv_run(&loop_, UV_RUN_DEFAULT); }
  void stop() { uv_stop(&loop_); }

 private:
  uv_loop_t loop_{};
};

template <typename Handle>
struct HandleBox {
  Handle handle{};
  std::function<void()> callback;
};

// Closes the handle on destruction; the box is deleted from the close callback.
template <typename Handle>
class HandleOwner {
 public:
  HandleOwner() = default;
  HandleOwner(const HandleOwner&) = delete;
  HandleOwner& operator=(const HandleOwner&) = delete;
  ~HandleOwner() { reset(); }
  void reset() {
    if (!box_) return;
    HandleBox<Handle>* box = box_.release();
    box->callback = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&box->handle),
             [](uv_handle_t* handle) { delete static_cast<HandleBox<Handle>*>(handle->data); });
  }

 protected:
  std::unique_ptr<HandleBox<Handle>> box_;
};

class Timer : public HandleOwner<uv_timer_t> {
 public:
  Timer(Loop& loop, std::function<void()> callback);
  // Runs the callback once after `delay` from now (not from the start of the loop's iteration), or
  // every `repeat` when it is non-zero. Restarting replaces the previous schedule.
  void start(std::chrono::milliseconds delay, std::chrono::milliseconds repeat = std::chrono::milliseconds(0));
  void stop();
  bool active() const;
  // How long until the next run (0 when it is due or the timer is stopped).
  std::chrono::milliseconds due_in() const;
  // start(), keeping a run that was due sooner: the next run comes after `most` at the latest, and
  // no later than it would have come (a restart never puts a due run off).
  void start_within(std::chrono::milliseconds most, std::chrono::milliseconds repeat);
};

// Watches a socket (libpq's or rabbitmq-c's) for readability.
class Poll : public HandleOwner<uv_poll_t> {
 public:
  Poll(Loop& loop, int fd, std::function<void()> on_readable);
  // Whether readability wakes the loop (on from the start). An owner that will read anyway at a
  // known time turns it off meanwhile; the kernel keeps what arrives.
  void watch(bool on);
  bool watching() const { return watching_; }

 private:
  void start();
  bool watching_ = false;
};

class Signal : public HandleOwner<uv_signal_t> {
 public:
  Signal(Loop& loop, int signal_number, std::function<void()> callback);
};

// Runs a callback on the next loop iteration (after pending I/O), once per request.
class Deferred : public HandleOwner<uv_idle_t> {
 public:
  Deferred(Loop& loop, std::function<void()> callback);
  void request();

 private:
  std::function<void()> user_callback_;
};

// Wakes the loop from another thread: the callback runs on the loop thread after send(). Several
// sends before the loop wakes up run the callback once.
class Async : public HandleOwner<uv_async_t> {
 public:
  Async(Loop& loop, std::function<void()> callback);
  void send();
};

// One thread that runs blocking jobs (a replica transaction) off the loop, one at a time, so the
// loop keeps reading the broker meanwhile. `done` runs on the loop thread after its job. The
// destructor waits for a running job to finish; a `done` not yet run then never runs.
class Worker {
 public:
  explicit Worker(Loop& loop);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  // Requires !busy(). The job must not throw.
  void run(std::function<void()> job, std::function<void()> done);
  bool busy() const { return busy_; }

 private:
  void thread_main();
  void on_finished();

  Async finished_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::function<void()> job_;   // guarded by mutex_
  bool job_finished_ = false;   // guarded by mutex_
  bool quit_ = false;           // guarded by mutex_
  std::function<void()> done_;  // loop thread only
  bool busy_ = false;           // loop thread only
  std::thread thread_;
};

}  // namespace outbox::loop
