#include "tests/integration/support/throttled_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>

namespace outbox::testing {
namespace {

using Clock = std::chrono::steady_clock;

sockaddr_in loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  return address;
}

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t written = ::send(fd, data, size, MSG_NOSIGNAL);
    if (written <= 0) return false;
    data += written;
    size -= static_cast<size_t>(written);
  }
  return true;
}

}  // namespace

ThrottledProxy::ThrottledProxy(int upstream_port, size_t client_bytes_per_second)
    : upstream_port_(upstream_port), bytes_per_second_(client_bytes_per_second) {
  listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = loopback(0);
  socklen_t length = sizeof address;
  if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener_, 16) != 0 || ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    throw std::runtime_error("ThrottledProxy: cannot listen on 127.0.0.1");
  port_ = ntohs(address.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

ThrottledProxy::~ThrottledProxy() {
  stopping_ = true;
  ::shutdown(listener_, SHUT_RDWR);
  acceptor_.join();
  ::close(listener_);
  {
    std::lock_guard lock(mutex_);
    for (int fd : sockets_) ::shutdown(fd, SHUT_RDWR);
  }
  for (std::thread& thread : threads_) thread.join();
  for (int fd : sockets_) ::close(fd);
}

void ThrottledProxy::accept_loop() {
  while (!stopping_) {
    int client = ::accept(listener_, nullptr, nullptr);
    if (client < 0) return;  // shut down
    int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address = loopback(upstream_port_);
    if (upstream < 0 || ::connect(upstream, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      ::close(client);
      if (upstream >= 0) ::close(upstream);
      continue;
    }
    std::lock_guard lock(mutex_);
    sockets_.push_back(client);
    sockets_.push_back(upstream);
    threads_.emplace_back([this, client, upstream] { forward(client, upstream); });
  }
}

// Copies both ways until either side closes. Client bytes are let through in slices of a tenth of
// the rate, each slice no earlier than its share of the second allows.
void ThrottledProxy::forward(int client, int upstream) {
  const size_t slice = std::max<size_t>(1, bytes_per_second_ / 10);
  size_t sent = 0;
  auto started = Clock::now();
  std::vector<char> buffer(std::max<size_t>(slice, 65536));
  pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
  while (!stopping_) {
    if (::poll(fds, 2, 200) < 0) return;
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t got = ::recv(upstream, buffer.data(), buffer.size(), 0);
      if (got <= 0 || !write_all(client, buffer.data(), static_cast<size_t>(got))) break;
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      auto allowed_at = started + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(static_cast<double>(sent) / bytes_per_second_));
      if (Clock::now() < allowed_at) {
        std::this_thread::sleep_for(std::min<Clock::duration>(allowed_at - Clock::now(), std::chrono::milliseconds(50)));
        continue;
      }
      ssize_t got = ::recv(client, buffer.data(), slice, 0);
      if (got <= 0 || !write_all(upstream, buffer.data(), static_cast<size_t>(got))) break;
      sent += static_cast<size_t>(got);
    }
  }
  ::shutdown(client, SHUT_RDWR);
  ::shutdown(upstream, SHUT_RDWR);
}

}  // namespace outbox::testing
