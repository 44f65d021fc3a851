#include "core/metrics_server.hpp"

#include <httplib.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "core/error.hpp"

namespace outbox::metrics {

ListenAddress parse_listen(const std::string& listen, const std::string& origin) {
  std::string where = origin.empty() ? "config: " : "config " + origin + ": ";
  auto fail = [&listen, &where](const std::string& why) {
    return config_error(where + "metrics.listen: " + why + " (got \"" + listen +
                        "\"; expected host:port such as 127.0.0.1:9187, [::1]:9187 or :9187)");
  };
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) throw fail("no port");
  ListenAddress address;
  address.host = listen.substr(0, colon);
  std::string port = listen.substr(colon + 1);
  if (address.host.size() >= 2 && address.host.front() == '[' && address.host.back() == ']')
    address.host = address.host.substr(1, address.host.size() - 2);
  else if (address.host.find(':') != std::string::npos)
    throw fail("an IPv6 address must be in brackets");
  if (address.host.empty()) address.host = "0.0.0.0";
  auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), address.port);
  if (port.empty() || error != std::errc() || end != port.data() + port.size() || address.port < 1 || address.port > 65535)
    throw fail("the port must be 1..65535");
  return address;
}

Server::Server(const std::string& listen, Registry& registry, const std::string& origin)
    : http_(std::make_unique<httplib::Server>()) {
  ListenAddress address = parse_listen(listen, origin);
  // Two threads are plenty for a scraper and a health probe, and keep the daemon small.
  http_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  http_->set_keep_alive_timeout(5);
  http_->set_read_timeout(5, 0);
  http_->set_write_timeout(5, 0);
  http_->Get("/metrics", [&registry](const httplib::Request&, httplib::Response& response) {
    response.set_content(registry.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http_->Get("/healthz", [this](const httplib::Request&, httplib::Response& response) {
    std::lock_guard lock(mutex_);
    response.status = healthy_ ? 200 : 503;
    response.set_content((healthy_ ? "ok: " : "unhealthy: ") + detail_ + "\n", "text/plain; charset=utf-8");
  });
  errno = 0;
  if (!http_->bind_to_port(address.host, address.port)) {
    std::string reason = errno ? std::strerror(errno) : "cannot bind";
    throw config_error((origin.empty() ? "config: " : "config " + origin + ": ") + "metrics.listen: cannot listen on " + listen +
                       ": " + reason + " (is the port in use, or the address not local?)");
  }
  port_ = address.port;
  thread_ = std::thread([this] { http_->listen_after_bind(); });
}

Server::~Server() {
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

void Server::set_health(bool healthy, std::string detail) {
  std::lock_guard lock(mutex_);
  healthy_ = healthy;
  detail_ = std::move(detail);
}

}  // namespace outbox::metrics
