#include "core/loop.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace outbox::loop {

Loop::Loop() {
  if (int rc = uv_loop_init(&loop_); rc != 0) throw Error(ExitCode::software, std::string("libuv: ") + uv_strerror(rc));
}

Loop::~Loop() {
  // Let pending close callbacks run so every handle box is freed.
  uv_run(&loop_, UV_RUN_NOWAIT);
  uv_loop_close(&loop_);
}

Timer::Timer(Loop& loop, std::function<void()> callback) {
  box_ = std::make_unique<HandleBox<uv_timer_t>>();
  box_->callback = std::move(callback);
  box_->handle.data = box_.get();
  uv_timer_init(loop.get(), &box_->handle);
}

void Timer::start(std::chrono::milliseconds delay, std::chrono::milliseconds repeat) {
  // libuv counts the delay from the loop's cached time, taken when the iteration began; a callback
  // that blocked for a while would see the timer fire that much too soon (tests/unit/loop_timer_test).
  uv_update_time(box_->handle.loop);
  uv_timer_start(
      &box_->handle,
      [](uv_timer_t* handle) {
        auto* box = static_cast<HandleBox<uv_timer_t>*>(handle->data);
        if (box->callback) box->callback();
      },
      static_cast<uint64_t>(delay.count()), static_cast<uint64_t>(repeat.count()));
}

void Timer::stop() {
  if (box_) uv_timer_stop(&box_->handle);
}

bool Timer::active() const { return box_ && uv_is_active(reinterpret_cast<const uv_handle_t*>(&box_->handle)); }

std::chrono::milliseconds Timer::due_in() const {
  // libuv keeps a stopped timer's last due time.
  if (!active()) return std::chrono::milliseconds(0);
  // Counted from the loop's cached time, as start() counts from a fresh one.
  uv_update_time(box_->handle.loop);
  return std::chrono::milliseconds(uv_timer_get_due_in(&box_->handle));
}

void Timer::start_within(std::chrono::milliseconds most, std::chrono::milliseconds repeat) {
  start(active() ? std::min(due_in(), most) : most, repeat);
}

Poll::Poll(Loop& loop, int fd, std::function<void()> on_readable) {
  box_ = std::make_unique<HandleBox<uv_poll_t>>();
  box_->callback = std::move(on_readable);
  box_->handle.data = box_.get();
  if (int rc = uv_poll_init(loop.get(), &box_->handle, fd); rc != 0)
    throw Error(ExitCode::software, std::string("libuv poll: ") + uv_strerror(rc));
  start();
}

void Poll::start() {
  uv_poll_start(&box_->handle, UV_READABLE, [](uv_poll_t* handle, int, int) {
    auto* box = static_cast<HandleBox<uv_poll_t>*>(handle->data);
    if (box->callback) box->callback();
  });
  watching_ = true;
}

void Poll::watch(bool on) {
  if (on == watching_) return;
  if (on) return start();
  uv_poll_stop(&box_->handle);
  watching_ = false;
}

Signal::Signal(Loop& loop, int signal_number, std::function<void()> callback) {
  box_ = std::make_unique<HandleBox<uv_signal_t>>();
  box_->callback = std::move(callback);
  box_->handle.data = box_.get();
  uv_signal_init(loop.get(), &box_->handle);
  uv_signal_start(
      &box_->handle,
      [](uv_signal_t* handle, int) {
        auto* box = static_cast<HandleBox<uv_signal_t>*>(handle->data);
        if (box->callback) box->callback();
      },
      signal_number);
}

Deferred::Deferred(Loop& loop, std::function<void()> callback) : user_callback_(std::move(callback)) {
  box_ = std::make_unique<HandleBox<uv_idle_t>>();
  box_->handle.data = box_.get();
  box_->callback = [this] {
    uv_idle_stop(&box_->handle);
    user_callback_();
  };
  uv_idle_init(loop.get(), &box_->handle);
}

void Deferred::request() {
  uv_idle_start(&box_->handle, [](uv_idle_t* handle) {
    auto* box = static_cast<HandleBox<uv_idle_t>*>(handle->data);
    if (box->callback) box->callback();
  });
}

Async::Async(Loop& loop, std::function<void()> callback) {
  box_ = std::make_unique<HandleBox<uv_async_t>>();
  box_->callback = std::move(callback);
  box_->handle.data = box_.get();
  uv_async_init(loop.get(), &box_->handle, [](uv_async_t* handle) {
    auto* box = static_cast<HandleBox<uv_async_t>*>(handle->data);
    if (box->callback) box->callback();
  });
}

void Async::send() { uv_async_send(&box_->handle); }

Worker::Worker(Loop& loop) : finished_(loop, [this] { on_finished(); }), thread_([this] { thread_main(); }) {}

Worker::~Worker() {
  {
    std::lock_guard lock(mutex_);
    quit_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void Worker::run(std::function<void()> job, std::function<void()> done) {
  if (busy_) throw Error(ExitCode::software, "loop::Worker::run: a job is already running");
  busy_ = true;
  done_ = std::move(done);
  {
    std::lock_guard lock(mutex_);
    job_ = std::move(job);
    job_finished_ = false;
  }
  wake_.notify_one();
}

void Worker::thread_main() {
  std::unique_lock lock(mutex_);
  while (true) {
    // A job handed over before quit_ still runs, so its owner's state is never left half done.
    wake_.wait(lock, [this] { return quit_ || job_; });
    if (!job_) return;
    std::function<void()> job = std::move(job_);
    job_ = nullptr;
    lock.unlock();
    job();
    lock.lock();
    job_finished_ = true;
    finished_.send();
  }
}

void Worker::on_finished() {
  {
    std::lock_guard lock(mutex_);
    if (!job_finished_) return;
    job_finished_ = false;
  }
  busy_ = false;
  std::function<void()> done = std::move(done_);
  done_ = nullptr;
  if (done) done();
}

}  // namespace outbox::loop
