#pragma once
// The daemons' HTTP endpoint on [metrics] listen (libmicrohttpd, on its own thread):
//   GET /metrics  the registry in the Prometheus text format (version 0.0.4)
//   GET /healthz  200 "ok: <status>" while the daemon is connected and making progress, else 503
//                 "unhealthy: <why>: <status>"
// The daemon's loop decides the health (set_health); the HTTP threads only read it, so they never
// touch the daemon's state.
#include <microhttpd.h>

#include <mutex>
#include <string>

#include "core/metrics.hpp"

namespace outbox::metrics {

struct ListenAddress {
  std::string host;  // "127.0.0.1", "::1", "0.0.0.0"
  int port = 0;
};
// Parses "host:port", "[v6]:port" or ":port" (every address). Throws Error(config) naming
// metrics.listen and what is allowed, and `origin` (where the value came from) when given.
ListenAddress parse_listen(const std::string& listen, const std::string& origin = "");

class Server {
 public:
  // Binds at once (a port in use is an Error(config)) and serves from a background thread. At most
  // 64 connections (16 per client address) are open at once, each closed after 5 s idle.
  // `registry` must outlive the server.
  Server(const std::string& listen, Registry& registry, const std::string& origin = "");
  ~Server();  // stops serving, closes every connection and joins the thread
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void set_health(bool healthy, std::string detail);
  int port() const { return port_; }

 private:
  static MHD_Result on_request(void* self, MHD_Connection* connection, const char* url, const char* method, const char* version,
                               const char* upload, size_t* upload_size, void** request_state);

  Registry& registry_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
  std::mutex mutex_;
  bool healthy_ = false;
  std::string detail_ = "starting";
};

}  // namespace outbox::metrics
