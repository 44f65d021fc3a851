#pragma once
// A TCP proxy on 127.0.0.1 in front of a real server whose client-to-server direction is limited to
// a number of bytes per second: a slow link to a real broker, for tests of what a daemon does when
// the broker answers steadily but slowly. Nothing is changed or dropped; the server-to-client
// direction is not limited. The destructor closes every connection and joins its threads.
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace outbox::testing {

class ThrottledProxy {
 public:
  ThrottledProxy(int upstream_port, size_t client_bytes_per_second);
  ~ThrottledProxy();
  ThrottledProxy(const ThrottledProxy&) = delete;
  ThrottledProxy& operator=(const ThrottledProxy&) = delete;

  int port() const { return port_; }

 private:
  void accept_loop();
  void forward(int client, int upstream);

  int upstream_port_;
  size_t bytes_per_second_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::vector<int> sockets_;  // every accepted and upstream socket, shut down by the destructor
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace outbox::testing
