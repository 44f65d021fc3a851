#pragma once
// RAII wrappers for the libuv handles the daemons use. A handle is closed with uv_close and freed
// only in its close callback, as libuv requires; callbacks are std::function so owners can capture.
#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>

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
  // Runs the callback once after `delay`, or every `repeat` when it is non-zero. Restarting
  // replaces the previous schedule.
  void start(std::chrono::milliseconds delay, std::chrono::milliseconds repeat = std::chrono::milliseconds(0));
  void stop();
  bool active() const;
};

// Watches a socket (libpq's or rabbitmq-c's) for readability.
class Poll : public HandleOwner<uv_poll_t> {
 public:
  Poll(Loop& loop, int fd, std::function<void()> on_readable);
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

}  // namespace outbox::loop
