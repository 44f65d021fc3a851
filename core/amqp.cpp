#include "core/amqp.hpp"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/x509.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>

#include "core/amqp_wire.hpp"
#include "core/error.hpp"
#include "core/url.hpp"

namespace outbox::amqp {
namespace {

using wire::bytes;
using wire::kChannel;
constexpr const char* kContentType = "application/json";
constexpr const char* kAppId = "outbox";

using wire::text;

timeval to_timeval(Duration duration) {
  return timeval{static_cast<time_t>(duration.count() / 1000), static_cast<suseconds_t>((duration.count() % 1000) * 1000)};
}

// Turns an RPC reply into a one-line reason, or "" when it succeeded.
std::string reply_reason(const amqp_rpc_reply_t& reply, int* code = nullptr) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "";
    case AMQP_RESPONSE_NONE:
      return "missing RPC reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(reply.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* close = static_cast<amqp_connection_close_t*>(reply.reply.decoded);
        if (code) *code = close->reply_code;
        return text(close->reply_text);
      }
      if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* close = static_cast<amqp_channel_close_t*>(reply.reply.decoded);
        if (code) *code = close->reply_code;
        return text(close->reply_text);
      }
      return std::string("server error in ") + amqp_method_name(reply.reply.id);
  }
  return "unknown reply";
}

std::string system_ca_file() {
  const char* from_env = std::getenv(X509_get_default_cert_file_env());
  std::string file = from_env && *from_env ? from_env : X509_get_default_cert_file();
  return access(file.c_str(), R_OK) == 0 ? file : "";
}

}  // namespace

BrokerSettings broker_settings(const config::Config& config) {
  BrokerSettings settings;
  settings.urls = config.list("broker.url");
  settings.exchange = config.text("broker.exchange");
  settings.tls_ca = config.text("broker.tls_ca");
  settings.tls_cert = config.text("broker.tls_cert");
  settings.tls_key = config.text("broker.tls_key");
  settings.tls_verify = config.boolean("broker.tls_verify");
  settings.connect_timeout = config.duration("broker.connect_timeout");
  settings.heartbeat = config.duration("broker.heartbeat");
  settings.quorum_queues = config.text("broker.queue_type") == "quorum";
  return settings;
}

void require_broker(const BrokerSettings& settings) {
  if (settings.urls.empty()) throw config_error("config: broker.url: not set (set it in the config file or OUTBOX_BROKER_URL)");
}

namespace {

// Why one node could not be reached; `ours`: a mistake on this side (a bad URL, unreadable TLS
// files) that no retry can fix.
struct NodeFailure {
  std::string reason;
  bool ours = false;
};

// `mutable_url` must outlive the result: its fields point into it.
amqp_connection_info parse_url(std::vector<char>& mutable_url) {
  amqp_connection_info info{};
  if (int rc = amqp_parse_url(mutable_url.data(), &info); rc != AMQP_STATUS_OK)
    throw NodeFailure{std::string("invalid URL: ") + amqp_error_string2(rc), true};
  // "amqp://host/" names the empty vhost in the AMQP URI spec, but everyone means the default "/".
  if (info.vhost == nullptr || *info.vhost == '\0') info.vhost = const_cast<char*>("/");
  return info;
}

amqp_socket_t* tls_socket(amqp_connection_state_t state, const BrokerSettings& settings) {
  amqp_socket_t* socket = amqp_ssl_socket_new(state);
  if (!socket) throw NodeFailure{"cannot create a TLS socket"};
  amqp_ssl_socket_set_verify_peer(socket, settings.tls_verify ? 1 : 0);
  amqp_ssl_socket_set_verify_hostname(socket, settings.tls_verify ? 1 : 0);
  // librabbitmq trusts no CA unless given one: without broker.tls_ca, the system's bundle
  // (SSL_CERT_FILE, else OpenSSL's default file) lets a publicly trusted broker verify.
  std::string ca = settings.tls_ca.empty() ? system_ca_file() : settings.tls_ca;
  if (!ca.empty() && amqp_ssl_socket_set_cacert(socket, ca.c_str()) != AMQP_STATUS_OK)
    throw NodeFailure{
        (settings.tls_ca.empty() ? "the system CA bundle " : "broker.tls_ca ") + ca + ": cannot load CA certificate", true};
  if (!settings.tls_cert.empty() &&
      amqp_ssl_socket_set_key(socket, settings.tls_cert.c_str(), settings.tls_key.c_str()) != AMQP_STATUS_OK)
    throw NodeFailure{"broker.tls_cert " + settings.tls_cert + ": cannot load certificate or key", true};
  return socket;
}

void log_in(amqp_connection_state_t state, const amqp_connection_info& info, const BrokerSettings& settings,
            const std::string& role) {
  int heartbeat_seconds = static_cast<int>(settings.heartbeat.count() / 1000);
  amqp_table_entry_t client_properties[1];
  client_properties[0].key = amqp_cstring_bytes("connection_name");
  client_properties[0].value.kind = AMQP_FIELD_KIND_UTF8;
  client_properties[0].value.value.bytes = bytes(role);
  amqp_table_t properties{1, client_properties};
  amqp_rpc_reply_t login = amqp_login_with_properties(state, info.vhost, 0, 131072, heartbeat_seconds, &properties,
                                                      AMQP_SASL_METHOD_PLAIN, info.user, info.password);
  if (std::string reason = reply_reason(login); !reason.empty()) throw NodeFailure{reason};
}

// Connects to one node: the socket (TLS or TCP), the login, the channel. `state` is set as soon as
// it exists, so that its owner closes it whatever fails next.
void connect_node(amqp_connection_state_t& state, const std::string& url, const BrokerSettings& settings,
                  const std::string& role) {
  std::vector<char> mutable_url(url.begin(), url.end());
  mutable_url.push_back('\0');
  amqp_connection_info info = parse_url(mutable_url);
  state = amqp_new_connection();
  amqp_socket_t* socket = info.ssl ? tls_socket(state, settings) : amqp_tcp_socket_new(state);
  timeval timeout = to_timeval(settings.connect_timeout);
  if (int rc = amqp_socket_open_noblock(socket, info.host, info.port, &timeout); rc != AMQP_STATUS_OK)
    throw NodeFailure{amqp_error_string2(rc)};
  amqp_set_handshake_timeout(state, &timeout);
  amqp_set_rpc_timeout(state, &timeout);
  log_in(state, info, settings, role);
  amqp_channel_open(state, kChannel);
  if (std::string reason = reply_reason(amqp_get_rpc_reply(state)); !reason.empty()) throw NodeFailure{reason};
}

}  // namespace

std::unique_ptr<Connection> Connection::open(const BrokerSettings& settings, size_t& next_node, const std::string& role,
                                             size_t max_nodes) {
  require_broker(settings);
  std::string last_error;
  bool last_ours = false;
  for (size_t attempt = 0; attempt < std::min(max_nodes, settings.urls.size()); ++attempt) {
    size_t index = (next_node + attempt) % settings.urls.size();
    const std::string& url = settings.urls[index];
    std::unique_ptr<Connection> connection(new Connection());  // private constructor: make_unique cannot reach it
    connection->masked_node_ = mask_url(url);
    connection->role_ = role;
    try {
      connect_node(connection->state_, url, settings, role);
      next_node = index + 1;
      return connection;
    } catch (const NodeFailure& failure) {
      last_error = role + " " + connection->masked_node_ + ": " + failure.reason;
      last_ours = failure.ours;
    }
  }
  next_node = next_node + 1;
  // Only this side's mistakes are config errors. What the broker refuses (credentials, 403; a vhost
  // the user may not use, 530 NOT_ALLOWED) is unavailability, as with PostgreSQL: it may be fixed on
  // the broker while the daemons retry.
  if (last_ours) throw config_error(last_error);
  throw unavailable_error(last_error);
}

Connection::~Connection() {
  if (!state_) return;
  // Best effort: a dead peer makes these fail quickly, and the socket is closed either way.
  timeval short_wait{1, 0};
  amqp_set_rpc_timeout(state_, &short_wait);
  amqp_channel_close(state_, kChannel, AMQP_REPLY_SUCCESS);
  amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(state_);
}

int Connection::fd() const { return amqp_get_sockfd(state_); }

void Connection::check_reply(const std::string& what) {
  int code = 0;
  std::string reason = reply_reason(amqp_get_rpc_reply(state_), &code);
  if (reason.empty()) return;
  std::string message = role_ + " " + masked_node_ + ": " + what + ": " + reason;
  // 406 PRECONDITION_FAILED: an existing exchange or queue was declared with other arguments.
  if (code == 406 || code == 403) throw config_error(message);
  if (code == 404) throw data_error(message);
  throw unavailable_error(message);
}

void Connection::enable_confirms() {
  amqp_confirm_select(state_, kChannel);
  check_reply("enable publisher confirms");
}

size_t content_header_size(const OutgoingMessage& message) {
  // class-id, weight, body size, property flags; then the properties publish() sets, in order.
  size_t size = 2 + 2 + 8 + 2;
  // content_type
  size += 1 + (message.content_type.empty() ? std::string_view(kContentType).size() : message.content_type.size());
  if (!message.content_encoding.empty()) size += 1 + message.content_encoding.size();
  size += 1;                              // delivery_mode
  size += 1 + message.message_id.size();  // message_id
  size += 1 + message.type.size();        // type
  if (!message.correlation_id.empty()) size += 1 + message.correlation_id.size();
  if (!message.reply_to.empty()) size += 1 + message.reply_to.size();
  size += 8;                                    // timestamp
  size += 1 + std::string_view(kAppId).size();  // app_id
  size += 4;                                    // headers: the table's length
  for (const auto& [key, value] : message.headers) {
    size += 1 + key.size() + 1;  // key (short string) and the value's kind
    if (const auto* text = std::get_if<std::string>(&value))
      size += 4 + text->size();  // long string
    else
      size += 8;  // 64-bit integer
  }
  return size;
}

std::string unpublishable_reason(const OutgoingMessage& message, size_t frame_max, size_t max_message_size) {
  auto too_long = [](const char* what, const std::string& value) {
    return std::string(what) + " is " + std::to_string(value.size()) + " bytes, AMQP allows at most " +
           std::to_string(kShortStringMax);
  };
  if (message.type.size() > kShortStringMax) return too_long("the event type", message.type);
  if (message.routing_key.size() > kShortStringMax) return too_long("the routing key", message.routing_key);
  if (message.message_id.size() > kShortStringMax) return too_long("the message id", message.message_id);
  if (message.exchange.size() > kShortStringMax) return too_long("the exchange name", message.exchange);
  if (message.correlation_id.size() > kShortStringMax) return too_long("the correlation id", message.correlation_id);
  if (message.reply_to.size() > kShortStringMax) return too_long("the reply-to", message.reply_to);
  for (const auto& header : message.headers)
    if (header.first.size() > kShortStringMax) return too_long("a header name", header.first);
  // A frame is 7 bytes of header, the payload and 1 end byte; the content header is one frame.
  size_t header = content_header_size(message);
  if (header + 8 > frame_max)
    return "its headers need " + std::to_string(header + 8) + " bytes, more than the broker's frame size of " +
           std::to_string(frame_max) + " (an aggregate id or type that long cannot be sent)";
  if (message.body.size() > max_message_size)
    return "the payload is " + std::to_string(message.body.size()) + " bytes, over relay.max_message_size (" +
           std::to_string(max_message_size) + ")";
  return "";
}

size_t Connection::frame_max() const {
  int negotiated = amqp_get_frame_max(state_);
  return negotiated > 0 ? static_cast<size_t>(negotiated) : kFrameMax;
}

uint64_t Connection::publish(const OutgoingMessage& message) {
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                 AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_HEADERS_FLAG;
  props.content_type = message.content_type.empty() ? amqp_cstring_bytes(kContentType) : bytes(message.content_type);
  if (!message.content_encoding.empty()) {
    props._flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG;
    props.content_encoding = bytes(message.content_encoding);
  }
  props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
  props.message_id = bytes(message.message_id);
  props.type = bytes(message.type);
  if (!message.correlation_id.empty()) {
    props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    props.correlation_id = bytes(message.correlation_id);
  }
  if (!message.reply_to.empty()) {
    props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
    props.reply_to = bytes(message.reply_to);
  }
  props.timestamp = static_cast<uint64_t>(message.timestamp_seconds);
  props.app_id = amqp_cstring_bytes(kAppId);
  std::vector<amqp_table_entry_t> entries(message.headers.size());
  for (size_t i = 0; i < message.headers.size(); ++i) {
    entries[i].key = bytes(message.headers[i].first);
    if (const auto* number = std::get_if<long long>(&message.headers[i].second)) {
      entries[i].value.kind = AMQP_FIELD_KIND_I64;
      entries[i].value.value.i64 = *number;
    } else {
      entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[i].value.value.bytes = bytes(std::get<std::string>(message.headers[i].second));
    }
  }
  props.headers = amqp_table_t{static_cast<int>(entries.size()), entries.data()};
  int rc = amqp_basic_publish(state_, kChannel, bytes(message.exchange), bytes(message.routing_key), 1, 0, &props,
                              bytes(message.body));
  if (rc == AMQP_STATUS_BAD_AMQP_DATA || rc == AMQP_STATUS_TABLE_TOO_BIG || rc == AMQP_STATUS_INVALID_PARAMETER)
    throw EncodeFailed(ExitCode::unavailable, role_ + " " + masked_node_ + ": publish: " + amqp_error_string2(rc));
  if (rc != AMQP_STATUS_OK) throw unavailable_error(role_ + " " + masked_node_ + ": publish: " + amqp_error_string2(rc));
  return next_tag_++;
}

void Connection::set_prefetch(uint16_t count) {
  amqp_basic_qos(state_, kChannel, 0, count, 0);
  check_reply("set prefetch");
}

void Connection::consume(const std::string& queue, const std::string& consumer_tag) {
  amqp_basic_consume(state_, kChannel, bytes(queue), bytes(consumer_tag), 0, 0, 0, amqp_empty_table);
  check_reply("consume from " + queue);
}

void Connection::ack(uint64_t delivery_tag, bool multiple) {
  if (int rc = amqp_basic_ack(state_, kChannel, delivery_tag, multiple ? 1 : 0); rc != AMQP_STATUS_OK)
    throw unavailable_error(role_ + " " + masked_node_ + ": ack: " + amqp_error_string2(rc));
}

void Connection::reject(uint64_t delivery_tag, bool requeue) {
  if (int rc = amqp_basic_reject(state_, kChannel, delivery_tag, requeue ? 1 : 0); rc != AMQP_STATUS_OK)
    throw unavailable_error(role_ + " " + masked_node_ + ": reject: " + amqp_error_string2(rc));
}

bool Connection::has_buffered_data() const { return amqp_frames_enqueued(state_) || amqp_data_in_buffer(state_); }

std::optional<IncomingMessage> Connection::read_content(amqp_channel_t channel, IncomingMessage message) {
  amqp_message_t content{};
  amqp_rpc_reply_t reply = amqp_read_message(state_, channel, &content, 0);
  if (reply.reply_type != AMQP_RESPONSE_NORMAL)
    throw unavailable_error(role_ + " " + masked_node_ + ": read message: " + reply_reason(reply));
  message.body = text(content.body);
  copy_properties(content.properties, message);
  amqp_destroy_message(&content);
  return message;
}

void Connection::poll(const std::function<void(Event&)>& on_event, Duration wait) {
  timeval first_wait = to_timeval(wait);
  timeval no_wait{0, 0};
  for (bool first = true;; first = false) {
    amqp_frame_t frame{};
    int rc = amqp_simple_wait_frame_noblock(state_, &frame, first ? &first_wait : &no_wait);
    if (rc == AMQP_STATUS_TIMEOUT) return;
    if (rc != AMQP_STATUS_OK)
      throw unavailable_error(role_ + " " + masked_node_ + ": connection lost: " + amqp_error_string2(rc));
    if (frame.frame_type != AMQP_FRAME_METHOD) continue;
    Event event{Event::Kind::ack, 0, false, "", std::nullopt};
    switch (frame.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
        event = Event{Event::Kind::ack, ack->delivery_tag, ack->multiple != 0, "", std::nullopt};
        break;
      }
      case AMQP_BASIC_NACK_METHOD: {
        auto* nack = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
        event = Event{Event::Kind::nack, nack->delivery_tag, nack->multiple != 0, "", std::nullopt};
        break;
      }
      case AMQP_BASIC_RETURN_METHOD: {
        auto* returned = static_cast<amqp_basic_return_t*>(frame.payload.method.decoded);
        IncomingMessage message;
        message.exchange = text(returned->exchange);
        message.routing_key = text(returned->routing_key);
        std::string reply_text = text(returned->reply_text);
        event = Event{Event::Kind::returned, 0, false, reply_text, read_content(frame.channel, std::move(message))};
        break;
      }
      case AMQP_BASIC_DELIVER_METHOD: {
        auto* deliver = static_cast<amqp_basic_deliver_t*>(frame.payload.method.decoded);
        IncomingMessage message;
        message.delivery_tag = deliver->delivery_tag;
        message.redelivered = deliver->redelivered != 0;
        message.exchange = text(deliver->exchange);
        message.routing_key = text(deliver->routing_key);
        event = Event{Event::Kind::delivery, deliver->delivery_tag, false, "", read_content(frame.channel, std::move(message))};
        break;
      }
      case AMQP_CHANNEL_CLOSE_METHOD: {
        auto* close = static_cast<amqp_channel_close_t*>(frame.payload.method.decoded);
        std::string reason = text(close->reply_text);
        amqp_channel_close_ok_t close_ok{};
        amqp_send_method(state_, frame.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
        throw ChannelClosed(close->reply_code, role_ + " " + masked_node_ + ": channel closed by the broker: " + reason);
      }
      case AMQP_CONNECTION_CLOSE_METHOD: {
        auto* close = static_cast<amqp_connection_close_t*>(frame.payload.method.decoded);
        std::string reason = text(close->reply_text);
        amqp_connection_close_ok_t close_ok{};
        amqp_send_method(state_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
        throw unavailable_error(role_ + " " + masked_node_ + ": connection closed by the broker: " + reason);
      }
      default:
        continue;
    }
    amqp_maybe_release_buffers(state_);
    on_event(event);
  }
}

}  // namespace outbox::amqp
