#include "core/metrics_server.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <memory>

#include "core/error.hpp"

// The project's version, from CMake; a build without it says so rather than guess.
#ifndef OUTBOX_VERSION
#define OUTBOX_VERSION "unknown"
#endif

namespace outbox::metrics {

namespace {
// "config outbox.toml:9:10: " where the value came from, else "config: ".
std::string config_prefix(const std::string& origin) { return origin.empty() ? "config: " : "config " + origin + ": "; }
}  // namespace

ListenAddress parse_listen(const std::string& listen, const std::string& origin) {
  std::string where = config_prefix(origin);
  auto fail = [&listen, &where](const std::string& why) {
    return config_error(where + "metrics.listen: " + why + " (got \"" + listen +
                        "\"; expected host:port such as 127.0.0.1:17181, [::1]:17181 or :17181)");
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

namespace {

// Bounds that keep a scraper's port from costing the daemon more than a little: connections
// served at once (a new one beyond them closes the oldest), per client address, the time a request
// may take from its start to its answer, idle seconds, and the memory of each connection (request
// headers beyond it are refused). A request body is read and dropped, never kept.
// libmicrohttpd's own limit (kMaxConnections) is above kKeepOpen: it counts the connections being
// closed too, and were it reached, it would stop accepting, and a new client would wait.
constexpr size_t kKeepOpen = 48;
constexpr unsigned kMaxConnections = 64;
constexpr unsigned kMaxConnectionsPerAddress = 16;
constexpr auto kRequestDeadline = std::chrono::seconds(10);
constexpr unsigned kIdleSeconds = 5;
constexpr size_t kConnectionMemory = 32 * 1024;
constexpr auto kSweepInterval = std::chrono::seconds(1);

// The listening socket, bound here so that a port in use is a one-line config error with errno.
int bind_listener(const ListenAddress& address, const std::string& listen, const std::string& where) {
  auto fail = [&](const std::string& reason) {
    return config_error(where + "metrics.listen: cannot listen on " + listen + ": " + reason +
                        " (is the port in use, or the address not local?)");
  };
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port = std::to_string(address.port);
  if (int rc = getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found); rc != 0) throw fail(gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, &freeaddrinfo);
  int fd = socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  if (fd < 0) throw fail(std::strerror(errno));
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
    std::string reason = std::strerror(errno);
    close(fd);
    throw fail(reason);
  }
  return fd;
}

int connection_fd(MHD_Connection* connection) {
  const MHD_ConnectionInfo* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
  return info ? info->connect_fd : -1;
}

void on_connection(void* watch, MHD_Connection* connection, void**, MHD_ConnectionNotificationCode code) {
  int fd = connection_fd(connection);
  if (fd < 0) return;
  if (code == MHD_CONNECTION_NOTIFY_STARTED)
    static_cast<ConnectionWatch*>(watch)->opened(fd);
  else
    static_cast<ConnectionWatch*>(watch)->closed(fd);
}

void on_request_completed(void* watch, MHD_Connection* connection, void**, MHD_RequestTerminationCode) {
  if (int fd = connection_fd(connection); fd >= 0) static_cast<ConnectionWatch*>(watch)->answered(fd);
}

}  // namespace

void ConnectionWatch::opened(int fd, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  connections_[fd] = Connection{now};
  for (size_t open = open_locked(); open > keep_open_; --open) {
    auto oldest = connections_.end();
    for (auto it = connections_.begin(); it != connections_.end(); ++it)
      if (!it->second.closing && it->first != fd && (oldest == connections_.end() || it->second.since < oldest->second.since))
        oldest = it;
    if (oldest == connections_.end()) break;
    close(oldest->first, oldest->second);
  }
}

void ConnectionWatch::answered(int fd, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (auto it = connections_.find(fd); it != connections_.end()) it->second.since = now;
}

void ConnectionWatch::closed(int fd) {
  std::lock_guard lock(mutex_);
  connections_.erase(fd);
}

void ConnectionWatch::close_overdue(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  for (auto& [fd, connection] : connections_)
    if (!connection.closing && now - connection.since > request_deadline_) close(fd, connection);
}

size_t ConnectionWatch::open() const {
  std::lock_guard lock(mutex_);
  return open_locked();
}

size_t ConnectionWatch::open_locked() const {
  return static_cast<size_t>(
      std::count_if(connections_.begin(), connections_.end(), [](const auto& entry) { return !entry.second.closing; }));
}

// Called with mutex_ held, so the descriptor is still libmicrohttpd's (see the class comment).
// Both directions: the client gets an end of stream, and libmicrohttpd's next read or write fails,
// so it closes the connection and reports closed().
void ConnectionWatch::close(int fd, Connection& connection) {
  shutdown(fd, SHUT_RDWR);
  connection.closing = true;
}

// libmicrohttpd calls this for each request, first with no body, then once per piece of body,
// then with none left: the answer is queued at the last call.
MHD_Result Server::on_request(void* self, MHD_Connection* connection, const char* url, const char* method, const char*,
                              const char*, size_t* upload_size, void** request_state) {
  static int started;
  if (*request_state == nullptr) {
    *request_state = &started;
    return MHD_YES;
  }
  if (*upload_size != 0) {
    *upload_size = 0;
    return MHD_YES;
  }
  auto& server = *static_cast<Server*>(self);
  unsigned status = MHD_HTTP_OK;
  std::string body, type = "text/plain; charset=utf-8";
  std::string_view path = url;
  if (std::string_view(method) != "GET" && std::string_view(method) != "HEAD") {
    status = MHD_HTTP_METHOD_NOT_ALLOWED;
    body = "only GET\n";
  } else if (path == "/metrics") {
    body = server.registry_.render() + render_process_metrics();
    type = "text/plain; version=0.0.4; charset=utf-8";
  } else if (path == "/healthz") {
    std::lock_guard lock(server.mutex_);
    status = server.healthy_ ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
    body = (server.healthy_ ? "ok: " : "unhealthy: ") + server.detail_ + "\n";
  } else {
    status = MHD_HTTP_NOT_FOUND;
    body = "not found: try /metrics or /healthz\n";
  }
  MHD_Response* response = MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
  if (!response) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type.c_str());
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  MHD_Result queued = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return queued;
}

Server::Server(const std::string& listen, Registry& registry, const std::string& origin)
    : registry_(registry), watch_(kKeepOpen, kRequestDeadline) {
  ListenAddress address = parse_listen(listen, origin);
  // The usual info metric: always 1, its labels say what runs (join on it in queries).
  registry_.gauge("outbox_build_info", "The outbox build serving these metrics (always 1)", {{"version", OUTBOX_VERSION}}).set(1);
  std::string where = config_prefix(origin);
  // Started first, so that nothing leaks when it cannot start; when binding or serving fails
  // below, its destructor stops it again.
  sweeper_ = std::jthread([this](std::stop_token stop) {
    std::mutex mutex;
    std::condition_variable_any stopped;
    std::unique_lock lock(mutex);
    while (!stopped.wait_for(lock, stop, kSweepInterval, [&stop] { return stop.stop_requested(); })) watch_.close_overdue();
  });
  int fd = bind_listener(address, listen, where);
  // One event-driven thread: a slow or idle client holds a connection slot, not a thread.
  // ITC: stopping wakes the thread even while the listening socket is parked at the limit.
  daemon_ =
      MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC, 0, nullptr, nullptr, &Server::on_request,
                       this, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, kMaxConnections,
                       MHD_OPTION_PER_IP_CONNECTION_LIMIT, kMaxConnectionsPerAddress, MHD_OPTION_CONNECTION_TIMEOUT, kIdleSeconds,
                       MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory, MHD_OPTION_NOTIFY_CONNECTION, &on_connection,
                       &watch_, MHD_OPTION_NOTIFY_COMPLETED, &on_request_completed, &watch_, MHD_OPTION_END);
  // A resource shortage (threads, descriptors), not the config: exit 69 lets systemd try again.
  // libmicrohttpd has closed the socket on some of these paths, so it is not closed again here.
  if (!daemon_) throw unavailable_error("metrics.listen " + listen + ": cannot start serving (out of threads or descriptors?)");
  port_ = address.port;
}

Server::~Server() {
  sweeper_.request_stop();
  sweeper_.join();
  // Stops the polling thread and closes every connection and the listening socket.
  MHD_stop_daemon(daemon_);
}

void Server::set_health(bool healthy, std::string detail) {
  std::lock_guard lock(mutex_);
  healthy_ = healthy;
  detail_ = std::move(detail);
}

}  // namespace outbox::metrics
