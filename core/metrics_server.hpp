#pragma once
// The daemons' HTTP endpoint on [metrics] listen (libmicrohttpd, on its own thread):
//   GET /metrics  the registry in the Prometheus text format (version 0.0.4), with
//                 outbox_build_info and the process_* metrics of render_process_metrics()
//   GET /healthz  200 "ok: <status>" while the daemon is connected and making progress, else 503
//                 "unhealthy: <why>: <status>"
// The daemon's loop decides the health (set_health); the HTTP threads only read it, so they never
// touch the daemon's state.
#include <microhttpd.h>

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "core/metrics.hpp"

namespace outbox::metrics {

struct ListenAddress {
  std::string host;  // "127.0.0.1", "::1", "0.0.0.0"
  int port = 0;
};
// Parses "host:port", "[v6]:port" or ":port" (every address). Throws Error(config) naming
// metrics.listen and what is allowed, and `origin` (where the value came from) when given.
ListenAddress parse_listen(const std::string& listen, const std::string& origin = "");

// The open connections of a Server, each with the time its current request began (when it was
// accepted, or when its previous response was sent). libmicrohttpd's own timeout is an idle one
// that every byte resets: a client sending one header line a second kept its connection for ever,
// and five addresses with 16 such clients each held every slot, so /healthz went unanswered. This
// gives each request a total deadline and keeps room for a new client. Thread-safe: libmicrohttpd
// reports from its thread, the sweep runs on another. A connection is closed with shutdown(2),
// which libmicrohttpd then sees; its descriptor stays valid until closed() (libmicrohttpd reports
// before it closes the socket), and closed() waits for the mutex, so no other socket is ever hit.
class ConnectionWatch {
 public:
  using Clock = std::chrono::steady_clock;
  ConnectionWatch(size_t keep_open, Clock::duration request_deadline)
      : keep_open_(keep_open), request_deadline_(request_deadline) {}

  // A new connection. When more than `keep_open` are then open, the oldest are closed to make room:
  // a new client such as a health probe is served while slow ones hold connections.
  void opened(int fd, Clock::time_point now = Clock::now());
  // A request on this connection was answered: the next one on it has a deadline of its own.
  void answered(int fd, Clock::time_point now = Clock::now());
  void closed(int fd);
  // Closes every connection whose request began more than `request_deadline` ago.
  void close_overdue(Clock::time_point now = Clock::now());
  // Connections open and not being closed.
  size_t open() const;

 private:
  struct Connection {
    Clock::time_point since;
    bool closing = false;
  };
  void close(int fd, Connection& connection);
  size_t open_locked() const;

  const size_t keep_open_;
  const Clock::duration request_deadline_;
  mutable std::mutex mutex_;
  std::map<int, Connection> connections_;
};

class Server {
 public:
  // Binds at once (a port in use is an Error(config)) and serves from a background thread. At most
  // 48 connections (16 per client address) are served at once: a new one beyond them closes the
  // oldest. Each request must be answered within 10 s of its start, and a connection is closed
  // after 5 s idle. `registry` must outlive the server.
  Server(const std::string& listen, Registry& registry, const std::string& origin = "");
  ~Server();  // stops serving, closes every connection and joins the threads
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void set_health(bool healthy, std::string detail);
  int port() const { return port_; }

 private:
  static MHD_Result on_request(void* self, MHD_Connection* connection, const char* url, const char* method, const char* version,
                               const char* upload, size_t* upload_size, void** request_state);

  Registry& registry_;
  ConnectionWatch watch_;
  MHD_Daemon* daemon_ = nullptr;
  std::jthread sweeper_;  // closes overdue connections once a second
  int port_ = 0;
  std::mutex mutex_;
  bool healthy_ = false;
  std::string detail_ = "starting";
};

}  // namespace outbox::metrics
